//! A test org subgraph on the kit's harness (`tenancy::testing`): started
//! with `start`, served on a free port and called as the gateway calls it,
//! with its own control database, topics and tenants. Shared by the tests and
//! the chart benchmark.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use org_subgraph::OrgService;
use org_subgraph::store::member;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::bus::{EventBus, KafkaBus};
use tenancy::config::TenancyConfig;
use tenancy::host::DatabaseHost;
use tenancy::registry::DatabaseStatus;
use tenancy::testing::{GatewayCalls, TestDatabases};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const HOP_SECRET: &str = "org-test-hop-secret-01234";

/// One org subgraph on a free port.
pub struct App {
    pub config: TenancyConfig,
    pub service: OrgService,
    pub client: GatewayCalls,
    databases: TestDatabases,
    shutdown: CancellationToken,
}

impl App {
    /// Starts the subgraph with a fresh prefix and fresh topics.
    pub async fn start() -> App {
        let config = tenancy::testing::test_config(HOP_SECRET);
        let brokers = config.kafka_brokers.as_deref().unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(brokers).unwrap());
        let shutdown = CancellationToken::new();
        let databases = TestDatabases::new(&config.database_url);
        databases.track(config.control_database("org_registry"));
        let service = org_subgraph::start(&config, bus, shutdown.clone())
            .await
            .unwrap();
        let origin = tenancy::testing::serve(service.router.clone(), shutdown.clone()).await;
        App {
            client: GatewayCalls::new(origin, HOP_SECRET),
            config,
            service,
            databases,
            shutdown,
        }
    }

    /// The cluster the app's databases live on.
    pub fn host(&self) -> &DatabaseHost {
        &self.databases.host
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
        self.databases.track(tenant.database_name("org"));
        tenant
    }

    /// SQL statements the subgraph has run on tenant databases so far.
    pub fn queries(&self) -> u64 {
        self.service.queries.get()
    }

    /// A GraphQL request as the gateway sends it; returns (status, body).
    pub async fn post(&self, tenant: TenantId, query: &str, variables: Value) -> (u16, Value) {
        self.client.post(tenant, query, variables).await
    }

    /// A GraphQL request that must get HTTP 200; returns the body.
    pub async fn call(&self, tenant: TenantId, query: &str, variables: Value) -> Value {
        self.client.call(tenant, query, variables).await
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
        self.databases.drop_all().await;
    }
}

/// A test that failed before `cleanup` stops the app; its databases are
/// dropped by [`TestDatabases`].
impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
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

/// The `p` quantile (0 to 1) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
