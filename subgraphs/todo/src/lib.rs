//! The todo subgraph: each tenant's TODOs, in the tenant's own
//! `todo_<tenant>` database.
//!
//! - [`schema`]: the GraphQL API (TODO CRUD with a `done` filter, and
//!   `Tenant.todos` on the federated `Tenant` entity).
//! - [`store`]: data access, always through a tenant's connection.
//! - [`run`]: start-up: registry, provisioner, HTTP server.

pub mod schema;
pub mod store;

use std::sync::Arc;

use migration::TodoMigrator;
use tenancy::app::{AppRuntime, start_app};
use tenancy::bus::EventBus;
use tenancy::config::TenancyConfig;
use tenancy::events::ServiceName;
use tenancy::hop::HopSecret;
use tokio_util::sync::CancellationToken;

/// The default address of the todo subgraph.
pub const DEFAULT_ADDR: &str = "127.0.0.1:4004";

/// A started todo subgraph.
pub struct TodoService {
    /// The HTTP routes (`/graphql`, `/healthz`).
    pub router: axum::Router,
    /// The registry, selector and provisioner behind it.
    pub runtime: AppRuntime<TodoMigrator>,
}

/// Starts the todo app's registry and provisioner and builds its routes.
pub async fn start(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) -> anyhow::Result<TodoService> {
    let runtime = start_app::<TodoMigrator>(ServiceName::Todo, config, bus, shutdown).await?;
    let schema = schema::build(runtime.selector.clone());
    let router = tenancy::graphql::subgraph_router(schema, HopSecret::new(&config.hop_secret));
    Ok(TodoService { router, runtime })
}

/// Serves the todo subgraph on `listener` until `shutdown`.
pub async fn run(
    config: &TenancyConfig,
    bus: Arc<dyn EventBus>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = start(config, bus, shutdown.clone()).await?;
    tenancy::app::serve_app("todo", listener, service.router, service.runtime, shutdown).await
}
