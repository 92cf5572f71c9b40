//! The GitHub bot end to end: signed deliveries (GitHub's public examples,
//! with bodies, authors and flags changed) → penguin-api → tokenator tokens →
//! the GitHub stand-in's REST routes, asserting every call the bot makes.

use github_standin::PullSpec;
use llm_standin::Reply;
use penguin_test_support::{deliveries, pod::Pod, runner::TestRunner, OWNER, REPO};
use serde_json::{json, Value};
use std::time::Duration;

async fn pod() -> Pod {
    pod_with_config(None).await
}

/// A pod whose server `.penguin/config.yml` holds `config` (when given).
async fn pod_with_config(config: Option<&str>) -> Pod {
    pod_with(config, Duration::from_secs(3600)).await
}

/// …and whose installation tokens live `token_ttl`.
async fn pod_with(config: Option<&str>, token_ttl: Duration) -> Pod {
    pod_with_env(config, token_ttl, Vec::new()).await
}

/// …with `env` added to the api's environment.
async fn pod_with_env(
    config: Option<&str>,
    token_ttl: Duration,
    env: Vec<(String, String)>,
) -> Pod {
    let pod = Pod::for_bot_with_env(config, token_ttl, env).await;
    let github = &pod.github;
    github.standin.add_issue(
        OWNER,
        REPO,
        1,
        "Crash on empty input",
        "It crashes.<!-- @Penguin fix tests -->",
        "octocat",
        &[],
    );
    // Pull request #2 is real commits: the stand-in diffs them like GitHub.
    pod.push_to_main(&[("src/lib.rs", "fn parse() {}\n")]);
    let head_sha = pod.push_to_branch(
        "fix-empty",
        &[(
            "src/lib.rs",
            "fn parse(input: &str) {\n    if input.is_empty() { return; }\n}\n",
        )],
    );
    github.standin.add_pull(
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
    github
        .standin
        .set_permission(OWNER, REPO, "octocat", "write");
    github
        .standin
        .set_permission(OWNER, REPO, "stranger", "read");
    pod
}

/// Comment deliveries the worker finished without acting on them.
const IGNORED_COMMENTS: &str =
    "penguin_webhook_deliveries_processed_total{event=\"issue_comment\",result=\"ignored\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_on_an_issue_reacts_posts_a_checklist_and_labels() {
    let pod = pod().await;
    pod.llm.push_reply(Reply::Text(
        "1. Reproduce with empty input\n2. Add a guard\n3. Add a test".into(),
    ));
    assert_eq!(
        pod.deliver(
            "plan-1",
            &deliveries::comment(1, false, "@Penguin plan please", "octocat", "User", 9001)
        )
        .await,
        200
    );
    pod.wait_for("the progress comment to hold the plan", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("- [ ] Add a guard"))
    })
    .await;
    let calls = pod.github.standin.calls();
    let reaction = calls
        .iter()
        .find(|c| c.path.ends_with("/issues/comments/9001/reactions"))
        .expect("👀 reaction");
    assert_eq!(reaction.body["content"], "eyes");
    // One progress comment, edited in place.
    assert_eq!(
        pod.github
            .standin
            .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/issues/1/comments"))
            .len(),
        1
    );
    assert!(!pod
        .github
        .standin
        .calls_to("PATCH", &format!("/repos/{OWNER}/{REPO}/issues/comments/"))
        .is_empty());
    pod.wait_for("the done label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 1)
            .contains(&"penguin:done".to_string())
    })
    .await;
    // Operators see GitHub's rate-limit budget (the stand-in allows 5,000 an hour).
    pod.wait_for_metric("penguin_github_rate_limit_remaining", |remaining| {
        (1.0..5000.0).contains(&remaining)
    })
    .await;
    // Hidden markdown in the issue body never reached the model.
    let sent = pod.llm.requests().last().unwrap().to_string();
    assert!(!sent.contains("fix tests"), "{sent}");
    // Redelivery of the same GUID is acknowledged and does nothing; nor does a
    // new GUID for the same comment.
    let before = pod.github.standin.calls().len();
    assert_eq!(
        pod.deliver(
            "plan-1",
            &deliveries::comment(1, false, "@Penguin plan please", "octocat", "User", 9001)
        )
        .await,
        200
    );
    assert_eq!(
        pod.deliver(
            "plan-1-again",
            &deliveries::comment(1, false, "@Penguin plan please", "octocat", "User", 9001)
        )
        .await,
        200
    );
    // The worker has finished with it (as ignored) before the calls are counted.
    pod.wait_for_metric(IGNORED_COMMENTS, |n| n >= 1.0).await;
    assert_eq!(
        pod.github.standin.calls().len(),
        before,
        "the same comment was acted on twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_on_a_pull_request_runs_a_check_and_posts_a_comment_review() {
    let pod = pod().await;
    pod.llm.push_reply(Reply::ToolCalls(vec![(
        "finish".into(),
        json!({"summary": "Adds a guard.", "findings": [{
            "path": "src/lib.rs", "line": 2, "severity": "low",
            "title": "The guard returns nothing", "body": "Consider an error."
        }]}),
    )]));
    assert_eq!(
        pod.deliver(
            "review-1",
            &deliveries::comment(2, true, "@penguin REVIEW", "octocat", "User", 9002)
        )
        .await,
        200
    );
    pod.wait_for("a completed check run", |g| {
        g.standin
            .check_runs(OWNER, REPO)
            .iter()
            .any(|c| c["status"] == "completed")
    })
    .await;
    let runs = pod.github.standin.check_runs(OWNER, REPO);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["name"], "penguin/review");
    let pulls = pod.github.standin.pulls(OWNER, REPO);
    let head = pulls.iter().find(|p| p["number"] == 2).unwrap()["head"]["sha"].clone();
    assert_eq!(run["head_sha"], head);
    assert_eq!(run["conclusion"], "success");
    assert!(run["details_url"]
        .as_str()
        .unwrap()
        .starts_with("https://penguin.example/api/v1/tasks/task_"));
    let reviews = pod.github.standin.reviews(OWNER, REPO, 2);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["state"], "COMMENTED");
    let comments = pod.github.standin.review_comments(OWNER, REPO, 2);
    assert_eq!(
        (comments[0]["line"].as_u64(), comments[0]["side"].as_str()),
        (Some(2), Some("RIGHT"))
    );
    assert!(comments[0]["body"]
        .as_str()
        .unwrap()
        .contains("Consider an error."));
    // The model saw the diff.
    let sent = pod.llm.requests().last().unwrap().to_string();
    assert!(sent.contains("input.is_empty()"), "{sent}");
    // The PR body carries the summary and task id between markers, once.
    pod.wait_for("the summary block in the PR body", |g| {
        g.standin.pulls(OWNER, REPO).iter().any(|p| {
            p["number"] == 2
                && p["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains("penguin:summary:start")
        })
    })
    .await;
    let pulls = pod.github.standin.pulls(OWNER, REPO);
    let body = pulls.iter().find(|p| p["number"] == 2).unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(body.starts_with("Fixes #1"), "{body}");
    assert_eq!(
        body.matches("<!-- penguin:summary:start -->").count(),
        1,
        "{body}"
    );
    assert!(
        body.contains("`review`") && body.contains("task_"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_right_people_make_it_act() {
    let pod = pod().await;
    // A reader: told why, nothing else happens.
    assert_eq!(
        pod.deliver(
            "deny-1",
            &deliveries::comment(1, false, "@Penguin plan", "stranger", "User", 9101)
        )
        .await,
        200
    );
    pod.wait_for("the refusal", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("@stranger"))
    })
    .await;
    assert!(
        pod.github
            .standin
            .calls()
            .iter()
            .all(|c| !c.path.contains("/reactions")),
        "no 👀 for a refused command"
    );
    assert!(pod.llm.requests().is_empty(), "the model was not called");
    // A bot (including this App) never triggers; hidden commands do not count.
    let before = pod.github.standin.calls().len();
    assert_eq!(
        pod.deliver(
            "bot-1",
            &deliveries::comment(1, false, "@Penguin plan", "penguin-agent[bot]", "Bot", 9102)
        )
        .await,
        200
    );
    assert_eq!(
        pod.deliver(
            "hidden-1",
            &deliveries::comment(
                1,
                false,
                "thanks! <!-- @Penguin plan -->",
                "octocat",
                "User",
                9103
            )
        )
        .await,
        200
    );
    pod.wait_for_metric(IGNORED_COMMENTS, |n| n >= 2.0).await;
    assert_eq!(
        pod.github.standin.calls().len(),
        before,
        "{:#?}",
        pod.github.standin.calls()
    );
    // A forged signature is refused outright.
    let body = serde_json::to_vec(&deliveries::comment(
        1,
        false,
        "@Penguin plan",
        "octocat",
        "User",
        9104,
    ))
    .unwrap();
    let status = deliveries::signed(
        &pod.api.http,
        &pod.api.url(""),
        b"not the secret",
        "issue_comment",
        Some("forged-1"),
        &body,
    )
    .send()
    .await
    .unwrap()
    .status();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_comments_and_review_bodies_trigger_too() {
    let pod = pod().await;
    pod.llm.push_reply(Reply::Text("The guard is fine.".into()));
    // GitHub's pull_request_review_comment.created example, retargeted.
    use penguin_test_support::webhooks::example;
    let retarget = |mut payload: Value, author_path: &str| {
        payload["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
        payload["repository"]["name"] = json!(REPO);
        payload["repository"]["owner"]["login"] = json!(OWNER);
        payload["pull_request"]["number"] = json!(2);
        payload["pull_request"]["labels"] = json!([]);
        payload[author_path]["user"]["login"] = json!("octocat");
        payload[author_path]["user"]["type"] = json!("User");
        payload["sender"]["login"] = json!("octocat");
        payload["sender"]["type"] = json!("User");
        payload
    };
    let mut comment = retarget(example("pull_request_review_comment", "created"), "comment");
    comment["comment"]["id"] = json!(77001);
    comment["comment"]["body"] = json!("@Penguin is this guard enough?");
    assert_eq!(
        pod.deliver_event("pull_request_review_comment", "rc-1", &comment)
            .await,
        200
    );
    pod.wait_for("the answer to the review comment", |g| {
        g.standin
            .comments(OWNER, REPO, 2)
            .iter()
            .any(|(_, body, _)| body.contains("The guard is fine."))
    })
    .await;
    let reaction = pod
        .github
        .standin
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/pulls/comments/77001/reactions"))
        .expect("👀 on the review comment");
    assert_eq!(reaction.body["content"], "eyes");

    pod.llm
        .push_reply(Reply::Text("- [ ] Add an error type".into()));
    let mut review = retarget(example("pull_request_review", "submitted"), "review");
    review["review"]["id"] = json!(88001);
    review["review"]["body"] = json!("Looks close. @Penguin plan the follow-up");
    assert_eq!(
        pod.deliver_event("pull_request_review", "rv-1", &review)
            .await,
        200
    );
    pod.wait_for("the plan from the review body", |g| {
        g.standin
            .comments(OWNER, REPO, 2)
            .iter()
            .any(|(_, body, _)| body.contains("- [ ] Add an error type"))
    })
    .await;
    assert!(pod
        .github
        .standin
        .check_runs(OWNER, REPO)
        .iter()
        .any(|c| c["name"] == "penguin/plan"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_review_pre_hook_stops_the_review_and_shows_in_the_check_run() {
    let config = r#"
hooks:
  pre:
    review.run:
      - argv: ["/bin/sh", "-c", "read ctx; echo \"policy says no for $(echo $ctx | grep -o 'review.run')\" >&2; exit 1"]
        timeout_secs: 10
"#;
    let pod = pod_with_config(Some(config)).await;
    assert_eq!(
        pod.deliver(
            "hook-1",
            &deliveries::comment(2, true, "@Penguin review", "octocat", "User", 9301)
        )
        .await,
        200
    );
    pod.wait_for("a completed check run", |g| {
        g.standin
            .check_runs(OWNER, REPO)
            .iter()
            .any(|c| c["status"] == "completed")
    })
    .await;
    let run = &pod.github.standin.check_runs(OWNER, REPO)[0];
    assert_eq!(run["conclusion"], "failure");
    let summary = run["output"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("policy says no for review.run"),
        "{summary}"
    );
    assert!(
        pod.github.standin.reviews(OWNER, REPO, 2).is_empty(),
        "no review after a failed pre-hook"
    );
    assert!(pod.llm.requests().is_empty(), "the model was not asked");
    // Labels follow the check run.
    pod.wait_for("the failed label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 2)
            .contains(&"penguin:failed".to_string())
    })
    .await;
}

/// Seeds `main` with a failing "test" (status.txt says broken) over real
/// git, with the tokenator's credentials file.
fn seed_failing_repository(pod: &Pod) {
    pod.push_to_main(&[("status.txt", "broken\n")]);
}

/// Seeds the failing repository, scripts the model's fix, asks for
/// `fix tests` on issue 1 (delivery `id`, comment `comment_id`), waits for
/// the report and checks the branch and pull request.
async fn fix_the_failing_repository(pod: &Pod, id: &str, comment_id: u64) {
    seed_failing_repository(pod);
    pod.script_fix("status.txt", "broken", "fixed");
    assert_eq!(
        pod.deliver(
            id,
            &deliveries::comment(
                1,
                false,
                "@Penguin fix tests",
                "octocat",
                "User",
                comment_id
            )
        )
        .await,
        200
    );
    pod.wait_for("the fix report", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("Tests pass after my changes"))
    })
    .await;
    assert_bot_branch_and_pr(pod);
}

/// Checks the bot's branch, commit and fixed file in the bare repository
/// and the pull request from it; returns the branch.
fn assert_bot_branch_and_pr(pod: &Pod) -> String {
    let bare_git = |args: &[&str]| pod.github.bare_git(args);
    let branch = bare_git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads/penguin/",
    ]);
    assert!(
        branch.starts_with("penguin/") && branch.ends_with("-fix-tests"),
        "{branch}"
    );
    let commit = bare_git(&["log", "-1", "--format=%an%n%ae%n%B", &branch]);
    let mut lines = commit.lines();
    assert_eq!(lines.next(), Some("penguin-agent[bot]"));
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with("+penguin-agent[bot]@users.noreply.github.com"),
        "{commit}"
    );
    assert!(commit.contains("Task-ID: task_"), "{commit}");
    assert_eq!(
        bare_git(&["show", &format!("{branch}:status.txt")]),
        "fixed"
    );
    assert_ne!(
        bare_git(&["rev-parse", "main"]),
        bare_git(&["rev-parse", &branch]),
        "main is untouched"
    );
    let pulls = pod.github.standin.pulls(OWNER, REPO);
    let pr = pulls
        .iter()
        .find(|p| p["head"]["ref"] == branch.as_str())
        .expect("a pull request for the branch");
    assert_eq!(pr["base"]["ref"], "main");
    assert!(pr["body"].as_str().unwrap().contains("Task-ID: task_"));
    branch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_tests_pushes_a_bot_commit_and_opens_a_pull_request_while_tokens_rotate() {
    let config = r#"
security:
  capabilities: { repo_write: allow, shell: allow }
github:
  fix_tests: { test_command: "sleep 2; grep -q fixed status.txt", max_rounds: 3, timeout_secs: 30 }
"#;
    // Tokens live three seconds: several rotations happen during the run.
    let pod = pod_with(Some(config), Duration::from_secs(3)).await;
    fix_the_failing_repository(&pod, "fix-1", 9401).await;
    // Clone and push were more than a token lifetime apart (two ~2 s test
    // rounds against 3 s tokens): the push needed a newer git token, asked
    // for fresh, and no git request was refused.
    let git_scope_mints = pod
        .github
        .standin
        .mint_requests()
        .iter()
        .filter(|m| {
            m.status == 201
                && m.permissions
                    .as_ref()
                    .and_then(|p| p.get("contents"))
                    .map(String::as_str)
                    == Some("write")
        })
        .count();
    assert!(
        git_scope_mints >= 2,
        "only {git_scope_mints} git-scoped tokens minted"
    );
    assert_eq!(pod.github.standin.git_auth_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_remote_runner_the_test_command_runs_in_penguin_runner() {
    let runner = TestRunner::start(&[]).await;
    // The command fails anywhere but in one of this runner's job directories,
    // so the fix can only pass if the runner ran it; it also tries what the
    // local runner could reach and must not: the tokenator's socket dir.
    let config = format!(
        r#"
security:
  capabilities: {{ repo_write: allow, shell: allow }}
github:
  fix_tests: {{ test_command: "case \"$PWD\" in {work}/job-*) ;; *) echo not-in-runner; exit 9;; esac; grep -q fixed status.txt", max_rounds: 3, timeout_secs: 30 }}
"#,
        work = runner.work_dir.display()
    );
    let pod = pod_with_env(Some(&config), Duration::from_secs(3600), runner.api_env()).await;
    fix_the_failing_repository(&pod, "fix-remote-1", 9411).await;
    // Two jobs: the failing run, then the passing one.
    let jobs = runner.process.logs().matches("job finished").count();
    assert!(jobs >= 2, "{}", runner.process.logs());
    assert!(!runner.process.logs().contains("not-in-runner"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ask_policy_fix_tests_waits_for_a_maintainers_approval() {
    // Default security policy: repo_write and shell are "ask".
    let config = r#"
github:
  fix_tests: { test_command: "grep -q fixed status.txt", max_rounds: 2, timeout_secs: 30 }
"#;
    let pod = pod_with_config(Some(config)).await;
    seed_failing_repository(&pod);
    assert_eq!(
        pod.deliver(
            "ask-1",
            &deliveries::comment(1, false, "@Penguin fix tests", "octocat", "User", 9501)
        )
        .await,
        200
    );
    pod.wait_for("the approval request", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("approve"))
    })
    .await;
    pod.wait_for("the needs-input label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 1)
            .contains(&"penguin:needs-input".to_string())
    })
    .await;
    assert!(
        pod.llm.requests().is_empty(),
        "nothing runs before approval"
    );
    // A reader cannot approve.
    assert_eq!(
        pod.deliver(
            "ask-2",
            &deliveries::comment(1, false, "@Penguin approve", "stranger", "User", 9502)
        )
        .await,
        200
    );
    pod.wait_for("the refusal", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("@stranger"))
    })
    .await;
    assert!(pod.llm.requests().is_empty());
    // The requester cannot approve their own request: it is a second person's decision.
    assert_eq!(
        pod.deliver(
            "ask-self",
            &deliveries::comment(1, false, "@Penguin approve", "octocat", "User", 9505)
        )
        .await,
        200
    );
    pod.wait_for("the refusal of a self-approval", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("cannot approve it too"))
    })
    .await;
    assert!(pod.llm.requests().is_empty());
    // Another maintainer approves: the fix runs once.
    pod.github
        .standin
        .set_permission(OWNER, REPO, "mona", "maintain");
    pod.script_fix("status.txt", "broken", "fixed");
    assert_eq!(
        pod.deliver(
            "ask-3",
            &deliveries::comment(1, false, "@Penguin approve", "mona", "User", 9503)
        )
        .await,
        200
    );
    pod.wait_for("the approved fix", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| {
                body.contains("Approved by @mona")
                    && body.contains("requested by @octocat")
                    && body.contains("Tests pass")
            })
    })
    .await;
    assert_bot_branch_and_pr(&pod);
    assert!(!pod
        .github
        .standin
        .issue_labels(OWNER, REPO, 1)
        .contains(&"penguin:needs-input".to_string()));
    // A second approval has nothing left to run.
    assert_eq!(
        pod.deliver(
            "ask-4",
            &deliveries::comment(1, false, "@Penguin approve", "octocat", "User", 9504)
        )
        .await,
        200
    );
    pod.wait_for("the second approval's answer", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("Nothing here is waiting for approval"))
    })
    .await;
    // One agent run: the edit, then finish.
    assert_eq!(pod.llm.requests().len(), 2, "the fix ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_pull_request_gets_the_configured_automatic_review() {
    let pod = pod_with_config(Some("github:\n  bot:\n    auto_review_on: [opened]\n")).await;
    pod.llm.push_reply(Reply::ToolCalls(vec![(
        "finish".into(),
        json!({"summary": "Looks fine.", "findings": []}),
    )]));
    let example = |action: &str| penguin_test_support::webhooks::example("pull_request", action);
    let retarget = |mut payload: Value| {
        payload["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
        payload["repository"]["name"] = json!(REPO);
        payload["repository"]["owner"]["login"] = json!(OWNER);
        payload["number"] = json!(2);
        payload["pull_request"]["number"] = json!(2);
        payload["pull_request"]["draft"] = json!(false);
        payload
    };
    assert_eq!(
        pod.deliver_event("pull_request", "pr-opened", &retarget(example("opened")))
            .await,
        200
    );
    pod.wait_for("the automatic review", |g| {
        !g.standin.reviews(OWNER, REPO, 2).is_empty()
    })
    .await;
    assert!(pod.github.standin.reviews(OWNER, REPO, 2)[0]["body"]
        .as_str()
        .unwrap()
        .contains("Looks fine"));
    assert!(pod
        .github
        .standin
        .check_runs(OWNER, REPO)
        .iter()
        .any(|c| c["name"] == "penguin/review"));
    // The review's last step is its label; only then is the bot quiet.
    pod.wait_for("the done label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 2)
            .contains(&"penguin:done".to_string())
    })
    .await;
    // Actions not configured are ignored.
    let before = pod.github.standin.calls().len();
    assert_eq!(
        pod.deliver_event("pull_request", "pr-closed", &retarget(example("closed")))
            .await,
        200
    );
    pod.wait_for_metric(
        "penguin_webhook_deliveries_processed_total{event=\"pull_request\",result=\"ignored\"}",
        |n| n >= 1.0,
    )
    .await;
    assert_eq!(pod.github.standin.calls().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_on_comments_is_waited_out() {
    let pod = pod().await;
    pod.github.standin.fail_next_calls(
        1,
        "POST",
        &format!("/repos/{OWNER}/{REPO}/issues/1/comments"),
        github_standin::Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    pod.llm.push_reply(Reply::Text("- [ ] one step".into()));
    let started = std::time::Instant::now();
    assert_eq!(
        pod.deliver(
            "rl-1",
            &deliveries::comment(1, false, "@Penguin plan", "octocat", "User", 9601)
        )
        .await,
        200
    );
    pod.wait_for("the plan after the back-off", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("- [ ] one step"))
    })
    .await;
    let posts: Vec<u16> = pod
        .github
        .standin
        .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/issues/1/comments"))
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(posts, vec![403, 201], "refused once, then created");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after was honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_hooks_see_the_context_and_a_failing_pre_push_hook_stops_the_push() {
    let record = tempfile::NamedTempFile::new().unwrap();
    let config = format!(
        r#"
security:
  capabilities: {{ repo_write: allow, shell: allow }}
github:
  fix_tests: {{ test_command: "grep -q fixed status.txt", max_rounds: 2, timeout_secs: 30 }}
hooks:
  post:
    commit.create:
      - argv: ["/bin/sh", "-c", "cat > {record}"]
  pre:
    push:
      - argv: ["/bin/sh", "-c", "echo 'push freeze until Monday' >&2; exit 1"]
"#,
        record = record.path().display()
    );
    let pod = pod_with_config(Some(&config)).await;
    seed_failing_repository(&pod);
    pod.script_fix("status.txt", "broken", "fixed");
    assert_eq!(
        pod.deliver(
            "hooks-1",
            &deliveries::comment(1, false, "@Penguin fix tests", "octocat", "User", 9701)
        )
        .await,
        200
    );
    pod.wait_for("the stopped fix", |g| {
        g.standin
            .comments(OWNER, REPO, 1)
            .iter()
            .any(|(_, body, _)| body.contains("push freeze until Monday"))
    })
    .await;
    // The commit hook got the context, with the new commit's sha.
    let context: Value =
        serde_json::from_str(&std::fs::read_to_string(record.path()).unwrap()).unwrap();
    assert_eq!(context["event"], "commit.create");
    assert_eq!(context["repository"], format!("{OWNER}/{REPO}"));
    assert_eq!(context["actor"], "octocat");
    assert_eq!(context["sha"].as_str().unwrap().len(), 40);
    assert!(context["branch"].as_str().unwrap().starts_with("penguin/"));
    // Nothing was pushed and no pull request opened.
    let refs = pod
        .github
        .bare_git(&["for-each-ref", "refs/heads/penguin/"]);
    assert!(refs.is_empty(), "{refs}");
    assert!(pod
        .github
        .standin
        .pulls(OWNER, REPO)
        .iter()
        .all(|p| p["number"] == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_allowed_teams_may_act_without_write_permission() {
    let config =
        "github:\n  bot:\n    allowed_teams: [octo-org/maintainers, other-org/maintainers]\n";
    let pod = pod_with_config(Some(config)).await;
    pod.github
        .standin
        .set_permission(OWNER, REPO, "teamy", "read");
    pod.github
        .standin
        .add_team_member(OWNER, "maintainers", "teamy");
    pod.llm
        .push_reply(Reply::Text("- [ ] Reproduce\n- [ ] Fix".into()));
    assert_eq!(
        pod.deliver(
            "team-1",
            &deliveries::comment(1, false, "@Penguin plan", "teamy", "User", 9601)
        )
        .await,
        200
    );
    pod.wait_for("the plan", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains("- [ ] Reproduce"))
    })
    .await;
    // Not a member, read permission only: refused, after asking GitHub.
    assert_eq!(
        pod.deliver(
            "team-2",
            &deliveries::comment(1, false, "@Penguin plan", "stranger", "User", 9602)
        )
        .await,
        200
    );
    pod.wait_for("the refusal", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains("@stranger") && b.contains("allowed_teams"))
    })
    .await;
    let lookups = pod.github.standin.calls_to("GET", "/orgs/");
    let asked = |login: &str| {
        lookups
            .iter()
            .filter(|c| c.path == format!("/orgs/{OWNER}/teams/maintainers/memberships/{login}"))
            .count()
    };
    assert_eq!((asked("teamy"), asked("stranger")), (1, 1), "{lookups:#?}");
    // Another organization's team cannot be checked with this installation.
    assert!(lookups.iter().all(|c| !c.path.contains("other-org")));
    // Write permission needs no team lookup.
    pod.llm.push_reply(Reply::Text("- [ ] Again".into()));
    assert_eq!(
        pod.deliver(
            "team-3",
            &deliveries::comment(1, false, "@Penguin plan", "octocat", "User", 9603)
        )
        .await,
        200
    );
    pod.wait_for("the second plan", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains("- [ ] Again"))
    })
    .await;
    assert_eq!(
        pod.github.standin.calls_to("GET", "/orgs/").len(),
        2,
        "no lookup for a writer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_config_on_the_default_branch_only_narrows() {
    let pod = pod().await;
    // The repository switches `plan` off and renames the done label.
    pod.push_to_main(&[(
        ".penguin/config.yml",
        "github:\n  bot:\n    enabled_commands: [review, summarize, help]\n  labels:\n    label_map: { done: \"bot:finished\" }\n",
    )]);
    assert_eq!(
        pod.deliver(
            "narrow-1",
            &deliveries::comment(1, false, "@Penguin plan", "octocat", "User", 9701)
        )
        .await,
        200
    );
    pod.wait_for("the refusal", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains("`plan` command is not enabled here"))
    })
    .await;
    assert!(pod.llm.requests().is_empty(), "the model was not called");
    // It read the file from the default branch (no ref: GitHub's default).
    let reads = pod.github.standin.calls_to(
        "GET",
        &format!("/repos/{OWNER}/{REPO}/contents/.penguin/config.yml"),
    );
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0].status, 200);
    // Commands it keeps use its label names.
    pod.llm.push_reply(Reply::Text("It fixes #1.".into()));
    assert_eq!(
        pod.deliver(
            "narrow-2",
            &deliveries::comment(2, true, "@Penguin summarize", "octocat", "User", 9702)
        )
        .await,
        200
    );
    pod.wait_for("the renamed done label", |g| {
        g.standin
            .issue_labels(OWNER, REPO, 2)
            .contains(&"bot:finished".to_string())
    })
    .await;
    // A repository cannot widen: unknown keys make the file invalid, and the bot says so.
    pod.push_to_main(&[(
        ".penguin/config.yml",
        "github:\n  bot:\n    allowed_users: [stranger]\n",
    )]);
    assert_eq!(
        pod.deliver(
            "narrow-3",
            &deliveries::comment(1, false, "@Penguin summarize", "octocat", "User", 9703)
        )
        .await,
        200
    );
    pod.wait_for("the invalid-config answer", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains(".penguin/config.yml") && b.contains("invalid"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_tests_through_the_git_data_api_makes_a_verified_bot_commit() {
    let config = r#"
security:
  capabilities: { repo_write: allow, shell: allow }
github:
  fix_tests: { test_command: "grep -q fixed status.txt", max_rounds: 2, timeout_secs: 30, commit_via_api: true }
"#;
    let pod = pod_with_config(Some(config)).await;
    seed_failing_repository(&pod);
    let pushes_before = pod.github.standin.git_pushes();
    pod.script_fix("status.txt", "broken", "fixed");
    assert_eq!(
        pod.deliver(
            "gitdata-1",
            &deliveries::comment(1, false, "@Penguin fix tests", "octocat", "User", 9801)
        )
        .await,
        200
    );
    pod.wait_for("the fix report", |_| {
        pod.bot_comments(1)
            .iter()
            .any(|b| b.contains("Tests pass after my changes"))
    })
    .await;
    let branch = assert_bot_branch_and_pr(&pod);
    // No git push: blobs, a tree, a commit GitHub signed, and a ref.
    assert_eq!(pod.github.standin.git_pushes(), pushes_before);
    for step in ["blobs", "trees", "commits", "refs"] {
        let calls = pod
            .github
            .standin
            .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/git/{step}"));
        assert_eq!(calls.len(), 1, "{step}");
        assert_eq!(calls[0].status, 201, "{step}: {calls:#?}");
    }
    let commit = &pod
        .github
        .standin
        .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/git/commits"))[0];
    assert!(commit.body.get("author").is_none() && commit.body.get("committer").is_none());
    let head = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(
            pod.github
                .dir
                .path()
                .join("git")
                .join(OWNER)
                .join(format!("{REPO}.git")),
        )
        .args(["rev-parse", &branch])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(
        pod.github.standin.verified_commits().contains(&head),
        "the branch head {head} is not a commit GitHub signed"
    );
}
