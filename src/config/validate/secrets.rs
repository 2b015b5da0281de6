//! Secrets by reference (environment or file) and the encryption section.

use super::*;

impl Validator<'_> {
    pub(super) fn encryption(
        &self,
        raw: &RawEncryption,
    ) -> Result<Option<EncryptionConfig>, ConfigError> {
        if !raw.enabled {
            return Ok(None);
        }
        let Some(kek) = &raw.kek else {
            return self.err(
                None,
                "encryption.kek",
                "give the key-encryption key as { env = \"VAR\" } or { file = \"/path\" }",
            );
        };
        let kek = self.kek("encryption.kek", kek)?;
        let previous_keks = raw
            .previous_keks
            .iter()
            .map(|k| self.kek("encryption.previous_keks", k))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(url) = &raw.key_store_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return self.err(
                    None,
                    "encryption.key_store_url",
                    "must be a postgres:// URL (leave it out to keep keys in key_dir)",
                );
            }
        }
        let refresh_interval = raw.refresh_interval.unwrap_or(Duration::from_secs(30));
        if refresh_interval.is_zero() {
            return self.err(
                None,
                "encryption.refresh_interval",
                "must be greater than zero",
            );
        }
        Ok(Some(EncryptionConfig {
            key_dir: raw
                .key_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("custodian-keys")),
            key_store_url: raw.key_store_url.clone(),
            kek,
            previous_keks,
            refresh_interval,
        }))
    }

    pub(super) fn kek(
        &self,
        key: &str,
        raw: &Spanned<RawSecretRef>,
    ) -> Result<Secret, ConfigError> {
        self.hex_key(key, raw, "the key-encryption key")
    }

    /// `[attest] signing_key`: an Ed25519 private key (its 32-byte seed).
    pub(super) fn attest(&self, raw: &RawAttest) -> Result<AttestConfig, ConfigError> {
        let signing_key = raw
            .signing_key
            .as_ref()
            .map(|k| self.hex_key("attest.signing_key", k, "the signing key"))
            .transpose()?;
        Ok(AttestConfig { signing_key })
    }

    /// A 32-byte key given as 64 hex digits (the format only: the key is
    /// made from it where it is used).
    fn hex_key(
        &self,
        key: &str,
        raw: &Spanned<RawSecretRef>,
        what: &str,
    ) -> Result<Secret, ConfigError> {
        let secret = self.secret(key, raw)?;
        let text = secret.expose().trim();
        match text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(secret),
            false => self.err(
                Some(raw.span()),
                key,
                format!("{what} must be 64 hex digits (32 bytes)"),
            ),
        }
    }

    pub(super) fn secret(
        &self,
        key: &str,
        raw: &Spanned<RawSecretRef>,
    ) -> Result<Secret, ConfigError> {
        let span = Some(raw.span());
        match (&raw.get_ref().env, &raw.get_ref().file) {
            (Some(var), None) => match self.env.get(var) {
                Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                _ => self.err(span, key, format!("environment variable {var} is not set")),
            },
            (None, Some(file)) => match std::fs::read_to_string(file) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => self.err(
                    span,
                    key,
                    format!("secret file {} is empty", file.display()),
                ),
                Err(e) => self.err(span, key, format!("cannot read {}: {e}", file.display())),
            },
            _ => self.err(span, key, "give exactly one of `env` or `file`"),
        }
    }

    /// A tenant's own upstream credentials, by route index; a route name
    /// that does not exist is refused.
    pub(super) fn tenant_upstream_keys(
        &self,
        t: &RawTenant,
        routes: &[Route],
    ) -> Result<Vec<Option<Secret>>, ConfigError> {
        let mut keys = vec![None; routes.len()];
        for (route, secret) in &t.upstream_keys {
            let key = format!("tenants.{}.upstream_keys.{route}", t.id.get_ref());
            let Some(i) = routes.iter().position(|r| &r.name == route) else {
                return self.err(
                    Some(secret.span()),
                    key,
                    format!("no route is named {route:?}"),
                );
            };
            let value = self.secret(&key, secret)?;
            if HeaderValue::from_str(&format!("Bearer {}", value.expose())).is_err() {
                return self.err(
                    Some(secret.span()),
                    key,
                    "the secret is not a valid HTTP header value",
                );
            }
            keys[i] = Some(value);
        }
        Ok(keys)
    }
}
