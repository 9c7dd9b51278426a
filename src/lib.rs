//! The launcher: every hybrid-tenancy service in one process, each on its own
//! port, as in development (`cargo run`). In production each service runs
//! alone from its own binary, configured the same way.
//!
//! With no configuration it is embedded: SQLite files under `DATA_DIR` and
//! the in-process bus kept beside them. `DATABASE_URL` and `KAFKA_BROKERS`
//! switch to a PostgreSQL cluster and Kafka.

use std::net::SocketAddr;

use anyhow::Context;
use tenancy::config::TenancyConfig;
use tenant_subgraph::TenantConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where each service listens.
#[derive(Clone, Debug)]
pub struct Addresses {
    /// `TENANT_ADDR` (default 127.0.0.1:4001).
    pub tenant: String,
    /// `FACT_ADDR` (default 127.0.0.1:4002).
    pub fact: String,
}

impl Addresses {
    /// Reads the addresses from the environment.
    pub fn from_env() -> Self {
        let read =
            |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
        Self {
            tenant: read("TENANT_ADDR", tenant_subgraph::DEFAULT_ADDR),
            fact: read("FACT_ADDR", fact_subgraph::DEFAULT_ADDR),
        }
    }
}

/// The launcher's settings.
#[derive(Clone, Debug)]
pub struct LauncherConfig {
    /// The tenant service's settings (and through it, the shared ones).
    pub tenant: TenantConfig,
    /// Listen addresses.
    pub addresses: Addresses,
}

impl LauncherConfig {
    /// Reads everything from the environment. The gateway and the subgraphs
    /// share this process, so without `GATEWAY_HOP_SECRET` a random one is
    /// made for this run.
    pub fn from_env() -> anyhow::Result<Self> {
        let generated = uuid::Uuid::new_v4().simple().to_string();
        let tenancy = TenancyConfig::from_env_with_secret(Some(&generated))?;
        Ok(Self {
            tenant: TenantConfig::with_tenancy(tenancy)?,
            addresses: Addresses::from_env(),
        })
    }
}

/// Runs every service until `shutdown`; an error names what failed to start.
pub async fn run(config: LauncherConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tenancy = &config.tenant.tenancy;
    let mode = if tenancy.is_embedded() {
        "embedded"
    } else {
        "cluster"
    };
    tracing::info!(target: "launcher", mode, database = %redact(&tenancy.database_url), bus = if tenancy.kafka_brokers.is_some() { "kafka" } else { "in-process" }, "starting");

    let bus = tenancy::bus::open_bus(tenancy).await?;
    let tenant_listener = bind(&config.addresses.tenant, "TENANT_ADDR").await?;
    let fact_listener = bind(&config.addresses.fact, "FACT_ADDR").await?;

    let tenant = tenant_subgraph::run(
        &config.tenant,
        bus.clone(),
        tenant_listener,
        shutdown.clone(),
    );
    let fact = fact_subgraph::run(tenancy, bus, fact_listener, shutdown.clone());
    // One service failing to start stops the others: a half-started stack
    // is worse than a clear error.
    let outcome = tokio::try_join!(tenant, fact);
    shutdown.cancel();
    outcome.map(|_| ())
}

async fn bind(addr: &str, setting: &str) -> anyhow::Result<TcpListener> {
    let parsed: SocketAddr = addr
        .parse()
        .with_context(|| format!("{setting}={addr} is not an address like 127.0.0.1:4000"))?;
    TcpListener::bind(parsed)
        .await
        .with_context(|| format!("{setting}={addr}: cannot listen there"))
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    tenancy::host::DatabaseHost::parse(url)
        .map(|host| host.url())
        .unwrap_or_else(|_| "<invalid>".to_owned())
}
