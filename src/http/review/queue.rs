//! Reading the queue: lists (filtered, paginated by cursor), one item with its payload (audited in the same transaction), counts.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    pub(super) status: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) severity: Option<String>,
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    pub(super) cursor: Option<String>,
    pub(super) limit: Option<i64>,
}

pub(super) fn instant_param(
    name: &str,
    value: Option<&str>,
) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::InvalidRequest(format!("{name} must be an RFC 3339 instant"))
            })
        })
        .transpose()
}

pub(super) fn cursor_of(item: &ReviewItem) -> String {
    format!(
        "{}_{}",
        item.created_at.unix_timestamp_nanos() / 1_000,
        item.record_id
    )
}

pub(super) fn parse_cursor(cursor: &str) -> Result<(OffsetDateTime, RecordId), ApiError> {
    let bad = || ApiError::InvalidRequest("cursor is not one this API gave".into());
    let (micros, id) = cursor.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let nanos = micros.checked_mul(1_000).ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((at, RecordId(id.parse().map_err(|_| bad())?)))
}

pub(super) async fn list_items(
    State(state): State<ReviewState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ListItems).await?;
        let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let severity = q
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    ApiError::InvalidRequest("severity is low, medium, high or critical".into())
                })
            })
            .transpose()?;
        let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let filter = ReviewFilter {
            status: q.status,
            tenant: q.tenant,
            rule: q.rule,
            severity,
            // Contractors list only what is assigned to them.
            assignee: access::sees_only_assigned(principal.role).then(|| principal.name.clone()),
            since: instant_param("since", q.since.as_deref())?,
            until: instant_param("until", q.until.as_deref())?,
            after: q.cursor.as_deref().map(parse_cursor).transpose()?,
            limit,
            live_at: Some(state.clock.now()),
        };
        let items = state
            .store
            .list_review_items(&filter)
            .await
            .map_err(unavailable)?;
        let next = (items.len() as i64 == limit)
            .then(|| items.last().map(cursor_of))
            .flatten();
        let holds = Holds::load(&state, state.clock.now()).await?;
        let view = View::for_principal(&principal);
        let data: Vec<Value> = items
            .iter()
            .map(|item| {
                item_json(
                    item,
                    View {
                        held: holds.keep(item),
                        ..view
                    },
                )
            })
            .collect();
        Ok::<_, ApiError>(Json(json!({"data": data, "next_cursor": next})).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn read_item(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ReadItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let now = state.clock.now();
        let view = View::of(&state, &principal, &item).await?;
        let redacted = view.redacted;
        let event = audit(
            &principal,
            "review_item.read",
            Some(&item),
            peer,
            now,
            json!({"redacted": redacted}),
        );
        let (item, record) = state
            .store
            .read_review_item(item.record_id, &event)
            .await
            .map_err(unavailable)?
            .ok_or(ApiError::NotFound)?;
        let mut body = item_json(&item, view);
        body["record"] = record_json(&record, redacted, state.keys.as_deref());
        Ok::<_, ApiError>(Json(body).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn counts(State(state): State<ReviewState>, headers: HeaderMap) -> Response {
    async {
        authorize(&state, &headers, Action::Counts).await?;
        let rows = state
            .store
            .review_counts(state.clock.now())
            .await
            .map_err(unavailable)?;
        let data: Vec<Value> = rows
            .into_iter()
            .map(|(status, severity, count)| json!({"status": status, "severity": severity, "count": count}))
            .collect();
        Ok::<_, ApiError>(Json(json!({ "data": data })).into_response())
    }
    .await
    .unwrap_or_else(fail)
}
