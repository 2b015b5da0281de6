//! PostgreSQL: the statements behind `custodian attest`.

use super::*;
use crate::store::proof::{
    shared_sql, Check, Finding, JobStatus, ProofStore, Scope, TaggedRecord, VersionUse,
};

/// Names the four parameters every check takes (see `Scope`).
macro_rules! header {
    () => {
        "WITH p(since, until, cutoff, tenant) AS (SELECT $1::timestamptz, $2::timestamptz, $3::timestamptz, $4::text) "
    };
}

fn statement(check: Check) -> &'static str {
    match check {
        Check::ContentPastExpiry => concat!(header!(), shared_sql!(content_past_expiry)),
        Check::ContentInClear => concat!(
            header!(),
            shared_sql!(content_in_clear "(d.document::jsonb -> 'encryption') = 'true'::jsonb")
        ),
        Check::ZdrContent => concat!(header!(), shared_sql!(zdr_content)),
        Check::ExportedUnusable => concat!(header!(), shared_sql!(exported_unusable)),
        Check::ExportsUnaudited => concat!(
            header!(),
            shared_sql!(exports_unaudited "r.export_id::text")
        ),
        Check::ContractorReadsUnassigned => concat!(
            header!(),
            shared_sql!(contractor_reads_unassigned "(a.details::jsonb ->> 'assignee')")
        ),
    }
}
#[async_trait]
impl ProofStore for PgStore {
    async fn check(&self, check: Check, scope: &Scope) -> Result<Finding, StoreError> {
        let sql = statement(check);
        let offending = sqlx::query_scalar::<_, i64>(sql)
            .bind(scope.since)
            .bind(scope.until)
            .bind(scope.cutoff)
            .bind(scope.tenant_param())
            .fetch_one(&self.pool)
            .await?;
        Ok(Finding { sql, offending })
    }

    fn tagged_records(&self, scope: &Scope) -> BoxStream<'_, Result<TaggedRecord, StoreError>> {
        static TAGGED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {META_COLUMNS} FROM record_meta \
                 WHERE received_at >= $1 AND received_at < $2 AND ($3 = '' OR tenant_id = $3) \
                 ORDER BY received_at, id"
            )
        });
        sqlx::query(TAGGED.as_str())
            .bind(scope.since)
            .bind(scope.until)
            .bind(scope.tenant_param().to_owned())
            .fetch(&self.pool)
            .map(|row| Ok(TaggedRecord::from(meta_from_row(&row?)?)))
            .boxed()
    }

    async fn policy_versions_used(&self, scope: &Scope) -> Result<Vec<VersionUse>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.policy_version, u.first, u.last, u.records, d.document FROM ( \
             SELECT policy_version, min(received_at) AS first, max(received_at) AS last, \
             count(*) AS records FROM record_meta WHERE received_at >= $1 AND received_at < $2 \
             AND ($3 = '' OR tenant_id = $3) GROUP BY policy_version \
             UNION ALL SELECT policy_version, first_seen_at, first_seen_at, 0 FROM policy_documents \
             WHERE first_seen_at >= $1 AND first_seen_at < $2 AND $3 = '') u \
             LEFT JOIN policy_documents d ON d.policy_version = u.policy_version ORDER BY 2, 1",
        )
        .bind(scope.since)
        .bind(scope.until)
        .bind(scope.tenant_param().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let used = rows
            .iter()
            .map(|r| {
                Ok(VersionUse {
                    version: r.try_get(0)?,
                    first: r.try_get(1)?,
                    last: r.try_get(2)?,
                    records: r.try_get(3)?,
                    document: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(crate::store::proof::merge_uses(used))
    }

    async fn save_policy_document(
        &self,
        version: &str,
        document: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policy_documents (policy_version, document, first_seen_at) \
             VALUES ($1, $2, $3) ON CONFLICT (policy_version) DO NOTHING",
        )
        .bind(version)
        .bind(document)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn policy_document(&self, version: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT document FROM policy_documents WHERE policy_version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn record_job_run(
        &self,
        job: &str,
        at: OffsetDateTime,
        ok: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO job_status (job, last_ok_at, last_failed_at, runs) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (job) DO UPDATE SET \
             last_ok_at = COALESCE(EXCLUDED.last_ok_at, job_status.last_ok_at), \
             last_failed_at = COALESCE(EXCLUDED.last_failed_at, job_status.last_failed_at), \
             runs = job_status.runs + 1",
        )
        .bind(job)
        .bind(ok.then_some(at))
        .bind((!ok).then_some(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn job_status(&self, job: &str) -> Result<Option<JobStatus>, StoreError> {
        let row =
            sqlx::query("SELECT last_ok_at, last_failed_at, runs FROM job_status WHERE job = $1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(JobStatus {
                last_ok_at: r.try_get(0)?,
                last_failed_at: r.try_get(1)?,
                runs: r.try_get(2)?,
            })
        })
        .transpose()
    }
}
