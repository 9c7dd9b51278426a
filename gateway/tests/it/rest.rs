//! REST aliases: shapes, statuses and the error mapping.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{subgraphs::SUBGRAPH_MAX_BODY_BYTES, support::Stack};

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signing_up_needs_no_token_and_answers_canonical_service_names() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .post(stack.url("/tenants"))
        .json(&json!({ "name": "Acme", "services": ["fact-app", "todo"] }))
        .send()
        .await
        .unwrap();

    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["tenant_id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["services"], json!(["fact", "todo"]));
    assert_eq!(body["token"], "signup-token");
}

#[tokio::test]
async fn the_tenant_and_its_tokens_are_shown_in_snake_case() {
    let stack = Stack::start().await;

    let (status, me) = json_of(stack.rest(Method::GET, "/tenants/me", None).await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({
            "tenant_id": stack.tenant.to_string(),
            "name": "Acme",
            "created_at": "2026-01-02T03:04:05+00:00",
            "services": [{ "name": "fact", "status": "ready" }],
        })
    );

    let (status, tokens) = json_of(stack.rest(Method::GET, "/tenants/me/tokens", None).await).await;
    assert_eq!(status, 200);
    assert_eq!(tokens["items"][0]["name"], "first");
    assert_eq!(tokens["items"][0]["revoked_at"], Value::Null);
    assert!(tokens["items"][0].get("token").is_none());

    let created = stack
        .rest(
            Method::POST,
            "/tenants/me/tokens",
            Some(json!({ "name": "ci", "expires_in_days": 30 })),
        )
        .await;
    let (status, created) = json_of(created).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "ci");
    assert_eq!(created["token"], "new-token");
    assert_eq!(created["expires_at"], "2026-02-01T03:04:05+00:00");

    let id = created["id"].as_str().unwrap();
    let revoked = stack
        .rest(Method::DELETE, &format!("/tenants/me/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status(), 204);
}

#[tokio::test]
async fn facts_can_be_created_listed_read_changed_and_deleted() {
    let stack = Stack::start().await;

    let (status, body) = json_of(stack.rest(Method::GET, "/facts/random", None).await).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("NOT_FOUND")),
        "{body}"
    );

    let (status, first) = json_of(
        stack
            .rest(Method::POST, "/facts", Some(json!({ "text": "one" })))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["text"], "one");
    assert_eq!(first["created_at"], "2026-01-02T03:04:05+00:00");
    assert!(first.get("updated_at").is_some());
    stack
        .rest(Method::POST, "/facts", Some(json!({ "text": "two" })))
        .await;

    let (status, page) = json_of(stack.rest(Method::GET, "/facts?limit=1", None).await).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = json_of(
        stack
            .rest(
                Method::GET,
                &format!("/facts?limit=5&cursor={cursor}"),
                None,
            )
            .await,
    )
    .await;
    assert_eq!(rest["items"][0]["text"], "two");
    assert_eq!(rest["next_cursor"], Value::Null);

    let id = first["id"].as_str().unwrap();
    let (status, read) =
        json_of(stack.rest(Method::GET, &format!("/facts/{id}"), None).await).await;
    assert_eq!((status, &read["text"]), (200, &json!("one")));
    let (status, changed) = json_of(
        stack
            .rest(
                Method::PATCH,
                &format!("/facts/{id}"),
                Some(json!({ "text": "uno" })),
            )
            .await,
    )
    .await;
    assert_eq!((status, &changed["text"]), (200, &json!("uno")));
    assert_eq!(
        stack
            .rest(Method::DELETE, &format!("/facts/{id}"), None)
            .await
            .status(),
        204
    );
    let (status, body) =
        json_of(stack.rest(Method::GET, &format!("/facts/{id}"), None).await).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));
}

#[tokio::test]
async fn bad_input_is_refused_with_400_not_500() {
    let stack = Stack::start().await;
    for (method, path, body) in [
        (Method::GET, "/facts/not-a-uuid", None),
        (
            Method::PATCH,
            "/facts/not-a-uuid",
            Some(json!({ "text": "x" })),
        ),
        (Method::POST, "/facts", Some(json!({ "wrong": "field" }))),
        (Method::POST, "/facts", Some(json!({ "text": 42 }))),
        (Method::POST, "/facts", Some(json!({ "text": "  " }))),
        (Method::GET, "/facts?limit=many", None),
        (Method::DELETE, "/tenants/me/tokens/123", None),
    ] {
        let (status, response) = json_of(stack.rest(method.clone(), path, body).await).await;
        assert_eq!(status, 400, "{method} {path}: {response}");
        assert!(
            response["error"]["code"]
                .as_str()
                .unwrap()
                .ends_with("BAD_USER_INPUT")
                || response["error"]["code"] == "GRAPHQL_VALIDATION_FAILED",
            "{response}"
        );
    }

    let malformed = stack
        .http
        .post(stack.url("/facts"))
        .bearer_auth(&stack.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(malformed).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_USER_INPUT"))
    );
}

#[tokio::test]
async fn graphql_error_codes_map_to_the_contract_statuses() {
    let stack = Stack::start().await;
    for (code, status, message) in [
        ("SERVICE_NOT_ENABLED", 403, "refused by the test switch"),
        ("TENANT_PROVISIONING", 503, "refused by the test switch"),
        ("NOT_FOUND", 404, "refused by the test switch"),
        ("CONFLICT", 409, "refused by the test switch"),
        ("BAD_USER_INPUT", 400, "refused by the test switch"),
        ("SOMETHING_UNEXPECTED", 500, "internal error"),
    ] {
        stack
            .switches
            .fact_error_for_tenant
            .lock()
            .unwrap()
            .insert(stack.tenant, code);
        let response = stack.rest(Method::GET, "/facts", None).await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let (actual_status, body) = json_of(response).await;

        assert_eq!(actual_status, status, "{code}: {body}");
        let expected_code = if status == 500 { "INTERNAL" } else { code };
        assert_eq!(
            body,
            json!({ "error": { "code": expected_code, "message": message } })
        );
        assert_eq!(
            retry_after.as_deref(),
            (status == 503).then_some("2"),
            "{code}"
        );
    }
}

#[tokio::test]
async fn rest_routes_need_a_token() {
    let stack = Stack::start().await;
    let response = stack.http.get(stack.url("/facts")).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({ "error": { "code": "UNAUTHENTICATED", "message": "a valid bearer token is required" } })
    );
}

#[tokio::test]
async fn a_route_whose_service_is_not_composed_is_unavailable() {
    let stack = Stack::start().await;
    let (status, body) = json_of(stack.rest(Method::GET, "/todos?done=true", None).await).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("SUBGRAPH_UNAVAILABLE")),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let stack = Stack::start_with(|config| config.max_body_bytes = 1024).await;
    let big = json!({ "text": "x".repeat(4096) });
    let (status, body) = json_of(stack.rest(Method::POST, "/facts", Some(big.clone())).await).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE"))
    );

    let response = stack
        .http
        .post(stack.url("/graphql"))
        .bearer_auth(&stack.token)
        .json(&json!({ "query": format!("{{ me {{ name }} }} # {}", "x".repeat(4096)) }))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE"))
    );
}

#[tokio::test]
async fn a_body_a_subgraph_finds_too_large_is_413_not_unavailable() {
    let stack = Stack::start().await;
    let text = "x".repeat(SUBGRAPH_MAX_BODY_BYTES + 1);

    let response = stack
        .rest(Method::POST, "/facts", Some(json!({ "text": text })))
        .await;
    assert!(response.headers().get("retry-after").is_none());
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE")),
        "{body}"
    );

    let (status, body) = stack
        .graphql(
            "mutation($text: String!) { createFact(input: {text: $text}) { id } }",
            json!({ "text": text }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["errors"][0]["path"], json!(["createFact"]));
}

#[tokio::test]
async fn patching_a_fact_without_its_text_is_bad_input() {
    let stack = Stack::start().await;
    let (_, fact) = json_of(
        stack
            .rest(Method::POST, "/facts", Some(json!({ "text": "one" })))
            .await,
    )
    .await;
    let path = format!("/facts/{}", fact["id"].as_str().unwrap());

    let (status, body) = json_of(stack.rest(Method::PATCH, &path, Some(json!({}))).await).await;

    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_USER_INPUT")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("text"),
        "{body}"
    );
}

#[tokio::test]
async fn body_fields_of_the_wrong_json_type_are_refused_naming_the_field() {
    let stack = Stack::start().await;
    let id = uuid::Uuid::new_v4();
    let cases = [
        (
            "/tenants",
            Method::POST,
            json!({ "name": "Acme", "services": "fact" }),
            "services",
        ),
        (
            "/tenants",
            Method::POST,
            json!({ "name": "Acme", "services": ["fact", 1] }),
            "services",
        ),
        (
            "/tenants",
            Method::POST,
            json!({ "name": 42, "services": [] }),
            "name",
        ),
        (
            "/tenants/me/tokens",
            Method::POST,
            json!({ "name": "ci", "expires_in_days": "30" }),
            "expires_in_days",
        ),
        (
            "/tenants/me/tokens",
            Method::POST,
            json!({ "name": "ci", "expires_in_days": 1.5 }),
            "expires_in_days",
        ),
        ("/facts", Method::POST, json!({ "text": ["x"] }), "text"),
        (
            &format!("/facts/{id}"),
            Method::PATCH,
            json!({ "text": { "x": 1 } }),
            "text",
        ),
        (
            "/todos",
            Method::POST,
            json!({ "title": "x", "done": "yes" }),
            "done",
        ),
        (
            &format!("/todos/{id}"),
            Method::PATCH,
            json!({ "done": 1 }),
            "done",
        ),
        (
            "/org",
            Method::POST,
            json!({ "name": "A", "title": "B", "manager_id": 5 }),
            "manager_id",
        ),
        (
            &format!("/org/{id}"),
            Method::PATCH,
            json!({ "manager_id": true }),
            "manager_id",
        ),
    ];
    for (path, method, body, field) in cases {
        let response = stack.rest(method.clone(), path, Some(body.clone())).await;
        let (status, answer) = json_of(response).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("BAD_USER_INPUT")),
            "{method} {path} {body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{body}: {message}");
    }
}
