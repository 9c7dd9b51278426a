//! A composed supergraph ready to serve: the planner built from it, the API
//! schema clients are validated against, and a cache of prepared operations.
//!
//! All use of `hive-router-query-planner` outside the executor's plan walking
//! sits here, so moving to another planner version touches one module.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::{Context, anyhow};
use hive_router_query_planner::{
    ast::{normalization::normalize_operation, operation::OperationDefinition},
    graph::PlannerOverrideContext,
    planner::{Planner, QueryPlannerOptions, plan_nodes::QueryPlan},
    state::supergraph_state::SupergraphState,
    utils::{
        cancellation::CancellationToken,
        parsing::{safe_parse_operation_with_token_limit, safe_parse_schema},
    },
};

use super::{
    compose::{SubgraphSchema, add_root_join_types, compose},
    introspection::{IntrospectionSchema, introspection_kind},
    operation::{check_limits, select_operation},
};
use crate::error::GatewayError;

/// Most tokens a client document may have; parsing stops there.
const MAX_DOCUMENT_TOKENS: usize = 20_000;
/// Prepared operations kept per supergraph before the cache starts over.
const PLAN_CACHE_CAPACITY: usize = 1_000;

/// Depth and size limits applied to client operations.
#[derive(Debug, Clone, Copy)]
pub struct OperationLimits {
    /// Deepest selection nesting allowed.
    pub max_depth: usize,
    /// Most fields allowed, fragments expanded.
    pub max_fields: usize,
}

/// A client operation, validated, normalized and planned.
#[derive(Debug)]
pub struct PreparedOperation {
    /// The normalized operation: fragments inlined, the shape the response
    /// is projected onto.
    pub operation: OperationDefinition,
    /// The plan that fetches the data.
    pub plan: QueryPlan,
}

/// Prepared operations by operation text and operation name.
type PreparedCache = HashMap<(String, Option<String>), Arc<PreparedOperation>>;

/// A composed supergraph and everything derived from it.
pub struct Supergraph {
    sdl: String,
    sources: Vec<SubgraphSchema>,
    planner: Planner,
    subgraph_urls: HashMap<String, String>,
    validation_plan: graphql_tools::validation::validate::ValidationPlan,
    prepared: Mutex<PreparedCache>,
    introspection: OnceLock<IntrospectionSchema>,
}

impl Supergraph {
    /// Composes the subgraph schemas and builds the planner.
    pub fn compose(subgraphs: &[SubgraphSchema]) -> anyhow::Result<Self> {
        let sdl = compose(subgraphs)?;
        let urls = subgraphs
            .iter()
            .map(|s| (s.name.clone(), s.url.clone()))
            .collect();
        Self::from_sdl(&sdl, urls)
    }

    /// Builds the planner from a composed supergraph SDL; `subgraph_urls`
    /// maps subgraph names to endpoints (falling back to the SDL's own).
    pub fn from_sdl(sdl: &str, subgraph_urls: HashMap<String, String>) -> anyhow::Result<Self> {
        let mut document = safe_parse_schema(sdl).context("parsing the supergraph SDL")?;
        add_root_join_types(&mut document);
        let planner = Planner::new_from_supergraph(&document, QueryPlannerOptions::default())
            .map_err(|error| anyhow!("building the query planner: {error}"))?;
        let mut urls = planner.supergraph.subgraph_endpoint_map.clone();
        urls.extend(subgraph_urls);
        Ok(Self {
            sdl: sdl.to_owned(),
            sources: Vec::new(),
            planner,
            subgraph_urls: urls,
            validation_plan: graphql_tools::validation::rules::default_rules_validation_plan(),
            prepared: Mutex::new(HashMap::new()),
            introspection: OnceLock::new(),
        })
    }

    /// Records the subgraph schemas this supergraph was composed from, so a
    /// later fetch can tell whether anything changed.
    pub fn with_sources(mut self, sources: Vec<SubgraphSchema>) -> Self {
        self.sources = sources;
        self
    }

    /// The subgraph schemas this supergraph was composed from.
    pub fn sources(&self) -> &[SubgraphSchema] {
        &self.sources
    }

    /// The composed supergraph SDL, before the root fix-up.
    pub fn sdl(&self) -> &str {
        &self.sdl
    }

    /// Types and fields of the supergraph, for shaping responses.
    pub fn state(&self) -> &SupergraphState {
        &self.planner.supergraph
    }

    /// Endpoint of a subgraph named in a plan.
    pub fn subgraph_url(&self, name: &str) -> Option<&str> {
        self.subgraph_urls.get(name).map(String::as_str)
    }

    /// Parses, checks, validates, normalizes and plans a client operation,
    /// reusing the result for the same text and operation name.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
        limits: OperationLimits,
    ) -> Result<Arc<PreparedOperation>, GatewayError> {
        let key = (query.to_owned(), operation_name.map(str::to_owned));
        if let Some(prepared) = self.lock_prepared().get(&key) {
            return Ok(prepared.clone());
        }

        let prepared = Arc::new(self.prepare_uncached(query, operation_name, limits)?);
        let mut cache = self.lock_prepared();
        if cache.len() >= PLAN_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, prepared.clone());
        Ok(prepared)
    }

    /// Answers an operation that selects only `__schema`/`__type` (and
    /// `__typename`) from the API schema; `None` when the operation does not
    /// introspect, an error when it mixes introspection with data fields.
    pub fn introspect(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &serde_json::Map<String, serde_json::Value>,
        limits: OperationLimits,
    ) -> Result<Option<serde_json::Value>, GatewayError> {
        let document = safe_parse_operation_with_token_limit(query, MAX_DOCUMENT_TOKENS)
            .map_err(|error| GatewayError::GraphqlParseFailed(error.to_string()))?;
        match introspection_kind(&document, operation_name) {
            None => return Ok(None),
            Some(false) => {
                return Err(GatewayError::GraphqlValidationFailed(vec![
                    "introspection cannot be combined with other fields in one operation"
                        .to_owned(),
                ]));
            }
            Some(true) => {}
        }
        let operation =
            select_operation(&document, operation_name).expect("introspection_kind found it");
        // Tools' standard introspection query nests `ofType` deeply; the
        // field count still bounds the work.
        check_limits(
            &document,
            operation,
            limits.max_depth.max(32),
            limits.max_fields,
        )?;
        let api_schema = &self.planner.consumer_schema.document;
        let violations = graphql_tools::validation::validate::validate(
            api_schema,
            &document,
            &self.validation_plan,
        );
        if !violations.is_empty() {
            let messages = violations
                .into_iter()
                .map(|violation| violation.message)
                .collect();
            return Err(GatewayError::GraphqlValidationFailed(messages));
        }

        let introspection = self
            .introspection
            .get_or_init(|| IntrospectionSchema::new(api_schema));
        Ok(Some(introspection.execute(
            &document,
            operation_name,
            variables,
        )))
    }

    fn lock_prepared(&self) -> std::sync::MutexGuard<'_, PreparedCache> {
        // A panic while holding the lock leaves only a cache behind: keep going.
        self.prepared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn prepare_uncached(
        &self,
        query: &str,
        operation_name: Option<&str>,
        limits: OperationLimits,
    ) -> Result<PreparedOperation, GatewayError> {
        let document = safe_parse_operation_with_token_limit(query, MAX_DOCUMENT_TOKENS)
            .map_err(|error| GatewayError::GraphqlParseFailed(error.to_string()))?;
        let Some(operation) = select_operation(&document, operation_name) else {
            let message = match operation_name {
                Some(name) => format!("the document has no operation named {name:?}"),
                None => "the document must contain exactly one operation, or name one".to_owned(),
            };
            return Err(GatewayError::GraphqlValidationFailed(vec![message]));
        };
        check_limits(&document, operation, limits.max_depth, limits.max_fields)?;

        // The planner does not check arguments or types: validate first
        // against the API schema (no join directives, no `_entities`).
        let api_schema = &self.planner.consumer_schema.document;
        let violations = graphql_tools::validation::validate::validate(
            api_schema,
            &document,
            &self.validation_plan,
        );
        if !violations.is_empty() {
            let messages = violations
                .into_iter()
                .map(|violation| violation.message)
                .collect();
            return Err(GatewayError::GraphqlValidationFailed(messages));
        }

        let normalized =
            normalize_operation(&self.planner.supergraph, &document, operation_name)
                .map_err(|error| GatewayError::GraphqlValidationFailed(vec![error.to_string()]))?;
        let operation = normalized.operation;
        // The planner is third-party code working on client input; a panic in
        // it must cost one request, not the process.
        let plan = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.planner.plan_from_normalized_operation(
                &operation,
                PlannerOverrideContext::default(),
                &CancellationToken::new(),
            )
        }))
        .map_err(|_| anyhow!("the query planner panicked on {query:?}"))?
        .map_err(|error| anyhow!("planning {query:?}: {error}"))?;
        Ok(PreparedOperation { operation, plan })
    }
}
