//! Test support for app subgraphs (feature `testing`): the settings of a test
//! app with its own prefix and topics, serving its router on a free port,
//! calling it as the gateway does, and dropping every database it made, also
//! when the test fails.
//!
//! The tests run against the real PostgreSQL (`TEST_DATABASE_URL`) and a real
//! Kafka-protocol broker (`KAFKA_BROKERS`).

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::TenantId;
use crate::config::{PoolLimits, TenancyConfig};
use crate::hop::{HOP_HEADER, TENANT_HEADER};
use crate::host::DatabaseHost;

/// Settings for one test app: a fresh database prefix and topics, so tests
/// running at once never share a database, a topic or a consumer group.
pub fn test_config(hop_secret: &str) -> TenancyConfig {
    let prefix = format!("t{}_", &Uuid::new_v4().simple().to_string()[..10]);
    let brokers = std::env::var("KAFKA_BROKERS")
        .expect("KAFKA_BROKERS is not set: start a broker (scripts/broker) and export it");
    TenancyConfig {
        database_url: std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
        database_prefix: prefix.clone(),
        kafka_brokers: Some(brokers),
        hop_secret: hop_secret.to_owned(),
        signups_topic: format!("{prefix}signups"),
        provisioning_topic: format!("{prefix}provisioning"),
        pools: PoolLimits {
            connections_per_pool: 2,
            max_pools: 8,
            idle: Duration::from_secs(60),
        },
    }
}

/// Serves `router` on a free loopback port until `shutdown`; returns its
/// origin (`http://127.0.0.1:<port>`).
pub async fn serve(router: axum::Router, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .unwrap();
    });
    origin
}

/// Calls a subgraph's `/graphql` as the gateway does: with the hop
/// credential and the tenant.
pub struct GatewayCalls {
    pub http: reqwest::Client,
    pub origin: String,
    hop_secret: String,
}

impl GatewayCalls {
    pub fn new(origin: String, hop_secret: &str) -> GatewayCalls {
        GatewayCalls {
            http: reqwest::Client::new(),
            origin,
            hop_secret: hop_secret.to_owned(),
        }
    }

    /// A GraphQL request for `tenant`; returns (status, body).
    pub async fn post(&self, tenant: TenantId, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.origin))
            .header(HOP_HEADER, &self.hop_secret)
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
}

/// The databases a test made, dropped by [`drop_all`](Self::drop_all) or,
/// when the test failed before it, on drop.
pub struct TestDatabases {
    pub host: DatabaseHost,
    url: String,
    names: Mutex<Vec<String>>,
}

impl TestDatabases {
    pub fn new(database_url: &str) -> TestDatabases {
        TestDatabases {
            host: DatabaseHost::parse(database_url).unwrap(),
            url: database_url.to_owned(),
            names: Mutex::new(Vec::new()),
        }
    }

    /// Remembers a database to drop.
    pub fn track(&self, name: String) {
        self.names().push(name);
    }

    /// Drops every tracked database; none is left for the drop guard.
    pub async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.names());
        for name in names {
            self.host.drop_database(&name).await.unwrap();
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A test that panicked while holding the lock still cleans up.
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops what is left from a thread of its own: the test's runtime may be
/// gone or be the one this runs on.
impl Drop for TestDatabases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names());
        if names.is_empty() {
            return;
        }
        let url = self.url.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let host = DatabaseHost::parse(&url).unwrap();
                for name in names {
                    host.drop_database(&name).await.ok();
                }
            });
        });
        dropper.join().ok();
    }
}

/// The `extensions.code` of a body's first error, `<none>` without one.
pub fn first_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}
