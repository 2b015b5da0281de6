//! The rules and the classifier.

use super::*;

impl Validator<'_> {
    pub(super) fn classifier(
        &self,
        raw: Option<&RawClassifier>,
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Option<ClassifierConfig>, ConfigError> {
        let Some(raw) = raw else {
            if let Some((name, _)) = profiles
                .iter()
                .find(|(_, p)| p.classifier != ClassifierMode::Off)
            {
                return self.err(
                    None,
                    format!("profiles.{name}.classifier"),
                    "needs a [classifier] section",
                );
            }
            return Ok(None);
        };
        let url = match url::Url::parse(raw.url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return self.err(
                    Some(raw.url.span()),
                    "classifier.url",
                    "must be an http(s) URL",
                )
            }
        };
        let api_key = raw
            .api_key
            .as_ref()
            .map(|s| self.secret("classifier.api_key", s))
            .transpose()?;
        let in_range = |v: f64| (0.0..=1.0).contains(&v);
        if !in_range(raw.threshold) || !raw.thresholds.values().all(|v| in_range(*v)) {
            return self.err(
                None,
                "classifier.thresholds",
                "thresholds are between 0 and 1",
            );
        }
        if !(raw.tenant_share > 0.0 && raw.tenant_share <= 1.0) {
            return self.err(
                None,
                "classifier.tenant_share",
                "is a fraction of the queue, above 0 and at most 1",
            );
        }
        if raw.concurrency == 0 || raw.queue_capacity == 0 || raw.timeout.is_zero() {
            return self.err(
                None,
                "classifier",
                "concurrency, queue_capacity and timeout must be greater than zero",
            );
        }
        Ok(Some(ClassifierConfig {
            url,
            api_key,
            model: raw.model.clone(),
            timeout: raw.timeout,
            concurrency: raw.concurrency,
            queue_capacity: raw.queue_capacity,
            // At least one place per tenant, however small the queue.
            tenant_queue_limit: ((raw.queue_capacity as f64 * raw.tenant_share).ceil() as usize)
                .max(1),
            threshold: raw.threshold,
            thresholds: raw.thresholds.clone(),
            severity: raw.severity,
        }))
    }

    /// Compile the rules; a bad one is reported at its `name` line.
    pub(super) fn rules(
        &self,
        raw: &[RawRule],
    ) -> Result<crate::policy::rules::RuleSet, ConfigError> {
        let specs: Vec<crate::policy::rules::RuleSpec> = raw
            .iter()
            .map(|r| crate::policy::rules::RuleSpec {
                name: r.name.get_ref().clone(),
                severity: r.severity,
                action: r.action,
                keywords: r.keywords.clone(),
                patterns: r.patterns.clone(),
                max_body_bytes: r.max_body_bytes,
                max_requests_per_minute: r.max_requests_per_minute,
            })
            .collect();
        crate::policy::rules::RuleSet::compile(&specs).or_else(|e| {
            let span = raw
                .iter()
                .find(|r| *r.name.get_ref() == e.rule)
                .map(|r| r.name.span());
            self.err(span, "rules", e)
        })
    }
}
