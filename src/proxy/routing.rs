//! Which route a path takes, the upstream URL and headers it is sent with, and small body helpers.

use super::*;

/// Paths the gateway answers itself (e.g. `/custodian/v1/data-sharing`).
pub const GATEWAY_PATH_PREFIX: &str = "/custodian/";

/// The longest route prefix that `path` falls under. Paths that could
/// escape a prefix once decoded or normalised upstream are refused.
pub fn select_route(routes: &[RouteRuntime], path: &str) -> Result<usize, ApiError> {
    if !is_safe_path(path) {
        return Err(ApiError::BadPath);
    }
    // The gateway's own namespace is never forwarded, whatever the routes.
    if path.starts_with(GATEWAY_PATH_PREFIX) {
        return Err(ApiError::NoRoute);
    }
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| path.starts_with(r.route.prefix.as_str()))
        .max_by_key(|(_, r)| r.route.prefix.len())
        .map(|(i, _)| i)
        .ok_or(ApiError::NoRoute)
}

pub(super) fn is_safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    // Encoded '/', '\\' and '.' could turn into a traversal after decoding.
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return false;
    }
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The upstream URL: the route's base, the path past the prefix, the query.
pub(super) fn upstream_url(route: &Route, parts: &Parts) -> String {
    let rest = &parts.uri.path()[route.prefix.len()..];
    let mut url = String::with_capacity(route.upstream.as_str().len() + rest.len() + 64);
    url.push_str(route.upstream.as_str());
    url.push_str(rest);
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    url
}

pub(super) fn prepare_upstream_headers(
    route: &RouteRuntime,
    caller: &Caller,
    headers: &mut http::HeaderMap,
    request_id: &HeaderValue,
) -> Result<(), ApiError> {
    headers::strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.insert(headers::REQUEST_ID, request_id.clone());
    // Captures must be readable (model, usage, review), so the upstream is
    // asked for identity encoding; the client gets the bytes as sent.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if caller.kind == KeyKind::Managed {
        // The caller's gateway key never leaves the gateway, in either header.
        headers.remove(header::AUTHORIZATION);
        headers.remove("x-api-key");
        let own = route.tenant_credential(caller.tenant_index);
        let Some(credential) = own.or(route.credential.as_ref()).cloned() else {
            return Err(ApiError::MissingUpstreamCredential);
        };
        match route.route.flavor {
            Flavor::Openai => {
                headers.insert(header::AUTHORIZATION, credential);
            }
            Flavor::Anthropic => {
                headers.insert("x-api-key", credential);
            }
        }
    }
    Ok(())
}

pub(super) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Read a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_whole_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ApiError::BadBody),
    }
}
