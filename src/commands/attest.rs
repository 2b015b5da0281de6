//! `custodian attest`, `attest verify`, `attest public-key`.

use super::*;
use crate::attest::{self, signature, Period, Report, Sources, Verdict};
use crate::commands::cli::{AttestArgs, AttestCommand};

pub(super) async fn run(path: &Path, args: AttestArgs) -> anyhow::Result<()> {
    match args.command {
        Some(AttestCommand::Verify { report, public_key }) => verify(&report, &public_key),
        Some(AttestCommand::PublicKey) => {
            let config = load(path)?;
            println!("{}", signature::public_key(signing_key(&config)?)?);
            Ok(())
        }
        None => report(path, args).await,
    }
}

fn signing_key(config: &Config) -> anyhow::Result<&str> {
    match &config.attest.signing_key {
        Some(key) => Ok(key.expose()),
        None => bail!(
            "no [attest] signing_key in the configuration: a report written with --out is signed"
        ),
    }
}

async fn report(path: &Path, args: AttestArgs) -> anyhow::Result<()> {
    let config = load(path)?;
    // Fail before the work, not after it.
    let seed = args
        .out
        .as_ref()
        .map(|_| signing_key(&config))
        .transpose()?;
    let now = SystemClock.now();
    let instant = |s: &Option<String>, default| match s {
        Some(s) => config::parse_instant(s).map_err(|e| anyhow::anyhow!(e)),
        None => Ok(default),
    };
    let period = Period {
        since: instant(&args.since, time::OffsetDateTime::UNIX_EPOCH)?,
        until: instant(&args.until, now)?,
        tenant: args
            .tenant
            .as_deref()
            .map(|t| known_tenant(&config, t))
            .transpose()?,
    };
    let store = open_store(&config).await?;
    let keys =
        crate::startup::load_content_keys(&config, Some(store.as_ref()), None, false).await?;
    let sources = Sources {
        config: &config,
        store: store.as_ref(),
        keys: keys.as_deref(),
    };
    let report = attest::attest(&sources, &period, now).await?;
    print_report(&report);
    if let (Some(out), Some(seed)) = (&args.out, seed) {
        let signed = signature::sign(&serde_json::to_value(&report)?, seed)?;
        std::fs::write(out, signed).with_context(|| format!("writing {}", out.display()))?;
        println!("signed report written to {}", out.display());
    }
    let failing: Vec<String> = report
        .failing()
        .map(|c| format!("{} {} ({} offending)", c.id, c.name, c.offending))
        .collect();
    if !failing.is_empty() {
        bail!("claims failed: {}", failing.join(", "));
    }
    Ok(())
}

fn print_report(report: &Report) {
    let p = &report.parameters;
    println!(
        "attestation of {} store, records received {} to {}{}; state at {}",
        report.store,
        p.since,
        p.until,
        if p.tenant.is_empty() {
            String::new()
        } else {
            format!(", tenant {}", p.tenant)
        },
        p.cutoff,
    );
    for claim in &report.claims {
        let verdict = match claim.verdict {
            Verdict::Holds => "holds",
            Verdict::Fails => "FAILS",
            Verdict::NotApplicable => "not applicable",
        };
        println!("{} {}: {verdict}", claim.id, claim.name);
        for e in claim.evidence.iter().filter(|e| e.offending > 0) {
            println!("    {}: {}", e.what, e.offending);
        }
        for note in &claim.notes {
            println!("    {note}");
        }
    }
    for hold in &report.legal_holds {
        println!(
            "legal hold #{} on {}{}: {:?} by {}, until {}{}",
            hold.id,
            hold.tenant,
            hold.record
                .as_ref()
                .map(|r| format!(" record {r}"))
                .unwrap_or_default(),
            hold.reason,
            hold.actor,
            hold.ends_at,
            hold.released_at
                .as_ref()
                .map(|r| format!(" (released {r})"))
                .unwrap_or_default(),
        );
    }
    for e in &report.erasures {
        println!(
            "erasure of {} at {} by {}",
            e.tenant.as_deref().unwrap_or("?"),
            e.at,
            e.actor
        );
    }
    for v in &report.policy_versions {
        println!(
            "policy {}: {} records, {} to {}{}",
            v.version,
            v.records,
            v.first_record,
            v.last_record,
            if v.document.is_some() {
                ""
            } else {
                " (no document)"
            }
        );
    }
}

fn verify(path: &Path, public_key: &str) -> anyhow::Result<()> {
    // A key given as a file is read from it.
    let key = match std::fs::read_to_string(public_key) {
        Ok(text) => text,
        Err(_) => public_key.to_owned(),
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let report = signature::verify(&bytes, &key)?;
    let held = report.get("holds").and_then(serde_json::Value::as_bool);
    println!(
        "signature valid: report of {} generated {}; {}",
        report.get("store").and_then(|v| v.as_str()).unwrap_or("?"),
        report
            .get("generated_at")
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
        match held {
            Some(true) => "every claim held",
            _ => "some claims failed",
        }
    );
    Ok(())
}
