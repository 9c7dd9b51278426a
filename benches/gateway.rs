//! Benchmark: what the gateway adds to a request (issue #3), measured with
//! `wrk` on the standalone binaries, one process per service, so the CPU each
//! one burns can be told apart.
//!
//! Run: `scripts/bench gateway` (builds the binaries, starts a broker). By
//! hand: `cargo build --release -p gateway -p tenant-subgraph -p fact-subgraph
//! -p org-subgraph -p todo-subgraph`, then `KAFKA_BROKERS=127.0.0.1:9092
//! cargo bench --bench gateway`. PostgreSQL comes from `TEST_DATABASE_URL`
//! (default the local one); `wrk` must be on PATH.
//!
//! For each case the same work is sent through the gateway and straight to
//! the subgraph (with the hop secret and `X-Tenant-ID`, as the gateway sends
//! them), once on one connection (latency with no queue) and once on
//! `LOADED_CONNECTIONS` (throughput). During the loaded run the CPU time
//! (`utime + stime` from `/proc/<pid>/stat`) of every process is sampled:
//! the gateway, each subgraph, the PostgreSQL backends serving this run's
//! databases, and `wrk` itself.
//!
//! Two gateways run side by side on the same subgraphs: one with
//! `GATEWAY_WORKER_THREADS=1`, the figures the goals are read against, and
//! one with the default runtime (a worker per CPU), the `default threads`
//! rows.
//!
//! Everything the run creates (processes, databases under a fresh prefix, a
//! temporary directory) is removed at the end, also after a failure or a
//! Ctrl-C.
//!
//! With `--hold` (`scripts/bench gateway -- --hold`) the run stops after
//! setting the stack up: it prints each service's pid and a `wrk` command per
//! case, and keeps everything running until Ctrl-C, for profiling a service
//! under load (`perf record -g -p <pid>`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::host::DatabaseHost;

/// Length of a measured `wrk` run, and of the unmeasured one before it.
const RUN_SECONDS: u64 = 10;
const WARMUP_SECONDS: u64 = 2;
/// Connections of the throughput run: enough to keep both cores busy.
const LOADED_CONNECTIONS: usize = 16;
/// Facts the tenant holds: exactly one page of `facts(first: 10)`.
const FACTS: usize = 10;
/// The service binaries, in start order; the gateway composes the four
/// subgraphs, as in a real deployment.
const SUBGRAPHS: [(&str, &str, &str); 4] = [
    ("tenant", "tenant-subgraph", "TENANT"),
    ("fact", "fact-subgraph", "FACT"),
    ("org", "org-subgraph", "ORG"),
    ("todo", "todo-subgraph", "TODO"),
];
/// The processes whose CPU time is reported (org and todo are idle).
const MEASURED: [&str; 4] = ["gateway", "gateway_default", "tenant", "fact"];
/// Runtime threads of the measured gateway (`GATEWAY_WORKER_THREADS`): on a
/// 2-core machine that also runs the subgraphs and PostgreSQL, a second
/// worker mostly adds wake-ups between threads. A second gateway with the
/// default (one per CPU) serves the `default threads` cases beside it.
const GATEWAY_THREADS: &str = "1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut run = Run::new()?;
    let interrupted = tenancy::shutdown::on_signal();
    let hold = std::env::args().any(|argument| argument == "--hold");
    let outcome = tokio::select! {
        // Holding ends with the interrupt: let that branch see it first.
        biased;
        outcome = benchmark(&mut run, hold.then(|| interrupted.clone())) => outcome,
        _ = interrupted.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    if outcome.is_err() {
        run.print_logs();
    }
    run.cleanup().await;
    outcome
}

/// Runs every case, or with `hold` set up the stack and keep it until the
/// token is cancelled.
async fn benchmark(
    run: &mut Run,
    hold: Option<tokio_util::sync::CancellationToken>,
) -> anyhow::Result<()> {
    run.start_services()?;
    run.wait_until_ready(Duration::from_secs(120)).await?;
    // Let composition's allocations settle before reading the idle figure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = run.resident_megabytes("gateway")?;
    let idle_rss_default = run.resident_megabytes("gateway_default")?;

    let (tenant, token) = run.signup_with_facts().await?;
    let cases = cases(run, tenant, &token);
    for case in &cases {
        run.check(case).await?;
    }
    if let Some(until) = hold {
        return run.hold(&cases, until).await;
    }
    let postgres = Postgres::connect(run, tenant).await?;

    println!(
        "gateway overhead benchmark (release build, one run, {RUN_SECONDS} s per figure after \
         {WARMUP_SECONDS} s warm-up; wrk, 1 thread)"
    );
    println!(
        "CPU µs per request during the {LOADED_CONNECTIONS}-connection run; postgres = the \
         backends of this run's databases"
    );
    println!(
        "gateway: GATEWAY_WORKER_THREADS={GATEWAY_THREADS}; `default threads` rows: a second \
         gateway with a worker per CPU ({})",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // The machine is shared: say how busy it was.
    println!("load average at start: {}", load_average());
    println!(
        "{:<44} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>8} {:>5}",
        "case",
        "c=1 p50",
        "p99",
        "req/s",
        "c=16 p50",
        "p99",
        "req/s",
        "gateway",
        "tenant",
        "fact",
        "postgres",
        "wrk"
    );
    let mut results = HashMap::new();
    for case in &cases {
        let single = run.load(case, 1).await?;
        let (loaded, cpu) = run.load_measuring_cpu(case, &postgres).await?;
        println!(
            "{:<44} {:>5.2} ms {:>5.2} ms {:>8.0} | {:>5.2} ms {:>5.2} ms {:>8.0} | {:>7.0} {:>7.0} \
             {:>7.0} {:>8.0} {:>5.0}",
            case.name,
            single.p50_ms,
            single.p99_ms,
            single.requests_per_second,
            loaded.p50_ms,
            loaded.p99_ms,
            loaded.requests_per_second,
            cpu[case.gateway],
            cpu["tenant"],
            cpu["fact"],
            cpu["postgres"],
            cpu["wrk"],
        );
        results.insert(case.key, (single, loaded, cpu));
    }
    summarize(&results);

    println!(
        "gateway RSS: idle after composition {idle_rss:.1} MB, after the load {:.1} MB; default \
         threads: {idle_rss_default:.1} MB, {:.1} MB",
        run.resident_megabytes("gateway")?,
        run.resident_megabytes("gateway_default")?
    );
    println!("load average at end: {}", load_average());
    postgres.close().await;
    Ok(())
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------ cases

/// One kind of request, sent by `wrk` to one URL.
struct Case {
    /// Stable key, for the summary.
    key: &'static str,
    /// What the table calls it.
    name: &'static str,
    /// The gateway process it goes through (the CPU column), if any.
    gateway: &'static str,
    url: String,
    method: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
}

/// A GraphQL request body.
fn graphql_body(query: &str, variables: Value) -> Option<String> {
    Some(json!({"query": query, "variables": variables}).to_string())
}

const FACTS_QUERY: &str = "{ facts(first: 10) { nodes { id text } } }";
const ME_QUERY: &str = "{ me { name facts(first: 10) { nodes { text } } } }";
/// The operation `GET /facts?limit=10` runs (gateway/src/rest.rs).
const REST_FACTS_QUERY: &str = "query($first: Int, $after: String) { facts(first: $first, \
    after: $after) { nodes { id text createdAt updatedAt } pageInfo { hasNextPage endCursor } } }";
/// The two fetches the gateway's plan makes for `ME_QUERY`, as it sends them
/// (recorded between gateway and subgraphs): the tenant first, then its facts
/// as an entity.
const ME_TENANT_FETCH: &str = "{me{__typename name id}}";
const ME_FACT_FETCH: &str = "query($representations:[_Any!]!){_entities(representations: \
    $representations){...on Tenant{facts(first: 10){nodes{text}}}}}";

fn cases(run: &Run, tenant: TenantId, token: &str) -> Vec<Case> {
    let bearer = vec![
        ("Content-Type", "application/json".to_owned()),
        ("Authorization", format!("Bearer {token}")),
    ];
    let hop = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-Gateway-Auth", run.hop_secret.clone()),
        ("X-Tenant-ID", tenant.to_string()),
    ];
    let graphql = |key, name, service: &'static str, query: &str, variables: Value| Case {
        key,
        name,
        gateway: if service.starts_with("gateway") {
            service
        } else {
            "gateway"
        },
        url: format!("{}/graphql", run.base_url(service)),
        method: "POST",
        headers: if service.starts_with("gateway") {
            bearer.clone()
        } else {
            hop.clone()
        },
        body: graphql_body(query, variables),
    };
    let representations = json!({"representations": [{"__typename": "Tenant", "id": tenant}]});
    let mut cases: Vec<Case> = [
        (
            "facts/gateway",
            "(a) facts: gateway",
            "gateway",
            FACTS_QUERY,
        ),
        (
            "facts/gateway_default",
            "(a) facts: gateway, default threads",
            "gateway_default",
            FACTS_QUERY,
        ),
        (
            "facts/direct",
            "(a) facts: fact subgraph",
            "fact",
            FACTS_QUERY,
        ),
        ("me/gateway", "(b) me + facts: gateway", "gateway", ME_QUERY),
        (
            "me/gateway_default",
            "(b) me + facts: gateway, default threads",
            "gateway_default",
            ME_QUERY,
        ),
        (
            "me/tenant",
            "(b) direct 1/2: tenant me",
            "tenant",
            ME_TENANT_FETCH,
        ),
        (
            "me/fact",
            "(b) direct 2/2: fact _entities",
            "fact",
            ME_FACT_FETCH,
        ),
        (
            "rest/graphql",
            "(c) its GraphQL: gateway",
            "gateway",
            REST_FACTS_QUERY,
        ),
    ]
    .into_iter()
    .map(|(key, name, service, query)| {
        let variables = match key {
            "me/fact" => representations.clone(),
            "rest/graphql" => json!({"first": 10}),
            _ => json!({}),
        };
        graphql(key, name, service, query, variables)
    })
    .collect();
    let rest_at = cases
        .iter()
        .position(|case| case.key == "rest/graphql")
        .unwrap();
    cases.insert(
        rest_at,
        Case {
            key: "rest/gateway",
            name: "(c) GET /facts?limit=10: gateway",
            gateway: "gateway",
            url: format!("{}/facts?limit=10", run.base_url("gateway")),
            method: "GET",
            headers: vec![("Authorization", format!("Bearer {token}"))],
            body: None,
        },
    );
    cases
}

/// The ratios the issue asks about, from this run's figures.
fn summarize(results: &HashMap<&str, (Load, Load, HashMap<&str, f64>)>) {
    let throughput = |key: &str| results[key].1.requests_per_second;
    let cpu = |key: &str, process: &str| results[key].2[process];
    // The gateway each case went through.
    let gateway_cpu = |key: &str| match key.ends_with("_default") {
        true => cpu(key, "gateway_default"),
        false => cpu(key, "gateway"),
    };
    // What serves the request behind the gateway: subgraphs and database.
    let behind = |key: &str| cpu(key, "tenant") + cpu(key, "fact") + cpu(key, "postgres");

    println!("ratios (same run):");
    // The two direct fetches run one after the other: at saturation a pair
    // costs the time of one plus the time of the other.
    let direct_pair = 1.0 / (1.0 / throughput("me/tenant") + 1.0 / throughput("me/fact"));
    let pair_cpu = |process: &str| cpu("me/tenant", process) + cpu("me/fact", process);
    println!(
        "  (b) direct, both fetches (derived): {direct_pair:.0} req/s; CPU µs/request tenant {:.0} \
         fact {:.0} postgres {:.0} wrk {:.0}; c=1 p50 {:.2} ms (sum of the two)",
        pair_cpu("tenant"),
        pair_cpu("fact"),
        pair_cpu("postgres"),
        pair_cpu("wrk"),
        results["me/tenant"].0.p50_ms + results["me/fact"].0.p50_ms,
    );
    for (label, gateway, direct) in [
        (
            "(a) facts",
            throughput("facts/gateway"),
            throughput("facts/direct"),
        ),
        ("(b) me + facts", throughput("me/gateway"), direct_pair),
        (
            "(a) facts, default threads",
            throughput("facts/gateway_default"),
            throughput("facts/direct"),
        ),
        (
            "(b) me + facts, default threads",
            throughput("me/gateway_default"),
            direct_pair,
        ),
    ] {
        println!(
            "  {label}: gateway throughput / direct = {:.2} (goal >= 0.75)",
            gateway / direct
        );
    }
    for (label, key) in [
        ("(a) facts", "facts/gateway"),
        ("(b) me + facts", "me/gateway"),
        ("(c) GET /facts", "rest/gateway"),
        ("(a) facts, default threads", "facts/gateway_default"),
        ("(b) me + facts, default threads", "me/gateway_default"),
    ] {
        println!(
            "  {label}: gateway CPU / (subgraphs + postgres) CPU per request = {:.2} (goal <= 0.33)",
            gateway_cpu(key) / behind(key)
        );
    }
    println!(
        "  (c) REST / GraphQL: throughput {:.2}, gateway CPU per request {:.2}",
        throughput("rest/gateway") / throughput("rest/graphql"),
        cpu("rest/gateway", "gateway") / cpu("rest/graphql", "gateway"),
    );
}

// ------------------------------------------------------------- processes

/// The processes, databases and files of one benchmark run.
struct Run {
    binaries: PathBuf,
    directory: PathBuf,
    database_url: String,
    brokers: String,
    prefix: String,
    hop_secret: String,
    ports: HashMap<&'static str, u16>,
    processes: Vec<(&'static str, Child)>,
    http: reqwest::Client,
}

impl Run {
    fn new() -> anyhow::Result<Self> {
        // The bench runs from <target>/release/deps; the binaries sit in
        // <target>/release.
        let binaries = std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating the release directory")?
            .to_owned();
        let brokers = std::env::var("KAFKA_BROKERS")
            .context("KAFKA_BROKERS is not set: run `scripts/bench gateway`, which starts one")?;
        let prefix = format!(
            "bench_gw_{}_",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let directory = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&directory)?;
        let mut ports = HashMap::new();
        for name in [
            "gateway",
            "gateway_default",
            "tenant",
            "fact",
            "org",
            "todo",
        ] {
            ports.insert(name, free_port()?);
        }
        Ok(Self {
            binaries,
            directory,
            database_url: std::env::var("TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            brokers,
            hop_secret: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            prefix,
            ports,
            processes: Vec::new(),
            http: reqwest::Client::new(),
        })
    }

    fn base_url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    /// Starts the four subgraphs and the gateway, each its own process.
    fn start_services(&mut self) -> anyhow::Result<()> {
        for (name, binary, variable) in SUBGRAPHS {
            let address = format!("127.0.0.1:{}", self.ports[name]);
            self.spawn(name, binary, &[(format!("{variable}_ADDR"), address)])?;
        }
        let mut subgraph_urls = Vec::new();
        for (name, _, variable) in SUBGRAPHS {
            let url = format!("{}/graphql", self.base_url(name));
            subgraph_urls.push((format!("{variable}_SUBGRAPH_URL"), url));
        }
        for (name, threads) in [
            ("gateway", Some(GATEWAY_THREADS)),
            ("gateway_default", None),
        ] {
            let mut gateway = subgraph_urls.clone();
            gateway.push((
                "GATEWAY_ADDR".to_owned(),
                format!("127.0.0.1:{}", self.ports[name]),
            ));
            if let Some(threads) = threads {
                gateway.push(("GATEWAY_WORKER_THREADS".to_owned(), threads.to_owned()));
            }
            self.spawn(name, "gateway", &gateway)?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        name: &'static str,
        binary: &str,
        extra: &[(String, String)],
    ) -> anyhow::Result<()> {
        let path = self.binaries.join(binary);
        ensure!(
            path.exists(),
            "{} is missing: build the services first (`cargo build --release -p gateway -p \
             tenant-subgraph -p fact-subgraph -p org-subgraph -p todo-subgraph`)",
            path.display()
        );
        let log = std::fs::File::create(self.directory.join(format!("{name}.log")))?;
        let child = Command::new(&path)
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("DATABASE_PREFIX", &self.prefix)
            .env("GATEWAY_HOP_SECRET", &self.hop_secret)
            .env("TENANT_SIGNUPS_TOPIC", format!("{}signups", self.prefix))
            .env(
                "TENANT_PROVISIONING_TOPIC",
                format!("{}provisioning", self.prefix),
            )
            .env("DATA_DIR", self.directory.join("data"))
            .env("SIGNING_KEY_FILE", self.directory.join("signing_key.pem"))
            .env("RUST_LOG", "warn")
            .envs(extra.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        self.processes.push((name, child));
        Ok(())
    }

    fn pid(&self, name: &str) -> u32 {
        let (_, child) = self.processes.iter().find(|(n, _)| *n == name).unwrap();
        child.id()
    }

    /// Waits for both gateways' `/readyz`: composed, every subgraph reachable.
    async fn wait_until_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        for gateway in ["gateway", "gateway_default"] {
            self.wait_until_gateway_ready(gateway, started, timeout)
                .await?;
        }
        Ok(())
    }

    async fn wait_until_gateway_ready(
        &mut self,
        gateway: &str,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.base_url(gateway));
        loop {
            for (name, child) in &mut self.processes {
                if let Some(status) = child.try_wait()? {
                    bail!("{name} exited at start ({status})");
                }
            }
            if let Ok(response) = self.http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            ensure!(
                started.elapsed() < timeout,
                "{gateway} was not ready within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs up through the gateway, waits until the fact database is ready
    /// and writes `FACTS` facts; returns the tenant and its token.
    async fn signup_with_facts(&self) -> anyhow::Result<(TenantId, String)> {
        let gateway = self.base_url("gateway");
        let response = self
            .http
            .post(format!("{gateway}/tenants"))
            .json(&json!({"name": "Gateway bench", "services": ["fact"]}))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "signup: {}",
            response.text().await?
        );
        let body: Value = response.json().await?;
        let tenant = body["tenant_id"].as_str().context("tenant_id")?;
        let tenant = TenantId::from_uuid(tenant.parse()?);
        let token = body["token"].as_str().context("token")?.to_owned();

        let started = Instant::now();
        loop {
            let me: Value = self
                .http
                .get(format!("{gateway}/tenants/me"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if me["services"][0]["status"] == "ready" {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "not ready: {me}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        for n in 0..FACTS {
            let response = self
                .http
                .post(format!("{gateway}/facts"))
                .bearer_auth(&token)
                .json(&json!({"text": format!("Benchmark fact number {n}")}))
                .send()
                .await?;
            ensure!(
                response.status() == 201,
                "createFact: {}",
                response.text().await?
            );
        }
        Ok((tenant, token))
    }

    /// Sends a case once and insists on a clean, full answer, so the load
    /// runs measure real work.
    async fn check(&self, case: &Case) -> anyhow::Result<()> {
        let mut request = self.http.request(case.method.parse()?, &case.url);
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &case.body {
            request = request.body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(
            status == 200 && body["errors"].is_null(),
            "{}: {status} {body}",
            case.name
        );
        // Every case but the tenant fetch answers the page of facts.
        let (marker, count) = match case.key {
            "me/tenant" => ("Gateway bench", 1),
            _ => ("Benchmark fact number", FACTS),
        };
        let text = body.to_string();
        ensure!(
            text.matches(marker).count() == count,
            "{}: expected {count} × {marker:?} in {text}",
            case.name
        );
        Ok(())
    }

    /// A warm-up run, then a measured one on `connections` connections.
    async fn load(&self, case: &Case, connections: usize) -> anyhow::Result<Load> {
        let script = self.write_script(case)?;
        let warmup = wrk(&case.url, &script, connections, WARMUP_SECONDS);
        tokio::task::spawn_blocking(warmup).await??;
        let measured = wrk(&case.url, &script, connections, RUN_SECONDS);
        tokio::task::spawn_blocking(measured).await?
    }

    /// The loaded run, with the CPU µs per request of each process.
    async fn load_measuring_cpu(
        &self,
        case: &Case,
        postgres: &Postgres,
    ) -> anyhow::Result<(Load, HashMap<&'static str, f64>)> {
        let script = self.write_script(case)?;
        let warmup = wrk(&case.url, &script, LOADED_CONNECTIONS, WARMUP_SECONDS);
        tokio::task::spawn_blocking(warmup).await??;

        let pids: Vec<(&str, u32)> = MEASURED
            .iter()
            .map(|name| (*name, self.pid(name)))
            .collect();
        let before_processes = cpu_ticks_of(&pids)?;
        let before_postgres = postgres.cpu_ticks().await?;
        let measured = wrk(&case.url, &script, LOADED_CONNECTIONS, RUN_SECONDS);
        let load = tokio::task::spawn_blocking(measured).await??;
        let after_processes = cpu_ticks_of(&pids)?;
        let after_postgres = postgres.cpu_ticks().await?;

        let per_request = |ticks: u64| ticks as f64 * 1e6 / clock_ticks() / load.requests as f64;
        let mut cpu = HashMap::new();
        for (name, _) in &pids {
            cpu.insert(
                *name,
                per_request(after_processes[name] - before_processes[name]),
            );
        }
        // A backend opened during the run counts from zero.
        let postgres_ticks: u64 = after_postgres
            .iter()
            .map(|(pid, after)| after - before_postgres.get(pid).copied().unwrap_or(0))
            .sum();
        cpu.insert("postgres", per_request(postgres_ticks));
        cpu.insert("wrk", per_request(load.cpu_ticks));
        Ok((load, cpu))
    }

    /// The Lua script that makes `wrk` send the case and count bad answers
    /// (a status other than 200, or a GraphQL `errors` member).
    fn write_script(&self, case: &Case) -> anyhow::Result<PathBuf> {
        let mut script = format!("wrk.method = \"{}\"\n", case.method);
        for (name, value) in &case.headers {
            script.push_str(&format!("wrk.headers[\"{name}\"] = [==[{value}]==]\n"));
        }
        if let Some(body) = &case.body {
            script.push_str(&format!("wrk.body = [==[{body}]==]\n"));
        }
        script.push_str(WRK_CHECKS);
        let path = self
            .directory
            .join(format!("{}.lua", case.key.replace('/', "_")));
        std::fs::write(&path, script)?;
        Ok(path)
    }

    /// Prints what profiling needs (pids, one `wrk` command per case) and
    /// waits until `until` is cancelled.
    async fn hold(
        &self,
        cases: &[Case],
        until: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        for (name, child) in &self.processes {
            println!("{name} pid {}", child.id());
        }
        for case in cases {
            let script = self.write_script(case)?;
            println!(
                "{}: wrk -t1 -c{LOADED_CONNECTIONS} -d10s --latency -s {} {}",
                case.name,
                script.display(),
                case.url
            );
        }
        println!("holding the stack until Ctrl-C");
        until.cancelled().await;
        Ok(())
    }

    /// Resident memory of a service, from `/proc/<pid>/status`.
    fn resident_megabytes(&self, name: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(name)))?;
        let kilobytes: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .context("VmRSS")?
            .parse()?;
        Ok(kilobytes / 1024.0)
    }

    fn print_logs(&self) {
        for (name, _) in &self.processes {
            let log = std::fs::read_to_string(self.directory.join(format!("{name}.log")));
            let log = log.unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- last lines of {name}'s log:");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    /// Stops every process (SIGTERM, then SIGKILL after 10 s) and drops the
    /// databases under this run's prefix and the tenant databases its
    /// registries name.
    async fn cleanup(&mut self) {
        for (_, child) in &self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, child) in &mut self.processes {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("{name} did not stop within 10 s of SIGTERM: killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Err(error) = drop_databases(&self.database_url, &self.prefix).await {
            eprintln!(
                "dropping the benchmark's databases (prefix {}): {error:#}",
                self.prefix
            );
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

async fn drop_databases(url: &str, prefix: &str) -> anyhow::Result<()> {
    let host = DatabaseHost::parse(url)?;
    let admin = Database::connect(host.database_url("postgres")).await?;
    let mut doomed = Vec::new();
    for app in ["fact", "org", "todo"] {
        let registry = host.database_url(&format!("{prefix}{app}_registry"));
        if let Ok(registry) = Database::connect(registry).await {
            let sql = "SELECT database_name FROM tenant_databases";
            for row in registry.query_all_raw(raw(sql)).await.unwrap_or_default() {
                doomed.push(row.try_get::<String>("", "database_name")?);
            }
            registry.close().await.ok();
        }
    }
    let sql = format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}')");
    for row in admin.query_all_raw(raw(&sql)).await? {
        doomed.push(row.try_get::<String>("", "datname")?);
    }
    admin.close().await.ok();
    for database in doomed {
        host.drop_database(&database).await?;
    }
    Ok(())
}

fn raw(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql.to_owned())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

// --------------------------------------------------------------- CPU time

/// `utime + stime` of a process, in clock ticks, from `/proc/<pid>/stat`,
/// and whether it has exited (a zombie, not reaped yet).
fn cpu_ticks(pid: u32) -> anyhow::Result<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let (user, system): (u64, u64) = (fields[11].parse()?, fields[12].parse()?);
    Ok((user + system, fields[0] == "Z"))
}

fn cpu_ticks_of<'a>(pids: &[(&'a str, u32)]) -> anyhow::Result<HashMap<&'a str, u64>> {
    pids.iter()
        .map(|(name, pid)| Ok((*name, cpu_ticks(*pid)?.0)))
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The PostgreSQL backends that serve this run's databases: the tenant's
/// fact database, the tenant meta database and the registries.
struct Postgres {
    admin: DatabaseConnection,
    databases: Vec<String>,
}

impl Postgres {
    async fn connect(run: &Run, tenant: TenantId) -> anyhow::Result<Self> {
        let host = DatabaseHost::parse(&run.database_url)?;
        let admin = Database::connect(host.database_url("postgres")).await?;
        let mut databases = vec![tenant.database_name("fact")];
        for control in [
            "tenant_meta",
            "fact_registry",
            "org_registry",
            "todo_registry",
        ] {
            databases.push(format!("{}{control}", run.prefix));
        }
        Ok(Self { admin, databases })
    }

    /// CPU ticks of each backend connected to one of the databases now.
    async fn cpu_ticks(&self) -> anyhow::Result<HashMap<u32, u64>> {
        let names: Vec<String> = self.databases.iter().map(|d| format!("'{d}'")).collect();
        let sql = format!(
            "SELECT pid FROM pg_stat_activity WHERE datname IN ({})",
            names.join(", ")
        );
        let mut ticks = HashMap::new();
        for row in self.admin.query_all_raw(raw(&sql)).await? {
            let pid = row.try_get::<i32>("", "pid")? as u32;
            // A backend that ended meanwhile has nothing left to count.
            if let Ok((used, _)) = cpu_ticks(pid) {
                ticks.insert(pid, used);
            }
        }
        Ok(ticks)
    }

    async fn close(self) {
        self.admin.close().await.ok();
    }
}

// -------------------------------------------------------------------- wrk

/// Checks every answer and prints how many were bad, summed over threads.
const WRK_CHECKS: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("bad answers: %d\n", total))
end
"#;

/// What one `wrk` run measured.
#[derive(Clone, Copy, Debug)]
struct Load {
    requests: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU used by `wrk` itself.
    cpu_ticks: u64,
}

/// A `wrk` run (one thread) as a blocking closure.
fn wrk(
    url: &str,
    script: &Path,
    connections: usize,
    seconds: u64,
) -> impl FnOnce() -> anyhow::Result<Load> + use<> {
    let (url, script) = (url.to_owned(), script.to_owned());
    move || {
        let mut child = Command::new("wrk")
            .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting wrk (apt-get install wrk)")?;
        let mut output = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut output)?;

        // wrk has closed its output and is exiting: read its CPU time once
        // it is a zombie (all time counted), before reaping it.
        let pid = child.id();
        let mut used = 0;
        for _ in 0..200 {
            match cpu_ticks(pid) {
                Ok((ticks, exited)) => {
                    used = ticks;
                    if exited {
                        break;
                    }
                }
                Err(_) => break,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = child.wait()?;
        ensure!(status.success(), "wrk failed ({status}):\n{output}");
        parse_wrk(&output, used)
    }
}

fn parse_wrk(output: &str, cpu_ticks: u64) -> anyhow::Result<Load> {
    let find = |prefix: &str| -> Option<&str> {
        output
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let bad: u64 = find("bad answers:").context("no check line")?.parse()?;
    let errors = find("Socket errors:").unwrap_or("");
    let non_2xx = find("Non-2xx or 3xx responses:").unwrap_or("0");
    ensure!(
        bad == 0 && errors.is_empty() && non_2xx == "0",
        "bad answers under load:\n{output}"
    );
    let requests = output
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .context("no request count")?
        .parse()?;
    Ok(Load {
        requests,
        requests_per_second: find("Requests/sec:").context("no Requests/sec")?.parse()?,
        p50_ms: duration_ms(find("50%").context("no p50")?)?,
        p99_ms: duration_ms(find("99%").context("no p99")?)?,
        cpu_ticks,
    })
}

/// `812.00us`, `1.23ms`, `1.01s` → milliseconds.
fn duration_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("no unit")?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        other => bail!("unknown unit {other}"),
    })
}
