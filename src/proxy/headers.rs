//! Header rules: hop-by-hop headers (RFC 9110 §7.6.1) never cross the
//! gateway; headers that imitate the gateway's own are stripped before
//! anything reads them; policy receipts go on every response.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::EffectivePolicy;
use crate::domain::{RecordId, TrainingTag};

/// The per-request opt-out header (`x-custodian-training: off`) on requests,
/// and the training-use receipt (`allowed` / `denied`) on responses.
pub const TRAINING: HeaderName = HeaderName::from_static("x-custodian-training");
pub const TRAINING_BASIS: HeaderName = HeaderName::from_static("x-custodian-training-basis");
pub const RETENTION: HeaderName = HeaderName::from_static("x-custodian-retention");
/// Set to `off` when the gateway made the upstream keep nothing of the
/// request (`"store": false`, for zero-data-retention tenants).
pub const UPSTREAM_STORE: HeaderName = HeaderName::from_static("x-custodian-upstream-store");
pub const POLICY_VERSION: HeaderName = HeaderName::from_static("x-custodian-policy-version");
pub const RECORD_ID: HeaderName = HeaderName::from_static("x-custodian-record-id");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The gateway's request id, always; `x-request-id` keeps the upstream's when it sent one.
pub const GATEWAY_REQUEST_ID: HeaderName = HeaderName::from_static("x-custodian-request-id");

const GATEWAY_PREFIX: &str = "x-custodian-";

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// True when the caller asked that this request not be used for training.
/// Read before [`strip_gateway_headers`] removes the header.
pub fn requests_opt_out(headers: &HeaderMap) -> bool {
    headers.get_all(TRAINING).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("off"))
    })
}

/// Drop every `x-custodian-*` header a client sent: only the gateway says
/// what its receipts, tags and tenants are.
pub fn strip_gateway_headers(headers: &mut HeaderMap) {
    let imitations: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(GATEWAY_PREFIX))
        .cloned()
        .collect();
    for name in imitations {
        headers.remove(name);
    }
}

/// The caller's `x-request-id` when it is sane, else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
                .unwrap_or(HeaderValue::from_static("unknown"))
        })
}

/// The policy receipts of one request.
pub struct Receipts {
    pub training: TrainingTag,
    pub retention: HeaderValue,
    pub policy_version: HeaderValue,
    pub record_id: RecordId,
    pub request_id: HeaderValue,
    /// The gateway made the upstream keep nothing of this request.
    pub upstream_store_off: bool,
}

impl Receipts {
    pub fn new(
        training: TrainingTag,
        policy: &EffectivePolicy,
        policy_version: HeaderValue,
        record_id: RecordId,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            training,
            retention: policy.retention_receipt(policy.content_kept(false)).clone(),
            policy_version,
            record_id,
            request_id,
            upstream_store_off: false,
        }
    }

    /// The upstream was asked to keep nothing (`"store": false`).
    pub fn upstream_store_off(&mut self) {
        self.upstream_store_off = true;
    }

    /// A check flagged the request: say what that keeps.
    pub fn flagged(&mut self, policy: &EffectivePolicy) {
        self.retention = policy.retention_receipt(policy.content_kept(true)).clone();
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(TRAINING, HeaderValue::from_static(self.training.receipt()));
        headers.insert(
            TRAINING_BASIS,
            HeaderValue::from_static(self.training.basis.as_str()),
        );
        headers.insert(RETENTION, self.retention.clone());
        if self.upstream_store_off {
            headers.insert(UPSTREAM_STORE, HeaderValue::from_static("off"));
        }
        headers.insert(POLICY_VERSION, self.policy_version.clone());
        if let Ok(v) = HeaderValue::from_str(&self.record_id.to_string()) {
            headers.insert(RECORD_ID, v);
        }
        headers.insert(GATEWAY_REQUEST_ID, self.request_id.clone());
        // The provider's own request id is what its SDKs and support desk know.
        if !headers.contains_key(REQUEST_ID) {
            headers.insert(REQUEST_ID, self.request_id.clone());
        }
    }
}

#[cfg(test)]
mod client_address_tests {
    use super::*;

    fn from(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut extensions = http::Extensions::new();
        extensions.insert(axum::extract::ConnectInfo(
            peer.parse::<std::net::SocketAddr>().unwrap(),
        ));
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_address(&extensions, &headers, &trusted)
    }

    #[test]
    fn only_a_trusted_proxy_may_say_who_the_client_is() {
        // Nobody trusted: the header is the client's own claim.
        assert_eq!(
            from("198.51.100.7:5000", &["1.2.3.4"], &[]),
            "198.51.100.7:5000"
        );
        assert_eq!(
            from("198.51.100.7:5000", &["1.2.3.4"], &["10.0.0.0/8"]),
            "198.51.100.7:5000"
        );
        // A trusted proxy: the right-most entry that is not a proxy.
        let via = "10.0.0.2:4000";
        let proxies = ["10.0.0.0/8"];
        assert_eq!(
            from(via, &["203.0.113.9"], &proxies),
            "203.0.113.9 (via 10.0.0.2:4000)"
        );
        // A client-written entry on the left is skipped past.
        assert_eq!(
            from(via, &["6.6.6.6, 203.0.113.9, 10.0.0.5"], &proxies),
            "203.0.113.9 (via 10.0.0.2:4000)"
        );
        assert_eq!(
            from(via, &["6.6.6.6", "203.0.113.9"], &proxies),
            "203.0.113.9 (via 10.0.0.2:4000)"
        );
        // A line with a byte that is not text still has the proxy's entry.
        let mut extensions = http::Extensions::new();
        extensions.insert(axum::extract::ConnectInfo(
            via.parse::<std::net::SocketAddr>().unwrap(),
        ));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\x80, 203.0.113.9").unwrap(),
        );
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(&extensions, &headers, &trusted),
            "203.0.113.9 (via 10.0.0.2:4000)"
        );
        // A dual-stack listener's IPv4 peer matches IPv4 networks.
        assert_eq!(
            from("[::ffff:10.0.0.2]:4000", &["203.0.113.9"], &proxies),
            "203.0.113.9 (via [::ffff:10.0.0.2]:4000)"
        );
        // Garbage stops the walk; no header means the proxy itself.
        assert_eq!(from(via, &["6.6.6.6, junk"], &proxies), "10.0.0.2:4000");
        assert_eq!(from(via, &[], &proxies), "10.0.0.2:4000");
        assert_eq!(
            from("[::1]:9", &["2001:db8::1"], &["::1/128"]),
            "2001:db8::1 (via [::1]:9)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn gateway_headers_from_clients_are_stripped_after_reading_opt_out() {
        let mut h = HeaderMap::new();
        h.insert(TRAINING, HeaderValue::from_static("OFF"));
        h.insert(TRAINING_BASIS, HeaderValue::from_static("explicit_opt_in"));
        h.insert(
            "x-custodian-tenant",
            HeaderValue::from_static("someone-else"),
        );
        assert!(requests_opt_out(&h));
        strip_gateway_headers(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn only_off_opts_out() {
        for v in ["on", "allowed", "true", ""] {
            let mut h = HeaderMap::new();
            h.insert(TRAINING, HeaderValue::from_str(v).unwrap());
            assert!(!requests_opt_out(&h), "{v}");
        }
    }

    #[test]
    fn request_id_is_kept_when_sane_and_replaced_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        assert!(!request_id(&HeaderMap::new()).is_empty());
    }
}

/// Where a request came from, for the audit log: the peer's address, or,
/// when the peer is one of `trusted` (`server.trusted_proxies`), the
/// client it forwarded for: the right-most `x-forwarded-for` entry that is
/// not itself a trusted proxy. A header from anyone else is ignored: any
/// client can write one.
pub fn client_address(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> String {
    let Some(peer) = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
    else {
        return "unknown".to_owned();
    };
    // An IPv4 peer on a dual-stack listener arrives as ::ffff:a.b.c.d.
    let is_trusted =
        |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(peer.ip()) {
        return peer.to_string();
    }
    // Every line, even one with bytes that are not text: a proxy appends
    // the address it saw to the client's own line.
    let lines: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let forwarded: Vec<&str> = lines
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = None;
    for entry in forwarded.iter().rev() {
        let Ok(ip) = entry
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_canonical())
        else {
            // Unparsable: what lies left of it cannot be trusted either.
            break;
        };
        client = Some(ip);
        if !is_trusted(ip) {
            break;
        }
    }
    match client {
        Some(ip) => format!("{ip} (via {peer})"),
        None => peer.to_string(),
    }
}
