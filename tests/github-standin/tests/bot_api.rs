//! The REST routes a GitHub App bot uses: issues, comments, reactions, labels, check runs,
//! pull requests, files, reviews and collaborator permissions. Every object is parsed with
//! octocrab's model.

use std::path::Path;

use github_standin::{Fault, PullFileSpec, PullSpec, RecordedCall};
use http::{Method, StatusCode};
use penguin_test_support::github_api::*;
use penguin_test_support::parse;
use serde_json::{json, Value};

const REPO: &str = "/repos/octo-org/hello-world";
const BOT: &str = "penguin-agent[bot]";

/// The `rel` → URL pairs of a `Link` header.
fn links(resp: &Resp) -> Vec<(String, String)> {
    resp.header("link")
        .unwrap_or_default()
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (url, rel) = part.split_once("; ").unwrap();
            let url = url.trim_start_matches('<').trim_end_matches('>');
            let rel = rel.trim_start_matches("rel=\"").trim_end_matches('"');
            (rel.to_string(), url.to_string())
        })
        .collect()
}

fn link<'a>(l: &'a [(String, String)], rel: &str) -> Option<&'a str> {
    l.iter().find(|(r, _)| r == rel).map(|(_, u)| u.as_str())
}

fn sample_pull(number: u64, files: usize) -> PullSpec {
    PullSpec {
        number,
        title: "Fix the parser".into(),
        body: "It was broken.".into(),
        author: "alice".into(),
        head_ref: "fix-parser".into(),
        head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
        base_ref: "main".into(),
        labels: vec!["bug".into()],
        from_fork: true,
        files: (0..files)
            .map(|i| PullFileSpec {
                filename: format!("src/file {i}.rs"),
                status: ["added", "modified", "removed"][i % 3].into(),
                additions: i as u64,
                deletions: 1,
                patch: (i % 2 == 0).then(|| format!("@@ -1 +1 @@\n-old{i}\n+new{i}")),
            })
            .collect(),
    }
}

#[tokio::test]
async fn issues_and_comments_are_served_paginated_and_recorded() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue(
        "octo-org",
        "hello-world",
        7,
        "Crash on start",
        "It crashes.",
        "alice",
        &["bug", "help wanted"],
    );
    s.set_permission("octo-org", "hello-world", "alice", "write");
    let token = mint_token(&base, None).await;

    // The issue, parsed by octocrab.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/7"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert!(resp.header("x-ratelimit-remaining").is_some());
    let issue = parse!(octocrab::models::issues::Issue, &resp.json);
    assert_eq!(issue.number, 7);
    assert_eq!(issue.title, "Crash on start");
    assert_eq!(issue.user.login, "alice");
    assert_eq!(issue.labels.len(), 2);
    assert_eq!(issue.labels[0].color, "d73a4a");
    assert!(issue.pull_request.is_none());
    assert_eq!(
        issue.author_association,
        Some(octocrab::models::AuthorAssociation::Collaborator)
    );
    let _label = parse!(octocrab::models::Label, &resp.json["labels"][1]);
    assert_eq!(resp.json["reactions"]["total_count"], 0);

    // Create a comment: 201, authored by the bot, via the App.
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/7/comments"),
        &token,
        Some(json!({"body": "On it!"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let comment = parse!(octocrab::models::issues::Comment, &resp.json);
    assert_eq!(comment.body.as_deref(), Some("On it!"));
    assert_eq!(comment.user.login, BOT);
    assert_eq!(comment.user.r#type, "Bot");
    assert_eq!(
        resp.json["performed_via_github_app"]["slug"],
        "penguin-agent"
    );
    assert!(resp
        .header("location")
        .unwrap()
        .ends_with(&format!("/issues/comments/{}", comment.id.0)));
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/comments/{}", comment.id.0),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let again = parse!(octocrab::models::issues::Comment, &resp.json);
    assert_eq!(again.id, comment.id);

    // Four more, then page through 5 comments two at a time.
    for i in 2..=5 {
        let resp = call(
            &base,
            Method::POST,
            &format!("{REPO}/issues/7/comments"),
            &token,
            Some(json!({"body": format!("comment {i}")})),
        )
        .await;
        assert_eq!(resp.status, StatusCode::CREATED);
    }
    let path = format!("{REPO}/issues/7/comments");
    let resp = call(
        &base,
        Method::GET,
        &format!("{path}?per_page=2"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let page = parse!(Vec<octocrab::models::issues::Comment>, &resp.json);
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].body.as_deref(), Some("On it!"));
    let l = links(&resp);
    assert_eq!(
        link(&l, "next"),
        Some(format!("{path}?per_page=2&page=2").as_str())
    );
    assert_eq!(
        link(&l, "last"),
        Some(format!("{path}?per_page=2&page=3").as_str())
    );
    assert_eq!(link(&l, "prev"), None);
    let resp = call(
        &base,
        Method::GET,
        &format!("{path}?per_page=2&page=3"),
        &token,
        None,
    )
    .await;
    let page = parse!(Vec<octocrab::models::issues::Comment>, &resp.json);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].body.as_deref(), Some("comment 5"));
    let l = links(&resp);
    assert_eq!(link(&l, "next"), None);
    assert_eq!(
        link(&l, "prev"),
        Some(format!("{path}?per_page=2&page=2").as_str())
    );
    assert_eq!(
        link(&l, "first"),
        Some(format!("{path}?per_page=2&page=1").as_str())
    );
    // The issue now counts its comments.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/7"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.json["comments"], 5);

    // Errors.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/99"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "Not Found");
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/99/comments"),
        &token,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/7/comments"),
        &token,
        Some(json!({"nobody": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/7/comments"),
        &token,
        Some(json!({"body": "x".repeat(65_537)})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["message"], "Validation Failed");
    let resp = send(
        &base,
        Method::POST,
        &format!("{REPO}/issues/7/comments"),
        Some(&token_auth(&token)),
        Some("{not json"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json["message"], "Problems parsing JSON");

    // State and recording.
    let comments = s.comments("octo-org", "hello-world", 7);
    assert_eq!(comments.len(), 5);
    assert_eq!(comments[0].0, comment.id.0);
    assert_eq!(comments[0].1, "On it!");
    assert_eq!(comments[0].2, BOT);
    let posts = s.calls_to("POST", &format!("{REPO}/issues/7/comments"));
    assert_eq!(posts.len(), 8);
    assert_eq!(
        posts[0],
        RecordedCall {
            method: "POST".into(),
            path: format!("{REPO}/issues/7/comments"),
            body: json!({"body": "On it!"}),
            status: 201,
        }
    );
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [201, 201, 201, 201, 201, 422, 422, 400]
    );
    assert_eq!(posts[7].body, json!("{not json"));
    let all = s.calls();
    assert_eq!(all.len(), 15);
    assert_eq!(all[0].method, "GET");
    assert_eq!(all[0].path, format!("{REPO}/issues/7"));
    assert_eq!(all[0].body, Value::Null);
    assert_eq!(all[0].status, 200);
    assert!(s.calls_to("GET", "/repos/octo-org/other-repo").is_empty());
}

#[tokio::test]
async fn only_the_bots_own_comments_can_be_edited() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue("octo-org", "hello-world", 1, "t", "b", "alice", &[]);
    let theirs = s
        .add_comment("octo-org", "hello-world", 1, "please fix", "alice")
        .unwrap();
    assert_eq!(
        s.add_comment("octo-org", "hello-world", 2, "x", "alice"),
        None
    );
    let token = mint_token(&base, None).await;
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/1/comments"),
        &token,
        Some(json!({"body": "Working on it"})),
    )
    .await;
    let mine = resp.json["id"].as_u64().unwrap();

    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/issues/comments/{mine}"),
        &token,
        Some(json!({"body": "Done"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let edited = parse!(octocrab::models::issues::Comment, &resp.json);
    assert_eq!(edited.body.as_deref(), Some("Done"));
    assert_eq!(edited.id.0, mine);

    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/issues/comments/{theirs}"),
        &token,
        Some(json!({"body": "hijacked"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "Resource not accessible by integration"
    );
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/issues/comments/424242"),
        &token,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    let comments = s.comments("octo-org", "hello-world", 1);
    assert_eq!(
        comments,
        [
            (theirs, "please fix".to_string(), "alice".to_string()),
            (mine, "Done".to_string(), BOT.to_string()),
        ]
    );
    // POST is taken for PATCH, and recorded as PATCH (faults match it that way too).
    s.fail_next_calls(
        1,
        "PATCH",
        &format!("{REPO}/issues/comments/"),
        Fault::Status(500),
    );
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/comments/{mine}"),
        &token,
        Some(json!({"body": "Done!"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/issues/comments/{mine}"),
        &token,
        Some(json!({"body": "Done"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let patches = s.calls_to("PATCH", &format!("{REPO}/issues/comments/"));
    assert_eq!(
        patches.iter().map(|c| c.status).collect::<Vec<_>>(),
        [200, 403, 404, 500, 200]
    );
    assert!(s
        .calls_to("POST", &format!("{REPO}/issues/comments/"))
        .is_empty());
}

#[tokio::test]
async fn reactions_validate_content_and_deduplicate() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue("octo-org", "hello-world", 1, "t", "b", "alice", &[]);
    let existing = s
        .add_comment("octo-org", "hello-world", 1, "/penguin fix", "alice")
        .unwrap();
    let token = mint_token(&base, None).await;

    // Any comment ID is accepted (deliveries may reference comments the stand-in never saw).
    let path = format!("{REPO}/issues/comments/987654321/reactions");
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"content": "eyes"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let reaction = parse!(octocrab::models::reactions::Reaction, &resp.json);
    assert_eq!(
        reaction.content,
        octocrab::models::reactions::ReactionContent::Eyes
    );
    assert_eq!(reaction.user.login, BOT);
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"content": "eyes"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json["id"].as_u64(), Some(reaction.id.0));
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"content": "+1"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_ne!(resp.json["id"].as_u64(), Some(reaction.id.0));

    for bad in [
        json!({"content": "thumbsup"}),
        json!({}),
        json!({"content": 1}),
    ] {
        let resp = call(&base, Method::POST, &path, &token, Some(bad.clone())).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    // Reactions show up in the comment's rollup.
    let path = format!("{REPO}/issues/comments/{existing}/reactions");
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"content": "rocket"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/comments/{existing}"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.json["reactions"]["rocket"], 1);
    assert_eq!(resp.json["reactions"]["total_count"], 1);
    assert_eq!(resp.json["performed_via_github_app"], Value::Null);
    assert_eq!(resp.json["user"]["login"], "alice");

    let calls = s.calls_to(
        "POST",
        "/repos/octo-org/hello-world/issues/comments/987654321",
    );
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [201, 200, 201, 422, 422, 422]
    );
    assert_eq!(calls[0].body, json!({"content": "eyes"}));
}

#[tokio::test]
async fn labels_are_added_created_and_removed() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue("octo-org", "hello-world", 3, "t", "b", "alice", &["bug"]);
    let token = mint_token(&base, None).await;

    let path = format!("{REPO}/issues/3/labels");
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"labels": ["needs review", "BUG", "penguin"]})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let labels = parse!(Vec<octocrab::models::Label>, &resp.json);
    let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["bug", "needs review", "penguin"]);
    assert_eq!(
        s.issue_labels("octo-org", "hello-world", 3),
        ["bug", "needs review", "penguin"]
    );

    // Label names in paths are percent-encoded.
    let resp = call(
        &base,
        Method::DELETE,
        &format!("{path}/needs%20review"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let labels = parse!(Vec<octocrab::models::Label>, &resp.json);
    assert_eq!(labels.len(), 2);
    assert_eq!(
        s.issue_labels("octo-org", "hello-world", 3),
        ["bug", "penguin"]
    );

    let resp = call(
        &base,
        Method::DELETE,
        &format!("{path}/needs%20review"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "Label does not exist");
    let resp = call(
        &base,
        Method::DELETE,
        &format!("{REPO}/issues/4/labels/bug"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"labels": "bug"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        s.issue_labels("octo-org", "hello-world", 3),
        ["bug", "penguin"]
    );

    assert_eq!(
        s.calls()
            .iter()
            .map(|c| (c.method.as_str(), c.status))
            .collect::<Vec<_>>(),
        [
            ("POST", 200),
            ("DELETE", 200),
            ("DELETE", 404),
            ("DELETE", 404),
            ("POST", 422)
        ]
    );
}

#[tokio::test]
async fn check_runs_are_created_validated_and_completed() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    let mut pull = sample_pull(5, 1);
    pull.from_fork = false;
    s.add_pull("octo-org", "hello-world", pull.clone());
    let token = mint_token(&base, None).await;

    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/check-runs"),
        &token,
        Some(json!({
            "name": "penguin",
            "head_sha": pull.head_sha,
            "status": "in_progress",
            "details_url": "https://penguin.example/runs/1",
            "external_id": "run-1",
        })),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let run = parse!(octocrab::models::checks::CheckRun, &resp.json);
    assert_eq!(run.name, "penguin");
    assert_eq!(run.head_sha, pull.head_sha);
    assert_eq!(run.conclusion, None);
    assert!(run.started_at.is_some());
    assert_eq!(run.completed_at, None);
    assert_eq!(run.pull_requests.len(), 1);
    assert_eq!(run.pull_requests[0].number, 5);
    assert_eq!(resp.json["status"], "in_progress");
    assert_eq!(resp.json["external_id"], "run-1");
    assert_eq!(resp.json["app"]["slug"], "penguin-agent");
    let id = run.id.0;
    let path = format!("{REPO}/check-runs/{id}");

    // Validation failures leave the run unchanged.
    for bad in [
        json!({"status": "completed"}),
        json!({"conclusion": "great"}),
        json!({"status": "done"}),
        json!({"output": {"title": "only a title"}}),
        json!({"output": {"title": "t", "summary": "s".repeat(65_536)}}),
    ] {
        let resp = call(&base, Method::PATCH, &path, &token, Some(bad.clone())).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(resp.json["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request."));
    }
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/check-runs"),
        &token,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);

    let resp = call(
        &base,
        Method::PATCH,
        &path,
        &token,
        Some(json!({
            "status": "completed",
            "conclusion": "failure",
            "output": {"title": "2 tests failed", "summary": "See below", "text": "details"},
        })),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let run = parse!(octocrab::models::checks::CheckRun, &resp.json);
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert!(run.completed_at.is_some());
    assert_eq!(run.output.title.as_deref(), Some("2 tests failed"));
    assert_eq!(run.output.text.as_deref(), Some("details"));
    assert_eq!(resp.json["status"], "completed");

    let resp = call(&base, Method::GET, &path, &token, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let fetched = parse!(octocrab::models::checks::CheckRun, &resp.json);
    assert_eq!(fetched, run);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/check-runs/1"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    let runs = s.check_runs("octo-org", "hello-world");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["conclusion"], "failure");
    assert_eq!(runs[0]["output"]["summary"], "See below");
    assert_eq!(runs[0]["details_url"], "https://penguin.example/runs/1");
    let patches = s.calls_to("PATCH", &path);
    assert_eq!(patches.len(), 6);
    assert_eq!(patches[5].status, 200);
    assert_eq!(patches[5].body["conclusion"], "failure");
}

#[tokio::test]
async fn pull_requests_and_their_files_are_served() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", sample_pull(12, 35));
    let token = mint_token(&base, None).await;

    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/pulls/12"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let pr = parse!(octocrab::models::pulls::PullRequest, &resp.json);
    assert_eq!(pr.number, 12);
    assert_eq!(pr.title.as_deref(), Some("Fix the parser"));
    assert_eq!(pr.user.as_ref().unwrap().login, "alice");
    assert_eq!(pr.head.ref_field, "fix-parser");
    assert_eq!(pr.head.sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(pr.head.label.as_deref(), Some("alice:fix-parser"));
    let head_repo = pr.head.repo.as_ref().unwrap();
    assert_eq!(head_repo.fork, Some(true));
    assert_eq!(head_repo.full_name.as_deref(), Some("alice/hello-world"));
    assert_eq!(pr.base.ref_field, "main");
    assert_eq!(pr.base.sha.len(), 40);
    let base_repo = pr.base.repo.as_ref().unwrap();
    assert_eq!(base_repo.full_name.as_deref(), Some("octo-org/hello-world"));
    assert_eq!(base_repo.fork, Some(false));
    assert_eq!(pr.labels.as_ref().unwrap()[0].name, "bug");
    assert_eq!(pr.draft, Some(false));
    assert_eq!(pr.mergeable, None);
    assert_eq!(pr.state, Some(octocrab::models::IssueState::Open));
    assert_eq!(pr.changed_files, Some(35));
    assert_eq!(resp.json["mergeable"], Value::Null);

    // It is also an issue, with a `pull_request` key.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/issues/12"),
        &token,
        None,
    )
    .await;
    let issue = parse!(octocrab::models::issues::Issue, &resp.json);
    let link_to_pr = issue.pull_request.unwrap();
    assert!(link_to_pr.url.as_str().ends_with("/pulls/12"));
    assert_eq!(issue.title, "Fix the parser");

    // Files: 30 per page by default, with Link headers.
    let path = format!("{REPO}/pulls/12/files");
    let resp = call(&base, Method::GET, &path, &token, None).await;
    assert_eq!(resp.status, StatusCode::OK);
    let files = parse!(Vec<octocrab::models::repos::DiffEntry>, &resp.json);
    assert_eq!(files.len(), 30);
    assert_eq!(files[0].filename, "src/file 0.rs");
    assert_eq!(
        files[0].status,
        octocrab::models::repos::DiffEntryStatus::Added
    );
    assert_eq!(
        files[1].status,
        octocrab::models::repos::DiffEntryStatus::Modified
    );
    assert_eq!(
        files[2].status,
        octocrab::models::repos::DiffEntryStatus::Removed
    );
    assert_eq!(files[3].additions, 3);
    assert_eq!(files[3].changes, 4);
    assert_eq!(files[0].patch.as_deref(), Some("@@ -1 +1 @@\n-old0\n+new0"));
    assert_eq!(files[1].patch, None);
    assert!(resp.json[1].get("patch").is_none(), "patch omitted");
    assert!(files[0]
        .contents_url
        .as_str()
        .contains("src/file%200.rs?ref=ec26c3e"));
    let l = links(&resp);
    assert_eq!(
        link(&l, "next"),
        Some(format!("{path}?per_page=30&page=2").as_str())
    );
    assert_eq!(link(&l, "last"), link(&l, "next"));
    let resp = call(&base, Method::GET, link(&l, "next").unwrap(), &token, None).await;
    let rest = parse!(Vec<octocrab::models::repos::DiffEntry>, &resp.json);
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[4].filename, "src/file 34.rs");
    let resp = call(
        &base,
        Method::GET,
        &format!("{path}?per_page=500"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.json.as_array().unwrap().len(), 35);
    assert!(resp.header("link").is_none());
    // GitHub's absolute form, on request; other query parameters are kept.
    s.set_absolute_links(true);
    let resp = call(
        &base,
        Method::GET,
        &format!("{path}?x=1&page=2&per_page=10"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.json.as_array().unwrap().len(), 10);
    let l = links(&resp);
    assert_eq!(
        link(&l, "next"),
        Some(format!("{base}{path}?x=1&per_page=10&page=3").as_str())
    );
    assert_eq!(
        link(&l, "prev"),
        Some(format!("{base}{path}?x=1&per_page=10&page=1").as_str())
    );
    assert_eq!(
        link(&l, "last"),
        Some(format!("{base}{path}?x=1&per_page=10&page=4").as_str())
    );

    // Errors.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/pulls/13"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/pulls/13/files"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    s.add_issue("octo-org", "hello-world", 14, "plain issue", "", "bob", &[]);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/pulls/14"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    let pulls = s.pulls("octo-org", "hello-world");
    assert_eq!(pulls.len(), 1);
    let _ = parse!(octocrab::models::pulls::PullRequest, &pulls[0]);
    assert_eq!(
        s.calls_to("GET", &path)
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>(),
        [200, 200, 200, 200]
    );
}

/// Runs git in `dir`, panicking on failure.
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Penguin Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Penguin Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare `octo-org/hello-world` with `main` and `feature` (one commit ahead).
fn seed_branches(env: &GitHub) {
    let bare = env.standin.create_repo("octo-org", "hello-world").unwrap();
    let bare = bare.to_str().unwrap();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", bare, "main"]);
    git(&work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.join("README.md"), "hello, world\n").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    git(&work, &["push", "-q", bare, "feature"]);
}

#[tokio::test]
async fn pull_requests_are_created_listed_updated_and_deduplicated() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    seed_branches(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue(
        "octo-org",
        "hello-world",
        4,
        "older issue",
        "",
        "alice",
        &[],
    );
    let token = mint_token(&base, None).await;
    let create = json!({
        "title": "Penguin: fix it",
        "head": "octo-org:feature",
        "base": "main",
        "body": "Fixes #4",
    });

    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(create.clone()),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let pr = parse!(octocrab::models::pulls::PullRequest, &resp.json);
    assert_eq!(pr.number, 5, "numbers are shared with issues");
    assert_eq!(pr.user.as_ref().unwrap().login, BOT);
    assert_eq!(pr.head.ref_field, "feature");
    assert_eq!(pr.head.label.as_deref(), Some("octo-org:feature"));
    assert_eq!(pr.head.repo.as_ref().unwrap().fork, Some(false));
    assert_ne!(pr.head.sha, pr.base.sha);
    assert_eq!(pr.head.sha.len(), 40);
    assert_eq!(pr.body.as_deref(), Some("Fixes #4"));

    // The same head again: GitHub's duplicate error.
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(create.clone()),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["message"], "Validation Failed");
    assert_eq!(
        resp.json["errors"][0]["message"],
        "A pull request already exists for octo-org:feature."
    );
    // Without the owner prefix too.
    let mut bare_head = create.clone();
    bare_head["head"] = json!("feature");
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(bare_head),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A head branch that does not exist.
    let mut missing = create.clone();
    missing["head"] = json!("octo-org:nope");
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(missing),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["errors"][0]["field"], "head");
    assert_eq!(
        resp.json["errors"][0]["message"],
        "head branch does not exist"
    );
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(json!({"head": "feature", "base": "main"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["errors"][0]["field"], "title");

    // Listing by head.
    let list = |q: &'static str| {
        let base = base.clone();
        let token = token.clone();
        async move {
            let resp = call(
                &base,
                Method::GET,
                &format!("{REPO}/pulls{q}"),
                &token,
                None,
            )
            .await;
            assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
            parse!(Vec<octocrab::models::pulls::PullRequest>, &resp.json)
        }
    };
    assert_eq!(list("?head=octo-org:feature&state=open").await.len(), 1);
    assert_eq!(list("?head=octo-org:other&state=open").await.len(), 0);
    assert_eq!(list("?head=someone:feature").await.len(), 0);
    assert_eq!(list("").await.len(), 1);

    // Update, close, and then a new PR for the same head is fine.
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/pulls/5"),
        &token,
        Some(json!({"body": "Fixes #4\n\nUpdated", "title": "Penguin: fixed"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let pr = parse!(octocrab::models::pulls::PullRequest, &resp.json);
    assert_eq!(pr.body.as_deref(), Some("Fixes #4\n\nUpdated"));
    assert_eq!(pr.title.as_deref(), Some("Penguin: fixed"));
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/pulls/5"),
        &token,
        Some(json!({"state": "merged"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/pulls/9"),
        &token,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/pulls/5"),
        &token,
        Some(json!({"state": "closed"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json["state"], "closed");
    assert!(resp.json["closed_at"].is_string());
    assert_eq!(list("?head=octo-org:feature").await.len(), 0);
    assert_eq!(list("?head=octo-org:feature&state=closed").await.len(), 1);
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(create),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["number"], 6);
    // Reopening the first would duplicate the second.
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/pulls/5"),
        &token,
        Some(json!({"state": "open"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);

    let pulls = s.pulls("octo-org", "hello-world");
    assert_eq!(pulls.len(), 2);
    assert_eq!(pulls[0]["body"], "Fixes #4\n\nUpdated");
    assert_eq!(pulls[0]["state"], "closed");
    assert_eq!(pulls[1]["state"], "open");
    let creates = s.calls_to("POST", &format!("{REPO}/pulls"));
    assert_eq!(
        creates.iter().map(|c| c.status).collect::<Vec<_>>(),
        [201, 422, 422, 422, 422, 201]
    );
    assert_eq!(creates[0].body["head"], "octo-org:feature");
}

#[tokio::test]
async fn reviews_are_submitted_with_githubs_rules() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    seed_branches(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", sample_pull(2, 3));
    let token = mint_token(&base, None).await;
    let path = format!("{REPO}/pulls/2/reviews");

    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({
            "body": "A few notes",
            "event": "COMMENT",
            "comments": [{"path": "src/file 0.rs", "line": 1, "body": "Why?"}],
        })),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let review = parse!(octocrab::models::pulls::Review, &resp.json);
    assert_eq!(
        review.state,
        Some(octocrab::models::pulls::ReviewState::Commented)
    );
    assert_eq!(review.user.as_ref().unwrap().login, BOT);
    assert_eq!(review.body.as_deref(), Some("A few notes"));
    assert_eq!(
        review.commit_id.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    assert!(review.submitted_at.is_some());
    assert!(review
        .html_url
        .as_str()
        .contains("/pull/2#pullrequestreview-"));

    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"event": "APPROVE"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let review = parse!(octocrab::models::pulls::Review, &resp.json);
    assert_eq!(
        review.state,
        Some(octocrab::models::pulls::ReviewState::Approved)
    );
    let resp = call(
        &base,
        Method::POST,
        &path,
        &token,
        Some(json!({"event": "REQUEST_CHANGES", "body": "Please add tests"})),
    )
    .await;
    let review = parse!(octocrab::models::pulls::Review, &resp.json);
    assert_eq!(
        review.state,
        Some(octocrab::models::pulls::ReviewState::ChangesRequested)
    );

    // Errors: a bad event, a blank COMMENT, a path not in the diff, a missing PR.
    for bad in [
        json!({"event": "LGTM", "body": "x"}),
        json!({"event": "COMMENT"}),
        json!({"event": "COMMENT", "comments": [{"path": "nope.rs", "line": 1, "body": "x"}]}),
    ] {
        let resp = call(&base, Method::POST, &path, &token, Some(bad.clone())).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls/3/reviews"),
        &token,
        Some(json!({"event": "COMMENT", "body": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // The bot cannot approve its own pull request.
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls"),
        &token,
        Some(json!({"title": "mine", "head": "feature", "base": "main"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let own = resp.json["number"].as_u64().unwrap();
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/pulls/{own}/reviews"),
        &token,
        Some(json!({"event": "APPROVE"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json["errors"][0],
        "Review Can not approve your own pull request"
    );

    let reviews = s.reviews("octo-org", "hello-world", 2);
    assert_eq!(reviews.len(), 3);
    assert_eq!(reviews[0]["state"], "COMMENTED");
    assert_eq!(reviews[0]["comments"][0]["body"], "Why?");
    assert_eq!(reviews[0]["comments"][0]["line"], 1);
    assert_eq!(reviews[0]["comments"][0]["side"], "RIGHT");
    assert_eq!(
        reviews[0]["comments"][0]["diff_hunk"],
        "@@ -1 +1 @@\n-old0\n+new0"
    );
    assert_eq!(reviews[1]["state"], "APPROVED");
    assert_eq!(reviews[2]["body"], "Please add tests");
    assert!(s.reviews("octo-org", "hello-world", own).is_empty());
    assert_eq!(
        s.calls_to("POST", &path)
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>(),
        [200, 200, 200, 422, 422, 422]
    );
}

#[tokio::test]
async fn collaborator_permissions_use_githubs_legacy_mapping() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.set_permission("octo-org", "hello-world", "alice", "write");
    s.set_permission("octo-org", "hello-world", "mo", "maintain");
    s.set_permission("octo-org", "hello-world", "tri", "triage");
    s.set_permission("octo-org", "hello-world", "gone", "admin");
    s.set_permission("octo-org", "hello-world", "gone", "none");
    let token = mint_token(&base, None).await;

    for (user, permission, role, push) in [
        ("alice", "write", "write", true),
        ("Alice", "write", "write", true),
        ("mo", "write", "maintain", true),
        ("tri", "read", "triage", false),
        ("gone", "none", "none", false),
        ("stranger", "none", "none", false),
    ] {
        let resp = call(
            &base,
            Method::GET,
            &format!("{REPO}/collaborators/{user}/permission"),
            &token,
            None,
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
        assert_eq!(resp.json["permission"], permission, "{user}");
        assert_eq!(resp.json["role_name"], role, "{user}");
        let collaborator = parse!(octocrab::models::Collaborator, &resp.json["user"]);
        assert_eq!(collaborator.author.login, user);
        assert_eq!(collaborator.permissions.push, push, "{user}");
    }
    // octocrab's RepoPermission only knows GitHub's role names for `admin`.
    s.set_permission("octo-org", "hello-world", "root", "admin");
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/collaborators/root/permission"),
        &token,
        None,
    )
    .await;
    let p = parse!(octocrab::models::repos::RepoPermission, &resp.json);
    assert_eq!(p.role_name, "admin");
    assert!(p.user.permissions.admin);

    let resp = call(
        &base,
        Method::GET,
        "/repos/octo-org/unknown/collaborators/alice/permission",
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(s.calls().len(), 8);
    assert_eq!(s.calls()[7].status, 404);
}

#[tokio::test]
async fn bot_routes_need_a_token_that_sees_the_repository() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let s = &env.standin;
    s.add_issue("octo-org", "hello-world", 1, "t", "b", "alice", &[]);
    s.add_issue("octo-org", "other-repo", 1, "t", "b", "alice", &[]);
    let path = format!("{REPO}/issues/1");

    // Anonymous and App JWT: not found (private repository).
    let resp = get(&base, &path, None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = get(&base, &path, Some(&bearer(&app_jwt()))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    // Garbage and revoked tokens: bad credentials.
    let resp = get(
        &base,
        &path,
        Some("token ghs_notarealtoken000000000000000000000000"),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json["message"], "Bad credentials");

    // A token scoped to the other repository cannot see this one.
    let scoped = mint_token(&base, Some(r#"{"repositories":["other-repo"]}"#)).await;
    let resp = get(&base, &path, Some(&token_auth(&scoped))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "Not Found");
    let resp = get(
        &base,
        "/repos/octo-org/other-repo/issues/1",
        Some(&token_auth(&scoped)),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);

    // A token without the issues/pull_requests permission is refused.
    let checks_only = mint_token(&base, Some(r#"{"permissions":{"checks":"write"}}"#)).await;
    let resp = call(
        &base,
        Method::POST,
        &format!("{path}/comments"),
        &checks_only,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "Resource not accessible by integration"
    );
    let read_only = mint_token(&base, Some(r#"{"permissions":{"issues":"read"}}"#)).await;
    let resp = get(&base, &path, Some(&token_auth(&read_only))).await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = call(
        &base,
        Method::POST,
        &format!("{path}/labels"),
        &read_only,
        Some(json!({"labels": ["x"]})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);

    // Requests count against the token's rate limit.
    let token = mint_token(&base, None).await;
    let first = get(&base, &path, Some(&token_auth(&token))).await;
    let second = get(&base, &path, Some(&token_auth(&token))).await;
    let used = |r: &Resp| {
        r.header("x-ratelimit-used")
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(used(&second), used(&first) + 1);

    // Injected faults hit only matching calls, in order, and are recorded.
    s.fail_next_calls(1, "POST", &format!("{path}/comments"), Fault::Status(502));
    s.fail_next_calls(
        1,
        "GET",
        REPO,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let resp = get(&base, &path, Some(&token_auth(&token))).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.header("retry-after"), Some("7"));
    let resp = call(
        &base,
        Method::POST,
        &format!("{path}/comments"),
        &token,
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert!(s.comments("octo-org", "hello-world", 1).is_empty());
    let resp = call(
        &base,
        Method::POST,
        &format!("{path}/comments"),
        &token,
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);

    let statuses: Vec<u16> = s.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [404, 404, 401, 404, 200, 403, 200, 403, 200, 200, 403, 502, 201]
    );
    // The untouched existing route is not part of the log.
    let resp = get(&base, REPO, Some(&token_auth(&token))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(s.calls().len(), statuses.len());
}

#[tokio::test]
async fn octocrab_drives_the_bot_routes() {
    use octocrab::models::reactions::ReactionContent;
    use octocrab::params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus};

    let env = GitHub::empty(|_| {}).await.unwrap();
    seed_branches(&env);
    let s = &env.standin;
    s.add_issue(
        "octo-org",
        "hello-world",
        1,
        "Crash",
        "boom",
        "alice",
        &["bug"],
    );
    s.add_pull("octo-org", "hello-world", sample_pull(2, 40));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(APP_KEY.as_bytes()).unwrap();
    let app = octocrab::Octocrab::builder()
        .base_uri(env.standin.url())
        .unwrap()
        .app(octocrab::models::AppId(APP_ID), key)
        .build()
        .unwrap();
    let (crab, _token) = app
        .installation_and_token(octocrab::models::InstallationId(1001))
        .await
        .unwrap();
    let issues = crab.issues("octo-org", "hello-world");

    let issue = issues.get(1).await.unwrap();
    assert_eq!(issue.title, "Crash");
    let comment = issues.create_comment(1, "Looking").await.unwrap();
    let comment = issues.update_comment(comment.id, "Looked").await.unwrap();
    assert_eq!(comment.body.as_deref(), Some("Looked"));
    issues
        .create_comment_reaction(comment.id, ReactionContent::Heart)
        .await
        .unwrap();
    for i in 0..3 {
        issues.create_comment(1, format!("more {i}")).await.unwrap();
    }
    let page = issues.list_comments(1).per_page(3).send().await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(page.next.is_some());
    let next: octocrab::Page<octocrab::models::issues::Comment> =
        crab.get_page(&page.next).await.unwrap().unwrap();
    assert_eq!(next.items.len(), 1);
    let labels = issues
        .add_labels(1, &["needs-triage".to_string()])
        .await
        .unwrap();
    assert_eq!(labels.len(), 2);
    let labels = issues.remove_label(1, "needs-triage").await.unwrap();
    assert_eq!(labels.len(), 1);

    let checks = crab.checks("octo-org", "hello-world");
    let run = checks
        .create_check_run("penguin", "ec26c3e57ca3a959ca5aad62de7213c562f8c821")
        .status(CheckRunStatus::InProgress)
        .send()
        .await
        .unwrap();
    let run = checks
        .update_check_run(run.id)
        .status(CheckRunStatus::Completed)
        .conclusion(CheckRunConclusion::Success)
        .output(CheckRunOutput {
            title: "All good".into(),
            summary: "Nothing to report".into(),
            text: None,
            annotations: vec![],
            images: vec![],
        })
        .send()
        .await
        .unwrap();
    assert_eq!(run.conclusion.as_deref(), Some("success"));

    let pulls = crab.pulls("octo-org", "hello-world");
    let pr = pulls.get(2).await.unwrap();
    assert_eq!(pr.head.ref_field, "fix-parser");
    let files = pulls.list_files(2).await.unwrap();
    assert_eq!(files.items.len(), 30);
    let all = crab.all_pages(files).await.unwrap();
    assert_eq!(all.len(), 40);
    let created = pulls
        .create("Penguin: fix", "feature", "main")
        .body("Fixes #1")
        .send()
        .await
        .unwrap();
    assert_eq!(created.number, 3);
    let err = pulls
        .create("again", "octo-org:feature", "main")
        .send()
        .await
        .unwrap_err();
    match err {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code.as_u16(), 422);
            assert!(source
                .to_string()
                .contains("A pull request already exists for octo-org:feature."));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let updated = pulls
        .update(3)
        .body("Fixes #1 (edited)")
        .send()
        .await
        .unwrap();
    assert_eq!(updated.body.as_deref(), Some("Fixes #1 (edited)"));
    #[allow(deprecated)]
    let review = pulls
        .pull_number(2)
        .reviews()
        .create_review(
            "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            "Looks fine",
            octocrab::models::pulls::ReviewAction::Comment,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        review.state,
        Some(octocrab::models::pulls::ReviewState::Commented)
    );
    let open = pulls
        .list()
        .head("octo-org:feature")
        .state(octocrab::params::State::Open)
        .send()
        .await
        .unwrap();
    assert_eq!(open.items.len(), 1);

    assert_eq!(s.issue_labels("octo-org", "hello-world", 1), ["bug"]);
    assert_eq!(s.comments("octo-org", "hello-world", 1).len(), 4);
    assert_eq!(
        s.check_runs("octo-org", "hello-world")[0]["status"],
        "completed"
    );
    assert_eq!(s.reviews("octo-org", "hello-world", 2).len(), 1);
    // octocrab sends comment updates as POST, which GitHub (and the stand-in) accept as PATCH.
    let edit = s.calls_to("PATCH", "/repos/octo-org/hello-world/issues/comments/");
    assert_eq!(edit[0].body, json!({"body": "Looked"}));
    assert_eq!(edit[0].status, 200);
    assert!(s.calls().iter().all(|c| c.status < 300 || c.status == 422));
    assert_eq!(
        s.calls_to("DELETE", "/repos/octo-org/hello-world/issues/1/labels/")
            .len(),
        1
    );
}
