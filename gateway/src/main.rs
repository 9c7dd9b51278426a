//! Runs the gateway alone, configured from the environment (see the crate
//! README for the variables).

use anyhow::Context;
use gateway::{GatewayConfig, serve};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = GatewayConfig::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .with_context(|| format!("binding {}", config.address))?;
    serve(config, listener, async {
        // If the signal handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
}
