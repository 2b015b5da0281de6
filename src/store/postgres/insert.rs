//! PostgreSQL: a batch of records inserted with one `UNNEST` statement per
//! table, each column bound as an array.

use sqlx::PgConnection;

use crate::domain::records::{RecordContent, RecordMeta};
use crate::domain::review::ReviewFlag;

/// One column of the batch, as the array bound to its `UNNEST` argument.
fn column<'a, I, T>(items: &'a [I], value: impl Fn(&'a I) -> T) -> Vec<T> {
    items.iter().map(value).collect()
}

pub(super) async fn insert_metas(
    tx: &mut PgConnection,
    sql: &str,
    metas: &[&RecordMeta],
) -> Result<(), sqlx::Error> {
    sqlx::query(sql)
        .bind(column(metas, |m| m.id.0))
        .bind(column(metas, |m| m.request_id.as_str()))
        .bind(column(metas, |m| m.tenant.0.as_str()))
        .bind(column(metas, |m| m.key_id.0.as_str()))
        .bind(column(metas, |m| m.route.as_str()))
        .bind(column(metas, |m| m.method.as_str()))
        .bind(column(metas, |m| m.path.as_str()))
        .bind(column(metas, |m| i32::from(m.status)))
        .bind(column(metas, |m| m.model.as_deref()))
        .bind(column(metas, |m| m.usage.prompt_tokens))
        .bind(column(metas, |m| m.usage.completion_tokens))
        .bind(column(metas, |m| m.usage.total_tokens))
        .bind(column(metas, |m| m.streamed))
        .bind(column(metas, |m| m.outcome.as_str()))
        .bind(column(metas, |m| m.total_us))
        .bind(column(metas, |m| m.upstream_ttfb_us))
        .bind(column(metas, |m| m.upstream_total_us))
        .bind(column(metas, |m| m.request_bytes))
        .bind(column(metas, |m| m.response_bytes))
        .bind(column(metas, |m| m.training.usable))
        .bind(column(metas, |m| m.training.basis.as_str()))
        .bind(column(metas, |m| m.profile.as_str()))
        .bind(column(metas, |m| m.policy_version.as_str()))
        .bind(column(metas, |m| m.zero_data_retention))
        .bind(column(metas, |m| m.received_at))
        .bind(column(metas, |m| m.content_expires_at))
        .bind(column(metas, |m| m.expires_at))
        .bind(column(metas, |m| m.end_user_hash.as_deref()))
        .execute(tx)
        .await
        .map(|_| ())
}

pub(super) async fn insert_contents(
    tx: &mut PgConnection,
    sql: &str,
    rows: &[(&RecordMeta, &RecordContent)],
) -> Result<(), sqlx::Error> {
    sqlx::query(sql)
        .bind(column(rows, |(m, _)| m.id.0))
        .bind(column(rows, |(m, _)| m.tenant.0.as_str()))
        .bind(column(rows, |(_, c)| c.request_body.as_slice()))
        .bind(column(rows, |(_, c)| c.request_truncated))
        .bind(column(rows, |(_, c)| c.response_body.as_slice()))
        .bind(column(rows, |(_, c)| c.response_truncated))
        .bind(column(rows, |(m, _)| m.received_at))
        .bind(column(rows, |(_, c)| c.expires_at))
        .bind(column(rows, |(_, c)| c.sealed))
        .bind(column(rows, |(_, c)| c.compressed))
        .execute(tx)
        .await
        .map(|_| ())
}

pub(super) async fn insert_reviews(
    tx: &mut PgConnection,
    sql: &str,
    rows: &[(&RecordMeta, &ReviewFlag)],
) -> Result<(), sqlx::Error> {
    sqlx::query(sql)
        .bind(column(rows, |(m, _)| m.id.0))
        .bind(column(rows, |(m, _)| m.tenant.0.as_str()))
        .bind(column(rows, |(_, f)| f.severity.as_str()))
        .bind(column(rows, |(_, f)| f.action.as_str()))
        .bind(column(rows, |(_, f)| f.reasons_json()))
        .bind(column(rows, |(_, f)| f.content_kept))
        .bind(column(rows, |(m, _)| m.received_at))
        .bind(column(rows, |(_, f)| f.expires_at))
        .execute(tx)
        .await
        .map(|_| ())
}
