//! Reading answers for ownership: ids a create registers, list pages cut to the caller.

use super::*;

pub(super) fn registration_failed(error: &str, objects: usize) {
    metrics::counter!("custodian_object_registry_errors_total").increment(1);
    tracing::error!(
        error,
        objects,
        "objects created upstream could not be registered; they stay unknown"
    );
}

/// The held request body as the registry sees it: the objects it names
/// must be the caller's, and a zero-data-retention tenant's chat completion
/// or response goes with `"store": false` (sent decoded, then). Returns the
/// body to send when it changed. A body too large (or encoded in a way the
/// gateway cannot read) to be checked is refused where tenants share the
/// upstream credential.
pub async fn owned_body(
    state: &crate::proxy::ProxyState,
    headers: &mut http::HeaderMap,
    (held, complete): (&Bytes, bool),
    ownership: &mut Ownership,
    zero_data_retention: bool,
) -> Result<Option<Bytes>, ApiError> {
    // An upload is an upload only where the API takes one; elsewhere the
    // body is read as the JSON it must be, whatever its type says.
    if ownership.upload || held.is_empty() || !ownership.reads_body {
        return Ok(None);
    }
    let strict = ownership.shared || zero_data_retention;
    if strict && headers.get_all(http::header::CONTENT_TYPE).iter().count() > 1 {
        return Err(ApiError::InvalidRequest(
            "The request has more than one Content-Type.".into(),
        ));
    }
    let unreadable = || {
        match strict {
        true => Err(ApiError::InvalidRequest(
            "The gateway must read this request body to check the objects it names, and cannot (it is larger than server.max_scan_bytes, or in an encoding it does not know).".into(),
        )),
        false => Ok(None),
    }
    };
    if !complete {
        return unreadable();
    }
    let encodings: Vec<&str> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let limits = crate::abuse::scan::Limits {
        max_scan_bytes: state.config.server.max_scan_bytes,
        max_body_bytes: state.config.server.max_request_body_bytes,
    };
    let decoded = match crate::abuse::scan::decoded(&encodings, held, limits) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return unreadable(),
        Err(crate::abuse::scan::ScanError::TooLarge) => {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_body_bytes,
            })
        }
        Err(e) => {
            return Err(ApiError::InvalidRequest(format!(
                "The request body could not be decoded: {e}."
            )))
        }
    };
    // A ZDR request that needs stored state is refused for that, first.
    let rewritten = match zero_data_retention {
        true => ownership.zero_retention_body(&decoded)?,
        false => None,
    };
    ownership
        .check_body(state.store.as_ref(), &decoded, zero_data_retention)
        .await?;
    if zero_data_retention {
        // `store` as sent does not count: the upstream keeps nothing.
        ownership.stores = false;
    }
    if rewritten.is_some() {
        // The body goes as rewritten, in clear, with its own length.
        headers.remove(http::header::CONTENT_ENCODING);
        headers.remove(http::header::CONTENT_LENGTH);
    }
    Ok(rewritten)
}

/// The caller's page of a list: the upstream's pages from the first (read
/// already) on, cut to the caller's objects (`objects::list`).
pub async fn owned_page(
    state: &crate::proxy::ProxyState,
    ownership: &Ownership,
    first: Bytes,
    url: &str,
    headers: http::HeaderMap,
) -> Result<Bytes, ApiError> {
    use crate::objects::list::{
        cursor_param, next_query, requested_limit, Gathered, Page, MAX_UPSTREAM_PAGES,
    };
    let cursor = cursor_param(ownership.flavor);
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let limit = requested_limit(query);
    let backwards = query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.starts_with("before=") || p.starts_with("before_id="))
    });
    if backwards {
        return Err(ApiError::InvalidRequest(
            "Lists on a shared upstream credential page forwards only (after), not with before."
                .into(),
        ));
    }
    // Base models are everyone's: only fine-tuned ones are cut.
    let public = |id: &str| ownership.lists() == Some(Kind::Model) && !id.starts_with("ft:");
    let mut gathered = Gathered::default();
    let mut body = first;
    for read in 1..=MAX_UPSTREAM_PAGES {
        let Some(page) = Page::parse(&body) else {
            // Not a list after all: nothing of anyone's to show.
            return Err(ApiError::UpstreamUnreachable);
        };
        let ids = page.ids().into_iter().map(str::to_owned).collect();
        let last = page.last_id().map(str::to_owned);
        let owned = ownership.owned_among(state.store.as_ref(), ids).await?;
        let keep = |id: &str| public(id) || owned.contains(id);
        if gathered.take(page, limit, keep) || read == MAX_UPSTREAM_PAGES {
            break;
        }
        let Some(last) = last else { break };
        let next = format!("{base}?{}", next_query(query, cursor, &last));
        let response = state
            .upstream
            .send(
                Method::GET,
                &next,
                headers.clone(),
                crate::proxy::upstream::UpstreamBody::Empty,
            )
            .await
            .map_err(ApiError::from)?;
        if !response.status().is_success() {
            return Err(ApiError::UpstreamUnreachable);
        }
        let (page, rest) =
            crate::proxy::read_head(state.upstream.body(response), crate::proxy::LIST_PAGE_LIMIT)
                .await;
        drop(rest);
        body = page;
    }
    let page =
        serde_json::to_vec(&gathered.into_json()).map_err(|_| ApiError::UpstreamUnreachable)?;
    Ok(Bytes::from(page))
}
