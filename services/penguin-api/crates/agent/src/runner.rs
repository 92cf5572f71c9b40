//! Where `run_command` runs.
//!
//! - [`LocalRunner`]: `sh -c` in a scratch copy of the workspace with a clean
//!   environment. It keeps the real workspace and the server's secrets in
//!   environment variables away from the command, but it is NOT a sandbox:
//!   the command runs as the server's user and can read whatever that user
//!   can read. Use it for development; use [`DockerRunner`] in production.
//! - [`DockerRunner`]: a throw-away container without network, with a
//!   read-only root and the workspace mounted read-only.

use crate::config::SecurityPolicy;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Cap on each of stdout and stderr; the rest is dropped and a
/// `[truncated]` marker appended.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How long to wait for output pipes to close after the command ended
/// (a process that escaped the group may still hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The environment of a [`LocalRunner`] command's `PATH`.
pub const LOCAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a command produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandOutput {
    /// The exit code; `None` when killed by a signal (for example on timeout).
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8, at most [`MAX_OUTPUT_BYTES`] plus a marker).
    pub stdout: String,
    /// Standard error (same cap).
    pub stderr: String,
    /// The command was killed because it ran out of time.
    pub timed_out: bool,
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The scratch copy of the workspace could not be prepared.
    #[error("cannot prepare the scratch copy of the workspace: {0}")]
    Workspace(String),
    /// The configuration of the runner is unusable.
    #[error("invalid runner configuration: {0}")]
    Config(String),
    /// The process could not be started.
    #[error("cannot start the command: {0}")]
    Spawn(String),
    /// Waiting for the process failed.
    #[error("error while running the command: {0}")]
    Io(String),
    /// The remote runner is unreachable, busy or restarting (a retry can help).
    #[error("the runner is unavailable: {0}")]
    Unavailable(String),
    /// The remote runner refused the job.
    #[error("the runner refused the command: {0}")]
    Remote(String),
}

impl RunnerError {
    /// True when trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, RunnerError::Unavailable(_))
    }
}

/// Runs shell commands for the agent.
#[async_trait::async_trait]
pub trait CommandRunner: Send + Sync {
    /// Runs `command` with `sh -c`, killing it after `timeout`.
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, RunnerError>;
    /// A short name for logs (`local`, `docker`).
    fn name(&self) -> &str;
}

// ---------------------------------------------------------------------------
// Shared process handling
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn into_string(self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            text.push_str("\n[truncated]");
        }
        text
    }
}

/// Reads everything, keeping the first [`MAX_OUTPUT_BYTES`] (the rest is
/// drained so the process never blocks on a full pipe).
async fn capture<R: AsyncRead + Unpin>(mut reader: R, sink: Arc<Mutex<Captured>>) {
    let mut chunk = vec![0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut captured = sink.lock().unwrap_or_else(|p| p.into_inner());
                let room = MAX_OUTPUT_BYTES - captured.bytes.len();
                if n > room {
                    captured.truncated = true;
                }
                captured.bytes.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Sends SIGKILL to a process group when told to or when dropped (the run
/// future may be dropped when the agent times out or is cancelled).
struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            if pgid > 1 {
                // SAFETY: killpg has no memory-safety preconditions; a stale
                // group id only yields ESRCH.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for `child` at most `timeout`; on timeout calls `on_timeout` and
/// kills it. The process group is always killed at the end (stragglers).
async fn supervise(
    mut child: Child,
    timeout: Duration,
    mut killer: GroupKiller,
    on_timeout: impl std::future::Future<Output = ()>,
) -> Result<CommandOutput, RunnerError> {
    let stdout_sink = Arc::new(Mutex::new(Captured::default()));
    let stderr_sink = Arc::new(Mutex::new(Captured::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(capture(out, stdout_sink.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(capture(err, stderr_sink.clone())));
    }

    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            killer.kill();
            on_timeout.await;
            let _ = child.start_kill();
            (child.wait().await, true)
        }
    };
    killer.kill();
    for mut reader in readers {
        if tokio::time::timeout(PIPE_GRACE, &mut reader).await.is_err() {
            reader.abort();
        }
    }
    let status = status.map_err(|e| RunnerError::Io(e.to_string()))?;
    let take = |sink: Arc<Mutex<Captured>>| {
        std::mem::take(&mut *sink.lock().unwrap_or_else(|p| p.into_inner())).into_string()
    };
    Ok(CommandOutput {
        exit_code: status.code(),
        stdout: take(stdout_sink),
        stderr: take(stderr_sink),
        timed_out,
    })
}

pub(crate) fn short(command: &str) -> String {
    const MAX: usize = 200;
    if command.len() <= MAX {
        return command.to_string();
    }
    let mut end = MAX;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &command[..end])
}

// ---------------------------------------------------------------------------
// LocalRunner
// ---------------------------------------------------------------------------

pub(crate) struct Scratch {
    _dir: tempfile::TempDir,
    pub(crate) work: PathBuf,
    home: PathBuf,
}

/// Where commands run (`PENGUIN_RUNNER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunnerKind {
    /// A subprocess in a scratch copy of the workspace (development, tests).
    Local,
    /// A container from `PENGUIN_RUNNER_IMAGE`, through a Docker daemon the
    /// api can reach (`DOCKER_HOST`); the shipped images have no Docker CLI.
    Docker,
    /// penguin-runner at `PENGUIN_RUNNER_ADDR`: the production choice.
    Remote,
}

/// Makes the configured kind of runner for a workspace: the one place that
/// turns `PENGUIN_RUNNER` into a [`CommandRunner`], for tasks and the bot.
#[derive(Clone)]
pub struct RunnerFactory {
    kind: RunnerKind,
    image: Option<String>,
    remote: Option<penguin_runner_client::RunnerClient>,
    policy: Arc<SecurityPolicy>,
}

impl RunnerFactory {
    /// Runners of `kind`; `image` is the container image of the docker
    /// runner; `policy` decides what the local runner copies.
    pub fn new(kind: RunnerKind, image: Option<String>, policy: Arc<SecurityPolicy>) -> Self {
        RunnerFactory {
            kind,
            image,
            remote: None,
            policy,
        }
    }

    /// Remote runners through `client` (for [`RunnerKind::Remote`]).
    pub fn with_remote(mut self, client: penguin_runner_client::RunnerClient) -> Self {
        self.remote = Some(client);
        self
    }

    /// The kind of runner made.
    pub fn kind(&self) -> RunnerKind {
        self.kind
    }

    /// The remote runner's client, when commands run remotely.
    pub fn remote_client(&self) -> Option<&penguin_runner_client::RunnerClient> {
        self.remote.as_ref()
    }

    /// A runner for commands in `workspace`.
    pub fn runner(&self, workspace: PathBuf) -> Arc<dyn CommandRunner> {
        match self.kind {
            RunnerKind::Local => Arc::new(LocalRunner::with_policy(workspace, self.policy.clone())),
            RunnerKind::Docker => Arc::new(DockerRunner::new(
                self.image.clone().unwrap_or_default(),
                workspace,
            )),
            RunnerKind::Remote => match &self.remote {
                Some(client) => Arc::new(crate::remote_runner::RemoteRunner::new(
                    client.clone(),
                    workspace,
                    self.policy.clone(),
                )),
                None => Arc::new(Unconfigured),
            },
        }
    }
}

/// `PENGUIN_RUNNER=remote` without a client: every command is refused with
/// the reason (settings validation makes this unreachable in the server).
struct Unconfigured;

#[async_trait::async_trait]
impl CommandRunner for Unconfigured {
    async fn run(&self, _: &str, _: Duration) -> Result<CommandOutput, RunnerError> {
        Err(RunnerError::Config(
            "PENGUIN_RUNNER=remote needs PENGUIN_RUNNER_ADDR".into(),
        ))
    }

    fn name(&self) -> &str {
        "remote"
    }
}

/// Runs commands as local subprocesses in a scratch copy of the workspace
/// (made once, on the first command; denied paths are not copied), with a
/// clean environment (`PATH`, `HOME`, `LANG`, `TERM` only), stdin closed, in
/// their own process group that is killed on timeout.
///
/// Not a sandbox: see the module documentation.
pub struct LocalRunner {
    workspace: PathBuf,
    policy: Arc<SecurityPolicy>,
    scratch: tokio::sync::OnceCell<Scratch>,
}

impl LocalRunner {
    /// A runner for `workspace` that skips the default denied globs when
    /// copying it.
    pub fn new(workspace: PathBuf) -> Self {
        LocalRunner::with_policy(workspace, Arc::new(SecurityPolicy::default_with(&[])))
    }

    /// A runner that skips the paths `policy` denies when copying.
    pub fn with_policy(workspace: PathBuf, policy: Arc<SecurityPolicy>) -> Self {
        LocalRunner {
            workspace,
            policy,
            scratch: tokio::sync::OnceCell::new(),
        }
    }

    /// The scratch working copy (made on first use).
    pub async fn scratch_dir(&self) -> Result<PathBuf, RunnerError> {
        Ok(self.scratch().await?.work.clone())
    }

    async fn scratch(&self) -> Result<&Scratch, RunnerError> {
        scratch_once(&self.scratch, &self.workspace, &self.policy).await
    }
}

/// The scratch copy in `cell`, made on first use (on a blocking thread).
pub(crate) async fn scratch_once<'a>(
    cell: &'a tokio::sync::OnceCell<Scratch>,
    workspace: &Path,
    policy: &Arc<SecurityPolicy>,
) -> Result<&'a Scratch, RunnerError> {
    cell.get_or_try_init(|| {
        let workspace = workspace.to_path_buf();
        let policy = policy.clone();
        async move {
            tokio::task::spawn_blocking(move || make_scratch(&workspace, &policy))
                .await
                .map_err(|e| RunnerError::Workspace(e.to_string()))?
        }
    })
    .await
}

fn make_scratch(workspace: &Path, policy: &SecurityPolicy) -> Result<Scratch, RunnerError> {
    let err = |e: std::io::Error| RunnerError::Workspace(e.to_string());
    let workspace = std::fs::canonicalize(workspace).map_err(err)?;
    let dir = tempfile::Builder::new()
        .prefix("penguin-scratch-")
        .tempdir()
        .map_err(err)?;
    let work = dir.path().join("work");
    let home = dir.path().join(".home");
    std::fs::create_dir(&work).map_err(err)?;
    std::fs::create_dir(&home).map_err(err)?;
    let mut skipped = 0usize;
    copy_tree(
        &workspace,
        &workspace,
        Path::new(""),
        &work,
        policy,
        &mut skipped,
    )
    .map_err(err)?;
    tracing::info!(scratch = %work.display(), skipped, "scratch copy of the workspace ready");
    Ok(Scratch {
        _dir: dir,
        work,
        home,
    })
}

/// Copies `src` (= `root`/`rel`) into `dst`, skipping denied entries,
/// special files and symbolic links that are absolute or leave the
/// workspace.
fn copy_tree(
    root: &Path,
    src: &Path,
    rel: &Path,
    dst: &Path,
    policy: &SecurityPolicy,
    skipped: &mut usize,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let entry_rel = rel.join(&name);
        let from = entry.path();
        let to = dst.join(&name);
        if policy.is_denied_entry(root, &entry_rel) {
            *skipped += 1;
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            let target = std::fs::read_link(&from)?;
            // Only relative links that stay inside (checked above through
            // is_denied_entry, which resolves the link) are recreated; an
            // absolute link would point back into the real workspace.
            if target.is_relative() {
                std::os::unix::fs::symlink(&target, &to)?;
            } else {
                *skipped += 1;
            }
        } else if file_type.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(root, &from, &entry_rel, &to, policy, skipped)?;
        } else if file_type.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            *skipped += 1;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl CommandRunner for LocalRunner {
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, RunnerError> {
        let scratch = self.scratch().await?;
        tracing::info!(runner = "local", command = %short(command), ?timeout, "running command");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&scratch.work)
            .env_clear()
            .env("PATH", LOCAL_PATH)
            .env("HOME", &scratch.home)
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| RunnerError::Spawn(e.to_string()))?;
        let killer = GroupKiller {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        };
        let output = supervise(child, timeout, killer, async {}).await?;
        tracing::info!(runner = "local", exit_code = ?output.exit_code, timed_out = output.timed_out, "command finished");
        Ok(output)
    }

    fn name(&self) -> &str {
        "local"
    }
}

// ---------------------------------------------------------------------------
// DockerRunner
// ---------------------------------------------------------------------------

/// Environment variables the `docker` client itself may need (the container
/// gets none of them).
const DOCKER_CLIENT_ENV: [&str; 8] = [
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "XDG_RUNTIME_DIR",
];

/// The arguments of `docker` (after the program name) that run `command`
/// in a throw-away container: no network, read-only root, `/tmp` in memory,
/// an unprivileged user, no capabilities, no privilege escalation, the
/// workspace mounted read-only at `/workspace`, no environment, no other
/// volumes.
pub fn docker_run_args(
    image: &str,
    workspace: &Path,
    container_name: &str,
    command: &str,
) -> Result<Vec<String>, RunnerError> {
    if image.is_empty() || image.starts_with('-') || image.chars().any(|c| c.is_whitespace()) {
        return Err(RunnerError::Config(format!("invalid image name {image:?}")));
    }
    let workspace = workspace
        .to_str()
        .ok_or_else(|| RunnerError::Config("the workspace path is not UTF-8".into()))?;
    if !workspace.starts_with('/') || workspace.contains([':', ',', '\n']) {
        return Err(RunnerError::Config(format!(
            "the workspace path {workspace:?} must be absolute and contain no ':' or ','"
        )));
    }
    if container_name.is_empty()
        || !container_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(RunnerError::Config(format!(
            "invalid container name {container_name:?}"
        )));
    }
    Ok(vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        container_name.into(),
        "--network".into(),
        "none".into(),
        "--read-only".into(),
        "--tmpfs".into(),
        "/tmp".into(),
        "--user".into(),
        "10001:10001".into(),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        // A runaway command must not starve the pod.
        "--pids-limit".into(),
        "256".into(),
        "--memory".into(),
        "2g".into(),
        "-v".into(),
        format!("{workspace}:/workspace:ro"),
        "-w".into(),
        "/workspace".into(),
        image.into(),
        "sh".into(),
        "-c".into(),
        command.into(),
    ])
}

/// Runs commands in a throw-away Docker container (see
/// [`docker_run_args`]). On timeout, or when the run is abandoned, the
/// container is killed by name.
pub struct DockerRunner {
    image: String,
    workspace: PathBuf,
    docker: PathBuf,
}

impl DockerRunner {
    /// A runner using `image` with `workspace` mounted read-only.
    pub fn new(image: String, workspace: PathBuf) -> Self {
        DockerRunner {
            image,
            workspace,
            docker: PathBuf::from("docker"),
        }
    }

    /// Uses another `docker` client binary (tests, or an absolute path).
    pub fn with_docker_binary(mut self, docker: PathBuf) -> Self {
        self.docker = docker;
        self
    }

    fn client(&self) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env_clear();
        for name in DOCKER_CLIENT_ENV {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd
    }
}

/// Kills a container by name if the run is abandoned before it finished.
struct ContainerKiller {
    docker: PathBuf,
    name: Option<String>,
}

impl Drop for ContainerKiller {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let spawned = std::process::Command::new(&self.docker)
                .args(["kill", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = spawned {
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
            }
        }
    }
}

#[async_trait::async_trait]
impl CommandRunner for DockerRunner {
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, RunnerError> {
        let workspace = std::fs::canonicalize(&self.workspace)
            .map_err(|e| RunnerError::Workspace(e.to_string()))?;
        let name = format!("penguin-agent-{}", uuid::Uuid::new_v4().simple());
        let args = docker_run_args(&self.image, &workspace, &name, command)?;
        tracing::info!(runner = "docker", container = %name, image = %self.image, command = %short(command), ?timeout, "running command");
        let mut cmd = self.client();
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| RunnerError::Spawn(e.to_string()))?;
        let mut container = ContainerKiller {
            docker: self.docker.clone(),
            name: Some(name.clone()),
        };
        let killer = GroupKiller {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        };
        let mut kill = self.client();
        kill.args(["kill", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let on_timeout = async move {
            tracing::warn!(runner = "docker", container = %name, "command timed out, killing the container");
            if let Ok(mut child) = kill.spawn() {
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
        };
        let result = supervise(child, timeout, killer, on_timeout).await;
        // Finished (or killed on timeout): nothing left to kill on drop.
        container.name = None;
        let output = result?;
        tracing::info!(runner = "docker", exit_code = ?output.exit_code, timed_out = output.timed_out, "command finished");
        Ok(output)
    }

    fn name(&self) -> &str {
        "docker"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_long_commands_on_char_boundaries() {
        let long = "é".repeat(300);
        let s = short(&long);
        assert!(s.ends_with('…'));
        assert!(s.len() <= 204);
        assert_eq!(short("ls"), "ls");
    }

    #[tokio::test]
    async fn output_is_capped() {
        let data = vec![b'a'; MAX_OUTPUT_BYTES + 10];
        let sink = Arc::new(Mutex::new(Captured::default()));
        capture(&data[..], sink.clone()).await;
        let text = std::mem::take(&mut *sink.lock().unwrap()).into_string();
        assert!(text.ends_with("\n[truncated]"));
        assert_eq!(text.len(), MAX_OUTPUT_BYTES + "\n[truncated]".len());
    }
}
