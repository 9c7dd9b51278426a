//! Golden tests: the plans the planner makes for our subgraphs (fixture
//! files under `tests/it/golden/`, rewritten with `UPDATE_GOLDEN=1`), and
//! the responses the gateway shapes from the subgraphs' answers.

use std::sync::Arc;

use async_graphql::SDLExportOptions;
use gateway::federation::{
    compose::SubgraphSchema,
    supergraph::{OperationLimits, Supergraph},
};
use serde_json::{Value, json};

use crate::{subgraphs, support::Stack};

fn supergraph() -> Supergraph {
    let options = || SDLExportOptions::new().federation().compose_directive();
    let tenant_sdl = subgraphs::tenant::schema().sdl_with_options(options());
    let fact_sdl =
        subgraphs::fact::schema(Arc::default(), Arc::default()).sdl_with_options(options());
    Supergraph::compose(&[
        SubgraphSchema {
            name: "tenant".into(),
            url: "http://tenant/graphql".into(),
            sdl: tenant_sdl,
        },
        SubgraphSchema {
            name: "fact".into(),
            url: "http://fact/graphql".into(),
            sdl: fact_sdl,
        },
    ])
    .unwrap()
}

fn assert_golden(name: &str, actual: &str) {
    let path = format!("{}/tests/it/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {path}; run with UPDATE_GOLDEN=1"));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

const LIMITS: OperationLimits = OperationLimits {
    max_depth: 15,
    max_fields: 2000,
};

#[test]
fn plans_match_their_golden_files() {
    let supergraph = supergraph();
    for (name, operation) in [
        (
            "me_with_facts.plan",
            "{ me { name facts { nodes { text } } } }",
        ),
        (
            "facts_with_owner.plan",
            "{ facts { nodes { text owner { name } } } }",
        ),
        (
            "include_condition.plan",
            "query($withFacts: Boolean!) { me { name facts @include(if: $withFacts) { nodes { text } } } }",
        ),
        (
            "two_mutations.plan",
            "mutation { first: createFact(input: {text: \"a\"}) { id } second: createFact(input: {text: \"b\"}) { id } }",
        ),
        (
            "parallel_roots.plan",
            "{ me { name } factOfTheDay { text } }",
        ),
        (
            "batched_entities.plan",
            "{ facts { nodes { owner { name } } } factOfTheDay { owner { id name } } }",
        ),
    ] {
        let prepared = supergraph.prepare(operation, None, LIMITS).unwrap();
        assert_golden(name, &format!("{}\n", prepared.plan));
    }
}

#[test]
fn federation_internals_are_not_part_of_the_client_schema() {
    let supergraph = supergraph();
    for operation in [
        "{ _service { sdl } }",
        "{ _entities(representations: []) { __typename } }",
    ] {
        let error = supergraph.prepare(operation, None, LIMITS).unwrap_err();
        assert_eq!(error.code(), "GRAPHQL_VALIDATION_FAILED", "{operation}");
    }
}

/// A stack whose tenant has two facts.
async fn stack_with_facts() -> Stack {
    let stack = Stack::start().await;
    for text in ["Honey never spoils", "Octopuses have three hearts"] {
        let (status, body) = stack
            .graphql(
                "mutation($text: String!) { createFact(input: {text: $text}) { id } }",
                json!({ "text": text }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    stack
}

#[tokio::test]
async fn aliases_fragments_and_variables_shape_the_response() {
    let stack = stack_with_facts().await;
    let query = r#"
        query Page($first: Int) {
          who: me { ...Names theFacts: facts(first: $first) { edges { cursor node { title: text } } pageInfo { more: hasNextPage } } }
        }
        fragment Names on Tenant { label: name ... on Tenant { __typename } }
    "#;

    let (status, body) = stack.graphql(query, json!({ "first": 1 })).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "data": { "who": {
            "label": "Acme",
            "__typename": "Tenant",
            "theFacts": {
                "edges": [{ "cursor": "0", "node": { "title": "Honey never spoils" } }],
                "pageInfo": { "more": true },
            },
        } } })
    );
}

#[tokio::test]
async fn skip_and_include_follow_their_variables() {
    let stack = stack_with_facts().await;
    let query = "query($withFacts: Boolean!, $hideName: Boolean = false) { me { name @skip(if: $hideName) facts @include(if: $withFacts) { nodes { text } } } }";

    let (_, with_facts) = stack.graphql(query, json!({ "withFacts": true })).await;
    let (_, without) = stack
        .graphql(query, json!({ "withFacts": false, "hideName": true }))
        .await;

    assert_eq!(
        with_facts,
        json!({ "data": { "me": { "name": "Acme", "facts": { "nodes": [{ "text": "Honey never spoils" }, { "text": "Octopuses have three hearts" }] } } } })
    );
    assert_eq!(without, json!({ "data": { "me": {} } }));
}

#[tokio::test]
async fn nested_lists_and_nulls_are_kept() {
    let stack = stack_with_facts().await;
    let query = "{ __typename me { services { name status } apiTokens { name revokedAt } facts { edges { node { text } } } } }";

    let (_, body) = stack.graphql(query, json!({})).await;

    assert_eq!(
        body,
        json!({ "data": { "__typename": "Query", "me": {
            "services": [{ "name": "fact", "status": "ready" }],
            "apiTokens": [{ "name": "first", "revokedAt": null }],
            "facts": { "edges": [{ "node": { "text": "Honey never spoils" } }, { "node": { "text": "Octopuses have three hearts" } }] },
        } } })
    );
}

#[tokio::test]
async fn entities_in_a_list_are_fetched_once_per_distinct_key() {
    let stack = stack_with_facts().await;

    let (_, body) = stack
        .graphql("{ facts { nodes { text owner { name } } } }", json!({}))
        .await;

    assert_eq!(
        body,
        json!({ "data": { "facts": { "nodes": [
            { "text": "Honey never spoils", "owner": { "name": "Acme" } },
            { "text": "Octopuses have three hearts", "owner": { "name": "Acme" } },
        ] } } })
    );
    let variables = stack.tenant_observed.variables.lock().unwrap().clone();
    let representations = variables
        .iter()
        .find_map(|v| v.get("representations"))
        .unwrap();
    assert_eq!(
        representations,
        &json!([{ "__typename": "Tenant", "id": stack.tenant.to_string() }])
    );
}

#[tokio::test]
async fn entities_from_two_places_are_fetched_in_one_batched_call() {
    let stack = stack_with_facts().await;
    let query = "{ facts { nodes { owner { name } } } factOfTheDay { owner { id name } } }";

    let (_, body) = stack.graphql(query, json!({})).await;

    let owner = json!({ "name": "Acme" });
    assert_eq!(
        body,
        json!({ "data": {
            "facts": { "nodes": [{ "owner": owner }, { "owner": owner }] },
            "factOfTheDay": { "owner": { "id": stack.tenant.to_string(), "name": "Acme" } },
        } })
    );
    let entity_calls: Vec<String> = stack
        .tenant_observed
        .queries
        .lock()
        .unwrap()
        .iter()
        .filter(|query| query.contains("_entities"))
        .cloned()
        .collect();
    assert_eq!(entity_calls.len(), 1, "{entity_calls:?}");
}

#[tokio::test]
async fn a_failing_subgraph_leaves_partial_data_and_an_error_at_its_path() {
    let stack = stack_with_facts().await;
    stack.fact_subgraph.stop().await;

    let (status, nullable) = stack.graphql("{ me { name factCount } }", json!({})).await;
    let (_, non_null) = stack
        .graphql("{ me { name facts { nodes { text } } } }", json!({}))
        .await;

    assert_eq!(status, 200);
    let unavailable = |path: Value| json!({ "message": "the fact service is unavailable", "path": path, "extensions": { "code": "SUBGRAPH_UNAVAILABLE" } });
    assert_eq!(
        nullable,
        json!({ "data": { "me": { "name": "Acme", "factCount": null } }, "errors": [unavailable(json!(["me", "factCount"]))] })
    );
    // `facts` is non-null, so its null propagates to the nullable `me`.
    assert_eq!(
        non_null,
        json!({ "data": { "me": null }, "errors": [unavailable(json!(["me", "facts"]))] })
    );
}

#[tokio::test]
async fn subgraph_errors_keep_their_code_and_path() {
    let stack = stack_with_facts().await;
    stack
        .switches
        .fact_error_for_tenant
        .lock()
        .unwrap()
        .insert(stack.tenant, "TENANT_PROVISIONING");

    let (_, body) = stack
        .graphql("{ me { name } factOfTheDay { text } }", json!({}))
        .await;

    assert_eq!(
        body["data"],
        json!({ "me": { "name": "Acme" }, "factOfTheDay": null })
    );
    assert_eq!(body["errors"][0]["path"], json!(["factOfTheDay"]));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "TENANT_PROVISIONING"
    );
    assert_eq!(body["errors"][0]["message"], "refused by the test switch");
}

#[tokio::test]
async fn an_entity_error_points_at_the_entity_in_the_client_response() {
    let stack = stack_with_facts().await;
    stack
        .switches
        .fact_error_for_tenant
        .lock()
        .unwrap()
        .insert(stack.tenant, "SERVICE_NOT_ENABLED");

    let (_, body) = stack.graphql("{ me { name factCount } }", json!({})).await;

    assert_eq!(
        body["data"],
        json!({ "me": { "name": "Acme", "factCount": null } }),
        "{body} {:?}",
        stack.fact_observed.queries.lock().unwrap()
    );
    assert_eq!(body["errors"][0]["path"], json!(["me", "factCount"]));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SERVICE_NOT_ENABLED"
    );
}

#[tokio::test]
async fn invalid_operations_are_refused_before_any_subgraph_call() {
    let stack = Stack::start().await;
    for (query, variables, code) in [
        ("{ me { nme } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        ("{ me { name ", json!({}), "GRAPHQL_PARSE_FAILED"),
        (
            "query($first: Int) { facts(first: $first) { nodes { text } } }",
            json!({ "first": "ten" }),
            "BAD_USER_INPUT",
        ),
        (
            "{ _service { sdl } }",
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        let (status, body) = stack.graphql(query, variables).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], code,
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn malformed_graphql_requests_are_refused_with_400() {
    let stack = Stack::start().await;
    for body in [
        "",
        "{}",
        "[]",
        r#"{"query": 5}"#,
        r#"{"query": "{ me { name } }", "variables": "x"}"#,
        r#"{"query": "query A { me { name } } query B { me { id } }"}"#,
        r#"{"query": "{ me { name } }", "operationName": "Missing"}"#,
    ] {
        let response = stack
            .http
            .post(stack.url("/graphql"))
            .bearer_auth(&stack.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["errors"][0]["extensions"]["code"].is_string(),
            "{body}: {answer}"
        );
    }
}
