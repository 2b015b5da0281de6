//! Inline abuse rules (docs/design.md, "Abuse checks and the review queue"):
//! literal keyword lists (Aho-Corasick), regular expressions over the
//! request's text, and body-size and request-rate anomalies per tenant.
//! Each rule has a name, a severity and an action: `flag` (forward and open
//! a review item) or `block` (refuse with 403, record and flag). Rules are
//! compiled once, when the configuration is loaded; evaluating them is pure
//! and runs in memory, for ZDR tenants too.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde::{Deserialize, Serialize};

use crate::domain::verdict::{RuleAction, Severity, Unreadable, Verdict, UNSCANNABLE_RULE};

/// A rule as configured (`[[rules]]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleSpec {
    pub name: String,
    pub severity: Severity,
    pub action: RuleAction,
    /// Matched anywhere in the text, ignoring ASCII case.
    pub keywords: Vec<String>,
    /// Regular expressions (Rust `regex` syntax), any of which matches.
    pub patterns: Vec<String>,
    /// Matches a request body larger than this.
    pub max_body_bytes: Option<u64>,
    /// Matches a tenant's requests beyond this many in a minute (per replica).
    pub max_requests_per_minute: Option<u32>,
}

/// Why a rule cannot be compiled; names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule:?}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    severity: Severity,
    action: RuleAction,
    keywords: Option<AhoCorasick>,
    patterns: Option<RegexSet>,
    max_body_bytes: Option<u64>,
    max_requests_per_minute: Option<u32>,
}

/// What a profile does with a body the rules cannot read in full
/// (`unscannable`): never passed or dropped without a word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unscannable {
    /// Forward it and open a review item saying why.
    #[default]
    Flag,
    /// Refuse it (403) before anything reaches the upstream.
    Block,
    /// Forward it; only the metric counts it.
    Allow,
}

impl Unscannable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Block => "block",
            Self::Allow => "allow",
        }
    }

    /// The verdict this body gets, if any (the metric counts every case).
    pub fn verdict(self, why: Unreadable) -> Option<Verdict> {
        metrics::counter!("custodian_requests_unscanned_total",
            "reason" => why.as_str(), "action" => self.as_str())
        .increment(1);
        let action = match self {
            Self::Allow => return None,
            Self::Flag => RuleAction::Flag,
            Self::Block => RuleAction::Block,
        };
        Some(Verdict {
            rule: UNSCANNABLE_RULE.to_owned(),
            severity: Severity::Low,
            action,
            reason: Some(why.as_str().to_owned()),
        })
    }
}

/// What a request gives the rules.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The request's text, when the gateway read the body (JSON requests).
    pub text: Option<&'a str>,
    /// The body's size, declared or read.
    pub body_bytes: Option<u64>,
    /// This tenant's requests in the current minute, this one included.
    pub requests_this_minute: u64,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// As configured: part of the policy document.
    specs: Vec<RuleSpec>,
}

impl RuleSet {
    /// The rules as configured.
    pub fn specs(&self) -> &[RuleSpec] {
        &self.specs
    }

    pub fn compile(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut names = std::collections::HashSet::new();
        for spec in specs {
            let fail = |message: String| RuleError {
                rule: spec.name.clone(),
                message,
            };
            if spec.name.trim().is_empty() {
                return Err(fail("a rule needs a name".into()));
            }
            if spec.name == UNSCANNABLE_RULE {
                return Err(fail(
                    "the name is the gateway's own verdict for unreadable bodies".into(),
                ));
            }
            if !names.insert(spec.name.as_str()) {
                return Err(fail("the name is used by another rule".into()));
            }
            if spec.keywords.iter().any(String::is_empty) {
                return Err(fail("an empty keyword would match everything".into()));
            }
            let keywords = (!spec.keywords.is_empty())
                .then(|| {
                    AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build(&spec.keywords)
                        .map_err(|e| fail(e.to_string()))
                })
                .transpose()?;
            let patterns = (!spec.patterns.is_empty())
                .then(|| RegexSet::new(&spec.patterns).map_err(|e| fail(e.to_string())))
                .transpose()?;
            if keywords.is_none()
                && patterns.is_none()
                && spec.max_body_bytes.is_none()
                && spec.max_requests_per_minute.is_none()
            {
                return Err(fail(
                    "give keywords, patterns, max_body_bytes or max_requests_per_minute".into(),
                ));
            }
            rules.push(Rule {
                name: Arc::from(spec.name.as_str()),
                severity: spec.severity,
                action: spec.action,
                keywords,
                patterns,
                max_body_bytes: spec.max_body_bytes,
                max_requests_per_minute: spec.max_requests_per_minute,
            });
        }
        Ok(Self {
            rules,
            specs: specs.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Some rule reads the request's text (so JSON bodies are read whole).
    pub fn reads_text(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.keywords.is_some() || r.patterns.is_some())
    }

    /// The largest `max_body_bytes` of any rule: a body of unknown length
    /// is read this far (and one byte more) to know whether it is larger.
    pub fn largest_size_limit(&self) -> Option<u64> {
        self.rules.iter().filter_map(|r| r.max_body_bytes).max()
    }

    /// Every rule's name and action (for metrics registered at start).
    pub fn names_and_actions(&self) -> impl Iterator<Item = (&str, RuleAction)> {
        self.rules.iter().map(|r| (&*r.name, r.action))
    }

    /// Some rule counts requests per tenant.
    pub fn counts_requests(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.max_requests_per_minute.is_some())
    }

    /// Every rule that matches, in configuration order.
    pub fn check(&self, input: &CheckInput<'_>) -> Vec<Verdict> {
        self.rules
            .iter()
            .filter(|rule| rule.matches(input))
            .map(|rule| Verdict {
                rule: rule.name.to_string(),
                severity: rule.severity,
                action: rule.action,
                reason: None,
            })
            .collect()
    }
}

impl Rule {
    fn matches(&self, input: &CheckInput<'_>) -> bool {
        let text = input.text.unwrap_or("");
        self.keywords.as_ref().is_some_and(|k| k.is_match(text))
            || self.patterns.as_ref().is_some_and(|p| p.is_match(text))
            || self
                .max_body_bytes
                .zip(input.body_bytes)
                .is_some_and(|(max, len)| len > max)
            || self
                .max_requests_per_minute
                .is_some_and(|max| input.requests_this_minute > u64::from(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::verdict::strongest;

    fn spec(name: &str) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            ..RuleSpec::default()
        }
    }

    fn input(text: &str) -> CheckInput<'_> {
        CheckInput {
            text: Some(text),
            body_bytes: Some(text.len() as u64),
            requests_this_minute: 1,
        }
    }

    fn names(v: &[Verdict]) -> Vec<&str> {
        v.iter().map(|v| v.rule.as_str()).collect()
    }

    #[test]
    fn keywords_patterns_size_and_rate_match() {
        let rules = RuleSet::compile(&[
            RuleSpec {
                keywords: vec!["Make A Bomb".into()],
                ..spec("weapons")
            },
            RuleSpec {
                patterns: vec![r"\b\d{3}-\d{2}-\d{4}\b".into()],
                action: RuleAction::Block,
                severity: Severity::High,
                ..spec("ssn")
            },
            RuleSpec {
                max_body_bytes: Some(10),
                ..spec("big")
            },
            RuleSpec {
                max_requests_per_minute: Some(2),
                ..spec("burst")
            },
        ])
        .unwrap();
        assert!(rules.reads_text() && rules.counts_requests());
        assert_eq!(
            names(&rules.check(&input("how to make a bomb"))),
            ["weapons", "big"]
        );
        assert_eq!(names(&rules.check(&input("123-45-6789"))), ["ssn", "big"]);
        assert_eq!(names(&rules.check(&input("hi"))), Vec::<&str>::new());
        let burst = CheckInput {
            requests_this_minute: 3,
            ..input("hi")
        };
        assert_eq!(names(&rules.check(&burst)), ["burst"]);
        assert_eq!(
            strongest(&rules.check(&input("123-45-6789"))),
            Some((RuleAction::Block, Severity::High))
        );
    }

    #[test]
    fn bad_rules_are_refused_with_their_name() {
        let bad = [
            RuleSpec {
                patterns: vec!["(unclosed".into()],
                ..spec("broken")
            },
            RuleSpec {
                keywords: vec![String::new()],
                ..spec("empty")
            },
            spec("nothing"),
        ];
        for rule in bad {
            let err = RuleSet::compile(std::slice::from_ref(&rule)).unwrap_err();
            assert_eq!(err.rule, rule.name);
        }
        let twice = RuleSet::compile(&[
            RuleSpec {
                max_body_bytes: Some(1),
                ..spec("a")
            },
            RuleSpec {
                max_body_bytes: Some(1),
                ..spec("a")
            },
        ]);
        assert!(twice.is_err());
    }
}
