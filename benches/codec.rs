//! What keeping a record's bodies compressed costs (issue #15): both bodies
//! of the yardstick's exchanges (a 1 KiB chat request with its 1 KiB JSON
//! answer, and with its 5 KiB SSE answer) compressed at the levels worth
//! choosing between, and read back. The bytes each level keeps are printed
//! once, beside the times.
//!
//! `cargo bench --bench codec`

// A benchmark that cannot set up has nothing to measure: stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use custodian::domain::codec;
use custodian::domain::records::RecordContent;
use time::OffsetDateTime;

const REQUEST: &[u8] = include_bytes!("data/chat-request.json");
const JSON_ANSWER: &[u8] = include_bytes!("data/chat-response.json");
const SSE_ANSWER: &[u8] = include_bytes!("data/chat-response.sse");

fn content(response: &[u8]) -> RecordContent {
    RecordContent {
        request_body: REQUEST.to_vec(),
        request_truncated: false,
        response_body: response.to_vec(),
        response_truncated: false,
        expires_at: OffsetDateTime::UNIX_EPOCH,
        sealed: false,
        compressed: false,
    }
}

fn compressing(c: &mut Criterion) {
    for (name, answer) in [("json", JSON_ANSWER), ("sse", SSE_ANSWER)] {
        for level in [-5, -1, 1, 3] {
            let mut once = content(answer);
            codec::compress_content(&mut once, level);
            eprintln!(
                "{name} level {level}: {} + {} bytes kept of {} + {}",
                once.request_body.len(),
                once.response_body.len(),
                REQUEST.len(),
                answer.len()
            );
            c.bench_function(&format!("compress {name} exchange, level {level}"), |b| {
                b.iter_batched(
                    || content(answer),
                    |mut c| {
                        codec::compress_content(&mut c, level);
                        black_box(c)
                    },
                    criterion::BatchSize::SmallInput,
                )
            });
        }
        let mut stored = content(answer);
        codec::compress_content(
            &mut stored,
            custodian::config::CaptureConfig::DEFAULT_COMPRESSION_LEVEL,
        );
        c.bench_function(&format!("decompress {name} exchange"), |b| {
            b.iter(|| {
                (
                    codec::decompress(black_box(&stored.request_body)).expect("decodes"),
                    codec::decompress(black_box(&stored.response_body)).expect("decodes"),
                )
            })
        });
    }
}

criterion_group!(benches, compressing);
criterion_main!(benches);
