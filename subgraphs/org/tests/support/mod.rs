//! A test org subgraph: started with `start`, served on port 0 and called as
//! the gateway calls it, against the real PostgreSQL (`TEST_DATABASE_URL`)
//! and a real Kafka-protocol broker (`KAFKA_BROKERS`), with its own control
//! database, topics and tenants. Shared by the tests and the chart benchmark.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use org_subgraph::OrgService;
use org_subgraph::store::member;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::bus::{EventBus, KafkaBus};
use tenancy::config::{PoolLimits, TenancyConfig};
use tenancy::hop::{HOP_HEADER, TENANT_HEADER};
use tenancy::host::DatabaseHost;
use tenancy::registry::DatabaseStatus;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const HOP_SECRET: &str = "org-test-hop-secret-01234";

/// One org subgraph on a free port.
pub struct App {
    pub config: TenancyConfig,
    pub service: OrgService,
    pub url: String,
    pub host: DatabaseHost,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    tenants: Mutex<Vec<TenantId>>,
    cleaned: bool,
}

impl App {
    /// Starts the subgraph with a fresh prefix and fresh topics.
    pub async fn start() -> App {
        let prefix = format!("t{}_", &Uuid::new_v4().simple().to_string()[..10]);
        let brokers = std::env::var("KAFKA_BROKERS")
            .expect("KAFKA_BROKERS is not set: start a broker (scripts/broker) and export it");
        let config = TenancyConfig {
            database_url: std::env::var("TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            database_prefix: prefix.clone(),
            kafka_brokers: Some(brokers.clone()),
            hop_secret: HOP_SECRET.to_owned(),
            signups_topic: format!("{prefix}signups"),
            provisioning_topic: format!("{prefix}provisioning"),
            pools: PoolLimits {
                connections_per_pool: 2,
                max_pools: 8,
                idle: Duration::from_secs(60),
            },
        };
        let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(&brokers).unwrap());
        let shutdown = CancellationToken::new();
        let service = org_subgraph::start(&config, bus, shutdown.clone())
            .await
            .unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (router, stop) = (service.router.clone(), shutdown.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });

        App {
            host: DatabaseHost::parse(&config.database_url).unwrap(),
            config,
            service,
            url,
            http: reqwest::Client::new(),
            shutdown,
            tenants: Mutex::new(Vec::new()),
            cleaned: false,
        }
    }

    /// A tenant whose org database is ready.
    pub async fn ready_tenant(&self) -> TenantId {
        let tenant = self.track(TenantId::new());
        let status = self
            .service
            .runtime
            .provisioner
            .provision(tenant)
            .await
            .unwrap();
        assert_eq!(status, DatabaseStatus::Ready);
        tenant
    }

    /// Remembers a tenant whose database `cleanup` drops.
    pub fn track(&self, tenant: TenantId) -> TenantId {
        self.tenants.lock().unwrap().push(tenant);
        tenant
    }

    /// SQL statements the subgraph has run on tenant databases so far.
    pub fn queries(&self) -> u64 {
        self.service.queries.get()
    }

    /// A GraphQL request as the gateway sends it; returns (status, body).
    pub async fn post(&self, tenant: TenantId, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.url))
            .header(HOP_HEADER, HOP_SECRET)
            .header(TENANT_HEADER, tenant.to_string())
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A GraphQL request that must get HTTP 200; returns the body.
    pub async fn call(&self, tenant: TenantId, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(tenant, query, variables).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Adds a member through the API and returns its id.
    pub async fn add(&self, tenant: TenantId, name: &str, manager: Option<&str>) -> String {
        let body = self
            .call(
                tenant,
                "mutation($i: CreateOrgMemberInput!) { createOrgMember(input: $i) { id } }",
                json!({"i": {"name": name, "title": "Staff", "managerId": manager}}),
            )
            .await;
        let id = body["data"]["createOrgMember"]["id"].as_str();
        id.unwrap_or_else(|| panic!("{body}")).to_owned()
    }

    /// Writes a chart of `members` members and `levels` levels straight into
    /// the tenant's database (the API would take a request per member): a
    /// chain of `levels` managers, and every other member reporting to one
    /// of the chain's upper `levels - 1` links, round robin.
    pub async fn seed_chart(&self, tenant: TenantId, members: usize, levels: usize) {
        assert!(levels >= 2 && members >= levels);
        let conn = self
            .service
            .runtime
            .selector
            .connection(tenant)
            .await
            .unwrap();
        let now = Utc::now();
        let row = |id: Uuid, name: String, manager_id: Option<Uuid>| member::ActiveModel {
            id: Set(id),
            name: Set(name),
            title: Set("Staff".into()),
            manager_id: Set(manager_id),
            created_at: Set(now),
            updated_at: Set(now),
        };

        let mut chain: Vec<Uuid> = Vec::with_capacity(levels);
        let mut rows = Vec::with_capacity(members);
        for level in 0..levels {
            let id = Uuid::now_v7();
            rows.push(row(
                id,
                format!("Level {}", level + 1),
                chain.last().copied(),
            ));
            chain.push(id);
        }
        for n in levels..members {
            let manager = chain[n % (levels - 1)];
            rows.push(row(Uuid::now_v7(), format!("Member {n}"), Some(manager)));
        }
        for batch in rows.chunks(250) {
            member::Entity::insert_many(batch.to_vec())
                .exec_without_returning(conn.db())
                .await
                .unwrap();
        }
    }

    /// Stops the app and drops every database it made.
    pub async fn cleanup(mut self) {
        self.shutdown.cancel();
        (&mut self.service.runtime.consumer).await.ok();
        for database in self.databases() {
            self.host.drop_database(&database).await.unwrap();
        }
        self.cleaned = true;
    }

    /// The tenant databases and the registry this app made.
    fn databases(&self) -> Vec<String> {
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<String> = tenants.iter().map(|t| t.database_name("org")).collect();
        names.push(self.config.control_database("org_registry"));
        names
    }
}

/// A test that failed before `cleanup` still drops its databases, from a
/// thread of its own (the test's runtime may be gone).
impl Drop for App {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.shutdown.cancel();
        let (url, databases) = (self.config.database_url.clone(), self.databases());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let host = DatabaseHost::parse(&url).unwrap();
                for database in databases {
                    host.drop_database(&database).await.ok();
                }
            });
        });
        dropper.join().ok();
    }
}

/// Runs `test` on a current-thread runtime on its own thread with the stack
/// the org subgraph asks for ([`org_subgraph::WORKER_STACK_BYTES`]), server
/// and client alike. Debug builds spend about 40 KB of stack per level of a
/// nested selection (async-graphql's resolver futures are not optimised), so
/// a 50-level chart query needs more than the 2 MiB a test thread gets;
/// release builds need several times less (see the README).
pub fn on_a_deep_stack<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::Builder::new()
        .stack_size(org_subgraph::WORKER_STACK_BYTES)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(test());
        });
    if let Err(panic) = thread.unwrap().join() {
        std::panic::resume_unwind(panic);
    }
}

/// The `extensions.code` of the first error.
pub fn first_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

/// A chart query `levels` levels deep: each level selects the member's
/// fields, its manager and, above the last level, its reports.
pub fn chart_query(levels: usize) -> String {
    let mut selection = String::from("id name title managerId manager { id name }");
    for _ in 1..levels {
        selection =
            format!("id name title managerId manager {{ id name }} reports {{ {selection} }}");
    }
    format!("{{ orgChart {{ {selection} }} }}")
}

/// How many members a chart response holds, and how many levels deep.
pub fn measure_chart(members: &Value) -> (usize, usize) {
    let Some(members) = members.as_array() else {
        return (0, 0);
    };
    let mut count = members.len();
    let mut depth = usize::from(!members.is_empty());
    for member in members {
        let (below, levels) = measure_chart(&member["reports"]);
        count += below;
        depth = depth.max(levels + 1);
    }
    (count, depth)
}
