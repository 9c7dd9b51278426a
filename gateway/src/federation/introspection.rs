//! Answers introspection (`__schema`, `__type`) from the composed API schema,
//! so GraphiQL and other tools can show the federated schema. Subgraphs never
//! see these queries: their own introspection would describe only their part.
//!
//! The schema is turned once into a JSON graph of `__Type`, `__Field`, …
//! objects in which type references are `{"__ref": name}` links; the
//! client's selection is then projected over that graph.

use std::collections::HashMap;

use graphql_tools::parser::{
    query::{self, Definition as QueryDefinition, Selection, SelectionSet},
    schema::{self, Definition, TypeDefinition},
};
use serde_json::{Map, Value, json};

use super::operation::{ClientDocument, select_operation};

/// Root fields that introspect rather than fetch data.
const INTROSPECTION_ROOT_FIELDS: [&str; 3] = ["__schema", "__type", "__typename"];

/// The API schema as introspection objects.
pub struct IntrospectionSchema {
    types: HashMap<String, Value>,
    schema: Value,
}

/// Whether a query introspects: `Some(true)` when it selects only
/// introspection fields (`__schema`, `__type`, `__typename`; a query of
/// `__typename` alone counts too), `Some(false)` when it mixes `__schema`
/// or `__type` with data fields (not supported), `None` otherwise. Root
/// fragments are looked through, so `{ ...F } fragment F on Query {
/// __schema { … } }` counts as introspection too.
pub fn introspection_kind(document: &ClientDocument, operation_name: Option<&str>) -> Option<bool> {
    let operation = select_operation(document, operation_name)?;
    let (query::OperationDefinition::Query(_) | query::OperationDefinition::SelectionSet(_)) =
        operation
    else {
        return None;
    };
    let names = root_field_names(document, root_selection_set(operation));
    let only_introspection = names
        .iter()
        .all(|name| INTROSPECTION_ROOT_FIELDS.contains(name));
    if only_introspection && !names.is_empty() {
        return Some(true);
    }
    names
        .iter()
        .any(|name| *name == "__schema" || *name == "__type")
        .then_some(false)
}

/// Names of the fields a root selection set selects, inline fragments and
/// fragment spreads expanded (whatever their type condition or directives:
/// a field that might be selected counts). A spread of an unknown fragment,
/// or one already being expanded, adds nothing; validation reports both.
fn root_field_names<'a>(
    document: &'a ClientDocument,
    root: &'a SelectionSet<'static, String>,
) -> Vec<&'a str> {
    let mut names = Vec::new();
    let mut pending = vec![root];
    let mut expanded: Vec<&str> = Vec::new();
    while let Some(selection_set) = pending.pop() {
        for item in &selection_set.items {
            match item {
                Selection::Field(field) => names.push(field.name.as_str()),
                Selection::InlineFragment(fragment) => pending.push(&fragment.selection_set),
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if expanded.contains(&name) {
                        continue;
                    }
                    expanded.push(name);
                    if let Some(fragment) = fragment_named(document, name) {
                        pending.push(&fragment.selection_set);
                    }
                }
            }
        }
    }
    names
}

fn fragment_named<'a>(
    document: &'a ClientDocument,
    name: &str,
) -> Option<&'a query::FragmentDefinition<'static, String>> {
    document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            QueryDefinition::Fragment(fragment) if fragment.name == name => Some(fragment),
            QueryDefinition::Fragment(_) | QueryDefinition::Operation(_) => None,
        })
}

fn root_selection_set<'a>(
    operation: &'a query::OperationDefinition<'static, String>,
) -> &'a SelectionSet<'static, String> {
    match operation {
        query::OperationDefinition::SelectionSet(selection_set) => selection_set,
        query::OperationDefinition::Query(query) => &query.selection_set,
        query::OperationDefinition::Mutation(mutation) => &mutation.selection_set,
        query::OperationDefinition::Subscription(subscription) => &subscription.selection_set,
    }
}

impl IntrospectionSchema {
    /// Builds the introspection graph of an API schema.
    pub fn new(document: &schema::Document<'static, String>) -> Self {
        let mut types = HashMap::new();
        for scalar in ["String", "Int", "Float", "Boolean", "ID"] {
            types.insert(
                scalar.to_owned(),
                named_type("SCALAR", scalar, None, Map::new()),
            );
        }
        for definition in &document.definitions {
            if let Definition::TypeDefinition(definition) = definition {
                let (name, value) = type_object(definition);
                types.insert(name, value);
            }
        }

        // An interface's possible types are the objects that implement it.
        let mut implementations: HashMap<String, Vec<String>> = HashMap::new();
        for definition in &document.definitions {
            if let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition {
                for interface in &object.implements_interfaces {
                    implementations
                        .entry(interface.clone())
                        .or_default()
                        .push(object.name.clone());
                }
            }
        }
        for (interface, objects) in implementations {
            if let Some(Value::Object(definition)) = types.get_mut(&interface) {
                definition.insert("possibleTypes".to_owned(), references(&objects));
            }
        }

        let query_type = document
            .query_type_name()
            .cloned()
            .unwrap_or_else(|| "Query".to_owned());
        let mutation_type = document.mutation_type_name().cloned().or_else(|| {
            types
                .contains_key("Mutation")
                .then(|| "Mutation".to_owned())
        });
        let mut type_names: Vec<&String> = types.keys().collect();
        type_names.sort();
        let schema = json!({
            "__typename": "__Schema",
            "description": null,
            "queryType": reference(&query_type),
            "mutationType": mutation_type.as_deref().map(reference),
            "subscriptionType": null,
            "types": type_names.iter().map(|name| reference(name)).collect::<Vec<_>>(),
            "directives": built_in_directives(),
        });
        Self { types, schema }
    }

    /// Runs an introspection-only operation: the response `data`.
    pub fn execute(
        &self,
        document: &ClientDocument,
        operation_name: Option<&str>,
        variables: &Map<String, Value>,
    ) -> Value {
        let Some(operation) = select_operation(document, operation_name) else {
            return Value::Null;
        };
        let fragments: HashMap<&str, &query::FragmentDefinition<'static, String>> = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                QueryDefinition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
                QueryDefinition::Operation(_) => None,
            })
            .collect();
        let projector = Projector {
            schema: self,
            fragments,
            variables,
        };

        let mut root = Map::new();
        root.insert("__typename".to_owned(), json!("Query"));
        root.insert("__schema".to_owned(), self.schema.clone());
        let mut data = Map::new();
        projector.project_object(&root, root_selection_set(operation), &mut data, true);
        Value::Object(data)
    }
}

struct Projector<'a> {
    schema: &'a IntrospectionSchema,
    fragments: HashMap<&'a str, &'a query::FragmentDefinition<'static, String>>,
    variables: &'a Map<String, Value>,
}

impl Projector<'_> {
    fn project_object(
        &self,
        source: &Map<String, Value>,
        selection_set: &SelectionSet<'static, String>,
        out: &mut Map<String, Value>,
        at_root: bool,
    ) {
        let typename = source
            .get("__typename")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for selection in &selection_set.items {
            match selection {
                Selection::Field(field) => {
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name).to_owned();
                    let raw = if at_root && field.name == "__type" {
                        let name = self.string_argument(&field.arguments, "name");
                        name.filter(|name| self.schema.types.contains_key(name))
                            .map(|name| reference(&name))
                    } else {
                        source.get(&field.name).cloned()
                    };
                    let raw = raw
                        .map(|value| self.filter_deprecated(&field.name, &field.arguments, value));
                    let value =
                        self.project_value(raw.unwrap_or(Value::Null), &field.selection_set);
                    match out.get_mut(&key) {
                        Some(existing) => super::execute::deep_merge(existing, value),
                        None => {
                            out.insert(key, value);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let applies = fragment.type_condition.as_ref().is_none_or(|condition| {
                        let query::TypeCondition::On(name) = condition;
                        name == typename
                    });
                    if applies && self.included(&fragment.directives) {
                        self.project_object(source, &fragment.selection_set, out, at_root);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let Some(fragment) = self.fragments.get(spread.fragment_name.as_str()) else {
                        continue;
                    };
                    let query::TypeCondition::On(condition) = &fragment.type_condition;
                    if condition == typename && self.included(&spread.directives) {
                        self.project_object(source, &fragment.selection_set, out, at_root);
                    }
                }
            }
        }
    }

    fn project_value(&self, value: Value, selection_set: &SelectionSet<'static, String>) -> Value {
        match value {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.project_value(item, selection_set))
                    .collect(),
            ),
            Value::Object(object) if !selection_set.items.is_empty() => {
                let resolved = match object.get("__ref").and_then(Value::as_str) {
                    Some(name) => self
                        .schema
                        .types
                        .get(name)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    None => object,
                };
                let mut out = Map::new();
                self.project_object(&resolved, selection_set, &mut out, false);
                Value::Object(out)
            }
            other => other,
        }
    }

    /// `fields` and `enumValues` leave deprecated entries out unless
    /// `includeDeprecated: true`.
    fn filter_deprecated(
        &self,
        field_name: &str,
        arguments: &[(String, query::Value<'static, String>)],
        value: Value,
    ) -> Value {
        if !matches!(field_name, "fields" | "enumValues" | "inputFields" | "args") {
            return value;
        }
        if self.boolean_argument(arguments, "includeDeprecated") {
            return value;
        }
        match value {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .filter(|item| item["isDeprecated"] != Value::Bool(true))
                    .collect(),
            ),
            other => other,
        }
    }

    fn argument(
        &self,
        arguments: &[(String, query::Value<'static, String>)],
        name: &str,
    ) -> Option<Value> {
        let (_, value) = arguments.iter().find(|(argument, _)| argument == name)?;
        Some(match value {
            query::Value::Variable(variable) => {
                self.variables.get(variable).cloned().unwrap_or(Value::Null)
            }
            query::Value::String(text) => Value::String(text.clone()),
            query::Value::Boolean(flag) => Value::Bool(*flag),
            _ => Value::Null,
        })
    }

    fn string_argument(
        &self,
        arguments: &[(String, query::Value<'static, String>)],
        name: &str,
    ) -> Option<String> {
        self.argument(arguments, name)
            .and_then(|value| value.as_str().map(str::to_owned))
    }

    fn boolean_argument(
        &self,
        arguments: &[(String, query::Value<'static, String>)],
        name: &str,
    ) -> bool {
        self.argument(arguments, name) == Some(Value::Bool(true))
    }

    fn included(&self, directives: &[query::Directive<'static, String>]) -> bool {
        directives
            .iter()
            .all(|directive| match directive.name.as_str() {
                "skip" => !self.boolean_argument(&directive.arguments, "if"),
                "include" => self.boolean_argument(&directive.arguments, "if"),
                _ => true,
            })
    }
}

fn reference(name: &str) -> Value {
    json!({ "__ref": name })
}

fn type_reference(field_type: &schema::Type<'static, String>) -> Value {
    match field_type {
        schema::Type::NamedType(name) => reference(name),
        schema::Type::ListType(inner) => wrapper("LIST", type_reference(inner)),
        schema::Type::NonNullType(inner) => wrapper("NON_NULL", type_reference(inner)),
    }
}

fn wrapper(kind: &str, inner: Value) -> Value {
    json!({ "__typename": "__Type", "kind": kind, "name": null, "description": null, "ofType": inner,
            "fields": null, "interfaces": null, "possibleTypes": null, "enumValues": null,
            "inputFields": null, "specifiedByURL": null })
}

fn named_type(
    kind: &str,
    name: &str,
    description: Option<&String>,
    extra: Map<String, Value>,
) -> Value {
    let mut object = Map::new();
    object.insert("__typename".to_owned(), json!("__Type"));
    object.insert("kind".to_owned(), json!(kind));
    object.insert("name".to_owned(), json!(name));
    object.insert("description".to_owned(), json!(description));
    for key in [
        "fields",
        "interfaces",
        "possibleTypes",
        "enumValues",
        "inputFields",
        "ofType",
        "specifiedByURL",
    ] {
        object.insert(key.to_owned(), Value::Null);
    }
    object.extend(extra);
    Value::Object(object)
}

fn deprecation(directives: &[schema::Directive<'static, String>]) -> (bool, Value) {
    match directives
        .iter()
        .find(|directive| directive.name == "deprecated")
    {
        None => (false, Value::Null),
        Some(directive) => {
            let reason = directive
                .arguments
                .iter()
                .find_map(|(name, value)| match value {
                    schema::Value::String(reason) if name == "reason" => Some(reason.clone()),
                    _ => None,
                });
            (
                true,
                json!(reason.unwrap_or_else(|| "No longer supported".to_owned())),
            )
        }
    }
}

fn input_value(value: &schema::InputValue<'static, String>) -> Value {
    let (deprecated, reason) = deprecation(&value.directives);
    json!({
        "__typename": "__InputValue",
        "name": value.name,
        "description": value.description,
        "type": type_reference(&value.value_type),
        "defaultValue": value.default_value.as_ref().map(|default| default.to_string()),
        "isDeprecated": deprecated,
        "deprecationReason": reason,
    })
}

fn fields(fields: &[schema::Field<'static, String>]) -> Value {
    Value::Array(
        fields
            .iter()
            // The consumer schema adds `__schema`/`__type` to Query; they are
            // meta-fields, not part of the type.
            .filter(|field| !field.name.starts_with("__"))
            .map(|field| {
                let (deprecated, reason) = deprecation(&field.directives);
                json!({
                    "__typename": "__Field",
                    "name": field.name,
                    "description": field.description,
                    "args": field.arguments.iter().map(input_value).collect::<Vec<_>>(),
                    "type": type_reference(&field.field_type),
                    "isDeprecated": deprecated,
                    "deprecationReason": reason,
                })
            })
            .collect(),
    )
}

fn references(names: &[String]) -> Value {
    Value::Array(names.iter().map(|name| reference(name)).collect())
}

fn type_object(definition: &TypeDefinition<'static, String>) -> (String, Value) {
    let extra = |pairs: Vec<(&str, Value)>| {
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    };
    match definition {
        TypeDefinition::Scalar(scalar) => (
            scalar.name.clone(),
            named_type(
                "SCALAR",
                &scalar.name,
                scalar.description.as_ref(),
                Map::new(),
            ),
        ),
        TypeDefinition::Object(object) => (
            object.name.clone(),
            named_type(
                "OBJECT",
                &object.name,
                object.description.as_ref(),
                extra(vec![
                    ("fields", fields(&object.fields)),
                    ("interfaces", references(&object.implements_interfaces)),
                ]),
            ),
        ),
        TypeDefinition::Interface(interface) => (
            interface.name.clone(),
            named_type(
                "INTERFACE",
                &interface.name,
                interface.description.as_ref(),
                extra(vec![
                    ("fields", fields(&interface.fields)),
                    ("interfaces", references(&interface.implements_interfaces)),
                    ("possibleTypes", Value::Array(Vec::new())),
                ]),
            ),
        ),
        TypeDefinition::Union(union) => (
            union.name.clone(),
            named_type(
                "UNION",
                &union.name,
                union.description.as_ref(),
                extra(vec![("possibleTypes", references(&union.types))]),
            ),
        ),
        TypeDefinition::Enum(enumeration) => {
            let values = enumeration
                .values
                .iter()
                .map(|value| {
                    let (deprecated, reason) = deprecation(&value.directives);
                    json!({ "__typename": "__EnumValue", "name": value.name, "description": value.description,
                            "isDeprecated": deprecated, "deprecationReason": reason })
                })
                .collect();
            (
                enumeration.name.clone(),
                named_type(
                    "ENUM",
                    &enumeration.name,
                    enumeration.description.as_ref(),
                    extra(vec![("enumValues", Value::Array(values))]),
                ),
            )
        }
        TypeDefinition::InputObject(input) => (
            input.name.clone(),
            named_type(
                "INPUT_OBJECT",
                &input.name,
                input.description.as_ref(),
                extra(vec![(
                    "inputFields",
                    Value::Array(input.fields.iter().map(input_value).collect()),
                )]),
            ),
        ),
    }
}

fn built_in_directives() -> Value {
    let condition = |name: &str, description: &str| {
        json!({
            "__typename": "__Directive",
            "name": name,
            "description": description,
            "locations": ["FIELD", "FRAGMENT_SPREAD", "INLINE_FRAGMENT"],
            "args": [{ "__typename": "__InputValue", "name": "if", "description": null,
                       "type": wrapper("NON_NULL", reference("Boolean")), "defaultValue": null,
                       "isDeprecated": false, "deprecationReason": null }],
            "isRepeatable": false,
        })
    };
    json!([
        condition(
            "include",
            "Directs the executor to include this field or fragment only when the `if` argument is true."
        ),
        condition(
            "skip",
            "Directs the executor to skip this field or fragment when the `if` argument is true."
        ),
    ])
}
