//! `custodian attest`: a clean store attests on both backends, and each
//! claim, broken on purpose the way a bug or an operator could break it
//! (the database's own guards bypassed), is the one the report names.

use std::collections::BTreeSet;
use std::sync::Arc;

use custodian::attest::{self, Period, Sources, Verdict};
use custodian::domain::access::Role;
use custodian::domain::audit::AuditEvent;
use custodian::domain::clock::SystemClock;
use custodian::domain::{ConsentEvent, RecordId, TenantId};
use custodian::export::{self, ExportOptions};
use indicatif::ProgressBar;
use serde_json::json;
use sqlx::{Connection, Executor};
use time::{Duration, OffsetDateTime};

use crate::helpers::*;
use crate::review::principal_in;

/// A legal hold on one record of acme, placed now by counsel; its id.
pub(crate) async fn hold_record(
    store: &dyn custodian::store::Store,
    record: RecordId,
    reason: &str,
) -> i64 {
    let now = OffsetDateTime::now_utc();
    store
        .add_hold(
            &custodian::store::NewHold {
                tenant: TenantId("acme".into()),
                record: Some(record),
                reason: reason.into(),
                created_by: "operator:counsel".into(),
                created_at: now,
                ends_at: now + Duration::days(30),
            },
            &AuditEvent {
                at: now,
                actor: "operator:counsel".into(),
                action: "legal_hold.added".into(),
                tenant: Some(TenantId("acme".into())),
                subject: None,
                source: "test".into(),
                details: json!({}),
            },
        )
        .await
        .unwrap()
}

struct Attested {
    app: TestApp,
    backend: Backend,
    _keys: tempfile::TempDir,
    _export: tempfile::TempDir,
    /// A record tagged not usable (default opt-out).
    opted_out: RecordId,
    /// The zero-data-retention tenant's record.
    zdr: RecordId,
    /// A flagged item that is not the contractor's.
    unassigned: RecordId,
}

impl Attested {
    /// The claims that fail now, by name.
    async fn failing(&self) -> BTreeSet<&'static str> {
        let report = self.report().await;
        report.failing().map(|c| c.name).collect()
    }

    async fn report(&self) -> attest::Report {
        let keys = self.app.keys();
        let sources = Sources {
            config: &self.app.config,
            store: self.app.store.as_ref(),
            keys: Some(keys.as_ref()),
        };
        let now = OffsetDateTime::now_utc();
        let period = Period {
            since: now - Duration::days(1),
            until: now + Duration::minutes(1),
            tenant: None,
        };
        attest::attest(&sources, &period, now).await.unwrap()
    }

    /// Run `sql` (PostgreSQL's spelling, SQLite's) straight on the database.
    async fn exec(&self, postgres: &str, sqlite: &str) {
        let url = self.app._db.url();
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                c.execute(postgres).await.unwrap();
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
                c.execute(sqlite).await.unwrap();
            }
        }
    }

    /// An id as a literal of the backend's SQL.
    fn id(&self, id: RecordId) -> String {
        match self.backend {
            Backend::Postgres => format!("'{}'::uuid", id.0),
            Backend::Sqlite => format!("X'{}'", id.0.simple()),
        }
    }
}

/// A gateway with encryption on that has done everything the claims are
/// about: usable and opted-out records, a ZDR request, a flagged item a
/// contractor was assigned and read, an export, a hold and a sweep.
async fn attested(backend: Backend) -> Attested {
    let keys = tempfile::tempdir().unwrap();
    let builder = ConfigBuilder {
        extra: format!(
            "[encryption]\nenabled = true\nkey_dir = \"{}\"\nkek = {{ env = \"TEST_KEK\" }}\n\n\
             [sweeper]\nenabled = false\n\n{}",
            keys.path().display(),
            crate::review::RULES,
        ),
        ..Default::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let chat = |text: &str| json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    let opted_out = RecordId(
        record_id(&app.chat(MANAGED_KEY, chat("before consent")).await)
            .parse()
            .unwrap(),
    );
    let now = OffsetDateTime::now_utc();
    append_consent(
        app.store.as_ref(),
        &ConsentEvent {
            tenant: TenantId("acme".into()),
            opted_in: true,
            effective_at: now,
            recorded_at: now,
            actor: "operator:test".into(),
            source: "test".into(),
            note: None,
        },
    )
    .await
    .unwrap();
    // The consent cache refreshes every 100 ms.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    app.chat(MANAGED_KEY, chat("after consent")).await;
    let zdr = RecordId(
        record_id(&app.chat(ZDR_KEY, chat("nothing kept")).await)
            .parse()
            .unwrap(),
    );
    let read = RecordId(crate::review::flagged(&app, "one").await.parse().unwrap());
    let unassigned = RecordId(crate::review::flagged(&app, "two").await.parse().unwrap());
    app.wait_for_records(5).await;

    let store = app.store.as_ref();
    let admin = principal_in(store, "ada", Role::Admin, None).await;
    let contractor = principal_in(store, "cora", Role::Contractor, Some(Duration::days(1))).await;
    let item = format!("{}/admin/v1/review/items/{read}", app.admin);
    let assigned = app
        .client
        .post(format!("{item}/assign"))
        .bearer_auth(&admin)
        .json(&json!({"assignee": "cora"}))
        .send()
        .await
        .unwrap();
    assert!(assigned.status().is_success());
    let shown = app
        .client
        .get(&item)
        .bearer_auth(&contractor)
        .send()
        .await
        .unwrap();
    assert!(shown.status().is_success());

    let export_dir = tempfile::tempdir().unwrap();
    let manifest = export::run(
        store,
        &ExportOptions {
            since: now - Duration::hours(1),
            until: Some(OffsetDateTime::now_utc()),
            out: export_dir.path().join("train.jsonl"),
            include_exported: false,
            overwrite: false,
            actor: "operator:test".into(),
            source: "test".into(),
            keys: Some(app.keys()),
        },
        &SystemClock,
        &ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert!(manifest.lines >= 1, "the records after consent");
    hold_record(store, read, "litigation 2026-17").await;
    sweep_at(store, OffsetDateTime::now_utc()).await;
    Attested {
        app,
        backend,
        _keys: keys,
        _export: export_dir,
        opted_out,
        zdr,
        unassigned,
    }
}

async fn a_clean_store_attests_and_each_broken_claim_is_named(backend: Backend) {
    let a = attested(backend).await;
    let report = a.report().await;
    let verdicts: Vec<(&str, Verdict)> =
        report.claims.iter().map(|c| (c.name, c.verdict)).collect();
    assert!(report.holds, "{verdicts:?}\n{:#?}", report.claims);
    assert_eq!(report.claims.len(), 8);
    assert_eq!(report.legal_holds.len(), 1);
    assert_eq!(report.legal_holds[0].reason, "litigation 2026-17");
    let version = &a.app.config.policy_version;
    assert!(
        report
            .policy_versions
            .iter()
            .any(|v| &v.version == version && v.document.is_some()),
        "{:?}",
        report.policy_versions
    );
    let none = BTreeSet::new();
    let only = |name| BTreeSet::from([name]);

    // 1. A content row edited past its expiry (on PostgreSQL into a
    // partition made for it: the sweep would drop the partition).
    let opted_out = a.id(a.opted_out);
    a.exec(
        &format!(
            "CREATE TABLE record_content_y2000 PARTITION OF record_content \
             FOR VALUES FROM ('2000-01-01') TO ('2000-01-02'); \
             UPDATE record_content SET expires_at = '2000-01-01 12:00+00' WHERE record_id = {opted_out}"
        ),
        &format!("UPDATE record_content SET expires_at = 946728000000000 WHERE record_id = {opted_out}"),
    )
    .await;
    assert_eq!(a.failing().await, only("retention"));
    // A hold placed now does not excuse what the sweeper should have removed.
    hold_record(a.app.store.as_ref(), a.opted_out, "late").await;
    assert_eq!(a.failing().await, only("retention"));
    a.exec(
        &format!("DELETE FROM record_content WHERE record_id = {opted_out}"),
        &format!("DELETE FROM record_content WHERE record_id = {opted_out}"),
    )
    .await;
    assert_eq!(a.failing().await, none);

    // 2. A content key kept past its day.
    let keys = a.app.keys();
    let yesterday = OffsetDateTime::now_utc() - Duration::days(2);
    keys.prepare(yesterday, yesterday).await.unwrap();
    assert_eq!(a.failing().await, only("shredding"));
    keys.destroy_expired(OffsetDateTime::now_utc(), &Default::default())
        .await
        .unwrap();
    assert_eq!(a.failing().await, none);

    // 3. Content of the zero-data-retention tenant's record.
    let zdr = a.id(a.zdr);
    let (later, micros) = {
        let t = OffsetDateTime::now_utc() + Duration::days(1);
        (t, t.unix_timestamp_nanos() / 1_000)
    };
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    a.exec(
        &format!(
            "INSERT INTO record_content (record_id, tenant_id, request_body, request_truncated, \
             response_body, response_truncated, received_at, expires_at, sealed, compressed) \
             VALUES ({zdr}, 'zdr-co', '\\x00'::bytea, false, '\\x00'::bytea, false, now(), '{later}', true, false)"
        ),
        &format!(
            "INSERT INTO record_content (record_id, tenant_id, request_body, request_truncated, \
             response_body, response_truncated, received_at, expires_at, sealed, compressed) \
             VALUES ({zdr}, 'zdr-co', X'00', 0, X'00', 0, {micros}, {micros}, 1, 0)"
        ),
    )
    .await;
    assert_eq!(a.failing().await, only("zero_data_retention"));
    a.exec(
        &format!("DELETE FROM record_content WHERE record_id = {zdr}"),
        &format!("DELETE FROM record_content WHERE record_id = {zdr}"),
    )
    .await;

    // 4. A tag flipped to usable that the consent history does not support.
    let flip = |usable: bool, basis: &str| {
        let (pg, lite) = (usable.to_string(), u8::from(usable).to_string());
        (
            format!("UPDATE record_meta SET training_usable = {pg}, training_basis = '{basis}' WHERE id = {opted_out}"),
            format!("UPDATE record_meta SET training_usable = {lite}, training_basis = '{basis}' WHERE id = {opted_out}"),
        )
    };
    let (pg, lite) = flip(true, "explicit_opt_in");
    a.exec(&pg, &lite).await;
    assert_eq!(a.failing().await, only("training_consent"));
    let (pg, lite) = flip(false, "default_opt_out");
    a.exec(&pg, &lite).await;
    assert_eq!(a.failing().await, none);

    // 6. The sweeper stopped; a table nobody registered.
    a.exec(
        "UPDATE job_status SET last_ok_at = now() - interval '1 day'",
        "UPDATE job_status SET last_ok_at = last_ok_at - 86400000000",
    )
    .await;
    assert_eq!(a.failing().await, only("sweeper"));
    sweep_at(a.app.store.as_ref(), OffsetDateTime::now_utc()).await;
    a.exec(
        "CREATE TABLE scratch (x integer)",
        "CREATE TABLE scratch (x integer)",
    )
    .await;
    assert_eq!(a.failing().await, only("sweeper"));
    a.exec("DROP TABLE scratch", "DROP TABLE scratch").await;

    // 8. A policy document that no longer hashes to its version.
    a.exec(
        "UPDATE policy_documents SET document = document || ' '",
        "UPDATE policy_documents SET document = document || ' '",
    )
    .await;
    assert_eq!(a.failing().await, only("policy_versions"));
    a.exec(
        "UPDATE policy_documents SET document = rtrim(document)",
        "UPDATE policy_documents SET document = rtrim(document)",
    )
    .await;
    assert_eq!(a.failing().await, none);

    // 7. A contractor read of an item never assigned to her, forged into
    // the chain the way the gateway writes it (the chain stays intact).
    a.app
        .store
        .append_audit(&AuditEvent {
            at: OffsetDateTime::now_utc(),
            actor: "principal:cora".into(),
            action: "review_item.read".into(),
            tenant: Some(TenantId("acme".into())),
            subject: Some(format!("review_item:{}", a.unassigned)),
            source: "127.0.0.1:1".into(),
            details: json!({"redacted": true}),
        })
        .await
        .unwrap();
    assert_eq!(a.failing().await, only("contractor_reads"));

    // 5. An audit entry removed, the append-only guard dropped first.
    a.exec(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update; \
         DELETE FROM audit_log WHERE seq = 1",
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 1",
    )
    .await;
    assert_eq!(
        a.failing().await,
        BTreeSet::from(["contractor_reads", "payload_reads_audited"])
    );
}

/// The binary: exit status, the failing claim named, a signed report that
/// verifies with the public key and not after an edit.
async fn the_command_signs_and_verifies_reports(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let config = crate::cli::write_config(
        dir.path(),
        db.url(),
        &format!(
            "\n[attest]\nsigning_key = {{ file = \"{}\" }}\n",
            dir.path().join("seed").display()
        ),
    );
    std::fs::write(dir.path().join("seed"), seed).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    let out = dir.path().join("report.json");
    let unswept = run(&["attest", "--out", out.to_str().unwrap()]);
    assert!(!unswept.status.success());
    let stderr = String::from_utf8_lossy(&unswept.stderr);
    assert!(stderr.contains("6 sweeper"), "{stderr}");
    assert!(run(&["sweep"]).status.success());
    let clean = run(&["attest", "--out", out.to_str().unwrap()]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let public = String::from_utf8(run(&["attest", "public-key"]).stdout).unwrap();
    let verify = |key: &str| {
        run(&[
            "attest",
            "verify",
            out.to_str().unwrap(),
            "--public-key",
            key.trim(),
        ])
    };
    let verified = verify(&public);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("every claim held"));
    let other = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let refused = verify(other);
    assert!(!refused.status.success(), "a key that did not sign");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::write(
        &out,
        text.replacen("\"holds\": true", "\"holds\": false", 1),
    )
    .unwrap();
    assert!(!verify(&public).status.success(), "an edited report");
}

both_stores!(
    a_clean_store_attests_and_each_broken_claim_is_named,
    the_command_signs_and_verifies_reports,
);
