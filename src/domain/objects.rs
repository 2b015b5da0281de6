//! Objects kept beside the records: tenants' upstream objects (the
//! ownership registry) and the kept copies of fine-tune files.

use time::OffsetDateTime;

use crate::domain::{RecordId, TenantId};

/// A kept copy of a fine-tune file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCopy {
    pub tenant: TenantId,
    /// The upstream's file id.
    pub file_id: String,
    pub object_key: String,
    pub filename: Option<String>,
    pub purpose: String,
    pub bytes: i64,
    pub sha256: String,
    /// The upload's record.
    pub record_id: RecordId,
    pub created_at: OffsetDateTime,
    /// The blob is sealed under the file's key (said here, not by its
    /// bytes); `None` for copies kept before this was recorded.
    pub sealed: Option<bool>,
}

/// An upstream object in the registry: who created it, through which
/// route and exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamObject {
    pub route: String,
    pub object_id: String,
    pub kind: String,
    pub tenant: TenantId,
    /// The exchange that created (or first reported) it.
    pub record_id: RecordId,
    /// The collection's path as the creating request gave it, after the
    /// route's prefix: the object is at `{collection}/{object_id}`.
    pub collection: String,
    pub created_at: OffsetDateTime,
    /// When the gateway deletes it upstream (its profile's content
    /// retention), if ever.
    pub purge_at: Option<OffsetDateTime>,
    pub deleted_at: Option<OffsetDateTime>,
}
