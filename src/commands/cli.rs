//! Command-line definitions (clap). The commands themselves are in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "custodian",
    version,
    about = "A data-use policy gateway for LLM APIs"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "CUSTODIAN_CONFIG",
        default_value = "config/custodian.toml"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (proxy and admin listeners).
    Serve {
        /// Do not apply migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply the database migrations and prepare partitions, then exit.
    Migrate,
    /// Validate the configuration file and exit (non-zero when invalid).
    CheckConfig,
    /// Exit 0 when the gateway at `--url` answers its health check (for container health checks).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
    },
    /// Record or show training consent.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// API keys (callers' keys): issue managed keys, fingerprint pass-through keys.
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// Encryption keys (at rest): status, verify shredding, rotate the KEK.
    #[command(subcommand)]
    EncryptionKeys(EncryptionKeysCommand),
    /// The old spelling of `api-keys` and `encryption-keys` together; kept
    /// for scripts written against it.
    #[command(subcommand, hide = true)]
    Keys(KeysCommand),
    /// Export stored data.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Prove the policy held: check each claim against the store, key store
    /// and spool; exit non-zero naming each claim that fails.
    Attest(AttestArgs),
    /// Remove everything past its retention now (`serve` also does it on a timer).
    Sweep {
        /// Count what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Legal holds: keep a tenant's records, or one record, past their expiry.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Erase a tenant's stored content now (and its metadata with
    /// --include-metadata), except what a legal hold keeps; audited.
    Erase(EraseArgs),
    /// Principals of the admin API (reviewers, contractors, auditors, admins).
    #[command(subcommand)]
    Principals(PrincipalsCommand),
    /// Work the review queue through the admin API.
    Review(ReviewArgs),
    /// Keys and tenants suspended after confirmed abuse.
    #[command(subcommand)]
    Suspensions(SuspensionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SuspensionsCommand {
    /// List suspensions, in force first.
    List,
    /// Lift a suspension (audited); replicas apply it within the refresh interval.
    Lift {
        id: i64,
        #[arg(long)]
        actor: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalsCommand {
    /// Create a principal; prints its bearer token once (only a hash is kept).
    Add {
        #[arg(long)]
        name: String,
        /// admin, reviewer, contractor or auditor.
        #[arg(long)]
        role: String,
        /// When its access ends (RFC 3339); contractors should have one.
        #[arg(long)]
        expires: Option<String>,
        /// Who creates it.
        #[arg(long)]
        actor: String,
    },
    /// List principals (never their tokens).
    List,
    /// Revoke a principal's token.
    Revoke {
        name: String,
        #[arg(long)]
        actor: String,
    },
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The admin listener.
    #[arg(
        long,
        env = "CUSTODIAN_ADMIN_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub url: String,
    /// Your principal's bearer token.
    #[arg(long, env = "CUSTODIAN_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: ReviewCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List items (default: open ones).
    List {
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one item with its payload (audited).
    Show { id: String },
    /// Claim the next open item.
    Claim,
    /// Resolve an item.
    Resolve {
        id: String,
        /// dismissed or confirmed.
        #[arg(long)]
        resolution: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Place a hold (audited).
    Add(HoldAddArgs),
    /// List holds, active first.
    List {
        /// Include released and ended holds.
        #[arg(long)]
        all: bool,
    },
    /// Release a hold (audited); the next sweep removes what it kept.
    Release {
        /// The hold's id, as `hold list` shows it.
        id: i64,
        /// Who releases it.
        #[arg(long)]
        actor: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct HoldAddArgs {
    /// Hold every record of this tenant.
    #[arg(long, required_unless_present = "record")]
    pub tenant: Option<String>,
    /// Hold one record (its id, as in the x-custodian-record-id receipt).
    #[arg(long, conflicts_with = "tenant")]
    pub record: Option<String>,
    /// Why (a matter, a ticket): required.
    #[arg(long)]
    pub reason: String,
    /// When the hold ends (RFC 3339): required.
    #[arg(long)]
    pub until: String,
    /// Who places it.
    #[arg(long)]
    pub actor: String,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    #[arg(long)]
    pub tenant: String,
    /// Only this end user's records (the id the caller sent as `user`,
    /// `safety_identifier` or Anthropic `metadata.user_id`). Live rows
    /// only: backups keep them until their retention ends.
    #[arg(long)]
    pub end_user: Option<String>,
    /// Remove the tenant's metadata too (kept by default, for billing and audit).
    #[arg(long)]
    pub include_metadata: bool,
    /// Why (a request, a ticket): required, and audited.
    #[arg(long)]
    pub reason: String,
    /// Who erases.
    #[arg(long)]
    pub actor: String,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write the records tagged usable for training as chat fine-tune JSONL,
    /// with a manifest beside it. Resumes an interrupted run of the same
    /// export; skips records an earlier export took.
    Training(ExportTrainingArgs),
}

#[derive(Debug, Args)]
pub struct ExportTrainingArgs {
    /// Records received at or after this instant (RFC 3339).
    #[arg(long)]
    pub since: String,
    /// Records received before this instant (RFC 3339); default: when the
    /// export started (a resumed export keeps its first run's instant).
    #[arg(long)]
    pub until: Option<String>,
    /// The JSONL file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Export records again even if an earlier export took them.
    #[arg(long)]
    pub include_exported: bool,
    /// Replace an existing output file (not needed to resume).
    #[arg(long)]
    pub overwrite: bool,
    /// Who runs the export, for the audit log; default the login name.
    #[arg(long)]
    pub actor: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AttestArgs {
    #[command(subcommand)]
    pub command: Option<AttestCommand>,
    /// Records received at or after this instant (RFC 3339); default: all.
    #[arg(long)]
    pub since: Option<String>,
    /// Records received before this instant (RFC 3339); default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// One tenant's records only.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Also write the report as JSON, signed with `attest.signing_key`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Check a signed report's signature (and print whether its claims held).
    Verify {
        report: PathBuf,
        /// The signer's public key: 64 hex digits, or a file holding them.
        #[arg(long)]
        public_key: String,
    },
    /// Print the public key of `attest.signing_key`, to hand to report readers.
    PublicKey,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the audit log's hash chain from its first entry to its last.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Record consent obtained outside the gateway (append-only).
    Record(ConsentRecordArgs),
    /// Show a tenant's consent history and current choice.
    Show {
        /// The tenant id.
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct ConsentRecordArgs {
    /// The tenant id, as configured.
    #[arg(long)]
    pub tenant: String,
    /// The tenant opts in to training use.
    #[arg(long, conflicts_with = "opt_out", required_unless_present = "opt_out")]
    pub opt_in: bool,
    /// The tenant opts out of training use.
    #[arg(long)]
    pub opt_out: bool,
    /// When the choice takes effect (RFC 3339); default now.
    #[arg(long)]
    pub effective_at: Option<String>,
    /// Who records it (a person or system).
    #[arg(long)]
    pub actor: String,
    /// Where the consent was obtained.
    #[arg(long, default_value = "operator")]
    pub source: String,
    /// Why, or a reference to the agreement.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Generate a managed key (`cst_…`). Prints the key once and the hash to
    /// put under the tenant's `managed_keys`.
    Issue,
    /// Read a pass-through key from standard input and print its fingerprint
    /// for the tenant's `passthrough_fingerprints` (needs `auth.fingerprint_key`).
    Fingerprint,
}

#[derive(Debug, Subcommand)]
pub enum EncryptionKeysCommand {
    /// Which key-encryption keys wrap the stored data keys, and how many.
    Status,
    /// Open every stored body with the key store, and fail if any whose
    /// content-expiry day has ended still opens. Point it at a restored
    /// backup with CUSTODIAN__DATABASE__URL to prove the backup is shredded.
    Verify {
        /// Also fail if any body of this tenant (erased since the backup) opens.
        #[arg(long)]
        erased_tenant: Option<String>,
    },
    /// Re-wrap every data key not under `encryption.kek` with it (content is
    /// not touched), unwrapping with `encryption.previous_keks`. Live
    /// rotation: roll the gateways out with the new KEK as `kek` and the old
    /// one in `previous_keks`, run this, then drop the old KEK.
    RotateKek {
        /// Re-wrap with the KEK in this environment variable instead (64 hex
        /// digits), for a rotation with the gateways stopped; then point
        /// `encryption.kek` at it.
        #[arg(long)]
        new_kek_env: Option<String>,
    },
}

/// `custodian keys …`: both kinds under the old name.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    #[command(flatten)]
    Api(ApiKeysCommand),
    #[command(flatten)]
    Encryption(EncryptionKeysCommand),
}
