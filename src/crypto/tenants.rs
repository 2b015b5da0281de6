//! Tenant keys. Each record's content key is derived (HKDF-SHA256) from
//! the key of its content's expiry day and the key of its tenant, so that
//! destroying either shreds it everywhere: a day's key when its content
//! has expired, a tenant's key when the tenant is erased. The key store
//! holds days + tenants keys, not days × tenants.

use std::collections::HashMap;
use std::sync::Arc;

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hkdf;
use sha2::{Digest, Sha256};

use super::{ContentKeys, CryptoError, Derived};
use crate::domain::TenantId;

pub(super) const TENANT_PREFIX: &str = "tenant-";
/// Which tenant key sealed a value (a tenant erased and keyed again is
/// told apart): the first bytes of the key's SHA-256.
pub(super) const TAG_LEN: usize = 4;

/// The key store's name for a tenant's key: fixed length and safe as a
/// file name whatever the tenant id.
pub fn tenant_key_name(tenant: &TenantId) -> String {
    let digest = hex::encode(Sha256::digest(tenant.0.as_bytes()));
    format!("{TENANT_PREFIX}{}", &digest[..32])
}

/// A tenant's key in memory, with its stored form.
#[derive(Clone)]
pub(super) struct TenantKey {
    pub(super) stored: Vec<u8>,
    pub(super) raw: Arc<Vec<u8>>,
    pub(super) tag: [u8; TAG_LEN],
}

impl TenantKey {
    pub(super) fn new(stored: Vec<u8>, raw: Vec<u8>) -> Self {
        let digest = Sha256::digest(&raw);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        Self {
            stored,
            raw: Arc::new(raw),
            tag,
        }
    }
}

/// The content key of `tenant`'s content expiring on `day`.
pub(super) fn derive(
    day_raw: &[u8],
    tenant_raw: &[u8],
    day: i32,
    tenant: &TenantId,
) -> Result<LessSafeKey, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, day_raw).extract(tenant_raw);
    let day = day.to_le_bytes();
    let info: [&[u8]; 4] = [b"custodian/content/v2\0", &day, tenant.0.as_bytes(), b"\0"];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| CryptoError::Seal)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

impl ContentKeys {
    pub(super) async fn refresh_tenants(&self) -> Result<(), CryptoError> {
        let listed = self.store.list(TENANT_PREFIX).await?;
        let known = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut fresh = HashMap::with_capacity(listed.len());
        let mut failure = None;
        for wrapped in listed {
            match known.get(&wrapped.name) {
                Some(held) if held.stored == wrapped.wrapped => {
                    fresh.insert(wrapped.name, held.clone());
                }
                _ => match self.keyring.unwrap(&wrapped) {
                    Ok(raw) => {
                        fresh.insert(wrapped.name, TenantKey::new(wrapped.wrapped, raw));
                    }
                    Err(e) => failure = Some(e),
                },
            }
        }
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        failure.map_or(Ok(()), Err)
    }

    /// Make the keys of `tenants` that do not exist yet.
    pub async fn prepare_tenants(&self, tenants: &[TenantId]) -> Result<(), CryptoError> {
        let _upkeep = self.upkeep.lock().await;
        for tenant in tenants {
            let name = tenant_key_name(tenant);
            if self.tenant_key(&name).is_none() {
                self.make_tenant_key(name).await?;
            }
        }
        Ok(())
    }

    /// Make (or, if another replica was first, take) the key `name` and
    /// hold it. The caller holds the upkeep lock.
    async fn make_tenant_key(&self, name: String) -> Result<(), CryptoError> {
        let raw = self.new_raw_key()?;
        let candidate = self.keyring.wrap(&name, &raw, &self.random)?;
        let stored = self.store.insert_if_absent(candidate).await?;
        let raw = self.keyring.unwrap(&stored)?;
        // Replaces a destroyed key in one step: no seal finds none.
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, TenantKey::new(stored.wrapped, raw));
        Ok(())
    }

    /// Crypto-shred one tenant (erasure): destroy its key, so that every
    /// copy of its content, backups included, is noise, and make it a new
    /// one for what comes next, under one upkeep lock. Returns whether a
    /// key was destroyed (`false`: the key store held none for the tenant).
    /// A new key that cannot be made now is made by the next upkeep.
    pub async fn destroy_tenant(&self, tenant: &TenantId) -> Result<bool, CryptoError> {
        let name = tenant_key_name(tenant);
        let _upkeep = self.upkeep.lock().await;
        let destroyed = self.store.delete(vec![name.clone()]).await? > 0;
        if let Err(e) = self.make_tenant_key(name.clone()).await {
            tracing::error!(error = %e, tenant = %tenant, "no new key for an erased tenant yet");
            self.tenants
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        }
        self.derived
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        Ok(destroyed)
    }

    fn tenant_key(&self, name: &str) -> Option<TenantKey> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The content key of `tenant`'s content of `day`, derived once.
    pub(super) fn content_key(&self, day: i32, tenant: &TenantId) -> Result<Derived, CryptoError> {
        let cached = self
            .derived
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .and_then(|by_day| by_day.get(&day))
            .cloned();
        if let Some(derived) = cached {
            return Ok(derived);
        }
        let day_key = self.day_entry(day).ok_or(CryptoError::NoKey(day))?;
        let tenant_key = self
            .tenant_key(&tenant_key_name(tenant))
            .ok_or_else(|| CryptoError::NoTenantKey(tenant.0.clone()))?;
        let derived = Derived {
            key: Arc::new(derive(&day_key.raw, &tenant_key.raw, day, tenant)?),
            tag: tenant_key.tag,
        };
        // Keys change before the cache is cleared: checked again under the
        // cache's lock, a key destroyed meanwhile is never cached (nor used).
        let mut cache = self.derived.write().unwrap_or_else(|p| p.into_inner());
        let tenant_still = self
            .tenant_key(&tenant_key_name(tenant))
            .is_some_and(|k| k.tag == tenant_key.tag);
        let day_still = self
            .day_entry(day)
            .is_some_and(|d| Arc::ptr_eq(&d.raw, &day_key.raw));
        if !(tenant_still && day_still) {
            return Err(CryptoError::NoTenantKey(tenant.0.clone()));
        }
        cache
            .entry(tenant.clone())
            .or_default()
            .insert(day, derived.clone());
        Ok(derived)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kek, KeyStore, Keyring, Opened};
    use super::*;
    use crate::domain::RecordId;
    use time::macros::datetime;

    const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    async fn keys(dir: &std::path::Path, tenants: &[&str]) -> ContentKeys {
        let keyring = Keyring::new(Kek::from_hex(KEK).unwrap(), Vec::new());
        let keys = ContentKeys::open(KeyStore::dir(dir, true).unwrap(), keyring)
            .await
            .unwrap();
        let at = datetime!(2027-01-10 12:00 UTC);
        keys.prepare(at, at).await.unwrap();
        let tenants: Vec<TenantId> = tenants.iter().map(|t| TenantId((*t).into())).collect();
        keys.prepare_tenants(&tenants).await.unwrap();
        keys
    }

    #[tokio::test]
    async fn erasing_a_tenant_shreds_its_content_and_no_one_elses() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), &["acme", "beta"]).await;
        let at = datetime!(2027-01-10 12:00 UTC);
        let (acme, beta) = (TenantId("acme".into()), TenantId("beta".into()));
        let id = RecordId::new();
        let a = k.seal(at, id, &acme, "request", b"acme's prompt").unwrap();
        let b = k.seal(at, id, &beta, "request", b"beta's prompt").unwrap();
        assert!(k.destroy_tenant(&acme).await.unwrap());
        assert_eq!(k.open_field(id, &acme, "request", &a), Opened::Erased);
        assert_eq!(
            k.open_field(id, &beta, "request", &b),
            Opened::Decrypted(b"beta's prompt".to_vec())
        );
        // A fresh process (a restored backup's reader) sees the same.
        let fresh = keys(dir.path(), &[]).await;
        assert_eq!(fresh.open_field(id, &acme, "request", &a), Opened::Erased);
        // The tenant goes on with a new key.
        let again = k.seal(at, id, &acme, "request", b"after").unwrap();
        assert_eq!(
            fresh_open(dir.path(), id, &acme, &again).await,
            Opened::Decrypted(b"after".to_vec())
        );
    }

    async fn fresh_open(dir: &std::path::Path, id: RecordId, t: &TenantId, v: &[u8]) -> Opened {
        keys(dir, &[]).await.open_field(id, t, "request", v)
    }

    #[tokio::test]
    async fn a_value_needs_both_its_day_key_and_its_tenant_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), &["acme"]).await;
        let at = datetime!(2027-01-10 12:00 UTC);
        let acme = TenantId("acme".into());
        let id = RecordId::new();
        let sealed = k.seal(at, id, &acme, "request", b"p").unwrap();
        let err = k.seal(at, id, &TenantId("unknown".into()), "request", b"p");
        assert!(matches!(err, Err(CryptoError::NoTenantKey(_))));
        // Moved to another tenant's row it does not open (its tag is not
        // that tenant's key's: it reads as erased, never as content).
        k.prepare_tenants(&[TenantId("beta".into())]).await.unwrap();
        assert_eq!(
            k.open_field(id, &TenantId("beta".into()), "request", &sealed),
            Opened::Erased
        );
        k.destroy_expired(at + time::Duration::days(2), &Default::default())
            .await
            .unwrap();
        assert_eq!(k.open_field(id, &acme, "request", &sealed), Opened::Expired);
    }

    #[tokio::test]
    async fn a_replica_forgets_its_derived_key_once_it_sees_the_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (
            keys(dir.path(), &["acme"]).await,
            keys(dir.path(), &["acme"]).await,
        );
        let at = datetime!(2027-01-10 12:00 UTC);
        let acme = TenantId("acme".into());
        let id = RecordId::new();
        let sealed = one.seal(at, id, &acme, "request", b"p").unwrap();
        // The replica has derived (and cached) the key by reading it.
        assert_eq!(
            two.open_field(id, &acme, "request", &sealed),
            Opened::Decrypted(b"p".to_vec())
        );
        assert!(one.destroy_tenant(&acme).await.unwrap());
        two.refresh().await.unwrap();
        assert_eq!(
            two.open_field(id, &acme, "request", &sealed),
            Opened::Erased
        );
        // And seals for the tenant under its new key, which the other opens.
        let after = two.seal(at, id, &acme, "request", b"q").unwrap();
        assert_eq!(
            one.open_field(id, &acme, "request", &after),
            Opened::Decrypted(b"q".to_vec())
        );
    }

    #[test]
    fn key_names_are_fixed_length_file_names() {
        let long = TenantId("a/../b ".repeat(100));
        let name = tenant_key_name(&long);
        assert_eq!(name.len(), TENANT_PREFIX.len() + 32);
        assert!(name[TENANT_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
        assert_ne!(name, tenant_key_name(&TenantId("acme".into())));
    }
}
