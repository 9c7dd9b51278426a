//! Runs a query plan: calls subgraphs and merges their answers into one
//! response tree, which [`shape`](super::shape) then projects onto the
//! client's selection.
//!
//! Nodes: `Fetch` (a root call), `Flatten` around an entity `Fetch` and
//! `BatchFetch` (`_entities` calls whose representations are collected from
//! the tree, de-duplicated, and whose results are merged back at every place
//! they came from), `Sequence`, `Parallel` and `Condition`. The tree sits
//! behind a mutex that is never held across a subgraph call, so `Parallel`
//! branches really run at the same time.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{FutureExt, future::BoxFuture};
use hive_router_query_planner::{
    ast::{
        fragment::FragmentDefinition, operation::SubgraphFetchOperation,
        selection_item::SelectionItem, selection_set::SelectionSet,
    },
    planner::plan_nodes::{
        FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePath, FlattenNodePathSegment,
        PlanNode,
    },
};
use serde_json::{Map, Value, json};

use super::client::Caller;
use super::{
    client::{SubgraphCallError, SubgraphClient, SubgraphRequest},
    supergraph::Supergraph,
};
use crate::error::ResponseError;

/// Code of the error given for fields whose subgraph could not be reached.
pub const SUBGRAPH_UNAVAILABLE: &str = "SUBGRAPH_UNAVAILABLE";
/// Code of the error given for fields whose subgraph refused the request as
/// too large.
pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
/// Errors reported for one failed subgraph call at most: a failed list of a
/// thousand entities needs one error per field, not a thousand.
const MAX_ERRORS_PER_FAILED_CALL: usize = 20;

/// The merged subgraph answers, before shaping.
#[derive(Debug, Default)]
pub struct ExecutionOutput {
    /// Every subgraph's data merged into one tree, keyed by response keys.
    pub data: Value,
    /// Errors with paths in the client's response.
    pub errors: Vec<ResponseError>,
    /// A subgraph rejected an operation the planner built for it: its schema
    /// has probably changed since composition.
    pub schema_mismatch: bool,
}

/// One `_entities` selection of an entity call: where its entities are in
/// the tree, what represents them, and under which alias the answers return.
struct EntityBatch<'a> {
    alias: &'a str,
    variable_name: &'a str,
    paths: Vec<&'a FlattenNodePath>,
    requires: &'a SelectionSet,
    input_rewrites: Option<&'a Vec<FetchRewrite>>,
    output_rewrites: Option<&'a Vec<FetchRewrite>>,
}

/// Representations of one batch, de-duplicated, each with the tree paths of
/// the entities it stands for.
#[derive(Default)]
struct CollectedEntities {
    representations: Vec<Value>,
    paths: Vec<Vec<Vec<Value>>>,
}

/// Executes one plan for one request.
pub struct PlanExecutor<'a> {
    supergraph: &'a Supergraph,
    client: &'a SubgraphClient,
    caller: Option<&'a Caller>,
    variables: &'a Map<String, Value>,
    data: Mutex<Value>,
    errors: Mutex<Vec<ResponseError>>,
    schema_mismatch: AtomicBool,
}

impl<'a> PlanExecutor<'a> {
    /// An executor for a request by `caller` (none for anonymous signup)
    /// with the client's `variables`.
    pub fn new(
        supergraph: &'a Supergraph,
        client: &'a SubgraphClient,
        caller: Option<&'a Caller>,
        variables: &'a Map<String, Value>,
    ) -> Self {
        Self {
            supergraph,
            client,
            caller,
            variables,
            data: Mutex::new(Value::Object(Map::new())),
            errors: Mutex::new(Vec::new()),
            schema_mismatch: AtomicBool::new(false),
        }
    }

    /// Runs the plan's root node and returns the merged tree.
    pub async fn run(self, root: Option<&PlanNode>) -> ExecutionOutput {
        if let Some(root) = root {
            self.execute(root).await;
        }
        ExecutionOutput {
            data: self
                .data
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            errors: self
                .errors
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            schema_mismatch: self.schema_mismatch.into_inner(),
        }
    }

    fn execute<'n>(&'n self, node: &'n PlanNode) -> BoxFuture<'n, ()> {
        async move {
            match node {
                PlanNode::Fetch(fetch) => match &fetch.requires {
                    // A Fetch with `requires` only appears inside a Flatten;
                    // alone it has no path to find its entities at.
                    Some(_) => tracing::warn!("entity fetch outside a Flatten ignored"),
                    None => self.root_fetch(fetch).await,
                },
                PlanNode::Flatten(flatten) => match flatten.node.as_ref() {
                    PlanNode::Fetch(fetch) if fetch.requires.is_some() => {
                        let batch = EntityBatch {
                            alias: "_entities",
                            variable_name: "representations",
                            paths: vec![&flatten.path],
                            requires: fetch.requires.as_ref().expect("checked above"),
                            input_rewrites: fetch.input_rewrites.as_ref(),
                            output_rewrites: fetch.output_rewrites.as_ref(),
                        };
                        self.entity_fetch(
                            &fetch.service_name,
                            &fetch.operation,
                            fetch.variable_usages.as_ref(),
                            vec![batch],
                        )
                        .await
                    }
                    other => self.execute(other).await,
                },
                PlanNode::BatchFetch(batch_fetch) => {
                    let batches = batch_fetch
                        .entity_batch
                        .aliases
                        .iter()
                        .map(|alias| EntityBatch {
                            alias: &alias.alias,
                            variable_name: &alias.representations_variable_name,
                            paths: alias.merge_paths.iter().collect(),
                            requires: &alias.requires,
                            input_rewrites: alias.input_rewrites.as_ref(),
                            output_rewrites: alias.output_rewrites.as_ref(),
                        })
                        .collect();
                    self.entity_fetch(
                        &batch_fetch.service_name,
                        &batch_fetch.operation,
                        batch_fetch.variable_usages.as_ref(),
                        batches,
                    )
                    .await
                }
                PlanNode::Sequence(sequence) => {
                    for child in &sequence.nodes {
                        self.execute(child).await;
                    }
                }
                PlanNode::Parallel(parallel) => {
                    futures::future::join_all(
                        parallel.nodes.iter().map(|child| self.execute(child)),
                    )
                    .await;
                }
                PlanNode::Condition(condition) => {
                    let holds =
                        self.variables.get(&condition.condition) == Some(&Value::Bool(true));
                    let branch = if holds {
                        &condition.if_clause
                    } else {
                        &condition.else_clause
                    };
                    if let Some(branch) = branch {
                        self.execute(branch).await;
                    }
                }
                PlanNode::Subscription(_) | PlanNode::Defer(_) => {
                    self.push_errors([ResponseError::new(
                        "subscriptions and @defer are not supported",
                        "BAD_USER_INPUT",
                    )]);
                }
            }
        }
        .boxed()
    }

    /// A root call: its data merges into the root of the tree, and its error
    /// paths are already response paths.
    async fn root_fetch(&self, fetch: &FetchNode) {
        let variables = self.forwarded_variables(fetch.variable_usages.as_ref());
        let body = SubgraphRequest {
            query: &fetch.operation.document_str,
            variables: Some(&variables),
        };
        match self.call(&fetch.service_name, &body).await {
            Ok(response) => {
                if let Some(data @ Value::Object(_)) = response.data {
                    deep_merge(&mut self.lock_data(), data);
                }
                self.relay_errors(response.errors);
            }
            Err(failure) => {
                let paths = root_field_keys(&fetch.operation)
                    .into_iter()
                    .map(|key| vec![Value::String(key)])
                    .collect();
                self.report_failed_call(&fetch.service_name, &failure, paths);
            }
        }
    }

    /// An `_entities` call for one or more batches.
    async fn entity_fetch(
        &self,
        service_name: &str,
        operation: &SubgraphFetchOperation,
        variable_usages: Option<&BTreeSet<String>>,
        batches: Vec<EntityBatch<'_>>,
    ) {
        let collected: Vec<CollectedEntities> = {
            let data = self.lock_data();
            batches
                .iter()
                .map(|batch| collect_entities(&data, batch))
                .collect()
        };
        if collected
            .iter()
            .all(|entities| entities.representations.is_empty())
        {
            return;
        }

        let mut variables = self.forwarded_variables(variable_usages);
        for (batch, entities) in batches.iter().zip(&collected) {
            variables.insert(
                batch.variable_name.to_owned(),
                Value::Array(entities.representations.clone()),
            );
        }
        let body = SubgraphRequest {
            query: &operation.document_str,
            variables: Some(&variables),
        };

        let response = match self.call(service_name, &body).await {
            Ok(response) => response,
            Err(failure) => {
                let paths = fetched_field_paths(&collected, operation);
                self.report_failed_call(service_name, &failure, paths);
                return;
            }
        };

        let mut data_returned = response.data.unwrap_or(Value::Null);
        {
            let mut tree = self.lock_data();
            for (batch, entities) in batches.iter().zip(&collected) {
                let Some(Value::Array(results)) =
                    data_returned.get_mut(batch.alias).map(Value::take)
                else {
                    continue;
                };
                for (index, mut result) in results.into_iter().enumerate() {
                    // A null entity resolved nothing: its fields stay missing
                    // (and become null when shaped), the entity itself stays.
                    if result.is_null() {
                        continue;
                    }
                    if let Some(rewrites) = batch.output_rewrites {
                        apply_rewrites(&mut result, rewrites);
                    }
                    for path in entities.paths.get(index).into_iter().flatten() {
                        if let Some(target) = value_at_mut(&mut tree, path) {
                            deep_merge(target, result.clone());
                        }
                    }
                }
            }
        }

        // `_entities` error paths start with the alias and the representation
        // index: translate them to every place that entity sits in the tree.
        // An error without a usable path belongs to the fields this call was
        // fetching, on every entity it was fetching them for.
        let fetched_paths = fetched_field_paths(&collected, operation);
        let mut relayed = Vec::new();
        for error in response.errors {
            let translated = error.path.as_ref().and_then(|path| {
                let (alias, index) = (path.first()?.as_str()?, path.get(1)?.as_u64()? as usize);
                let position = batches.iter().position(|batch| batch.alias == alias)?;
                let targets = collected[position].paths.get(index)?;
                let rest = &path[2..];
                Some(
                    targets
                        .iter()
                        .map(|target| [target.as_slice(), rest].concat())
                        .collect::<Vec<_>>(),
                )
            });
            match translated {
                Some(paths) => {
                    relayed.extend(paths.into_iter().map(|path| error.clone().at(path)));
                }
                None if fetched_paths.is_empty() => relayed.push(ResponseError {
                    path: None,
                    ..error
                }),
                None => relayed.extend(
                    fetched_paths
                        .iter()
                        .map(|path| error.clone().at(path.clone())),
                ),
            }
        }
        self.relay_errors(relayed);
    }

    /// POSTs to a subgraph by its plan name.
    async fn call(
        &self,
        service_name: &str,
        body: &SubgraphRequest<'_>,
    ) -> Result<super::client::SubgraphResponse, SubgraphCallError> {
        let Some(url) = self.supergraph.subgraph_url(service_name) else {
            return Err(SubgraphCallError::UnknownSubgraph(service_name.to_owned()));
        };
        tracing::debug!(target: "gateway::execute", subgraph = service_name, "subgraph call");
        self.client.send(url, body, self.caller).await
    }

    fn forwarded_variables(&self, usages: Option<&BTreeSet<String>>) -> Map<String, Value> {
        usages
            .into_iter()
            .flatten()
            .filter_map(|name| {
                self.variables
                    .get(name)
                    .map(|value| (name.clone(), value.clone()))
            })
            .collect()
    }

    fn relay_errors(&self, errors: impl IntoIterator<Item = ResponseError>) {
        let mut relayed = Vec::new();
        for mut error in errors {
            // A validation failure at a subgraph means its schema moved on
            // since composition; the caller recomposes.
            if error.code() == "GRAPHQL_VALIDATION_FAILED"
                || (error.path.is_none() && error.message.starts_with("Unknown "))
            {
                self.schema_mismatch.store(true, Ordering::Relaxed);
            }
            // An error without a client-facing code is a fault somewhere
            // behind the gateway: log it once, show a generic message.
            let code = error
                .extensions
                .entry("code")
                .or_insert_with(|| json!("INTERNAL"));
            if code == "INTERNAL" {
                tracing::error!(target: "gateway::execute", message = %error.message, path = ?error.path, "subgraph reported an internal error");
                error.message = "internal error".to_owned();
            }
            relayed.push(error);
        }
        self.push_errors(relayed);
    }

    /// Errors at `paths` for a call that produced no GraphQL answer: too
    /// large is the client's input and says so; anything else means the
    /// subgraph is unavailable.
    fn report_failed_call(
        &self,
        service_name: &str,
        failure: &SubgraphCallError,
        paths: Vec<Vec<Value>>,
    ) {
        let (code, message) = match failure {
            SubgraphCallError::PayloadTooLarge => {
                tracing::debug!(target: "gateway::execute", subgraph = service_name, "{failure}");
                (
                    PAYLOAD_TOO_LARGE,
                    format!("the request is too large for the {service_name} service"),
                )
            }
            _ => {
                tracing::warn!(target: "gateway::execute", subgraph = service_name, "subgraph call failed: {failure}");
                (
                    SUBGRAPH_UNAVAILABLE,
                    format!("the {service_name} service is unavailable"),
                )
            }
        };
        let errors: Vec<ResponseError> = if paths.is_empty() {
            vec![ResponseError::new(message, code)]
        } else {
            paths
                .into_iter()
                .take(MAX_ERRORS_PER_FAILED_CALL)
                .map(|path| ResponseError::new(message.clone(), code).at(path))
                .collect()
        };
        self.push_errors(errors);
    }

    fn push_errors(&self, errors: impl IntoIterator<Item = ResponseError>) {
        self.errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(errors);
    }

    fn lock_data(&self) -> MutexGuard<'_, Value> {
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Finds the entities a batch needs and builds their representations.
fn collect_entities(data: &Value, batch: &EntityBatch<'_>) -> CollectedEntities {
    let mut found = Vec::new();
    for path in &batch.paths {
        walk_path(data, path.as_slice(), &mut Vec::new(), &mut found);
    }

    let mut collected = CollectedEntities::default();
    let mut index_by_representation: HashMap<String, usize> = HashMap::new();
    for (path, entity) in found {
        let Some(mut representation) = representation_of(entity, batch.requires) else {
            continue;
        };
        if let Some(rewrites) = batch.input_rewrites {
            apply_rewrites(&mut representation, rewrites);
        }
        let key = representation.to_string();
        let index = *index_by_representation.entry(key).or_insert_with(|| {
            collected.representations.push(representation);
            collected.paths.push(Vec::new());
            collected.representations.len() - 1
        });
        collected.paths[index].push(path);
    }
    collected
}

/// Collects the objects at a flatten path (`me.facts.@.author`), with their
/// concrete response paths.
fn walk_path<'v>(
    value: &'v Value,
    segments: &[FlattenNodePathSegment],
    current: &mut Vec<Value>,
    found: &mut Vec<(Vec<Value>, &'v Value)>,
) {
    let Some((segment, rest)) = segments.split_first() else {
        if value.is_object() {
            found.push((current.clone(), value));
        }
        return;
    };
    match (segment, value) {
        (FlattenNodePathSegment::Field(key), Value::Object(object)) => {
            if let Some(child) = object.get(key) {
                current.push(Value::String(key.clone()));
                walk_path(child, rest, current, found);
                current.pop();
            }
        }
        (FlattenNodePathSegment::List, Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                current.push(Value::from(index));
                walk_path(item, rest, current, found);
                current.pop();
            }
        }
        (FlattenNodePathSegment::TypeCondition(types), Value::Object(object)) => {
            let typename = object.get("__typename").and_then(Value::as_str);
            if typename.is_none_or(|typename| types.contains(typename)) {
                walk_path(value, rest, current, found);
            }
        }
        _ => {}
    }
}

/// The representation of an entity: the `requires` selection (`... on T {
/// __typename id }`) projected out of it, or `None` when the entity is of
/// none of the required types or lacks a key field.
fn representation_of(entity: &Value, requires: &SelectionSet) -> Option<Value> {
    let typename = entity.get("__typename").and_then(Value::as_str);
    for item in &requires.items {
        match item {
            SelectionItem::InlineFragment(fragment)
                if typename.is_none_or(|typename| typename == fragment.type_condition) =>
            {
                return project_selection(entity, &fragment.selections);
            }
            SelectionItem::Field(_) => return project_selection(entity, requires),
            _ => {}
        }
    }
    None
}

fn project_selection(value: &Value, selections: &SelectionSet) -> Option<Value> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| project_selection(item, selections))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(object) => {
            let mut projected = Map::new();
            for item in &selections.items {
                match item {
                    SelectionItem::Field(field) => {
                        let child = object.get(field.selection_identifier())?;
                        let child = if field.selections.is_empty() {
                            child.clone()
                        } else {
                            project_selection(child, &field.selections)?
                        };
                        projected.insert(field.name.clone(), child);
                    }
                    SelectionItem::InlineFragment(fragment) => {
                        let typename = object.get("__typename").and_then(Value::as_str);
                        if typename.is_none_or(|typename| typename == fragment.type_condition)
                            && let Some(Value::Object(inner)) =
                                project_selection(value, &fragment.selections)
                        {
                            projected.extend(inner);
                        }
                    }
                    SelectionItem::FragmentSpread(_) => {}
                }
            }
            Some(Value::Object(projected))
        }
        other => Some(other.clone()),
    }
}

/// Applies the planner's `ValueSetter`/`KeyRenamer` rewrites to a value.
fn apply_rewrites(value: &mut Value, rewrites: &[FetchRewrite]) {
    for rewrite in rewrites {
        match rewrite {
            FetchRewrite::ValueSetter(setter) => {
                rewrite_at(value, &setter.path, &mut |object, key| {
                    object.insert(key.to_owned(), Value::String(setter.set_value_to.clone()));
                });
            }
            FetchRewrite::KeyRenamer(renamer) => {
                rewrite_at(value, &renamer.path, &mut |object, key| {
                    if let Some(moved) = object.remove(key) {
                        object.insert(renamer.rename_key_to.clone(), moved);
                    }
                });
            }
        }
    }
}

/// Calls `apply(parent, key)` for the last `Key` segment of `path`, walking
/// lists transparently and stopping where a `TypenameEquals` does not hold.
fn rewrite_at(
    value: &mut Value,
    path: &[FetchNodePathSegment],
    apply: &mut dyn FnMut(&mut Map<String, Value>, &str),
) {
    if let Value::Array(items) = value {
        for item in items {
            rewrite_at(item, path, apply);
        }
        return;
    }
    let Value::Object(object) = value else { return };
    match path {
        [] => {}
        [FetchNodePathSegment::Key(key)] => apply(object, key),
        [FetchNodePathSegment::TypenameEquals(types), rest @ ..] => {
            let typename = object.get("__typename").and_then(Value::as_str);
            if typename.is_some_and(|typename| types.contains(typename)) {
                rewrite_at(value, rest, apply);
            }
        }
        [FetchNodePathSegment::Key(key), rest @ ..] => {
            if let Some(child) = object.get_mut(key) {
                rewrite_at(child, rest, apply);
            }
        }
    }
}

/// Merges `source` into `target`: objects key by key, lists of equal length
/// item by item, anything else replaced.
pub(crate) fn deep_merge(target: &mut Value, source: Value) {
    match (target, source) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                match target.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(source)) if target.len() == source.len() => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value);
            }
        }
        (target, source) => *target = source,
    }
}

fn value_at_mut<'v>(value: &'v mut Value, path: &[Value]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(value, |current, segment| match segment {
            Value::String(key) => current.get_mut(key.as_str()),
            Value::Number(index) => current.get_mut(index.as_u64()? as usize),
            _ => None,
        })
}

fn with_key(path: &[Value], key: &str) -> Vec<Value> {
    let mut extended = path.to_vec();
    extended.push(Value::String(key.to_owned()));
    extended
}

fn top_level_response_keys(
    selections: &SelectionSet,
    fragments: &[FragmentDefinition],
) -> Vec<String> {
    let mut keys = Vec::new();
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) if field.name != "__typename" => {
                keys.push(field.selection_identifier().to_owned())
            }
            SelectionItem::Field(_) => {}
            SelectionItem::InlineFragment(fragment) => {
                keys.extend(top_level_response_keys(&fragment.selections, fragments))
            }
            // The planner minifies repeated selections into fragments.
            SelectionItem::FragmentSpread(name) => {
                if let Some(fragment) = fragments.iter().find(|fragment| fragment.name == *name) {
                    keys.extend(top_level_response_keys(&fragment.selection_set, fragments));
                }
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Response keys a subgraph operation selects at its root.
fn root_field_keys(operation: &SubgraphFetchOperation) -> Vec<String> {
    let document = &operation.document;
    top_level_response_keys(&document.operation.selection_set, &document.fragments)
}

/// Response keys an `_entities` call selects on its entities.
fn entity_field_keys(operation: &SubgraphFetchOperation) -> Vec<String> {
    let document = &operation.document;
    let mut keys: Vec<String> = document
        .operation
        .selection_set
        .items
        .iter()
        .filter_map(|item| match item {
            // Batched calls alias `_entities` (`_e0: _entities(...)`); the
            // field name stays.
            SelectionItem::Field(field) if field.name == "_entities" => Some(
                top_level_response_keys(&field.selections, &document.fragments),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The paths of the fields an entity call fetches, on every entity it
/// fetches them for (at most [`MAX_ERRORS_PER_FAILED_CALL`]): where errors
/// that cannot be placed more precisely go.
fn fetched_field_paths(
    collected: &[CollectedEntities],
    operation: &SubgraphFetchOperation,
) -> Vec<Vec<Value>> {
    let fields = entity_field_keys(operation);
    collected
        .iter()
        .flat_map(|entities| entities.paths.iter().flatten())
        .flat_map(|path| fields.iter().map(move |field| with_key(path, field)))
        .take(MAX_ERRORS_PER_FAILED_CALL)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::{supergraph::OperationLimits, test_supergraph};

    /// The `requires` selection and flatten path the planner makes for
    /// `{ facts { owner { name } } }` (facts in one subgraph, owners in another).
    fn owner_batch_parts() -> (SelectionSet, FlattenNodePath) {
        let supergraph = test_supergraph();
        let limits = OperationLimits {
            max_depth: 10,
            max_fields: 100,
        };
        let prepared = supergraph
            .prepare("{ facts { owner { name } } }", None, limits)
            .unwrap();
        let Some(PlanNode::Sequence(sequence)) = &prepared.plan.node else {
            panic!("{}", prepared.plan)
        };
        let PlanNode::Flatten(flatten) = &sequence.nodes[1] else {
            panic!("{}", prepared.plan)
        };
        let PlanNode::Fetch(fetch) = flatten.node.as_ref() else {
            panic!("{}", prepared.plan)
        };
        (fetch.requires.clone().unwrap(), flatten.path.clone())
    }

    #[test]
    fn representations_are_collected_through_lists_and_de_duplicated() {
        let (requires, path) = owner_batch_parts();
        let data = json!({ "facts": [
            { "text": "a", "owner": { "__typename": "Tenant", "id": "t1" } },
            { "text": "b", "owner": { "__typename": "Tenant", "id": "t2" } },
            { "text": "c", "owner": { "__typename": "Tenant", "id": "t1" } },
        ] });
        let batch = EntityBatch {
            alias: "_entities",
            variable_name: "representations",
            paths: vec![&path],
            requires: &requires,
            input_rewrites: None,
            output_rewrites: None,
        };

        let collected = collect_entities(&data, &batch);

        assert_eq!(
            collected.representations,
            vec![
                json!({ "__typename": "Tenant", "id": "t1" }),
                json!({ "__typename": "Tenant", "id": "t2" })
            ]
        );
        assert_eq!(
            collected.paths,
            vec![
                vec![
                    vec![json!("facts"), json!(0), json!("owner")],
                    vec![json!("facts"), json!(2), json!("owner")]
                ],
                vec![vec![json!("facts"), json!(1), json!("owner")]],
            ]
        );
    }

    #[test]
    fn merging_keeps_existing_keys_and_merges_lists_item_by_item() {
        let mut target = json!({ "me": { "id": "t1", "facts": [{ "id": 1 }, { "id": 2 }] } });
        deep_merge(
            &mut target,
            json!({ "me": { "name": "Acme", "facts": [{ "text": "a" }, { "text": "b" }] } }),
        );
        assert_eq!(
            target,
            json!({ "me": { "id": "t1", "name": "Acme", "facts": [{ "id": 1, "text": "a" }, { "id": 2, "text": "b" }] } })
        );
    }

    #[test]
    fn rewrites_rename_keys_and_set_values_on_matching_types() {
        let mut value = json!({ "__typename": "Tenant", "inner": [{ "old": 1 }] });
        apply_rewrites(
            &mut value,
            &[
                FetchRewrite::KeyRenamer(
                    hive_router_query_planner::planner::plan_nodes::KeyRenamer {
                        path: vec![
                            FetchNodePathSegment::typename_equals_from_type("Tenant".into()),
                            FetchNodePathSegment::Key("inner".into()),
                            FetchNodePathSegment::Key("old".into()),
                        ],
                        rename_key_to: "new".into(),
                    },
                ),
                FetchRewrite::ValueSetter(
                    hive_router_query_planner::planner::plan_nodes::ValueSetter {
                        path: vec![FetchNodePathSegment::Key("__typename".into())],
                        set_value_to: "Account".into(),
                    },
                ),
            ],
        );
        assert_eq!(
            value,
            json!({ "__typename": "Account", "inner": [{ "new": 1 }] })
        );
    }
}
