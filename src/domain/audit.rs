//! The audit log: who did what, when and from where (docs/design.md). Entries are
//! append-only and hash-chained: each hash covers the previous hash and the
//! entry, so an edited, inserted or missing entry breaks the chain. This
//! module is pure; the stores append entries in the same transaction as the
//! change they describe.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::clock::truncate_to_micros;
use crate::domain::TenantId;

/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    /// Who: `operator:<name>`, `key:<key id>`, later principals.
    pub actor: String,
    /// What: a dotted name such as `consent.recorded`.
    pub action: String,
    pub tenant: Option<TenantId>,
    /// What it was done to (a consent event number, an export id…).
    pub subject: Option<String>,
    /// From where: a peer address, `cli user@host`.
    pub source: String,
    /// Further facts as a JSON object. Never payload content.
    pub details: serde_json::Value,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub tenant: Option<TenantId>,
    pub subject: Option<String>,
    pub source: String,
    /// The JSON text exactly as hashed and stored.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Place `event` after the entry `(prev_seq, prev_hash)`.
    pub fn chain(event: &AuditEvent, prev_seq: i64, prev_hash: &str) -> Self {
        let mut entry = Self {
            seq: prev_seq + 1,
            at: truncate_to_micros(event.at),
            actor: event.actor.clone(),
            action: event.action.clone(),
            tenant: event.tenant.clone(),
            subject: event.subject.clone(),
            source: event.source.clone(),
            details: event.details.to_string(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.computed_hash();
        entry
    }

    /// The hash this entry must carry, given its fields and `prev_hash`.
    pub fn computed_hash(&self) -> String {
        // A JSON array: unambiguous field boundaries, stable across versions.
        #[derive(Serialize)]
        struct Hashed<'a>(
            i64,
            i128,
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a str,
        );
        let fields = Hashed(
            self.seq,
            self.at.unix_timestamp_nanos() / 1_000,
            &self.actor,
            &self.action,
            self.tenant.as_ref().map(|t| t.0.as_str()),
            self.subject.as_deref(),
            &self.source,
            &self.details,
        );
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        // Serialising borrowed strings and integers cannot fail.
        hasher.update(serde_json::to_vec(&fields).unwrap_or_default());
        hex::encode(hasher.finalize())
    }
}

/// Where a chain stops being intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq}: expected sequence number {expected} (an entry is missing)")]
    Gap { seq: i64, expected: i64 },
    #[error("entry {seq}: its previous hash does not match entry {}'s hash", seq - 1)]
    Link { seq: i64 },
    #[error("entry {seq}: its hash does not match its contents (edited)")]
    Content { seq: i64 },
}

/// Checks entries in sequence order, one at a time, so a log of any length
/// is verified in constant memory.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    last: Option<(i64, String)>,
    checked: u64,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let (expected_seq, expected_prev) = match &self.last {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (1, GENESIS_HASH),
        };
        if entry.seq != expected_seq {
            return Err(ChainBreak::Gap {
                seq: entry.seq,
                expected: expected_seq,
            });
        }
        if entry.prev_hash != expected_prev {
            return Err(ChainBreak::Link { seq: entry.seq });
        }
        if entry.computed_hash() != entry.hash {
            return Err(ChainBreak::Content { seq: entry.seq });
        }
        self.last = Some((entry.seq, entry.hash.clone()));
        self.checked += 1;
        Ok(())
    }

    /// Entries checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last entry checked: the value to compare with a copy
    /// kept elsewhere, which also catches a truncated tail.
    pub fn head(&self) -> Option<(i64, &str)> {
        self.last.as_ref().map(|(s, h)| (*s, h.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            at: datetime!(2026-01-01 00:00:00.123456789 UTC),
            actor: format!("operator:o{n}"),
            action: "consent.recorded".into(),
            tenant: Some(TenantId("acme".into())),
            subject: Some(n.to_string()),
            source: "cli".into(),
            details: json!({"opted_in": true}),
        }
    }

    fn chain(n: u32) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let (seq, hash) = out
                .last()
                .map_or((0, GENESIS_HASH.to_owned()), |e| (e.seq, e.hash.clone()));
            out.push(AuditEntry::chain(&event(i), seq, &hash));
        }
        out
    }

    fn verify(entries: &[AuditEntry]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for e in entries {
            v.check(e)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn instants_are_hashed_at_the_stored_precision() {
        let e = &chain(1)[0];
        assert_eq!(e.at.nanosecond(), 123_456_000);
    }

    #[test]
    fn any_edited_field_is_detected() {
        let edits: [fn(&mut AuditEntry); 7] = [
            |e| e.at += time::Duration::microseconds(1),
            |e| e.actor.push('x'),
            |e| e.action.push('x'),
            |e| e.tenant = None,
            |e| e.subject = Some("other".into()),
            |e| e.source.push('x'),
            |e| e.details = json!({"opted_in": false}).to_string(),
        ];
        for edit in edits {
            let mut entries = chain(3);
            edit(&mut entries[1]);
            assert_eq!(verify(&entries), Err(ChainBreak::Content { seq: 2 }));
        }
    }

    #[test]
    fn a_removed_entry_is_a_gap() {
        let mut entries = chain(3);
        entries.remove(1);
        assert_eq!(
            verify(&entries),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        );
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut entries = chain(3);
        entries[1].actor = "someone else".into();
        entries[1].hash = entries[1].computed_hash();
        assert_eq!(verify(&entries), Err(ChainBreak::Link { seq: 3 }));
    }
}
