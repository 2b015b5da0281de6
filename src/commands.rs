//! What each subcommand does. `main` parses and calls [`run`].

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use time::format_description::well_known::Rfc3339;

use crate::auth;
use crate::cli::{Cli, Command, ConsentCommand, ConsentRecordArgs, KeysCommand};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::domain::{ConsentEvent, TenantId};
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
        actor: args.actor,
        source: args.source,
        note: args.note,
    };
    let store = open_store(&config).await?;
    let seq = store.append_consent(&event).await?;
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
