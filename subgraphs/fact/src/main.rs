//! Runs the fact subgraph alone (one process per service).

use anyhow::Context;
use tenancy::config::TenancyConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenancy::telemetry::init();
    let config = TenancyConfig::from_env()?;
    let bus = tenancy::bus::open_bus(&config).await?;
    let addr =
        std::env::var("FACT_ADDR").unwrap_or_else(|_| fact_subgraph::DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("FACT_ADDR {addr}"))?;
    let shutdown = tenancy::shutdown::on_signal();
    fact_subgraph::run(&config, bus, listener, shutdown).await
}
