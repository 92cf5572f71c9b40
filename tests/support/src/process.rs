//! A service binary started as a child process, with stderr captured so
//! tests can read bound addresses and search the logs for leaked secrets.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running service process; killed when dropped.
pub struct ServiceProcess {
    child: Child,
    logs: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl ServiceProcess {
    /// Starts `binary` with exactly `env` (plus PATH and HOME) and `args`.
    pub fn spawn(
        binary: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
    ) -> std::io::Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let logs = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if std::env::var_os("PENGUIN_TEST_ECHO_LOGS").is_some() {
                        eprintln!("{line}");
                    }
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }));
        }
        Ok(ServiceProcess {
            child,
            logs,
            readers,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `marker`, returning that line.
    pub async fn wait_for_log(&self, marker: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        crate::eventually(timeout, || {
            found = self
                .logs()
                .lines()
                .find(|l| l.contains(marker))
                .map(str::to_string);
            found.is_some()
        })
        .await;
        found
    }

    /// The `addr` field of the first log line containing `marker`, in the
    /// text (`addr=…`) or JSON (`"addr":"…"`) log format.
    pub async fn bound_addr(&self, marker: &str) -> Option<SocketAddr> {
        let line = self.wait_for_log(marker, Duration::from_secs(20)).await?;
        let value = line
            .split_once("addr=")
            .or_else(|| line.split_once("\"addr\":"))?
            .1;
        let value = value.trim_start_matches('"');
        let end = value.find(['"', ' ', ',', '}']).unwrap_or(value.len());
        value[..end].parse().ok()
    }

    /// Waits for the process to exit by itself, and for everything it wrote
    /// to be read, so the logs are complete when this returns.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()?;
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status.code()
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.child.id()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        self.wait_exit(timeout).await
    }

    /// Kills the process at once (SIGKILL).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Asserts that none of `secrets` appears anywhere in the logs.
    pub fn assert_no_leak(&self, secrets: &[String]) {
        let logs = self.logs();
        for secret in secrets {
            assert!(
                !logs.contains(secret.as_str()),
                "a secret ({}…) appeared in the service's logs",
                &secret[..secret.len().min(8)]
            );
        }
    }
}
