//! The org subgraph: each tenant's org chart, in the tenant's own
//! `org_<tenant>` database.
//!
//! - [`schema`]: the GraphQL API (members CRUD, `manager`/`reports`, the
//!   chart, and `Tenant.orgChart` on the federated `Tenant` entity).
//! - [`store`]: data access through a tenant's connection, and the rules that
//!   keep the chart a forest (no cycles, no orphaned reports).
//! - [`chart`]: the chart in memory, built from one query per request.
//! - [`run`]: start-up: registry, provisioner, HTTP server.

pub mod chart;
pub mod schema;
pub mod store;

use std::sync::Arc;

use migration::OrgMigrator;
use tenancy::app::{AppRuntime, start_app};
use tenancy::bus::EventBus;
use tenancy::config::TenancyConfig;
use tenancy::events::ServiceName;
use tenancy::hop::HopSecret;
use tokio_util::sync::CancellationToken;

use crate::store::QueryCounter;

/// The default address of the org subgraph.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4003";

/// The stack each tokio worker serving this subgraph should have: the
/// deepest chart query the schema admits (about 60 levels) needs about
/// 40 KB per level in a debug build, several times less in a release build
/// (which serves it on tokio's default 2 MiB). A process that runs the org
/// subgraph, such as the launcher, should build its runtime with this.
pub const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;

/// A started org subgraph.
pub struct OrgService {
    /// The HTTP routes (`/graphql`, `/healthz`).
    pub router: axum::Router,
    /// The registry, selector and provisioner behind it.
    pub runtime: AppRuntime<OrgMigrator>,
    /// How many SQL statements the subgraph has run on tenant databases.
    pub queries: QueryCounter,
}

/// Starts the org app's registry and provisioner and builds its routes.
pub async fn start(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> anyhow::Result<OrgService> {
    let runtime = start_app::<OrgMigrator>(ServiceName::Org, config, bus, shutdown).await?;
    let queries = QueryCounter::default();
    let schema = schema::build(runtime.selector.clone(), queries.clone());
    let router = tenancy::graphql::subgraph_router(schema, HopSecret::new(&config.hop_secret));
    Ok(OrgService {
        router,
        runtime,
        queries,
    })
}

/// Serves the org subgraph on `listener` until `shutdown`.
pub async fn run(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = start(config, bus, shutdown.clone()).await?;
    tenancy::app::serve_app("org", listener, service.router, service.runtime, shutdown).await
}
