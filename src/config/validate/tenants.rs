//! Tenants and API-key authentication.

use super::*;

impl Validator<'_> {
    pub(super) fn tenants(
        &self,
        raw: &[RawTenant],
        routes: &[Route],
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Vec<Tenant>, ConfigError> {
        let mut out: Vec<Tenant> = Vec::with_capacity(raw.len());
        let mut seen_keys: HashMap<String, &str> = HashMap::new();
        for (i, t) in raw.iter().enumerate() {
            let key = |field: &str| format!("tenants[{i}].{field}");
            let id = t.id.get_ref();
            if id.is_empty() || out.iter().any(|o| &o.id.0 == id) {
                return self.err(
                    Some(t.id.span()),
                    key("id"),
                    format!("{id:?} is empty or used twice"),
                );
            }
            if let Some(p) = &t.profile {
                if !profiles.contains_key(p.get_ref()) {
                    return self.err(
                        Some(p.span()),
                        key("profile"),
                        format!("unknown profile {:?}", p.get_ref()),
                    );
                }
            }
            for (field, list, scheme) in [
                ("managed_keys", &t.managed_keys, "sha256:"),
                (
                    "passthrough_fingerprints",
                    &t.passthrough_fingerprints,
                    "hmac-sha256:",
                ),
            ] {
                for k in list {
                    let hex_part = k.get_ref().strip_prefix(scheme).unwrap_or("");
                    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return self.err(
                            Some(k.span()),
                            key(field),
                            format!("expected \"{scheme}<64 hex digits>\" (see `custodian keys`)"),
                        );
                    }
                    if let Some(other) = seen_keys.insert(k.get_ref().to_ascii_lowercase(), id) {
                        return self.err(
                            Some(k.span()),
                            key(field),
                            format!("also listed for tenant {other:?}"),
                        );
                    }
                }
            }
            let mut policies = Vec::with_capacity(routes.len());
            for route in routes {
                let profile_name = t.profile.as_ref().map_or(&route.profile, |p| p.get_ref());
                let Some(profile) = profiles.get(profile_name) else {
                    return self.err(Some(t.id.span()), key("profile"), "unknown profile");
                };
                let retention = Retention {
                    content: profile.content_retention,
                    metadata: profile.metadata_retention,
                }
                .narrowed(t.content_retention, t.metadata_retention);
                let retention = match retention {
                    Ok(r) => r,
                    Err(e @ RetentionError::LongerThanProfile { .. })
                    | Err(e @ RetentionError::ContentOutlivesMetadata { .. }) => {
                        return self.err(
                            Some(t.id.span()),
                            key("content_retention"),
                            format!(
                                "under profile {profile_name:?} (route {:?}): {e}",
                                route.name
                            ),
                        )
                    }
                };
                let receipt = |kept| {
                    HeaderValue::from_str(&retention.receipt_for(kept))
                        .unwrap_or(HeaderValue::from_static("unknown"))
                };
                use crate::policy::ContentKept;
                let retention_receipts = [
                    receipt(ContentKept::Kept),
                    receipt(ContentKept::ForSafetyReview),
                    receipt(ContentKept::NotKept),
                ];
                policies.push(Arc::new(EffectivePolicy {
                    profile: Arc::from(profile_name.as_str()),
                    retention,
                    zero_data_retention: profile.zero_data_retention || t.zero_data_retention,
                    safety_retention: profile.safety_retention,
                    classifier: profile.classifier,
                    unscannable: profile.unscannable,
                    upstream_objects: profile.upstream_objects,
                    training_cutover: profile.training_cutover,
                    retention_receipts,
                }));
            }
            out.push(Tenant {
                id: TenantId(id.clone()),
                profile: t.profile.as_ref().map(|p| p.get_ref().clone()),
                zero_data_retention: t.zero_data_retention,
                content_retention: t.content_retention,
                metadata_retention: t.metadata_retention,
                managed_key_hashes: t.managed_keys.iter().map(|k| k.get_ref().clone()).collect(),
                passthrough_fingerprints: t
                    .passthrough_fingerprints
                    .iter()
                    .map(|k| k.get_ref().clone())
                    .collect(),
                policies,
                upstream_keys: self.tenant_upstream_keys(t, routes)?,
            });
        }
        Ok(out)
    }

    pub(super) fn auth(
        &self,
        raw: &RawAuth,
        tenants: &[Tenant],
    ) -> Result<AuthConfig, ConfigError> {
        let default_tenant = match &raw.default_tenant {
            None => None,
            Some(name) => match tenants.iter().position(|t| &t.id.0 == name.get_ref()) {
                Some(i) => Some(i),
                None => {
                    return self.err(
                        Some(name.span()),
                        "auth.default_tenant",
                        format!("no tenant with id {:?}", name.get_ref()),
                    )
                }
            },
        };
        let fingerprint_key = match &raw.fingerprint_key {
            Some(s) => Some(self.secret("auth.fingerprint_key", s)?),
            None => None,
        };
        let uses_fingerprints = tenants
            .iter()
            .any(|t| !t.passthrough_fingerprints.is_empty());
        if uses_fingerprints && fingerprint_key.is_none() {
            return self.err(
                None,
                "auth.fingerprint_key",
                "tenants list passthrough_fingerprints, so a fingerprint key is required",
            );
        }
        let end_user_key = raw
            .end_user_key
            .as_ref()
            .map(|s| self.secret("auth.end_user_key", s))
            .transpose()?;
        Ok(AuthConfig {
            default_tenant,
            fingerprint_key,
            end_user_key,
        })
    }
}
