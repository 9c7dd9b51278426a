//! Runs the todo subgraph alone (one process per service).

use anyhow::Context;
use tenancy::config::TenancyConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenancy::telemetry::init();
    let config = TenancyConfig::from_env()?;
    let bus = tenancy::bus::open_bus(&config).await?;
    let addr =
        std::env::var("TODO_ADDR").unwrap_or_else(|_| todo_subgraph::DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("TODO_ADDR {addr}"))?;
    let shutdown = tenancy::shutdown::on_signal();
    todo_subgraph::run(&config, bus, listener, shutdown).await
}
