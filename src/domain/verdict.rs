//! What the abuse checks say about a request: the rule that matched, its
//! severity and action, and why a body could not be read.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Flag,
    Block,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Block => "block",
        }
    }
}

/// One rule that matched a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub rule: String,
    pub severity: Severity,
    pub action: RuleAction,
    /// Why, when the rule's name does not say it all (an unreadable body,
    /// a classifier category's score against its threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The verdict's name for a body the rules could not read in full.
pub const UNSCANNABLE_RULE: &str = "unscannable_body";

/// The outcome for a request: the strongest action and severity.
pub fn strongest(verdicts: &[Verdict]) -> Option<(RuleAction, Severity)> {
    let action = verdicts.iter().map(|v| v.action).max()?;
    let severity = verdicts.iter().map(|v| v.severity).max()?;
    Some((action, severity))
}

/// Why the rules could not read a body in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The body goes on past `server.max_scan_bytes`.
    ScanLimit,
    /// A `Content-Encoding` the gateway cannot undo (or too many layers).
    UnknownEncoding,
    /// Bytes that are not text (a binary file, an image, audio).
    Binary,
    /// A multipart body whose parts cannot be told apart.
    MalformedMultipart,
}

impl Unreadable {
    /// A stable, low-cardinality name: the review item's reason and a label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScanLimit => "scan_limit",
            Self::UnknownEncoding => "unknown_encoding",
            Self::Binary => "binary",
            Self::MalformedMultipart => "malformed_multipart",
        }
    }
}
