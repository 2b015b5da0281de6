//! Who is calling: API keys to tenants.
//!
//! Managed keys (`cst_…`) are issued by the gateway; only their SHA-256 is
//! configured. Pass-through keys are the caller's real upstream keys; only
//! their keyed fingerprint (HMAC-SHA-256 with a server secret) is configured.
//! No raw key is ever stored or logged.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{Config, Flavor, Secret};
use crate::domain::KeyId;

pub const MANAGED_KEY_PREFIX: &str = "cst_";

/// How the caller's key relates to the upstream credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Issued by the gateway: replaced by the route's upstream credential.
    Managed,
    /// The caller's own upstream key, registered to a tenant: forwarded unchanged.
    PassThrough,
    /// A key no tenant registered, mapped to the default tenant: forwarded
    /// unchanged. It proves nothing about who the caller is.
    Unregistered,
    /// No key at all, mapped to the default tenant.
    Anonymous,
}

/// An identified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_index: usize,
    pub key_id: KeyId,
    pub kind: KeyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key was provided")]
    MissingKey,
    #[error("the API key is not recognised")]
    UnknownKey,
}

/// The lookup tables built from the configuration.
pub struct ApiKeys {
    managed: HashMap<String, usize>,
    fingerprints: HashMap<String, usize>,
    fingerprint_key: Option<Secret>,
    default_tenant: Option<usize>,
}

impl ApiKeys {
    pub fn new(config: &Config) -> Self {
        let mut managed = HashMap::new();
        let mut fingerprints = HashMap::new();
        for (i, t) in config.tenants.iter().enumerate() {
            for h in &t.managed_key_hashes {
                managed.insert(h.to_ascii_lowercase(), i);
            }
            for f in &t.passthrough_fingerprints {
                fingerprints.insert(f.to_ascii_lowercase(), i);
            }
        }
        Self {
            managed,
            fingerprints,
            fingerprint_key: config.auth.fingerprint_key.clone(),
            default_tenant: config.auth.default_tenant,
        }
    }

    /// Identify the caller from the request headers of a route of `flavor`.
    pub fn identify(&self, flavor: Flavor, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let primary = read_key(flavor, headers);
        let secondary = read_key(flavor.other(), headers);
        // SDKs differ in where they put the key (recent Anthropic SDKs send
        // `Authorization: Bearer`): take the flavor's header, else the other.
        // Two different keys where one is a gateway key would let that key
        // travel upstream as a pass-through key: refuse.
        if let (Some(a), Some(b)) = (primary, secondary) {
            if a != b && (a.starts_with(MANAGED_KEY_PREFIX) || b.starts_with(MANAGED_KEY_PREFIX)) {
                return Err(AuthError::UnknownKey);
            }
        }
        let caller = match primary.or(secondary) {
            Some(key) => self.identify_key(key),
            None => self.default_caller(None).ok_or(AuthError::MissingKey),
        }?;
        // Pass-through callers' key headers go upstream as sent: a gateway
        // key hidden in any of their values (a second header, another
        // scheme) must not travel with them.
        if caller.kind != KeyKind::Managed && carries_gateway_key(headers) {
            return Err(AuthError::UnknownKey);
        }
        Ok(caller)
    }

    fn identify_key(&self, key: &str) -> Result<Caller, AuthError> {
        if key.starts_with(MANAGED_KEY_PREFIX) {
            let hash = managed_key_hash(key);
            return match self.managed.get(&hash) {
                Some(&tenant_index) => Ok(Caller {
                    tenant_index,
                    key_id: key_id("mk", &hash),
                    kind: KeyKind::Managed,
                }),
                // A gateway-issued key that is not (or no longer) configured must
                // never be forwarded upstream, even to a default tenant.
                None => Err(AuthError::UnknownKey),
            };
        }
        let fingerprint = self.fingerprint_key.as_ref().map(|k| fingerprint(k, key));
        if let Some(fp) = &fingerprint {
            if let Some(&tenant_index) = self.fingerprints.get(fp) {
                return Ok(Caller {
                    tenant_index,
                    key_id: key_id("pk", fp),
                    kind: KeyKind::PassThrough,
                });
            }
        }
        let fp =
            fingerprint.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(key))));
        self.default_caller(Some(&fp)).ok_or(AuthError::UnknownKey)
    }

    fn default_caller(&self, fingerprint: Option<&str>) -> Option<Caller> {
        let tenant_index = self.default_tenant?;
        Some(match fingerprint {
            Some(fp) => Caller {
                tenant_index,
                key_id: key_id("pk", fp),
                kind: KeyKind::Unregistered,
            },
            None => Caller {
                tenant_index,
                key_id: KeyId("none".into()),
                kind: KeyKind::Anonymous,
            },
        })
    }
}

fn carries_gateway_key(headers: &HeaderMap) -> bool {
    let prefix = MANAGED_KEY_PREFIX.as_bytes();
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .chain(headers.get_all("x-api-key").iter())
        .any(|v| v.as_bytes().windows(prefix.len()).any(|w| w == prefix))
}

/// The key in the header that SDKs of this flavor use.
pub fn read_key(flavor: Flavor, headers: &HeaderMap) -> Option<&str> {
    match flavor {
        Flavor::Openai => {
            let value = headers
                .get(http::header::AUTHORIZATION)?
                .to_str()
                .ok()?
                .trim();
            // The auth scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, credential) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credential.trim())
        }
        Flavor::Anthropic => headers.get("x-api-key")?.to_str().ok().map(str::trim),
    }
    .filter(|k| !k.is_empty())
}

/// `sha256:<hex>` of a managed key, as listed under a tenant's `managed_keys`.
pub fn managed_key_hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// `hmac-sha256:<hex>` of a pass-through key, as listed under `passthrough_fingerprints`.
pub fn fingerprint(secret: &Secret, key: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(key.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// A new managed key: `cst_` and 32 random bytes, hex-encoded.
pub fn issue_managed_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{MANAGED_KEY_PREFIX}{}", hex::encode(bytes))
}

/// A short, non-secret id for a key: enough to tell keys apart in records.
fn key_id(kind: &str, digest: &str) -> KeyId {
    let hex_part = digest.rsplit(':').next().unwrap_or(digest);
    KeyId(format!("{kind}_{}", &hex_part[..hex_part.len().min(12)]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::HeaderValue;

    use super::*;

    fn ring(extra: &str, secret: Option<&str>) -> ApiKeys {
        let managed = managed_key_hash("cst_good");
        let fp = fingerprint(&Secret::new("s3cret"), "sk-real");
        let text = format!(
            r#"
[profiles.api]
[[routes]]
prefix = "/v1/"
upstream = "http://127.0.0.1:1/v1/"
profile = "api"
[[tenants]]
id = "acme"
managed_keys = ["{managed}"]
[[tenants]]
id = "beta"
passthrough_fingerprints = ["{fp}"]
[[tenants]]
id = "fallback"
{extra}
"#
        );
        let text = match secret {
            Some(_) => {
                format!("{text}\n[auth]\nfingerprint_key = {{ env = \"CUSTODIAN_TEST_FP_KEY\" }}\n")
            }
            None => text,
        };
        let env = secret.map(|s| ("CUSTODIAN_TEST_FP_KEY".to_owned(), s.to_owned()));
        let config = Config::from_toml(Path::new("t.toml"), &text, env).unwrap();
        ApiKeys::new(&config)
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        h
    }

    #[test]
    fn managed_key_maps_to_its_tenant() {
        let c = ring("", Some("s3cret"))
            .identify(Flavor::Openai, &bearer("cst_good"))
            .unwrap();
        assert_eq!(c.tenant_index, 0);
        assert_eq!(c.kind, KeyKind::Managed);
        assert!(c.key_id.0.starts_with("mk_"));
        assert!(!c.key_id.0.contains("good"));
    }

    #[test]
    fn passthrough_fingerprint_maps_to_its_tenant() {
        let c = ring("", Some("s3cret"))
            .identify(Flavor::Openai, &bearer("sk-real"))
            .unwrap();
        assert_eq!(c.tenant_index, 1);
        assert_eq!(c.kind, KeyKind::PassThrough);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused_without_default_tenant() {
        let r = ring("", Some("s3cret"));
        assert_eq!(
            r.identify(Flavor::Openai, &bearer("sk-other")).unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(
            r.identify(Flavor::Openai, &HeaderMap::new()).unwrap_err(),
            AuthError::MissingKey
        );
        assert_eq!(
            r.identify(Flavor::Openai, &bearer("cst_bad")).unwrap_err(),
            AuthError::UnknownKey
        );
    }

    #[test]
    fn anthropic_routes_read_x_api_key() {
        let r = ring("", Some("s3cret"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-real"));
        assert_eq!(r.identify(Flavor::Anthropic, &h).unwrap().tenant_index, 1);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let r = ring("", Some("s3cret"));
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("bearer cst_good"),
        );
        assert_eq!(
            r.identify(Flavor::Openai, &h).unwrap().kind,
            KeyKind::Managed
        );
    }

    #[test]
    fn either_header_carries_the_key_but_two_different_keys_with_a_gateway_key_are_refused() {
        let r = ring("", Some("s3cret"));
        let r = ApiKeys {
            default_tenant: Some(2),
            ..r
        };
        // Recent Anthropic SDKs send `Authorization: Bearer`; OpenAI-style
        // clients may send x-api-key.
        let c = r.identify(Flavor::Anthropic, &bearer("cst_good")).unwrap();
        assert_eq!((c.tenant_index, c.kind), (0, KeyKind::Managed));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("cst_good"));
        assert_eq!(
            r.identify(Flavor::Openai, &h).unwrap().kind,
            KeyKind::Managed
        );
        // A gateway key beside another key: refused, never defaulted.
        let mut h = bearer("sk-x");
        h.insert("x-api-key", HeaderValue::from_static("cst_good"));
        assert_eq!(
            r.identify(Flavor::Openai, &h).unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(
            r.identify(Flavor::Anthropic, &h).unwrap_err(),
            AuthError::UnknownKey
        );
        // An unknown cst_ key is refused, never defaulted.
        assert_eq!(
            r.identify(Flavor::Openai, &bearer("cst_nope")).unwrap_err(),
            AuthError::UnknownKey
        );
        // A gateway key in a second header value or under another scheme
        // never rides along with a pass-through key.
        let mut h = HeaderMap::new();
        h.append("x-api-key", HeaderValue::from_static("sk-real"));
        h.append("x-api-key", HeaderValue::from_static("cst_good"));
        assert_eq!(
            r.identify(Flavor::Anthropic, &h).unwrap_err(),
            AuthError::UnknownKey
        );
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Token cst_good"),
        );
        assert_eq!(
            r.identify(Flavor::Openai, &h).unwrap_err(),
            AuthError::UnknownKey
        );
        // A plain unknown key goes to the default tenant, as configured.
        let defaulted = r.identify(Flavor::Openai, &bearer("sk-x")).unwrap();
        assert_eq!(
            (defaulted.tenant_index, defaulted.kind),
            (2, KeyKind::Unregistered)
        );
    }

    #[test]
    fn issued_keys_are_unique_and_prefixed() {
        let a = issue_managed_key();
        let b = issue_managed_key();
        assert!(a.starts_with("cst_") && a.len() == 68);
        assert_ne!(a, b);
    }
}
