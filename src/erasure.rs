//! Erasure on request (`custodian erase`, `POST /admin/v1/erasures`): a
//! tenant's content, review items and fine-tune file copies go now, on
//! either store, its metadata too when asked; a legal hold wins, and the
//! erasure is audited in the same transaction.
//!
//! With encryption on it reaches backups too: the tenant's key is
//! destroyed (unless a legal hold keeps some of its content), and every
//! copy of content sealed under it, anywhere, is unreadable at once. Content
//! sealed before tenant keys existed (under a day key alone) stays readable
//! in backups until its day's key is destroyed at the end of its retention.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::crypto::{ContentKeys, CryptoError};
use crate::domain::audit::AuditEvent;
use crate::domain::TenantId;
use crate::objects::copies::FileCopies;
use crate::store::{Erased, Erasure, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("a reason is required (it goes into the audit log)")]
    NoReason,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the erasure is done in the store, but the tenant's key could not be destroyed: {0}")]
    Keys(#[from] CryptoError),
}

/// Who asks to erase what, and why.
#[derive(Debug, Clone)]
pub struct Request {
    pub tenant: TenantId,
    pub include_metadata: bool,
    /// Only this end user's records (its keyed hash, `end_user_hash`):
    /// live rows only, never backups (the key is the tenant's).
    pub end_user_hash: Option<String>,
    pub reason: String,
    /// `operator:<name>` or `principal:<name>`.
    pub actor: String,
    /// Where the request came from (a peer address, `cli user@host`).
    pub source: String,
}

pub async fn erase(
    store: &Arc<dyn Store>,
    files: Option<&FileCopies>,
    keys: Option<&ContentKeys>,
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
        end_user_hash: request.end_user_hash.clone(),
    };
    let mut erased = store.erase_tenant(&erasure, &audit).await?;
    if let Some(files) = files {
        // Past the commit the erasure has happened: every file is tried,
        // and those that could not be removed are named in the answer.
        for file in erased.files.clone() {
            if let Err(e) = files.remove_erased(&file).await {
                tracing::error!(error = %e, object = %file.object_key, "erased file copy not removed");
                erased.files_not_removed.push(file.object_key);
            }
        }
    }
    match (keys, &request.end_user_hash) {
        (Some(keys), None) => {
            erased.tenant_key = Some(shred_tenant(keys, &request.tenant, &erased).await?);
        }
        (Some(_), Some(_)) => {
            erased.tenant_key = Some(
                "kept: an end user's erasure reaches live rows, not backups (the key is the tenant's)"
                    .to_owned(),
            );
        }
        (None, _) => {}
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

/// Destroy the tenant's key unless a hold keeps content sealed under it.
async fn shred_tenant(
    keys: &ContentKeys,
    tenant: &TenantId,
    erased: &Erased,
) -> Result<String, ErasureError> {
    let holding: Vec<String> = erased
        .kept
        .iter()
        .filter(|k| k.content_rows_kept > 0)
        .map(|k| format!("#{}", k.hold_id))
        .collect();
    if !holding.is_empty() {
        return Ok(format!(
            "kept: legal hold {} keeps content sealed under it; backups stay readable until it is released and the tenant erased again",
            holding.join(", ")
        ));
    }
    match keys.destroy_tenant(tenant).await? {
        true => Ok("destroyed".to_owned()),
        false => Ok(
            "not found: the key store holds no key for this tenant (is it the gateway's key store?)"
                .to_owned(),
        ),
    }
}
