//! Sealing fine-tune file copies: one key per file, chunked AEAD so a copy streams in and out.

use super::*;

/// Marks a sealed fine-tune file copy.
pub(super) const FILE_MAGIC: &[u8; 8] = b"\0CSTFIL1";

/// Plaintext bytes per sealed chunk of a file.
pub(super) const FILE_CHUNK: usize = 64 * 1024;

pub(super) const PREFIX_LEN: usize = 7;

pub(super) const FILE_KEY_PREFIX: &str = "file-";

pub(super) fn file_key_name(record: RecordId) -> String {
    format!("{FILE_KEY_PREFIX}{}", record.0)
}

pub(super) fn file_aad(record: RecordId, tenant: &TenantId) -> Vec<u8> {
    aad(record, tenant, "file")
}

/// The nonce of chunk `counter` (the STREAM construction: a random prefix,
/// the chunk's number, and whether it is the last, so that a file cut at a
/// chunk boundary or reordered does not open).
pub(super) fn chunk_nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..PREFIX_LEN].copy_from_slice(prefix);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// Seals one fine-tune file as it streams through, chunk by chunk.
pub struct FileSealer {
    pub(super) key: LessSafeKey,
    pub(super) prefix: [u8; PREFIX_LEN],
    pub(super) counter: u32,
    pub(super) pending: Vec<u8>,
    pub(super) aad: Vec<u8>,
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

pub(super) fn open_chunks(
    key: &LessSafeKey,
    prefix: &[u8; PREFIX_LEN],
    aad: &[u8],
    mut body: &[u8],
) -> Opened {
    let sealed_chunk = FILE_CHUNK + AES_256_GCM.tag_len();
    let mut plain = Vec::with_capacity(body.len());
    let mut counter = 0u32;
    loop {
        let last = body.len() <= sealed_chunk;
        let (chunk, rest) = body.split_at(body.len().min(sealed_chunk));
        let mut chunk = chunk.to_vec();
        let nonce = chunk_nonce(prefix, counter, last);
        match key.open_in_place(nonce, Aad::from(aad), &mut chunk) {
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

/// Whether a file copy kept before sealing was recorded beside it is
/// sealed: only its format header can tell.
pub fn file_sealed_before_the_flag(blob: &[u8]) -> bool {
    blob.starts_with(FILE_MAGIC)
}

impl ContentKeys {
    /// A key of its own for the file uploaded with `record` (stored before
    /// any of the file is), and the sealer with the header to write first.
    pub async fn file_sealer(
        &self,
        record: RecordId,
        tenant: &TenantId,
    ) -> Result<(FileSealer, Vec<u8>), CryptoError> {
        let name = file_key_name(record);
        let raw = self.new_raw_key()?;
        let stored = self
            .store
            .insert_if_absent(self.keyring.wrap(&name, &raw, &self.random)?)
            .await?;
        let key = aead_key(&self.keyring.unwrap(&stored)?)?;
        let mut prefix = [0u8; PREFIX_LEN];
        self.random
            .fill(&mut prefix)
            .map_err(|_| CryptoError::Seal)?;
        let mut header = FILE_MAGIC.to_vec();
        header.extend_from_slice(&prefix);
        let sealer = FileSealer {
            key,
            prefix,
            counter: 0,
            pending: Vec::new(),
            aad: file_aad(record, tenant),
        };
        Ok((sealer, header))
    }

    /// Open a sealed file copy: decrypted, expired (its key destroyed) or
    /// unreadable (cut, tampered, moved).
    /// An error when the key store cannot be read now (worth a retry).
    pub async fn open_file(
        &self,
        record: RecordId,
        tenant: &TenantId,
        stored: &[u8],
    ) -> Result<Opened, CryptoError> {
        let Some(rest) = stored.strip_prefix(FILE_MAGIC.as_slice()) else {
            return Ok(Opened::Unreadable);
        };
        let Some((prefix, body)) = rest.split_at_checked(PREFIX_LEN) else {
            return Ok(Opened::Unreadable);
        };
        let Ok(prefix) = <[u8; PREFIX_LEN]>::try_from(prefix) else {
            return Ok(Opened::Unreadable);
        };
        let Some(wrapped) = self.store.get(&file_key_name(record)).await? else {
            return Ok(Opened::Expired);
        };
        let key = aead_key(&self.keyring.unwrap(&wrapped)?)?;
        Ok(open_chunks(&key, &prefix, &file_aad(record, tenant), body))
    }

    /// The upload records that have a file key.
    pub async fn file_key_records(&self) -> Result<Vec<RecordId>, CryptoError> {
        Ok(self
            .store
            .names(FILE_KEY_PREFIX)
            .await?
            .iter()
            .filter_map(|name| name.strip_prefix(FILE_KEY_PREFIX)?.parse().ok())
            .map(RecordId)
            .collect())
    }

    /// Crypto-shred one file: destroy its key (a copy of it anywhere is
    /// then unreadable).
    pub async fn destroy_file_key(&self, record: RecordId) -> Result<(), CryptoError> {
        self.store
            .delete(vec![file_key_name(record)])
            .await
            .map(drop)
    }
}
