//! Token verification, revocation and the headers subgraphs receive.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::subgraphs;
use crate::support::{KEY_ID, Stack, TestKeys, claims_for, now};

const ME: &str = "{ me { name } }";

fn assert_unauthenticated(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let stack = Stack::start().await;
    let (status, body) = stack.graphql(ME, json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({ "data": { "me": { "name": "Acme" } } }))
    );
}

#[tokio::test]
async fn a_request_without_a_token_is_refused() {
    let stack = Stack::start().await;
    let (status, body) = stack.graphql_with_token(None, ME, json!({})).await;
    assert_unauthenticated(status, &body);
}

#[tokio::test]
async fn forged_altered_expired_and_incomplete_tokens_are_refused() {
    let stack = Stack::start().await;
    let header_and_payload = |header: Value, claims: &Value| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let signature_of = |token: &str| token.rsplit('.').next().unwrap().to_owned();

    let forged = "not.a.token".to_owned();

    // A real signature over other claims: the payload was altered.
    let genuine = stack.keys.sign(KEY_ID, &claims_for(stack.tenant));
    let altered = format!(
        "{}.{}",
        header_and_payload(
            json!({ "alg": "EdDSA", "typ": "JWT", "kid": KEY_ID }),
            &claims_for(Uuid::new_v4())
        ),
        signature_of(&genuine)
    );

    let mut expired_claims = claims_for(stack.tenant);
    expired_claims["exp"] = json!(now() - 120);
    let expired = stack.keys.sign(KEY_ID, &expired_claims);

    let alg_none = format!(
        "{}.",
        header_and_payload(
            json!({ "alg": "none", "typ": "JWT", "kid": KEY_ID }),
            &claims_for(stack.tenant)
        )
    );

    // Signed by a key the tenant service never published, under its key id
    // and under an unknown one.
    let other_keys = TestKeys::generate();
    let other_key_same_id = other_keys.sign(KEY_ID, &claims_for(stack.tenant));
    let other_key_unknown_id = other_keys.sign("unknown-key", &claims_for(stack.tenant));

    // HMAC with the public key as the secret: the classic algorithm confusion.
    let public_key = stack.keys.jwks()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some(KEY_ID.to_owned());
    let hmac = jsonwebtoken::encode(
        &hmac_header,
        &claims_for(stack.tenant),
        &EncodingKey::from_secret(public_key.as_bytes()),
    )
    .unwrap();

    let mut without_tenant = claims_for(stack.tenant);
    without_tenant.as_object_mut().unwrap().remove("tenant_id");
    let missing_tenant = stack.keys.sign(KEY_ID, &without_tenant);
    let mut without_expiry = claims_for(stack.tenant);
    without_expiry.as_object_mut().unwrap().remove("exp");
    let missing_expiry = stack.keys.sign(KEY_ID, &without_expiry);
    let mut bad_tenant = claims_for(stack.tenant);
    bad_tenant["tenant_id"] = json!("not-a-uuid");
    let malformed_tenant = stack.keys.sign(KEY_ID, &bad_tenant);

    for (name, token) in [
        ("forged", forged),
        ("altered", altered),
        ("expired", expired),
        ("alg none", alg_none),
        ("other key, same key id", other_key_same_id),
        ("other key, unknown key id", other_key_unknown_id),
        ("HS256 with the public key", hmac),
        ("missing tenant_id", missing_tenant),
        ("missing exp", missing_expiry),
        ("malformed tenant_id", malformed_tenant),
    ] {
        let (status, body) = stack.graphql_with_token(Some(&token), ME, json!({})).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_unauthenticated(status, &body);
    }
    // Only the gateway's own schema fetches and probes reached the subgraph.
    let queries = stack.tenant_observed.queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .all(|q| q.contains("_service") || q.contains("__typename")),
        "{queries:?}"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_ten_seconds() {
    let stack = Stack::start().await;
    let (status, _) = stack.graphql(ME, json!({})).await;
    assert_eq!(status, 200);

    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(stack.token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let token_id: Uuid = claims["jti"].as_str().unwrap().parse().unwrap();
    stack
        .switches
        .revoked_tokens
        .lock()
        .unwrap()
        .insert(token_id);
    let revoked_at = Instant::now();

    loop {
        let (status, body) = stack.graphql(ME, json!({})).await;
        if status == 401 {
            assert_unauthenticated(status, &body);
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "still accepted after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn token_checks_are_cached_briefly() {
    let stack = Stack::start().await;
    for _ in 0..5 {
        let (status, _) = stack.graphql(ME, json!({})).await;
        assert_eq!(status, 200);
    }
    assert_eq!(*stack.switches.token_status_calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_tenant_service_fails_closed() {
    let stack = Stack::start().await;
    stack.tenant_subgraph.stop().await;

    let (status, body) = stack
        .graphql("{ facts { nodes { text } } }", json!({}))
        .await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
}

#[tokio::test]
async fn a_client_tenant_header_never_reaches_a_subgraph() {
    let stack = Stack::start().await;
    let intruder = Uuid::new_v4();

    let response = stack
        .http
        .post(stack.url("/graphql"))
        .bearer_auth(&stack.token)
        .header("X-Tenant-ID", intruder.to_string())
        .json(&json!({ "query": "{ me { name facts { nodes { text } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let expected = Some(stack.tenant.to_string());
    for observed in [&stack.tenant_observed, &stack.fact_observed] {
        let headers = observed.tenant_headers.lock().unwrap().clone();
        let request_headers: Vec<_> = headers.iter().filter(|header| header.is_some()).collect();
        assert!(!request_headers.is_empty());
        assert!(
            request_headers.iter().all(|header| **header == expected),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn signup_needs_no_token_and_carries_no_tenant() {
    let stack = Stack::start().await;
    let query = "mutation { signup(input: {name: \"Globex\", services: [\"fact\"]}) { tenant { name } token } }";

    let (status, body) = stack.graphql_with_token(None, query, json!({})).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "data": { "signup": { "tenant": { "name": "Globex" }, "token": "signup-token" } } })
    );

    // Adding any other root field makes it a normal, authenticated operation.
    let sneaky = "mutation { signup(input: {name: \"G\", services: []}) { token } createFact(input: {text: \"x\"}) { id } }";
    let (status, body) = stack.graphql_with_token(None, sneaky, json!({})).await;
    assert_unauthenticated(status, &body);
}

#[tokio::test]
async fn a_new_signing_key_is_picked_up_and_unknown_keys_do_not_flood_the_tenant_service() {
    let stack = Stack::start().await;
    let (status, _) = stack.graphql(ME, json!({})).await;
    assert_eq!(status, 200);

    // Forged key ids in a burst cost at most one refetch.
    let stranger = TestKeys::generate();
    for index in 0..20 {
        let token = stranger.sign(&format!("forged-{index}"), &claims_for(stack.tenant));
        let (status, _) = stack.graphql_with_token(Some(&token), ME, json!({})).await;
        assert_eq!(status, 401);
    }
    assert!(*stack.switches.jwks_calls.lock().unwrap() <= 2);

    // The tenant service rotates to a new key: tokens signed with it are
    // accepted once the rate limit allows a refetch.
    let rotated = Arc::new(TestKeys::generate());
    stack
        .switches
        .extra_keys
        .lock()
        .unwrap()
        .push(("rotated-key".to_owned(), rotated.clone()));
    let token = rotated.sign("rotated-key", &claims_for(stack.tenant));
    let started = Instant::now();
    loop {
        let (status, body) = stack.graphql_with_token(Some(&token), ME, json!({})).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "rotated key never accepted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn signup_and_introspection_run_whatever_authorization_is_sent() {
    let stack = Stack::start().await;
    let signup = "mutation { signup(input: {name: \"Globex\", services: []}) { token } }";
    let operations = [
        (signup, json!({ "signup": { "token": "signup-token" } })),
        (
            "{ __schema { queryType { name } } }",
            json!({ "__schema": { "queryType": { "name": "Query" } } }),
        ),
        (
            "{ ...T } fragment T on Query { __type(name: \"Fact\") { name } }",
            json!({ "__type": { "name": "Fact" } }),
        ),
        ("{ __typename }", json!({ "__typename": "Query" })),
    ];
    // GraphiQL's pre-filled hint, a garbage header and a valid token alike.
    let headers = [
        Some("Bearer <token>"),
        Some("Basic Zm9vOmJhcg=="),
        Some(""),
        None,
    ];
    for (query, data) in &operations {
        for header in headers {
            let mut request = stack
                .http
                .post(stack.url("/graphql"))
                .json(&json!({ "query": query }));
            if let Some(header) = header {
                request = request.header("Authorization", header);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                (status, &body),
                (200, &json!({ "data": data })),
                "{query} {header:?}"
            );
        }
        let (status, body) = stack.graphql(query, json!({})).await;
        assert_eq!((status, &body), (200, &json!({ "data": data })), "{query}");
    }

    // Signup never carries a tenant, even when the caller sent a valid token.
    let headers = stack.tenant_observed.tenant_headers.lock().unwrap().clone();
    assert!(headers.iter().all(Option::is_none), "{headers:?}");
}

#[tokio::test]
async fn data_operations_still_need_a_valid_token_beside_introspection() {
    let stack = Stack::start().await;
    for query in [
        ME,
        "{ __typename me { name } }",
        "{ ...F } fragment F on Query { __typename me { name } }",
        "{ __schema { queryType { name } } ... on Query { facts { nodes { text } } } }",
        "mutation { __typename }",
        "mutation { signup(input: {name: \"G\", services: []}) { token } ...F } fragment F on Mutation { createFact(input: {text: \"x\"}) { id } }",
    ] {
        for token in [None, Some("<token>")] {
            let (status, body) = stack.graphql_with_token(token, query, json!({})).await;
            assert_unauthenticated(status, &body);
        }
    }
}

#[tokio::test]
async fn subgraphs_are_told_the_tenant_and_its_apps_never_the_clients_word() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .post(stack.url("/graphql"))
        .bearer_auth(&stack.token)
        .header("X-Tenant-Services", "org")
        .json(&json!({ "query": "{ me { name facts { nodes { text } } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Every request made for the tenant names the apps the tenant service
    // reported for the token, whatever the client sent.
    let expected = Some(subgraphs::TENANT_SERVICES.join(","));
    for observed in [&stack.tenant_observed, &stack.fact_observed] {
        let tenants = observed.tenant_headers.lock().unwrap().clone();
        let services = observed.services_headers.lock().unwrap().clone();
        let for_the_tenant: Vec<_> = tenants
            .iter()
            .zip(&services)
            .filter(|(tenant, _)| tenant.is_some())
            .map(|(_, services)| services.clone())
            .collect();
        assert!(!for_the_tenant.is_empty());
        assert!(
            for_the_tenant.iter().all(|s| *s == expected),
            "{services:?}"
        );
    }
}

#[tokio::test]
async fn a_token_whose_record_names_another_tenant_is_refused() {
    let stack = Stack::start().await;
    let claims = claims_for(stack.tenant);
    let jti: Uuid = serde_json::from_value(claims["jti"].clone()).unwrap();
    stack
        .switches
        .token_tenants
        .lock()
        .unwrap()
        .insert(jti, Uuid::new_v4());
    let token = stack.keys.sign(KEY_ID, &claims);

    let (status, body) = stack.graphql_with_token(Some(&token), ME, json!({})).await;
    assert_unauthenticated(status, &body);
}
