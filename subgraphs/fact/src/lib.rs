//! The fact subgraph: each tenant's random facts, in the tenant's own
//! `fact_<tenant>` database.
//!
//! - [`schema`]: the GraphQL API (facts CRUD, a random fact, and `Tenant.facts`
//!   on the federated `Tenant` entity).
//! - [`store`]: data access, always through a tenant's connection.
//! - [`run`]: start-up: registry, provisioner, HTTP server.

pub mod schema;
pub mod store;

use std::sync::Arc;

use migration::FactMigrator;
use tenancy::app::{AppRuntime, start_app};
use tenancy::bus::EventBus;
use tenancy::config::TenancyConfig;
use tenancy::events::ServiceName;
use tenancy::hop::HopSecret;
use tokio_util::sync::CancellationToken;

/// The default address of the fact subgraph.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4002";

/// A started fact subgraph.
pub struct FactService {
    /// The HTTP routes (`/graphql`, `/healthz`).
    pub router: axum::Router,
    /// The registry, selector and provisioner behind it.
    pub runtime: AppRuntime<FactMigrator>,
}

/// Starts the fact app's registry and provisioner and builds its routes.
pub async fn start(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> anyhow::Result<FactService> {
    let runtime = start_app::<FactMigrator>(ServiceName::Fact, config, bus, shutdown).await?;
    let schema = schema::build(runtime.selector.clone());
    let router = tenancy::graphql::subgraph_router(schema, HopSecret::new(&config.hop_secret));
    Ok(FactService { router, runtime })
}

/// Serves the fact subgraph on `listener` until `shutdown`.
pub async fn run(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = start(config, bus, shutdown.clone()).await?;
    tenancy::app::serve_app("fact", listener, service.router, service.runtime, shutdown).await
}
