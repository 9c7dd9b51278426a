//! Runs the gateway alone, configured from the environment (see the crate
//! README for the variables).

use anyhow::Context;
use gateway::{GatewayConfig, serve};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // The configuration sizes the runtime, so it is read before there is one.
    let config = GatewayConfig::from_env()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.address)
            .await
            .with_context(|| format!("binding {}", config.address))?;
        serve(config, listener, stop_signal()).await
    })
}

/// Resolves on Ctrl-C or SIGTERM (what a supervisor or `docker stop`
/// sends), so requests in flight can finish.
async fn stop_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, this signal never stops us.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!(target: "gateway", "shutting down");
}
