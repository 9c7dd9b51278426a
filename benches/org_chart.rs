//! Benchmark: the org chart of 1,000 members, 50 levels deep, through the
//! gateway beside the same request straight to the org subgraph (issue #4):
//! SQL statements per request and latency, for the GraphQL `orgChart` query
//! with 50 levels of `reports` spelled out and for `GET /org/chart`.
//!
//! Run: `scripts/bench org_chart` (starts a broker), or with one running:
//! `KAFKA_BROKERS=127.0.0.1:9092 cargo bench --bench org_chart`.
//!
//! Everything runs in this process, as the launcher runs it: the tenant and
//! org subgraphs (on the real PostgreSQL and broker) and the gateway, each on
//! its own port, the gateway calling the subgraphs over HTTP. SQL statements
//! are counted by the org subgraph's `QueryCounter`, which sees every
//! statement run on a tenant database (the tenant's pool is cached, so no
//! registry query runs per request).

#[path = "../subgraphs/org/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::{GatewayConfig, SubgraphEndpoint};
use serde_json::{Value, json};
use support::{App, chart_query, measure_chart, ms, percentile};
use tenancy::TenantId;
use tenancy::bus::{EventBus, KafkaBus};
use tenancy::testing::TestDatabases;
use tenant_subgraph::TenantConfig;
use tokio_util::sync::CancellationToken;

const MEMBERS: usize = 1_000;
const LEVELS: usize = 50;
const RUNS: usize = 50;
/// Room for 50 levels of `reports` plus `orgChart` and `manager`: the
/// gateway's default limit (15) refuses the query.
const MAX_QUERY_DEPTH: usize = 60;
/// The operation `GET /org/chart` runs (gateway/src/rest.rs, since commit
/// "Serve GET /org/chart whole, to any depth"); the gateway nests its flat
/// answer.
const REST_CHART_OPERATION: &str =
    "{ orgChartMembers { id name title managerId createdAt updatedAt } }";

#[tokio::main]
async fn main() {
    let app = App::start().await;
    let shutdown = CancellationToken::new();
    let tenant_config = TenantConfig {
        tenancy: app.config.clone(),
        signing_key_file: std::env::temp_dir()
            .join(format!("{}signing_key.pem", app.config.database_prefix)),
        signup_token_days: 1,
    };
    // The tenant service's meta database, dropped when the benchmark ends,
    // by a panic too (the org app's [`App`] drops its own databases).
    let meta = TestDatabases::new(&app.config.database_url);
    meta.track(app.config.control_database("tenant_meta"));
    let gateway_url = start_tenant_and_gateway(&app, &tenant_config, shutdown.clone()).await;
    let http = reqwest::Client::new();

    let (tenant, token) = signup(&http, &gateway_url, &app).await;
    app.seed_chart(tenant, MEMBERS, LEVELS).await;

    println!("org chart benchmark, gateway vs org subgraph (one run; PostgreSQL, release build)");
    println!(
        "chart: {MEMBERS} members, {LEVELS} levels; n={RUNS} requests each after one warm-up; \
         SQL = statements on the tenant's org database per request"
    );
    println!(
        "GraphQL: orgChart with N levels of reports, each member with id name title \
         managerId manager {{ id name }}"
    );
    println!("REST: GET /org/chart; direct: its operation {REST_CHART_OPERATION}");

    let through_gateway = |levels: usize| Request::Gateway {
        url: format!("{gateway_url}/graphql"),
        token: token.clone(),
        query: Some(chart_query(levels)),
    };
    let direct = |levels: usize| Request::Direct(chart_query(levels));

    // The full-depth query first: the gateway must parse it before anything.
    let full_depth = through_gateway(LEVELS).send(&app, &http, tenant).await;
    if let Err(refusal) = &full_depth {
        println!("{LEVELS}-level orgChart through the gateway is refused: {refusal}");
    }
    let deepest = match full_depth {
        Ok(_) => LEVELS,
        Err(_) => deepest_admitted(&app, &http, tenant, &through_gateway).await,
    };
    println!("deepest orgChart query the gateway admits: {deepest} levels");

    let mut requests = Vec::new();
    if deepest != LEVELS {
        requests.push((
            format!("orgChart {LEVELS} levels, org subgraph"),
            direct(LEVELS),
        ));
    }
    requests.push((
        format!("orgChart {deepest} levels, gateway"),
        through_gateway(deepest),
    ));
    requests.push((
        format!("orgChart {deepest} levels, org subgraph"),
        direct(deepest),
    ));
    requests.push((
        "GET /org/chart, gateway".to_owned(),
        Request::Gateway {
            url: format!("{gateway_url}/org/chart"),
            token: token.clone(),
            query: None,
        },
    ));
    requests.push((
        "its operation, org subgraph".to_owned(),
        Request::Direct(REST_CHART_OPERATION.to_owned()),
    ));

    let mut medians = Vec::new();
    for (label, request) in &requests {
        medians.push(measure(&app, &http, tenant, label, request).await);
    }
    let count = medians.len();
    println!(
        "gateway p50 / direct p50: GraphQL ({deepest} levels) {:.2}x, REST {:.2}x",
        medians[count - 4] / medians[count - 3],
        medians[count - 2] / medians[count - 1]
    );

    shutdown.cancel();
    std::fs::remove_file(&tenant_config.signing_key_file).ok();
    app.cleanup().await;
}

/// One kind of request: through the gateway with the tenant's token (GraphQL
/// when a query is given, else a REST GET), or straight to the org subgraph
/// with the hop secret, as the gateway calls it.
enum Request {
    Gateway {
        url: String,
        token: String,
        query: Option<String>,
    },
    Direct(String),
}

impl Request {
    /// Sends the request; returns the chart's roots (or the flat list), or
    /// why it was refused.
    async fn send(
        &self,
        app: &App,
        http: &reqwest::Client,
        tenant: TenantId,
    ) -> Result<Value, String> {
        let (status, body, key) = match self {
            Request::Direct(query) => {
                let (status, body) = app.post(tenant, query, json!({})).await;
                let key = match body["data"].get("orgChart") {
                    Some(_) => "orgChart",
                    None => "orgChartMembers",
                };
                (status, body, key)
            }
            Request::Gateway { url, token, query } => {
                let request = match query {
                    Some(query) => http.post(url).json(&json!({"query": query})),
                    None => http.get(url),
                };
                let response = request.bearer_auth(token).send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                if status == 200 && query.is_none() {
                    return Ok(body);
                }
                (status, body, "orgChart")
            }
        };
        if status != 200 || !body["errors"].is_null() {
            return Err(format!("HTTP {status} {}", truncated(&body)));
        }
        Ok(body["data"][key].clone())
    }
}

/// The deepest chart query the gateway answers, probing down from `LEVELS`.
async fn deepest_admitted(
    app: &App,
    http: &reqwest::Client,
    tenant: TenantId,
    through_gateway: &impl Fn(usize) -> Request,
) -> usize {
    for levels in (1..LEVELS).rev() {
        let request = through_gateway(levels);
        if request.send(app, http, tenant).await.is_ok() {
            return levels;
        }
    }
    panic!("the gateway answers no chart query at all");
}

/// Runs one request `RUNS` times and prints its figures; returns its p50 in
/// milliseconds.
async fn measure(
    app: &App,
    http: &reqwest::Client,
    tenant: TenantId,
    label: &str,
    request: &Request,
) -> f64 {
    // The first request warms the plan cache and the tenant's pool.
    request.send(app, http, tenant).await.unwrap();

    let mut samples = Vec::with_capacity(RUNS);
    let mut statements = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    let mut shape = (0, 0);
    for _ in 0..RUNS {
        let before = app.queries();
        let started = Instant::now();
        let chart = request.send(app, http, tenant).await.unwrap();
        samples.push(started.elapsed());
        statements.push(app.queries() - before);
        bytes = chart.to_string().len();
        shape = measure_chart(&chart);
    }
    statements.sort();
    statements.dedup();
    let p50 = ms(percentile(&mut samples, 0.50));
    // The flat list has no `reports`: every member counts as a level-1 root.
    let shape = if matches!(request, Request::Direct(query) if query == REST_CHART_OPERATION) {
        format!("{} members (flat list)", shape.0)
    } else {
        format!("{} members, {} levels", shape.0, shape.1)
    };
    println!(
        "{label:<34} SQL {statements:?}  p50 {p50:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms  \
         {shape}, {} KB",
        ms(percentile(&mut samples, 0.95)),
        ms(percentile(&mut samples, 1.0)),
        bytes / 1024,
    );
    p50
}

fn truncated(body: &Value) -> String {
    body.to_string().chars().take(500).collect()
}

/// Starts the tenant subgraph with the org app's settings (same prefix,
/// topics and hop secret) and the gateway over both; waits until the
/// gateway is ready and returns its base URL.
async fn start_tenant_and_gateway(
    app: &App,
    config: &TenantConfig,
    shutdown: CancellationToken,
) -> String {
    let brokers = app.config.kafka_brokers.as_deref().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(brokers).unwrap());
    let tenant = tenant_subgraph::start(config, bus, shutdown.clone())
        .await
        .expect("the tenant subgraph starts");
    let tenant_url = tenancy::testing::serve(tenant.router, shutdown.clone()).await;

    let subgraphs = vec![
        SubgraphEndpoint {
            name: "tenant".into(),
            url: format!("{tenant_url}/graphql"),
        },
        SubgraphEndpoint {
            name: "org".into(),
            url: format!("{}/graphql", app.client.origin),
        },
    ];
    let mut gateway_config = GatewayConfig::new(support::HOP_SECRET, subgraphs);
    gateway_config.max_query_depth = MAX_QUERY_DEPTH;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(gateway::serve(
        gateway_config,
        listener,
        shutdown.cancelled_owned(),
    ));

    let started = Instant::now();
    while reqwest::get(format!("{gateway_url}/readyz"))
        .await
        .map_or(true, |response| response.status() != 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gateway not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway_url
}

/// Signs up through the gateway for the org app and waits until its
/// database is ready; returns the tenant and its token.
async fn signup(http: &reqwest::Client, gateway_url: &str, app: &App) -> (TenantId, String) {
    let response = http
        .post(format!("{gateway_url}/tenants"))
        .json(&json!({"name": "Org chart bench", "services": ["org"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id: uuid::Uuid = body["tenant_id"].as_str().unwrap().parse().unwrap();
    let tenant = app.track(TenantId::from_uuid(id));
    let token = body["token"].as_str().unwrap().to_owned();

    let started = Instant::now();
    loop {
        let me: Value = http
            .get(format!("{gateway_url}/tenants/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if me["services"][0]["status"] == "ready" {
            return (tenant, token);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready: {me}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
