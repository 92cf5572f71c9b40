//! The tools the model may call.
//!
//! | tool           | arguments           | policy                                  |
//! |----------------|---------------------|-----------------------------------------|
//! | `list_files`   | `{path?: string}`   | path check; denied entries are omitted  |
//! | `read_file`    | `{path: string}`    | path check                              |
//! | `run_command`  | `{command: string}` | capability `shell`, then a runner       |
//!
//! Every call ends in an [`ActionResult`]; nothing here panics on the
//! model's arguments.

use crate::config::{Capability, Decision, SecurityPolicy};
use crate::runner::{CommandOutput, CommandRunner};
use penguin_llm::{ToolCall, ToolSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// At most this many entries are listed.
pub const MAX_LIST_ENTRIES: usize = 500;
/// At most this many bytes of a file are returned.
pub const MAX_READ_BYTES: usize = 64 * 1024;
/// Default time limit of one `run_command`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// `action` strings are cut to this many bytes.
const MAX_ACTION_LEN: usize = 200;

/// How a tool call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// It ran (for `run_command`: and exited 0).
    Completed,
    /// It failed: bad arguments, missing file, binary file, non-zero exit,
    /// timeout, unknown tool.
    Error,
    /// The security policy refused it.
    Denied,
    /// The capability is `ask` and nobody can approve it in an API task.
    NeedsApproval,
}

/// One tool call and its outcome; `result` is also what the model reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// What was done, e.g. `read_file src/main.rs`.
    pub action: String,
    /// The tool's output or the reason it did not run.
    pub result: String,
    /// How it ended.
    pub status: ActionStatus,
}

impl ActionResult {
    fn new(action: impl Into<String>, status: ActionStatus, result: impl Into<String>) -> Self {
        ActionResult {
            action: cut(&action.into(), MAX_ACTION_LEN),
            result: result.into(),
            status,
        }
    }
}

/// The tools offered to the model, bound to one workspace and policy.
pub struct ToolRegistry {
    workspace: PathBuf,
    policy: Arc<SecurityPolicy>,
    runner: Option<Arc<dyn CommandRunner>>,
    command_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFilesArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFileArgs {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCommandArgs {
    command: String,
}

impl ToolRegistry {
    /// File tools for `workspace`; `run_command` needs a runner
    /// ([`ToolRegistry::with_runner`]).
    pub fn new(workspace: PathBuf, policy: Arc<SecurityPolicy>) -> Self {
        ToolRegistry {
            workspace,
            policy,
            runner: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Where `run_command` runs.
    pub fn with_runner(mut self, runner: Arc<dyn CommandRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Time limit of one `run_command` (default two minutes).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The policy.
    pub fn policy(&self) -> &SecurityPolicy {
        &self.policy
    }

    /// The tools the model may call. `run_command` is offered only with a
    /// runner and when the shell capability is not denied.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![
            ToolSpec {
                name: "list_files".into(),
                description: "List a directory of the workspace (directories end with '/'). \
                              Paths are relative to the workspace root; omit `path` for the root."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Directory relative to the workspace root (default \".\")."}
                    },
                    "additionalProperties": false
                }),
            },
            ToolSpec {
                name: "read_file".into(),
                description: format!(
                    "Read a UTF-8 text file of the workspace (at most {} KiB are returned).",
                    MAX_READ_BYTES / 1024
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to the workspace root."}
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }),
            },
        ];
        if self.runner.is_some() && self.policy.decide(Capability::Shell) != Decision::Deny {
            specs.push(ToolSpec {
                name: "run_command".into(),
                description: "Run a shell command (sh -c) in an isolated copy of the workspace \
                              and return its exit code, stdout and stderr. Changes are not \
                              written back to the repository."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "The shell command."}
                    },
                    "required": ["command"],
                    "additionalProperties": false
                }),
            });
        }
        specs
    }

    /// Runs one tool call.
    pub async fn call(&self, call: &ToolCall) -> ActionResult {
        let result = match call.name.as_str() {
            "list_files" => self.list_files(&call.arguments).await,
            "read_file" => self.read_file(&call.arguments).await,
            "run_command" => self.run_command(&call.arguments).await,
            other => ActionResult::new(
                cut(other, MAX_ACTION_LEN),
                ActionStatus::Error,
                format!(
                    "unknown tool {:?}; available tools: {}",
                    cut(other, 100),
                    self.specs()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        tracing::info!(tool = %cut(&call.name, 100), action = %result.action, status = ?result.status, "tool call");
        result
    }

    async fn list_files(&self, raw: &str) -> ActionResult {
        let args: ListFilesArgs = match parse_args(raw) {
            Ok(args) => args,
            Err(e) => return ActionResult::new("list_files", ActionStatus::Error, e),
        };
        let requested = args.path.unwrap_or_else(|| ".".into());
        let requested = if requested.trim().is_empty() {
            ".".to_string()
        } else {
            requested
        };
        let action = format!("list_files {requested}");
        let dir = match self.policy.check_path(&self.workspace, &requested) {
            Ok(dir) => dir,
            Err(denied) => {
                return ActionResult::new(action, ActionStatus::Denied, denied.to_string())
            }
        };
        let workspace = self.workspace.clone();
        let policy = self.policy.clone();
        let listed = tokio::task::spawn_blocking(move || list_dir(&workspace, &policy, &dir)).await;
        match listed {
            Ok(Ok(text)) => ActionResult::new(action, ActionStatus::Completed, text),
            Ok(Err(e)) => ActionResult::new(action, ActionStatus::Error, e),
            Err(e) => {
                ActionResult::new(action, ActionStatus::Error, format!("internal error: {e}"))
            }
        }
    }

    async fn read_file(&self, raw: &str) -> ActionResult {
        let args: ReadFileArgs = match parse_args(raw) {
            Ok(args) => args,
            Err(e) => return ActionResult::new("read_file", ActionStatus::Error, e),
        };
        let action = format!("read_file {}", args.path);
        let path = match self.policy.check_path(&self.workspace, &args.path) {
            Ok(path) => path,
            Err(denied) => {
                return ActionResult::new(action, ActionStatus::Denied, denied.to_string())
            }
        };
        match tokio::task::spawn_blocking(move || read_text(&path)).await {
            Ok(Ok(text)) => ActionResult::new(action, ActionStatus::Completed, text),
            Ok(Err(e)) => ActionResult::new(action, ActionStatus::Error, e),
            Err(e) => {
                ActionResult::new(action, ActionStatus::Error, format!("internal error: {e}"))
            }
        }
    }

    async fn run_command(&self, raw: &str) -> ActionResult {
        let args: RunCommandArgs = match parse_args(raw) {
            Ok(args) => args,
            Err(e) => return ActionResult::new("run_command", ActionStatus::Error, e),
        };
        let action = format!("run_command {}", args.command);
        if args.command.trim().is_empty() {
            return ActionResult::new(action, ActionStatus::Error, "the command is empty");
        }
        if args.command.contains('\0') {
            return ActionResult::new(
                action,
                ActionStatus::Error,
                "the command contains a NUL character",
            );
        }
        match self.policy.decide(Capability::Shell) {
            Decision::Deny => {
                return ActionResult::new(
                    action,
                    ActionStatus::Denied,
                    "denied by the security policy: shell commands are not allowed",
                )
            }
            Decision::Ask => {
                return ActionResult::new(
                    action,
                    ActionStatus::NeedsApproval,
                    format!(
                        "requires approval: shell commands need a person's approval, which is \
                         not available in this task; the command was not run: {}",
                        cut(&args.command, MAX_ACTION_LEN)
                    ),
                )
            }
            Decision::Allow => {}
        }
        let Some(runner) = &self.runner else {
            return ActionResult::new(
                action,
                ActionStatus::Error,
                "no command runner is configured",
            );
        };
        match runner.run(&args.command, self.command_timeout).await {
            Ok(output) => {
                let status = if output.exit_code == Some(0) && !output.timed_out {
                    ActionStatus::Completed
                } else {
                    ActionStatus::Error
                };
                ActionResult::new(action, status, format_output(&output, self.command_timeout))
            }
            Err(e) => ActionResult::new(action, ActionStatus::Error, e.to_string()),
        }
    }
}

/// Parses tool arguments: a JSON object (empty text counts as `{}`).
fn parse_args<T: DeserializeOwned>(raw: &str) -> Result<T, String> {
    let raw = raw.trim();
    let raw = if raw.is_empty() { "{}" } else { raw };
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| format!("invalid arguments: not valid JSON ({e})"))?;
    if !value.is_object() {
        return Err("invalid arguments: expected a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("invalid arguments: {e}"))
}

fn list_dir(workspace: &Path, policy: &SecurityPolicy, dir: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot list the directory: {e}"))?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    let ws = std::fs::canonicalize(workspace).map_err(|e| format!("workspace unavailable: {e}"))?;
    let rel_dir = dir.strip_prefix(&ws).unwrap_or(Path::new(""));
    let mut names = Vec::new();
    let mut omitted = 0usize;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot list the directory: {e}"))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            omitted += 1;
            continue;
        };
        let rel = rel_dir.join(name);
        let Some(rel_str) = rel.to_str() else {
            continue;
        };
        match policy.resolve(workspace, rel_str) {
            Ok(resolved) => {
                let is_dir = std::fs::metadata(&resolved)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                names.push(if is_dir {
                    format!("{name}/")
                } else {
                    name.to_string()
                });
            }
            Err(_) => omitted += 1,
        }
    }
    if omitted > 0 {
        tracing::info!(dir = %rel_dir.display(), omitted, "entries omitted from a listing by the security policy");
    }
    names.sort();
    let total = names.len();
    if total == 0 {
        return Ok("(empty directory)".into());
    }
    let mut text = names
        .into_iter()
        .take(MAX_LIST_ENTRIES)
        .collect::<Vec<_>>()
        .join("\n");
    if total > MAX_LIST_ENTRIES {
        text.push_str(&format!(
            "\n[truncated: {} more entries]",
            total - MAX_LIST_ENTRIES
        ));
    }
    Ok(text)
}

fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "this is a directory; use list_files".into()
        } else {
            "not a regular file".into()
        });
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let truncated = bytes.len() > MAX_READ_BYTES;
    bytes.truncate(MAX_READ_BYTES);
    if bytes.contains(&0) {
        return Err("binary file (not UTF-8 text)".into());
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        // A character cut by the cap at the very end is fine.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err("binary file (not UTF-8 text)".into()),
    };
    let mut text = text.to_string();
    if truncated {
        text.push_str("\n[truncated]");
    }
    Ok(text)
}

fn format_output(output: &CommandOutput, timeout: Duration) -> String {
    let mut text = String::new();
    if output.timed_out {
        text.push_str(&format!(
            "timed out after {}s and was killed\n",
            timeout.as_secs_f32()
        ));
    }
    match output.exit_code {
        Some(code) => text.push_str(&format!("exit code: {code}\n")),
        None => text.push_str("exit code: none (killed by a signal)\n"),
    }
    text.push_str("stdout:\n");
    text.push_str(&output.stdout);
    if !output.stdout.is_empty() && !output.stdout.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("stderr:\n");
    text.push_str(&output.stderr);
    text
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parsing() {
        let ok: ListFilesArgs = parse_args("").unwrap();
        assert!(ok.path.is_none());
        let ok: ListFilesArgs = parse_args(r#"{"path": null}"#).unwrap();
        assert!(ok.path.is_none());
        assert!(parse_args::<ReadFileArgs>("[1]")
            .unwrap_err()
            .contains("JSON object"));
        assert!(parse_args::<ReadFileArgs>("{")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse_args::<ReadFileArgs>("{}")
            .unwrap_err()
            .contains("path"));
        assert!(parse_args::<ReadFileArgs>(r#"{"path": 3}"#).is_err());
        assert!(parse_args::<ReadFileArgs>(r#"{"path": "a", "x": 1}"#)
            .unwrap_err()
            .contains('x'));
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
