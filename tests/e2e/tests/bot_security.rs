//! Attacks on the bot through the real binaries: each test tries what an
//! attacker (or a careless edit) would, and asserts the bot holds.

use github_standin::{Fault, PullFileSpec, PullSpec};
use llm_standin::Reply;
use penguin_test_support::{binaries::workspace_binary, deliveries, pod::Pod, GitHub, OWNER, REPO};
use std::{path::Path, time::Duration};

async fn pod_with_pull() -> Pod {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let pod = Pod::start(
        workspace_binary("penguin-tokenator"),
        workspace_binary("penguin-api"),
        github,
        "run",
        |env, _| {
            let workspace = Path::new(&env["PENGUIN_WORKSPACE"]);
            std::fs::create_dir_all(workspace.join(".penguin")).unwrap();
        },
    )
    .await;
    pod.github.standin.add_pull(
        OWNER,
        REPO,
        PullSpec {
            number: 2,
            title: "Handle empty input".into(),
            body: "Fixes #1".into(),
            author: "octocat".into(),
            head_ref: "fix-empty".into(),
            head_sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e".into(),
            base_ref: "main".into(),
            labels: vec![],
            from_fork: false,
            files: vec![PullFileSpec {
                filename: "src/lib.rs".into(),
                status: "modified".into(),
                additions: 1,
                deletions: 1,
                patch: Some("@@ -1 +1 @@\n-fn parse() {}\n+fn parse(_: &str) {}".into()),
            }],
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
    pod.llm.push_reply(Reply::Text("- Looks fine.".into()));
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
