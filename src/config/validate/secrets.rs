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
        let kek = self.secret(key, raw)?;
        // The format only: `crypto` makes the key from it at start.
        let text = kek.expose().trim();
        match text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(kek),
            false => self.err(
                Some(raw.span()),
                key,
                "the key-encryption key must be 64 hex digits (32 bytes)",
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
