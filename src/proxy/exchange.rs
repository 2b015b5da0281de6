//! One request/response exchange as it will be recorded. Created once the
//! caller is known; finished exactly once, when the response ends, fails, or
//! is abandoned (dropped): every path yields one record.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::OffsetDateTime;

use crate::abuse::classifier::{Job, Reservation};
use crate::config::EffectivePolicy;
use crate::domain::records::{end_user_hash, Record, RecordContent, RecordMeta};
use crate::domain::review::ReviewFlag;
use crate::domain::verdict::Verdict;
use crate::domain::{KeyId, Outcome, RecordId, TenantId, TrainingTag};
use crate::recording::spool::journal::Journaled;
use crate::recording::writer::RecordSink;
use crate::wire;

/// Status recorded for a client that left before any response (nginx's 499).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The request body as captured: copied from the body held in memory, or
/// copied aside while it streams.
pub enum RequestCapture {
    Whole(Capture),
    Streamed(Arc<Mutex<Capture>>),
}

/// What is known about the request when the exchange starts.
pub struct ExchangeStart {
    pub id: RecordId,
    pub request_id: String,
    pub tenant: TenantId,
    pub key_id: KeyId,
    pub route: Arc<str>,
    pub method: String,
    pub path: String,
    pub training: TrainingTag,
    pub policy: Arc<EffectivePolicy>,
    pub policy_version: Arc<str>,
    pub received_at: OffsetDateTime,
    pub started: Instant,
    pub capture_cap: usize,
    /// zstd level for the captured bodies (0: as captured).
    pub compression_level: i32,
    /// Seals the content before the record leaves memory, when encryption is on.
    pub keys: Option<Arc<crate::crypto::ContentKeys>>,
    /// Keys the end-user hash (`auth.end_user_key`).
    pub end_user_key: Option<crate::config::Secret>,
}

pub struct Exchange {
    sink: RecordSink,
    state: Option<State>,
    /// Set when the exchange is to be classified after it ends.
    classifier: Option<Reservation>,
    /// A place among the requests in flight, given back when the exchange
    /// (and so its response stream) ends.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

struct State {
    start: ExchangeStart,
    request: Option<RequestCapture>,
    /// The request's content type and encodings, for the classifier to read
    /// the captured body as text (a compressed one decoded).
    request_format: (Option<String>, Vec<String>),
    response: Capture,
    status: u16,
    streamed: bool,
    upstream_sent: Option<Instant>,
    upstream_headers: Option<Instant>,
    review: Option<ReviewFlag>,
}

impl Exchange {
    pub fn new(start: ExchangeStart, sink: RecordSink) -> Self {
        let cap = start.capture_cap;
        Self {
            sink,
            classifier: None,
            _slot: None,
            state: Some(State {
                start,
                request: None,
                request_format: (None, Vec::new()),
                response: Capture::new(cap),
                status: CLIENT_CLOSED_REQUEST,
                streamed: false,
                upstream_sent: None,
                upstream_headers: None,
                review: None,
            }),
        }
    }

    pub fn request_body(&mut self, capture: RequestCapture) {
        if let Some(s) = self.state.as_mut() {
            s.request = Some(capture);
        }
    }

    /// How the request body is encoded (for the classifier's text).
    pub fn request_format(&mut self, content_type: Option<String>, encodings: Vec<String>) {
        if let Some(s) = self.state.as_mut() {
            s.request_format = (content_type, encodings);
        }
    }

    /// Hold a place among the requests in flight until the exchange ends.
    pub fn hold_slot(&mut self, slot: tokio::sync::OwnedSemaphorePermit) {
        self._slot = Some(slot);
    }

    /// Classify the exchange (asynchronously) once it has ended.
    pub fn classify_with(&mut self, classifier: Reservation) {
        self.classifier = Some(classifier);
    }

    /// Abuse rules matched: the record opens a review item. Its content is
    /// kept only if the record keeps content (never for ZDR tenants).
    pub fn flag(&mut self, verdicts: Vec<Verdict>) {
        if let Some(s) = self.state.as_mut() {
            let policy = &s.start.policy;
            // A flagged record keeps its content, unless the policy never does.
            let expiry = policy.expiry(s.start.received_at, true);
            let expires_at = expiry
                .content
                .unwrap_or_else(|| policy.retention.content_expires_at(s.start.received_at));
            s.review = ReviewFlag::from_verdicts(verdicts, expiry.content.is_some(), expires_at);
        }
    }

    pub fn upstream_sent(&mut self, at: Instant) {
        if let Some(s) = self.state.as_mut() {
            s.upstream_sent = Some(at);
        }
    }

    pub fn upstream_headers(&mut self, status: u16, streamed: bool, at: Instant) {
        if let Some(s) = self.state.as_mut() {
            s.status = status;
            s.streamed = streamed;
            s.upstream_headers = Some(at);
        }
    }

    pub fn response_chunk(&mut self, chunk: &[u8]) {
        if let Some(s) = self.state.as_mut() {
            s.response.push(chunk);
        }
    }

    /// The gateway answered `status` itself.
    pub fn gateway_error(mut self, status: u16) -> Option<Journaled> {
        if let Some(s) = self.state.as_mut() {
            s.status = status;
        }
        self.finish(Outcome::GatewayError, Instant::now())
    }

    /// End the exchange; in journal mode, the answer resolves once its
    /// record is on disk.
    pub fn finish(mut self, outcome: Outcome, at: Instant) -> Option<Journaled> {
        self.complete(outcome, at)
    }

    fn complete(&mut self, outcome: Outcome, at: Instant) -> Option<Journaled> {
        let state = self.state.take()?;
        {
            let text = self.classifier.as_ref().map(|_| state.text_to_classify());
            let expires_at = state
                .start
                .policy
                .retention
                .content_expires_at(state.start.received_at);
            let record = state.into_record(outcome, at);
            if let (Some(classifier), Some(text)) = (self.classifier.take(), text) {
                classifier.submit(Job {
                    record: record.meta.id,
                    tenant: record.meta.tenant.clone(),
                    text,
                    content_kept: record.content.is_some(),
                    expires_at,
                    attempts: 0,
                });
            }
            self.sink.submit(record)
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Nobody is left to wait for the journal.
        let _ = self.complete(Outcome::ClientDisconnected, Instant::now());
    }
}

fn micros_between(from: Instant, to: Instant) -> i64 {
    i64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(i64::MAX)
}

impl State {
    /// The request's strings and the answer as text, from the captures
    /// (held in memory only; for ZDR tenants they go no further).
    fn text_to_classify(&self) -> String {
        let request = match &self.request {
            Some(RequestCapture::Whole(capture)) => self.request_text(capture.bytes()),
            Some(RequestCapture::Streamed(shared)) => {
                let capture = shared.lock().unwrap_or_else(|p| p.into_inner());
                self.request_text(capture.bytes())
            }
            None => String::new(),
        };
        let response = self.response.bytes();
        let answer =
            crate::export::finetune::answer_text(&self.start.path, self.streamed, response)
                .unwrap_or_else(|| String::from_utf8_lossy(response).into_owned());
        format!("{request}\n{answer}")
    }

    /// The captured request as the rules would read it, decoded (up to
    /// the capture cap); the capture as text when it cannot be decoded.
    fn request_text(&self, captured: &[u8]) -> String {
        use crate::abuse::scan;
        let (content_type, encodings) = &self.request_format;
        let encodings: Vec<&str> = encodings.iter().map(String::as_str).collect();
        let body = scan::Body {
            content_type: content_type.as_deref(),
            encodings: &encodings,
            bytes: captured,
            // Read the start only: the capture may be cut, and nothing
            // here needs to know how large the whole body inflates.
            complete: false,
        };
        let cap = self.start.capture_cap;
        let limits = scan::Limits {
            max_scan_bytes: cap,
            max_body_bytes: cap,
        };
        match scan::scan(body, limits) {
            Ok(text) if !text.text.is_empty() => text.text,
            _ => scan::text_of(captured),
        }
    }

    fn into_record(self, outcome: Outcome, at: Instant) -> Record {
        let State {
            start,
            request,
            request_format: _,
            response,
            status,
            streamed,
            upstream_sent,
            upstream_headers,
            review,
        } = self;
        let request = match request {
            Some(RequestCapture::Whole(capture)) => capture,
            Some(RequestCapture::Streamed(shared)) => {
                std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()))
            }
            None => Capture::new(0),
        };
        let fields = wire::response_fields(response.bytes(), streamed);
        let asked = wire::request_fields(request.bytes());
        let model = asked.model.or(fields.model);
        let end_user_hash = start
            .end_user_key
            .as_ref()
            .zip(asked.end_user)
            .map(|(key, user)| end_user_hash(key.expose().as_bytes(), &start.tenant, &user));
        let policy = &start.policy;
        let received_at = start.received_at;
        let zdr = policy.zero_data_retention;
        let expiry = policy.expiry(received_at, review.is_some());
        let content_expires_at = expiry.content;
        let meta = RecordMeta {
            id: start.id,
            request_id: start.request_id,
            tenant: start.tenant,
            key_id: start.key_id,
            route: start.route.to_string(),
            method: start.method,
            path: start.path,
            status,
            model,
            usage: fields.usage,
            streamed,
            outcome,
            total_us: micros_between(start.started, at),
            upstream_ttfb_us: upstream_sent
                .zip(upstream_headers)
                .map(|(s, h)| micros_between(s, h)),
            upstream_total_us: upstream_headers
                .and(upstream_sent)
                .map(|s| micros_between(s, at)),
            request_bytes: i64::try_from(request.total()).unwrap_or(i64::MAX),
            response_bytes: i64::try_from(response.total()).unwrap_or(i64::MAX),
            training: start.training,
            profile: policy.profile.to_string(),
            policy_version: start.policy_version.to_string(),
            zero_data_retention: zdr,
            received_at,
            content_expires_at,
            expires_at: expiry.metadata,
            end_user_hash,
        };
        // Zero data retention: the bodies were only ever in memory, and go no further.
        let content = content_expires_at.map(|expires_at| {
            let (request_body, request_truncated) = request.into_parts();
            let (response_body, response_truncated) = response.into_parts();
            RecordContent {
                request_body,
                request_truncated,
                response_body,
                response_truncated,
                expires_at,
                sealed: false,
                compressed: false,
            }
        });
        let mut record = Record {
            meta,
            content,
            review,
        };
        if let Some(content) = record.content.as_mut() {
            crate::domain::codec::compress_content(content, start.compression_level);
        }
        if let Some(keys) = &start.keys {
            crate::crypto::seal_record(keys, &mut record);
        }
        record
    }
}

/// A capped copy of a body.
#[derive(Debug, Default)]
pub struct Capture {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
    total: u64,
}

impl Capture {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            truncated: false,
            total: 0,
        }
    }

    /// A capture of a body held whole in memory.
    pub fn of(body: &[u8], cap: usize) -> Self {
        let mut c = Self::new(cap);
        c.push(body);
        c
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.cap.saturating_sub(self.buf.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_parts(self) -> (Vec<u8>, bool) {
        (self.buf, self.truncated)
    }
}
