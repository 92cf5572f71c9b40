//! Attacks on the bot through the real binaries: each test tries what an
//! attacker (or a careless edit) would, and asserts the bot holds.

use github_standin::{Fault, PullSpec};
use llm_standin::Reply;
use penguin_test_support::{deliveries, pod::Pod, OWNER, REPO};
use serde_json::json;
use std::time::Duration;

async fn pod_with_pull() -> Pod {
    pod_with_config("").await
}

/// …with `config` as the server's `.penguin/config.yml`.
async fn pod_with_config(config: &str) -> Pod {
    let pod = Pod::for_bot(Some(config), Duration::from_secs(3600)).await;
    pod.push_to_main(&[("src/lib.rs", "fn parse() {}\n")]);
    let head_sha = pod.push_to_branch("fix-empty", &[("src/lib.rs", "fn parse(_: &str) {}\n")]);
    pod.github.standin.add_pull(
        OWNER,
        REPO,
        PullSpec {
            number: 2,
            title: "Handle empty input".into(),
            body: "Fixes #1".into(),
            author: "octocat".into(),
            head_ref: "fix-empty".into(),
            head_sha,
            base_ref: "main".into(),
            labels: vec![],
            from_fork: false,
            files: vec![],
        },
    );
    pod.github
        .standin
        .set_permission(OWNER, REPO, "octocat", "write");
    pod
}

/// The author edits the pull request's description while a review runs;
/// the bot's summary block is added to the edited text, not to the text it
/// read when the command started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authors_edit_during_a_command_survives_the_summary() {
    let pod = pod_with_pull().await;
    // The review's POST waits two seconds: the command is under way.
    pod.github.standin.fail_next_calls(
        1,
        "POST",
        &format!("/repos/{OWNER}/{REPO}/pulls/2/reviews"),
        Fault::Delay(Duration::from_secs(2)),
    );
    pod.llm.push_reply(Reply::ToolCalls(vec![(
        "finish".into(),
        json!({"summary": "Looks fine.", "findings": []}),
    )]));
    let payload = deliveries::comment(2, true, "@Penguin review", "octocat", "User", 9901);
    assert_eq!(pod.deliver("body-1", &payload).await, 200);
    pod.wait_for("the review to be under way", |g| {
        !g.standin
            .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/pulls/2/reviews"))
            .is_empty()
    })
    .await;
    pod.github.standin.edit_body(
        OWNER,
        REPO,
        2,
        "Fixes #1\n\nAlso handles whitespace-only input (edited by the author).",
    );
    pod.wait_for("the done label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 2)
            .contains(&"penguin:done".to_string())
    })
    .await;
    let pulls = pod.github.standin.pulls(OWNER, REPO);
    let body = pulls
        .iter()
        .find(|p| p["number"] == 2)
        .and_then(|p| p["body"].as_str())
        .unwrap()
        .to_string();
    assert!(body.contains("(edited by the author)"), "{body}");
    assert_eq!(
        body.matches("<!-- penguin:summary:start -->").count(),
        1,
        "{body}"
    );
    assert!(body.contains("`review`: ✅ done"), "{body}");
}

/// A captured `pull_request.opened` body re-posted with fresh GUIDs (the GUID
/// is not signed) gets one automatic review, not one per replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_pull_request_body_is_reviewed_once() {
    let pod = pod_with_config("github:\n  bot:\n    auto_review_on: [opened]\n").await;
    pod.llm.push_reply(Reply::ToolCalls(vec![(
        "finish".into(),
        json!({"summary": "Looks fine.", "findings": []}),
    )]));
    let mut payload = penguin_test_support::webhooks::example("pull_request", "opened");
    payload["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
    payload["repository"]["name"] = json!(REPO);
    payload["repository"]["owner"]["login"] = json!(OWNER);
    payload["number"] = json!(2);
    payload["pull_request"]["number"] = json!(2);
    payload["pull_request"]["draft"] = json!(false);
    for replay in 0..3 {
        let guid = format!("replayed-{replay}");
        assert_eq!(
            pod.deliver_event("pull_request", &guid, &payload).await,
            200
        );
    }
    pod.wait_for_metric(
        "penguin_webhook_deliveries_processed_total{event=\"pull_request\",result=\"ignored\"}",
        |n| n >= 2.0,
    )
    .await;
    pod.wait_for("the one review", |g| {
        !g.standin.reviews(OWNER, REPO, 2).is_empty()
    })
    .await;
    pod.wait_for_metric(
        "penguin_webhook_deliveries_processed_total{event=\"pull_request\",result=\"done\"}",
        |n| n >= 1.0,
    )
    .await;
    assert_eq!(pod.github.standin.reviews(OWNER, REPO, 2).len(), 1);
    assert_eq!(pod.llm.requests().len(), 1, "the model was asked once");
    // The unsigned event header cannot mint metric labels.
    for i in 0..5 {
        let status = pod
            .deliver_event(&format!("made-up-event-{i}"), &format!("odd-{i}"), &payload)
            .await;
        assert_eq!(status, 200);
    }
    let metrics = pod.api.metrics().await;
    assert!(!metrics.contains("made-up-event"), "{metrics}");
    assert!(
        metrics.contains("penguin_webhook_deliveries_received_total{event=\"other\"} 5"),
        "{metrics}"
    );
}

/// The "ask" flow: `@Penguin fix tests` by octocat on `number` (2 is the
/// pull request) waits for an approval.
async fn asked(pod: &Pod, number: u64, comment_id: u64) {
    let body = "@Penguin fix tests";
    let payload = deliveries::comment(number, number == 2, body, "octocat", "User", comment_id);
    assert_eq!(
        pod.deliver(&format!("ask-{comment_id}"), &payload).await,
        200
    );
    pod.wait_for("the approval request", |g| {
        g.standin
            .issue_labels(OWNER, REPO, number)
            .contains(&"penguin:needs-input".to_string())
    })
    .await;
}

async fn approve(pod: &Pod, number: u64, login: &str, comment_id: u64) {
    let body = "@Penguin approve";
    let payload = deliveries::comment(number, number == 2, body, login, "User", comment_id);
    assert_eq!(
        pod.deliver(&format!("approve-{comment_id}"), &payload)
            .await,
        200
    );
}

fn bot_says(pod: &Pod, number: u64, text: &str) -> bool {
    pod.bot_comments(number)
        .iter()
        .any(|body| body.contains(text))
}

/// An approval is a second person's decision with write permission, for the
/// head it was asked about; an allow-listed reader cannot approve, and a push
/// after the request cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_needs_a_second_writer_on_the_same_head() {
    let pod = pod_with_config("github:\n  bot:\n    allowed_users: [helper]\n").await;
    pod.github
        .standin
        .set_permission(OWNER, REPO, "helper", "read");
    pod.github
        .standin
        .set_permission(OWNER, REPO, "mona", "write");
    asked(&pod, 2, 9911).await;
    // Allowed to use the bot, but only read permission: no approval.
    approve(&pod, 2, "helper", 9912).await;
    pod.wait_for("the refusal of a reader's approval", |g| {
        g.standin
            .comments(OWNER, REPO, 2)
            .iter()
            .any(|(_, body, _)| {
                body.contains("@helper") && body.contains("write permission or higher")
            })
    })
    .await;
    // A push since the request cancels it: the approval is refused.
    pod.github
        .standin
        .push_to_pull(OWNER, REPO, 2, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    approve(&pod, 2, "mona", 9913).await;
    pod.wait_for("the refusal after a push", |g| {
        g.standin
            .comments(OWNER, REPO, 2)
            .iter()
            .any(|(_, body, _)| body.contains("changed since `fix_tests` was requested"))
    })
    .await;
    // Nothing is left to approve, and nothing ran.
    approve(&pod, 2, "mona", 9914).await;
    pod.wait_for("the answer to a late approval", |_| {
        bot_says(&pod, 2, "Nothing here is waiting for approval")
    })
    .await;
    assert!(pod.llm.requests().is_empty(), "the write never ran");
    assert!(!bot_says(&pod, 2, "Approved by"));
}

/// Two maintainers approve at once: the request is consumed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_at_once_run_the_write_once() {
    let config =
        "github:\n  fix_tests: { test_command: \"true\", max_rounds: 1, timeout_secs: 30 }\n";
    let pod = pod_with_config(config).await;
    pod.push_to_main(&[("README.md", "hello\n")]);
    pod.github
        .standin
        .add_issue(OWNER, REPO, 1, "Flaky", "It fails.", "octocat", &[]);
    for login in ["mona", "hubot"] {
        pod.github
            .standin
            .set_permission(OWNER, REPO, login, "write");
    }
    asked(&pod, 1, 9921).await;
    tokio::join!(
        approve(&pod, 1, "mona", 9922),
        approve(&pod, 1, "hubot", 9923)
    );
    pod.wait_for_metric(
        "penguin_webhook_deliveries_processed_total{event=\"issue_comment\",result=\"done\"}",
        |n| n >= 3.0,
    )
    .await;
    let approvals = pod
        .bot_comments(1)
        .iter()
        .filter(|body| body.contains("Approved by"))
        .count();
    assert_eq!(approvals, 1, "{:#?}", pod.bot_comments(1));
    assert!(
        bot_says(&pod, 1, "already approved")
            || bot_says(&pod, 1, "Nothing here is waiting for approval"),
        "{:#?}",
        pod.bot_comments(1)
    );
}

/// A fix that fails leaves no clone behind (they used to pile up in
/// `data/work` until the disk filled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fix_removes_its_clone() {
    let config = "github:\n  fix_tests: { test_command: \"false\", max_rounds: 1, timeout_secs: 30 }\nsecurity:\n  capabilities: { repo_write: allow, shell: allow }\n";
    let pod = pod_with_config(config).await;
    pod.push_to_main(&[("README.md", "hello\n")]);
    pod.github
        .standin
        .add_issue(OWNER, REPO, 1, "Broken", "It fails.", "octocat", &[]);
    let payload = deliveries::comment(1, false, "@Penguin fix tests", "octocat", "User", 9931);
    assert_eq!(pod.deliver("fail-fix-1", &payload).await, 200);
    pod.wait_for("the failed fix", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 1)
            .contains(&"penguin:failed".to_string())
    })
    .await;
    assert!(
        bot_says(&pod, 1, "tests still fail"),
        "{:#?}",
        pod.bot_comments(1)
    );
    let work = pod.api.data.join("work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "clones left behind: {left:?}");
}

/// `fix tests` on a pull request fixes the pull request's own code, fetched
/// from `refs/pull/<n>/head` at its head commit: not a branch of the base
/// repository that happens to have the head branch's name (here there is
/// none: the branch lives in a fork), and not the default branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_requests_fix_starts_from_its_head_commit() {
    let config = "github:\n  fix_tests: { test_command: \"grep -q fixed status.txt\", max_rounds: 2, timeout_secs: 30 }\nsecurity:\n  capabilities: { repo_write: allow, shell: allow }\n";
    let pod = pod_with_config(config).await;
    pod.push_to_main(&[("status.txt", "fixed\n")]);
    // The contributor's commit: only in refs/pull/3/head, on no branch here.
    let head = pod.push_to_branch(
        "scratch",
        &[("status.txt", "broken\n"), ("feature.txt", "new\n")],
    );
    pod.github.standin.add_pull(
        OWNER,
        REPO,
        PullSpec {
            number: 3,
            title: "Add the feature".into(),
            body: String::new(),
            author: "octocat".into(),
            head_ref: "main".into(),
            head_sha: head.clone(),
            base_ref: "main".into(),
            labels: vec![],
            from_fork: false,
            files: vec![],
        },
    );
    pod.script_fix("status.txt", "broken", "fixed");
    let payload = deliveries::comment(3, true, "@Penguin fix tests", "octocat", "User", 9941);
    assert_eq!(pod.deliver("pull-fix-1", &payload).await, 200);
    pod.wait_for("the fix", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 3)
            .iter()
            .any(|l| l == "penguin:done" || l == "penguin:failed")
    })
    .await;
    assert!(
        bot_says(&pod, 3, "Tests pass"),
        "{:#?}",
        pod.bot_comments(3)
    );
    // The model saw the pull request's failing test (one agent run: the
    // edit, then finish), and the bot's commit sits on the pull request's
    // head, with the contributor's file.
    assert_eq!(pod.llm.requests().len(), 2);
    let git = |args: &[&str]| pod.github.bare_git(args);
    let branch = git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads/penguin/",
    ]);
    assert!(!branch.is_empty(), "no bot branch");
    assert_eq!(git(&["rev-parse", &format!("{branch}^")]), head);
    assert_eq!(git(&["show", &format!("{branch}:feature.txt")]), "new");
}
