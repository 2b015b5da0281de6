//! Encryption at rest with crypto-shredding.
//!
//! Captured content is sealed with AES-256-GCM (ring) before it leaves
//! memory: a fresh random nonce per value, and the record id, tenant and
//! field bound as associated data, so a ciphertext moved to another row or
//! field does not open. Each content expiry day has its own data key, each
//! tenant its own, and a record's content is sealed under a key derived
//! from both ([`tenants`]); each kept fine-tune file has its own. Data keys are wrapped by the
//! key-encryption key (KEK, from the environment or a file) and kept in a
//! key store apart from the content store ([`key_store`]). When a day has
//! passed, the sweeper destroys its key: every copy of that day's content,
//! in any backup or replica, is then noise. Erasing a tenant destroys its
//! key, with the same effect on all of that tenant's content.
//!
//! Sealing happens on the proxy path and never waits for the key store:
//! the days' keys are made ahead ([`ContentKeys::prepare`]) and held in
//! memory, refreshed from the store on a timer so that replicas see keys
//! made or destroyed by the others.

mod files;
mod kek;
pub mod key_store;
pub mod shred_check;
mod tenants;

pub use files::*;
pub use kek::*;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::{RecordId, TenantId};
pub use key_store::{KeyStore, WrappedKey};
pub use tenants::tenant_key_name;
use tenants::{TenantKey, TAG_LEN, TENANT_PREFIX};

/// Marks a sealed value; a NUL first byte never starts a text or JSON body.
const MAGIC: &[u8; 8] = crate::domain::records::SEALED_BODY_MAGIC;
/// Sealed under the day and tenant keys together (values sealed under the
/// day key alone, [`MAGIC`], still open).
const MAGIC_V2: &[u8; 8] = b"\0CSTENC2";
const DAY_LEN: usize = 4;
const HEADER: usize = MAGIC_V2.len() + DAY_LEN + TAG_LEN + NONCE_LEN;
const KEY_LEN: usize = 32;
const CONTENT_PREFIX: &str = "content-";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the key-encryption key must be 64 hex digits (32 bytes)")]
    BadKek,
    #[error("key store {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("key store database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("key file {0} is damaged: {1}")]
    BadKeyFile(PathBuf, String),
    #[error(
        "key {0} is wrapped by key-encryption key {1}, which is neither encryption.kek \
         nor one of encryption.previous_keks"
    )]
    WrongKek(String, String),
    #[error("key {0} does not unwrap with its key-encryption key (damaged or moved)")]
    BadKey(String),
    #[error("no content key for day {0}: the key upkeep has not made it (is the key store down?)")]
    NoKey(i32),
    #[error("no key for tenant {0}: the key upkeep has not made it (is the key store down?)")]
    NoTenantKey(String),
    #[error("key {0} vanished from the key store while being created")]
    Vanished(String),
    #[error(
        "the key store database holds the gateway's content tables: keys must live apart \
         from the content they open (give encryption.key_store_url its own database)"
    )]
    KeysBesideContent,
    #[error("the key store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("encryption failed")]
    Seal,
}

/// What opening a stored value gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Stored before encryption was turned on.
    Plain(Vec<u8>),
    Decrypted(Vec<u8>),
    /// Its day's key has been destroyed: the content has expired.
    Expired,
    /// The tenant key it was sealed under has been destroyed: erased.
    Erased,
    /// It does not open with its key (tampered, or moved from another row).
    Unreadable,
}

/// The KEK new keys are wrapped with, and the earlier ones still accepted
/// for unwrapping while a rotation is under way.
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
}

impl Keyring {
    pub fn new(current: Kek, previous: Vec<Kek>) -> Self {
        Self { current, previous }
    }

    pub fn current(&self) -> &Kek {
        &self.current
    }

    /// Whether `kek_id` is the current KEK, a previous one, or unknown.
    pub fn role_of(&self, kek_id: &str) -> &'static str {
        if kek_id == self.current.id {
            "current"
        } else if self.previous.iter().any(|k| k.id == kek_id) {
            "previous"
        } else {
            "unknown"
        }
    }

    fn unwrap(&self, key: &WrappedKey) -> Result<Vec<u8>, CryptoError> {
        let kek = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key.kek_id)
            .ok_or_else(|| CryptoError::WrongKek(key.name.clone(), key.kek_id.clone()))?;
        unwrap_key(kek, &key.wrapped, &key.name)
            .ok_or_else(|| CryptoError::BadKey(key.name.clone()))
    }

    fn wrap(
        &self,
        name: &str,
        raw: &[u8],
        random: &SystemRandom,
    ) -> Result<WrappedKey, CryptoError> {
        Ok(WrappedKey {
            name: name.to_owned(),
            kek_id: self.current.id.clone(),
            wrapped: wrap_key(&self.current, raw, name, random)?,
        })
    }
}

/// The data keys: content keys of days held in memory, file keys read
/// from the store when needed.
pub struct ContentKeys {
    store: KeyStore,
    keyring: Keyring,
    days: RwLock<HashMap<i32, DayKey>>,
    /// Tenants' keys by their names in the key store.
    tenants: RwLock<HashMap<String, TenantKey>>,
    /// Content keys derived so far by tenant and day, with the tag of the
    /// tenant key used (looked up by reference: no allocation per seal).
    derived: RwLock<HashMap<TenantId, HashMap<i32, Derived>>>,
    /// Refresh, prepare and destroy one at a time, so that a refresh that
    /// listed the store before a key was made does not forget it.
    upkeep: tokio::sync::Mutex<()>,
    random: SystemRandom,
}

impl std::fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKeys")
            .field("store", &self.store.describe())
            .field("kek", &self.keyring.current.id)
            .finish_non_exhaustive()
    }
}

/// The day (since the Unix epoch) whose key seals content expiring at `at`.
pub fn key_day(at: OffsetDateTime) -> i32 {
    i32::try_from(at.unix_timestamp().div_euclid(86_400)).unwrap_or(i32::MAX)
}

fn aad(record: RecordId, tenant: &TenantId, field: &str) -> Vec<u8> {
    let mut out = b"custodian/v1\0".to_vec();
    out.extend_from_slice(record.0.as_bytes());
    out.extend_from_slice(tenant.0.as_bytes());
    out.push(0);
    out.extend_from_slice(field.as_bytes());
    out
}

fn aead_key(raw: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, raw)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Seal)
}

/// A day's key in memory, with its stored form (a day destroyed and made
/// again, or re-wrapped, is told apart from the one held).
#[derive(Clone)]
struct DayKey {
    stored: Vec<u8>,
    key: Arc<LessSafeKey>,
    raw: Arc<Vec<u8>>,
}

/// A content key derived from a day's key and a tenant's.
#[derive(Clone)]
struct Derived {
    key: Arc<LessSafeKey>,
    tag: [u8; TAG_LEN],
}

/// How many keys each KEK wraps.
#[derive(Debug, Default)]
pub struct Census {
    pub by_kek: BTreeMap<String, usize>,
    pub content_days: Vec<i32>,
    pub tenants: usize,
    pub files: usize,
}

impl ContentKeys {
    /// Open the key store and load the content keys it holds. Fails when a
    /// key is wrapped by a KEK the keyring does not hold.
    pub async fn open(store: KeyStore, keyring: Keyring) -> Result<Self, CryptoError> {
        let keys = Self {
            store,
            keyring,
            days: RwLock::default(),
            tenants: RwLock::default(),
            derived: RwLock::default(),
            upkeep: tokio::sync::Mutex::new(()),
            random: SystemRandom::new(),
        };
        keys.refresh().await?;
        Ok(keys)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Make the memory match the store: keys made by other replicas come
    /// in, keys destroyed by them go. A key that does not unwrap is left
    /// out and reported (the others still load).
    pub async fn refresh(&self) -> Result<(), CryptoError> {
        let _upkeep = self.upkeep.lock().await;
        let listed = self.store.list(CONTENT_PREFIX).await?;
        let known = self.days.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut fresh = HashMap::with_capacity(listed.len());
        let mut failure = None;
        for wrapped in listed {
            let Some(day) = content_day(&wrapped.name) else {
                continue;
            };
            match known.get(&day) {
                Some(held) if held.stored == wrapped.wrapped => {
                    fresh.insert(day, held.clone());
                }
                _ => match self.day_key_from(wrapped) {
                    Ok(key) => {
                        fresh.insert(day, key);
                    }
                    Err(e) => failure = Some(e),
                },
            }
        }
        *self.days.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        if let Err(e) = self.refresh_tenants().await {
            failure = Some(e);
        }
        // Keys made or destroyed elsewhere: derive again from what is held.
        self.derived
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        failure.map_or(Ok(()), Err)
    }

    /// Make the keys of the days in `from..=to` that do not exist yet, so
    /// that sealing never waits for the key store.
    pub async fn prepare(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<(), CryptoError> {
        let _upkeep = self.upkeep.lock().await;
        for day in key_day(from)..=key_day(to) {
            if self.day_key(day).is_some() {
                continue;
            }
            let name = day_name(day);
            let raw = self.new_raw_key()?;
            let candidate = self.keyring.wrap(&name, &raw, &self.random)?;
            // Another replica may have made it first: use the stored one.
            let stored = self.store.insert_if_absent(candidate).await?;
            let key = self.day_key_from(stored)?;
            self.days
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(day, key);
        }
        Ok(())
    }

    fn day_key_from(&self, wrapped: WrappedKey) -> Result<DayKey, CryptoError> {
        let raw = self.keyring.unwrap(&wrapped)?;
        Ok(DayKey {
            stored: wrapped.wrapped,
            key: Arc::new(aead_key(&raw)?),
            raw: Arc::new(raw),
        })
    }

    /// How many days from `from` on have a key, without a gap.
    pub fn days_ready(&self, from: OffsetDateTime) -> i64 {
        let days = self.days.read().unwrap_or_else(|p| p.into_inner());
        (key_day(from)..)
            .take_while(|d| days.contains_key(d))
            .count()
            .try_into()
            .unwrap_or(i64::MAX)
    }

    fn day_key(&self, day: i32) -> Option<Arc<LessSafeKey>> {
        self.day_entry(day).map(|d| d.key)
    }

    fn day_entry(&self, day: i32) -> Option<DayKey> {
        self.days
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&day)
            .cloned()
    }

    fn new_raw_key(&self) -> Result<Vec<u8>, CryptoError> {
        let mut raw = vec![0u8; KEY_LEN];
        self.random.fill(&mut raw).map_err(|_| CryptoError::Seal)?;
        Ok(raw)
    }

    /// Seal one field of a record whose content expires at `expires_at`.
    pub fn seal(
        &self,
        expires_at: OffsetDateTime,
        record: RecordId,
        tenant: &TenantId,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let day = key_day(expires_at);
        let Derived { key, tag } = self.content_key(day, tenant)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(MAGIC_V2);
        out.extend_from_slice(&day.to_le_bytes());
        out.extend_from_slice(&tag);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(record, tenant, field)),
            &mut body,
        )
        .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Open a sealed field: decrypted, expired (its key destroyed) or
    /// unreadable. Never garbage. (Whether a field is sealed is stored
    /// beside it, never guessed from its bytes.)
    pub fn open_field(
        &self,
        record: RecordId,
        tenant: &TenantId,
        field: &str,
        stored: &[u8],
    ) -> Opened {
        let (rest, tagged) = match (
            stored.strip_prefix(MAGIC_V2.as_slice()),
            stored.strip_prefix(MAGIC.as_slice()),
        ) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, false),
            (None, None) => return Opened::Unreadable,
        };
        let tag_len = if tagged { TAG_LEN } else { 0 };
        if rest.len() < DAY_LEN + tag_len + NONCE_LEN {
            return Opened::Unreadable;
        }
        let day = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let key = if tagged {
            match self.content_key(day, tenant) {
                // Sealed under a tenant key since destroyed: erased.
                Ok(d) if d.tag[..] == rest[DAY_LEN..DAY_LEN + TAG_LEN] => d.key,
                Ok(_) | Err(CryptoError::NoTenantKey(_)) => return Opened::Erased,
                Err(CryptoError::NoKey(_)) => return Opened::Expired,
                Err(_) => return Opened::Unreadable,
            }
        } else {
            match self.day_key(day) {
                Some(key) => key,
                None => return Opened::Expired,
            }
        };
        let rest = &rest[DAY_LEN + tag_len..];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[..NONCE_LEN]);
        let mut body = rest[NONCE_LEN..].to_vec();
        match key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(record, tenant, field)),
            &mut body,
        ) {
            Ok(plain) => Opened::Decrypted(plain.to_vec()),
            Err(_) => Opened::Unreadable,
        }
    }

    /// Crypto-shred: destroy the keys of every day that ended before `now`,
    /// except the days in `held` (content a legal hold keeps). Returns the
    /// days destroyed.
    pub async fn destroy_expired(
        &self,
        now: OffsetDateTime,
        held: &std::collections::HashSet<i32>,
    ) -> Result<Vec<i32>, CryptoError> {
        let _upkeep = self.upkeep.lock().await;
        let today = key_day(now);
        let ended: Vec<(i32, String)> = self
            .store
            .names(CONTENT_PREFIX)
            .await?
            .into_iter()
            .filter_map(|name| Some((content_day(&name)?, name)))
            .filter(|(day, _)| *day < today && !held.contains(day))
            .collect();
        let names = ended.iter().map(|(_, n)| n.clone()).collect();
        self.store.delete(names).await?;
        let keep = |day: &i32| *day >= today || held.contains(day);
        let mut days = self.days.write().unwrap_or_else(|p| p.into_inner());
        days.retain(|day, _| keep(day));
        for by_day in self
            .derived
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            by_day.retain(|day, _| keep(day));
        }
        Ok(ended.into_iter().map(|(day, _)| day).collect())
    }

    /// Re-wrap every stored key not under the current KEK with it (content
    /// is not touched). Keys already under it are left as they are, so a
    /// rotation cut short is finished by running it again; gateways that
    /// hold the old KEK among `previous_keks` keep working throughout.
    /// Returns how many keys were re-wrapped.
    pub async fn rotate_kek(&self) -> Result<usize, CryptoError> {
        let mut done = 0;
        for wrapped in self.store.list("").await? {
            if wrapped.kek_id == self.keyring.current.id {
                continue;
            }
            let raw = self.keyring.unwrap(&wrapped)?;
            let rewrapped = self.keyring.wrap(&wrapped.name, &raw, &self.random)?;
            if self.store.rewrap(&wrapped, rewrapped).await? {
                done += 1;
            }
        }
        if done > 0 {
            // The old wrappings linger in dead rows until vacuumed.
            self.store.vacuum().await;
        }
        Ok(done)
    }

    /// What the key store holds, by KEK.
    pub async fn census(&self) -> Result<Census, CryptoError> {
        let mut census = Census::default();
        for wrapped in self.store.list("").await? {
            *census.by_kek.entry(wrapped.kek_id).or_default() += 1;
            match content_day(&wrapped.name) {
                Some(day) => census.content_days.push(day),
                None if wrapped.name.starts_with(TENANT_PREFIX) => census.tenants += 1,
                None => census.files += 1,
            }
        }
        census.content_days.sort_unstable();
        Ok(census)
    }
}

fn content_day(name: &str) -> Option<i32> {
    name.strip_prefix(CONTENT_PREFIX)?.parse().ok()
}

fn day_name(day: i32) -> String {
    format!("{CONTENT_PREFIX}{day}")
}

/// Seal a record's captured bodies in place, before the record goes
/// anywhere (spool or store). A body that cannot be sealed is dropped with
/// the rest of the content, never kept in clear.
pub fn seal_record(keys: &ContentKeys, record: &mut crate::domain::records::Record) {
    let Some(content) = record.content.as_mut() else {
        return;
    };
    let (id, tenant, at) = (record.meta.id, &record.meta.tenant, content.expires_at);
    let sealed = keys
        .seal(at, id, tenant, "request", &content.request_body)
        .and_then(|req| {
            Ok((
                req,
                keys.seal(at, id, tenant, "response", &content.response_body)?,
            ))
        });
    match sealed {
        Ok((request, response)) => {
            content.request_body = request;
            content.response_body = response;
            content.sealed = true;
        }
        Err(e) => {
            metrics::counter!("custodian_content_seal_failures_total").increment(1);
            tracing::error!(error = %e, record = %id, "content could not be encrypted; not stored");
            record.content = None;
            record.meta.content_expires_at = None;
        }
    }
}

/// A record's content as a reader gets it.
#[derive(Debug, PartialEq, Eq)]
pub enum ContentView {
    /// Readable (decrypted, or stored before encryption was on).
    Readable { request: Vec<u8>, response: Vec<u8> },
    /// Its key has been destroyed (or the rows swept): expired.
    Expired,
    /// Present but does not decrypt (tampered, or the wrong key store).
    Unreadable,
}

/// Open `content` of the record `id` of `tenant`: decrypted, then
/// decompressed, as it was captured.
pub fn open_content(
    keys: Option<&ContentKeys>,
    id: RecordId,
    tenant: &TenantId,
    content: &crate::domain::records::RecordContent,
) -> ContentView {
    let open = |field, bytes: &[u8]| match (content.sealed, keys) {
        (false, _) => Opened::Plain(bytes.to_vec()),
        (true, Some(k)) => k.open_field(id, tenant, field, bytes),
        (true, None) => Opened::Unreadable,
    };
    let (request, response) = match (
        open("request", &content.request_body),
        open("response", &content.response_body),
    ) {
        (
            Opened::Plain(request) | Opened::Decrypted(request),
            Opened::Plain(response) | Opened::Decrypted(response),
        ) => (request, response),
        (Opened::Expired | Opened::Erased, _) | (_, Opened::Expired | Opened::Erased) => {
            return ContentView::Expired
        }
        _ => return ContentView::Unreadable,
    };
    if !content.compressed {
        return ContentView::Readable { request, response };
    }
    use crate::domain::codec::decompress;
    match (decompress(&request), decompress(&response)) {
        (Ok(request), Ok(response)) => ContentView::Readable { request, response },
        _ => ContentView::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;
    use time::macros::datetime;

    const KEK_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEK_B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    async fn keys(dir: &Path, kek: &str) -> ContentKeys {
        keyring_keys(dir, kek, &[]).await.unwrap()
    }

    async fn keyring_keys(
        dir: &Path,
        kek: &str,
        previous: &[&str],
    ) -> Result<ContentKeys, CryptoError> {
        let previous = previous.iter().map(|k| Kek::from_hex(k).unwrap()).collect();
        let keyring = Keyring::new(Kek::from_hex(kek).unwrap(), previous);
        ContentKeys::open(KeyStore::dir(dir, true).unwrap(), keyring).await
    }

    /// Keys for `at`'s day and the next, and acme's, as the upkeep makes them.
    async fn prepared(dir: &Path, kek: &str, at: OffsetDateTime) -> ContentKeys {
        let k = keys(dir, kek).await;
        k.prepare(at, at + time::Duration::days(1)).await.unwrap();
        k.prepare_tenants(&[acme()]).await.unwrap();
        k
    }

    fn acme() -> TenantId {
        TenantId("acme".into())
    }

    #[tokio::test]
    async fn sealed_content_opens_only_in_its_own_row_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2027-01-10 12:00 UTC);
        let k = prepared(dir.path(), KEK_A, at).await;
        let (id, other) = (RecordId::new(), RecordId::new());
        let sealed = k
            .seal(at, id, &acme(), "request", b"secret prompt")
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            k.open_field(id, &acme(), "request", &sealed),
            Opened::Decrypted(b"secret prompt".to_vec())
        );
        for (rid, field) in [(other, "request"), (id, "response")] {
            assert_eq!(
                k.open_field(rid, &acme(), field, &sealed),
                Opened::Unreadable
            );
        }
        // In another tenant's row it is not that tenant's key's: it reads
        // as that tenant's erased content, never as content.
        assert_eq!(
            k.open_field(id, &TenantId("beta".into()), "request", &sealed),
            Opened::Erased
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            k.open_field(id, &acme(), "request", &tampered),
            Opened::Unreadable
        );
        // Two seals of the same bytes differ (fresh nonces).
        assert_ne!(
            sealed,
            k.seal(at, id, &acme(), "request", b"secret prompt")
                .unwrap()
        );
        assert_eq!(
            k.open_field(id, &acme(), "request", b"{\"plain\":1}"),
            Opened::Unreadable
        );
    }

    #[tokio::test]
    async fn values_sealed_under_a_day_key_alone_still_open_until_their_day_ends() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2027-01-10 12:00 UTC);
        let k = prepared(dir.path(), KEK_A, at).await;
        let (day, id, nonce) = (key_day(at), RecordId::new(), [7u8; NONCE_LEN]);
        let mut body = b"old prompt".to_vec();
        k.day_key(day)
            .unwrap()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(id, &acme(), "request")),
                &mut body,
            )
            .unwrap();
        let v1 = [MAGIC.as_slice(), &day.to_le_bytes(), &nonce, &body].concat();
        let old = || k.open_field(id, &acme(), "request", &v1);
        assert_eq!(old(), Opened::Decrypted(b"old prompt".to_vec()));
        // Erasing the tenant does not reach it (the README says so) ...
        k.destroy_tenant(&acme()).await.unwrap();
        assert_eq!(old(), Opened::Decrypted(b"old prompt".to_vec()));
        // ... the end of its day does.
        k.destroy_expired(at + time::Duration::days(2), &HashSet::new())
            .await
            .unwrap();
        assert_eq!(old(), Opened::Expired);
    }

    #[tokio::test]
    async fn sealing_never_waits_for_the_key_store_and_refuses_an_unmade_day() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2027-01-10 12:00 UTC);
        let k = prepared(dir.path(), KEK_A, at).await;
        let beyond = at + time::Duration::days(5);
        assert!(matches!(
            k.seal(beyond, RecordId::new(), &acme(), "request", b"x"),
            Err(CryptoError::NoKey(_))
        ));
        assert_eq!(k.days_ready(at), 2);
    }

    #[tokio::test]
    async fn destroying_a_day_key_expires_exactly_that_days_content() {
        let dir = tempfile::tempdir().unwrap();
        let id = RecordId::new();
        let day1 = datetime!(2027-01-10 23:59:59 UTC);
        let day2 = datetime!(2027-01-11 00:00 UTC);
        let k = prepared(dir.path(), KEK_A, day1).await;
        let a = k.seal(day1, id, &acme(), "request", b"one").unwrap();
        let b = k.seal(day2, id, &acme(), "request", b"two").unwrap();
        // A second process on the same store, as a replica would be.
        let replica = keys(dir.path(), KEK_A).await;
        // At the last instant of day 1, its key is still there.
        assert!(k
            .destroy_expired(day1, &HashSet::new())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            k.destroy_expired(day2, &HashSet::new()).await.unwrap(),
            vec![key_day(day1)]
        );
        assert_eq!(k.open_field(id, &acme(), "request", &a), Opened::Expired);
        // A day a legal hold still needs keeps its key.
        let later = day2 + time::Duration::days(1);
        let held = HashSet::from([key_day(day2)]);
        assert!(k.destroy_expired(later, &held).await.unwrap().is_empty());
        // The replica forgets it at its next refresh.
        replica.refresh().await.unwrap();
        for k in [&k, &replica, &keys(dir.path(), KEK_A).await] {
            assert_eq!(k.open_field(id, &acme(), "request", &a), Opened::Expired);
            assert_eq!(
                k.open_field(id, &acme(), "request", &b),
                Opened::Decrypted(b"two".to_vec())
            );
        }
    }

    #[tokio::test]
    async fn replicas_racing_to_make_a_day_key_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2027-03-01 08:00 UTC);
        let (one, two) = (keys(dir.path(), KEK_A).await, keys(dir.path(), KEK_A).await);
        let (a, b) = tokio::join!(
            one.prepare(at, at + time::Duration::days(3)),
            two.prepare(at, at + time::Duration::days(3))
        );
        a.unwrap();
        b.unwrap();
        let tenants = [acme()];
        let (a, b) = tokio::join!(one.prepare_tenants(&tenants), two.prepare_tenants(&tenants));
        a.unwrap();
        b.unwrap();
        let id = RecordId::new();
        let sealed = one.seal(at, id, &acme(), "request", b"same key").unwrap();
        assert_eq!(
            two.open_field(id, &acme(), "request", &sealed),
            Opened::Decrypted(b"same key".to_vec())
        );
    }

    #[tokio::test]
    async fn rotating_the_kek_rewraps_keys_while_holders_of_either_kek_read() {
        let dir = tempfile::tempdir().unwrap();
        let id = RecordId::new();
        let at = datetime!(2027-02-01 00:00 UTC);
        let old = prepared(dir.path(), KEK_A, at).await;
        let sealed = old.seal(at, id, &acme(), "response", b"answer").unwrap();
        // A gateway rolled out with the new KEK and the old one as previous:
        // it reads the old keys and wraps what it makes with the new one.
        let rolled = keyring_keys(dir.path(), KEK_B, &[KEK_A]).await.unwrap();
        rolled
            .prepare(at, at + time::Duration::days(3))
            .await
            .unwrap();
        let census = rolled.census().await.unwrap();
        assert_eq!(census.by_kek.len(), 2, "{census:?}");
        assert_eq!(census.tenants, 1, "{census:?}");
        // Two day keys and the tenant's key were under the old KEK.
        assert_eq!(rolled.rotate_kek().await.unwrap(), 3);
        // Again: nothing left to re-wrap.
        assert_eq!(rolled.rotate_kek().await.unwrap(), 0);
        let census = rolled.census().await.unwrap();
        assert_eq!(
            census.by_kek.keys().collect::<Vec<_>>(),
            [Kek::from_hex(KEK_B).unwrap().id()]
        );
        // The running holder of the old KEK keeps its keys in memory.
        assert_eq!(
            old.open_field(id, &acme(), "response", &sealed),
            Opened::Decrypted(b"answer".to_vec())
        );
        let with_b = keys(dir.path(), KEK_B).await;
        assert_eq!(
            with_b.open_field(id, &acme(), "response", &sealed),
            Opened::Decrypted(b"answer".to_vec())
        );
        // The old KEK alone no longer opens the key store, and says why.
        let err = keyring_keys(dir.path(), KEK_A, &[]).await.unwrap_err();
        assert!(matches!(err, CryptoError::WrongKek(..)), "{err}");
    }

    #[tokio::test]
    async fn a_rewrap_never_brings_back_a_destroyed_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::dir(dir.path(), true).unwrap();
        let k = keys(dir.path(), KEK_A).await;
        let at = datetime!(2027-02-01 00:00 UTC);
        k.prepare(at, at).await.unwrap();
        let stale = store.list("").await.unwrap().remove(0);
        k.destroy_expired(at + time::Duration::days(2), &HashSet::new())
            .await
            .unwrap();
        let rewrapped = WrappedKey {
            kek_id: "other".into(),
            ..stale.clone()
        };
        assert!(!store.rewrap(&stale, rewrapped.clone()).await.unwrap());
        assert!(store.list("").await.unwrap().is_empty());
        // Nor one destroyed and made again meanwhile.
        k.prepare(at, at).await.unwrap();
        assert!(!store.rewrap(&stale, rewrapped).await.unwrap());
        assert_ne!(store.list("").await.unwrap()[0].kek_id, "other");
    }

    #[tokio::test]
    async fn no_wrapped_key_outlives_destruction_in_a_damaged_or_leftover_file() {
        let dir = tempfile::tempdir().unwrap();
        let at = datetime!(2027-02-01 00:00 UTC);
        prepared(dir.path(), KEK_A, at).await;
        // A crash left a temporary file; a key file got damaged.
        let leftover = dir.path().join(".content-20000.0190.tmp");
        std::fs::write(&leftover, b"{\"wrapped\":\"00\"}").unwrap();
        let damaged = dir.path().join(format!("content-{}.key", key_day(at)));
        std::fs::write(&damaged, b"{not json").unwrap();
        let k = keys(dir.path(), KEK_A).await;
        assert!(!leftover.exists());
        // The damaged key is left out, the others load, and it is
        // destroyed with its day all the same.
        assert_eq!(k.days_ready(at + time::Duration::days(1)), 1);
        k.destroy_expired(at + time::Duration::days(30), &HashSet::new())
            .await
            .unwrap();
        assert!(!damaged.exists());
        // An operator's command never makes a key directory of its own.
        let missing = dir.path().join("elsewhere");
        assert!(KeyStore::dir(&missing, false).is_err());
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn files_seal_in_chunks_and_detect_cuts_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), KEK_A).await;
        let id = RecordId::new();
        for size in [
            0,
            1,
            FILE_CHUNK - 1,
            FILE_CHUNK,
            FILE_CHUNK + 1,
            3 * FILE_CHUNK + 17,
        ] {
            let id = RecordId::new();
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let (mut sealer, mut stored) = k.file_sealer(id, &acme()).await.unwrap();
            for piece in data.chunks(10_000) {
                stored.extend(sealer.update(piece).unwrap());
            }
            stored.extend(sealer.finish().unwrap());
            assert_eq!(
                k.open_file(id, &acme(), &stored).await.unwrap(),
                Opened::Decrypted(data.clone()),
                "{size}"
            );
            // Cut at a chunk boundary, or one byte short: never opens.
            let header = FILE_MAGIC.len() + PREFIX_LEN;
            let boundary = header + FILE_CHUNK + AES_256_GCM.tag_len();
            for cut in [stored.len() - 1, boundary.min(stored.len() - 1)] {
                assert_eq!(
                    k.open_file(id, &acme(), &stored[..cut]).await.unwrap(),
                    Opened::Unreadable,
                    "{size} {cut}"
                );
            }
            assert_eq!(
                k.open_file(RecordId::new(), &acme(), &stored)
                    .await
                    .unwrap(),
                Opened::Expired
            );
        }
        let (sealer, mut stored) = k.file_sealer(id, &acme()).await.unwrap();
        stored.extend(sealer.finish().unwrap());
        k.destroy_file_key(id).await.unwrap();
        assert_eq!(
            k.open_file(id, &acme(), &stored).await.unwrap(),
            Opened::Expired
        );
    }

    #[test]
    fn a_kek_must_be_32_bytes_of_hex() {
        for bad in ["", "zz", &KEK_A[..62], &format!("{KEK_A}00")] {
            assert!(Kek::from_hex(bad).is_err(), "{bad}");
        }
    }
}
