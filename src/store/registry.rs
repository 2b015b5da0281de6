//! Every table the gateway writes, with its retention class (docs/design.md,
//! Retention). A conformance test lists the tables in each database and
//! fails when one is missing here, so a new table cannot be added without
//! deciding how long its rows live.

use std::fmt;

/// The clocks rows live by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetentionClass {
    /// Request and response bodies and anything derived from them: the
    /// profile's content retention (30 days by default).
    Content,
    /// Who, when, what model, tokens, the training tag: the profile's
    /// metadata retention (365 days by default).
    Metadata,
    /// Review items (flags of abuse rules): expire with their record's content.
    Review,
    /// Consent history, the audit log, legal holds: the record of decisions.
    /// No payload content; kept (see the README for the operator's side).
    Audit,
    /// Fine-tune file copies: kept until the tenant deletes the file.
    Files,
    /// Web console sessions and sign-ins under way: until they end (at
    /// most the configured absolute timeout). No payload.
    Session,
}

impl RetentionClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Content => "content",
            Self::Metadata => "metadata",
            Self::Review => "review",
            Self::Audit => "audit",
            Self::Files => "files",
            Self::Session => "session",
        }
    }
}

impl fmt::Display for RetentionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the sweeper treats a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Each row carries `expires_at`; the sweeper removes it once passed
    /// (unless a legal hold covers it).
    ExpiresAt,
    /// Never removed by time.
    Kept,
    /// Removed when the tenant deletes the object it describes.
    UntilDeleted,
}

#[derive(Debug, Clone, Copy)]
pub struct TableRetention {
    pub table: &'static str,
    pub class: RetentionClass,
    pub expiry: Expiry,
}

const fn table(table: &'static str, class: RetentionClass, expiry: Expiry) -> TableRetention {
    TableRetention {
        table,
        class,
        expiry,
    }
}

/// The registry. Order matters to the sweeper: content goes first.
pub const TABLES: &[TableRetention] = &[
    table("record_content", RetentionClass::Content, Expiry::ExpiresAt),
    table("review_items", RetentionClass::Review, Expiry::ExpiresAt),
    table("record_meta", RetentionClass::Metadata, Expiry::ExpiresAt),
    // An export mark expires with its record's metadata.
    table(
        "training_exports",
        RetentionClass::Metadata,
        Expiry::ExpiresAt,
    ),
    // Which exports finished: ids and instants, no content.
    table("training_export_runs", RetentionClass::Audit, Expiry::Kept),
    table("consent_events", RetentionClass::Audit, Expiry::Kept),
    table("audit_log", RetentionClass::Audit, Expiry::Kept),
    table("audit_head", RetentionClass::Audit, Expiry::Kept),
    table("legal_holds", RetentionClass::Audit, Expiry::Kept),
    table("principals", RetentionClass::Audit, Expiry::Kept),
    table("suspensions", RetentionClass::Audit, Expiry::Kept),
    // What each policy version meant, and when the sweeper last ran.
    table("policy_documents", RetentionClass::Audit, Expiry::Kept),
    table("job_status", RetentionClass::Audit, Expiry::Kept),
    table("file_copies", RetentionClass::Files, Expiry::UntilDeleted),
    table(
        "console_sessions",
        RetentionClass::Session,
        Expiry::ExpiresAt,
    ),
    table(
        "console_sign_ins",
        RetentionClass::Session,
        Expiry::ExpiresAt,
    ),
    // Who owns which upstream object: kept while the object lives, then for
    // the metadata retention.
    table(
        "upstream_objects",
        RetentionClass::Metadata,
        Expiry::ExpiresAt,
    ),
];

/// Tables the migration tool owns.
pub const INTERNAL_TABLES: &[&str] = &["_sqlx_migrations"];

pub fn lookup(table: &str) -> Option<&'static TableRetention> {
    TABLES.iter().find(|t| t.table == table)
}
