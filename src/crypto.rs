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
    /// `content-<day>` or `file-<record id>`: also bound into the wrapping.
    name: String,
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
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
        let name = day_name(day);
        let raw = match self.read_key(&name)? {
            Some(raw) => raw,
            None if create => self.create_key(&name)?,
            None => return Ok(None),
        };
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| CryptoError::Seal)?;
        let key = Arc::new(LessSafeKey::new(key));
        cache.insert(day, Arc::clone(&key));
        Ok(Some(key))
    }

    fn read_key(&self, name: &str) -> Result<Option<Vec<u8>>, CryptoError> {
        let path = self.path(name);
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
        let raw = unwrap_key(&self.kek, &wrapped, name)
            .ok_or_else(|| CryptoError::BadKeyFile(path.clone(), "does not unwrap".into()))?;
        Ok(Some(raw))
    }

    fn create_key(&self, name: &str) -> Result<Vec<u8>, CryptoError> {
        let mut raw = vec![0u8; KEY_LEN];
        self.random.fill(&mut raw).map_err(|_| CryptoError::Seal)?;
        self.write_key(name, &raw, &self.kek)?;
        Ok(raw)
    }

    /// Write the key `name` wrapped by `kek`, atomically and durably.
    fn write_key(&self, name: &str, raw: &[u8], kek: &Kek) -> Result<(), CryptoError> {
        let wrapped = wrap_key(kek, raw, name, &self.random)?;
        let file = KeyFile {
            name: name.to_owned(),
            kek_id: kek.id.clone(),
            wrapped: hex::encode(wrapped),
        };
        let path = self.path(name);
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
                let path = self.path(&day_name(day));
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
        for name in self.stored_names()? {
            let path = self.path(&name);
            let text =
                std::fs::read_to_string(&path).map_err(|e| CryptoError::Io(path.clone(), e))?;
            let file: KeyFile = serde_json::from_str(&text)
                .map_err(|e| CryptoError::BadKeyFile(path.clone(), e.to_string()))?;
            if file.kek_id == new.id {
                continue;
            }
            if let Some(raw) = self.read_key(&name)? {
                self.write_key(&name, &raw, new)?;
                done += 1;
            }
        }
        Ok(done)
    }

    /// Every key in the store, by name.
    fn stored_names(&self) -> Result<Vec<String>, CryptoError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| CryptoError::Io(self.dir.clone(), e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                Some(
                    e.file_name()
                        .into_string()
                        .ok()?
                        .strip_suffix(".key")?
                        .to_owned(),
                )
            })
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    fn stored_days(&self) -> Result<Vec<i32>, CryptoError> {
        let prefix = format!("{CLASS}-");
        Ok(self
            .stored_names()?
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix)?.parse().ok())
            .collect())
    }
}

/// Marks a sealed fine-tune file copy.
const FILE_MAGIC: &[u8; 8] = b"\0CSTFIL1";
/// Plaintext bytes per sealed chunk of a file.
const FILE_CHUNK: usize = 64 * 1024;
const PREFIX_LEN: usize = 7;

fn file_key_name(record: RecordId) -> String {
    format!("file-{}", record.0)
}

fn file_aad(record: RecordId, tenant: &TenantId) -> Vec<u8> {
    aad(record, tenant, "file")
}

/// The nonce of chunk `counter` (the STREAM construction: a random prefix,
/// the chunk's number, and whether it is the last, so that a file cut at a
/// chunk boundary or reordered does not open).
fn chunk_nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..PREFIX_LEN].copy_from_slice(prefix);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// Seals one fine-tune file as it streams through, chunk by chunk.
pub struct FileSealer {
    key: LessSafeKey,
    prefix: [u8; PREFIX_LEN],
    counter: u32,
    pending: Vec<u8>,
    aad: Vec<u8>,
}

impl FileSealer {
    /// The sealed bytes for what `data` completes (whole chunks only).
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while self.pending.len() > FILE_CHUNK {
            let rest = self.pending.split_off(FILE_CHUNK);
            let chunk = std::mem::replace(&mut self.pending, rest);
            out.extend_from_slice(&self.seal_chunk(chunk, false)?);
        }
        Ok(out)
    }

    /// The last chunk (possibly empty).
    pub fn finish(mut self) -> Result<Vec<u8>, CryptoError> {
        let last = std::mem::take(&mut self.pending);
        self.seal_chunk(last, true)
    }

    fn seal_chunk(&mut self, mut chunk: Vec<u8>, last: bool) -> Result<Vec<u8>, CryptoError> {
        let nonce = chunk_nonce(&self.prefix, self.counter, last);
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::Seal)?;
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(&self.aad), &mut chunk)
            .map_err(|_| CryptoError::Seal)?;
        Ok(chunk)
    }
}

impl ContentKeys {
    /// A key of its own for the file uploaded with `record`, and the sealer
    /// with the header to write first.
    pub fn file_sealer(
        &self,
        record: RecordId,
        tenant: &TenantId,
    ) -> Result<(FileSealer, Vec<u8>), CryptoError> {
        let raw = self.create_key(&file_key_name(record))?;
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| CryptoError::Seal)?;
        let mut prefix = [0u8; PREFIX_LEN];
        self.random
            .fill(&mut prefix)
            .map_err(|_| CryptoError::Seal)?;
        let mut header = FILE_MAGIC.to_vec();
        header.extend_from_slice(&prefix);
        let sealer = FileSealer {
            key: LessSafeKey::new(key),
            prefix,
            counter: 0,
            pending: Vec::new(),
            aad: file_aad(record, tenant),
        };
        Ok((sealer, header))
    }

    /// Open a stored file copy: plain (stored before encryption), decrypted,
    /// expired (its key destroyed) or unreadable (cut, tampered, moved).
    pub fn open_file(&self, record: RecordId, tenant: &TenantId, stored: &[u8]) -> Opened {
        let Some(rest) = stored.strip_prefix(FILE_MAGIC.as_slice()) else {
            return Opened::Plain(stored.to_vec());
        };
        let Some((prefix, mut body)) = rest.split_at_checked(PREFIX_LEN) else {
            return Opened::Unreadable;
        };
        let Ok(prefix) = <[u8; PREFIX_LEN]>::try_from(prefix) else {
            return Opened::Unreadable;
        };
        let raw = match self.read_key(&file_key_name(record)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Opened::Expired,
            Err(_) => return Opened::Unreadable,
        };
        let Ok(key) = UnboundKey::new(&AES_256_GCM, &raw).map(LessSafeKey::new) else {
            return Opened::Unreadable;
        };
        let aad = file_aad(record, tenant);
        let sealed_chunk = FILE_CHUNK + AES_256_GCM.tag_len();
        let mut plain = Vec::with_capacity(body.len());
        let mut counter = 0u32;
        loop {
            let last = body.len() <= sealed_chunk;
            let (chunk, rest) = body.split_at(body.len().min(sealed_chunk));
            let mut chunk = chunk.to_vec();
            let nonce = chunk_nonce(&prefix, counter, last);
            match key.open_in_place(nonce, Aad::from(&aad), &mut chunk) {
                Ok(opened) => plain.extend_from_slice(opened),
                Err(_) => return Opened::Unreadable,
            }
            if last {
                return Opened::Decrypted(plain);
            }
            body = rest;
            counter = match counter.checked_add(1) {
                Some(c) => c,
                None => return Opened::Unreadable,
            };
        }
    }

    /// Crypto-shred one file: destroy its key (a copy of it anywhere is
    /// then unreadable).
    pub fn destroy_file_key(&self, record: RecordId) -> Result<(), CryptoError> {
        let path = self.path(&file_key_name(record));
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CryptoError::Io(path, e)),
        }
    }
}

fn wrap_key(
    kek: &Kek,
    raw: &[u8],
    name: &str,
    random: &SystemRandom,
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|_| CryptoError::Seal)?;
    let mut body = raw.to_vec();
    kek.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(name)),
            &mut body,
        )
        .map_err(|_| CryptoError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

fn unwrap_key(kek: &Kek, wrapped: &[u8], name: &str) -> Option<Vec<u8>> {
    let (nonce, body) = wrapped.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let raw = kek
        .key
        .open_in_place(nonce, Aad::from(wrap_aad(name)), &mut body)
        .ok()?;
    (raw.len() == KEY_LEN).then(|| raw.to_vec())
}

/// A wrapped key opens only as the key it was stored as.
fn wrap_aad(name: &str) -> Vec<u8> {
    format!("custodian/key/{name}").into_bytes()
}

fn day_name(day: i32) -> String {
    format!("{CLASS}-{day}")
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
    fn files_seal_in_chunks_and_detect_cuts_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), KEK_A);
        let id = RecordId::new();
        for size in [
            0,
            1,
            FILE_CHUNK - 1,
            FILE_CHUNK,
            FILE_CHUNK + 1,
            3 * FILE_CHUNK + 17,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let (mut sealer, mut stored) = k.file_sealer(id, &acme()).unwrap();
            for piece in data.chunks(10_000) {
                stored.extend(sealer.update(piece).unwrap());
            }
            stored.extend(sealer.finish().unwrap());
            assert_eq!(
                k.open_file(id, &acme(), &stored),
                Opened::Decrypted(data.clone()),
                "{size}"
            );
            // Cut at a chunk boundary, or one byte short: never opens.
            let header = FILE_MAGIC.len() + PREFIX_LEN;
            let boundary = header + FILE_CHUNK + AES_256_GCM.tag_len();
            for cut in [stored.len() - 1, boundary.min(stored.len() - 1)] {
                assert_eq!(
                    k.open_file(id, &acme(), &stored[..cut]),
                    Opened::Unreadable,
                    "{size} {cut}"
                );
            }
            assert_eq!(
                k.open_file(RecordId::new(), &acme(), &stored),
                Opened::Expired
            );
        }
        let (sealer, mut stored) = k.file_sealer(id, &acme()).unwrap();
        stored.extend(sealer.finish().unwrap());
        k.destroy_file_key(id).unwrap();
        assert_eq!(k.open_file(id, &acme(), &stored), Opened::Expired);
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
