//! Introspection of the federated schema, as GraphiQL asks for it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{subgraphs, support::Stack};

/// The standard introspection query tools send (graphql-js
/// `getIntrospectionQuery`), shortened to the parts that differ in shape.
const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

fn find<'a>(items: &'a Value, name: &str) -> &'a Value {
    items
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn the_standard_introspection_query_describes_the_federated_schema() {
    let stack = Stack::start().await;

    let (status, body) = stack.graphql(INTROSPECTION_QUERY, json!({})).await;

    assert_eq!(status, 200, "{body}");
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"], json!({ "name": "Query" }));
    assert_eq!(schema["mutationType"], json!({ "name": "Mutation" }));
    let tenant = find(&schema["types"], "Tenant");
    assert_eq!(tenant["kind"], "OBJECT");
    // `name` comes from the tenant subgraph, `facts` from the fact subgraph.
    assert_eq!(
        find(&tenant["fields"], "name")["type"],
        json!({ "kind": "NON_NULL", "name": null, "ofType": { "kind": "SCALAR", "name": "String", "ofType": null } })
    );
    let facts = find(&tenant["fields"], "facts");
    assert_eq!(facts["args"].as_array().unwrap().len(), 2);
    let query_fields: Vec<&str> = find(&schema["types"], "Query")["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap())
        .collect();
    assert!(
        query_fields.contains(&"me") && query_fields.contains(&"facts"),
        "{query_fields:?}"
    );
    assert!(
        query_fields.iter().all(|name| !name.starts_with('_')),
        "{query_fields:?}"
    );
    let input = find(&schema["types"], "CreateFactInput");
    assert_eq!(input["inputFields"][0]["name"], "text");
}

#[tokio::test]
async fn a_type_is_described_as_its_subgraph_describes_it() {
    let stack = Stack::start().await;
    let query = "{ __type(name: \"Fact\") { name kind fields { name args { name } type { kind name ofType { kind name ofType { kind name } } } } } }";

    let (_, through_gateway) = stack.graphql(query, json!({})).await;
    let direct = subgraphs::fact::schema(Arc::default(), Arc::default())
        .execute(query)
        .await;
    let direct = serde_json::to_value(direct.data).unwrap();

    let sorted = |value: &Value| {
        let mut fields = value["__type"]["fields"].as_array().unwrap().clone();
        fields.sort_by_key(|field| field["name"].as_str().unwrap().to_owned());
        (
            value["__type"]["name"].clone(),
            value["__type"]["kind"].clone(),
            fields,
        )
    };
    assert_eq!(sorted(&through_gateway["data"]), sorted(&direct));
}

#[tokio::test]
async fn introspection_with_aliases_and_unknown_types() {
    let stack = Stack::start().await;
    let (_, body) = stack
        .graphql("query($t: String!) { t: __type(name: $t) { n: name } missing: __type(name: \"Nope\") { name } __typename }", json!({ "t": "Tenant" }))
        .await;
    assert_eq!(
        body,
        json!({ "data": { "t": { "n": "Tenant" }, "missing": null, "__typename": "Query" } })
    );
}

#[tokio::test]
async fn introspection_mixed_with_data_fields_is_refused() {
    let stack = Stack::start().await;
    let (status, body) = stack
        .graphql("{ __schema { queryType { name } } me { name } }", json!({}))
        .await;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (400, &json!("GRAPHQL_VALIDATION_FAILED"))
    );
}

#[tokio::test]
async fn introspection_behind_root_fragments_is_answered() {
    let stack = Stack::start().await;
    for query in [
        "query { ...F } fragment F on Query { __schema { queryType { name } } }",
        "{ ... on Query { __schema { queryType { name } } } }",
        "{ ... { ...F } } fragment F on Query { __schema { queryType { name } } }",
    ] {
        let (status, body) = stack.graphql(query, json!({})).await;
        assert_eq!(
            (status, &body),
            (
                200,
                &json!({ "data": { "__schema": { "queryType": { "name": "Query" } } } })
            ),
            "{query}"
        );
    }

    let (status, body) = stack
        .graphql(
            "{ ...T __typename } fragment T on Query { t: __type(name: \"Fact\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "data": { "t": { "name": "Fact" }, "__typename": "Query" } })
        )
    );
}

#[tokio::test]
async fn introspection_mixed_with_data_fields_behind_a_fragment_is_refused() {
    let stack = Stack::start().await;
    for query in [
        "{ me { name } ...F } fragment F on Query { __schema { queryType { name } } }",
        "{ __schema { queryType { name } } ... on Query { me { name } } }",
    ] {
        let (status, body) = stack.graphql(query, json!({})).await;
        assert_eq!(
            (status, &body["errors"][0]["extensions"]["code"]),
            (400, &json!("GRAPHQL_VALIDATION_FAILED")),
            "{query}: {body}"
        );
    }
}
