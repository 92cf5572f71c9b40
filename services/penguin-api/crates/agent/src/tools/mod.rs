//! The tools the model may call (OpenAI function calling; paths relative to
//! the workspace; `.git` and denied paths are never read or written).
//!
//! | tool          | arguments                                   | policy                                      |
//! |---------------|---------------------------------------------|---------------------------------------------|
//! | `list_files`  | `{path?, glob?}`                            | path check; denied entries are omitted      |
//! | `read_file`   | `{path, start_line?, end_line?}`            | path check                                  |
//! | `search`      | `{pattern, path?, glob?, context?, ignore_case?}` | path check; denied files are skipped  |
//! | `edit_file`   | `{path, old_text, new_text}`                | `repo_write` (+ `workflows`), path check    |
//! | `create_file` | `{path, content}`                           | `repo_write` (+ `workflows`), path check    |
//! | `delete_file` | `{path}`                                    | `repo_write` (+ `workflows`), path check    |
//! | `run_command` | `{command}`                                 | `shell`, then a runner                      |
//! | `finish`      | `{summary}`                                 | none: ends the agent's run                  |
//!
//! Every call ends in an [`ActionResult`]; results are capped and say when
//! they are; nothing here panics on the model's arguments.

mod edit;
mod search;

pub use edit::is_workflow;

use crate::config::{Capability, Decision, SecurityPolicy};
use crate::runner::{CommandOutput, CommandRunner};
use penguin_llm::{ToolCall, ToolSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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
    finish: Option<ToolSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFilesArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFileArgs {
    path: String,
    #[serde(default)]
    start_line: Option<usize>,
    #[serde(default)]
    end_line: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    context: Option<usize>,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditFileArgs {
    path: String,
    old_text: String,
    new_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFileArgs {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathArgs {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishArgs {
    summary: String,
}

/// Lines `read_file` returns when no range is asked for.
pub const READ_WINDOW_LINES: usize = 400;
/// Largest file `read_file` pages through.
const MAX_PAGED_BYTES: u64 = 8 * 1024 * 1024;

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
            finish: None,
        }
    }

    /// Replaces `finish`'s description and parameters (a JSON schema of an
    /// object): the run then ends with the arguments as JSON text, for a
    /// caller that wants a structured answer (a review's findings).
    pub fn with_finish(mut self, description: impl Into<String>, parameters: Value) -> Self {
        self.finish = Some(ToolSpec {
            name: "finish".into(),
            description: description.into(),
            parameters,
        });
        self
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

    /// The tools the model may call. Writing tools are offered unless
    /// `repo_write` is denied; `run_command` only with a runner and when the
    /// shell capability is not denied.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![
            ToolSpec {
                name: "list_files".into(),
                description: "List a directory of the workspace (directories end with '/'), or \
                              with `glob` every file under it that matches, recursively \
                              (.gitignore is honoured). Paths are relative to the workspace root."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Directory relative to the workspace root (default \".\")."},
                        "glob": {"type": "string", "description": "Only files whose path matches, e.g. \"**/*.rs\" (recursive)."}
                    },
                    "additionalProperties": false
                }),
            },
            ToolSpec {
                name: "read_file".into(),
                description: format!(
                    "Read lines of a UTF-8 text file, numbered. Without a range the first {READ_WINDOW_LINES} \
                     lines; the answer says how to read on. At most {} KiB per call.",
                    MAX_READ_BYTES / 1024
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to the workspace root."},
                        "start_line": {"type": "integer", "minimum": 1, "description": "First line (1-based)."},
                        "end_line": {"type": "integer", "minimum": 1, "description": "Last line (inclusive)."}
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }),
            },
            ToolSpec {
                name: "search".into(),
                description: "Search the workspace's files for a regular expression (Rust regex \
                              syntax), like ripgrep: `path:line: text` for matches, `path-line- text` \
                              for context lines."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "pattern": {"type": "string", "description": "Regular expression."},
                        "path": {"type": "string", "description": "Directory or file to search (default the root)."},
                        "glob": {"type": "string", "description": "Only files whose path matches, e.g. \"src/**/*.py\"."},
                        "context": {"type": "integer", "minimum": 0, "maximum": 10, "description": "Lines of context around each match (default 2)."},
                        "ignore_case": {"type": "boolean"}
                    },
                    "required": ["pattern"],
                    "additionalProperties": false
                }),
            },
        ];
        if self.policy.decide(Capability::RepoWrite) != Decision::Deny {
            specs.extend([
                ToolSpec {
                    name: "edit_file".into(),
                    description: "Replace `old_text`, which must occur exactly once in the file, \
                                  with `new_text`. Copy `old_text` exactly (whitespace included) and \
                                  include enough lines to make it unique. Do not rewrite whole files."
                        .into(),
                    parameters: json!({
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "old_text": {"type": "string", "description": "The exact text to replace."},
                            "new_text": {"type": "string", "description": "What replaces it."}
                        },
                        "required": ["path", "old_text", "new_text"],
                        "additionalProperties": false
                    }),
                },
                ToolSpec {
                    name: "create_file".into(),
                    description: "Create a new file (fails if it exists).".into(),
                    parameters: json!({
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "content": {"type": "string"}
                        },
                        "required": ["path", "content"],
                        "additionalProperties": false
                    }),
                },
                ToolSpec {
                    name: "delete_file".into(),
                    description: "Delete a file.".into(),
                    parameters: json!({
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "required": ["path"],
                        "additionalProperties": false
                    }),
                },
            ]);
        }
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
        if let Some(finish) = &self.finish {
            specs.push(finish.clone());
            return specs;
        }
        specs.push(ToolSpec {
            name: "finish".into(),
            description: "End the work with a summary of what changed and why.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"summary": {"type": "string"}},
                "required": ["summary"],
                "additionalProperties": false
            }),
        });
        specs
    }

    /// Runs one tool call.
    pub async fn call(&self, call: &ToolCall) -> ActionResult {
        let result = match call.name.as_str() {
            "list_files" => self.list_files(&call.arguments).await,
            "read_file" => self.read_file(&call.arguments).await,
            "run_command" => self.run_command(&call.arguments).await,
            "search" => self.search(&call.arguments).await,
            "edit_file" => self.edit_file(&call.arguments).await,
            "create_file" => self.create_file(&call.arguments).await,
            "delete_file" => self.delete_file(&call.arguments).await,
            "finish" if self.finish.is_some() => {
                match parse_args::<serde_json::Map<String, Value>>(&call.arguments) {
                    Ok(args) => ActionResult::new(
                        "finish",
                        ActionStatus::Completed,
                        Value::Object(args).to_string(),
                    ),
                    Err(e) => ActionResult::new("finish", ActionStatus::Error, e),
                }
            }
            "finish" => match parse_args::<FinishArgs>(&call.arguments) {
                Ok(args) => ActionResult::new("finish", ActionStatus::Completed, args.summary),
                Err(e) => ActionResult::new("finish", ActionStatus::Error, e),
            },
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
        let glob = match args.glob.as_deref().map(compile_glob).transpose() {
            Ok(glob) => glob,
            Err(e) => return ActionResult::new(action, ActionStatus::Error, e),
        };
        let workspace = self.workspace.clone();
        let policy = self.policy.clone();
        let listed = tokio::task::spawn_blocking(move || match glob {
            Some(glob) => list_matching(&workspace, &policy, &dir, &glob),
            None => list_dir(&workspace, &policy, &dir),
        })
        .await;
        blocking_result(action, listed)
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
        let (start, end) = (args.start_line, args.end_line);
        blocking_result(
            action,
            tokio::task::spawn_blocking(move || read_lines(&path, start, end)).await,
        )
    }

    async fn search(&self, raw: &str) -> ActionResult {
        let args: SearchArgs = match parse_args(raw) {
            Ok(args) => args,
            Err(e) => return ActionResult::new("search", ActionStatus::Error, e),
        };
        let root = args.path.clone().unwrap_or_else(|| ".".into());
        let action = format!("search /{}/ in {root}", cut(&args.pattern, 100));
        let dir = match self.policy.check_path(&self.workspace, &root) {
            Ok(dir) => dir,
            Err(denied) => {
                return ActionResult::new(action, ActionStatus::Denied, denied.to_string())
            }
        };
        let glob = match args.glob.as_deref().map(compile_glob).transpose() {
            Ok(glob) => glob,
            Err(e) => return ActionResult::new(action, ActionStatus::Error, e),
        };
        let workspace = match std::fs::canonicalize(&self.workspace) {
            Ok(ws) => ws,
            Err(e) => {
                return ActionResult::new(action, ActionStatus::Error, format!("workspace: {e}"))
            }
        };
        let policy = self.policy.clone();
        let found = tokio::task::spawn_blocking(move || {
            search::search(
                &workspace,
                &policy,
                &dir,
                &search::SearchRequest {
                    pattern: &args.pattern,
                    ignore_case: args.ignore_case,
                    context: args.context.unwrap_or(2).min(10),
                    glob: glob.as_ref(),
                },
            )
        })
        .await;
        blocking_result(action, found)
    }

    /// The policy's say on writing `rel`: `repo_write`, and `workflows` for
    /// CI workflows; then the path check. The resolved path, or the result
    /// to return instead.
    fn writable(&self, action: &str, rel: &str) -> Result<PathBuf, ActionResult> {
        match self.policy.decide(Capability::RepoWrite) {
            Decision::Allow => {}
            Decision::Deny => {
                return Err(ActionResult::new(
                    action,
                    ActionStatus::Denied,
                    "denied by the security policy: changing repository files is not allowed",
                ))
            }
            Decision::Ask => {
                return Err(ActionResult::new(
                    action,
                    ActionStatus::NeedsApproval,
                    "requires approval: changing repository files needs a person's approval, which is not available here; nothing was changed",
                ))
            }
        }
        let path = self
            .policy
            .check_path(&self.workspace, rel)
            .map_err(|denied| {
                ActionResult::new(action, ActionStatus::Denied, denied.to_string())
            })?;
        let inside = std::fs::canonicalize(&self.workspace)
            .ok()
            .and_then(|ws| path.strip_prefix(ws).ok().map(|p| p.display().to_string()))
            .unwrap_or_else(|| rel.to_string());
        if (is_workflow(rel) || is_workflow(&inside))
            && self.policy.decide(Capability::Workflows) != Decision::Allow
        {
            return Err(ActionResult::new(
                action,
                ActionStatus::Denied,
                "denied by the security policy: CI workflows (.github/workflows) change only with the `workflows` capability",
            ));
        }
        Ok(path)
    }

    /// A writing tool: parse `A`, check the policy for its path, then run
    /// `op` (resolved path, path as asked, arguments) on a blocking thread.
    async fn write_tool<A: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        raw: &str,
        path_of: fn(&A) -> &str,
        op: impl FnOnce(PathBuf, String, A) -> Result<String, String> + Send + 'static,
    ) -> ActionResult {
        let args: A = match parse_args(raw) {
            Ok(args) => args,
            Err(e) => return ActionResult::new(name, ActionStatus::Error, e),
        };
        let rel = path_of(&args).to_string();
        let action = format!("{name} {rel}");
        let path = match self.writable(&action, &rel) {
            Ok(path) => path,
            Err(result) => return result,
        };
        blocking_result(
            action,
            tokio::task::spawn_blocking(move || op(path, rel, args)).await,
        )
    }

    async fn edit_file(&self, raw: &str) -> ActionResult {
        self.write_tool(
            "edit_file",
            raw,
            |a: &EditFileArgs| &a.path,
            |path, rel, a| edit::edit(&path, &rel, &a.old_text, &a.new_text),
        )
        .await
    }

    async fn create_file(&self, raw: &str) -> ActionResult {
        self.write_tool(
            "create_file",
            raw,
            |a: &CreateFileArgs| &a.path,
            |path, rel, a| edit::create(&path, &rel, &a.content),
        )
        .await
    }

    async fn delete_file(&self, raw: &str) -> ActionResult {
        self.write_tool(
            "delete_file",
            raw,
            |a: &PathArgs| &a.path,
            |path, rel, _| edit::delete(&path, &rel),
        )
        .await
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

fn blocking_result(
    action: String,
    done: Result<Result<String, String>, tokio::task::JoinError>,
) -> ActionResult {
    match done {
        Ok(Ok(text)) => ActionResult::new(action, ActionStatus::Completed, text),
        Ok(Err(e)) => ActionResult::new(action, ActionStatus::Error, e),
        Err(e) => ActionResult::new(action, ActionStatus::Error, format!("internal error: {e}")),
    }
}

fn compile_glob(glob: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob {glob:?}: {e}"))
}

fn list_matching(
    workspace: &Path,
    policy: &SecurityPolicy,
    dir: &Path,
    glob: &globset::GlobMatcher,
) -> Result<String, String> {
    let ws = std::fs::canonicalize(workspace).map_err(|e| format!("workspace unavailable: {e}"))?;
    let files = search::walk_files(&ws, policy, dir, Some(glob));
    if files.is_empty() {
        return Ok("(no files match)".into());
    }
    let total = files.len();
    let mut text = files
        .into_iter()
        .take(MAX_LIST_ENTRIES)
        .collect::<Vec<_>>()
        .join("\n");
    if total > MAX_LIST_ENTRIES {
        text.push_str(&format!(
            "\n[truncated: {} more files; narrow the path or glob]",
            total - MAX_LIST_ENTRIES
        ));
    }
    Ok(text)
}

/// Lines `start..=end` of a text file, numbered, within [`MAX_READ_BYTES`];
/// the footer says what is left.
fn read_lines(path: &Path, start: Option<usize>, end: Option<usize>) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "this is a directory; use list_files".into()
        } else {
            "not a regular file".into()
        });
    }
    if meta.len() > MAX_PAGED_BYTES {
        return Err(format!(
            "the file is larger than {} MiB; use search to find the lines you need",
            MAX_PAGED_BYTES / (1024 * 1024)
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.contains(&0) {
        return Err("binary file (not UTF-8 text)".into());
    }
    let text = String::from_utf8(bytes).map_err(|_| "binary file (not UTF-8 text)".to_string())?;
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    if total == 0 {
        return Ok("(empty file)".into());
    }
    let first = start.unwrap_or(1).max(1);
    if first > total {
        return Err(format!(
            "start_line {first} is past the end: the file has {total} lines"
        ));
    }
    let last = end
        .unwrap_or(first + READ_WINDOW_LINES - 1)
        .clamp(first, total);
    let mut out = String::new();
    let mut shown = first - 1;
    for (index, line) in lines.iter().enumerate().take(last).skip(first - 1) {
        let numbered = format!("{:>6}\t{line}\n", index + 1);
        if out.len() + numbered.len() > MAX_READ_BYTES && shown >= first {
            break;
        }
        out.push_str(&numbered);
        shown = index + 1;
    }
    if shown < total {
        out.push_str(&format!(
            "[lines {first}-{shown} of {total}; read on with start_line={}]\n",
            shown + 1
        ));
    } else if first > 1 {
        out.push_str(&format!(
            "[lines {first}-{shown} of {total}: end of file]\n"
        ));
    }
    Ok(out)
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

    #[tokio::test]
    async fn a_custom_finish_returns_its_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Arc::new(SecurityPolicy::default_with(&[]));
        let schema = json!({"type": "object", "properties": {"findings": {"type": "array"}}});
        let tools = ToolRegistry::new(dir.path().to_path_buf(), policy)
            .with_finish("Submit the findings.", schema.clone());
        let finish = tools
            .specs()
            .into_iter()
            .find(|s| s.name == "finish")
            .unwrap();
        assert_eq!(
            (finish.description.as_str(), &finish.parameters),
            ("Submit the findings.", &schema)
        );
        let call = |arguments: &str| ToolCall {
            id: "1".into(),
            name: "finish".into(),
            arguments: arguments.into(),
        };
        let done = tools.call(&call(r#"{"findings": [{"line": 3}]}"#)).await;
        assert_eq!(done.status, ActionStatus::Completed);
        let back: Value = serde_json::from_str(&done.result).unwrap();
        assert_eq!(back, json!({"findings": [{"line": 3}]}));
        let bad = tools.call(&call("[1]")).await;
        assert_eq!(bad.status, ActionStatus::Error);
    }

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
