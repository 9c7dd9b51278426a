//! A composed supergraph ready to serve: the planner built from it, the API
//! schema clients are validated against, and a cache of prepared operations.
//!
//! All use of `hive-router-query-planner` outside the executor's plan walking
//! sits here, so moving to another planner version touches one module.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::{Context, anyhow};
use axum::http::Uri;
use graphql_tools::parser::query;
use hive_router_query_planner::{
    ast::{normalization::normalize_operation, operation::OperationDefinition},
    graph::PlannerOverrideContext,
    planner::{Planner, QueryPlannerOptions, plan_nodes::QueryPlan},
    state::supergraph_state::SupergraphState,
    utils::{cancellation::CancellationToken, parsing::safe_parse_schema},
};

use super::{
    compose::{SubgraphSchema, add_root_join_types, compose},
    introspection::{IntrospectionSchema, introspection_kind},
    operation::{check_limits, parse_client_document, select_operation},
};
use crate::error::GatewayError;

/// Most prepared operations kept per supergraph.
const PLAN_CACHE_CAPACITY: usize = 1_000;
/// Most bytes the prepared operations kept per supergraph may weigh (see
/// [`PreparedCache`]): the count alone would let a thousand padded
/// documents hold a gigabyte.
pub const PLAN_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Operations weighing more are prepared again each time instead of being
/// cached: one of them would push out dozens of ordinary ones.
pub const PLAN_CACHE_MAX_ENTRY_BYTES: usize = PLAN_CACHE_MAX_BYTES / 64;

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

/// What prepared operations are found by: operation text and name.
type CacheKey = (String, Option<String>);

/// Prepared operations, bounded by count and by weight; the oldest leave
/// first when either bound is reached.
///
/// An entry weighs its key (the client's text, comments and all) plus twice
/// the JSON size of its normalized operation and plan, a rough stand-in for
/// the heap those take.
#[derive(Default)]
struct PreparedCache {
    entries: HashMap<Arc<CacheKey>, (Arc<PreparedOperation>, usize)>,
    /// Keys from oldest to newest, for eviction.
    order: VecDeque<Arc<CacheKey>>,
    /// Sum of the entries' weights.
    bytes: usize,
}

impl PreparedCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<PreparedOperation>> {
        self.entries.get(key).map(|(prepared, _)| prepared.clone())
    }

    fn insert(&mut self, key: CacheKey, prepared: Arc<PreparedOperation>) {
        // Another request may have prepared the same operation meanwhile.
        if self.entries.contains_key(&key) {
            return;
        }
        let weight = weight_of(&key, &prepared);
        if weight > PLAN_CACHE_MAX_ENTRY_BYTES {
            return;
        }

        while self.entries.len() >= PLAN_CACHE_CAPACITY
            || self.bytes + weight > PLAN_CACHE_MAX_BYTES
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, evicted)) = self.entries.remove(&oldest) {
                self.bytes -= evicted;
            }
        }

        let key = Arc::new(key);
        self.order.push_back(key.clone());
        self.entries.insert(key, (prepared, weight));
        self.bytes += weight;
    }
}

fn weight_of(key: &CacheKey, prepared: &PreparedOperation) -> usize {
    let key_bytes = key.0.len() + key.1.as_ref().map_or(0, String::len);
    key_bytes + 2 * (json_len(&prepared.operation) + json_len(&prepared.plan))
}

/// Length of a value's JSON encoding, counted without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Encoding plan types cannot fail; a partial count is still a count.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A composed supergraph and everything derived from it.
pub struct Supergraph {
    sdl: String,
    sources: Vec<SubgraphSchema>,
    planner: Planner,
    /// Endpoints by subgraph name, parsed once: a plan's calls name them.
    subgraph_urls: HashMap<String, Uri>,
    validation_plan: graphql_tools::validation::validate::ValidationPlan,
    /// Non-null fields without a default, by input object type.
    required_input_fields: HashMap<String, Vec<String>>,
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
        let mut endpoints = planner.supergraph.subgraph_endpoint_map.clone();
        endpoints.extend(subgraph_urls);
        let mut urls = HashMap::new();
        for (name, url) in endpoints {
            match url.parse::<Uri>() {
                Ok(uri) => {
                    urls.insert(name, uri);
                }
                // Its calls fail as calls to an unknown subgraph would.
                Err(error) => {
                    tracing::warn!(target: "gateway::compose", subgraph = name, url, "unusable subgraph URL: {error}")
                }
            }
        }
        let required_input_fields = required_input_fields(&planner.consumer_schema.document);
        Ok(Self {
            sdl: sdl.to_owned(),
            sources: Vec::new(),
            planner,
            subgraph_urls: urls,
            validation_plan: graphql_tools::validation::rules::default_rules_validation_plan(),
            required_input_fields,
            prepared: Mutex::new(PreparedCache::default()),
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

    /// Fields of an input object type that a value must carry: non-null and
    /// without a default.
    pub fn required_input_fields(&self, type_name: &str) -> &[String] {
        self.required_input_fields
            .get(type_name)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the schema has every field the operation in `query` selects
    /// at its root. When it does not, the operation names a subgraph that is
    /// not part of this composition (not configured, or down since start).
    pub fn has_root_fields(&self, query: &str) -> bool {
        let Ok(document) = parse_client_document(query) else {
            return false;
        };
        let Some(operation) = select_operation(&document, None) else {
            return false;
        };
        let state = self.state();
        let (root_type, selection_set) = match operation {
            query::OperationDefinition::SelectionSet(selection_set) => {
                (Some(&state.query_type), selection_set)
            }
            query::OperationDefinition::Query(query) => {
                (Some(&state.query_type), &query.selection_set)
            }
            query::OperationDefinition::Mutation(mutation) => {
                (state.mutation_type.as_ref(), &mutation.selection_set)
            }
            query::OperationDefinition::Subscription(_) => return false,
        };
        let Some(root) = root_type.and_then(|name| state.definitions.get(name)) else {
            return false;
        };
        selection_set.items.iter().all(|item| match item {
            query::Selection::Field(field) => {
                field.name.starts_with("__") || root.fields().contains_key(&field.name)
            }
            _ => true,
        })
    }

    /// Endpoint of a subgraph named in a plan.
    pub fn subgraph_url(&self, name: &str) -> Option<&Uri> {
        self.subgraph_urls.get(name)
    }

    /// Parses, checks, validates, normalizes and plans a client operation,
    /// reusing the result for the same text and operation name. Only
    /// operations that prepare successfully are cached.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
        limits: OperationLimits,
    ) -> Result<Arc<PreparedOperation>, GatewayError> {
        let key = (query.to_owned(), operation_name.map(str::to_owned));
        if let Some(prepared) = self.lock_prepared().get(&key) {
            return Ok(prepared);
        }

        let prepared = Arc::new(self.prepare_uncached(query, operation_name, limits)?);
        self.lock_prepared().insert(key, prepared.clone());
        Ok(prepared)
    }

    /// How many prepared operations are cached, and what they weigh.
    #[cfg(test)]
    fn plan_cache_usage(&self) -> (usize, usize) {
        let cache = self.lock_prepared();
        (cache.entries.len(), cache.bytes)
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
        let document = parse_client_document(query)?;
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
        let document = parse_client_document(query)?;
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
        // it must cost one request, not the process. Its reason is kept short:
        // it may quote parts of the operation.
        let plan = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.planner.plan_from_normalized_operation(
                &operation,
                PlannerOverrideContext::default(),
                &CancellationToken::new(),
            )
        }))
        .map_err(|_| GatewayError::PlanningFailed("the query planner panicked".to_owned()))?
        .map_err(|error| GatewayError::PlanningFailed(shortened(&error.to_string())))?;
        Ok(PreparedOperation { operation, plan })
    }
}

/// Non-null fields without a default of each input object type in `schema`.
fn required_input_fields(
    schema: &graphql_tools::parser::schema::Document<'static, String>,
) -> HashMap<String, Vec<String>> {
    use graphql_tools::parser::schema::{Definition, Type, TypeDefinition};

    schema
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::TypeDefinition(TypeDefinition::InputObject(input)) => Some(input),
            _ => None,
        })
        .map(|input| {
            let required = input
                .fields
                .iter()
                .filter(|field| {
                    matches!(field.value_type, Type::NonNullType(_))
                        && field.default_value.is_none()
                })
                .map(|field| field.name.clone())
                .collect();
            (input.name.clone(), required)
        })
        .collect()
}

/// Longest planner reason logged, in characters.
const MAX_REASON_CHARS: usize = 300;

fn shortened(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &reason[..end]),
        None => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OperationLimits = OperationLimits {
        max_depth: 15,
        max_fields: 2000,
    };

    #[test]
    fn padded_operations_cannot_grow_the_plan_cache_past_its_budget() {
        let supergraph = crate::federation::test_supergraph();
        let padding = "x".repeat(200 * 1024);
        for index in 0..100 {
            let query = format!("# {padding}{index}\n{{ me {{ name }} }}");
            supergraph.prepare(&query, None, LIMITS).unwrap();
        }

        let (entries, bytes) = supergraph.plan_cache_usage();
        assert!(
            bytes <= PLAN_CACHE_MAX_BYTES,
            "{entries} entries weigh {bytes}"
        );
        let text: usize = supergraph
            .lock_prepared()
            .entries
            .keys()
            .map(|key| key.0.len())
            .sum();
        assert!(text <= PLAN_CACHE_MAX_BYTES, "{text} bytes of text cached");
        // The newest stay: the cache still does its job.
        assert!(entries >= 50, "{entries}");
    }

    #[test]
    fn an_operation_heavier_than_an_entry_may_weigh_is_not_cached() {
        let supergraph = crate::federation::test_supergraph();
        let padded = format!(
            "# {}\n{{ me {{ name }} }}",
            "x".repeat(PLAN_CACHE_MAX_ENTRY_BYTES)
        );
        supergraph.prepare(&padded, None, LIMITS).unwrap();
        assert_eq!(supergraph.plan_cache_usage().0, 0);

        let first = supergraph.prepare("{ me { name } }", None, LIMITS).unwrap();
        let again = supergraph.prepare("{ me { name } }", None, LIMITS).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(supergraph.plan_cache_usage().0, 1);
    }

    #[test]
    fn operations_that_fail_to_prepare_are_not_cached() {
        let supergraph = crate::federation::test_supergraph();
        for query in ["{ me {", "{ nope }", "{ me { name } } { me { id } }"] {
            assert!(supergraph.prepare(query, None, LIMITS).is_err(), "{query}");
        }
        assert_eq!(supergraph.plan_cache_usage(), (0, 0));
    }

    #[test]
    fn a_planner_failure_is_reported_without_the_operation_text() {
        let supergraph = crate::federation::test_supergraph();
        // Introspection is answered before planning; handed to the planner
        // anyway it is an operation the planner cannot plan.
        let query = "query { ...F } fragment F on Query { __schema { queryType { name } } }";

        let error = supergraph.prepare(query, None, LIMITS).unwrap_err();

        assert!(
            matches!(error, GatewayError::PlanningFailed(_)),
            "{error:?}"
        );
        assert_eq!((error.code(), error.status().as_u16()), ("INTERNAL", 500));
        assert!(!format!("{error:?}").contains("fragment F"), "{error:?}");
    }

    #[test]
    fn root_fields_of_services_outside_the_composition_are_told_apart() {
        let supergraph = crate::federation::test_supergraph();
        assert!(supergraph.has_root_fields("{ me { name } facts { text } __typename }"));
        assert!(supergraph.has_root_fields("query($id: ID!) { me { name } }"));
        assert!(!supergraph.has_root_fields("{ me { name } todos { title } }"));
        // The test supergraph has no mutations at all.
        assert!(!supergraph.has_root_fields("mutation { createTodo { id } }"));
        assert!(!supergraph.has_root_fields("{ me {"));
    }
}
