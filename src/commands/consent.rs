//! `custodian consent`: record and show training consent.

use super::*;

pub(super) async fn consent_record(path: &Path, args: ConsentRecordArgs) -> anyhow::Result<()> {
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

pub(super) async fn consent_show(path: &Path, tenant: &str) -> anyhow::Result<()> {
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
