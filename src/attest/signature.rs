//! Signed reports: Ed25519 (ring) over the report's canonical JSON, so a
//! report can be handed on and checked with the public key alone.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::{json, Value};

/// Bound into every signature: a signature over something else never
/// verifies as a report's.
const CONTEXT: &[u8] = b"custodian-attestation/1\n";

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing key must be 64 hex digits (an Ed25519 seed)")]
    BadSigningKey,
    #[error("the public key must be 64 hex digits (an Ed25519 public key)")]
    BadPublicKey,
    #[error("not a signed report: {0}")]
    Malformed(&'static str),
    #[error("the signature does not verify with this public key: the report was changed or signed by another key")]
    Invalid,
}

/// The report's bytes as signed: `serde_json`'s serialisation of the
/// parsed value, which a reader reproduces from the file.
fn signed_bytes(report: &Value) -> Vec<u8> {
    let mut bytes = CONTEXT.to_vec();
    bytes.extend_from_slice(&serde_json::to_vec(report).unwrap_or_default());
    bytes
}

fn key_pair(seed_hex: &str) -> Result<Ed25519KeyPair, SignatureError> {
    let seed = hex::decode(seed_hex.trim()).map_err(|_| SignatureError::BadSigningKey)?;
    Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| SignatureError::BadSigningKey)
}

/// The public key (hex) of a signing key.
pub fn public_key(seed_hex: &str) -> Result<String, SignatureError> {
    Ok(hex::encode(key_pair(seed_hex)?.public_key().as_ref()))
}

/// `report` wrapped with its signature.
pub fn sign(report: &Value, seed_hex: &str) -> Result<Value, SignatureError> {
    let pair = key_pair(seed_hex)?;
    let signature = pair.sign(&signed_bytes(report));
    Ok(json!({
        "report": report,
        "signature": {
            "algorithm": "ed25519",
            "public_key": hex::encode(pair.public_key().as_ref()),
            "value": hex::encode(signature.as_ref()),
        }
    }))
}

/// Check a signed report against `public_key_hex` (the key the reader
/// trusts, never the one the file names). Returns the report.
pub fn verify<'a>(signed: &'a Value, public_key_hex: &str) -> Result<&'a Value, SignatureError> {
    let public = hex::decode(public_key_hex.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or(SignatureError::BadPublicKey)?;
    let report = signed
        .get("report")
        .ok_or(SignatureError::Malformed("no \"report\""))?;
    let signature = signed
        .pointer("/signature/value")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .ok_or(SignatureError::Malformed("no hex \"signature.value\""))?;
    if signed
        .pointer("/signature/algorithm")
        .and_then(Value::as_str)
        != Some("ed25519")
    {
        return Err(SignatureError::Malformed("the algorithm is not ed25519"));
    }
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&signed_bytes(report), &signature)
        .map_err(|_| SignatureError::Invalid)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn a_signed_report_verifies_after_a_round_trip_through_text() {
        let report = json!({"claims": [{"id": 1, "verdict": "holds"}], "holds": true});
        let signed = sign(&report, SEED).unwrap();
        let text = serde_json::to_string_pretty(&signed).unwrap();
        let read: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(verify(&read, &public_key(SEED).unwrap()).unwrap(), &report);
    }

    #[test]
    fn any_change_to_the_report_or_another_key_fails() {
        let signed = sign(&json!({"holds": false, "n": 1}), SEED).unwrap();
        let public = public_key(SEED).unwrap();
        let mut edited = signed.clone();
        edited["report"]["holds"] = json!(true);
        assert!(matches!(
            verify(&edited, &public),
            Err(SignatureError::Invalid)
        ));
        let other = public_key(&"11".repeat(32)).unwrap();
        assert!(matches!(
            verify(&signed, &other),
            Err(SignatureError::Invalid)
        ));
        assert!(matches!(
            verify(&signed, "zz"),
            Err(SignatureError::BadPublicKey)
        ));
        assert!(verify(&json!({"report": {}}), &public).is_err());
    }
}
