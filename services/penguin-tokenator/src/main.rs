//! penguin-tokenator: init tracing → config from env (exit 64 naming the bad
//! variable) → build → log each bound address → serve → drain on SIGTERM.

use penguin_config::{config_failure, parse_or_exit, EXIT_CONFIG};
use penguin_tokenator::{
    client,
    config::{Cli, Command},
    git_credential, Tokenator,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            penguin_telemetry::init(cli.args.log_format);
            runtime.block_on(serve(cli.args))
        }
        Command::GitCredential { operation } => runtime.block_on(async {
            let origin = cli.args.endpoints.server_origin();
            let stdin = std::io::stdin().lock();
            match git_credential::run(
                &operation,
                &cli.args.socket,
                &origin,
                stdin,
                std::io::stdout(),
            )
            .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!(
                        "penguin-tokenator git-credential: {}",
                        penguin_telemetry::redact(&err.to_string())
                    );
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Healthcheck => runtime.block_on(async {
            if client::ready(client::probe_addr(cli.args.http_addr)).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    }
}

async fn serve(args: penguin_tokenator::config::Args) -> ExitCode {
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(err) => return config_failure(&err),
    };
    if let Some(reason) = settings.tcp_off_reason {
        tracing::info!("TCP gRPC listener off: {reason}; the Unix socket still serves");
    }
    let tokenator = match Tokenator::build(settings).await {
        Ok(t) => t,
        Err(err) => {
            tracing::error!(%err, "cannot start");
            eprintln!("penguin-tokenator: {err}");
            return if err.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            };
        }
    };
    tracing::info!(addr = %tokenator.http_addr(), "HTTP (healthz, readyz, metrics) listening");
    tracing::info!(path = %tokenator.socket_path().display(), "gRPC listening on Unix socket");
    if let Some(addr) = tokenator.grpc_addr() {
        tracing::info!(%addr, "gRPC listening on TCP");
    }
    match tokenator.serve(penguin_signal::shutdown()).await {
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
