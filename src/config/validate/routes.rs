//! Profiles and routes.

use super::*;

impl Validator<'_> {
    pub(super) fn profiles(
        &self,
        raw: &BTreeMap<String, RawProfile>,
    ) -> Result<BTreeMap<String, Profile>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, p) in raw {
            let retention = Retention {
                content: p.content_retention,
                metadata: p.metadata_retention,
            };
            if retention.metadata > MAX_RETENTION {
                return self.err(
                    None,
                    format!("profiles.{name}.metadata_retention"),
                    "must be at most 3660d",
                );
            }
            if let Err(e) = retention.validated() {
                return self.err(None, format!("profiles.{name}"), e);
            }
            out.insert(
                name.clone(),
                Profile {
                    content_retention: p.content_retention,
                    metadata_retention: p.metadata_retention,
                    training_cutover: p.training_cutover,
                    zero_data_retention: p.zero_data_retention,
                    safety_retention: p.safety_retention,
                    classifier: p.classifier,
                    unscannable: p.unscannable,
                    upstream_objects: p.upstream_objects,
                },
            );
        }
        Ok(out)
    }

    pub(super) fn routes(
        &self,
        raw: &[RawRoute],
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Vec<Route>, ConfigError> {
        if raw.is_empty() {
            return self.err(None, "routes", "at least one [[routes]] entry is required");
        }
        let mut out: Vec<Route> = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            let prefix = r.prefix.get_ref();
            if !prefix.starts_with('/') || !prefix.ends_with('/') {
                return self.err(
                    Some(r.prefix.span()),
                    key("prefix"),
                    format!("{prefix:?} must start and end with '/'"),
                );
            }
            if out.iter().any(|o| &o.prefix == prefix) {
                return self.err(
                    Some(r.prefix.span()),
                    key("prefix"),
                    format!("{prefix:?} is used by another route"),
                );
            }
            let mut upstream = match Url::parse(r.upstream.get_ref()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => u,
                Ok(_) => {
                    return self.err(
                        Some(r.upstream.span()),
                        key("upstream"),
                        "must be an http(s) URL without a query",
                    )
                }
                Err(e) => return self.err(Some(r.upstream.span()), key("upstream"), e),
            };
            if !upstream.path().ends_with('/') {
                let path = format!("{}/", upstream.path());
                upstream.set_path(&path);
            }
            if !profiles.contains_key(r.profile.get_ref()) {
                return self.err(
                    Some(r.profile.span()),
                    key("profile"),
                    format!("unknown profile {:?}", r.profile.get_ref()),
                );
            }
            let upstream_key = match &r.upstream_key {
                Some(s) => Some(self.secret(&key("upstream_key"), s)?),
                None => None,
            };
            if upstream_key
                .as_ref()
                .is_some_and(|k| HeaderValue::from_str(&format!("Bearer {}", k.expose())).is_err())
            {
                return self.err(
                    r.upstream_key.as_ref().map(Spanned::span),
                    key("upstream_key"),
                    "the secret is not a valid HTTP header value",
                );
            }
            out.push(Route {
                name: r
                    .name
                    .clone()
                    .unwrap_or_else(|| prefix.trim_matches('/').to_owned()),
                prefix: prefix.clone(),
                upstream,
                profile: r.profile.get_ref().clone(),
                flavor: r.flavor,
                upstream_key,
                unknown_objects: r.unknown_objects,
                unknown_endpoints: r.unknown_endpoints,
            });
        }
        Ok(out)
    }
}
