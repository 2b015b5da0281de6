//! A record: one exchange, its metadata (metadata retention) and its
//! captured bodies (content retention).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::review::ReviewFlag;
use crate::domain::{KeyId, Outcome, RecordId, TenantId, TrainingTag};

/// The first bytes of a sealed (encrypted) body: the sealed format's header.
pub const SEALED_BODY_MAGIC: &[u8; 8] = b"\0CSTENC1";

/// Whether a body stored before sealing was flagged apart from the bytes
/// was sealed: only its format header can tell (spool frames of that time).
pub fn sealed_before_the_flag(body: &[u8]) -> bool {
    body.starts_with(SEALED_BODY_MAGIC)
}

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
}

/// The part of a record kept for billing and audit (metadata retention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    pub id: RecordId,
    pub request_id: String,
    pub tenant: TenantId,
    pub key_id: KeyId,
    pub route: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub model: Option<String>,
    pub usage: Usage,
    pub streamed: bool,
    pub outcome: Outcome,
    pub total_us: i64,
    pub upstream_ttfb_us: Option<i64>,
    pub upstream_total_us: Option<i64>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub training: TrainingTag,
    pub profile: String,
    pub policy_version: String,
    pub zero_data_retention: bool,
    pub received_at: OffsetDateTime,
    /// `None` when no content was stored (zero data retention).
    pub content_expires_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    /// The caller's end-user id (OpenAI `user`/`safety_identifier`,
    /// Anthropic `metadata.user_id`) as a keyed hash ([`end_user_hash`]),
    /// never in clear; `None` when none was sent or no key is configured.
    #[serde(default)]
    pub end_user_hash: Option<String>,
}

/// What stands for `end_user` of `tenant` on its records: HMAC-SHA256
/// under the operator's key, so the id is never stored, and cannot be
/// guessed back from the store without the key.
pub fn end_user_hash(key: &[u8], tenant: &TenantId, end_user: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(tenant.0.as_bytes());
    mac.update(b"\0");
    mac.update(end_user.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The captured bodies (content retention). Never written for ZDR tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SpooledContent")]
pub struct RecordContent {
    #[serde(with = "serde_bytes")]
    pub request_body: Vec<u8>,
    pub request_truncated: bool,
    #[serde(with = "serde_bytes")]
    pub response_body: Vec<u8>,
    pub response_truncated: bool,
    pub expires_at: OffsetDateTime,
    /// Both bodies are sealed (encrypted). Said apart from the bytes, so
    /// that a body in clear is never taken for a sealed one, whatever it
    /// begins with.
    pub sealed: bool,
    /// Both bodies were compressed (zstd) before they were sealed.
    pub compressed: bool,
}

/// A content as the spool holds it; frames written before `sealed` existed
/// lack it, and only then is it read from the bytes.
#[derive(Deserialize)]
struct SpooledContent {
    #[serde(with = "serde_bytes")]
    request_body: Vec<u8>,
    request_truncated: bool,
    #[serde(with = "serde_bytes")]
    response_body: Vec<u8>,
    response_truncated: bool,
    expires_at: OffsetDateTime,
    sealed: Option<bool>,
    /// Frames from before compression hold bodies as captured.
    #[serde(default)]
    compressed: bool,
}

impl From<SpooledContent> for RecordContent {
    fn from(c: SpooledContent) -> Self {
        let sealed = c
            .sealed
            .unwrap_or_else(|| sealed_before_the_flag(&c.request_body));
        Self {
            request_body: c.request_body,
            request_truncated: c.request_truncated,
            response_body: c.response_body,
            response_truncated: c.response_truncated,
            expires_at: c.expires_at,
            sealed,
            compressed: c.compressed,
        }
    }
}

/// A content row with the record and tenant it belongs to.
#[derive(Debug, Clone)]
pub struct StoredContent {
    pub record: RecordId,
    pub tenant: TenantId,
    pub content: RecordContent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub meta: RecordMeta,
    pub content: Option<RecordContent>,
    /// Set when an abuse rule flagged the request: a review item is written
    /// with the record.
    pub review: Option<ReviewFlag>,
}
