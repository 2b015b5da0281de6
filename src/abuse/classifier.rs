//! The asynchronous moderation classifier: after a response has been
//! relayed, the request and answer text (as captured, in memory; ZDR
//! content included, never stored) go to a moderation endpoint in the
//! OpenAI `/v1/moderations` shape, off the client's path, through a bounded
//! queue with a timeout and a concurrency limit. Categories scoring at or
//! above their threshold become verdicts on the record's review item.
//!
//! When it cannot run (endpoint down, queue full) nothing goes unchecked
//! silently: every unchecked request is counted by reason, failed checks are
//! retried with backoff while the process lives, and the classifier reports
//! itself unhealthy, which `fail_closed` profiles turn into 503s until a
//! probe succeeds again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ClassifierConfig;
use crate::domain::clock::Clock;
use crate::domain::review::ReviewFlag;
use crate::domain::verdict::{RuleAction, Verdict};
use crate::domain::{RecordId, TenantId};
use crate::store::Store;

/// Consecutive failures after which the classifier counts as down.
const UNHEALTHY_AFTER: u32 = 3;
const MAX_ATTEMPTS: u32 = 5;
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a verdict waits for its record to be written.
const RECORD_WAIT: Duration = Duration::from_secs(30);

/// One exchange to classify.
#[derive(Debug)]
pub struct Job {
    pub record: RecordId,
    pub tenant: TenantId,
    pub text: String,
    pub content_kept: bool,
    pub expires_at: OffsetDateTime,
    pub attempts: u32,
}

/// A queued or running job's place in its tenant's share; given back when
/// the job is done (dropped).
#[derive(Debug)]
struct Place {
    tenants: Arc<TenantCounts>,
    tenant: TenantId,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.tenants.release(&self.tenant);
    }
}

/// Jobs per tenant, queued or running.
#[derive(Debug, Default)]
struct TenantCounts(std::sync::Mutex<std::collections::HashMap<TenantId, usize>>);

impl TenantCounts {
    /// Take a place for `tenant` unless it holds `limit` already.
    fn take(&self, tenant: &TenantId, limit: usize) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(tenant.clone()).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, tenant: &TenantId) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(tenant);
            }
        }
    }
}

#[derive(Clone)]
pub struct Classifier {
    queue: mpsc::Sender<(Job, Place)>,
    failures: Arc<AtomicU32>,
    tenants: Arc<TenantCounts>,
    tenant_limit: usize,
}

impl Classifier {
    /// Start the workers; they stop with `shutdown`.
    pub fn spawn(
        config: ClassifierConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        let (queue, jobs) = mpsc::channel(config.queue_capacity);
        let classifier = Self {
            queue,
            failures: Arc::new(AtomicU32::new(0)),
            tenants: Arc::default(),
            tenant_limit: config.tenant_queue_limit,
        };
        let worker = Worker {
            config: Arc::new(config),
            http,
            store,
            clock,
            classifier: classifier.clone(),
        };
        tokio::spawn(worker.clone().run(jobs, shutdown.clone()));
        tokio::spawn(worker.probe(shutdown));
        Ok(classifier)
    }

    /// A place for one of `tenant`'s requests, taken when the request is
    /// admitted (so a burst is held to its share before it is served);
    /// `None`, counted, when the tenant holds its share of the queue.
    pub fn reserve(&self, tenant: &TenantId) -> Option<Reservation> {
        if !self.tenants.take(tenant, self.tenant_limit) {
            // The tenant's own burst: not the classifier's health.
            unchecked("tenant_share");
            return None;
        }
        Some(Reservation {
            classifier: self.clone(),
            place: Place {
                tenants: Arc::clone(&self.tenants),
                tenant: tenant.clone(),
            },
        })
    }

    fn queue_with(&self, job: Job, place: Place) -> bool {
        match self.queue.try_send((job, place)) {
            Ok(()) => true,
            Err(_) => {
                unchecked("queue_full");
                self.failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether checks are getting through.
    pub fn healthy(&self) -> bool {
        self.failures.load(Ordering::Relaxed) < UNHEALTHY_AFTER
    }
}

/// A request's place in its tenant's share of the queue, from admission
/// until its job is done.
pub struct Reservation {
    classifier: Classifier,
    place: Place,
}

impl Reservation {
    /// Queue the exchange's job; `false` (counted) when the queue is full.
    pub fn submit(self, job: Job) -> bool {
        self.classifier.queue_with(job, self.place)
    }
}

fn unchecked(reason: &'static str) {
    metrics::counter!("custodian_classifier_unchecked_total", "reason" => reason).increment(1);
}

#[derive(Clone)]
struct Worker {
    config: Arc<ClassifierConfig>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    classifier: Classifier,
}

impl Worker {
    async fn run(self, mut jobs: mpsc::Receiver<(Job, Place)>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        loop {
            let job = tokio::select! {
                job = jobs.recv() => job,
                () = shutdown.cancelled() => None,
            };
            let Some((job, place)) = job else { return };
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let worker = self.clone();
            tokio::spawn(async move {
                worker.check(job, place).await;
                drop(permit);
            });
        }
    }

    async fn check(&self, mut job: Job, place: Place) {
        match self.moderate(&job.text).await {
            Ok(scores) => {
                self.classifier.failures.store(0, Ordering::Relaxed);
                metrics::counter!("custodian_classifier_checks_total").increment(1);
                let verdicts = self.verdicts(&scores);
                if !verdicts.is_empty() {
                    self.record_verdicts(&job, verdicts).await;
                }
            }
            Err(e) => {
                self.classifier.failures.fetch_add(1, Ordering::Relaxed);
                job.attempts += 1;
                if job.attempts >= MAX_ATTEMPTS {
                    unchecked("gave_up");
                    tracing::warn!(record = %job.record, error = %e, "classification given up");
                    return;
                }
                unchecked("retrying");
                let backoff = Duration::from_millis(250 * 2u64.pow(job.attempts));
                // The retry keeps its tenant's place while it waits.
                let classifier = self.classifier.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(backoff).await;
                    classifier.queue_with(job, place);
                });
            }
        }
    }

    /// Category scores from the moderation endpoint.
    async fn moderate(&self, text: &str) -> Result<Vec<(String, f64)>, String> {
        let mut body = json!({ "input": text });
        if let Some(model) = &self.config.model {
            body["model"] = json!(model);
        }
        let mut request = self
            .http
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!(
                "moderation endpoint answered {}",
                response.status()
            ));
        }
        let value: Value =
            serde_json::from_slice(&response.bytes().await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let scores = value
            .pointer("/results/0/category_scores")
            .and_then(Value::as_object)
            .ok_or("no category_scores in the answer")?;
        Ok(scores
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect())
    }

    fn verdicts(&self, scores: &[(String, f64)]) -> Vec<Verdict> {
        scores
            .iter()
            .filter_map(|(category, score)| {
                let threshold = self
                    .config
                    .thresholds
                    .get(category)
                    .copied()
                    .unwrap_or(self.config.threshold);
                // The score is kept with the verdict: reviewers weigh it.
                (*score >= threshold).then(|| Verdict {
                    rule: format!("moderation:{category}"),
                    severity: self.config.severity,
                    action: RuleAction::Flag,
                    reason: Some(format!("score {score:.3} (threshold {threshold:.3})")),
                })
            })
            .collect()
    }

    /// Add the verdicts to the record's item once the record is written.
    async fn record_verdicts(&self, job: &Job, verdicts: Vec<Verdict>) {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            match self.store.get_record(job.record).await {
                Ok(Some(_)) => break,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None) | Err(_) => {
                    unchecked("record_missing");
                    return;
                }
            }
        }
        let Some(flag) = ReviewFlag::from_verdicts(verdicts, job.content_kept, job.expires_at)
        else {
            return;
        };
        if let Err(e) = self
            .store
            .add_review_flag(job.record, &job.tenant, &flag, self.clock.now())
            .await
        {
            unchecked("store_error");
            tracing::error!(record = %job.record, error = %e, "classifier verdict not stored");
        }
    }

    /// While unhealthy, try a tiny request now and then: a success lets
    /// `fail_closed` profiles serve again.
    async fn probe(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                () = shutdown.cancelled() => return,
            }
            if self.classifier.healthy() {
                continue;
            }
            if self.moderate("probe").await.is_ok() {
                self.classifier.failures.store(0, Ordering::Relaxed);
                tracing::info!("moderation classifier reachable again");
            }
        }
    }
}
