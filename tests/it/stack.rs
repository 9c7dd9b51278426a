//! A test stack: the tenant and fact subgraphs on port 0, against the real
//! PostgreSQL (`TEST_DATABASE_URL`) and the real broker (`KAFKA_BROKERS`),
//! with their own control databases, topics and consumer groups, so tests run
//! in parallel and clean up after themselves.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use migration::FactMigrator;
use serde_json::{Value, json};
use tenancy::TenantId;
use tenancy::app::AppRuntime;
use tenancy::bus::{EventBus, KafkaBus};
use tenancy::config::{PoolLimits, TenancyConfig};
use tenancy::hop::{HOP_HEADER, TENANT_HEADER};
use tenancy::host::DatabaseHost;
use tenant_subgraph::TenantConfig;
use tokio_util::sync::CancellationToken;

pub const HOP_SECRET: &str = "test-hop-secret-0123456789";

/// The database cluster tests use.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The broker tests use; `scripts/test` starts one and sets this.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS")
        .expect("KAFKA_BROKERS is not set: run the tests with scripts/test, which starts a broker")
}

/// A config with a fresh prefix and fresh topics on `brokers`.
pub fn fresh_config(brokers: &str) -> TenantConfig {
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let tenancy = TenancyConfig {
        database_url: database_url(),
        database_prefix: prefix.clone(),
        kafka_brokers: Some(brokers.to_owned()),
        hop_secret: HOP_SECRET.to_owned(),
        signups_topic: format!("{prefix}signups"),
        provisioning_topic: format!("{prefix}provisioning"),
        pools: PoolLimits {
            connections_per_pool: 2,
            max_pools: 8,
            idle: Duration::from_secs(60),
        },
    };
    let key = std::env::temp_dir().join(format!("{prefix}signing_key.pem"));
    TenantConfig {
        tenancy,
        signing_key_file: key,
        signup_token_days: 30,
    }
}

pub struct Stack {
    pub config: TenantConfig,
    pub bus: Arc<dyn EventBus>,
    pub tenant_url: String,
    pub fact_url: String,
    pub fact: AppRuntime<FactMigrator>,
    pub meta: sea_orm::DatabaseConnection,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    pub host: DatabaseHost,
    tenants: Mutex<Vec<TenantId>>,
}

impl Stack {
    /// Starts both subgraphs on the shared broker.
    pub async fn start() -> Stack {
        Self::start_with(fresh_config(&kafka_brokers())).await
    }

    /// Starts both subgraphs with `config`.
    pub async fn start_with(config: TenantConfig) -> Stack {
        let bus: Arc<dyn EventBus> =
            Arc::new(KafkaBus::new(config.tenancy.kafka_brokers.as_deref().unwrap()).unwrap());
        let shutdown = CancellationToken::new();

        let tenant = tenant_subgraph::start(&config, bus.clone(), shutdown.clone())
            .await
            .expect("tenant starts");
        let tenant_url = serve(tenant.router, shutdown.clone()).await;
        let fact = fact_subgraph::start(&config.tenancy, bus.clone(), shutdown.clone())
            .await
            .expect("fact starts");
        let fact_url = serve(fact.router, shutdown.clone()).await;

        Stack {
            bus,
            tenant_url,
            fact_url,
            fact: fact.runtime,
            meta: tenant.db,
            shutdown,
            http: reqwest::Client::new(),
            host: DatabaseHost::parse(&config.tenancy.database_url).unwrap(),
            config,
            tenants: Mutex::new(Vec::new()),
        }
    }

    /// Remembers a tenant whose databases `cleanup` drops.
    pub fn track(&self, tenant: TenantId) {
        self.tenants.lock().unwrap().push(tenant);
    }

    /// A GraphQL request as the gateway sends it: hop secret plus, when
    /// given, the verified tenant. Returns (HTTP status, body).
    pub async fn graphql(
        &self,
        url: &str,
        tenant: Option<TenantId>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{url}/graphql"))
            .header(HOP_HEADER, HOP_SECRET);
        if let Some(tenant) = tenant {
            request = request.header(TENANT_HEADER, tenant.to_string());
        }
        let response = request
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Signs up and returns the tenant and its token.
    pub async fn signup(&self, name: &str, services: &[&str]) -> (TenantId, String) {
        let (status, body) = self
            .graphql(
                &self.tenant_url,
                None,
                "mutation($input: SignupInput!) { signup(input: $input) { tenant { id } token } }",
                json!({"input": {"name": name, "services": services}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let tenant: TenantId = body["data"]["signup"]["tenant"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .parse()
            .unwrap();
        self.track(tenant);
        (
            tenant,
            body["data"]["signup"]["token"].as_str().unwrap().to_owned(),
        )
    }

    /// The status the tenant service reports for each app.
    pub async fn statuses(&self, tenant: TenantId) -> Value {
        let (_, body) = self
            .graphql(
                &self.tenant_url,
                Some(tenant),
                "{ me { services { name status } } }",
                json!({}),
            )
            .await;
        body["data"]["me"]["services"].clone()
    }

    /// Waits until the tenant service reports `service` ready.
    pub async fn wait_until_ready(
        &self,
        tenant: TenantId,
        service: &str,
        timeout: Duration,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let services = self.statuses(tenant).await;
            let ready = services.as_array().is_some_and(|list| {
                list.iter()
                    .any(|s| s["name"] == service && s["status"] == "ready")
            });
            if ready {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{tenant} not ready on {service} after {timeout:?}: {services}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the fact registry has the tenant ready.
    pub async fn wait_until_registered_ready(&self, tenant: TenantId, timeout: Duration) {
        let started = Instant::now();
        loop {
            let entry = self.fact.registry.find(tenant).await.unwrap();
            if entry
                .as_ref()
                .is_some_and(|e| e.status == tenancy::registry::DatabaseStatus::Ready)
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{tenant} not ready in the registry: {entry:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether `name` exists on the cluster.
    pub async fn database_exists(&self, name: &str) -> bool {
        self.host.database_exists(name).await.unwrap()
    }

    /// Stops the services and drops every database the test made.
    pub async fn cleanup(self) {
        self.shutdown.cancel();
        self.fact.consumer.await.ok();
        let tenants = self.tenants.lock().unwrap().clone();
        for tenant in tenants {
            self.host
                .drop_database(&tenant.database_name("fact"))
                .await
                .unwrap();
        }
        for control in ["tenant_meta", "fact_registry"] {
            self.host
                .drop_database(&self.config.tenancy.control_database(control))
                .await
                .unwrap();
        }
        std::fs::remove_file(&self.config.signing_key_file).ok();
    }
}

/// Serves `router` on a free port until `shutdown`; returns its base URL.
pub async fn serve(router: axum::Router, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// The `extensions.code` of the first error.
pub fn first_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}
