//! What each subcommand does. `main` parses and calls [`run`].

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use time::format_description::well_known::Rfc3339;

use crate::audit::{AuditEvent, ChainVerifier};
use crate::auth;
use crate::cli::{
    AuditCommand, Cli, Command, ConsentCommand, ConsentRecordArgs, ExportCommand,
    ExportTrainingArgs, HoldAddArgs, HoldCommand, KeysCommand, PrincipalsCommand, ReviewArgs,
    ReviewCommand, SuspensionsCommand,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::domain::RecordId;
use crate::domain::{ConsentEvent, TenantId};
use crate::export::{self, ExportOptions};
use crate::policy::training::latest_effective;
use crate::startup::{self, Gateway};
use crate::store;
use crate::store::NewHold;
use crate::telemetry;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(&cli.config)?;
            println!(
                "{}: ok ({} routes, {} profiles, {} tenants, policy version {})",
                cli.config.display(),
                config.routes.len(),
                config.profiles.len(),
                config.tenants.len(),
                config.policy_version
            );
            Ok(())
        }
        Command::Serve { no_migrate } => serve(&cli.config, no_migrate).await,
        Command::Migrate => migrate(&cli.config).await,
        Command::Consent(ConsentCommand::Record(args)) => consent_record(&cli.config, args).await,
        Command::Consent(ConsentCommand::Show { tenant }) => {
            consent_show(&cli.config, &tenant).await
        }
        Command::Keys(KeysCommand::Issue) => {
            let key = auth::issue_managed_key();
            println!("key:  {key}");
            println!("hash: {}", auth::managed_key_hash(&key));
            eprintln!("The key is shown once. Give it to the tenant; put the hash under its managed_keys.");
            Ok(())
        }
        Command::Keys(KeysCommand::Fingerprint) => fingerprint(&cli.config),
        Command::Keys(KeysCommand::Status) => keys_status(&cli.config).await,
        Command::Keys(KeysCommand::Verify) => keys_verify(&cli.config).await,
        Command::Keys(KeysCommand::RotateKek { new_kek_env }) => {
            rotate_kek(&cli.config, new_kek_env.as_deref()).await
        }
        Command::Healthcheck { url } => healthcheck(&url).await,
        Command::Export(ExportCommand::Training(args)) => export_training(&cli.config, args).await,
        Command::Audit(AuditCommand::Verify) => audit_verify(&cli.config).await,
        Command::Sweep { dry_run } => sweep(&cli.config, dry_run).await,
        Command::Hold(HoldCommand::Add(args)) => hold_add(&cli.config, args).await,
        Command::Hold(HoldCommand::List { all }) => hold_list(&cli.config, all).await,
        Command::Hold(HoldCommand::Release { id, actor, reason }) => {
            hold_release(&cli.config, id, &actor, &reason).await
        }
        Command::Principals(command) => principals(&cli.config, command).await,
        Command::Review(args) => review(args).await,
        Command::Suspensions(command) => suspensions(&cli.config, command).await,
    }
}

async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let status = client.get(url).send().await?.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // The error already names file, line and key.
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(path: &Path, no_migrate: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let migrate = config.database.migrate_on_start && !no_migrate;
    telemetry::init_logging(&config.logging);
    let gateway = Gateway::start(config, Arc::new(SystemClock), migrate).await?;
    let token = gateway.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: draining");
        token.cancel();
    });
    gateway.wait().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    let store = store::connect(&config.database)
        .await
        .with_context(|| format!("opening {}", store::redact_url(&config.database.url)))?;
    Ok(store)
}

async fn migrate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    store.migrate().await?;
    startup::prepare_partitions(&config, store.as_ref(), &SystemClock).await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

fn known_tenant(config: &Config, tenant: &str) -> anyhow::Result<TenantId> {
    if !config.tenants.iter().any(|t| t.id.0 == tenant) {
        bail!("no tenant {tenant:?} in the configuration");
    }
    Ok(TenantId(tenant.to_owned()))
}

async fn consent_record(path: &Path, args: ConsentRecordArgs) -> anyhow::Result<()> {
    let config = load(path)?;
    let tenant = known_tenant(&config, &args.tenant)?;
    let now = SystemClock.now();
    let effective_at = match args.effective_at.as_deref() {
        None | Some("now") => now,
        Some(s) => config::parse_instant(s).map_err(anyhow::Error::msg)?,
    };
    if args.actor.trim().is_empty() {
        bail!("--actor must name who records this consent");
    }
    let event = ConsentEvent {
        tenant,
        opted_in: args.opt_in,
        effective_at,
        recorded_at: now,
        actor: format!("operator:{}", args.actor),
        source: args.source,
        note: args.note,
    };
    let audit = AuditEvent {
        at: now,
        actor: event.actor.clone(),
        action: "consent.changed".into(),
        tenant: Some(event.tenant.clone()),
        subject: None,
        source: cli_source(),
        details: serde_json::json!({
            "via": "operator",
            "training_opt_in": event.opted_in,
            "effective_at": event.effective_at.format(&Rfc3339)?,
            "obtained_from": event.source,
        }),
    };
    let store = open_store(&config).await?;
    let seq = store.record_consent(&event, &audit).await?;
    println!(
        "recorded consent event #{seq}: tenant {} {} from {}",
        event.tenant,
        if event.opted_in {
            "opted in"
        } else {
            "opted out"
        },
        event.effective_at.format(&Rfc3339)?
    );
    Ok(())
}

async fn consent_show(path: &Path, tenant: &str) -> anyhow::Result<()> {
    let config = load(path)?;
    let tenant = known_tenant(&config, tenant)?;
    let store = open_store(&config).await?;
    let history = store.consent_history(&tenant).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "effective_at\trecorded_at\tchoice\tactor\tsource\tnote"
    )?;
    for e in &history {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            e.effective_at.format(&Rfc3339)?,
            e.recorded_at.format(&Rfc3339)?,
            if e.opted_in { "opt-in" } else { "opt-out" },
            e.actor,
            e.source,
            e.note.as_deref().unwrap_or("")
        )?;
    }
    let now = SystemClock.now();
    let current = match latest_effective(&history, now) {
        Some(e) if e.opted_in => "opted in (explicit_opt_in)",
        Some(_) => "opted out (explicit_opt_out)",
        None => "no choice recorded: the profile's default applies",
    };
    writeln!(out, "current: {current}")?;
    Ok(())
}

/// Where a command-line change comes from, for the audit log.
fn cli_source() -> String {
    format!("cli {}@{}", login_name(), host_name())
}

fn login_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map_or_else(|| "unknown".into(), |h| h.trim().to_owned())
}

async fn export_training(path: &Path, args: ExportTrainingArgs) -> anyhow::Result<()> {
    let config = load(path)?;
    if config.database.max_connections < 2 {
        // The record stream holds one connection while checkpoints write.
        bail!("export needs database.max_connections of at least 2");
    }
    let parse = |s: &str| config::parse_instant(s).map_err(anyhow::Error::msg);
    let options = ExportOptions {
        since: parse(&args.since).context("--since")?,
        until: match args.until.as_deref() {
            None => None,
            Some("now") => Some(SystemClock.now()),
            Some(s) => Some(parse(s).context("--until")?),
        },
        out: args.out,
        include_exported: args.include_exported,
        overwrite: args.overwrite,
        actor: format!("operator:{}", args.actor.unwrap_or_else(login_name)),
        source: cli_source(),
        keys: crate::startup::load_content_keys(&config, None, None, false).await?,
    };
    let store = open_store(&config).await?;
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let manifest = export::run(store.as_ref(), &options, &SystemClock, &bar).await?;
    println!(
        "exported {} lines ({} bytes) to {}",
        manifest.lines,
        manifest.bytes,
        options.out.display()
    );
    for (basis, n) in &manifest.exported_by_basis {
        println!("  exported  {basis}: {n}");
    }
    for (reason, n) in &manifest.skipped {
        println!("  skipped   {reason}: {n}");
    }
    for (basis, n) in &manifest.not_usable_by_basis {
        println!("  not usable {basis}: {n}");
    }
    println!(
        "manifest: {}",
        export::manifest_path(&options.out).display()
    );
    Ok(())
}

async fn sweep(path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    let report = crate::sweeper::sweep_once(
        store.as_ref(),
        &SystemClock,
        config.sweeper.batch_size,
        dry_run,
    )
    .await?;
    if report.skipped_locked {
        println!("another process is sweeping this database; nothing done");
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for (table, rows) in &report.rows {
        println!("{verb} {rows} rows from {table}");
    }
    let verb = if dry_run { "would drop" } else { "dropped" };
    for partition in &report.partitions {
        println!("{verb} partition {partition}");
    }
    if let (false, Some(keys)) = (
        dry_run,
        crate::startup::load_content_keys(&config, None, None, false).await?,
    ) {
        crate::sweeper::shred_expired_keys(store.as_ref(), &keys, SystemClock.now()).await;
    }
    Ok(())
}

async fn rotate_kek(path: &Path, new_kek_env: Option<&str>) -> anyhow::Result<()> {
    let config = load(path)?;
    let new = match new_kek_env {
        Some(var) => {
            let value = std::env::var(var)
                .with_context(|| format!("environment variable {var} is not set"))?;
            Some(crate::crypto::Kek::from_hex(&value)?)
        }
        None => None,
    };
    let keys = content_keys(&config, path, new).await?;
    let count = keys.rotate_kek().await?;
    let kek = keys.keyring().current().id();
    println!("re-wrapped {count} data keys with key-encryption key {kek}");
    if new_kek_env.is_some() {
        println!("set encryption.kek to it now (gateways holding only the old KEK cannot read these keys)");
    }
    print_census(&keys).await
}

/// The key store an operator's `keys` command works on (never created).
async fn content_keys(
    config: &Config,
    path: &Path,
    new_kek: Option<crate::crypto::Kek>,
) -> anyhow::Result<Arc<crate::crypto::ContentKeys>> {
    crate::startup::load_content_keys(config, None, new_kek, false)
        .await?
        .with_context(|| format!("encryption is not enabled in {}", path.display()))
}

async fn keys_status(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let keys = content_keys(&config, path, None).await?;
    print_census(&keys).await
}

async fn keys_verify(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let keys = content_keys(&config, path, None).await?;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    let report = crate::crypto::shred_check::check(store.as_ref(), &keys, now).await?;
    println!("bodies checked: {}", report.rows);
    println!("  readable with the key store: {}", report.readable);
    println!("  expired (key destroyed): {}", report.expired);
    println!("  unreadable (do not open): {}", report.unreadable);
    println!("  stored in clear: {}", report.plain);
    println!(
        "past their expiry day and still readable: {}",
        report.past_expiry_readable
    );
    println!(
        "without a key before their expiry day: {}",
        report.key_missing_early
    );
    if report.key_missing_early > 0 {
        bail!(
            "{} bodies have no key before their expiry day: is this the key store that \
             sealed them?",
            report.key_missing_early
        );
    }
    if !report.holds() {
        bail!(
            "{} bodies past their expiry day still open (no sweep since the day ended, \
             a legal hold, or stored before encryption was on)",
            report.past_expiry_readable
        );
    }
    Ok(())
}

/// Which KEKs wrap the stored keys: a rotation is done when only the
/// current one does.
async fn print_census(keys: &crate::crypto::ContentKeys) -> anyhow::Result<()> {
    let census = keys.census().await?;
    for (kek, count) in &census.by_kek {
        println!("kek {kek} ({}): {count} keys", keys.keyring().role_of(kek));
    }
    let day = |d: i32| {
        time::OffsetDateTime::from_unix_timestamp(i64::from(d) * 86_400)
            .map(|t| t.date().to_string())
            .unwrap_or_default()
    };
    match (census.content_days.first(), census.content_days.last()) {
        (Some(first), Some(last)) => println!(
            "content keys: {} days, {} to {}",
            census.content_days.len(),
            day(*first),
            day(*last)
        ),
        _ => println!("content keys: none"),
    }
    println!("file keys: {}", census.files);
    Ok(())
}

fn operator_audit(
    actor: &str,
    action: &str,
    tenant: Option<TenantId>,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        at: SystemClock.now(),
        actor: format!("operator:{actor}"),
        action: action.into(),
        tenant,
        subject: None,
        source: cli_source(),
        details,
    }
}

async fn hold_add(path: &Path, args: HoldAddArgs) -> anyhow::Result<()> {
    let config = load(path)?;
    if args.reason.trim().is_empty() || args.actor.trim().is_empty() {
        bail!("--reason and --actor must not be empty");
    }
    let now = SystemClock.now();
    let ends_at = config::parse_instant(&args.until).map_err(anyhow::Error::msg)?;
    if ends_at <= now {
        bail!("--until must be in the future");
    }
    let store = open_store(&config).await?;
    let (tenant, record) = match (&args.tenant, &args.record) {
        (Some(tenant), None) => (known_tenant(&config, tenant)?, None),
        (None, Some(record)) => {
            let id = RecordId(record.parse().context("--record is not a record id")?);
            let Some(stored) = store.get_record(id).await? else {
                bail!("no record {id} is stored (already swept, or never written)");
            };
            (stored.meta.tenant, Some(id))
        }
        _ => bail!("give exactly one of --tenant or --record"),
    };
    let hold = NewHold {
        tenant: tenant.clone(),
        record,
        reason: args.reason.clone(),
        created_by: format!("operator:{}", args.actor),
        created_at: now,
        ends_at,
    };
    let audit = operator_audit(
        &args.actor,
        "legal_hold.placed",
        Some(tenant),
        serde_json::json!({
            "record": record.map(|r| r.to_string()),
            "reason": args.reason,
            "ends_at": ends_at.format(&Rfc3339)?,
        }),
    );
    let id = store.add_hold(&hold, &audit).await?;
    println!(
        "legal hold #{id} placed until {}",
        ends_at.format(&Rfc3339)?
    );
    Ok(())
}

async fn hold_list(path: &Path, all: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "id\tstate\ttenant\trecord\tends_at\tcreated_by\treason"
    )?;
    for h in store.list_holds().await? {
        let state = match (h.released_at, h.is_active(now)) {
            (Some(_), _) => "released",
            (None, true) => "active",
            (None, false) => "ended",
        };
        if !all && state != "active" {
            continue;
        }
        writeln!(
            out,
            "{}\t{state}\t{}\t{}\t{}\t{}\t{}",
            h.id,
            h.tenant,
            h.record.map_or_else(|| "*".to_owned(), |r| r.to_string()),
            h.ends_at.format(&Rfc3339)?,
            h.created_by,
            h.reason
        )?;
    }
    Ok(())
}

async fn hold_release(path: &Path, id: i64, actor: &str, reason: &str) -> anyhow::Result<()> {
    let config = load(path)?;
    if reason.trim().is_empty() || actor.trim().is_empty() {
        bail!("--reason and --actor must not be empty");
    }
    let store = open_store(&config).await?;
    let tenant = store
        .list_holds()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .map(|h| h.tenant);
    let audit = operator_audit(
        actor,
        "legal_hold.released",
        tenant,
        serde_json::json!({ "reason": reason }),
    );
    let now = SystemClock.now();
    if !store
        .release_hold(id, &format!("operator:{actor}"), now, &audit)
        .await?
    {
        bail!("no active legal hold #{id}");
    }
    println!("legal hold #{id} released; the next sweep removes what it kept past expiry");
    Ok(())
}

async fn principals(path: &Path, command: PrincipalsCommand) -> anyhow::Result<()> {
    use crate::review::access::{self, Role};
    let config = load(path)?;
    let store = open_store(&config).await?;
    let now = SystemClock.now();
    match command {
        PrincipalsCommand::Add {
            name,
            role,
            expires,
            actor,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?}: admin, reviewer, contractor or auditor")
            })?;
            if name.trim().is_empty() || actor.trim().is_empty() {
                bail!("--name and --actor must not be empty");
            }
            let expires_at = expires
                .as_deref()
                .map(config::parse_instant)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if expires_at.is_some_and(|e| e <= now) {
                bail!("--expires must be in the future");
            }
            let token = access::issue_token();
            let audit = operator_audit(
                &actor,
                "principal.added",
                None,
                serde_json::json!({"role": role, "expires_at": expires_at.map(|e| e.format(&Rfc3339).unwrap_or_default())}),
            );
            store
                .add_principal(
                    &crate::store::NewPrincipal {
                        name: name.clone(),
                        role,
                        token_hash: access::token_hash(&token),
                        created_at: now,
                        expires_at,
                    },
                    &audit,
                )
                .await?;
            println!("token: {token}");
            eprintln!("The token is shown once. Give it to {name}; only its hash is stored.");
        }
        PrincipalsCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "name\trole\tstate\texpires_at\tcreated_at")?;
            for p in store.list_principals().await? {
                let state = match (p.revoked_at, p.is_active(now)) {
                    (Some(_), _) => "revoked",
                    (None, true) => "active",
                    (None, false) => "expired",
                };
                writeln!(
                    out,
                    "{}\t{}\t{state}\t{}\t{}",
                    p.name,
                    p.role,
                    p.expires_at
                        .map(|e| e.format(&Rfc3339))
                        .transpose()?
                        .unwrap_or_default(),
                    p.created_at.format(&Rfc3339)?
                )?;
            }
        }
        PrincipalsCommand::Revoke { name, actor } => {
            let audit = operator_audit(&actor, "principal.revoked", None, serde_json::json!({}));
            if !store.revoke_principal(&name, now, &audit).await? {
                bail!("no active principal {name:?}");
            }
            println!("revoked {name}");
        }
    }
    Ok(())
}

async fn suspensions(path: &Path, command: SuspensionsCommand) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    match command {
        SuspensionsCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "id\tstate\ttenant\tkey_id\tcreated_by\treason")?;
            let mut all = store.list_suspensions().await?;
            all.sort_by_key(|s| (s.lifted_at.is_some(), s.id));
            for s in all {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    s.id,
                    if s.lifted_at.is_some() {
                        "lifted"
                    } else {
                        "in force"
                    },
                    s.tenant,
                    s.key_id.as_deref().unwrap_or("*"),
                    s.created_by,
                    s.reason
                )?;
            }
        }
        SuspensionsCommand::Lift { id, actor, reason } => {
            if actor.trim().is_empty() || reason.trim().is_empty() {
                bail!("--actor and --reason must not be empty");
            }
            let tenant = store
                .list_suspensions()
                .await?
                .into_iter()
                .find(|s| s.id == id)
                .map(|s| s.tenant);
            let audit = operator_audit(
                &actor,
                "suspension.lifted",
                tenant,
                serde_json::json!({ "reason": reason }),
            );
            let by = format!("operator:{actor}");
            if !store
                .lift_suspension(id, &by, SystemClock.now(), &audit)
                .await?
            {
                bail!("no suspension #{id} in force");
            }
            println!("suspension #{id} lifted; replicas apply it within consent.refresh_interval");
        }
    }
    Ok(())
}

/// The review CLI: a thin client of the admin API.
async fn review(args: ReviewArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = args.url.trim_end_matches('/');
    let request = match &args.command {
        ReviewCommand::List { status, limit } => client
            .get(format!("{base}/admin/v1/review/items"))
            .query(&[("status", status.as_str()), ("limit", &limit.to_string())]),
        ReviewCommand::Show { id } => client.get(format!("{base}/admin/v1/review/items/{id}")),
        ReviewCommand::Claim => client.post(format!("{base}/admin/v1/review/claim")),
        ReviewCommand::Resolve {
            id,
            resolution,
            note,
        } => client
            .post(format!("{base}/admin/v1/review/items/{id}/resolve"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({"resolution": resolution, "note": note}).to_string()),
    };
    let response = request.bearer_auth(&args.token).send().await?;
    let status = response.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        println!("no open item");
        return Ok(());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await?).unwrap_or_default();
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("request failed");
        bail!("{status}: {message}");
    }
    match args.command {
        ReviewCommand::List { .. } => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "record_id\tseverity\tstatus\tassignee\ttenant\trules\tcreated_at"
            )?;
            for item in body["data"].as_array().into_iter().flatten() {
                let rules: Vec<&str> = item["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["rule"].as_str())
                    .collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    item["record_id"].as_str().unwrap_or(""),
                    item["severity"].as_str().unwrap_or(""),
                    item["status"].as_str().unwrap_or(""),
                    item["assignee"].as_str().unwrap_or("-"),
                    item["tenant"].as_str().unwrap_or(""),
                    rules.join(","),
                    item["created_at"].as_str().unwrap_or("")
                )?;
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(())
}

async fn audit_verify(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            verifier.check(entry)?;
        }
    }
    // The head row is written with every entry: a log that ends before it
    // lost its tail.
    let (head_seq, head_hash) = store.audit_head().await?;
    let (seq, hash) = verifier.head().unwrap_or((0, crate::audit::GENESIS_HASH));
    if (seq, hash) != (head_seq, head_hash.as_str()) {
        bail!("the audit log ends at entry {seq} but its head records entry {head_seq}: entries are missing");
    }
    match verifier.head() {
        Some((seq, hash)) => println!(
            "audit log intact: {} entries, head #{seq} {hash}",
            verifier.checked()
        ),
        None => println!("audit log is empty"),
    }
    Ok(())
}

fn fingerprint(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let Some(secret) = config.auth.fingerprint_key.as_ref() else {
        bail!("auth.fingerprint_key is not configured");
    };
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let key = line.trim();
    if key.is_empty() {
        bail!("no key on standard input");
    }
    println!("{}", auth::fingerprint(secret, key));
    Ok(())
}
