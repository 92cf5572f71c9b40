//! `penguin-runner exec`: one job on a running runner, its output streamed
//! to this process's stdout and stderr (operators, container tests).

use crate::config::ExecArgs;
use futures::StreamExt;
use penguin_proto::runner::v1::Limits;
use penguin_runner_client::{change_kind, workspace, Job, JobEvent, RunnerAddr, RunnerClient};
use std::{io::Write, path::Path};

/// Runs the job; returns the exit code to exit with: the job's own, 128 +
/// the signal that killed it, 124 on timeout, 125 when it could not run.
pub async fn run(socket: &Path, args: ExecArgs) -> i32 {
    match try_run(socket, args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("penguin-runner exec: {err}");
            125
        }
    }
}

async fn try_run(socket: &Path, args: ExecArgs) -> Result<i32, String> {
    let client = RunnerClient::new(&RunnerAddr::Unix(socket.to_path_buf()), None, None)
        .map_err(|e| e.to_string())?;
    let archive = match &args.dir {
        Some(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || workspace::pack(&dir, &|_| false))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let mut env = std::collections::BTreeMap::new();
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--env {pair:?} is not NAME=VALUE"))?;
        env.insert(name.to_string(), value.to_string());
    }
    let job = Job {
        argv: args.argv.clone(),
        env,
        workdir: args.workdir.clone(),
        limits: Limits {
            wall_time_ms: args.timeout_secs.saturating_mul(1000),
            ..Limits::default()
        },
        collect_changes: true,
        request_id: format!("exec-{}", std::process::id()),
    };
    let events = client
        .start(job, archive)
        .await
        .map_err(|e| e.to_string())?;
    futures::pin_mut!(events);
    let mut changes = Vec::new();
    while let Some(event) = events.next().await {
        match event.map_err(|e| e.to_string())? {
            JobEvent::Started(_) => {}
            JobEvent::Stdout(data) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
            JobEvent::Stderr(data) => {
                let _ = std::io::stderr().lock().write_all(&data);
            }
            JobEvent::Change(change) => {
                eprintln!(
                    "penguin-runner exec: {} {}",
                    change_kind(&change),
                    change.path
                );
                changes.push(change);
            }
            JobEvent::Finished(finished) => {
                if args.apply {
                    if let Some(dir) = &args.dir {
                        workspace::apply(dir, &changes).map_err(|e| e.to_string())?;
                    }
                }
                if finished.output_truncated {
                    eprintln!("penguin-runner exec: output was cut at the runner's cap");
                }
                if finished.timed_out {
                    eprintln!(
                        "penguin-runner exec: timed out after {} s",
                        args.timeout_secs
                    );
                    return Ok(124);
                }
                return Ok(match (finished.exit_code, finished.signal) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 125,
                });
            }
        }
    }
    Err("the runner ended the job without a result".into())
}
