//! The tool registry against a temporary workspace.

use async_trait::async_trait;
use penguin_agent::{
    ActionResult, ActionStatus, Capabilities, CommandOutput, CommandRunner, Decision, Mode,
    RunnerError, SecurityPolicy, ToolRegistry, MAX_LIST_ENTRIES, MAX_READ_BYTES, READ_WINDOW_LINES,
};
use penguin_llm::ToolCall;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/sub")).unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(root.join("src/sub/a.txt"), "a").unwrap();
    std::fs::write(root.join("README.md"), "# Hello\n").unwrap();
    std::fs::write(root.join(".env"), "GITHUB_TOKEN=ghp_x").unwrap();
    std::fs::write(root.join("server.pem"), "key").unwrap();
    std::fs::write(root.join("my-secret.txt"), "s").unwrap();
    dir
}

fn registry(ws: &tempfile::TempDir) -> ToolRegistry {
    ToolRegistry::new(
        ws.path().to_path_buf(),
        Arc::new(SecurityPolicy::default_with(&[])),
    )
}

fn with_shell(shell: Decision, mode: Mode) -> Arc<SecurityPolicy> {
    Arc::new(
        SecurityPolicy::build(
            mode,
            Capabilities {
                shell,
                ..Capabilities::default()
            },
            &[],
            &[],
        )
        .unwrap(),
    )
}

/// Records commands and answers a fixed output.
struct FakeRunner {
    commands: Mutex<Vec<(String, Duration)>>,
    output: CommandOutput,
}

impl FakeRunner {
    fn new(exit_code: Option<i32>, timed_out: bool) -> Arc<Self> {
        Arc::new(FakeRunner {
            commands: Mutex::new(Vec::new()),
            output: CommandOutput {
                exit_code,
                stdout: "out".into(),
                stderr: "err".into(),
                timed_out,
            },
        })
    }
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, RunnerError> {
        self.commands
            .lock()
            .unwrap()
            .push((command.to_string(), timeout));
        Ok(self.output.clone())
    }
    fn name(&self) -> &str {
        "fake"
    }
}

fn assert_status(result: &ActionResult, status: ActionStatus) {
    assert_eq!(result.status, status, "{result:?}");
}

#[tokio::test]
async fn specs_describe_the_tools() {
    let ws = workspace();
    let names = |r: &ToolRegistry| r.specs().into_iter().map(|s| s.name).collect::<Vec<_>>();
    let readers = ["list_files", "read_file", "search"];
    let writers = ["edit_file", "create_file", "delete_file"];
    let expected = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut all: Vec<&'static str> = readers.to_vec();
        all.extend_from_slice(extra);
        all.push("finish");
        all
    };
    assert_eq!(names(&registry(&ws)), expected(&writers));
    let with_runner = registry(&ws).with_runner(FakeRunner::new(Some(0), false));
    let mut writers_and_shell = writers.to_vec();
    writers_and_shell.push("run_command");
    assert_eq!(names(&with_runner), expected(&writers_and_shell));
    for spec in with_runner.specs() {
        assert_eq!(spec.parameters["type"], "object", "{}", spec.name);
    }
    let read = &with_runner.specs()[1];
    assert_eq!(read.parameters["required"][0], "path");
    // Not offered when the shell is denied.
    let denied = ToolRegistry::new(ws.path().into(), with_shell(Decision::Deny, Mode::Full))
        .with_runner(FakeRunner::new(Some(0), false));
    assert_eq!(names(&denied), expected(&writers));
    // Nothing that writes when repository writes are denied.
    let read_only = ToolRegistry::new(
        ws.path().into(),
        Arc::new(SecurityPolicy::build(Mode::ReadOnly, Capabilities::default(), &[], &[]).unwrap()),
    );
    assert_eq!(names(&read_only), expected(&[]));
}

#[tokio::test]
async fn list_files_root_sorted_dirs_marked_denied_omitted() {
    let ws = workspace();
    let r = registry(&ws);
    for args in ["{}", "", r#"{"path": "."}"#, r#"{"path": null}"#] {
        let result = r.call(&call("list_files", args)).await;
        assert_status(&result, ActionStatus::Completed);
        assert_eq!(result.result, "README.md\nsrc/", "{args:?}");
    }
    let result = r.call(&call("list_files", r#"{"path": "src"}"#)).await;
    assert_eq!(result.result, "main.rs\nsub/");
    assert_eq!(result.action, "list_files src");
}

#[tokio::test]
async fn list_files_omits_links_leaving_the_workspace() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("escape")).unwrap();
    std::os::unix::fs::symlink("src", ws.path().join("src-link")).unwrap();
    let result = registry(&ws).call(&call("list_files", "{}")).await;
    assert_eq!(result.result, "README.md\nsrc-link/\nsrc/");
}

#[tokio::test]
async fn list_files_is_capped() {
    let ws = tempfile::tempdir().unwrap();
    for i in 0..(MAX_LIST_ENTRIES + 20) {
        std::fs::write(ws.path().join(format!("f{i:04}")), "").unwrap();
    }
    let result = registry(&ws).call(&call("list_files", "{}")).await;
    assert_status(&result, ActionStatus::Completed);
    let lines: Vec<&str> = result.result.lines().collect();
    assert_eq!(lines.len(), MAX_LIST_ENTRIES + 1);
    assert_eq!(lines[0], "f0000");
    assert_eq!(lines[MAX_LIST_ENTRIES - 1], "f0499");
    assert_eq!(lines[MAX_LIST_ENTRIES], "[truncated: 20 more entries]");
}

#[tokio::test]
async fn list_files_errors_and_denials() {
    let ws = workspace();
    let r = registry(&ws);
    assert_status(
        &r.call(&call("list_files", r#"{"path": "../"}"#)).await,
        ActionStatus::Denied,
    );
    assert_status(
        &r.call(&call("list_files", r#"{"path": "/etc"}"#)).await,
        ActionStatus::Denied,
    );
    assert_status(
        &r.call(&call("list_files", r#"{"path": "nope"}"#)).await,
        ActionStatus::Error,
    );
    assert_status(
        &r.call(&call("list_files", r#"{"path": "README.md"}"#))
            .await,
        ActionStatus::Error,
    );
    std::fs::create_dir(ws.path().join("empty")).unwrap();
    let result = r.call(&call("list_files", r#"{"path": "empty"}"#)).await;
    assert_eq!(result.result, "(empty directory)");
}

#[tokio::test]
async fn read_file_reads_text() {
    let ws = workspace();
    let result = registry(&ws)
        .call(&call("read_file", r#"{"path": "src/main.rs"}"#))
        .await;
    assert_status(&result, ActionStatus::Completed);
    assert_eq!(result.result, "     1\tfn main() {}\n");
    assert_eq!(result.action, "read_file src/main.rs");
}

#[tokio::test]
async fn read_file_pages_through_large_files_by_line() {
    let ws = workspace();
    let text: String = (1..=1000).map(|n| format!("line {n}\n")).collect();
    std::fs::write(ws.path().join("big.txt"), &text).unwrap();
    let r = registry(&ws);
    let first = r.call(&call("read_file", r#"{"path": "big.txt"}"#)).await;
    assert_status(&first, ActionStatus::Completed);
    assert!(
        first.result.starts_with("     1\tline 1\n"),
        "{}",
        first.result
    );
    assert!(
        first.result.ends_with(&format!(
            "[lines 1-{READ_WINDOW_LINES} of 1000; read on with start_line={}]\n",
            READ_WINDOW_LINES + 1
        )),
        "{}",
        first.result
    );
    let range = r
        .call(&call(
            "read_file",
            r#"{"path": "big.txt", "start_line": 998, "end_line": 2000}"#,
        ))
        .await;
    assert_eq!(
        range.result,
        "   998\tline 998\n   999\tline 999\n  1000\tline 1000\n[lines 998-1000 of 1000: end of file]\n"
    );
    let past = r
        .call(&call(
            "read_file",
            r#"{"path": "big.txt", "start_line": 1001}"#,
        ))
        .await;
    assert_status(&past, ActionStatus::Error);
    assert!(past.result.contains("1000 lines"), "{}", past.result);

    // Long lines: the byte cap ends the page early and says where to go on.
    let wide: String = (1..=100).map(|_| "x".repeat(2000) + "\n").collect();
    std::fs::write(ws.path().join("wide.txt"), &wide).unwrap();
    let page = r.call(&call("read_file", r#"{"path": "wide.txt"}"#)).await;
    assert!(page.result.len() <= MAX_READ_BYTES + 100);
    assert!(
        page.result.contains("read on with start_line="),
        "{}",
        &page.result[page.result.len() - 80..]
    );
}

#[tokio::test]
async fn search_finds_matches_with_context_and_skips_denied_and_ignored_files() {
    let ws = workspace();
    let root = ws.path();
    std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(root.join("target/gen.rs"), "fn main() { generated }\n").unwrap();
    std::fs::write(root.join(".env"), "fn main() = TOKEN\n").unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "// one\n// two\nfn helper() {}\n// four\n",
    )
    .unwrap();
    let r = registry(&ws);
    let found = r
        .call(&call(
            "search",
            r#"{"pattern": "fn \\w+\\(", "context": 1}"#,
        ))
        .await;
    assert_status(&found, ActionStatus::Completed);
    assert!(
        found.result.contains("src/main.rs:1: fn main() {}"),
        "{}",
        found.result
    );
    assert!(
        found.result.contains("src/lib.rs-2- // two"),
        "{}",
        found.result
    );
    assert!(
        found.result.contains("src/lib.rs:3: fn helper() {}"),
        "{}",
        found.result
    );
    assert!(!found.result.contains("target/"), "{}", found.result);
    assert!(!found.result.contains(".env"), "{}", found.result);
    assert!(
        found.result.contains("[2 matches in 2 files]"),
        "{}",
        found.result
    );

    let globbed = r
        .call(&call(
            "search",
            r#"{"pattern": "fn", "glob": "src/*.rs", "context": 0}"#,
        ))
        .await;
    assert!(
        globbed.result.contains("src/lib.rs:3:"),
        "{}",
        globbed.result
    );
    let none = r
        .call(&call("search", r#"{"pattern": "nowhere_at_all"}"#))
        .await;
    assert!(none.result.starts_with("no matches"), "{}", none.result);
    let bad = r.call(&call("search", r#"{"pattern": "("}"#)).await;
    assert_status(&bad, ActionStatus::Error);
    assert!(bad.result.contains("regular expression"), "{}", bad.result);
    let denied = r
        .call(&call("search", r#"{"pattern": "x", "path": ".git"}"#))
        .await;
    assert_status(&denied, ActionStatus::Denied);

    let listed = r.call(&call("list_files", r#"{"glob": "**/*.rs"}"#)).await;
    assert_eq!(listed.result, "src/lib.rs\nsrc/main.rs");
}

fn writer(ws: &tempfile::TempDir, capabilities: Capabilities) -> ToolRegistry {
    ToolRegistry::new(
        ws.path().to_path_buf(),
        Arc::new(SecurityPolicy::build(Mode::Workspace, capabilities, &[], &[]).unwrap()),
    )
}

#[tokio::test]
async fn edits_are_exact_and_writes_follow_the_policy() {
    let ws = workspace();
    std::fs::create_dir_all(ws.path().join(".git")).unwrap();
    std::fs::write(ws.path().join(".git/config"), "[remote]").unwrap();
    std::fs::write(ws.path().join("src/twice.rs"), "let a = 1;\nlet a = 1;\n").unwrap();
    let allowed = Capabilities {
        repo_write: Decision::Allow,
        ..Capabilities::default()
    };
    let r = writer(&ws, allowed);
    let twice = r
        .call(&call(
            "edit_file",
            r#"{"path": "src/twice.rs", "old_text": "let a = 1;", "new_text": "let a = 2;"}"#,
        ))
        .await;
    assert_status(&twice, ActionStatus::Error);
    assert!(twice.result.contains("occurs 2 times"), "{}", twice.result);
    let once = r
        .call(&call(
            "edit_file",
            r#"{"path": "src/main.rs", "old_text": "fn main() {}", "new_text": "fn main() { run() }"}"#,
        ))
        .await;
    assert_status(&once, ActionStatus::Completed);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/main.rs")).unwrap(),
        "fn main() { run() }\n"
    );
    let created = r
        .call(&call(
            "create_file",
            r#"{"path": "src/new/mod.rs", "content": "pub fn x() {}\n"}"#,
        ))
        .await;
    assert_status(&created, ActionStatus::Completed);
    let deleted = r
        .call(&call("delete_file", r#"{"path": "src/sub/a.txt"}"#))
        .await;
    assert_status(&deleted, ActionStatus::Completed);
    assert!(!ws.path().join("src/sub/a.txt").exists());

    // Never .git, never a denied path, never a workflow without its capability.
    for (tool, args) in [
        (
            "edit_file",
            r#"{"path": ".git/config", "old_text": "[remote]", "new_text": "x"}"#,
        ),
        ("create_file", r#"{"path": ".env.local", "content": "x"}"#),
        (
            "create_file",
            r#"{"path": ".github/workflows/ci.yml", "content": "on: push"}"#,
        ),
        ("delete_file", r#"{"path": "../outside.txt"}"#),
    ] {
        let refused = r.call(&call(tool, args)).await;
        assert_status(&refused, ActionStatus::Denied);
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).unwrap(),
        "[remote]"
    );
    assert!(!ws.path().join(".github/workflows/ci.yml").exists());
    let with_workflows = writer(
        &ws,
        Capabilities {
            workflows: Decision::Allow,
            ..allowed
        },
    );
    let workflow = with_workflows
        .call(&call(
            "create_file",
            r#"{"path": ".github/workflows/ci.yml", "content": "on: push\n"}"#,
        ))
        .await;
    assert_status(&workflow, ActionStatus::Completed);

    // `ask` without anyone to approve: nothing changes.
    let ask = registry(&ws)
        .call(&call("delete_file", r#"{"path": "README.md"}"#))
        .await;
    assert_status(&ask, ActionStatus::NeedsApproval);
    assert!(ws.path().join("README.md").exists());
}

#[tokio::test]
async fn read_file_rejects_binary() {
    let ws = workspace();
    std::fs::write(
        ws.path().join("image.png"),
        [0x89, b'P', b'N', b'G', 0, 1, 2],
    )
    .unwrap();
    std::fs::write(ws.path().join("latin1.txt"), [b'c', 0xe9, b'a']).unwrap();
    // Valid UTF-8 with NUL bytes (object files, UTF-16 text) is binary too.
    std::fs::write(ws.path().join("data.bin"), "abc\0def").unwrap();
    let r = registry(&ws);
    for path in ["image.png", "latin1.txt", "data.bin"] {
        let result = r
            .call(&call("read_file", &format!(r#"{{"path": "{path}"}}"#)))
            .await;
        assert_status(&result, ActionStatus::Error);
        assert!(result.result.contains("binary"), "{result:?}");
    }
}

#[tokio::test]
async fn read_file_denied_paths() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), "root").unwrap();
    std::os::unix::fs::symlink(outside.path().join("passwd"), ws.path().join("pw")).unwrap();
    let r = registry(&ws);
    for path in [
        ".env",
        "server.pem",
        "my-secret.txt",
        "../x",
        "/etc/passwd",
        "pw",
    ] {
        let result = r
            .call(&call("read_file", &format!(r#"{{"path": "{path}"}}"#)))
            .await;
        assert_status(&result, ActionStatus::Denied);
        assert!(result.result.starts_with("denied by the security policy: "));
        assert!(!result.result.contains("ghp_x"));
        assert!(!result.result.contains("root"));
    }
}

#[tokio::test]
async fn read_file_errors() {
    let ws = workspace();
    let r = registry(&ws);
    assert_status(
        &r.call(&call("read_file", r#"{"path": "missing.txt"}"#))
            .await,
        ActionStatus::Error,
    );
    let result = r.call(&call("read_file", r#"{"path": "src"}"#)).await;
    assert_status(&result, ActionStatus::Error);
    assert!(result.result.contains("directory"));
}

#[tokio::test]
async fn malformed_arguments_are_errors_with_a_reason() {
    let ws = workspace();
    let r = registry(&ws).with_runner(FakeRunner::new(Some(0), false));
    let cases = [
        ("read_file", "{}", "missing field `path`"),
        ("read_file", "", "missing field `path`"),
        ("read_file", r#"{"path": 42}"#, "invalid type"),
        (
            "read_file",
            r#"{"path": "a", "mode": "w"}"#,
            "unknown field `mode`",
        ),
        ("read_file", "not json", "not valid JSON"),
        ("read_file", r#""README.md""#, "JSON object"),
        ("read_file", "null", "JSON object"),
        ("list_files", r#"{"path": ["a"]}"#, "invalid type"),
        ("list_files", "[", "not valid JSON"),
        ("run_command", "{}", "missing field `command`"),
        ("run_command", r#"{"command": {"x": 1}}"#, "invalid type"),
    ];
    for (tool, args, reason) in cases {
        let result = r.call(&call(tool, args)).await;
        assert_status(&result, ActionStatus::Error);
        assert!(
            result.result.contains(reason),
            "{tool} {args:?}: {:?}",
            result.result
        );
    }
}

#[tokio::test]
async fn hostile_arguments_never_panic() {
    let ws = workspace();
    let r = registry(&ws).with_runner(FakeRunner::new(Some(0), false));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let long_path = format!(r#"{{"path": "{}"}}"#, "é/".repeat(20_000));
    let args = [
        deep.as_str(),
        long_path.as_str(),
        r#"{"path": "\u0000"}"#,
        r#"{"path": ""}"#,
        r#"{"path": "\ud800"}"#,
        r#"{"command": ""}"#,
        r#"{"command": "a\u0000b"}"#,
        "\u{feff}{}",
    ];
    for tool in ["list_files", "read_file", "run_command", "nope", ""] {
        for a in &args {
            let result = r.call(&call(tool, a)).await;
            assert!(result.action.len() <= 210, "{}", result.action.len());
        }
    }
}

#[tokio::test]
async fn unknown_tool_is_an_error() {
    let ws = workspace();
    let result = registry(&ws).call(&call("write_file", "{}")).await;
    assert_status(&result, ActionStatus::Error);
    assert!(result.result.contains("unknown tool"));
    assert!(result.result.contains("read_file"));
}

#[tokio::test]
async fn run_command_follows_the_shell_capability() {
    let ws = workspace();
    let cases = [
        (Decision::Allow, Mode::Workspace, ActionStatus::Completed, 1),
        (
            Decision::Ask,
            Mode::Workspace,
            ActionStatus::NeedsApproval,
            0,
        ),
        (Decision::Deny, Mode::Workspace, ActionStatus::Denied, 0),
        (Decision::Ask, Mode::Full, ActionStatus::Completed, 1),
        (Decision::Deny, Mode::Full, ActionStatus::Denied, 0),
        (Decision::Allow, Mode::ReadOnly, ActionStatus::Denied, 0),
    ];
    for (shell, mode, status, runs) in cases {
        let runner = FakeRunner::new(Some(0), false);
        let r = ToolRegistry::new(ws.path().into(), with_shell(shell, mode))
            .with_runner(runner.clone())
            .with_command_timeout(Duration::from_secs(7));
        let result = r
            .call(&call("run_command", r#"{"command": "cargo test"}"#))
            .await;
        assert_status(&result, status);
        assert_eq!(result.action, "run_command cargo test");
        let commands = runner.commands.lock().unwrap().clone();
        assert_eq!(commands.len(), runs, "{shell:?} {mode:?}");
        if runs == 1 {
            assert_eq!(
                commands[0],
                ("cargo test".to_string(), Duration::from_secs(7))
            );
            assert!(result.result.contains("exit code: 0"));
            assert!(result.result.contains("out"));
            assert!(result.result.contains("err"));
        }
        if status == ActionStatus::NeedsApproval {
            assert!(
                result.result.starts_with("requires approval: "),
                "{result:?}"
            );
        }
    }
}

#[tokio::test]
async fn run_command_failures_are_errors() {
    let ws = workspace();
    let policy = with_shell(Decision::Allow, Mode::Workspace);
    for (runner, text) in [
        (FakeRunner::new(Some(2), false), "exit code: 2"),
        (FakeRunner::new(None, true), "timed out"),
    ] {
        let r = ToolRegistry::new(ws.path().into(), policy.clone()).with_runner(runner);
        let result = r
            .call(&call("run_command", r#"{"command": "false"}"#))
            .await;
        assert_status(&result, ActionStatus::Error);
        assert!(result.result.contains(text), "{result:?}");
    }
    // No runner configured.
    let r = ToolRegistry::new(ws.path().into(), policy);
    let result = r.call(&call("run_command", r#"{"command": "ls"}"#)).await;
    assert_status(&result, ActionStatus::Error);
}

#[test]
fn action_status_serializes_snake_case() {
    let r = ActionResult {
        action: "a".into(),
        result: "b".into(),
        status: ActionStatus::NeedsApproval,
    };
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"action": "a", "result": "b", "status": "needs_approval"})
    );
    for (status, text) in [
        (ActionStatus::Completed, "completed"),
        (ActionStatus::Error, "error"),
        (ActionStatus::Denied, "denied"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), text);
    }
}
