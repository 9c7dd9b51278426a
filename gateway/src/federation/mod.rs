//! Federation: compose the subgraphs' schemas, then validate, plan and
//! execute client operations across them.
//!
//! - [`compose`]: subgraph SDLs → supergraph SDL, plus the root join fix-up.
//! - [`supergraph`]: the planner and the cache of prepared operations.
//! - [`execute`]: runs a plan against the subgraphs.
//! - [`shape`]: projects the merged answers onto the client's selection.
//! - [`client`]: the HTTP calls, with the hop and tenant headers.
//!
//! [`Federation`] ties them together and keeps the current supergraph,
//! recomposing when a subgraph's schema changes.

pub mod client;
pub mod compose;
pub mod execute;
pub mod introspection;
pub mod operation;
pub mod shape;
pub mod supergraph;
pub mod variables;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use self::{
    client::{Caller, SubgraphClient, SubgraphRequest},
    compose::SubgraphSchema,
    execute::PlanExecutor,
    supergraph::{OperationLimits, Supergraph},
};
use crate::{config::SubgraphEndpoint, error::GatewayError};

/// Time limit for a readiness probe of one subgraph.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts while some subgraph does not answer at start.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// A GraphQL request as clients send it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphqlRequest {
    /// The document.
    pub query: String,
    /// Which operation of the document to run.
    #[serde(default)]
    pub operation_name: Option<String>,
    /// Variable values; `null` is the same as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub variables: Map<String, Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The gateway's federation engine.
pub struct Federation {
    subgraphs: Vec<SubgraphEndpoint>,
    client: SubgraphClient,
    limits: OperationLimits,
    current: RwLock<Option<Arc<Supergraph>>>,
    recompose_requested: Notify,
}

impl Federation {
    /// An engine over `subgraphs`; nothing is composed until
    /// [`compose`](Self::compose) succeeds.
    pub fn new(
        subgraphs: Vec<SubgraphEndpoint>,
        client: SubgraphClient,
        limits: OperationLimits,
    ) -> Self {
        Self {
            subgraphs,
            client,
            limits,
            current: RwLock::new(None),
            recompose_requested: Notify::new(),
        }
    }

    /// The current supergraph, if composed.
    pub fn supergraph(&self) -> Option<Arc<Supergraph>> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Fetches every subgraph's SDL and, when any changed, composes and
    /// installs a new supergraph. Fails when a subgraph does not answer or
    /// composition fails; the previous supergraph then stays in service.
    pub async fn compose(&self) -> anyhow::Result<bool> {
        let schemas = self.fetch_schemas().await?;
        let current = self.supergraph();
        let unchanged = current
            .as_ref()
            .is_some_and(|current| current.sources() == schemas);
        if unchanged {
            return Ok(false);
        }
        let supergraph = Supergraph::compose(&schemas)?.with_sources(schemas);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(supergraph));
        tracing::info!(target: "gateway::compose", subgraphs = self.subgraphs.len(), "supergraph composed");
        Ok(true)
    }

    /// Composes until it works, then recomposes every `interval` or when an
    /// execution saw a schema mismatch. Runs until its task is aborted.
    pub async fn keep_composed(self: Arc<Self>, interval: Duration) {
        loop {
            match self.compose().await {
                Ok(_) if self.supergraph().is_some() => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::info!(target: "gateway::compose", "not composed yet: {error:#}")
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.recompose_requested.notified() => {}
            }
            if let Err(error) = self.compose().await {
                tracing::warn!(target: "gateway::compose", "recomposition skipped: {error:#}");
            }
        }
    }

    async fn fetch_schemas(&self) -> anyhow::Result<Vec<SubgraphSchema>> {
        if self.subgraphs.is_empty() {
            bail!("no subgraph URL is configured");
        }
        let fetches = self.subgraphs.iter().map(|subgraph| async move {
            let body = SubgraphRequest {
                query: "{ _service { sdl } }",
                variables: None,
            };
            let endpoint = subgraph.url.parse().context("parsing the URL")?;
            let response = self
                .client
                .send_with_timeout(&endpoint, &body, None, PROBE_TIMEOUT)
                .await
                .with_context(|| format!("subgraph {} at {}", subgraph.name, subgraph.url))?;
            let sdl = response
                .data
                .as_ref()
                .and_then(|data| data.pointer("/_service/sdl"))
                .and_then(Value::as_str)
                .with_context(|| {
                    format!(
                        "subgraph {} answered no SDL: {:?}",
                        subgraph.name, response.errors
                    )
                })?;
            Ok(SubgraphSchema {
                name: subgraph.name.clone(),
                url: subgraph.url.clone(),
                sdl: sdl.to_owned(),
            })
        });
        futures::future::try_join_all(fetches).await
    }

    /// Whether the supergraph is composed and every subgraph answers now.
    pub async fn is_ready(&self) -> bool {
        if self.supergraph().is_none() {
            return false;
        }
        let probes = self.subgraphs.iter().map(|subgraph| async move {
            let body = SubgraphRequest {
                query: "{ __typename }",
                variables: None,
            };
            let Ok(endpoint) = subgraph.url.parse() else {
                return false;
            };
            self.client
                .send_with_timeout(&endpoint, &body, None, PROBE_TIMEOUT)
                .await
                .is_ok()
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .all(|answered| answered)
    }

    /// Runs a client operation for `caller` and returns the GraphQL response
    /// body (`data`, and `errors` when there are any).
    pub async fn execute(
        &self,
        request: &GraphqlRequest,
        caller: Option<&Caller>,
    ) -> Result<Value, GatewayError> {
        let supergraph = self.supergraph().ok_or(GatewayError::SupergraphNotReady)?;
        // A cheap look at the text spares parsing twice for ordinary operations.
        if request.query.contains("__schema") || request.query.contains("__type") {
            let introspected = supergraph.introspect(
                &request.query,
                request.operation_name.as_deref(),
                &request.variables,
                self.limits,
            )?;
            if let Some(data) = introspected {
                return Ok(json!({ "data": data }));
            }
        }
        let prepared = supergraph.prepare(
            &request.query,
            request.operation_name.as_deref(),
            self.limits,
        )?;
        let variables = shape::effective_variables(&prepared.operation, &request.variables);
        variables::check_variables(&supergraph, &prepared.operation, &variables)?;

        let output = PlanExecutor::new(&supergraph, &self.client, caller, &variables)
            .run(prepared.plan.node.as_ref())
            .await;
        if output.schema_mismatch {
            self.recompose_requested.notify_one();
        }

        let data = shape::shape_data(
            supergraph.state(),
            &prepared.operation,
            &variables,
            output.data,
        );
        let mut response = Map::new();
        response.insert("data".to_owned(), data);
        if !output.errors.is_empty() {
            response.insert(
                "errors".to_owned(),
                serde_json::to_value(&output.errors).context("encoding errors")?,
            );
        }
        Ok(Value::Object(response))
    }
}

/// A small two-subgraph supergraph for unit tests of planning, execution
/// and shaping.
#[cfg(test)]
pub(crate) fn test_supergraph() -> Supergraph {
    const LINK: &str =
        r#"extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])"#;
    let tenant = format!(
        "{LINK}\ntype Query {{ me: Tenant }}\n\
         type Tenant @key(fields: \"id\") {{ id: ID! name: String! tags: [String!]! }}"
    );
    let fact = format!(
        "{LINK}\ntype Query {{ facts: [Fact!]! }}\n\
         type Tenant @key(fields: \"id\") {{ id: ID! facts: [Fact!]! count: Int }}\n\
         type Fact {{ text: String! owner: Tenant! }}"
    );
    Supergraph::compose(&[
        SubgraphSchema {
            name: "tenant".into(),
            url: "http://tenant/graphql".into(),
            sdl: tenant,
        },
        SubgraphSchema {
            name: "fact".into(),
            url: "http://fact/graphql".into(),
            sdl: fact,
        },
    ])
    .expect("the test subgraphs compose")
}
