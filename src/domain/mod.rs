//! Small types that cross module boundaries.

pub mod access;
pub mod audit;
pub mod clock;
pub mod codec;
pub mod objects;
pub mod records;
pub mod review;
pub mod verdict;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The customer organisation a caller belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-secret identifier of the key a caller used (a prefix of its hash or
/// fingerprint). Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one proxied request and its stored record. UUIDv7, so ids sort
/// by time and inserts stay index-friendly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub Uuid);

impl RecordId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RecordId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a request may or may not be used for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingBasis {
    ZeroDataRetention,
    RequestOptOut,
    ExplicitOptIn,
    ExplicitOptOut,
    LegacyDefault,
    DefaultOptOut,
    ConsentUnavailable,
}

impl TrainingBasis {
    pub const ALL: [TrainingBasis; 7] = [
        Self::ZeroDataRetention,
        Self::RequestOptOut,
        Self::ExplicitOptIn,
        Self::ExplicitOptOut,
        Self::LegacyDefault,
        Self::DefaultOptOut,
        Self::ConsentUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZeroDataRetention => "zero_data_retention",
            Self::RequestOptOut => "request_opt_out",
            Self::ExplicitOptIn => "explicit_opt_in",
            Self::ExplicitOptOut => "explicit_opt_out",
            Self::LegacyDefault => "legacy_default",
            Self::DefaultOptOut => "default_opt_out",
            Self::ConsentUnavailable => "consent_unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

impl fmt::Display for TrainingBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The training-use tag a request receives at the instant it is received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingTag {
    pub usable: bool,
    pub basis: TrainingBasis,
}

impl TrainingTag {
    pub fn receipt(self) -> &'static str {
        if self.usable {
            "allowed"
        } else {
            "denied"
        }
    }
}

/// One append-only consent event of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    pub tenant: TenantId,
    pub opted_in: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub effective_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub actor: String,
    pub source: String,
    pub note: Option<String>,
}

/// How a proxied exchange ended; stored with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The response was relayed completely.
    Completed,
    /// The client went away before the response ended; the upstream call was cancelled.
    ClientDisconnected,
    /// The upstream failed mid-response (reset, idle timeout).
    UpstreamFailed,
    /// The gateway answered itself (413, 502, 504...), nothing or part went upstream.
    GatewayError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ClientDisconnected => "client_disconnected",
            Self::UpstreamFailed => "upstream_failed",
            Self::GatewayError => "gateway_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Completed,
            Self::ClientDisconnected,
            Self::UpstreamFailed,
            Self::GatewayError,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_version_7_and_ordered_as_created() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| RecordId::new().0).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        // Cursors tie-break on the id when two records share an instant.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
