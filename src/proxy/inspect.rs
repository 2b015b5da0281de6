//! The request body before anything is forwarded: held in memory as far as
//! the checks need it (within `server.max_buffered_bytes` for all requests
//! together), read by the rules, and then forwarded whole, or as the held
//! start followed by the rest as it streams. A `block` verdict refuses the
//! request before the upstream sees a byte.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProxyState;
use crate::abuse::scan::{self, ScanText};
use crate::config::{Config, EffectivePolicy};
use crate::domain::verdict::Unreadable;
use crate::domain::verdict::Verdict;
use crate::http::error::ApiError;
use crate::policy::rules::CheckInput;

/// How long a request waits for room in the body budget before it is
/// answered 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// How long a heavy scan waits for a slot: scans queue (a burst of bombs
/// waits its turn) rather than fail, within a bound.
const SCAN_WAIT: Duration = Duration::from_secs(30);

/// The memory and CPU that reading request bodies may take.
#[derive(Clone)]
pub struct Limits {
    /// Bytes of bodies held, all requests together.
    budget: Arc<Semaphore>,
    /// Scans big enough to run on a blocking thread, at once: fewer than
    /// the cores, so that decompressing one tenant's body cannot stall
    /// every other tenant's streams.
    scan_slots: Arc<Semaphore>,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            budget: Arc::new(Semaphore::new(
                config.server.max_buffered_bytes.min(Semaphore::MAX_PERMITS),
            )),
            scan_slots: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
        }
    }

    /// Room for `bytes` more held bytes, added to `held`.
    async fn reserve(
        &self,
        bytes: usize,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), ApiError> {
        let n = u32::try_from(bytes).map_err(|_| ApiError::Overloaded)?;
        let budget = Arc::clone(&self.budget);
        let permit = match Arc::clone(&budget).try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("custodian_body_budget_waits_total").increment(1);
                match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many_owned(n)).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        metrics::counter!("custodian_body_budget_refusals_total").increment(1);
                        return Err(ApiError::Overloaded);
                    }
                }
            }
        };
        match held {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// How far the body of a request is held before it is forwarded, or
/// `None` to stream it straight through.
pub fn hold_limit(
    config: &Config,
    known_length: Option<u64>,
    headers: &http::HeaderMap,
    names_objects: bool,
) -> Option<usize> {
    let limit = config.server.max_request_body_bytes;
    let rules = &config.rules;
    let mut hold = 0usize;
    // The text rules read the body, and so does the object registry where
    // a body can name objects (a multipart upload names none).
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    if rules.reads_text() || (names_objects && !multipart) {
        hold = config.server.max_scan_bytes;
    }
    if known_length.is_none() {
        // A size rule must know whether a body of unknown length is larger.
        if let Some(max) = rules.largest_size_limit() {
            hold = hold.max(usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1));
        }
    }
    // A small body is held whole anyway: one copy for the capture.
    if let Some(len) = known_length.filter(|len| *len <= config.capture.max_body_bytes as u64) {
        hold = hold.max(len as usize);
    }
    match known_length {
        Some(0) => None,
        _ => (hold > 0).then(|| hold.min(limit)),
    }
}

/// The part of a client's body not held: it streams through.
pub type ClientRest = futures_util::stream::BoxStream<'static, Result<Bytes, axum::Error>>;

/// A body held in memory: all of it, or its start and the rest to come.
pub struct Held {
    pub bytes: Bytes,
    /// The rest of the body, still to be read from the client.
    pub rest: Option<ClientRest>,
    /// Its place in the budget, given back once it has been sent upstream
    /// and no scan reads it any more (whoever is last).
    pub budget: Option<Arc<OwnedSemaphorePermit>>,
}

impl Held {
    pub fn complete(&self) -> bool {
        self.rest.is_none()
    }

    /// What the scan needs (shared, cheap to take).
    pub fn view(&self) -> HeldView {
        HeldView {
            bytes: self.bytes.clone(),
            complete: self.complete(),
            budget: self.budget.clone(),
        }
    }
}

/// A held body as the scan reads it.
pub struct HeldView {
    bytes: Bytes,
    complete: bool,
    budget: Option<Arc<OwnedSemaphorePermit>>,
}

/// Read `body` until it ends or `hold` bytes are in (the rest then streams:
/// at most `hold` bytes are held), refusing a body over `limit` (413) and
/// waiting briefly for room in the budget (503).
pub async fn hold(
    body: Body,
    hold: usize,
    limit: usize,
    limits: &Limits,
) -> Result<Held, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    let mut budget = None;
    loop {
        let Some(chunk) = stream.next().await else {
            return Ok(Held {
                bytes: bytes.freeze(),
                rest: None,
                budget: budget.map(Arc::new),
            });
        };
        let chunk = chunk.map_err(|_| ApiError::BadBody)?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let room = hold.saturating_sub(bytes.len());
        limits.reserve(chunk.len().min(room), &mut budget).await?;
        if chunk.len() <= room {
            bytes.extend_from_slice(&chunk);
            continue;
        }
        // The chunk that goes past the hold: its start is held, its end
        // leads the rest of the body.
        bytes.extend_from_slice(&chunk[..room]);
        let tail = futures_util::stream::once(std::future::ready(Ok(chunk.slice(room..))));
        return Ok(Held {
            bytes: bytes.freeze(),
            rest: Some(StreamExt::boxed(tail.chain(stream))),
            budget: budget.map(Arc::new),
        });
    }
}

/// Read and discard what is left of a body refused before its end (up to
/// `max` bytes, for at most `within`), so that a client still sending reads
/// the answer instead of a connection reset.
pub async fn drain(mut rest: ClientRest, max: usize, within: Duration) {
    let mut read = 0usize;
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(chunk)) = rest.next().await {
            read += chunk.len();
            if read > max {
                return;
            }
        }
    })
    .await;
}

/// Run the inline rules on a held body (and the profile's `unscannable`
/// on what they could not read). Heavy scans run on a blocking thread.
pub async fn check(
    state: &ProxyState,
    headers: &http::HeaderMap,
    held: HeldView,
    declared_length: Option<u64>,
    requests_this_minute: u64,
    policy: &EffectivePolicy,
) -> Result<Vec<Verdict>, ApiError> {
    let HeldView {
        bytes,
        complete,
        budget,
    } = held;
    let held_bytes = &bytes;
    let rules = Arc::clone(&state.config.rules);
    // Not complete: longer than the hold, which is longer than any size rule.
    let body_bytes = declared_length.or(Some(held_bytes.len() as u64));
    if !rules.reads_text() {
        return Ok(rules.check(&CheckInput {
            text: None,
            body_bytes,
            requests_this_minute,
        }));
    }
    let limits = scan::Limits {
        max_scan_bytes: state.config.server.max_scan_bytes,
        max_body_bytes: state.config.server.max_request_body_bytes,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let encodings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().map(str::to_owned))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| vec!["(not text)".to_owned()]);
    let heavy = is_heavy_body(headers, held_bytes);
    // The scan keeps what it reads counted in the budget, even if the
    // request is dropped (the client gone) while it runs.
    let run = move || {
        let _budget = budget;
        let encodings: Vec<&str> = encodings.iter().map(String::as_str).collect();
        let body = scan::Body {
            content_type: content_type.as_deref(),
            encodings: &encodings,
            bytes: &bytes,
            complete,
        };
        scan::scan(body, limits)
            .map(|text| read_by_rules(&rules, &text, body_bytes, requests_this_minute))
    };
    let outcome = if heavy {
        let slot = tokio::time::timeout(
            SCAN_WAIT,
            Arc::clone(&state.limits.scan_slots).acquire_owned(),
        )
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(|_| ApiError::Overloaded)?;
        // The slot goes with the work: a request dropped mid-scan does not
        // free it for another scan while this one still runs.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            run()
        })
        .await
        .map_err(|_| ApiError::Overloaded)?
    } else {
        run()
    };
    let (mut verdicts, unreadable) = outcome.map_err(|e| match e {
        scan::ScanError::TooLarge => ApiError::PayloadTooLarge {
            limit: state.config.server.max_request_body_bytes,
        },
        e => ApiError::InvalidRequest(format!("The request body could not be decoded: {e}.")),
    })?;
    if let Some(verdict) = unreadable.and_then(|why| policy.unscannable.verdict(why)) {
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

fn is_heavy_body(headers: &http::HeaderMap, bytes: &[u8]) -> bool {
    let encodings: Vec<&str> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    scan::is_heavy(scan::Body {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        encodings: &encodings,
        bytes,
        complete: true,
    })
}

fn read_by_rules(
    rules: &crate::policy::rules::RuleSet,
    text: &ScanText,
    body_bytes: Option<u64>,
    requests_this_minute: u64,
) -> (Vec<Verdict>, Option<Unreadable>) {
    let verdicts = rules.check(&CheckInput {
        text: Some(&text.text),
        body_bytes,
        requests_this_minute,
    });
    (verdicts, text.unreadable)
}
