//! Runs the tenant subgraph alone (one process per service).

use anyhow::Context;
use tenant_subgraph::TenantConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenancy::telemetry::init();
    let config = TenantConfig::from_env()?;
    let bus = tenancy::bus::open_bus(&config.tenancy).await?;
    let addr =
        std::env::var("TENANT_ADDR").unwrap_or_else(|_| tenant_subgraph::DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("TENANT_ADDR {addr}"))?;
    let shutdown = tenancy::shutdown::on_signal();
    tenant_subgraph::run(&config, bus, listener, shutdown).await
}
