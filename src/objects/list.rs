//! A list page cut to one tenant's objects. Pure: the proxy fetches the
//! upstream's pages and asks here what to keep and what to answer.
//!
//! The upstream pages through every tenant's objects (`limit`, `after`,
//! `has_more`, `first_id`, `last_id`, as OpenAI and Anthropic both do); the
//! tenant's page holds up to `limit` of its own, in the upstream's order,
//! `after` works with the ids it was given, and `has_more` is false only
//! when the upstream has nothing more at all.

use serde_json::{Map, Value};

/// Most items a list answers (OpenAI's and Anthropic's maximum).
pub const MAX_LIMIT: usize = 100;
/// Upstream pages read at most for one tenant's page: a tenant with few
/// objects among many gets a shorter page (with `has_more`) rather than a
/// slow one.
pub const MAX_UPSTREAM_PAGES: usize = 20;

/// The `limit` a client asked for (the upstream's default of 20 otherwise).
pub fn requested_limit(query: Option<&str>) -> usize {
    query_param(query, "limit")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(20, |n| n.clamp(1, MAX_LIMIT))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The cursor parameter of a flavor's lists: OpenAI pages with `after`,
/// Anthropic with `after_id`.
pub fn cursor_param(flavor: crate::config::Flavor) -> &'static str {
    match flavor {
        crate::config::Flavor::Openai => "after",
        crate::config::Flavor::Anthropic => "after_id",
    }
}

/// The query for the next upstream page: the client's, with the cursor
/// (`cursor`) set to the last id seen and `limit` at its maximum (fewer
/// round trips).
pub fn next_query(query: Option<&str>, cursor: &str, after: &str) -> String {
    let set = format!("{cursor}=");
    let mut pairs: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !p.starts_with(&set) && !p.starts_with("limit="))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("{cursor}={after}"));
    pairs.push(format!("limit={MAX_LIMIT}"));
    pairs.join("&")
}

/// One upstream page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's other fields (`object`, …), kept in the answer.
    pub envelope: Map<String, Value>,
    pub data: Vec<Value>,
    pub has_more: bool,
}

impl Page {
    pub fn parse(body: &[u8]) -> Option<Self> {
        let Value::Object(mut envelope) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        let Value::Array(data) = envelope.remove("data")? else {
            return None;
        };
        let has_more = envelope
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(Self {
            envelope,
            data,
            has_more,
        })
    }

    /// The ids on the page, in order (items without one are never shown).
    pub fn ids(&self) -> Vec<&str> {
        self.data.iter().filter_map(item_id).collect()
    }

    /// The last id, to ask for the page after it.
    pub fn last_id(&self) -> Option<&str> {
        self.data.iter().rev().find_map(item_id)
    }
}

pub fn item_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// A tenant's page being gathered over upstream pages.
#[derive(Debug, Default)]
pub struct Gathered {
    envelope: Option<Map<String, Value>>,
    kept: Vec<Value>,
    /// The tenant may have more after the last item kept.
    has_more: bool,
    /// The last upstream id read: where to go on from when nothing was
    /// kept (a page of other tenants' objects only).
    scanned_last: Option<String>,
}

impl Gathered {
    /// Take the items of `page` that `owned` says are the tenant's, up to
    /// `limit`. True when the page is full or the upstream has no more.
    pub fn take(&mut self, page: Page, limit: usize, owned: impl Fn(&str) -> bool) -> bool {
        let count = page.data.len();
        self.scanned_last = page
            .last_id()
            .map(str::to_owned)
            .or(self.scanned_last.take());
        self.envelope.get_or_insert(page.envelope);
        for (i, item) in page.data.into_iter().enumerate() {
            if !item_id(&item).is_some_and(&owned) {
                continue;
            }
            self.kept.push(item);
            if self.kept.len() == limit {
                // Whatever follows may hold more of the tenant's.
                self.has_more = i + 1 < count || page.has_more;
                return true;
            }
        }
        self.has_more = page.has_more;
        !page.has_more
    }

    /// The page as the tenant gets it.
    pub fn into_json(self) -> Value {
        let mut out = self.envelope.unwrap_or_default();
        let first = self.kept.first().and_then(item_id).map(str::to_owned);
        let last = match self.kept.last() {
            Some(item) => item_id(item).map(str::to_owned),
            // Nothing of the tenant's yet, but more to read: the cursor
            // goes on from where the reading stopped, so paging ends.
            None if self.has_more => self.scanned_last,
            None => None,
        };
        out.insert("data".into(), Value::Array(self.kept));
        out.insert("has_more".into(), Value::Bool(self.has_more));
        out.insert("first_id".into(), first.map_or(Value::Null, Value::String));
        out.insert("last_id".into(), last.map_or(Value::Null, Value::String));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(ids: &[&str], has_more: bool) -> Page {
        let data: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "object": "file"}))
            .collect();
        Page::parse(
            json!({"object": "list", "data": data, "has_more": has_more})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn ids(v: &Value) -> Vec<&str> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_page_of_mixed_tenants_keeps_only_the_callers_in_order() {
        let mine = |id: &str| id.starts_with('a');
        let mut g = Gathered::default();
        assert!(
            !g.take(page(&["a1", "b1", "a2", "b2"], true), 3, mine),
            "wants more"
        );
        assert!(g.take(page(&["b3", "a3", "a4"], true), 3, mine), "full");
        let out = g.into_json();
        assert_eq!(ids(&out), ["a1", "a2", "a3"]);
        assert_eq!(out["first_id"], "a1");
        assert_eq!(out["last_id"], "a3");
        assert_eq!(out["has_more"], true, "a4 is left");
        assert_eq!(out["object"], "list");
        // The end of everything: has_more false, even with nothing kept.
        let mut g = Gathered::default();
        assert!(g.take(page(&["b1"], false), 3, mine));
        let out = g.into_json();
        assert_eq!(ids(&out), Vec::<&str>::new());
        assert_eq!(
            (out["has_more"].clone(), out["first_id"].clone()),
            (json!(false), Value::Null)
        );
        // Nothing of the tenant's on the pages read, more to come: the
        // cursor moves on past them.
        let mut g = Gathered::default();
        assert!(!g.take(page(&["b1", "b2"], true), 3, mine));
        let out = g.into_json();
        assert_eq!(
            (out["has_more"].clone(), out["last_id"].clone()),
            (json!(true), json!("b2"))
        );
    }

    #[test]
    fn queries_page_on_from_the_last_id() {
        assert_eq!(requested_limit(Some("limit=5&order=desc")), 5);
        assert_eq!(requested_limit(Some("limit=100000")), MAX_LIMIT);
        assert_eq!(requested_limit(None), 20);
        assert_eq!(
            next_query(
                Some("order=asc&after=x&limit=5&purpose=batch"),
                "after",
                "file-9"
            ),
            "order=asc&purpose=batch&after=file-9&limit=100"
        );
        assert_eq!(
            next_query(Some("after_id=a&limit=5"), "after_id", "msgbatch_9"),
            "after_id=msgbatch_9&limit=100"
        );
    }
}
