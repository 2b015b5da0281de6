//! Fill a store with synthetic records, for measuring the training export
//! and the sweeper at scale (not used by the tests).
//!
//! ```text
//! cargo run --release --example seed_records -- <config.toml> <count> [days] [ended_days_ago] [prompt_repeat]
//! ```
//!
//! Records are spread evenly over `days` days (default 10) ending
//! `ended_days_ago` days ago (default 0): 70 % tagged usable (half
//! streamed), the rest spread over the denying bases. `prompt_repeat`
//! (default 20) sizes the bodies: about 0.1 KiB per repeat plus 1.5 KiB.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use custodian::config::Config;
use custodian::domain::clock::{Clock, SystemClock};
use custodian::domain::records::{Record, RecordContent, RecordMeta, Usage};
use custodian::domain::{KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};
use custodian::store;
use time::Duration;

const BATCH: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(config), Some(count)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: seed_records <config.toml> <count> [days]");
    };
    let count: usize = count.parse().context("count")?;
    let days: i64 = args.get(3).map_or(Ok(10), |d| d.parse()).context("days")?;
    let ended_days_ago: i64 = args
        .get(4)
        .map_or(Ok(0), |d| d.parse())
        .context("ended_days_ago")?;
    let repeat: usize = args
        .get(5)
        .map_or(Ok(20), |d| d.parse())
        .context("prompt_repeat")?;
    let config = Config::load(Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    custodian::jobs::upkeep::prepare_partitions(&config, store.as_ref(), &SystemClock).await?;

    let now = SystemClock.now() - Duration::days(ended_days_ago);
    let span = Duration::days(days);
    let started = Instant::now();
    let store: Arc<dyn store::Store> = store;
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..count {
        let offset = span * (i as f64 / count.max(1) as f64);
        batch.push(record(i, now - span + offset, repeat));
        if batch.len() == BATCH || i + 1 == count {
            store.insert_records(&batch).await?;
            batch.clear();
        }
    }
    println!(
        "seeded {count} records over {days} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn record(i: usize, received_at: time::OffsetDateTime, repeat: usize) -> Record {
    let training = match i % 10 {
        0..=6 => TrainingTag {
            usable: true,
            basis: if i.is_multiple_of(3) {
                TrainingBasis::LegacyDefault
            } else {
                TrainingBasis::ExplicitOptIn
            },
        },
        7 => TrainingTag {
            usable: false,
            basis: TrainingBasis::RequestOptOut,
        },
        8 => TrainingTag {
            usable: false,
            basis: TrainingBasis::ExplicitOptOut,
        },
        _ => TrainingTag {
            usable: false,
            basis: TrainingBasis::DefaultOptOut,
        },
    };
    let streamed = i.is_multiple_of(2);
    let prompt = format!(
        "Summarise ticket {i}: {}",
        "the customer reports that ".repeat(repeat)
    );
    let request = serde_json::json!({
        "model": "gpt-4o-mini", "stream": streamed,
        "messages": [{"role": "system", "content": "You are a support assistant."},
                     {"role": "user", "content": prompt}]
    });
    let answer_words: Vec<String> = (0..60).map(|w| format!("word{w} ")).collect();
    let response = if streamed {
        let mut sse = String::new();
        for w in &answer_words {
            let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        sse.push_str("data: [DONE]\n\n");
        sse.into_bytes()
    } else {
        serde_json::json!({"id": "c", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_words.concat()},
                         "finish_reason": "stop"}]})
        .to_string()
        .into_bytes()
    };
    let request = request.to_string().into_bytes();
    let content_expires_at = received_at + Duration::days(30);
    Record {
        meta: RecordMeta {
            id: RecordId::new(),
            request_id: format!("seed-{i}"),
            tenant: TenantId(format!("tenant-{}", i % 50)),
            key_id: KeyId("mk_seed".into()),
            route: "openai".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            model: Some("gpt-4o-mini".into()),
            usage: Usage::default(),
            streamed,
            outcome: Outcome::Completed,
            total_us: 1_000,
            upstream_ttfb_us: Some(500),
            upstream_total_us: Some(900),
            request_bytes: request.len() as i64,
            response_bytes: response.len() as i64,
            training,
            profile: "api".into(),
            policy_version: "seed".into(),
            zero_data_retention: false,
            received_at,
            content_expires_at: Some(content_expires_at),
            expires_at: received_at + Duration::days(365),
            end_user_hash: None,
        },
        content: Some(RecordContent {
            request_body: request,
            request_truncated: false,
            response_body: response,
            response_truncated: false,
            expires_at: content_expires_at,
            sealed: false,
            compressed: false,
        }),
        review: None,
    }
}
