//! Signed reports: Ed25519 (ring) over the report's exact bytes, which the
//! signed file carries verbatim, so a report can be handed on and checked
//! with the public key alone, by any tool that can cut those bytes out.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

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
    Malformed(String),
    #[error("the signature does not verify with this public key: the report was changed or signed by another key")]
    Invalid,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signature {
    algorithm: String,
    /// The signer's key, for the reader's information only: verification
    /// uses the key the reader trusts.
    public_key: String,
    value: String,
}

/// The file: the report as it was signed, byte for byte, and the signature.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed<R> {
    report: R,
    signature: Signature,
}

fn signed_bytes(report: &[u8]) -> Vec<u8> {
    let mut bytes = CONTEXT.to_vec();
    bytes.extend_from_slice(report);
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

/// The signed file for `report`.
pub fn sign(report: &Value, seed_hex: &str) -> Result<Vec<u8>, SignatureError> {
    let pair = key_pair(seed_hex)?;
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let signature = pair.sign(&signed_bytes(text.as_bytes()));
    let raw = RawValue::from_string(text).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let file = Signed {
        report: raw,
        signature: Signature {
            algorithm: "ed25519".into(),
            public_key: hex::encode(pair.public_key().as_ref()),
            value: hex::encode(signature.as_ref()),
        },
    };
    let mut out =
        serde_json::to_vec(&file).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Check a signed file against `public_key_hex` (the key the reader
/// trusts, never the one the file names). Returns the report.
pub fn verify(file: &[u8], public_key_hex: &str) -> Result<Value, SignatureError> {
    let public = hex::decode(public_key_hex.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or(SignatureError::BadPublicKey)?;
    let signed: Signed<Box<RawValue>> =
        serde_json::from_slice(file).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if signed.signature.algorithm != "ed25519" {
        return Err(SignatureError::Malformed(
            "the algorithm is not ed25519".into(),
        ));
    }
    let signature = hex::decode(&signed.signature.value)
        .map_err(|_| SignatureError::Malformed("signature.value is not hex".into()))?;
    let report = signed.report.get();
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&signed_bytes(report.as_bytes()), &signature)
        .map_err(|_| SignatureError::Invalid)?;
    serde_json::from_str(report).map_err(|e| SignatureError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn a_signed_report_verifies_as_written() {
        let report = json!({"claims": [{"id": 1, "verdict": "holds"}], "holds": true});
        let file = sign(&report, SEED).unwrap();
        assert_eq!(verify(&file, &public_key(SEED).unwrap()).unwrap(), report);
    }

    #[test]
    fn any_change_to_the_report_or_another_key_fails() {
        let file = sign(&json!({"holds": false, "n": 1}), SEED).unwrap();
        let public = public_key(SEED).unwrap();
        let text = String::from_utf8(file.clone()).unwrap();
        // Even a change that means the same JSON: the bytes are signed.
        for edited in [
            text.replacen("false", "true", 1),
            text.replacen("\"n\": 1", "\"n\":1", 1),
        ] {
            assert!(matches!(
                verify(edited.as_bytes(), &public),
                Err(SignatureError::Invalid)
            ));
        }
        // A second report smuggled in beside the signed one.
        let twice = text.replacen(
            "{\"report\":",
            "{\"report\":{\"holds\":true},\"report\":",
            1,
        );
        assert!(verify(twice.as_bytes(), &public).is_err());
        let other = public_key(&"11".repeat(32)).unwrap();
        assert!(matches!(
            verify(&file, &other),
            Err(SignatureError::Invalid)
        ));
        assert!(matches!(
            verify(&file, "zz"),
            Err(SignatureError::BadPublicKey)
        ));
        assert!(verify(b"{\"report\": {}}", &public).is_err());
    }
}
