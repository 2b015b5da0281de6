//! `custodian sweep`, `custodian hold` and `custodian erase`: retention by hand.

use super::*;

pub(super) async fn sweep(path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = open_store(&config).await?;
    let report = crate::jobs::sweeper::sweep_once(
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
        crate::jobs::sweeper::shred_expired_keys(store.as_ref(), &keys, SystemClock.now()).await;
    }
    Ok(())
}

pub(super) async fn hold_add(path: &Path, args: HoldAddArgs) -> anyhow::Result<()> {
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

pub(super) async fn hold_list(path: &Path, all: bool) -> anyhow::Result<()> {
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

pub(super) async fn hold_release(
    path: &Path,
    id: i64,
    actor: &str,
    reason: &str,
) -> anyhow::Result<()> {
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

pub(super) async fn erase(
    path: &Path,
    args: crate::commands::cli::EraseArgs,
) -> anyhow::Result<()> {
    let config = load(path)?;
    if args.actor.trim().is_empty() {
        bail!("--actor must not be empty");
    }
    let tenant = known_tenant(&config, &args.tenant)?;
    let end_user_hash = match (&args.end_user, &config.auth.end_user_key) {
        (None, _) => None,
        (Some(user), Some(key)) => Some(crate::domain::records::end_user_hash(
            key.expose().as_bytes(),
            &tenant,
            user,
        )),
        (Some(_), None) => bail!(
            "auth.end_user_key is not configured: end-user ids are not recorded, so none can be erased"
        ),
    };
    let store = open_store(&config).await?;
    let keys =
        crate::startup::load_content_keys(&config, Some(store.as_ref()), None, false).await?;
    let files = crate::objects::copies::FileCopies::open(&config.files, Arc::clone(&store))
        .context("opening the file copy store")?
        .with_keys(keys.clone());
    let request = crate::erasure::Request {
        tenant,
        include_metadata: args.include_metadata,
        end_user_hash,
        reason: args.reason,
        actor: format!("operator:{}", args.actor),
        source: cli_source(),
    };
    let erased = crate::erasure::erase(
        &store,
        Some(&files),
        keys.as_deref(),
        &request,
        SystemClock.now(),
    )
    .await?;
    println!(
        "erased tenant {}: {} content rows, {} review items, {} file copies, {} metadata rows, \
         {} export marks, {} deleted-object rows",
        request.tenant,
        erased.content_rows,
        erased.review_items,
        erased.file_copies,
        erased.metadata_rows,
        erased.export_marks,
        erased.upstream_object_rows
    );
    for object in &erased.files_not_removed {
        println!("file copy {object} could not be removed from the blob store: remove it by hand");
    }
    for kept in &erased.kept {
        println!(
            "kept by legal hold #{} ({:?}): {} content rows of {}",
            kept.hold_id,
            kept.reason,
            kept.content_rows_kept,
            kept.record
                .as_deref()
                .unwrap_or("every record of the tenant")
        );
    }
    match &erased.tenant_key {
        Some(state) if state == "destroyed" => println!(
            "tenant key destroyed: every copy of its content, backups included, is unreadable \
             (content sealed before tenant keys existed: until its day's key goes)"
        ),
        Some(state) => println!("tenant key {state}"),
        None => {
            println!("encryption is off: backups taken before now still hold this content in clear")
        }
    }
    Ok(())
}
