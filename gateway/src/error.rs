//! Errors the gateway reports to clients, each with a stable code.
//!
//! Two kinds live here. [`GatewayError`] refuses a whole request before or
//! instead of execution (no token, malformed body, invalid operation, …).
//! [`ResponseError`] is one entry of a GraphQL `errors` array, produced while
//! executing a plan or relayed from a subgraph. Internal failures reach the
//! client only as `INTERNAL` with a generic message; their detail is logged
//! once, where they are turned into a response.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Result alias for fallible gateway operations.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// A request the gateway refuses as a whole.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token, or a token that fails verification, is expired or revoked:
    /// 401 `UNAUTHENTICATED`. The reason is logged, not shown.
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// The tenant service could not confirm a token and nothing was cached:
    /// 503 `UPSTREAM_UNAVAILABLE` (the gateway fails closed).
    #[error("the tenant service could not be reached to check the token")]
    UpstreamUnavailable,
    /// The body is larger than the configured limit: 413 `PAYLOAD_TOO_LARGE`.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not the JSON the route expects: 400 `BAD_USER_INPUT`.
    #[error("{0}")]
    BadUserInput(String),
    /// The GraphQL document does not parse: 400 `GRAPHQL_PARSE_FAILED`.
    #[error("{0}")]
    GraphqlParseFailed(String),
    /// The operation is not valid against the composed schema:
    /// 400 `GRAPHQL_VALIDATION_FAILED`, one error per violation.
    #[error("{}", .0.join("; "))]
    GraphqlValidationFailed(Vec<String>),
    /// The operation nests selections deeper than allowed: 400 `QUERY_TOO_DEEP`.
    #[error("the operation nests deeper than {0} levels")]
    QueryTooDeep(usize),
    /// The operation selects more fields than allowed: 400 `QUERY_TOO_COMPLEX`.
    #[error("the operation selects more than {0} fields")]
    QueryTooComplex(usize),
    /// The planner could not plan a valid operation: 500 `INTERNAL` with a
    /// message saying so. The planner's reason is logged as a warning,
    /// without the operation's text: any client can cause this, and the
    /// text may be large or carry personal data.
    #[error("the gateway could not plan this operation")]
    PlanningFailed(String),
    /// The supergraph is not composed yet: 503 `SUPERGRAPH_NOT_READY`.
    #[error("the gateway has not composed its schema yet")]
    SupergraphNotReady,
    /// Anything unexpected: 500 `INTERNAL`, detail only in the log.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl GatewayError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::GraphqlParseFailed(_) => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed(_) => "GRAPHQL_VALIDATION_FAILED",
            Self::QueryTooDeep(_) => "QUERY_TOO_DEEP",
            Self::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::SupergraphNotReady => "SUPERGRAPH_NOT_READY",
            Self::PlanningFailed(_) | Self::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        status_for_code(self.code())
    }

    /// The message clients see: internal detail and the reason a token was
    /// refused stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            Self::Unauthenticated(_) => "a valid bearer token is required".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Logs the refusal once, at the level its cause deserves.
    pub fn log(&self) {
        match self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error")
            }
            Self::PlanningFailed(reason) => {
                tracing::warn!(target: "gateway::plan", reason, "operation not planned")
            }
            Self::UpstreamUnavailable => tracing::warn!("{self}"),
            Self::Unauthenticated(reason) => tracing::debug!(reason, "request refused"),
            other => tracing::debug!(code = other.code(), "request refused: {other}"),
        }
    }

    /// The refusal as GraphQL `errors`: validation failures give one entry each.
    pub fn to_graphql_errors(&self) -> Vec<ResponseError> {
        match self {
            Self::GraphqlValidationFailed(messages) => messages
                .iter()
                .map(|message| ResponseError::new(message.clone(), self.code()))
                .collect(),
            other => vec![ResponseError::new(other.client_message(), other.code())],
        }
    }

    /// A GraphQL-shaped response (`{"errors": [...]}`) with the right status.
    pub fn into_graphql_response(self) -> Response {
        self.log();
        let body = json!({ "errors": self.to_graphql_errors() });
        with_retry_after(self.status(), Json(body).into_response())
    }

    /// A REST-shaped response (`{"error": {"code", "message"}}`) with the right status.
    pub fn into_rest_response(self) -> Response {
        self.log();
        rest_error_response(self.code(), &self.client_message())
    }
}

/// One entry of a GraphQL response's `errors` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// Human-readable, client-safe message.
    pub message: String,
    /// Response path of the field the error belongs to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<Value>>,
    /// Carries `code`, and whatever else a subgraph attached.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

impl ResponseError {
    /// An error with a message and a code, not tied to a field.
    pub fn new(message: impl Into<String>, code: &str) -> Self {
        let mut extensions = Map::new();
        extensions.insert("code".to_owned(), Value::String(code.to_owned()));
        Self {
            message: message.into(),
            path: None,
            extensions,
        }
    }

    /// The same error attached to a response path.
    pub fn at(mut self, path: Vec<Value>) -> Self {
        self.path = Some(path);
        self
    }

    /// `extensions.code`, or `INTERNAL` for an error that has none.
    pub fn code(&self) -> &str {
        self.extensions
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("INTERNAL")
    }
}

/// HTTP status for an error code, per the contract's error table.
pub fn status_for_code(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "SERVICE_NOT_ENABLED" | "FORBIDDEN" => StatusCode::FORBIDDEN,
        "TENANT_PROVISIONING"
        | "UPSTREAM_UNAVAILABLE"
        | "SUBGRAPH_UNAVAILABLE"
        | "SUPERGRAPH_NOT_READY" => StatusCode::SERVICE_UNAVAILABLE,
        "BAD_USER_INPUT"
        | "GRAPHQL_PARSE_FAILED"
        | "GRAPHQL_VALIDATION_FAILED"
        | "QUERY_TOO_DEEP"
        | "QUERY_TOO_COMPLEX" => StatusCode::BAD_REQUEST,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "CONFLICT" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": {"code", "message"}}` with the status the code maps to, plus
/// `Retry-After` where waiting helps.
pub fn rest_error_response(code: &str, message: &str) -> Response {
    let status = status_for_code(code);
    let (code, message) = if status == StatusCode::INTERNAL_SERVER_ERROR {
        ("INTERNAL", "internal error")
    } else {
        (code, message)
    };
    let body = json!({ "error": { "code": code, "message": message } });
    with_retry_after(status, (status, Json(body)).into_response())
}

/// Sets the status, and `Retry-After: 2` on 503s: every 503 the gateway gives
/// is a state that heals by itself (provisioning, a subgraph restarting).
fn with_retry_after(status: StatusCode, mut response: Response) -> Response {
    *response.status_mut() = status;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_contract_statuses() {
        assert_eq!(status_for_code("UNAUTHENTICATED"), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_for_code("SERVICE_NOT_ENABLED"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_for_code("TENANT_PROVISIONING"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_for_code("BAD_USER_INPUT"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for_code("NOT_FOUND"), StatusCode::NOT_FOUND);
        assert_eq!(status_for_code("CONFLICT"), StatusCode::CONFLICT);
        assert_eq!(
            status_for_code("SOMETHING_ELSE"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_rest_error_for_provisioning_asks_to_retry() {
        let response = rest_error_response("TENANT_PROVISIONING", "not ready");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
