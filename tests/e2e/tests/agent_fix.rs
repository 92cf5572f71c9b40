//! `@Penguin fix tests` as an agent, end to end through the real binaries:
//! a scripted model drives the tools (search, read a range, exact edits,
//! the test command through penguin-runner), and the bot pushes only what
//! passes and what the policy allows.

use llm_standin::Reply;
use penguin_test_support::{deliveries, pod::Pod, runner::TestRunner, OWNER, REPO};
use serde_json::{json, Value};
use std::time::Duration;

/// A pod whose commands run in `runner`, with `fix_tests` settings `fix`.
async fn agent_pod(runner: &TestRunner, fix: &str) -> Pod {
    let config = format!(
        "security:\n  capabilities: {{ repo_write: allow, shell: allow }}\ngithub:\n  fix_tests: {{ {fix} }}\n"
    );
    let pod =
        Pod::for_bot_with_env(Some(&config), Duration::from_secs(3600), runner.api_env()).await;
    pod.github.standin.add_issue(
        OWNER,
        REPO,
        1,
        "add() is wrong",
        "2 + 2 is not 0",
        "octocat",
        &[],
    );
    pod.github
        .standin
        .set_permission(OWNER, REPO, "octocat", "write");
    pod
}

fn call(name: &str, arguments: Value) -> (String, Value) {
    (name.to_string(), arguments)
}

async fn ask_fix(pod: &Pod, id: &str, comment_id: u64) {
    let payload = deliveries::comment(
        1,
        false,
        "@Penguin fix tests",
        "octocat",
        "User",
        comment_id,
    );
    assert_eq!(pod.deliver(id, &payload).await, 200);
}

async fn wait_for_answer(pod: &Pod, text: &'static str) -> String {
    pod.wait_for(text, |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains(text))
    })
    .await;
    pod.bot_comments(1)
        .into_iter()
        .find(|b| b.contains(text))
        .unwrap()
}

/// The tool results the model was sent, in order.
fn tool_results(pod: &Pod) -> Vec<String> {
    let last = pod.llm.requests().last().cloned().unwrap_or_default();
    last["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn bot_branches(pod: &Pod) -> String {
    pod.github.bare_git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads/penguin/",
    ])
}

/// A 30 KB shell library with one wrong line in the middle.
fn big_library() -> String {
    let mut text = String::from("# calc.sh: arithmetic helpers\n");
    for n in 0..450 {
        text.push_str(&format!(
            "helper_{n:03}() {{\n    # keeps the {n}th value as it is\n    echo \"$1\"\n}}\n\n"
        ));
        if n == 200 {
            text.push_str("add() {\n    echo $(( $1 - $2 ))\n}\n\n");
        }
    }
    assert!(text.len() > 30_000, "{}", text.len());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_searches_reads_a_range_edits_once_and_pushes_what_passes() {
    let runner = TestRunner::start(&[]).await;
    let pod = agent_pod(
        &runner,
        "test_command: \"sh test.sh\", max_rounds: 2, timeout_secs: 30, max_iterations: 10",
    )
    .await;
    let library = big_library();
    pod.push_to_main(&[
        ("calc.sh", library.as_str()),
        ("test.sh", ". ./calc.sh\n[ \"$(add 2 2)\" = 4 ] || { echo \"add 2 2 gave $(add 2 2)\"; exit 1; }\necho ok\n"),
    ]);
    let line = library.lines().position(|l| l == "add() {").unwrap() + 1;
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "search",
        json!({"pattern": "^add\\(\\)", "context": 0}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "read_file",
        json!({"path": "calc.sh", "start_line": line, "end_line": line + 2}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "edit_file",
        json!({"path": "calc.sh", "old_text": "echo $(( $1 - $2 ))", "new_text": "echo $(( $1 + $2 ))"}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "run_command",
        json!({"command": "sh test.sh"}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "finish",
        json!({"summary": "add() subtracted; it adds now"}),
    )]));
    ask_fix(&pod, "agent-fix-1", 9501).await;
    let report = wait_for_answer(&pod, "Tests pass after my changes").await;
    assert!(report.contains("calc.sh"), "{report}");

    // The progress comment showed the steps while the agent worked.
    let progress = pod
        .github
        .standin
        .calls_to("PATCH", "/repos/octo-org/hello-world/issues/comments/")
        .into_iter()
        .filter_map(|c| c.body["body"].as_str().map(str::to_string))
        .find(|b| b.contains("Steps so far"))
        .expect("a progress update with the steps");
    assert!(progress.contains("`search /^add"), "{progress}");

    let results = tool_results(&pod);
    assert_eq!(results.len(), 4, "{results:#?}");
    assert!(
        results[0].contains(&format!("calc.sh:{line}: add() {{")),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains(&format!("{line:>6}\tadd() {{")),
        "{}",
        results[1]
    );
    assert!(results[2].contains("edited calc.sh"), "{}", results[2]);
    assert!(
        results[3].contains("exit code: 0") && results[3].contains("ok"),
        "{}",
        results[3]
    );

    // One line changed; the rest of the 30 KB file is byte-for-byte intact.
    let branch = bot_branches(&pod);
    let pushed = pod.github.bare_git(&["show", &format!("{branch}:calc.sh")]);
    let expected = library.replace("echo $(( $1 - $2 ))", "echo $(( $1 + $2 ))");
    // (`bare_git` trims the output's trailing newlines.)
    assert!(
        pushed == expected.trim_end(),
        "the pushed calc.sh differs from the original beyond the one edited line"
    );
    let pulls = pod.github.standin.pulls(OWNER, REPO);
    let pr = pulls
        .iter()
        .find(|p| p["head"]["ref"] == branch.as_str())
        .expect("a pull request");
    assert_eq!(pr["draft"], false);
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("add() subtracted; it adds now"), "{body}");
    assert!(body.contains("`sh test.sh` passes"), "{body}");
    // The test runs went through the runner: the failing run, the agent's, the passing run.
    assert!(runner.process.logs().matches("job finished").count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_edit_is_refused_with_the_count_and_the_agent_recovers() {
    let runner = TestRunner::start(&[]).await;
    let pod = agent_pod(
        &runner,
        "test_command: \"grep -q 'value=2' b.conf\", max_rounds: 2, timeout_secs: 30",
    )
    .await;
    pod.push_to_main(&[
        ("a.conf", "value=1\n"),
        ("b.conf", "[b]\nvalue=1\n[c]\nvalue=1\n"),
    ]);
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "edit_file",
        json!({"path": "b.conf", "old_text": "value=1", "new_text": "value=2"}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "edit_file",
        json!({"path": "b.conf", "old_text": "[b]\nvalue=1", "new_text": "[b]\nvalue=2"}),
    )]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "finish",
        json!({"summary": "b is 2"}),
    )]));
    ask_fix(&pod, "agent-fix-2", 9502).await;
    wait_for_answer(&pod, "Tests pass after my changes").await;
    let results = tool_results(&pod);
    assert!(results[0].contains("occurs 2 times"), "{}", results[0]);
    assert!(results[0].contains("at lines 2, 4"), "{}", results[0]);
    assert!(results[1].contains("edited b.conf"), "{}", results[1]);
    let branch = bot_branches(&pod);
    assert_eq!(
        pod.github.bare_git(&["show", &format!("{branch}:b.conf")]),
        "[b]\nvalue=2\n[c]\nvalue=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_git_metadata_and_workflows_are_refused_and_nothing_is_pushed() {
    let runner = TestRunner::start(&[]).await;
    let pod = agent_pod(
        &runner,
        "test_command: \"grep -q fixed status.txt\", max_rounds: 2, timeout_secs: 30",
    )
    .await;
    pod.push_to_main(&[("status.txt", "broken\n")]);
    let credentials = pod.tokenator.credentials.display().to_string();
    pod.llm.push_reply(Reply::ToolCalls(vec![
        call("read_file", json!({"path": "/run/penguin/git-credentials"})),
        call("read_file", json!({"path": credentials})),
        call("edit_file", json!({"path": ".git/config", "old_text": "[core]", "new_text": "[core]\n\thooksPath = /tmp"})),
        call("create_file", json!({"path": ".github/workflows/exfil.yml", "content": "on: push\n"})),
        call("run_command", json!({"command": "cat .git/config"})),
    ]));
    pod.llm.push_reply(Reply::ToolCalls(vec![call(
        "finish",
        json!({"summary": "could not"}),
    )]));
    ask_fix(&pod, "agent-fix-3", 9503).await;
    let report = wait_for_answer(&pod, "tests still fail").await;
    assert!(report.contains("Nothing was pushed"), "{report}");
    let results = tool_results(&pod);
    assert!(
        results[0].contains("outside the workspace"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("outside the workspace"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("inside .git"), "{}", results[2]);
    assert!(results[3].contains("workflows"), "{}", results[3]);
    // The runner gets no .git: nothing of the remote's configuration leaves the pod.
    assert!(!results[4].contains("[remote"), "{}", results[4]);
    assert!(bot_branches(&pod).is_empty(), "a branch was pushed");
    assert!(pod.github.standin.pulls(OWNER, REPO).is_empty());
    let token = std::fs::read_to_string(&pod.tokenator.credentials).unwrap();
    for request in pod.llm.requests() {
        assert!(
            !request.to_string().contains(token.trim()),
            "the credentials reached the model"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_that_never_passes_ends_on_budget_with_nothing_pushed_or_a_draft() {
    let runner = TestRunner::start(&[]).await;
    for (on_failure, comment) in [("fail", 9504), ("draft", 9505)] {
        let pod = agent_pod(
            &runner,
            &format!("test_command: \"echo still broken; false\", max_rounds: 2, timeout_secs: 30, max_iterations: 3, on_failure: {on_failure}"),
        )
        .await;
        pod.push_to_main(&[("notes.txt", "one\n")]);
        // Each round: an edit that changes nothing that matters, then it stops.
        for n in 0..2 {
            pod.llm.push_reply(Reply::ToolCalls(vec![call(
                "create_file",
                json!({"path": format!("attempt-{n}.txt"), "content": "tried\n"}),
            )]));
            pod.llm
                .push_reply(Reply::Text("I could not fix it.".into()));
        }
        ask_fix(&pod, &format!("agent-fix-never-{on_failure}"), comment).await;
        let report = wait_for_answer(&pod, "tests still fail").await;
        assert!(report.contains("still broken"), "{report}");
        assert!(
            report.contains("2 round(s)") || report.contains("round(s)"),
            "{report}"
        );
        let pulls = pod.github.standin.pulls(OWNER, REPO);
        match on_failure {
            "fail" => {
                assert!(report.contains("Nothing was pushed"), "{report}");
                assert!(bot_branches(&pod).is_empty());
                assert!(pulls.is_empty());
            }
            _ => {
                let pr = pulls.first().expect("a draft pull request");
                assert_eq!(pr["draft"], true, "{pr}");
                assert!(pr["body"].as_str().unwrap().contains("still fail"), "{pr}");
                assert!(report.contains("draft"), "{report}");
            }
        }
    }
}
