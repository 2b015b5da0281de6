//! SQLite: the statements behind `custodian attest` (instants are
//! microseconds since the Unix epoch; ids are 16-byte blobs).

use super::*;
use crate::store::proof::{
    shared_sql, Check, Finding, JobStatus, ProofStore, Scope, TaggedRecord, VersionUse,
};

/// Names the four parameters every check takes (see `Scope`).
macro_rules! header {
    () => {
        "WITH p(since, until, cutoff, tenant) AS (SELECT ?1, ?2, ?3, ?4) "
    };
}

fn statement(check: Check) -> &'static str {
    match check {
        Check::ContentPastExpiry => concat!(header!(), shared_sql!(content_past_expiry)),
        Check::ContentInClear => concat!(
            header!(),
            shared_sql!(content_in_clear "json_extract(d.document, '$.encryption') = 1")
        ),
        Check::ZdrContent => concat!(header!(), shared_sql!(zdr_content)),
        Check::ExportedUnusable => concat!(header!(), shared_sql!(exported_unusable)),
        Check::ExportsUnaudited => concat!(
            header!(),
            shared_sql!(exports_unaudited "lower(substr(hex(r.export_id), 1, 8) || '-' || substr(hex(r.export_id), 9, 4) || '-' || substr(hex(r.export_id), 13, 4) || '-' || substr(hex(r.export_id), 17, 4) || '-' || substr(hex(r.export_id), 21, 12))")
        ),
        Check::ContractorReadsUnassigned => concat!(
            header!(),
            shared_sql!(contractor_reads_unassigned "json_extract(a.details, '$.assignee')")
        ),
    }
}
#[async_trait]
impl ProofStore for SqliteStore {
    async fn check(&self, check: Check, scope: &Scope) -> Result<Finding, StoreError> {
        let sql = statement(check);
        let offending = sqlx::query_scalar::<_, i64>(sql)
            .bind(to_micros(scope.since))
            .bind(to_micros(scope.until))
            .bind(to_micros(scope.cutoff))
            .bind(scope.tenant_param())
            .fetch_one(&self.pool)
            .await?;
        Ok(Finding { sql, offending })
    }

    fn tagged_records(&self, scope: &Scope) -> BoxStream<'_, Result<TaggedRecord, StoreError>> {
        static TAGGED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {META_COLUMNS} FROM record_meta \
                 WHERE received_at >= ?1 AND received_at < ?2 AND (?3 = '' OR tenant_id = ?3) \
                 ORDER BY received_at, id"
            )
        });
        sqlx::query(TAGGED.as_str())
            .bind(to_micros(scope.since))
            .bind(to_micros(scope.until))
            .bind(scope.tenant_param().to_owned())
            .fetch(&self.pool)
            .map(|row| Ok(TaggedRecord::from(meta_from_row(&row?)?)))
            .boxed()
    }

    async fn policy_versions_used(&self, scope: &Scope) -> Result<Vec<VersionUse>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.policy_version, u.first, u.last, u.records, d.document FROM ( \
             SELECT policy_version, min(received_at) AS first, max(received_at) AS last, \
             count(*) AS records FROM record_meta WHERE received_at >= ?1 AND received_at < ?2 \
             AND (?3 = '' OR tenant_id = ?3) GROUP BY policy_version \
             UNION ALL SELECT policy_version, first_seen_at, first_seen_at, 0 FROM policy_documents \
             WHERE first_seen_at >= ?1 AND first_seen_at < ?2 AND ?3 = '') u \
             LEFT JOIN policy_documents d ON d.policy_version = u.policy_version ORDER BY 2, 1",
        )
        .bind(to_micros(scope.since))
        .bind(to_micros(scope.until))
        .bind(scope.tenant_param().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let mut used = Vec::with_capacity(rows.len());
        for r in &rows {
            used.push(VersionUse {
                version: r.try_get(0)?,
                first: from_micros(r.try_get(1)?)?,
                last: from_micros(r.try_get(2)?)?,
                records: r.try_get(3)?,
                document: r.try_get(4)?,
            });
        }
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
             VALUES (?1, ?2, ?3) ON CONFLICT (policy_version) DO NOTHING",
        )
        .bind(version)
        .bind(document)
        .bind(to_micros(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn policy_document(&self, version: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT document FROM policy_documents WHERE policy_version = ?1")
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
            "INSERT INTO job_status (job, last_ok_at, last_failed_at, runs) VALUES (?1, ?2, ?3, 1) \
             ON CONFLICT (job) DO UPDATE SET \
             last_ok_at = COALESCE(excluded.last_ok_at, job_status.last_ok_at), \
             last_failed_at = COALESCE(excluded.last_failed_at, job_status.last_failed_at), \
             runs = job_status.runs + 1",
        )
        .bind(job)
        .bind(ok.then(|| to_micros(at)))
        .bind((!ok).then(|| to_micros(at)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn job_status(&self, job: &str) -> Result<Option<JobStatus>, StoreError> {
        let row =
            sqlx::query("SELECT last_ok_at, last_failed_at, runs FROM job_status WHERE job = ?1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else { return Ok(None) };
        let instant = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
            r.try_get::<Option<i64>, _>(i)?.map(from_micros).transpose()
        };
        Ok(Some(JobStatus {
            last_ok_at: instant(0)?,
            last_failed_at: instant(1)?,
            runs: r.try_get(2)?,
        }))
    }
}
