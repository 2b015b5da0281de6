//! The one place that turns gateway errors into HTTP responses, in the error
//! JSON shape of the API the route fronts, so SDKs surface them cleanly.
//! Internal detail (database text, upstream addresses) never reaches a client.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::config::Flavor;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("No API key was provided. Send it as the route's API key header.")]
    MissingKey,
    #[error("The API key is not recognised by the gateway.")]
    UnknownKey,
    #[error("No route is configured for this path.")]
    NoRoute,
    #[error("The request path is not allowed.")]
    BadPath,
    #[error("The request body exceeds the gateway's limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("The request body could not be read.")]
    BadBody,
    #[error("The upstream API could not be reached.")]
    UpstreamUnreachable,
    #[error("The upstream API did not answer in time.")]
    UpstreamTimeout,
    #[error("The gateway has no upstream credential for this route.")]
    MissingUpstreamCredential,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("This API key is not registered to a tenant; data-sharing settings need a tenant's own key.")]
    UnregisteredKey,
    #[error("This method is not allowed here.")]
    MethodNotAllowed,
    #[error("The gateway's store is unavailable; try again shortly.")]
    StoreUnavailable,
    #[error("This request was refused by the gateway's usage policy.")]
    Blocked,
    #[error("The gateway could not check this request body ({0}), and its usage policy refuses bodies it cannot check.")]
    Unscannable(String),
    #[error("This principal's role may not do this.")]
    Forbidden,
    #[error("Not found.")]
    NotFound,
    #[error("This API key or its organisation is suspended after a usage-policy review. Contact the gateway's operator.")]
    Suspended,
    #[error("Requests cannot be checked right now; try again shortly.")]
    ChecksUnavailable,
    #[error("The gateway is at its limit of concurrent requests; retry shortly.")]
    Overloaded,
    #[error("The request body stopped arriving; the gateway gave up waiting for it.")]
    ClientTimeout,
}

/// The review desk's refusals, as the admin API and the console answer them.
impl From<crate::review::DeskError> for ApiError {
    fn from(e: crate::review::DeskError) -> Self {
        use crate::review::DeskError;
        match e {
            DeskError::Unauthenticated => Self::UnknownKey,
            DeskError::Forbidden => Self::Forbidden,
            DeskError::NotFound => Self::NotFound,
            DeskError::Invalid(message) => Self::InvalidRequest(message),
            DeskError::Store(e) => {
                tracing::error!(error = %e, "the review desk could not reach the store");
                Self::StoreUnavailable
            }
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BadPath | Self::BadBody | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnregisteredKey
            | Self::Blocked
            | Self::Unscannable(_)
            | Self::Forbidden
            | Self::Suspended => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::StoreUnavailable | Self::ChecksUnavailable | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnreachable | Self::MissingUpstreamCredential => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A stable, low-cardinality code: the `code` field and a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::UnknownKey => "invalid_api_key",
            Self::NoRoute => "unknown_route",
            Self::BadPath => "invalid_path",
            Self::PayloadTooLarge { .. } => "request_too_large",
            Self::BadBody => "invalid_body",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::MissingUpstreamCredential => "upstream_credential_missing",
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnregisteredKey => "key_not_registered",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Blocked => "blocked_by_policy",
            Self::Unscannable(_) => "unscannable_body",
            Self::Forbidden => "forbidden",
            Self::Suspended => "suspended",
            Self::ChecksUnavailable => "checks_unavailable",
            Self::Overloaded => "overloaded",
            Self::ClientTimeout => "request_timeout",
            Self::NotFound => "not_found",
        }
    }

    /// The OpenAI `type` / Anthropic `error.type` for this error.
    fn error_type(&self, flavor: Flavor) -> &'static str {
        match (flavor, self) {
            (Flavor::Openai, Self::MissingKey | Self::UnknownKey) => "invalid_request_error",
            (Flavor::Anthropic, Self::MissingKey | Self::UnknownKey) => "authentication_error",
            (
                Flavor::Openai,
                Self::NoRoute
                | Self::BadPath
                | Self::BadBody
                | Self::PayloadTooLarge { .. }
                | Self::InvalidRequest(_)
                | Self::MethodNotAllowed
                | Self::ClientTimeout,
            ) => "invalid_request_error",
            (_, Self::UnregisteredKey | Self::Forbidden | Self::Suspended)
            | (Flavor::Anthropic, Self::Blocked | Self::Unscannable(_)) => "permission_error",
            (Flavor::Openai, Self::NotFound) => "invalid_request_error",
            (Flavor::Anthropic, Self::NotFound) => "not_found_error",
            (Flavor::Openai, Self::Blocked | Self::Unscannable(_)) => "invalid_request_error",
            (
                Flavor::Openai,
                Self::StoreUnavailable | Self::ChecksUnavailable | Self::Overloaded,
            ) => "server_error",
            (
                Flavor::Anthropic,
                Self::StoreUnavailable | Self::ChecksUnavailable | Self::Overloaded,
            ) => "overloaded_error",
            (Flavor::Anthropic, Self::InvalidRequest(_) | Self::MethodNotAllowed) => {
                "invalid_request_error"
            }
            (Flavor::Anthropic, Self::NoRoute) => "not_found_error",
            (Flavor::Anthropic, Self::PayloadTooLarge { .. }) => "request_too_large",
            (Flavor::Anthropic, Self::BadPath | Self::BadBody | Self::ClientTimeout) => {
                "invalid_request_error"
            }
            (
                Flavor::Openai,
                Self::UpstreamUnreachable | Self::UpstreamTimeout | Self::MissingUpstreamCredential,
            ) => "server_error",
            (
                Flavor::Anthropic,
                Self::UpstreamUnreachable | Self::UpstreamTimeout | Self::MissingUpstreamCredential,
            ) => "api_error",
        }
    }

    /// The response in the route's error shape.
    pub fn to_response(&self, flavor: Flavor) -> Response {
        let message = self.to_string();
        let body = match flavor {
            Flavor::Openai => serde_json::json!({
                "error": {
                    "message": message,
                    "type": self.error_type(flavor),
                    "param": null,
                    "code": self.code(),
                }
            }),
            Flavor::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": self.error_type(flavor), "message": message },
            }),
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(
            self,
            Self::Overloaded | Self::ChecksUnavailable | Self::StoreUnavailable
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::MissingKey | Self::UnknownKey) && flavor == Flavor::Openai {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
