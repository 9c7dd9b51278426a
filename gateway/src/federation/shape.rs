//! Projects the merged subgraph answers onto the client's selection.
//!
//! The tree the executor builds holds what subgraphs returned, including
//! `__typename` and key fields the planner added for entity calls. Walking the
//! normalized client operation over it keeps exactly what the client asked
//! for, in its order and under its aliases, honours `@skip`/`@include`, and
//! applies GraphQL null propagation: a null in a non-null position nulls the
//! nearest nullable parent.
//!
//! The tree is consumed: values move into the response instead of being
//! copied, except a key that one selection set reads twice (a field and a
//! fragment selecting it again), which is copied for each read.

use hive_router_query_planner::{
    ast::{
        operation::OperationDefinition, selection_item::SelectionItem, selection_set::SelectionSet,
        value::Value as AstValue,
    },
    state::supergraph_state::{OperationKind, SupergraphDefinition, SupergraphState, TypeNode},
};
use std::borrow::Cow;

use serde_json::{Map, Value};

/// A null reached a non-null position and must propagate to the parent.
struct PropagatedNull;

/// The client's variables with the operation's defaults filled in, the values
/// `@skip`/`@include` conditions and `Condition` plan nodes read.
pub fn effective_variables(
    operation: &OperationDefinition,
    variables: &Map<String, Value>,
) -> Map<String, Value> {
    let mut effective = variables.clone();
    for definition in operation.variable_definitions.iter().flatten() {
        if let Some(default) = &definition.default_value
            && !effective.contains_key(&definition.name)
        {
            effective.insert(definition.name.clone(), ast_value_to_json(default));
        }
    }
    effective
}

fn ast_value_to_json(value: &AstValue) -> Value {
    match value {
        AstValue::Variable(_) | AstValue::Null => Value::Null,
        AstValue::Int(number) => Value::from(*number),
        AstValue::Float(number) => Value::from(*number),
        AstValue::String(text) | AstValue::Enum(text) => Value::String(text.clone()),
        AstValue::Boolean(flag) => Value::Bool(*flag),
        AstValue::List(items) => Value::Array(items.iter().map(ast_value_to_json).collect()),
        AstValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), ast_value_to_json(value)))
                .collect(),
        ),
    }
}

/// The response `data` for `operation`, projected out of the merged tree;
/// `Value::Null` when a null propagated all the way up.
pub fn shape_data(
    state: &SupergraphState,
    operation: &OperationDefinition,
    variables: &Map<String, Value>,
    merged: Value,
) -> Value {
    let root_type = match operation.operation_kind {
        Some(OperationKind::Mutation) => state.mutation_type.as_deref().unwrap_or("Mutation"),
        Some(OperationKind::Subscription) => {
            state.subscription_type.as_deref().unwrap_or("Subscription")
        }
        _ => state.query_type.as_str(),
    };
    let source = match merged {
        Value::Object(source) => source,
        _ => Map::new(),
    };
    let shaper = Shaper { state, variables };
    let mut data = Map::new();
    match shaper.object(root_type, &operation.selection_set, source, &mut data) {
        Ok(()) => Value::Object(data),
        Err(PropagatedNull) => Value::Null,
    }
}

struct Shaper<'a> {
    state: &'a SupergraphState,
    variables: &'a Map<String, Value>,
}

impl Shaper<'_> {
    /// Projects `source`, an object of `type_name`, onto `selections`,
    /// moving its values into `out`.
    fn object(
        &self,
        type_name: &str,
        selections: &SelectionSet,
        mut source: Map<String, Value>,
        out: &mut Map<String, Value>,
    ) -> Result<(), PropagatedNull> {
        let mut keys = Vec::new();
        let mut repeated = Vec::new();
        keys_read(selections, &mut keys, &mut repeated);
        self.project(type_name, selections, &mut source, &repeated, out)
    }

    /// The walk of [`object`](Self::object); a key in `repeated` is read more
    /// than once, so it is copied out of `source` instead of moved.
    fn project(
        &self,
        type_name: &str,
        selections: &SelectionSet,
        source: &mut Map<String, Value>,
        repeated: &[&str],
        out: &mut Map<String, Value>,
    ) -> Result<(), PropagatedNull> {
        for item in &selections.items {
            match item {
                SelectionItem::Field(field) => {
                    if field.omit_from_response
                        || !self.included(field.skip_if.as_deref(), field.include_if.as_deref())
                    {
                        continue;
                    }
                    let key = field.selection_identifier();
                    // Every `__typename` selection reads the same source key,
                    // whatever its alias: copy it, it is short.
                    if field.name == "__typename" {
                        let typename = source.get("__typename").cloned();
                        out.insert(key.to_owned(), typename.unwrap_or_else(|| type_name.into()));
                        continue;
                    }

                    let raw = if repeated.contains(&key) {
                        source.get(key).cloned()
                    } else {
                        source.remove(key)
                    };
                    let completed = match self.field_type(type_name, &field.name) {
                        Some(field_type) => self.complete(field_type, raw, &field.selections),
                        // Unknown to the supergraph: pass through what arrived.
                        None => Ok(raw.unwrap_or(Value::Null)),
                    };
                    match completed {
                        Ok(value) => match out.get_mut(key) {
                            // The same key selected twice (e.g. by a field and
                            // a fragment): merge the two projections.
                            Some(existing) => super::execute::deep_merge(existing, value),
                            None => {
                                out.insert(key.to_owned(), value);
                            }
                        },
                        Err(PropagatedNull) => return Err(PropagatedNull),
                    }
                }
                SelectionItem::InlineFragment(fragment) => {
                    if !self.included(fragment.skip_if.as_deref(), fragment.include_if.as_deref())
                        || !self.applies(&fragment.type_condition, type_name)
                    {
                        continue;
                    }
                    self.project(type_name, &fragment.selections, source, repeated, out)?;
                }
                // Normalization inlines every fragment spread.
                SelectionItem::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }

    /// Completes a value of `field_type`: `Err` when it is null in a non-null
    /// position.
    fn complete(
        &self,
        field_type: &TypeNode,
        raw: Option<Value>,
        selections: &SelectionSet,
    ) -> Result<Value, PropagatedNull> {
        match field_type {
            TypeNode::NonNull(inner) => match self.complete(inner, raw, selections)? {
                Value::Null => Err(PropagatedNull),
                value => Ok(value),
            },
            TypeNode::List(inner) => match raw {
                Some(Value::Array(items)) => {
                    let mut completed = Vec::with_capacity(items.len());
                    for item in items {
                        match self.complete(inner, Some(item), selections) {
                            Ok(value) => completed.push(value),
                            Err(PropagatedNull) => return Ok(Value::Null),
                        }
                    }
                    Ok(Value::Array(completed))
                }
                _ => Ok(Value::Null),
            },
            TypeNode::Named(type_name) => match raw {
                Some(Value::Object(object)) if !selections.is_empty() => {
                    // The type's name from the schema, so the object can move.
                    let concrete = match object.get("__typename").and_then(Value::as_str) {
                        Some(concrete) => match self.state.definitions.get_key_value(concrete) {
                            Some((known, _)) => Cow::Borrowed(known.as_str()),
                            None => Cow::Owned(concrete.to_owned()),
                        },
                        None => Cow::Borrowed(type_name.as_str()),
                    };
                    let mut out = Map::new();
                    match self.object(&concrete, selections, object, &mut out) {
                        Ok(()) => Ok(Value::Object(out)),
                        Err(PropagatedNull) => Ok(Value::Null),
                    }
                }
                Some(value) if selections.is_empty() => Ok(value),
                _ => Ok(Value::Null),
            },
        }
    }

    fn field_type(&self, type_name: &str, field_name: &str) -> Option<&TypeNode> {
        self.state
            .definitions
            .get(type_name)
            .and_then(|definition| definition.fields().get(field_name))
            .map(|definition| &definition.field_type)
    }

    fn included(&self, skip_if: Option<&str>, include_if: Option<&str>) -> bool {
        let flag = |name: &str| self.variables.get(name) == Some(&Value::Bool(true));
        !skip_if.is_some_and(flag) && include_if.is_none_or(flag)
    }

    /// Whether a fragment on `condition` applies to an object of `concrete` type.
    fn applies(&self, condition: &str, concrete: &str) -> bool {
        if condition == concrete {
            return true;
        }
        match self.state.definitions.get(condition) {
            Some(SupergraphDefinition::Interface(_)) => self
                .state
                .interface_to_object_types
                .get(condition)
                .is_some_and(|objects| objects.contains(concrete)),
            Some(SupergraphDefinition::Union(union)) => union.types.iter().any(|t| t == concrete),
            _ => false,
        }
    }
}

/// Collects the response keys `selections` reads, its inline fragments
/// included whether they apply or not, into `keys`, and those read more than
/// once into `repeated`.
fn keys_read<'s>(
    selections: &'s SelectionSet,
    keys: &mut Vec<&'s str>,
    repeated: &mut Vec<&'s str>,
) {
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) if field.name != "__typename" => {
                let key = field.selection_identifier();
                if !keys.contains(&key) {
                    keys.push(key);
                } else if !repeated.contains(&key) {
                    repeated.push(key);
                }
            }
            SelectionItem::Field(_) | SelectionItem::FragmentSpread(_) => {}
            SelectionItem::InlineFragment(fragment) => {
                keys_read(&fragment.selections, keys, repeated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::federation::{supergraph::OperationLimits, test_supergraph};

    const LIMITS: OperationLimits = OperationLimits {
        max_depth: 10,
        max_fields: 100,
    };

    fn shape(query: &str, variables: Value, merged: Value) -> Value {
        let supergraph = test_supergraph();
        let prepared = supergraph.prepare(query, None, LIMITS).unwrap();
        let variables = effective_variables(&prepared.operation, variables.as_object().unwrap());
        shape_data(supergraph.state(), &prepared.operation, &variables, merged)
    }

    #[test]
    fn fields_added_for_entity_calls_are_removed_and_aliases_kept() {
        // Subgraph operations keep the client's aliases, so the tree is keyed
        // by response keys already.
        let merged =
            json!({ "me": { "__typename": "Tenant", "id": "t1", "label": "Acme", "count": 2 } });
        let shaped = shape("{ me { label: name count } }", json!({}), merged);
        assert_eq!(shaped, json!({ "me": { "label": "Acme", "count": 2 } }));
    }

    #[test]
    fn a_missing_non_null_field_nulls_the_nearest_nullable_parent() {
        let merged = json!({ "me": { "__typename": "Tenant", "id": "t1", "name": "Acme" } });
        assert_eq!(
            shape("{ me { name facts { text } } }", json!({}), merged.clone()),
            json!({ "me": null })
        );
        // A nullable field that is missing is just null.
        assert_eq!(
            shape("{ me { name count } }", json!({}), merged),
            json!({ "me": { "name": "Acme", "count": null } })
        );
    }

    #[test]
    fn a_null_item_in_a_non_null_list_nulls_the_list_and_propagates() {
        let merged = json!({ "facts": [{ "text": "a" }, null] });
        assert_eq!(shape("{ facts { text } }", json!({}), merged), Value::Null);
    }

    #[test]
    fn a_key_read_by_a_field_and_a_fragment_is_there_both_times() {
        // The normaliser keeps `id` beside the fragments that select it again,
        // so one object's `id` is read twice.
        const SDL: &str = "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.3\", import: [\"@key\"])
            type Query { node: Node }
            interface Node { id: ID! }
            type Fact implements Node { id: ID! text: String! }
            type Todo implements Node { id: ID! title: String! }";
        let supergraph =
            crate::federation::Supergraph::compose(&[crate::federation::compose::SubgraphSchema {
                name: "app".into(),
                url: "http://app/graphql".into(),
                sdl: SDL.into(),
            }])
            .unwrap();
        let query = "{ node { id ... on Fact { id text } ... on Todo { id title } } }";
        let prepared = supergraph.prepare(query, None, LIMITS).unwrap();
        let merged = json!({ "node": { "__typename": "Fact", "id": "f1", "text": "a" } });
        let shaped = shape_data(supergraph.state(), &prepared.operation, &Map::new(), merged);
        assert_eq!(shaped, json!({ "node": { "id": "f1", "text": "a" } }));
    }

    #[test]
    fn skip_and_include_read_variables_and_defaults() {
        let merged = json!({ "me": { "name": "Acme", "tags": ["x"] } });
        let query = "query($hide: Boolean = true, $show: Boolean!) { me { name @skip(if: $hide) tags @include(if: $show) } }";
        assert_eq!(
            shape(query, json!({ "show": true }), merged.clone()),
            json!({ "me": { "tags": ["x"] } })
        );
        assert_eq!(
            shape(query, json!({ "hide": false, "show": false }), merged),
            json!({ "me": { "name": "Acme" } })
        );
    }
}
