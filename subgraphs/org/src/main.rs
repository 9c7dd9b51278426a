//! Runs the org subgraph alone (one process per service).

use anyhow::Context;
use tenancy::config::TenancyConfig;

fn main() -> anyhow::Result<()> {
    // Chart queries nest one selection per level, and every level costs
    // stack on the worker that resolves it; a debug build needs more than
    // tokio's default 2 MiB for the deepest query the schema admits.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(org_subgraph::WORKER_STACK_BYTES)
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    tenancy::telemetry::init();
    let config = TenancyConfig::from_env()?;
    let bus = tenancy::bus::open_bus(&config).await?;
    let addr = std::env::var("ORG_ADDR").unwrap_or_else(|_| org_subgraph::DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("ORG_ADDR {addr}"))?;
    let shutdown = tenancy::shutdown::on_signal();
    org_subgraph::run(&config, bus, listener, shutdown).await
}
