//! PostgreSQL: the sweep (partition drops, batched deletes, holds kept), under one advisory lock.

use super::*;

/// Held by the replica that sweeps ("cstw").
pub(super) const SWEEP_LOCK: i64 = 0x6373_7477;

/// The partitioned tables the sweeper empties, with their record-id column.
pub(super) const SWEPT_PARENTS: [(&str, &str); 2] =
    [("record_content", "record_id"), ("record_meta", "id")];

/// True for a row (`t`) that an active legal hold covers; `$1` is now.
pub(super) fn held(id_column: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.ends_at > $1 \
         AND h.tenant_id = t.tenant_id AND (h.record_id IS NULL OR h.record_id = t.{id_column}))"
    )
}

pub(super) async fn sweep_locked(
    conn: &mut sqlx::PgConnection,
    now: OffsetDateTime,
    dry_run: bool,
    batch_size: usize,
) -> Result<SweepReport, sqlx::Error> {
    let mut report = SweepReport::default();
    if !dry_run {
        finish_interrupted_drops(conn).await?;
    }
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    for (parent, id_column) in SWEPT_PARENTS {
        for part in partitions_of(conn, parent).await? {
            if part.to > now.date() {
                break;
            }
            let has_held: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {} t WHERE {})",
                part.name,
                held(id_column)
            ))
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            if has_held {
                continue; // its unheld rows go in the batched delete below
            }
            // A dry run counts these rows with the rest below.
            if !dry_run {
                let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", part.name))
                    .fetch_one(&mut *conn)
                    .await?;
                // CONCURRENTLY: inserts and readers of the parent are not
                // blocked; an interrupted detach is finished next time. A
                // long reader (an export) would hold it up: give up after
                // DETACH_WAIT and let the batched delete below do the work.
                if let Err(e) = detach(conn, parent, &part.name).await {
                    if e.as_database_error().and_then(|d| d.code()).as_deref() != Some("55P03") {
                        return Err(e);
                    }
                    tracing::warn!(partition = %part.name, "partition busy; its rows are deleted in batches instead");
                    continue;
                }
                sqlx::query(&format!("DROP TABLE IF EXISTS {}", part.name))
                    .execute(&mut *conn)
                    .await?;
                report.add(parent, u64::try_from(rows).unwrap_or(0));
            }
            report.partitions.push(part.name);
        }
        // Rows past expiry in partitions that are still live (or kept for a hold).
        let expired = format!(
            "FROM {parent} t WHERE t.expires_at <= $1 AND NOT {}",
            held(id_column)
        );
        let key = format!("{id_column}, expires_at");
        let n = remove_rows(conn, parent, &key, &expired, now, dry_run, batch).await?;
        report.add(parent, n);
    }
    let items = format!(
        "FROM review_items t WHERE t.expires_at <= $1 AND NOT {}",
        held("record_id")
    );
    let n = remove_rows(
        conn,
        "review_items",
        "record_id",
        &items,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("review_items", n);
    let marks = "FROM training_exports x WHERE x.expires_at <= $1 \
        AND NOT EXISTS (SELECT 1 FROM record_meta m WHERE m.id = x.record_id)";
    let n = remove_rows(
        conn,
        "training_exports",
        "record_id",
        marks,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("training_exports", n);
    let owners = "FROM upstream_objects x WHERE x.expires_at <= $1";
    let n = remove_rows(
        conn,
        "upstream_objects",
        "route, object_id",
        owners,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("upstream_objects", n);
    for (table, key) in [
        ("console_sessions", "id_hash"),
        ("console_sign_ins", "id_hash"),
    ] {
        let selection = format!("FROM {table} x WHERE x.expires_at <= $1");
        let n = remove_rows(conn, table, key, &selection, now, dry_run, batch).await?;
        report.add(table, n);
    }
    Ok(report)
}

/// Delete the rows `selection` (a `FROM … WHERE …` with `$1` = now) picks,
/// `batch` at a time by `key` columns, each batch its own statement; or,
/// dry, count them.
pub(super) async fn remove_rows(
    conn: &mut sqlx::PgConnection,
    table: &str,
    key: &str,
    selection: &str,
    now: OffsetDateTime,
    dry_run: bool,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    if dry_run {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) {selection}"))
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
        return Ok(u64::try_from(rows).unwrap_or(0));
    }
    let delete =
        format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} {selection} LIMIT $2)");
    let mut removed = 0;
    loop {
        let n = sqlx::query(&delete)
            .bind(now)
            .bind(batch)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        removed += n;
        if n == 0 {
            return Ok(removed);
        }
    }
}
