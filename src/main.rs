//! `cargo run`: every hybrid-tenancy service in one process (see the crate
//! documentation of `hybrid_tenancy`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The configuration file fills in the environment, so it must be read
    // while this is the only thread: before the runtime starts its workers.
    // SAFETY: no other thread exists yet.
    let config_file = match unsafe { hybrid_tenancy::config_file::load_into_environment() } {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };

    // The org subgraph's deepest chart queries need more stack per worker
    // than tokio's default in a debug build.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(org_subgraph::WORKER_STACK_BYTES)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(launch(config_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One clear line naming the setting, not a panic or a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn launch(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    tenancy::telemetry::init();
    if let Some(file) = config_file {
        tracing::info!(target: "launcher", file = %file.display(), "configuration file read");
    }
    let shutdown = tenancy::shutdown::on_signal();
    let config = hybrid_tenancy::LauncherConfig::from_env()?;
    hybrid_tenancy::run(config, shutdown).await
}
