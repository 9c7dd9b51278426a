//! `cargo run`: every hybrid-tenancy service in one process (see the crate
//! documentation of `hybrid_tenancy`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenancy::telemetry::init();
    let shutdown = tenancy::shutdown::on_signal();
    let outcome = match hybrid_tenancy::LauncherConfig::from_env() {
        Ok(config) => hybrid_tenancy::run(config, shutdown).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One clear line naming the setting, not a panic or a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
