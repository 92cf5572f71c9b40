//! penguin-runner: init tracing → config from env (exit 64 naming the bad
//! variable) → refuse root → build → log each bound address → serve → drain
//! on SIGTERM. Also the job supervisor (`__supervise`, before anything else
//! starts), the health check and an exec client.

use penguin_config::{config_failure, parse_or_exit, EXIT_CONFIG};
use penguin_runner::{
    config::{Cli, Command},
    exec, supervisor, Runner,
};
use penguin_runner_client::{RunnerAddr, RunnerClient};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The supervisor is synchronous and must start fast: no clap, no runtime.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(supervisor::SUBCOMMAND) {
        let code = supervisor::main(&raw[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(70));
    }
    // Jobs run as this user: they must not read this process's memory or
    // environment through /proc, nor ptrace it.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
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
        Command::Healthcheck => runtime.block_on(async {
            let client = RunnerClient::new(&RunnerAddr::Unix(cli.args.socket.clone()), None, None);
            let serving = match client {
                Ok(client) => {
                    tokio::time::timeout(std::time::Duration::from_secs(3), client.is_serving())
                        .await
                        .unwrap_or(false)
                }
                Err(_) => false,
            };
            if serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Exec(args) => {
            let code = runtime.block_on(exec::run(&cli.args.socket, args));
            ExitCode::from(u8::try_from(code).unwrap_or(125))
        }
    }
}

async fn serve(args: penguin_runner::config::Args) -> ExitCode {
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(err) => return config_failure(&err),
    };
    let concurrency = settings.concurrency;
    let runner = match Runner::build(settings).await {
        Ok(runner) => runner,
        Err(err) => {
            tracing::error!(%err, "cannot start");
            eprintln!("penguin-runner: {err}");
            return if err.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            };
        }
    };
    tracing::info!(path = %runner.socket_path().display(), concurrency, "gRPC listening on Unix socket");
    if let Some(addr) = runner.grpc_addr() {
        tracing::info!(%addr, "gRPC listening on TCP (TLS, ServiceAccount JWTs)");
    }
    match runner.serve(penguin_signal::shutdown()).await {
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
