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
    ExportTrainingArgs, KeysCommand,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::domain::{ConsentEvent, TenantId};
use crate::export::{self, ExportOptions};
use crate::policy::training::latest_effective;
use crate::startup::{self, Gateway};
use crate::store;
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
        Command::Healthcheck { url } => healthcheck(&url).await,
        Command::Export(ExportCommand::Training(args)) => export_training(&cli.config, args).await,
        Command::Audit(AuditCommand::Verify) => audit_verify(&cli.config).await,
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
