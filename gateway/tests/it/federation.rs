//! Composition, planning and execution across subgraphs.

use serde_json::json;

use crate::support::Stack;

#[tokio::test]
async fn me_with_facts_is_resolved_across_two_subgraphs_through_entities() {
    let stack = Stack::start().await;
    let (status, _) = stack
        .graphql(
            "mutation { createFact(input: {text: \"Honey never spoils\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, body) = stack
        .graphql("{ me { name facts { nodes { text } } } }", json!({}))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "data": { "me": { "name": "Acme", "facts": { "nodes": [{ "text": "Honey never spoils" }] } } } })
    );
    let fact_queries = stack.fact_observed.queries.lock().unwrap().clone();
    assert!(
        fact_queries.iter().any(|query| query.contains("_entities")),
        "{fact_queries:?}"
    );
}

#[tokio::test]
async fn an_input_object_missing_a_required_field_is_a_client_error() {
    let stack = Stack::start().await;
    let id = uuid::Uuid::new_v4();

    let literal = format!("mutation {{ updateFact(id: \"{id}\", input: {{}}) {{ id }} }}");
    let (status, body) = stack.graphql(&literal, json!({})).await;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (400, &json!("GRAPHQL_VALIDATION_FAILED")),
        "{body}"
    );

    let (status, body) = stack
        .graphql(
            "mutation($id: ID!, $input: UpdateFactInput!) { updateFact(id: $id, input: $input) { id } }",
            json!({ "id": id, "input": {} }),
        )
        .await;
    assert_eq!(
        (status, &body["errors"][0]),
        (
            400,
            &json!({ "message": "$input.text is required", "extensions": { "code": "BAD_USER_INPUT" } })
        ),
        "{body}"
    );
}
