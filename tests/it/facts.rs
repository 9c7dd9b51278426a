//! Facts CRUD, isolation between tenants, and bad input.

use std::time::Duration;

use serde_json::{Value, json};
use tenancy::TenantId;

use crate::stack::{HOP_SECRET, Stack, first_code};

async fn ready_tenant(stack: &Stack, name: &str) -> TenantId {
    let (tenant, _) = stack.signup(name, &["fact"]).await;
    stack
        .wait_until_ready(tenant, "fact", Duration::from_secs(60))
        .await;
    tenant
}

async fn fact_call(stack: &Stack, tenant: TenantId, query: &str, variables: Value) -> Value {
    let (status, body) = stack
        .graphql(&stack.fact_url, Some(tenant), query, variables)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn facts_can_be_created_read_listed_updated_and_deleted() {
    let stack = Stack::start().await;
    let tenant = ready_tenant(&stack, "Crud").await;

    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let body = fact_call(
            &stack,
            tenant,
            "mutation($t: String!) { createFact(input: {text: $t}) { id text } }",
            json!({"t": text}),
        )
        .await;
        ids.push(
            body["data"]["createFact"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    // Two pages of two, in creation order.
    let page = fact_call(
        &stack,
        tenant,
        "{ facts(first: 2) { nodes { text } pageInfo { hasNextPage endCursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        page["data"]["facts"]["nodes"],
        json!([{"text": "one"}, {"text": "two"}])
    );
    assert_eq!(page["data"]["facts"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["data"]["facts"]["pageInfo"]["endCursor"].clone();
    let rest = fact_call(&stack, tenant, "query($c: String) { facts(first: 2, after: $c) { edges { node { text } } pageInfo { hasNextPage } } }", json!({"c": cursor})).await;
    assert_eq!(
        rest["data"]["facts"]["edges"],
        json!([{"node": {"text": "three"}}])
    );
    assert_eq!(rest["data"]["facts"]["pageInfo"]["hasNextPage"], false);

    let updated = fact_call(
        &stack,
        tenant,
        "mutation($id: ID!) { updateFact(id: $id, input: {text: \"uno\"}) { text } }",
        json!({"id": ids[0]}),
    )
    .await;
    assert_eq!(updated["data"]["updateFact"]["text"], "uno");
    let random = fact_call(&stack, tenant, "{ randomFact { id } }", json!({})).await;
    assert!(
        ids.contains(
            &random["data"]["randomFact"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        )
    );

    for id in &ids {
        let deleted = fact_call(
            &stack,
            tenant,
            "mutation($id: ID!) { deleteFact(id: $id) }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(deleted["data"]["deleteFact"], json!(id));
    }
    let none = fact_call(&stack, tenant, "{ randomFact { id } }", json!({})).await;
    assert_eq!(first_code(&none), "NOT_FOUND");
    stack.cleanup().await;
}

#[tokio::test]
async fn tenant_b_cannot_read_list_update_or_delete_tenant_a_facts() {
    let stack = Stack::start().await;
    let a = ready_tenant(&stack, "Tenant A").await;
    let b = ready_tenant(&stack, "Tenant B").await;
    let created = fact_call(
        &stack,
        a,
        r#"mutation { createFact(input: {text: "A's secret"}) { id } }"#,
        json!({}),
    )
    .await;
    let id = created["data"]["createFact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let get = fact_call(
        &stack,
        b,
        "query($id: ID!) { fact(id: $id) { text } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(first_code(&get), "NOT_FOUND", "{get}");
    let update = fact_call(
        &stack,
        b,
        "mutation($id: ID!) { updateFact(id: $id, input: {text: \"B was here\"}) { text } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(first_code(&update), "NOT_FOUND", "{update}");
    let delete = fact_call(
        &stack,
        b,
        "mutation($id: ID!) { deleteFact(id: $id) }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(first_code(&delete), "NOT_FOUND", "{delete}");
    let random = fact_call(&stack, b, "{ randomFact { id } }", json!({})).await;
    assert_eq!(first_code(&random), "NOT_FOUND", "{random}");
    let list = fact_call(&stack, b, "{ facts { nodes { id } } }", json!({})).await;
    assert_eq!(list["data"]["facts"]["nodes"], json!([]));

    // B asking the entity resolver for A's tenant gets nothing of A's.
    let entities = fact_call(
        &stack,
        b,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { facts { nodes { text } } } } }",
        json!({"r": [{"__typename": "Tenant", "id": a.to_string()}]}),
    )
    .await;
    assert!(!entities.to_string().contains("A's secret"), "{entities}");
    assert_eq!(first_code(&entities), "NOT_FOUND");

    // A's fact is untouched.
    let still = fact_call(
        &stack,
        a,
        "query($id: ID!) { fact(id: $id) { text } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(still["data"]["fact"]["text"], "A's secret");
    stack.cleanup().await;
}

#[tokio::test]
async fn a_direct_call_without_the_gateway_credential_is_refused() {
    let stack = Stack::start().await;
    let a = ready_tenant(&stack, "Direct").await;
    for url in [&stack.fact_url, &stack.tenant_url] {
        let response = stack
            .http
            .post(format!("{url}/graphql"))
            .header("X-Tenant-ID", a.to_string())
            .header("X-Gateway-Auth", format!("{HOP_SECRET}x"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(first_code(&body), "UNAUTHENTICATED");
    }
    stack.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_a_contract_code_never_a_500() {
    let stack = Stack::start().await;
    let tenant = ready_tenant(&stack, "Bad input").await;
    let signup = "mutation($input: SignupInput!) { signup(input: $input) { tenant { id } } }";
    let cases: Vec<(&str, Value)> = vec![
        (signup, json!({"input": {"name": "", "services": ["fact"]}})),
        (
            signup,
            json!({"input": {"name": "x".repeat(101), "services": ["fact"]}}),
        ),
        (
            signup,
            json!({"input": {"name": "Acme", "services": ["billing"]}}),
        ),
        (
            signup,
            json!({"input": {"name": "Acme", "services": ["fact", "fact-app"]}}),
        ),
        (signup, json!({"input": {"name": 5, "services": ["fact"]}})),
        (
            signup,
            json!({"input": {"name": "Acme", "services": [1, 2]}}),
        ),
        (signup, json!({"input": {"name": "Acme"}})),
        (signup, json!({"input": "Acme"})),
    ];
    for (query, variables) in cases {
        let (status, body) = stack
            .graphql(&stack.tenant_url, None, query, variables.clone())
            .await;
        assert_eq!(status, 200, "{variables} → {body}");
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{variables} → {body}");
    }

    let fact_cases: Vec<(&str, Value)> = vec![
        // An input object of the wrong shape altogether is refused only
        // when the field runs: still the client's fault.
        (
            "mutation($input: CreateFactInput!) { createFact(input: $input) { id } }",
            json!({"input": "Octopuses have three hearts"}),
        ),
        (
            "mutation($input: UpdateFactInput!) { updateFact(id: \"0190c0de-0000-7000-8000-000000000000\", input: $input) { id } }",
            json!({"input": [1, 2]}),
        ),
        (
            "query($id: ID!) { fact(id: $id) { id } }",
            json!({"id": "not-a-uuid"}),
        ),
        (
            "mutation($id: ID!) { deleteFact(id: $id) }",
            json!({"id": "1"}),
        ),
        (
            r#"mutation { createFact(input: {text: "   "}) { id } }"#,
            json!({}),
        ),
        (
            "mutation($t: String!) { createFact(input: {text: $t}) { id } }",
            json!({"t": "x".repeat(2001)}),
        ),
        (
            "mutation($t: String!) { createFact(input: {text: $t}) { id } }",
            json!({"t": ["not", "a", "string"]}),
        ),
        ("{ facts(first: 1000) { nodes { id } } }", json!({})),
        ("{ facts(after: \"garbage\") { nodes { id } } }", json!({})),
        ("{ nosuchfield }", json!({})),
        ("{ facts { ", json!({})),
    ];
    for (query, variables) in fact_cases {
        let (status, body) = stack
            .graphql(&stack.fact_url, Some(tenant), query, variables.clone())
            .await;
        assert_eq!(status, 200, "{query} → {body}");
        assert_eq!(
            first_code(&body),
            "BAD_USER_INPUT",
            "{query} {variables} → {body}"
        );
    }

    // A body that is not a GraphQL request at all.
    let response = stack
        .http
        .post(format!("{}/graphql", stack.fact_url))
        .header("X-Gateway-Auth", HOP_SECRET)
        .header("Content-Type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(first_code(&body), "BAD_USER_INPUT");
    stack.cleanup().await;
}

#[tokio::test]
async fn an_update_racing_a_delete_is_not_found_never_internal() {
    let stack = Stack::start().await;
    let tenant = ready_tenant(&stack, "Race").await;
    let create = "mutation { createFact(input: {text: \"doomed\"}) { id } }";
    let update = "mutation($id: ID!) { updateFact(id: $id, input: {text: \"late\"}) { id } }";
    let delete = "mutation($id: ID!) { deleteFact(id: $id) }";

    // The update reads the fact, then writes it; a delete landing in
    // between used to surface as INTERNAL. Every round must end with each
    // call either succeeding or answering NOT_FOUND.
    for _ in 0..40 {
        let created = fact_call(&stack, tenant, create, json!({})).await;
        let id = json!({"id": created["data"]["createFact"]["id"]});
        let (updated, deleted) = tokio::join!(
            fact_call(&stack, tenant, update, id.clone()),
            fact_call(&stack, tenant, delete, id.clone()),
        );
        for body in [updated, deleted] {
            if !body["errors"].is_null() {
                assert_eq!(first_code(&body), "NOT_FOUND", "{body}");
            }
        }
    }
    stack.cleanup().await;
}

#[tokio::test]
async fn a_tenant_whose_signup_has_not_reached_the_app_is_provisioning_not_refused() {
    let stack = Stack::start().await;
    // A tenant the fact app has never heard of: no registry entry.
    let tenant = TenantId::new();
    let ask = |services: Option<&'static str>| {
        let mut request = stack
            .http
            .post(format!("{}/graphql", stack.fact_url))
            .header("X-Gateway-Auth", HOP_SECRET)
            .header("X-Tenant-ID", tenant.to_string());
        if let Some(services) = services {
            request = request.header("X-Tenant-Services", services);
        }
        async move {
            let response = request
                .json(&json!({"query": "{ facts { nodes { id } } }"}))
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };

    // The gateway says the tenant chose fact: its event is still on the way.
    let pending = ask(Some("todo,fact")).await;
    assert_eq!(first_code(&pending), "TENANT_PROVISIONING", "{pending}");
    assert_eq!(pending["errors"][0]["extensions"]["retryable"], true);
    // It chose other apps, or the gateway did not say: not enabled.
    for services in [Some("todo"), Some(""), None] {
        let refused = ask(services).await;
        assert_eq!(
            first_code(&refused),
            "SERVICE_NOT_ENABLED",
            "{services:?}: {refused}"
        );
    }
    stack.cleanup().await;
}
