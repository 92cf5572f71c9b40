//! penguin-api: init tracing → config from env (exit 64 naming the bad
//! variable) → build → log the bound address → serve → drain on SIGTERM.

use penguin_api::{config::Cli, router, AppState};
use penguin_config::parse_or_exit;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    penguin_telemetry::init(cli.log_format);
    let addr = cli.listen_addr();
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(%addr, %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => tracing::info!(addr = %bound, "HTTP API listening"),
        Err(err) => tracing::warn!(%err, "bound address unknown"),
    }
    let served = axum::serve(listener, router(AppState::new()))
        .with_graceful_shutdown(async {
            penguin_signal::shutdown().await;
            tracing::info!("shutting down: draining in-flight requests");
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}
