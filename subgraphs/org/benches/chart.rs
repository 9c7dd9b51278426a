//! Benchmark: the org chart of 1,000 members 50 levels deep, served through
//! the org subgraph's HTTP `/graphql`: SQL queries per request and latency.
//!
//! Run with a broker: `KAFKA_BROKERS=127.0.0.1:9092 cargo bench -p org-subgraph
//! --bench chart` (PostgreSQL from `TEST_DATABASE_URL`, default the local one).
//! The gateway is not in the path yet: this measures the subgraph alone, on
//! the default tokio runtime (2 MiB worker stacks), as the launcher runs it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::json;
use support::{App, chart_query, measure_chart, ms, percentile};

const MEMBERS: usize = 1_000;
const LEVELS: usize = 50;
const RUNS: usize = 50;

#[tokio::main]
async fn main() {
    let app = App::start().await;
    let small = app.ready_tenant().await;
    let large = app.ready_tenant().await;
    app.seed_chart(small, LEVELS, LEVELS).await;
    app.seed_chart(large, MEMBERS, LEVELS).await;
    let query = chart_query(LEVELS);

    println!("org chart benchmark (one run; PostgreSQL, release build)");
    println!("served by the org subgraph's own HTTP /graphql: the gateway is not ready yet,");
    println!("so no JWT check, query planning or gateway hop is included");
    println!(
        "query: orgChart, {LEVELS} levels of reports, each member with id name title managerId manager {{ id name }}"
    );

    for (label, tenant, members) in [("small", small, LEVELS), ("large", large, MEMBERS)] {
        // A first request opens the tenant's pool, so it is not measured.
        app.call(
            tenant,
            "{ orgMembers(first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;

        let mut samples = Vec::with_capacity(RUNS);
        let mut queries = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let before = app.queries();
            let started = Instant::now();
            let body = app.call(tenant, &query, json!({})).await;
            samples.push(started.elapsed());
            queries.push(app.queries() - before);
            assert!(body["errors"].is_null(), "{}", &body.to_string()[..500]);
            assert_eq!(measure_chart(&body["data"]["orgChart"]), (members, LEVELS));
            bytes = body.to_string().len();
        }
        queries.sort();
        queries.dedup();
        println!(
            "{label:<5} {members:>5} members, {LEVELS} levels: SQL queries per request {queries:?}  \
             p50 {:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms  ({} KB response, n={RUNS})",
            ms(percentile(&mut samples, 0.50)),
            ms(percentile(&mut samples, 0.95)),
            ms(percentile(&mut samples, 1.0)),
            bytes / 1024,
        );
    }

    // The deepest chart query the schema admits, on the same 2 MiB worker
    // stacks: it must be served, not crash the process.
    let deepest = (LEVELS..=70)
        .rev()
        .map(|levels| (levels, chart_query(levels)))
        .collect::<Vec<_>>();
    for (levels, query) in deepest {
        let body = app.call(large, &query, json!({})).await;
        if body["errors"].is_null() {
            println!(
                "deepest admitted chart query: {levels} levels, served on 2 MiB worker stacks"
            );
            break;
        }
    }
    app.cleanup().await;
}
