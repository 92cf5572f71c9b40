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
        Self::spawn_as(binary, args, env, None)
    }

    /// Like [`ServiceProcess::spawn`], as `user` (uid, gid) when given (the
    /// tests run as root on CI; the runner refuses root).
    pub fn spawn_as(
        binary: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
        user: Option<(u32, u32)>,
    ) -> std::io::Result<Self> {
        let mut command = Command::new(binary);
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
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

    /// Asserts that no installation token, nor any piece of one (see [`leaked_token_piece`]),
    /// appears anywhere in the logs.
    pub fn assert_no_token_leak(&self, tokens: &[String]) {
        let logs = self.logs();
        for token in tokens {
            if let Some(piece) = leaked_token_piece(&logs, token) {
                panic!(
                    "{} characters of a token ({}…) appeared in the service's logs",
                    piece.len(),
                    &token[..token.len().min(8)]
                );
            }
        }
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

/// Length of the token pieces [`leaked_token_piece`] looks for.
const TOKEN_PIECE: usize = 20;

/// The first part of `token` found in `logs`: the whole token, or a piece of
/// [`TOKEN_PIECE`] characters (tried every 4, and the last) of what is secret in it. A redaction that
/// stops early (at the `-` of a stateless `ghs_<app id>_<JWT>` token, say) masks the head of
/// a token and prints the rest, so searching for whole tokens finds nothing; any 23
/// consecutive secret characters are found here. In a JWT-shaped token the part before the
/// first `.` (the `ghs_<app id>_` prefix and the JWT header) is public and the same for
/// every token, so only what follows it counts.
pub fn leaked_token_piece<'a>(logs: &str, token: &'a str) -> Option<&'a str> {
    if token.is_empty() {
        return None;
    }
    if logs.contains(token) {
        return Some(token);
    }
    let secret_from = match token.find('.') {
        Some(dot) if token.matches('.').count() >= 2 => dot + 1,
        _ => 0,
    };
    let last = token.len().saturating_sub(TOKEN_PIECE);
    (secret_from..last)
        .step_by(4)
        .chain((secret_from <= last).then_some(last))
        .filter(|&i| token.is_char_boundary(i) && token.is_char_boundary(i + TOKEN_PIECE))
        .map(|i| &token[i..i + TOKEN_PIECE])
        .find(|piece| logs.contains(piece))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pieces_are_found_whole_or_in_part() {
        let token = format!(
            "ghs_4242_eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.{}.{}-{}",
            "eyJpc3MiOiI0MjQyIn0".repeat(5),
            "Ab3_",
            "kL9x_Qm2ZpT7vRw4YcN8"
        );
        assert_eq!(leaked_token_piece("nothing here", &token), None);
        assert_eq!(
            leaked_token_piece(&format!("token={token} end"), &token),
            Some(token.as_str())
        );
        // An old redaction pattern masked everything up to the `-`.
        let tail = &token[token.find('-').unwrap()..];
        assert!(leaked_token_piece(&format!("token=[REDACTED]{tail}"), &token).is_some());
        // The public head of every stateless token is no leak.
        let head = &token[..token.find('.').unwrap() + 1];
        assert_eq!(leaked_token_piece(&format!("saw {head}"), &token), None);
        let classic = format!("ghs_{}", "a1B2c3D4e5".repeat(4));
        assert!(leaked_token_piece(&format!("x{}", &classic[10..35]), &classic).is_some());
        assert_eq!(leaked_token_piece("short", "ghs_1"), None);
    }
}
