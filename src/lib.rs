//! The launcher: every hybrid-tenancy service in one process, each on its own
//! port, as in development (`cargo run`). In production each service runs
//! alone from its own binary, configured the same way.
//!
//! With no configuration it is embedded: SQLite files under `DATA_DIR` and
//! the in-process bus kept beside them. `DATABASE_URL` and `KAFKA_BROKERS`
//! switch to a PostgreSQL cluster and Kafka. The same settings can be kept
//! in a configuration file ([`config_file`]).

pub mod config_file;

use std::net::SocketAddr;

use anyhow::Context;
use gateway::GatewayConfig;
use tenancy::config::TenancyConfig;
use tenant_subgraph::TenantConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where each service listens.
#[derive(Clone, Debug)]
pub struct Addresses {
    /// `GATEWAY_ADDR` (default 127.0.0.1:4000): the one public entry point.
    pub gateway: String,
    /// `TENANT_ADDR` (default 127.0.0.1:4001).
    pub tenant: String,
    /// `FACT_ADDR` (default 127.0.0.1:4002).
    pub fact: String,
    /// `ORG_ADDR` (default 127.0.0.1:4003).
    pub org: String,
    /// `TODO_ADDR` (default 127.0.0.1:4004).
    pub todo: String,
}

impl Addresses {
    /// Reads the addresses from the environment.
    pub fn from_env() -> Self {
        let read = |key: &str, default: &str| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            gateway: read("GATEWAY_ADDR", "127.0.0.1:4000"),
            tenant: read("TENANT_ADDR", tenant_subgraph::DEFAULT_ADDR),
            fact: read("FACT_ADDR", fact_subgraph::DEFAULT_ADDR),
            org: read("ORG_ADDR", org_subgraph::DEFAULT_ADDR),
            todo: read("TODO_ADDR", todo_subgraph::DEFAULT_ADDR),
        }
    }

    /// The subgraph URLs the gateway calls, by the variable that overrides
    /// each (`TENANT_SUBGRAPH_URL`, …).
    fn subgraph_urls(&self) -> [(&'static str, String); 4] {
        let url = |addr: &str| format!("http://{addr}/graphql");
        [
            ("TENANT_SUBGRAPH_URL", url(&self.tenant)),
            ("FACT_SUBGRAPH_URL", url(&self.fact)),
            ("ORG_SUBGRAPH_URL", url(&self.org)),
            ("TODO_SUBGRAPH_URL", url(&self.todo)),
        ]
    }
}

/// The launcher's settings.
#[derive(Clone, Debug)]
pub struct LauncherConfig {
    /// The tenant service's settings (and through it, the shared ones).
    pub tenant: TenantConfig,
    /// The gateway's settings.
    pub gateway: GatewayConfig,
    /// Listen addresses.
    pub addresses: Addresses,
}

impl LauncherConfig {
    /// Reads everything from the environment. The gateway and the subgraphs
    /// share this process, so without `GATEWAY_HOP_SECRET` a random one is
    /// made for this run; the gateway calls the subgraphs at their listen
    /// addresses unless `<APP>_SUBGRAPH_URL` says otherwise.
    pub fn from_env() -> anyhow::Result<Self> {
        let generated = uuid::Uuid::new_v4().simple().to_string();
        let tenancy = TenancyConfig::from_env_with_secret(Some(&generated))?;
        let addresses = Addresses::from_env();
        let urls = addresses.subgraph_urls();
        let hop_secret = tenancy.hop_secret.clone();
        let gateway = GatewayConfig::from_lookup(|key| {
            let set = std::env::var(key).ok().filter(|v| !v.trim().is_empty());
            set.or_else(|| match key {
                "GATEWAY_HOP_SECRET" => Some(hop_secret.clone()),
                _ => urls
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, url)| url.clone()),
            })
        })?;
        Ok(Self {
            tenant: TenantConfig::with_tenancy(tenancy)?,
            gateway,
            addresses,
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
    let bus_kind = if tenancy.kafka_brokers.is_some() {
        "kafka"
    } else {
        "in-process"
    };
    tracing::info!(target: "launcher", mode, database = %redact(&tenancy.database_url), bus = bus_kind, "starting");

    // Everything that can fail on bad settings happens before any service
    // starts: the bus (broker or event log) and every listener.
    let bus = tenancy::bus::open_bus(tenancy).await?;
    let addresses = &config.addresses;
    let gateway_listener = bind(&addresses.gateway, "GATEWAY_ADDR").await?;
    let tenant_listener = bind(&addresses.tenant, "TENANT_ADDR").await?;
    let fact_listener = bind(&addresses.fact, "FACT_ADDR").await?;
    let org_listener = bind(&addresses.org, "ORG_ADDR").await?;
    let todo_listener = bind(&addresses.todo, "TODO_ADDR").await?;

    let tenant = tenant_subgraph::run(
        &config.tenant,
        bus.clone(),
        tenant_listener,
        shutdown.clone(),
    );
    let fact = fact_subgraph::run(tenancy, bus.clone(), fact_listener, shutdown.clone());
    let org = org_subgraph::run(tenancy, bus.clone(), org_listener, shutdown.clone());
    let todo = todo_subgraph::run(tenancy, bus, todo_listener, shutdown.clone());
    let gateway = gateway::serve(
        config.gateway,
        gateway_listener,
        shutdown.clone().cancelled_owned(),
    );
    tracing::info!(target: "launcher", gateway = %addresses.gateway, "GraphiQL at http://{}/graphql", addresses.gateway);

    // One service failing stops the others: a half-started stack is worse
    // than a clear error.
    let outcome = tokio::try_join!(
        stop_all_on_error(tenant, &shutdown),
        stop_all_on_error(fact, &shutdown),
        stop_all_on_error(org, &shutdown),
        stop_all_on_error(todo, &shutdown),
        stop_all_on_error(gateway, &shutdown),
    );
    outcome.map(|_| ())
}

/// Cancels `shutdown` when `service` fails, so the other services stop too.
async fn stop_all_on_error(
    service: impl std::future::Future<Output = anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let outcome = service.await;
    if outcome.is_err() {
        shutdown.cancel();
    }
    outcome
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
