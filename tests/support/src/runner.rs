//! A penguin-runner started as a child process for tests: its socket and
//! work directory in a temporary directory, run as an unprivileged user when
//! the tests run as root (the runner refuses root).

use crate::{binaries::workspace_binary, process::ServiceProcess};
use penguin_runner_client::{RunnerAddr, RunnerClient};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// The user jobs run as when the tests run as root: `nobody`.
pub const UNPRIVILEGED: (u32, u32) = (65534, 65534);

/// (uid, gid) to start the runner as: `nobody` under root, else ourselves.
pub fn runner_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(UNPRIVILEGED)
}

/// A copy of `binary` that `nobody` can execute: the checkout may sit under
/// a directory only root can enter (`/root`). Keyed by size and mtime, made
/// atomically, shared by every test process.
fn reachable_copy(binary: &Path) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(binary).expect("the runner binary");
    let dir = std::env::temp_dir().join("penguin-runner-bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(format!(
        "penguin-runner-{}-{}",
        meta.len(),
        meta.mtime_nsec() ^ meta.mtime()
    ));
    if !copy.exists() {
        let partial = dir.join(format!(".partial-{}", std::process::id()));
        std::fs::copy(binary, &partial).unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&partial, &copy).unwrap();
        // Copies of older builds (a running one keeps its unlinked file).
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path() != copy
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("penguin-runner-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    copy
}

/// A running penguin-runner.
pub struct TestRunner {
    /// The process (logs, pid).
    pub process: ServiceProcess,
    /// Holds the socket and work directory.
    pub dir: tempfile::TempDir,
    /// The Unix socket.
    pub socket: PathBuf,
    /// Where job directories go.
    pub work_dir: PathBuf,
}

impl TestRunner {
    /// Starts a runner on a Unix socket with `env` on top of the defaults.
    pub async fn start(env: &[(&str, String)]) -> TestRunner {
        let dir = tempfile::Builder::new()
            .prefix("penguin-runner-test-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("run/runner.sock");
        let work_dir = dir.path().join("work");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&work_dir).unwrap();
        let user = runner_user();
        if let Some((uid, gid)) = user {
            for path in [
                dir.path().to_path_buf(),
                socket.parent().unwrap().to_path_buf(),
                work_dir.clone(),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut vars: HashMap<String, String> = HashMap::from([
            ("PENGUIN_RUNNER_SOCKET".into(), socket.display().to_string()),
            (
                "PENGUIN_RUNNER_WORK_DIR".into(),
                work_dir.display().to_string(),
            ),
            ("PENGUIN_RUNNER_QUEUE_WAIT_SECS".into(), "30".into()),
        ]);
        for (name, value) in env {
            vars.insert(name.to_string(), value.clone());
        }
        let binary = match user {
            Some(_) => reachable_copy(&workspace_binary("penguin-runner")),
            None => workspace_binary("penguin-runner"),
        };
        let process =
            ServiceProcess::spawn_as(&binary, &[], &vars, user).expect("start penguin-runner");
        process
            .wait_for_log("gRPC listening on Unix socket", Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("penguin-runner did not start:\n{}", process.logs()));
        TestRunner {
            process,
            dir,
            socket,
            work_dir,
        }
    }

    /// `unix:<socket>`.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The api's environment for commands to run here.
    pub fn api_env(&self) -> Vec<(String, String)> {
        vec![
            ("PENGUIN_RUNNER".into(), "remote".into()),
            ("PENGUIN_RUNNER_ADDR".into(), self.addr()),
        ]
    }

    /// A client over the Unix socket.
    pub fn client(&self) -> RunnerClient {
        RunnerClient::new(&RunnerAddr::Unix(self.socket.clone()), None, None).expect("client")
    }
}
