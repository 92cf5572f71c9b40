//! Running the configured pre/post hooks of an action: each command with a
//! clean environment (PATH and its own `env` only — no secrets), the action's
//! JSON context on stdin, and a timeout. A failing pre-hook aborts the action;
//! a failing post-hook is reported.

use crate::config::HookCommand;
use std::{fmt, process::Stdio, time::Duration};
use tokio::io::AsyncWriteExt;

/// stderr kept for the report.
const STDERR_LIMIT: usize = 4096;

/// A hook that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookFailure {
    /// The program.
    pub program: String,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// It was killed at its timeout.
    pub timed_out: bool,
    /// What it wrote to stderr (truncated, redacted).
    pub stderr: String,
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.timed_out, self.exit_code) {
            (true, _) => write!(f, "hook {} timed out", self.program)?,
            (false, Some(code)) => write!(f, "hook {} exited with {code}", self.program)?,
            (false, None) => write!(f, "hook {} could not run", self.program)?,
        }
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

/// Runs `commands` in order, stopping at the first failure.
pub async fn run_hooks(
    commands: &[HookCommand],
    context: &serde_json::Value,
) -> Result<(), HookFailure> {
    let input = serde_json::to_vec(context).unwrap_or_default();
    for command in commands {
        run_one(command, &input).await?;
    }
    Ok(())
}

async fn run_one(command: &HookCommand, input: &[u8]) -> Result<(), HookFailure> {
    let program = command.argv.first().cloned().unwrap_or_default();
    let failure = |exit_code, timed_out, stderr: &[u8]| {
        let text = String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_LIMIT)]);
        HookFailure {
            program: program.clone(),
            exit_code,
            timed_out,
            // Hooks are operator scripts that may print a token they used.
            stderr: penguin_telemetry::redact(&penguin_agent::strip_hidden(text.trim()))
                .into_owned(),
        }
    };
    let mut child = tokio::process::Command::new(&program)
        .args(&command.argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(&command.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failure(None, false, e.to_string().as_bytes()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores its input closes the pipe early; that is fine.
        let _ = stdin.write_all(input).await;
    }
    let timeout = Duration::from_secs(command.timeout_secs.max(1));
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(failure(output.status.code(), false, &output.stderr)),
        Ok(Err(e)) => Err(failure(None, false, e.to_string().as_bytes())),
        Err(_) => Err(failure(None, true, b"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn hook(script: &str, timeout_secs: u64) -> HookCommand {
        HookCommand {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("HOOK_FLAVOUR".into(), "test".into())]),
            timeout_secs,
        }
    }

    #[tokio::test]
    async fn hooks_get_the_context_and_a_clean_environment() {
        std::env::set_var("GITHUB_TOKEN", "ghs_should_never_reach_hooks_0000000000");
        let context = serde_json::json!({"event": "review.run", "task_id": "task_1"});
        let checks = hook(
            r#"read ctx; case "$ctx" in *review.run*) ;; *) exit 3;; esac; [ "$HOOK_FLAVOUR" = test ] && [ -z "$GITHUB_TOKEN" ]"#,
            10,
        );
        run_hooks(&[checks], &context).await.unwrap();
    }

    #[tokio::test]
    async fn the_first_failure_stops_the_rest_with_its_stderr() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let after = hook(&format!("echo ran > {}", marker.path().display()), 10);
        let failing = hook("echo 'lint failed: 3 errors' >&2; exit 2", 10);
        let err = run_hooks(&[failing, after], &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code, Some(2));
        assert_eq!(err.stderr, "lint failed: 3 errors");
        assert!(err.to_string().contains("exited with 2: lint failed"));
        assert_eq!(
            std::fs::read_to_string(marker.path()).unwrap(),
            "",
            "later hooks must not run"
        );
    }

    #[tokio::test]
    async fn a_token_in_a_hooks_stderr_never_reaches_the_report() {
        // Both installation-token formats; the stateless one has `-` in it.
        let classic = format!("ghs_{}", "a1B2".repeat(9));
        let stateless = format!(
            "ghs_4242_eyJhbGciOiJSUzI1NiJ9.{}-{}_x",
            "eyJpc3MiOj".repeat(4),
            "Qk".repeat(30)
        );
        let failing = hook(
            &format!("echo \"push failed for {classic} and {stateless}\" >&2; exit 1"),
            10,
        );
        let err = run_hooks(&[failing], &serde_json::json!({}))
            .await
            .unwrap_err();
        let report = err.to_string();
        assert!(
            report.contains("push failed for [REDACTED] and [REDACTED]"),
            "{report}"
        );
        assert!(
            !report.contains("ghs_") && !report.contains("Qk"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_slow_hook_is_killed_at_its_timeout() {
        let started = std::time::Instant::now();
        let err = run_hooks(&[hook("sleep 30", 1)], &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(err.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));
        let missing = HookCommand {
            argv: vec!["/nonexistent/hook".into()],
            env: BTreeMap::new(),
            timeout_secs: 5,
        };
        assert!(run_hooks(&[missing], &serde_json::json!({}))
            .await
            .unwrap_err()
            .exit_code
            .is_none());
    }
}
