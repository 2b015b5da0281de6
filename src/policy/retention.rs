//! Retention periods and the expiry instants they give.

use std::time::Duration;

use time::OffsetDateTime;

/// How long each part of a record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Request and response bodies (abuse-monitoring period).
    pub content: Duration,
    /// Tenant, route, status, timings, tokens, training tag (billing, audit).
    pub metadata: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetentionError {
    #[error("{part} retention {asked:?} exceeds the profile's maximum {max:?}; a tenant may only shorten retention")]
    LongerThanProfile {
        part: &'static str,
        asked: Duration,
        max: Duration,
    },
    #[error("content retention {content:?} exceeds metadata retention {metadata:?}")]
    ContentOutlivesMetadata {
        content: Duration,
        metadata: Duration,
    },
}

impl Retention {
    /// Apply a tenant's overrides to its profile's retention. Overrides may
    /// only shorten: asking for more than the profile allows is an error, so a
    /// configuration mistake is caught at load rather than silently clamped.
    pub fn narrowed(
        self,
        content: Option<Duration>,
        metadata: Option<Duration>,
    ) -> Result<Self, RetentionError> {
        let pick = |part, asked: Option<Duration>, max: Duration| match asked {
            Some(asked) if asked > max => {
                Err(RetentionError::LongerThanProfile { part, asked, max })
            }
            Some(asked) => Ok(asked),
            None => Ok(max),
        };
        Self {
            content: pick("content", content, self.content)?,
            metadata: pick("metadata", metadata, self.metadata)?,
        }
        .validated()
    }

    pub fn validated(self) -> Result<Self, RetentionError> {
        if self.content > self.metadata {
            return Err(RetentionError::ContentOutlivesMetadata {
                content: self.content,
                metadata: self.metadata,
            });
        }
        Ok(self)
    }

    pub fn content_expires_at(&self, received_at: OffsetDateTime) -> OffsetDateTime {
        received_at + self.content
    }

    pub fn metadata_expires_at(&self, received_at: OffsetDateTime) -> OffsetDateTime {
        received_at + self.metadata
    }

    /// The receipt header value, e.g. `content=30d; metadata=365d`.
    pub fn receipt(&self) -> String {
        self.receipt_for(ContentKept::Kept)
    }

    /// The receipt for an exchange whose content is kept as `kept` says.
    pub fn receipt_for(&self, kept: ContentKept) -> String {
        let metadata = format_period(self.metadata);
        match kept {
            ContentKept::Kept => {
                format!(
                    "content={}; metadata={metadata}",
                    format_period(self.content)
                )
            }
            ContentKept::ForSafetyReview => format!(
                "content={}; content_basis=safety_review; metadata={metadata}",
                format_period(self.content)
            ),
            ContentKept::NotKept => format!("content=none; metadata={metadata}"),
        }
    }
}

/// Whether an exchange's content (its bodies) is stored, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKept {
    /// Stored for the content retention period.
    Kept,
    /// A zero-data-retention request that a check flagged, kept for the
    /// review period because the profile enables safety retention.
    ForSafetyReview,
    /// Zero data retention: metadata only.
    NotKept,
}

impl ContentKept {
    pub fn is_kept(self) -> bool {
        self != Self::NotKept
    }
}

/// What content is kept (docs/design.md, "Zero data retention"): everything,
/// except for ZDR tenants, whose content is kept only when a check flagged
/// the request and the profile keeps flagged requests for review.
pub fn content_kept(
    zero_data_retention: bool,
    safety_retention: bool,
    flagged: bool,
) -> ContentKept {
    match (zero_data_retention, safety_retention && flagged) {
        (false, _) => ContentKept::Kept,
        (true, true) => ContentKept::ForSafetyReview,
        (true, false) => ContentKept::NotKept,
    }
}

/// When an exchange's parts expire: its content (`None` when none is kept)
/// and its metadata. The one answer to "what is kept, and for how long".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordExpiry {
    pub content: Option<OffsetDateTime>,
    pub metadata: OffsetDateTime,
}

/// The expiry of an exchange received at `received_at`, flagged or not.
pub fn record_expiry(
    retention: &Retention,
    zero_data_retention: bool,
    safety_retention: bool,
    received_at: OffsetDateTime,
    flagged: bool,
) -> RecordExpiry {
    let kept = content_kept(zero_data_retention, safety_retention, flagged).is_kept();
    RecordExpiry {
        content: kept.then(|| retention.content_expires_at(received_at)),
        metadata: retention.metadata_expires_at(received_at),
    }
}

/// A period in the largest whole unit that expresses it exactly: `30d`, `12h`, `90s`.
pub fn format_period(period: Duration) -> String {
    let secs = period.as_secs();
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn profile() -> Retention {
        Retention {
            content: 30 * DAY,
            metadata: 365 * DAY,
        }
    }

    #[test]
    fn what_a_record_keeps_and_until_when() {
        let retention = Retention {
            content: 30 * DAY,
            metadata: 365 * DAY,
        };
        let at = datetime!(2026-01-01 00:00 UTC);
        let content = Some(datetime!(2026-01-31 00:00 UTC));
        let metadata = datetime!(2027-01-01 00:00 UTC);
        // (zero data retention, safety retention, flagged) -> content kept until
        let cases = [
            ((false, false, false), content),
            ((false, true, true), content),
            ((true, false, true), None),
            ((true, true, false), None),
            ((true, true, true), content),
        ];
        for ((zdr, safety, flagged), want) in cases {
            let got = record_expiry(&retention, zdr, safety, at, flagged);
            assert_eq!(
                got.content, want,
                "zdr={zdr} safety={safety} flagged={flagged}"
            );
            assert_eq!(got.metadata, metadata);
        }
    }

    #[test]
    fn tenant_may_shorten_content_retention() {
        let got = profile().narrowed(Some(7 * DAY), None).unwrap();
        assert_eq!(got.content, 7 * DAY);
        assert_eq!(got.metadata, 365 * DAY);
    }

    #[test]
    fn tenant_may_not_lengthen_either_part() {
        assert!(matches!(
            profile().narrowed(Some(31 * DAY), None),
            Err(RetentionError::LongerThanProfile {
                part: "content",
                ..
            })
        ));
        assert!(matches!(
            profile().narrowed(None, Some(366 * DAY)),
            Err(RetentionError::LongerThanProfile {
                part: "metadata",
                ..
            })
        ));
    }

    #[test]
    fn content_may_not_outlive_metadata() {
        assert!(profile().narrowed(None, Some(10 * DAY)).is_err());
    }

    #[test]
    fn expiry_is_received_plus_period() {
        let at = datetime!(2026-01-31 23:00 UTC);
        assert_eq!(
            profile().content_expires_at(at),
            datetime!(2026-03-02 23:00 UTC)
        );
    }

    #[test]
    fn receipt_names_both_periods() {
        assert_eq!(profile().receipt(), "content=30d; metadata=365d");
        assert_eq!(format_period(Duration::from_secs(7_200)), "2h");
        assert_eq!(format_period(Duration::from_secs(61)), "61s");
    }
}
