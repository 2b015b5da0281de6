//! Claim throughput of the review queue with concurrent reviewers, at the
//! store (the transaction that hands out items; HTTP not included).
//!
//! ```text
//! cargo run --release --example claim_throughput -- <config.toml> [items] [reviewers]
//! ```
//!
//! Seeds `items` flagged records (default 5,000), then `reviewers` tasks
//! (default 8) claim until the queue is empty. Prints claims per second and
//! checks that no item was handed out twice.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use custodian::config::Config;
use custodian::domain::audit::AuditEvent;
use custodian::domain::clock::{Clock, SystemClock};
use custodian::domain::records::{Record, RecordMeta, Usage};
use custodian::domain::review::ReviewFlag;
use custodian::domain::verdict::{RuleAction, Severity, Verdict};
use custodian::domain::{KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};
use custodian::store;
use time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = args
        .get(1)
        .context("usage: claim_throughput <config.toml> [items] [reviewers]")?;
    let items: usize = args.get(2).map_or(Ok(5_000), |s| s.parse())?;
    let reviewers: usize = args.get(3).map_or(Ok(8), |s| s.parse())?;
    let config = Config::load(Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    custodian::jobs::upkeep::prepare_partitions(&config, store.as_ref(), &SystemClock).await?;
    let now = SystemClock.now();
    for chunk in (0..items).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Record> = chunk.iter().map(|i| flagged(*i, now)).collect();
        store.insert_records(&batch).await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..reviewers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let name = format!("reviewer-{r}");
            let mut claimed = Vec::new();
            loop {
                let audit = AuditEvent {
                    at: SystemClock.now(),
                    actor: format!("principal:{name}"),
                    action: "review_item.claimed".into(),
                    tenant: None,
                    subject: None,
                    source: "bench".into(),
                    details: serde_json::json!({}),
                };
                match store
                    .claim_next_item(&name, SystemClock.now(), &audit)
                    .await?
                {
                    Some(item) => claimed.push(item.record_id),
                    None => return Ok::<_, anyhow::Error>(claimed),
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let unique: HashSet<RecordId> = all.iter().copied().collect();
    println!(
        "{} claims by {reviewers} reviewers in {elapsed:.2} s: {:.0} claims/s; duplicates: {}",
        all.len(),
        all.len() as f64 / elapsed,
        all.len() - unique.len()
    );
    Ok(())
}

fn flagged(i: usize, now: time::OffsetDateTime) -> Record {
    let received_at = now - Duration::seconds(i as i64);
    Record {
        meta: RecordMeta {
            id: RecordId::new(),
            request_id: format!("claim-{i}"),
            tenant: TenantId("bench".into()),
            key_id: KeyId("mk_bench".into()),
            route: "openai".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            model: None,
            usage: Usage::default(),
            streamed: false,
            outcome: Outcome::Completed,
            total_us: 1,
            upstream_ttfb_us: None,
            upstream_total_us: None,
            request_bytes: 0,
            response_bytes: 0,
            training: TrainingTag {
                usable: false,
                basis: TrainingBasis::DefaultOptOut,
            },
            profile: "api".into(),
            policy_version: "bench".into(),
            zero_data_retention: true,
            received_at,
            content_expires_at: None,
            expires_at: received_at + Duration::days(365),
            end_user_hash: None,
        },
        content: None,
        review: ReviewFlag::from_verdicts(
            vec![Verdict {
                rule: "bench".into(),
                severity: Severity::High,
                action: RuleAction::Flag,
                reason: None,
            }],
            false,
            received_at + Duration::days(30),
        ),
    }
}
