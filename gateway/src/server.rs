//! The HTTP surface: routes, request reading with limits, authentication of
//! each request, and the GraphQL endpoint.

use std::{future::Future, sync::Arc};

use anyhow::Context;
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::{
    auth::Authenticator,
    config::GatewayConfig,
    error::GatewayError,
    federation::{
        Federation, GraphqlRequest,
        client::{Caller, SubgraphClient},
        operation::needs_tenant,
        supergraph::OperationLimits,
    },
    rest,
};

/// Everything a request handler needs.
pub struct Gateway {
    /// The validated configuration.
    pub config: GatewayConfig,
    /// The federation engine.
    pub federation: Arc<Federation>,
    /// Bearer token verification.
    pub authenticator: Authenticator,
}

/// Shared handle to the gateway, the router's state.
pub type SharedGateway = Arc<Gateway>;

impl Gateway {
    /// Builds the gateway's parts from its configuration; nothing is fetched yet.
    pub fn new(config: GatewayConfig) -> anyhow::Result<SharedGateway> {
        let client = SubgraphClient::new(config.hop_secret.clone(), config.subgraph_timeout)
            .context("building the HTTP client")?;
        let limits = OperationLimits {
            max_depth: config.max_query_depth,
            max_fields: config.max_query_fields,
        };
        let authenticator = Authenticator::new(
            client.http().clone(),
            config.hop_secret.clone(),
            config.jwks_url.clone(),
            config.tenant_service_origin.clone(),
        );
        let federation = Arc::new(Federation::new(config.subgraphs.clone(), client, limits));
        Ok(Arc::new(Self {
            config,
            federation,
            authenticator,
        }))
    }

    /// Reads a request body, refusing one larger than the configured limit.
    pub async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, GatewayError> {
        let limit = self.config.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(GatewayError::PayloadTooLarge(limit));
        }
        axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| GatewayError::PayloadTooLarge(limit))
    }

    /// Verifies the request's bearer token and returns who it acts for.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let verified = self.authenticator.authenticate(authorization).await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(verified.tenant_id));
        Ok(Caller {
            tenant_id: verified.tenant_id,
            services: verified.services,
        })
    }
}

/// Runs the gateway on `listener` until `shutdown` completes: composes the
/// supergraph in the background (readiness reports when it is done) and
/// serves requests meanwhile.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let gateway = Gateway::new(config)?;
    let composer = tokio::spawn(
        gateway
            .federation
            .clone()
            .keep_composed(gateway.config.recompose_interval),
    );
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(target: "gateway", %address, "gateway listening");

    let served = axum::serve(listener, router(gateway))
        .with_graceful_shutdown(shutdown)
        .await;
    composer.abort();
    served.context("serving HTTP")
}

/// All routes of the gateway.
pub fn router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/graphql", get(graphiql).post(graphql))
        .merge(rest::routes())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<Body>| {
                    // `tenant_id` is filled in once the token is verified.
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        tenant_id = tracing::field::Empty,
                    )
                })
                // A 503 before composition or while a tenant is provisioned
                // is expected, and a real failure is logged once where it
                // happens, with its cause: the status alone is debug detail.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .with_state(gateway)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(gateway): State<SharedGateway>) -> Response {
    if gateway.federation.is_ready().await {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready" })),
        )
            .into_response()
    }
}

async fn graphiql() -> Html<&'static str> {
    Html(GRAPHIQL_PAGE)
}

async fn graphql(State(gateway): State<SharedGateway>, headers: HeaderMap, body: Body) -> Response {
    match run_graphql(&gateway, &headers, body).await {
        Ok(response) => Json(response).into_response(),
        Err(error) => error.into_graphql_response(),
    }
}

async fn run_graphql(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Value, GatewayError> {
    let body = gateway.read_body(headers, body).await?;
    let request: GraphqlRequest = serde_json::from_slice(&body).map_err(|error| {
        GatewayError::BadUserInput(format!("the body is not a GraphQL request: {error}"))
    })?;

    // Signup (how a tenant gets its first token) and introspection (the
    // schema everyone shares; GraphiQL asks for it before a token is pasted)
    // touch no tenant's data. They run without a tenant whatever
    // `Authorization` says, so the GraphiQL hint `Bearer <token>` does not
    // stand in their way; every other operation needs a valid token.
    let caller = if needs_tenant(&request.query, request.operation_name.as_deref()) {
        Some(gateway.authenticate(headers).await?)
    } else {
        None
    };

    gateway.federation.execute(&request, caller.as_ref()).await
}

/// GraphiQL, loaded from a CDN, pointed at this endpoint.
const GRAPHIQL_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>hybrid-tenancy GraphiQL</title>
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, { fetcher, defaultHeaders: '{"Authorization": "Bearer <token>"}' })
    );
  </script>
</body>
</html>
"#;
