//! Serving an async-graphql subgraph over HTTP behind the hop check.

use async_graphql::{EmptySubscription, ObjectType, SDLExportOptions, Schema, SubscriptionType};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

use crate::error::{Error, ensure_error_codes};
use crate::hop::HopSecret;

/// The largest GraphQL request body a subgraph reads. Well above the
/// gateway's default limit (1 MiB): the gateway forwards a client's values
/// plus its own query text and entity representations, and a subgraph must
/// not refuse what the gateway accepted.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The Federation v2 SDL of the subgraph schema with these root types:
/// exactly what it answers to `{ _service { sdl } }`, for composition
/// checks without a running service.
pub fn federation_sdl<Q, M>(query: Q, mutation: M) -> String
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
{
    Schema::build(query, mutation, EmptySubscription)
        .enable_federation()
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation().compose_directive())
}

/// `POST /graphql` (hop-checked) and `GET /healthz` for a subgraph schema.
pub fn subgraph_router<Q, M, S>(schema: Schema<Q, M, S>, hop: HopSecret) -> Router
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Router::new()
        .route("/graphql", post(execute::<Q, M, S>))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state((schema, hop))
}

async fn execute<Q, M, S>(
    State((schema, hop)): State<(Schema<Q, M, S>, HopSecret)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let tenant = match hop.verify(&headers) {
        Ok(tenant) => tenant,
        Err(error) => return error_response(StatusCode::UNAUTHORIZED, error),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let error = Error::BadUserInput(format!(
                "the request body is not a GraphQL request: {error}"
            ));
            return error_response(StatusCode::BAD_REQUEST, error);
        }
    };

    let span = tracing::debug_span!("graphql", tenant_id = ?tenant.tenant());
    let mut response =
        tracing::Instrument::instrument(schema.execute(request.data(tenant)), span).await;
    ensure_error_codes(&mut response);
    Json(response).into_response()
}

/// A GraphQL-shaped error for a request that was not executed.
fn error_response(status: StatusCode, error: Error) -> Response {
    let response = async_graphql::Response::from_errors(vec![
        async_graphql::Error::from(error).into_server_error(Default::default()),
    ]);
    (status, Json(response)).into_response()
}
