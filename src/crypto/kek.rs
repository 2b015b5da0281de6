//! The key-encryption key, and data keys wrapped under it.

use super::*;

/// A key-encryption key, and its public identifier.
pub struct Kek {
    pub(super) key: LessSafeKey,
    pub(super) id: String,
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

pub(super) fn wrap_key(
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

pub(super) fn unwrap_key(kek: &Kek, wrapped: &[u8], name: &str) -> Option<Vec<u8>> {
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
pub(super) fn wrap_aad(name: &str) -> Vec<u8> {
    format!("custodian/key/{name}").into_bytes()
}
