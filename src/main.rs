//! The launcher: runs the tenant and fact subgraphs, each on its own port, in
//! one process (development). Each also runs alone as its own binary.

use std::sync::Arc;

use anyhow::Context;
use tenancy::bus::{EventBus, KafkaBus};
use tenant_subgraph::TenantConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenancy::telemetry::init();
    let config = TenantConfig::from_env()?;
    let bus: Arc<dyn EventBus> = Arc::new(KafkaBus::new(config.tenancy.require_kafka()?)?);
    let shutdown = tenancy::shutdown::on_signal();

    let tenant_addr =
        std::env::var("TENANT_ADDR").unwrap_or_else(|_| tenant_subgraph::DEFAULT_ADDR.to_owned());
    let fact_addr =
        std::env::var("FACT_ADDR").unwrap_or_else(|_| fact_subgraph::DEFAULT_ADDR.to_owned());
    let tenant_listener = bind(&tenant_addr, "TENANT_ADDR").await?;
    let fact_listener = bind(&fact_addr, "FACT_ADDR").await?;

    let tenant = tenant_subgraph::run(&config, bus.clone(), tenant_listener, shutdown.clone());
    let fact = fact_subgraph::run(&config.tenancy, bus, fact_listener, shutdown.clone());
    tokio::try_join!(tenant, fact)?;
    Ok(())
}

async fn bind(addr: &str, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{setting} {addr}: cannot listen"))
}
