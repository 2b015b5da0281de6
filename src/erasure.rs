//! Erasure on request (`custodian erase`, `POST /admin/v1/erasures`): a
//! tenant's content, review items and fine-tune file copies go now, on
//! either store, its metadata too when asked; a legal hold wins, and the
//! erasure is audited in the same transaction.
//!
//! This reaches live rows and kept files. Content in backups taken before
//! stays readable while its day's content key lives (keys are per day, not
//! per tenant), that is until its retention ends.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::audit::AuditEvent;
use crate::domain::TenantId;
use crate::objects::copies::{FileCopies, FilesError};
use crate::store::{Erased, Erasure, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("a reason is required (it goes into the audit log)")]
    NoReason,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("file copies: {0}")]
    Files(#[from] FilesError),
}

/// Who asks to erase what, and why.
#[derive(Debug, Clone)]
pub struct Request {
    pub tenant: TenantId,
    pub include_metadata: bool,
    pub reason: String,
    /// `operator:<name>` or `principal:<name>`.
    pub actor: String,
    /// Where the request came from (a peer address, `cli user@host`).
    pub source: String,
}

pub async fn erase(
    store: &Arc<dyn Store>,
    files: Option<&FileCopies>,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Erased, ErasureError> {
    if request.reason.trim().is_empty() {
        return Err(ErasureError::NoReason);
    }
    let audit = AuditEvent {
        at: now,
        actor: request.actor.clone(),
        action: "tenant.erased".into(),
        tenant: Some(request.tenant.clone()),
        subject: Some(format!("tenant:{}", request.tenant)),
        source: request.source.clone(),
        details: serde_json::json!({"reason": request.reason}),
    };
    let erasure = Erasure {
        tenant: request.tenant.clone(),
        include_metadata: request.include_metadata,
        at: now,
    };
    let erased = store.erase_tenant(&erasure, &audit).await?;
    if let Some(files) = files {
        for file in &erased.files {
            files.remove_erased(file).await?;
        }
    }
    tracing::info!(
        tenant = %request.tenant,
        content = erased.content_rows,
        metadata = erased.metadata_rows,
        files = erased.file_copies,
        kept_by_holds = erased.kept.len(),
        "tenant data erased"
    );
    Ok(erased)
}
