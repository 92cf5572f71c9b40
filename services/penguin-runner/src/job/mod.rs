//! One job, from spec to cleanup: a fresh directory, the workspace unpacked
//! into it, the command run under the [supervisor](crate::supervisor) with
//! an empty environment plus the allowlist, output streamed as it comes and
//! capped, a wall-clock limit, the changes listed, then every process left
//! behind killed and the directory removed.

pub mod changes;
pub mod workspace;

use crate::{
    config::{is_env_name, Maxima},
    supervisor::{self, JobRlimits, Outcome},
};
use penguin_proto::runner::v1::{
    output::Stream as OutputStream, run_event::Event, Finished, JobSpec, Limits, Output, RunEvent,
    Started,
};
use std::{
    collections::BTreeMap,
    io::Read,
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Component, Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
};
use tonic::Status;

/// Output bytes per event.
const OUTPUT_CHUNK: usize = 16 * 1024;
/// How long a job's supervisor has to clean up after SIGTERM.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// The runner's job settings, fixed at start.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Where job directories are made.
    pub work_dir: PathBuf,
    /// Limits.
    pub maxima: Maxima,
    /// Variables from the runner's environment every job gets.
    pub base_env: BTreeMap<String, String>,
    /// How long a job waits for a slot.
    pub queue_wait: Duration,
    /// The supervisor executable (this binary).
    pub supervisor: PathBuf,
}

/// Runs jobs, at most `concurrency` at once.
pub struct Jobs {
    settings: JobSettings,
    slots: Arc<Semaphore>,
}

/// A validated job, waiting for its workspace.
pub struct Plan {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
    limits: Limits,
    collect_changes: bool,
    /// The caller's id.
    pub request_id: String,
    /// The runner's id.
    pub job_id: String,
}

impl Plan {
    /// The program's name, for the log (arguments may hold anything).
    pub fn argv0(&self) -> &str {
        &self.argv[0]
    }
}

/// A job's directory; removed (whatever the job did to its permissions)
/// when dropped.
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    fn workspace(&self) -> PathBuf {
        self.root.join("workspace")
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        let root = self.root.clone();
        let remove = move || force_remove(&root);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// Removes `dir`, first making every directory in it writable again (a job
/// may have left `chmod 000` directories behind).
fn force_remove(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    fn open_up(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&entry.path());
                }
            }
        }
    }
    open_up(dir);
    if let Err(err) = std::fs::remove_dir_all(dir) {
        tracing::error!(dir = %dir.display(), %err, "cannot remove a job directory");
    }
}

fn clamp(requested: u64, max: u64) -> u64 {
    if requested == 0 {
        max
    } else {
        requested.min(max)
    }
}

impl Jobs {
    /// Jobs with `settings`, `concurrency` at once.
    pub fn new(settings: JobSettings, concurrency: usize) -> Self {
        Jobs {
            settings,
            slots: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// Free job slots now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Checks a spec: INVALID_ARGUMENT with the reason when it is unusable.
    pub fn plan(&self, spec: JobSpec) -> Result<Plan, Status> {
        if spec.argv.is_empty() || spec.argv[0].is_empty() {
            return Err(Status::invalid_argument(
                "the job has no command (argv is empty)",
            ));
        }
        if spec.argv.iter().any(|a| a.contains('\0')) {
            return Err(Status::invalid_argument("an argument contains a NUL byte"));
        }
        let mut env = self.settings.base_env.clone();
        for (name, value) in spec.env {
            if !is_env_name(&name) {
                return Err(Status::invalid_argument(format!(
                    "{name:?} is not an environment variable name"
                )));
            }
            if name == "HOME" || name == "TMPDIR" {
                return Err(Status::invalid_argument(format!(
                    "{name} is the job's own directory and cannot be set"
                )));
            }
            if value.contains('\0') {
                return Err(Status::invalid_argument(format!(
                    "the value of {name} contains a NUL byte"
                )));
            }
            env.insert(name, value);
        }
        let mut workdir = PathBuf::new();
        for component in Path::new(&spec.workdir).components() {
            match component {
                Component::Normal(part) => workdir.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "the working directory {:?} must be relative and stay in the workspace",
                        spec.workdir
                    )))
                }
            }
        }
        let max = &self.settings.maxima;
        let asked = spec.limits.unwrap_or_default();
        let limits = Limits {
            wall_time_ms: clamp(
                asked.wall_time_ms,
                u64::try_from(max.wall.as_millis()).unwrap_or(u64::MAX),
            ),
            cpu_seconds: clamp(asked.cpu_seconds, max.cpu_secs),
            memory_bytes: clamp(asked.memory_bytes, max.memory_bytes),
            max_processes: clamp(asked.max_processes, max.processes),
            file_size_bytes: clamp(asked.file_size_bytes, max.file_bytes),
            open_files: clamp(asked.open_files, max.open_files),
            output_bytes: clamp(asked.output_bytes, max.output_bytes),
            changes_bytes: clamp(asked.changes_bytes, max.changes_bytes),
        };
        Ok(Plan {
            argv: spec.argv,
            env,
            workdir,
            limits,
            collect_changes: spec.collect_changes,
            request_id: spec.request_id.chars().take(128).collect(),
            job_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Waits for a free slot (RESOURCE_EXHAUSTED after the queue wait).
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        match tokio::time::timeout(self.settings.queue_wait, self.slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Status::unavailable("the runner is shutting down")),
            Err(_) => Err(Status::resource_exhausted(format!(
                "every job slot stayed busy for {} s; try again later",
                self.settings.queue_wait.as_secs()
            ))),
        }
    }

    /// Makes the job's directory: `workspace/`, `home/`, `tmp/`, all 0700.
    pub fn make_dir(&self, plan: &Plan) -> Result<JobDir, Status> {
        let root = self.settings.work_dir.join(format!("job-{}", plan.job_id));
        let dir = JobDir { root };
        for sub in ["", "workspace", "home", "tmp"] {
            let path = dir.root.join(sub);
            std::fs::create_dir_all(&path)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| Status::unavailable(format!("cannot make the job directory: {e}")))?;
        }
        Ok(dir)
    }

    /// Unpacks the workspace as its chunks arrive.
    pub async fn receive_workspace(
        &self,
        dir: &JobDir,
        mut chunks: impl futures::Stream<Item = Result<Vec<u8>, Status>> + Unpin,
    ) -> Result<u64, Status> {
        use futures::StreamExt;
        let max = self.settings.maxima.workspace_bytes;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let target = dir.workspace();
        let unpacking = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            workspace::unpack(reader, &target, max)
        });
        let mut received = 0u64;
        let mut any = false;
        let mut failure = None;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(data) => {
                    any = true;
                    received += data.len() as u64;
                    if received > max {
                        failure = Some(Status::resource_exhausted(format!(
                            "the workspace is larger than the runner's limit of {} MiB",
                            max / (1024 * 1024)
                        )));
                        break;
                    }
                    if tx.send(data).await.is_err() {
                        break; // the unpacker stopped: its error says why
                    }
                }
                Err(status) => {
                    failure = Some(status);
                    break;
                }
            }
        }
        drop(tx);
        if !any && failure.is_none() {
            // No workspace: an empty directory.
            unpacking.abort();
            return Ok(0);
        }
        let unpacked = unpacking
            .await
            .map_err(|e| Status::internal(format!("the unpacker failed: {e}")))?;
        if let Some(status) = failure {
            return Err(status);
        }
        let size = unpacked.map_err(|e| Status::invalid_argument(e.0))?;
        Ok(size)
    }

    /// Runs the planned job in `dir`, sending events to `events`, then
    /// cleans up. Returns the Finished event (also sent).
    pub async fn execute(
        &self,
        plan: Plan,
        dir: JobDir,
        events: mpsc::Sender<Result<RunEvent, Status>>,
    ) -> Finished {
        let workspace = dir.workspace();
        let cwd = workspace.join(&plan.workdir);
        let limits = plan.limits;
        let send = |event: Event| {
            let events = events.clone();
            async move {
                events
                    .send(Ok(RunEvent { event: Some(event) }))
                    .await
                    .is_ok()
            }
        };
        if !cwd.is_dir() {
            let _ = events
                .send(Err(Status::invalid_argument(format!(
                    "the working directory {} is not a directory in the workspace",
                    plan.workdir.display()
                ))))
                .await;
            return Finished::default();
        }
        let before = if plan.collect_changes {
            let root = workspace.clone();
            tokio::task::spawn_blocking(move || changes::Snapshot::take(&root))
                .await
                .ok()
        } else {
            None
        };

        let started = Instant::now();
        let run = self.spawn(&plan, &dir, &cwd);
        let (mut child, status_pipe) = match run {
            Ok(pair) => pair,
            Err(err) => {
                let _ = events
                    .send(Err(Status::unavailable(format!(
                        "cannot start the job's supervisor: {err}"
                    ))))
                    .await;
                return Finished::default();
            }
        };
        send(Event::Started(Started {
            job_id: plan.job_id.clone(),
            limits: Some(limits),
        }))
        .await;

        let budget = Arc::new(AtomicU64::new(limits.output_bytes));
        let truncated = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for (pipe, stream) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
                OutputStream::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
                OutputStream::Stderr,
            ),
        ] {
            if let Some(pipe) = pipe {
                readers.push(tokio::spawn(forward_output(
                    pipe,
                    stream,
                    budget.clone(),
                    truncated.clone(),
                    events.clone(),
                )));
            }
        }

        let wall = Duration::from_millis(limits.wall_time_ms);
        let supervisor_pid = child.id().and_then(|p| i32::try_from(p).ok());
        let terminate = || {
            if let Some(pid) = supervisor_pid {
                // SAFETY: kill on our own child's pid (not yet reaped).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        };
        let mut timed_out = false;
        let mut cancelled = false;
        tokio::select! {
            _ = child.wait() => {}
            _ = tokio::time::sleep(wall) => { timed_out = true; }
            _ = events.closed() => { tracing::info!("the caller left: killing the job"); cancelled = true; }
        }
        if timed_out || cancelled {
            terminate();
            if tokio::time::timeout(TERM_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        let duration = started.elapsed();
        for reader in readers {
            if tokio::time::timeout(TERM_GRACE, reader).await.is_err() {
                tracing::warn!("an output pipe stayed open after the job ended");
            }
        }
        let outcome = read_outcome(status_pipe);

        let (changes, changes_truncated) = match before {
            Some(before) if !cancelled => {
                let root = workspace.clone();
                let cap = limits.changes_bytes;
                tokio::task::spawn_blocking(move || changes::diff(&before, &root, cap))
                    .await
                    .unwrap_or_default()
            }
            _ => (Vec::new(), false),
        };
        for change in changes {
            if !send(Event::Change(change)).await {
                break;
            }
        }
        let finished = Finished {
            exit_code: if timed_out {
                None
            } else {
                outcome.and_then(|o| o.exit_code)
            },
            signal: if timed_out {
                Some(libc::SIGKILL)
            } else {
                outcome.and_then(|o| o.signal)
            },
            timed_out,
            output_truncated: truncated.load(Ordering::Relaxed),
            changes_truncated,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            leftover_processes_killed: outcome.map(|o| o.leftovers).unwrap_or(0),
        };
        tracing::info!(
            exit_code = ?finished.exit_code,
            signal = ?finished.signal,
            timed_out,
            cancelled,
            output_truncated = finished.output_truncated,
            leftovers = finished.leftover_processes_killed,
            duration_ms = finished.duration_ms,
            "job finished"
        );
        send(Event::Finished(finished)).await;
        drop(dir);
        finished
    }

    /// Starts the supervisor with the job's environment, limits and pipes.
    fn spawn(
        &self,
        plan: &Plan,
        dir: &JobDir,
        cwd: &Path,
    ) -> std::io::Result<(tokio::process::Child, std::io::PipeReader)> {
        let limits = plan.limits;
        let rlimits = JobRlimits {
            cpu_secs: limits.cpu_seconds,
            memory_bytes: limits.memory_bytes,
            // RLIMIT_NPROC counts every process and thread of the user,
            // the runner's own threads included.
            processes: limits.max_processes + own_threads() + 1,
            file_bytes: limits.file_size_bytes,
            open_files: limits.open_files,
        };
        let (status_read, status_write) = std::io::pipe()?;
        let write_fd = status_write.as_raw_fd();
        let mut command = tokio::process::Command::new(&self.settings.supervisor);
        command
            .arg(supervisor::SUBCOMMAND)
            .args(rlimits.to_args())
            .arg(&dir.root)
            .arg("--")
            .args(&plan.argv)
            .env_clear()
            .envs(&plan.env)
            .env("HOME", dir.root.join("home"))
            .env("TMPDIR", dir.root.join("tmp"))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: dup2, fcntl and prctl are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                // If the runner dies, the supervisor cleans up its job. (The
                // signal follows the spawning thread: a runtime worker, which
                // lives as long as the runner.)
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                if write_fd == supervisor::STATUS_FD {
                    let flags = libc::fcntl(write_fd, libc::F_GETFD);
                    libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(write_fd, supervisor::STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(status_write);
        Ok((child, status_read))
    }
}

/// The supervisor's status line (it has exited, so the pipe is at EOF).
fn read_outcome(mut pipe: std::io::PipeReader) -> Option<Outcome> {
    let mut line = String::new();
    pipe.read_to_string(&mut line).ok()?;
    Outcome::parse(&line)
}

/// Threads of this process (RLIMIT_NPROC counts them against the user).
fn own_threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(64)
}

/// Sends a pipe's bytes as Output events until EOF, within the shared
/// budget; bytes past it are read and dropped so the job never blocks.
async fn forward_output(
    mut pipe: Box<dyn AsyncRead + Send + Unpin>,
    stream: OutputStream,
    budget: Arc<AtomicU64>,
    truncated: Arc<AtomicBool>,
    events: mpsc::Sender<Result<RunEvent, Status>>,
) {
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let allowed = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(n as u64))
            })
            .unwrap_or(0)
            .min(n as u64) as usize;
        if allowed < n {
            truncated.store(true, Ordering::Relaxed);
        }
        if allowed > 0 {
            let event = RunEvent {
                event: Some(Event::Output(Output {
                    stream: stream as i32,
                    data: buf[..allowed].to_vec(),
                })),
            };
            if events.send(Ok(event)).await.is_err() {
                // The caller left; keep draining so the job is not blocked
                // before it is killed.
                budget.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// A blocking reader over chunks from an async channel (the unpacker runs on
/// a blocking thread while chunks arrive).
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
