//! penguin-api: init tracing → config from env (exit 64 naming the bad
//! variable) → build → log the bound address → serve → drain on SIGTERM.
//! `healthcheck` and `self-test` serve containers that have no shell.

use penguin_api::{
    config::{Cli, Command, Settings},
    Api,
};
use penguin_config::{config_failure, parse_or_exit, EXIT_CONFIG};
use std::{process::ExitCode, time::Duration};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    let command = cli.command.as_ref().unwrap_or(&Command::Serve);
    if let Command::Healthcheck = command {
        let addr = penguin_signal::probe::local((cli.host, cli.port).into());
        return if penguin_signal::probe::http_ok(addr, "/api/v1/health").await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    penguin_telemetry::init(cli.log_format);
    let settings = match cli.validate() {
        Ok(settings) => settings,
        Err(err) => return config_failure(&err),
    };
    match command {
        Command::SelfTest {
            pushes,
            interval_secs,
        } => self_test(&settings, *pushes, Duration::from_secs(*interval_secs)).await,
        _ => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> ExitCode {
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

async fn self_test(settings: &Settings, pushes: u32, interval: Duration) -> ExitCode {
    match penguin_api::selftest::run(settings, pushes, interval).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("penguin-api self-test: {failed} of {pushes} pushes failed");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("penguin-api self-test: {err}");
            ExitCode::FAILURE
        }
    }
}
