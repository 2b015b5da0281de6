//! PostgreSQL partitions: daily for content, monthly for metadata; created ahead, detached and dropped when past their retention.

use super::*;

/// Serialises partition creation between replicas (any constant works; this
/// one spells "cstd" in ASCII).
pub(super) const PARTITION_LOCK: i64 = 0x6373_7464;

pub(super) const EXISTING_PARTITIONS: &str = "SELECT c.relname FROM pg_inherits i \
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
    WHERE p.relname IN ('record_meta', 'record_content')";

/// How long a partition detach may wait for readers of the parent.
pub(super) const DETACH_WAIT: &str = "10s";

pub(super) async fn detach(
    conn: &mut sqlx::PgConnection,
    parent: &str,
    part: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET lock_timeout = '{DETACH_WAIT}'"))
        .execute(&mut *conn)
        .await?;
    let result = sqlx::query(&format!(
        "ALTER TABLE {parent} DETACH PARTITION {part} CONCURRENTLY"
    ))
    .execute(&mut *conn)
    .await;
    sqlx::query("RESET lock_timeout")
        .execute(&mut *conn)
        .await?;
    result.map(|_| ())
}

/// Complete what an interrupted sweep left: a detach still pending, or a
/// detached partition not yet dropped.
pub(super) async fn finish_interrupted_drops(
    conn: &mut sqlx::PgConnection,
) -> Result<(), sqlx::Error> {
    let pending: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.relname::text, c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE i.inhdetachpending AND p.relname IN ('record_meta', 'record_content')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (parent, part) in pending {
        sqlx::query(&format!(
            "ALTER TABLE {parent} DETACH PARTITION {part} FINALIZE"
        ))
        .execute(&mut *conn)
        .await?;
    }
    let orphans: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition \
         AND (c.relname ~ '^record_content_p[0-9]{8}$' OR c.relname ~ '^record_meta_p[0-9]{6}$')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for part in orphans {
        tracing::info!(partition = %part, "dropping a partition an interrupted sweep detached");
        sqlx::query(&format!("DROP TABLE IF EXISTS {part}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The attached partitions of `parent`, oldest first, with their bounds
/// read back from the names this store gives them.
pub(super) async fn partitions_of(
    conn: &mut sqlx::PgConnection,
    parent: &str,
) -> Result<Vec<Partition>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 AND NOT i.inhdetachpending",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await?;
    let mut parts: Vec<Partition> = names.iter().filter_map(|n| parse_partition(n)).collect();
    parts.sort_by_key(|p| p.from);
    Ok(parts)
}

pub(super) fn parse_partition(name: &str) -> Option<Partition> {
    let digits = |s: &str, range: std::ops::Range<usize>| s.get(range)?.parse::<u32>().ok();
    if let Some(stamp) = name
        .strip_prefix("record_content_p")
        .filter(|s| s.len() == 8)
    {
        let month = Month::try_from(u8::try_from(digits(stamp, 4..6)?).ok()?).ok()?;
        let from = Date::from_calendar_date(
            i32::try_from(digits(stamp, 0..4)?).ok()?,
            month,
            u8::try_from(digits(stamp, 6..8)?).ok()?,
        )
        .ok()?;
        return Some(Partition {
            parent: "record_content",
            name: name.to_owned(),
            from,
            to: from.next_day()?,
        });
    }
    let stamp = name
        .strip_prefix("record_meta_p")
        .filter(|s| s.len() == 6)?;
    let month = Month::try_from(u8::try_from(digits(stamp, 4..6)?).ok()?).ok()?;
    let from =
        Date::from_calendar_date(i32::try_from(digits(stamp, 0..4)?).ok()?, month, 1).ok()?;
    Some(Partition {
        parent: "record_meta",
        name: name.to_owned(),
        from,
        to: next_month(from),
    })
}

/// One range partition of `record_content` (a day) or `record_meta` (a month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Partition {
    pub(super) parent: &'static str,
    pub(super) name: String,
    pub(super) from: Date,
    pub(super) to: Date,
}

impl Partition {
    pub(super) fn create_sql(&self) -> String {
        // Names and bounds are generated from dates, never from input.
        format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
            self.name, self.parent, self.from, self.to
        )
    }
}

/// Daily content partitions and monthly metadata partitions from the day
/// of `now` through the given horizons. Records are written with an expiry
/// after now, so none goes into an earlier partition (and the insert path
/// creates one on demand if it must).
pub(super) fn partitions_wanted(
    now: OffsetDateTime,
    content_until: OffsetDateTime,
    metadata_until: OffsetDateTime,
) -> Vec<Partition> {
    let mut out = Vec::new();
    let start = now.date();
    let mut day = start;
    while day <= content_until.date() {
        let Some(next) = day.next_day() else { break };
        out.push(Partition {
            parent: "record_content",
            name: format!("record_content_p{}", day_stamp(day)),
            from: day,
            to: next,
        });
        day = next;
    }
    let mut month = first_of_month(start);
    while month <= metadata_until.date() {
        let next = next_month(month);
        out.push(Partition {
            parent: "record_meta",
            name: format!(
                "record_meta_p{:04}{:02}",
                month.year(),
                u8::from(month.month())
            ),
            from: month,
            to: next,
        });
        month = next;
    }
    out
}

pub(super) fn day_stamp(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

pub(super) fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

pub(super) fn next_month(d: Date) -> Date {
    let (year, month) = match d.month() {
        Month::December => (d.year() + 1, Month::January),
        m => (d.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(d)
}
