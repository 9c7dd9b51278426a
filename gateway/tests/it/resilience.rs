//! Health, readiness, limits, subgraph outages and recomposition.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use gateway::{GatewayConfig, SubgraphEndpoint};
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    subgraphs::{self, Observed},
    support::{HOP_SECRET, Stack},
};

#[tokio::test]
async fn health_is_always_ok_and_graphiql_is_served() {
    let stack = Stack::start().await;
    let health = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let page = stack.http.get(stack.url("/graphql")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
}

#[tokio::test]
async fn the_gateway_is_not_ready_until_every_subgraph_answers() {
    // Reserve a port, then free it: nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = GatewayConfig::new(
        HOP_SECRET,
        vec![SubgraphEndpoint {
            name: "fact".into(),
            url: format!("http://{dead}/graphql"),
        }],
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(config, listener, std::future::pending()));
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        http.get(format!("http://{address}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("http://{address}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let response = http
        .post(format!("http://{address}/graphql"))
        .json(&json!({ "query": "mutation { signup(input: {name: \"a\", services: []}) { token } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SUPERGRAPH_NOT_READY"
    );
}

#[tokio::test]
async fn a_stopped_subgraph_is_reported_and_the_gateway_recovers_when_it_returns() {
    let stack = Stack::start().await;
    stack.fact_subgraph.stop().await;

    let (status, body) = stack.graphql("{ me { name factCount } }", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({ "me": { "name": "Acme", "factCount": null } })
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SUBGRAPH_UNAVAILABLE"
    );
    assert_eq!(body["errors"][0]["path"], json!(["me", "factCount"]));
    assert_eq!(
        stack
            .http
            .get(stack.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        stack
            .http
            .get(stack.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    stack.fact_subgraph.restart().await;
    stack.wait_until_ready().await;
    let (status, body) = stack.graphql("{ me { name factCount } }", json!({})).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "data": { "me": { "name": "Acme", "factCount": 0 } } })
        )
    );
}

#[tokio::test]
async fn a_slow_subgraph_call_times_out_with_its_path() {
    let stack =
        Stack::start_with(|config| config.subgraph_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();

    let (status, body) = stack.graphql("{ me { name } slowFact }", json!({})).await;

    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({ "me": { "name": "Acme" }, "slowFact": null })
    );
    assert_eq!(body["errors"][0]["path"], json!(["slowFact"]));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SUBGRAPH_UNAVAILABLE"
    );
}

#[tokio::test]
async fn operations_deeper_or_wider_than_the_limits_are_refused() {
    let stack = Stack::start_with(|config| {
        config.max_query_depth = 3;
        config.max_query_fields = 10;
    })
    .await;

    let (status, body) = stack
        .graphql("{ me { facts { nodes { text } } } }", json!({}))
        .await;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (400, &json!("QUERY_TOO_DEEP"))
    );

    let wide = "{ me { a: name b: name c: name d: name e: name f: name g: name h: name i: name j: name } }";
    let (status, body) = stack.graphql(wide, json!({})).await;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (400, &json!("QUERY_TOO_COMPLEX"))
    );
}

#[tokio::test]
async fn a_changed_subgraph_schema_is_recomposed() {
    let stack =
        Stack::start_with(|config| config.recompose_interval = Duration::from_millis(500)).await;
    let (status, _) = stack.graphql("{ hello }", json!({})).await;
    assert_eq!(status, 400);

    stack.fact_subgraph.stop().await;
    let redeployed =
        subgraphs::graphql_router(subgraphs::greeting::schema(), Arc::new(Observed::default()));
    stack.fact_subgraph.restart_with(redeployed).await;

    let started = Instant::now();
    loop {
        let (status, body) = stack.graphql("{ hello }", json!({})).await;
        if status == 200 {
            assert_eq!(body, json!({ "data": { "hello": "world" } }));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not recomposed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_subgraph_rejecting_a_planned_operation_triggers_recomposition() {
    let stack =
        Stack::start_with(|config| config.recompose_interval = Duration::from_secs(3600)).await;
    stack.fact_subgraph.stop().await;
    let redeployed =
        subgraphs::graphql_router(subgraphs::greeting::schema(), Arc::new(Observed::default()));
    stack.fact_subgraph.restart_with(redeployed).await;

    // Planned against the old schema; the redeployed subgraph rejects it.
    let (status, body) = stack.graphql("{ factOfTheDay { text } }", json!({})).await;
    assert_eq!(status, 200);
    assert!(body["errors"].is_array(), "{body}");

    let started = Instant::now();
    loop {
        let (status, body) = stack.graphql("{ hello }", json!({})).await;
        if status == 200 {
            assert_eq!(body, json!({ "data": { "hello": "world" } }));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not recomposed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_gateway_binary_stops_cleanly_on_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_HOP_SECRET", "a-long-enough-hop-secret")
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Up once /healthz answers.
    let health = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while reqwest::get(&health).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What `docker stop` and supervisors send: the gateway must exit 0.
    let pid = gateway.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.wait())
        .await
        .expect("the gateway stops within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
