//! HTTP calls from the gateway to subgraphs.
//!
//! Every call carries the hop secret (`X-Gateway-Auth`) so subgraphs can tell
//! the gateway from a direct caller, and the verified tenant (`X-Tenant-ID`)
//! when there is one. Nothing from the client's own headers is forwarded:
//! requests are built from scratch, so a client's `X-Tenant-ID` cannot leak.

use std::{sync::Arc, time::Duration};

use axum::http::{
    HeaderName, HeaderValue, Method, Request, Uri,
    header::{CONTENT_TYPE, InvalidHeaderValue},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ResponseError;

/// Header that proves a request comes from the gateway.
pub const GATEWAY_AUTH_HEADER: &str = "X-Gateway-Auth";
/// Header that tells a subgraph which tenant a request is for.
pub const TENANT_ID_HEADER: &str = "X-Tenant-ID";
/// Header that tells a subgraph which apps that tenant signed up for, so an
/// app can tell a tenant it has not provisioned yet from one that never
/// chose it.
pub const TENANT_SERVICES_HEADER: &str = "X-Tenant-Services";

// The same names, ready for a request: spares checking them on every call.
static GATEWAY_AUTH: HeaderName = HeaderName::from_static("x-gateway-auth");
static TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
static TENANT_SERVICES: HeaderName = HeaderName::from_static("x-tenant-services");

/// Who a subgraph request acts for, as the gateway verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant of the verified token.
    pub tenant_id: Uuid,
    /// The apps the tenant signed up for, comma-separated canonical names
    /// (the header's value).
    pub services: Arc<str>,
}

/// Sends GraphQL requests to subgraphs.
///
/// The calls go through hyper's pooling client, HTTP/1.1 with keep-alive:
/// a subgraph call is the gateway's hot path, and reqwest's layers
/// (redirects, parsing the URL twice per call) cost more than the call
/// itself once the connection is open. reqwest stays for the other upstream
/// calls, which are rare ([`http`](Self::http)).
#[derive(Clone)]
pub struct SubgraphClient {
    http: reqwest::Client,
    graphql: Client<HttpConnector, Full<Bytes>>,
    hop_secret: String,
    hop_header: HeaderValue,
    timeout: Duration,
}

/// The body of a GraphQL request to a subgraph, encoded from borrowed parts.
#[derive(Debug, Serialize)]
pub struct SubgraphRequest<'a> {
    /// The operation.
    pub query: &'a str,
    /// Its variables, when it has any to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<&'a Map<String, Value>>,
}

/// A subgraph's GraphQL answer.
#[derive(Debug, Default, Deserialize)]
pub struct SubgraphResponse {
    /// `data`, absent or null when the subgraph failed the whole request.
    #[serde(default)]
    pub data: Option<Value>,
    /// `errors`, with paths relative to the subgraph operation.
    #[serde(default)]
    pub errors: Vec<ResponseError>,
}

/// Why a subgraph call produced no GraphQL answer.
#[derive(Debug, thiserror::Error)]
pub enum SubgraphCallError {
    /// Connection refused or reset before an answer arrived.
    #[error("subgraph unreachable: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// No whole answer within the time limit.
    #[error("subgraph did not answer within {0:?}")]
    TimedOut(Duration),
    /// HTTP 413: the request is larger than the subgraph accepts. That is
    /// the client's input (a long text, say), not an outage.
    #[error("subgraph refused the request as too large")]
    PayloadTooLarge,
    /// An HTTP status other than 200 (e.g. the hop secret was refused).
    #[error("subgraph answered HTTP {0}")]
    UnexpectedStatus(u16),
    /// The plan names a subgraph the gateway has no URL for.
    #[error("no URL is known for subgraph {0}")]
    UnknownSubgraph(String),
    /// The caller's apps cannot be sent as a header value.
    #[error("the tenant's apps are not a valid header value")]
    InvalidCallerHeader(#[source] InvalidHeaderValue),
    /// The body broke off, or is not a GraphQL response.
    #[error("subgraph answered an invalid body: {0}")]
    InvalidBody(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SubgraphClient {
    /// A client that gives up on a call after `timeout`.
    pub fn new(hop_secret: impl Into<String>, timeout: Duration) -> anyhow::Result<Self> {
        let connect_timeout = timeout.min(Duration::from_secs(2));
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()?;

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        // Requests are written whole; waiting to fill a segment only adds
        // latency.
        connector.set_nodelay(true);
        let graphql = Client::builder(TokioExecutor::new()).build(connector);

        let hop_secret = hop_secret.into();
        let mut hop_header = HeaderValue::from_str(&hop_secret)?;
        hop_header.set_sensitive(true);
        Ok(Self {
            http,
            graphql,
            hop_secret,
            hop_header,
            timeout,
        })
    }

    /// The HTTP client for the gateway's other upstream calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The shared hop secret.
    pub fn hop_secret(&self) -> &str {
        &self.hop_secret
    }

    /// POSTs a GraphQL request to a subgraph's endpoint.
    pub async fn send(
        &self,
        endpoint: &Uri,
        body: &SubgraphRequest<'_>,
        caller: Option<&Caller>,
    ) -> Result<SubgraphResponse, SubgraphCallError> {
        self.send_with_timeout(endpoint, body, caller, self.timeout)
            .await
    }

    /// Like [`send`](Self::send), with its own time limit (health probes use a
    /// short one). The limit covers the whole answer, body included.
    pub async fn send_with_timeout(
        &self,
        endpoint: &Uri,
        body: &SubgraphRequest<'_>,
        caller: Option<&Caller>,
        timeout: Duration,
    ) -> Result<SubgraphResponse, SubgraphCallError> {
        let request = self.request(endpoint, body, caller)?;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| SubgraphCallError::TimedOut(timeout))?
    }

    fn request(
        &self,
        endpoint: &Uri,
        body: &SubgraphRequest<'_>,
        caller: Option<&Caller>,
    ) -> Result<Request<Full<Bytes>>, SubgraphCallError> {
        // Borrowed strings and a JSON map: encoding cannot fail.
        let body = serde_json::to_vec(body).expect("a subgraph request encodes as JSON");
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = endpoint.clone();

        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(GATEWAY_AUTH.clone(), self.hop_header.clone());
        if let Some(caller) = caller {
            let mut buffer = Uuid::encode_buffer();
            let tenant_id = caller.tenant_id.hyphenated().encode_lower(&mut buffer);
            let tenant_id = HeaderValue::from_str(tenant_id).expect("a UUID is a header value");
            headers.insert(TENANT_ID.clone(), tenant_id);
            let services = HeaderValue::from_str(&caller.services)
                .map_err(SubgraphCallError::InvalidCallerHeader)?;
            headers.insert(TENANT_SERVICES.clone(), services);
        }
        Ok(request)
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<SubgraphResponse, SubgraphCallError> {
        let response = self
            .graphql
            .request(request)
            .await
            .map_err(SubgraphCallError::Unreachable)?;
        match response.status().as_u16() {
            200 => {}
            413 => return Err(SubgraphCallError::PayloadTooLarge),
            status => return Err(SubgraphCallError::UnexpectedStatus(status)),
        }

        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| SubgraphCallError::InvalidBody(error.into()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|error| SubgraphCallError::InvalidBody(error.into()))
    }
}
