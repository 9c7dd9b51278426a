//! HTTP calls from the gateway to subgraphs.
//!
//! Every call carries the hop secret (`X-Gateway-Auth`) so subgraphs can tell
//! the gateway from a direct caller, and the verified tenant (`X-Tenant-ID`)
//! when there is one. Nothing from the client's own headers is forwarded:
//! requests are built from scratch, so a client's `X-Tenant-ID` cannot leak.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;
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
#[derive(Clone)]
pub struct SubgraphClient {
    http: reqwest::Client,
    hop_secret: String,
    timeout: Duration,
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
    /// Connection refused, reset, or no answer within the time limit.
    #[error("subgraph unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
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
    /// A body that is not a GraphQL response.
    #[error("subgraph answered an invalid body: {0}")]
    InvalidBody(#[source] reqwest::Error),
}

impl SubgraphClient {
    /// A client that gives up on a call after `timeout`.
    pub fn new(hop_secret: impl Into<String>, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()?;
        Ok(Self {
            http,
            hop_secret: hop_secret.into(),
            timeout,
        })
    }

    /// The underlying HTTP client, for the gateway's other upstream calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The shared hop secret.
    pub fn hop_secret(&self) -> &str {
        &self.hop_secret
    }

    /// POSTs a GraphQL request body to a subgraph.
    pub async fn send(
        &self,
        url: &str,
        body: &Value,
        caller: Option<&Caller>,
    ) -> Result<SubgraphResponse, SubgraphCallError> {
        self.send_with_timeout(url, body, caller, self.timeout)
            .await
    }

    /// Like [`send`](Self::send), with its own time limit (health probes use a
    /// short one).
    pub async fn send_with_timeout(
        &self,
        url: &str,
        body: &Value,
        caller: Option<&Caller>,
        timeout: Duration,
    ) -> Result<SubgraphResponse, SubgraphCallError> {
        let mut request = self
            .http
            .post(url)
            .timeout(timeout)
            .header(GATEWAY_AUTH_HEADER, &self.hop_secret)
            .json(body);
        if let Some(caller) = caller {
            request = request
                .header(TENANT_ID_HEADER, caller.tenant_id.to_string())
                .header(TENANT_SERVICES_HEADER, &*caller.services);
        }

        let response = request
            .send()
            .await
            .map_err(SubgraphCallError::Unreachable)?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(SubgraphCallError::PayloadTooLarge);
            }
            status => return Err(SubgraphCallError::UnexpectedStatus(status.as_u16())),
        }
        response
            .json()
            .await
            .map_err(SubgraphCallError::InvalidBody)
    }
}
