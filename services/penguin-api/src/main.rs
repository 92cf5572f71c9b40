//! penguin-api: init tracing → config from env (exit 64 naming the bad
//! variable) → build → log the bound address → serve → drain on SIGTERM.

use penguin_api::{config::Cli, Api};
use penguin_config::{config_failure, parse_or_exit, EXIT_CONFIG};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    penguin_telemetry::init(cli.log_format);
    let settings = match cli.validate() {
        Ok(settings) => settings,
        Err(err) => return config_failure(&err),
    };
    if settings.llm.is_none() {
        tracing::warn!(
            "no model provider configured: chat and tasks answer 503 MODEL_NOT_CONFIGURED"
        );
    }
    let api = match Api::build(settings).await {
        Ok(api) => api,
        Err(err) => {
            tracing::error!(%err, "cannot start");
            eprintln!("penguin-api: {err}");
            return if err.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match api.local_addr() {
        Ok(addr) => tracing::info!(%addr, "HTTP API listening"),
        Err(err) => tracing::warn!(%err, "bound address unknown"),
    }
    let shutdown = async {
        penguin_signal::shutdown().await;
        tracing::info!("shutting down: draining in-flight requests and tasks");
    };
    match api.serve(shutdown).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server failed");
            ExitCode::FAILURE
        }
    }
}
