//! What each subcommand does. `main` parses and calls [`run`].

mod api_keys;
mod attest;
mod audit;
pub mod cli;
mod consent;
mod encryption_keys;
mod export;
mod retention;
mod review;

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use time::format_description::well_known::Rfc3339;

use crate::commands::cli::{
    AuditCommand, Cli, Command, ConsentCommand, ConsentRecordArgs, ExportCommand,
    ExportTrainingArgs, HoldAddArgs, HoldCommand, KeysCommand, PrincipalsCommand, ReviewArgs,
    ReviewCommand, SuspensionsCommand,
};
use crate::config::{self, Config};
use crate::domain::audit::AuditEvent;
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::RecordId;
use crate::domain::{ConsentEvent, TenantId};
use crate::export::ExportOptions;
use crate::policy::training::latest_effective;
use crate::proxy::auth;
use crate::startup::Gateway;
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
        Command::Consent(ConsentCommand::Record(args)) => {
            consent::consent_record(&cli.config, args).await
        }
        Command::Consent(ConsentCommand::Show { tenant }) => {
            consent::consent_show(&cli.config, &tenant).await
        }
        Command::ApiKeys(command) | Command::Keys(KeysCommand::Api(command)) => {
            api_keys::run(&cli.config, command)
        }
        Command::EncryptionKeys(command) | Command::Keys(KeysCommand::Encryption(command)) => {
            encryption_keys::run(&cli.config, command).await
        }
        Command::Healthcheck { url } => healthcheck(&url).await,
        Command::Export(ExportCommand::Training(args)) => {
            export::export_training(&cli.config, args).await
        }
        Command::Audit(AuditCommand::Verify) => audit::audit_verify(&cli.config).await,
        Command::Attest(args) => attest::run(&cli.config, args).await,
        Command::Sweep { dry_run } => retention::sweep(&cli.config, dry_run).await,
        Command::Hold(HoldCommand::Add(args)) => retention::hold_add(&cli.config, args).await,
        Command::Erase(args) => retention::erase(&cli.config, args).await,
        Command::Hold(HoldCommand::List { all }) => retention::hold_list(&cli.config, all).await,
        Command::Hold(HoldCommand::Release { id, actor, reason }) => {
            retention::hold_release(&cli.config, id, &actor, &reason).await
        }
        Command::Principals(command) => review::principals(&cli.config, command).await,
        Command::Review(args) => review::review(args).await,
        Command::Suspensions(command) => review::suspensions(&cli.config, command).await,
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
        .with_context(|| format!("opening {}", config::redact_url(&config.database.url)))?;
    Ok(store)
}

async fn migrate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    store.migrate().await?;
    crate::jobs::upkeep::prepare_partitions(&config, store.as_ref(), &SystemClock).await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

fn known_tenant(config: &Config, tenant: &str) -> anyhow::Result<TenantId> {
    if !config.tenants.iter().any(|t| t.id.0 == tenant) {
        bail!("no tenant {tenant:?} in the configuration");
    }
    Ok(TenantId(tenant.to_owned()))
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
