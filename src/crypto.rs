//! Encryption at rest with crypto-shredding.
//!
//! Captured content is sealed with AES-256-GCM (ring) before it leaves
//! memory: a fresh random nonce per value, and the record id, tenant and
//! field bound as associated data, so a ciphertext moved to another row or
//! field does not open. Each content expiry day has its own data key; data
//! keys are wrapped by the key-encryption key (KEK, from the environment or
//! a file) and kept in a key store apart from the content store. When a day
//! has passed, the sweeper destroys its key: every copy of that day's
//! content, in any backup or replica, is then noise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::{RecordId, TenantId};

/// Marks a sealed value; a NUL first byte never starts a text or JSON body.
const MAGIC: &[u8; 8] = b"\0CSTENC1";
const DAY_LEN: usize = 4;
const HEADER: usize = MAGIC.len() + DAY_LEN + NONCE_LEN;
const KEY_LEN: usize = 32;
const CLASS: &str = "content";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the key-encryption key must be 64 hex digits (32 bytes)")]
    BadKek,
    #[error("key store {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("key file {0} is damaged: {1}")]
    BadKeyFile(PathBuf, String),
    #[error("key file {0} was wrapped by key-encryption key {1}, not the one given")]
    WrongKek(PathBuf, String),
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
    /// It does not open with its key (tampered, or moved from another row).
    Unreadable,
}

/// The key-encryption key, and its public identifier.
pub struct Kek {
    key: LessSafeKey,
    id: String,
}

impl Kek {
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CryptoError::BadKek)?;
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::BadKek);
        }
        let id = hex::encode(&Sha256::digest(&bytes)[..8]);
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| CryptoError::BadKek)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A data key as the key store holds it: wrapped by a KEK.
#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    class: String,
    day: i32,
    kek_id: String,
    /// Nonce ‖ ciphertext ‖ tag, hex.
    wrapped: String,
}

/// The days' data keys: created on demand, cached unwrapped in memory,
/// stored wrapped in a directory of their own.
pub struct ContentKeys {
    dir: PathBuf,
    kek: Kek,
    cache: RwLock<HashMap<i32, Arc<LessSafeKey>>>,
    random: SystemRandom,
}

impl std::fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKeys")
            .field("dir", &self.dir)
            .field("kek", &self.kek.id)
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

impl ContentKeys {
    pub fn open(dir: &Path, kek: Kek) -> Result<Self, CryptoError> {
        std::fs::create_dir_all(dir).map_err(|e| CryptoError::Io(dir.to_owned(), e))?;
        Ok(Self {
            dir: dir.to_owned(),
            kek,
            cache: RwLock::default(),
            random: SystemRandom::new(),
        })
    }

    fn path(&self, day: i32) -> PathBuf {
        self.dir.join(format!("{CLASS}-{day}.key"))
    }

    /// The key for `day`, creating (and storing) it if `create`.
    fn key(&self, day: i32, create: bool) -> Result<Option<Arc<LessSafeKey>>, CryptoError> {
        if let Some(key) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&day)
        {
            return Ok(Some(Arc::clone(key)));
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = cache.get(&day) {
            return Ok(Some(Arc::clone(key)));
        }
        let raw = match self.read_key(day)? {
            Some(raw) => raw,
            None if create => self.create_key(day)?,
            None => return Ok(None),
        };
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| CryptoError::Seal)?;
        let key = Arc::new(LessSafeKey::new(key));
        cache.insert(day, Arc::clone(&key));
        Ok(Some(key))
    }

    fn read_key(&self, day: i32) -> Result<Option<Vec<u8>>, CryptoError> {
        let path = self.path(day);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CryptoError::Io(path, e)),
        };
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| CryptoError::BadKeyFile(path.clone(), e.to_string()))?;
        if file.kek_id != self.kek.id {
            return Err(CryptoError::WrongKek(path, file.kek_id));
        }
        let wrapped = hex::decode(&file.wrapped)
            .map_err(|e| CryptoError::BadKeyFile(path.clone(), e.to_string()))?;
        let raw = unwrap_key(&self.kek, &wrapped, day)
            .ok_or_else(|| CryptoError::BadKeyFile(path.clone(), "does not unwrap".into()))?;
        Ok(Some(raw))
    }

    fn create_key(&self, day: i32) -> Result<Vec<u8>, CryptoError> {
        let mut raw = vec![0u8; KEY_LEN];
        self.random.fill(&mut raw).map_err(|_| CryptoError::Seal)?;
        self.write_key(day, &raw, &self.kek)?;
        Ok(raw)
    }

    /// Write `day`'s key wrapped by `kek`, atomically and durably.
    fn write_key(&self, day: i32, raw: &[u8], kek: &Kek) -> Result<(), CryptoError> {
        let wrapped = wrap_key(kek, raw, day, &self.random)?;
        let file = KeyFile {
            class: CLASS.into(),
            day,
            kek_id: kek.id.clone(),
            wrapped: hex::encode(wrapped),
        };
        let path = self.path(day);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec(&file).map_err(|_| CryptoError::Seal)?;
        let io = |e| CryptoError::Io(path.clone(), e);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&text).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        sync_dir(&self.dir)
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
        let key = self.key(day, true)?.ok_or(CryptoError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&day.to_le_bytes());
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

    /// Open a stored field: decrypted, plain (written before encryption was
    /// on), expired (its key destroyed) or unreadable. Never garbage.
    pub fn open_field(
        &self,
        record: RecordId,
        tenant: &TenantId,
        field: &str,
        stored: &[u8],
    ) -> Opened {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Opened::Plain(stored.to_vec());
        };
        if rest.len() < DAY_LEN + NONCE_LEN {
            return Opened::Unreadable;
        }
        let day = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let key = match self.key(day, false) {
            Ok(Some(key)) => key,
            Ok(None) => return Opened::Expired,
            Err(e) => {
                tracing::error!(error = %e, day, "content key unavailable");
                return Opened::Unreadable;
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[DAY_LEN..DAY_LEN + NONCE_LEN]);
        let mut body = rest[DAY_LEN + NONCE_LEN..].to_vec();
        match key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(record, tenant, field)),
            &mut body,
        ) {
            Ok(plain) => Opened::Decrypted(plain.to_vec()),
            Err(_) => Opened::Unreadable,
        }
    }

    /// Create the keys of the days in `from..=to` ahead of need, so that no
    /// request waits for a key file to be written.
    pub fn prepare(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<(), CryptoError> {
        for day in key_day(from)..=key_day(to) {
            self.key(day, true)?;
        }
        Ok(())
    }

    /// Crypto-shred: destroy the keys of every day that ended before `now`.
    /// Returns the days destroyed.
    pub fn destroy_expired(&self, now: OffsetDateTime) -> Result<Vec<i32>, CryptoError> {
        let today = key_day(now);
        let mut destroyed = Vec::new();
        for day in self.stored_days()? {
            if day < today {
                let path = self.path(day);
                match std::fs::remove_file(&path) {
                    Ok(()) => destroyed.push(day),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CryptoError::Io(path, e)),
                }
                self.cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&day);
            }
        }
        if !destroyed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(destroyed)
    }

    /// Re-wrap every stored key with `new` (content is not touched).
    /// Keys already under `new` are left as they are, so a rotation cut
    /// short is finished by running it again. Returns how many keys were
    /// re-wrapped.
    pub fn rotate_kek(&self, new: &Kek) -> Result<usize, CryptoError> {
        let mut done = 0;
        for day in self.stored_days()? {
            let path = self.path(day);
            let text =
                std::fs::read_to_string(&path).map_err(|e| CryptoError::Io(path.clone(), e))?;
            let file: KeyFile = serde_json::from_str(&text)
                .map_err(|e| CryptoError::BadKeyFile(path.clone(), e.to_string()))?;
            if file.kek_id == new.id {
                continue;
            }
            if let Some(raw) = self.read_key(day)? {
                self.write_key(day, &raw, new)?;
                done += 1;
            }
        }
        Ok(done)
    }

    fn stored_days(&self) -> Result<Vec<i32>, CryptoError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| CryptoError::Io(self.dir.clone(), e))?;
        let mut days: Vec<i32> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix(&format!("{CLASS}-"))?
                    .strip_suffix(".key")?
                    .parse()
                    .ok()
            })
            .collect();
        days.sort_unstable();
        Ok(days)
    }
}

fn wrap_key(
    kek: &Kek,
    raw: &[u8],
    day: i32,
    random: &SystemRandom,
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|_| CryptoError::Seal)?;
    let mut body = raw.to_vec();
    kek.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(day)),
            &mut body,
        )
        .map_err(|_| CryptoError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

fn unwrap_key(kek: &Kek, wrapped: &[u8], day: i32) -> Option<Vec<u8>> {
    let (nonce, body) = wrapped.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let raw = kek
        .key
        .open_in_place(nonce, Aad::from(wrap_aad(day)), &mut body)
        .ok()?;
    (raw.len() == KEY_LEN).then(|| raw.to_vec())
}

/// A wrapped key opens only as the key of its own class and day.
fn wrap_aad(day: i32) -> Vec<u8> {
    format!("custodian/key/{CLASS}/{day}").into_bytes()
}

fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError::Io(dir.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const KEK_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEK_B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn keys(dir: &Path, kek: &str) -> ContentKeys {
        ContentKeys::open(dir, Kek::from_hex(kek).unwrap()).unwrap()
    }

    fn acme() -> TenantId {
        TenantId("acme".into())
    }

    #[test]
    fn sealed_content_opens_only_in_its_own_row_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), KEK_A);
        let (id, other) = (RecordId::new(), RecordId::new());
        let at = datetime!(2027-01-10 12:00 UTC);
        let sealed = k
            .seal(at, id, &acme(), "request", b"secret prompt")
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            k.open_field(id, &acme(), "request", &sealed),
            Opened::Decrypted(b"secret prompt".to_vec())
        );
        for (rid, tenant, field) in [
            (other, acme(), "request"),
            (id, TenantId("beta".into()), "request"),
            (id, acme(), "response"),
        ] {
            assert_eq!(
                k.open_field(rid, &tenant, field, &sealed),
                Opened::Unreadable
            );
        }
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
            Opened::Plain(b"{\"plain\":1}".to_vec())
        );
    }

    #[test]
    fn destroying_a_day_key_expires_exactly_that_days_content() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), KEK_A);
        let id = RecordId::new();
        let day1 = datetime!(2027-01-10 23:59:59 UTC);
        let day2 = datetime!(2027-01-11 00:00 UTC);
        let a = k.seal(day1, id, &acme(), "request", b"one").unwrap();
        let b = k.seal(day2, id, &acme(), "request", b"two").unwrap();
        // At the last instant of day 1, its key is still there.
        assert!(k.destroy_expired(day1).unwrap().is_empty());
        assert_eq!(k.destroy_expired(day2).unwrap(), vec![key_day(day1)]);
        // A fresh process (no cache) sees the same.
        let k = keys(dir.path(), KEK_A);
        assert_eq!(k.open_field(id, &acme(), "request", &a), Opened::Expired);
        assert_eq!(
            k.open_field(id, &acme(), "request", &b),
            Opened::Decrypted(b"two".to_vec())
        );
    }

    #[test]
    fn rotating_the_kek_rewraps_keys_and_content_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let id = RecordId::new();
        let at = datetime!(2027-02-01 00:00 UTC);
        let sealed = keys(dir.path(), KEK_A)
            .seal(at, id, &acme(), "response", b"answer")
            .unwrap();
        let rotated = keys(dir.path(), KEK_A)
            .rotate_kek(&Kek::from_hex(KEK_B).unwrap())
            .unwrap();
        assert_eq!(rotated, 1);
        // Again: nothing left to re-wrap.
        assert_eq!(
            keys(dir.path(), KEK_A)
                .rotate_kek(&Kek::from_hex(KEK_B).unwrap())
                .unwrap(),
            0
        );
        let with_b = keys(dir.path(), KEK_B);
        assert_eq!(
            with_b.open_field(id, &acme(), "response", &sealed),
            Opened::Decrypted(b"answer".to_vec())
        );
        // The old KEK no longer opens the key store.
        let with_a = keys(dir.path(), KEK_A);
        assert_eq!(
            with_a.open_field(id, &acme(), "response", &sealed),
            Opened::Unreadable
        );
    }

    #[test]
    fn a_kek_must_be_32_bytes_of_hex() {
        for bad in ["", "zz", &KEK_A[..62], &format!("{KEK_A}00")] {
            assert!(Kek::from_hex(bad).is_err(), "{bad}");
        }
    }
}

/// Seal a record's captured bodies in place, before the record goes
/// anywhere (spool or store). A body that cannot be sealed is dropped with
/// the rest of the content, never kept in clear.
pub fn seal_record(keys: &ContentKeys, record: &mut crate::store::Record) {
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

/// Open `content` of the record `id` of `tenant`.
pub fn open_content(
    keys: Option<&ContentKeys>,
    id: RecordId,
    tenant: &TenantId,
    content: &crate::store::RecordContent,
) -> ContentView {
    let open = |field, bytes: &[u8]| match keys {
        Some(k) => k.open_field(id, tenant, field, bytes),
        None if bytes.starts_with(MAGIC) => Opened::Unreadable,
        None => Opened::Plain(bytes.to_vec()),
    };
    match (
        open("request", &content.request_body),
        open("response", &content.response_body),
    ) {
        (
            Opened::Plain(request) | Opened::Decrypted(request),
            Opened::Plain(response) | Opened::Decrypted(response),
        ) => ContentView::Readable { request, response },
        (Opened::Expired, _) | (_, Opened::Expired) => ContentView::Expired,
        _ => ContentView::Unreadable,
    }
}
