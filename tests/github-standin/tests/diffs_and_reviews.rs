//! Pull request files computed from the bare repository, comparisons of two commits, and reviews
//! whose inline comments are checked against the diff as GitHub checks them: pending reviews,
//! review comments and replies.

use std::path::PathBuf;

use github_standin::{PullFileSpec, PullSpec};
use http::{Method, StatusCode};
use penguin_test_support::github_api::*;
use penguin_test_support::parse;
use serde_json::{json, Value};

const REPO: &str = "/repos/octo-org/hello-world";
const BOT: &str = "penguin-agent[bot]";
const REVIEW_DOCS: &str =
    "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request";

/// `src/lib.rs` on the feature branch: line 2 changed, line 15 removed, a line after line 28.
/// (git names the line before a hunk after its header.)
const LIB_PATCH: &str = "@@ -1,5 +1,5 @@\n line 1\n-line 2\n+line two\n line 3\n line 4\n line 5\n\
@@ -12,7 +12,6 @@ line 11\n line 12\n line 13\n line 14\n-line 15\n line 16\n line 17\n line 18\n\
@@ -26,5 +25,6 @@ line 25\n line 26\n line 27\n line 28\n+inserted\n line 29\n line 30";

/// A work tree pushing to the stand-in's bare `octo-org/hello-world`.
struct Work {
    dir: PathBuf,
    bare: PathBuf,
}

impl Work {
    /// Runs git in the work tree; panics unless it succeeds; returns trimmed stdout.
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Penguin Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Penguin Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn write(&self, path: &str, content: &[u8]) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Commits everything and returns the new commit.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Force-pushes `branch` to the bare repository.
    fn push(&self, branch: &str) {
        let bare = self.bare.to_str().unwrap().to_string();
        self.git(&[
            "push",
            "-q",
            "-f",
            &bare,
            &format!("{branch}:refs/heads/{branch}"),
        ]);
    }

    /// `git diff` hunks of one file between two commits, as GitHub's `patch` shows them.
    fn patch(&self, range: &str, path: &str) -> String {
        let diff = self.git(&["diff", "-M", range, "--", path]);
        let start = diff.find("\n@@ ").unwrap() + 1;
        diff[start..].to_string()
    }
}

/// The commits of the seeded repository.
struct Shas {
    /// `main` when `feature` branched off.
    m1: String,
    /// `main` now (README changed).
    m2: String,
    /// `feature`.
    f1: String,
}

/// Creates `octo-org/hello-world` with `main` and `feature` (branched from main's first commit;
/// main moved on since): feature changes `src/lib.rs`, removes `old.txt`, renames
/// `docs/guide.md` to `docs/manual.md` (changing a line), adds `new.txt` and changes the
/// binary `logo.bin`.
fn seed(env: &GitHub) -> (Work, Shas) {
    let bare = env.standin.create_repo("octo-org", "hello-world").unwrap();
    let work = Work {
        dir: env.dir.path().join("work"),
        bare,
    };
    std::fs::create_dir_all(&work.dir).unwrap();
    work.git(&["init", "-q", "-b", "main"]);
    let lib: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    work.write("src/lib.rs", lib.as_bytes());
    work.write("old.txt", b"gone\n");
    let guide: String = (1..=10).map(|i| format!("guide line {i}\n")).collect();
    work.write("docs/guide.md", guide.as_bytes());
    work.write("logo.bin", &[0, 1, 2, 3, 0, 255]);
    work.write("README.md", b"hello\n");
    let m1 = work.commit("first");
    work.git(&["checkout", "-q", "-b", "feature"]);
    let lib: String = (1..=30)
        .filter(|i| *i != 15)
        .flat_map(|i| match i {
            2 => vec!["line two\n".to_string()],
            28 => vec!["line 28\n".to_string(), "inserted\n".to_string()],
            _ => vec![format!("line {i}\n")],
        })
        .collect();
    work.write("src/lib.rs", lib.as_bytes());
    std::fs::remove_file(work.dir.join("old.txt")).unwrap();
    std::fs::remove_file(work.dir.join("docs/guide.md")).unwrap();
    work.write(
        "docs/manual.md",
        guide.replace("line 10", "line ten").as_bytes(),
    );
    work.write("new.txt", b"hello\nworld\n");
    work.write("logo.bin", &[0, 1, 2, 3, 0, 254]);
    let f1 = work.commit("feature work");
    work.git(&["checkout", "-q", "main"]);
    work.write("README.md", b"hello, world\n");
    let m2 = work.commit("readme");
    work.push("main");
    work.push("feature");
    (work, Shas { m1, m2, f1 })
}

/// Pull request `number` from `feature` into `main`, with files from git.
fn git_pull(number: u64, head_sha: &str) -> PullSpec {
    PullSpec {
        number,
        title: "Feature".into(),
        body: String::new(),
        author: "alice".into(),
        head_ref: "feature".into(),
        head_sha: head_sha.into(),
        base_ref: "main".into(),
        ..PullSpec::default()
    }
}

async fn get(base: &str, token: &str, path: &str) -> Resp {
    call(base, Method::GET, path, token, None).await
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> Resp {
    call(base, Method::POST, path, token, Some(body)).await
}

#[tokio::test]
async fn pull_files_come_from_the_three_dot_diff() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (work, shas) = seed(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", git_pull(1, &shas.f1));
    let token = mint_token(&base, None).await;

    let resp = get(&base, &token, &format!("{REPO}/pulls/1/files")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let files = parse!(Vec<octocrab::models::repos::DiffEntry>, &resp.json);
    let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
    // README.md changed on main only: not part of the pull request.
    assert_eq!(
        names,
        [
            "docs/manual.md",
            "logo.bin",
            "new.txt",
            "old.txt",
            "src/lib.rs"
        ]
    );
    let by_name = |n: &str| &resp.json[names.iter().position(|x| *x == n).unwrap()];

    let lib = by_name("src/lib.rs");
    assert_eq!(lib["status"], "modified");
    assert_eq!(lib["patch"], LIB_PATCH);
    assert_eq!(
        lib["patch"],
        work.patch(&format!("{}...{}", shas.m2, shas.f1), "src/lib.rs")
    );
    assert_eq!(
        (lib["additions"].as_u64(), lib["deletions"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(lib["changes"], 4);
    assert_eq!(
        lib["sha"],
        work.git(&["rev-parse", &format!("{}:src/lib.rs", shas.f1)])
    );
    assert_eq!(
        lib["blob_url"],
        format!("{base}/octo-org/hello-world/blob/{}/src/lib.rs", shas.f1)
    );
    assert_eq!(
        lib["raw_url"],
        format!("{base}/octo-org/hello-world/raw/{}/src/lib.rs", shas.f1)
    );
    assert_eq!(
        lib["contents_url"],
        format!("{base}{REPO}/contents/src/lib.rs?ref={}", shas.f1)
    );
    assert!(lib.get("previous_filename").is_none());

    let renamed = by_name("docs/manual.md");
    assert_eq!(renamed["status"], "renamed");
    assert_eq!(renamed["previous_filename"], "docs/guide.md");
    assert_eq!(
        renamed["patch"],
        "@@ -7,4 +7,4 @@ guide line 6\n guide line 7\n guide line 8\n guide line 9\n-guide line 10\n+guide line ten"
    );
    assert_eq!(
        (renamed["additions"].as_u64(), renamed["deletions"].as_u64()),
        (Some(1), Some(1))
    );

    let added = by_name("new.txt");
    assert_eq!(added["status"], "added");
    assert_eq!(added["patch"], "@@ -0,0 +1,2 @@\n+hello\n+world");
    assert_eq!(added["additions"], 2);

    let removed = by_name("old.txt");
    assert_eq!(removed["status"], "removed");
    assert_eq!(removed["patch"], "@@ -1 +0,0 @@\n-gone");
    assert_eq!(removed["deletions"], 1);
    assert_eq!(
        removed["sha"],
        work.git(&["rev-parse", &format!("{}:old.txt", shas.m1)])
    );

    let binary = by_name("logo.bin");
    assert_eq!(binary["status"], "modified");
    assert!(binary.get("patch").is_none(), "no patch for binary files");
    assert_eq!(
        (binary["additions"].as_u64(), binary["deletions"].as_u64()),
        (Some(0), Some(0))
    );

    // The pull request agrees.
    let resp = get(&base, &token, &format!("{REPO}/pulls/1")).await;
    let pr = parse!(octocrab::models::pulls::PullRequest, &resp.json);
    assert_eq!(pr.changed_files, Some(5));
    assert_eq!(pr.additions, Some(5));
    assert_eq!(pr.deletions, Some(4));
    assert_eq!(pr.commits, Some(1));
    assert_eq!(s.pulls("octo-org", "hello-world")[0]["changed_files"], 5);
    // Pagination as for seeded files.
    let resp = get(
        &base,
        &token,
        &format!("{REPO}/pulls/1/files?per_page=2&page=3"),
    )
    .await;
    assert_eq!(resp.json.as_array().unwrap().len(), 1);
    assert_eq!(resp.json[0]["filename"], "src/lib.rs");

    // A push moves the files, and `refs/pull/1/head`.
    work.git(&["checkout", "-q", "feature"]);
    work.write("new.txt", b"hello\nworld\nagain\n");
    let f2 = work.commit("more");
    work.push("feature");
    s.push_to_pull("octo-org", "hello-world", 1, &f2);
    assert_eq!(env.bare_git(&["rev-parse", "refs/pull/1/head"]), f2);
    let resp = get(&base, &token, &format!("{REPO}/pulls/1/files")).await;
    assert_eq!(
        resp.json[2]["patch"],
        "@@ -0,0 +1,3 @@\n+hello\n+world\n+again"
    );
    let resp = get(&base, &token, &format!("{REPO}/pulls/1")).await;
    assert_eq!(resp.json["commits"], 2);
    assert_eq!(resp.json["additions"], 6);

    // Seeded files still win, fake shas and all.
    s.add_pull(
        "octo-org",
        "hello-world",
        PullSpec {
            files: vec![PullFileSpec {
                filename: "x.rs".into(),
                status: "modified".into(),
                additions: 1,
                deletions: 1,
                patch: Some("@@ -1 +1 @@\n-a\n+b".into()),
            }],
            ..git_pull(2, &shas.f1)
        },
    );
    let resp = get(&base, &token, &format!("{REPO}/pulls/2/files")).await;
    assert_eq!(resp.json.as_array().unwrap().len(), 1);
    assert_eq!(resp.json[0]["filename"], "x.rs");
}

#[tokio::test]
async fn comparisons_tell_ahead_behind_identical_and_diverged() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (work, shas) = seed(&env);
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let compare = |spec: String| {
        let (base, token) = (base.clone(), token.clone());
        async move { get(&base, &token, &format!("{REPO}/compare/{spec}")).await }
    };

    // Branches that went separate ways.
    let resp = compare("main...feature".into()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let cmp = parse!(octocrab::models::commits::CommitComparison, &resp.json);
    assert_eq!(resp.json["status"], "diverged");
    assert_eq!((cmp.ahead_by, cmp.behind_by, cmp.total_commits), (1, 1, 1));
    assert_eq!(cmp.base_commit.sha, shas.m2);
    assert_eq!(cmp.merge_base_commit.sha, shas.m1);
    assert_eq!(cmp.commits.len(), 1);
    assert_eq!(cmp.commits[0].sha, shas.f1);
    assert_eq!(cmp.commits[0].commit.message, "feature work");
    assert_eq!(cmp.commits[0].parents[0].sha, shas.m1);
    assert_eq!(
        resp.json["commits"][0]["url"],
        format!("{base}{REPO}/commits/{}", shas.f1)
    );
    assert_eq!(resp.json["commits"][0]["author"], Value::Null);
    assert_eq!(
        resp.json["commits"][0]["commit"]["author"]["email"],
        "test@example.com"
    );
    assert_eq!(
        resp.json["permalink_url"],
        format!(
            "{base}/octo-org/hello-world/compare/octo-org:{}...octo-org:{}",
            &shas.m2[..7],
            &shas.f1[..7]
        )
    );
    assert_eq!(
        resp.json["url"],
        format!("{base}{REPO}/compare/main...feature")
    );
    let files = cmp.files.unwrap();
    assert_eq!(files.len(), 5);
    assert_eq!(files[4].filename, "src/lib.rs");
    assert_eq!(files[4].patch.as_deref(), Some(LIB_PATCH));

    // From the merge base: ahead. The other way round: behind. Itself: identical.
    let resp = compare(format!("{}...octo-org:feature", shas.m1)).await;
    assert_eq!(resp.json["status"], "ahead", "{}", resp.json);
    assert_eq!(
        (
            resp.json["ahead_by"].as_u64(),
            resp.json["behind_by"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let resp = compare(format!("feature...{}", &shas.m1[..10])).await;
    assert_eq!(resp.json["status"], "behind", "{}", resp.json);
    assert_eq!(
        (
            resp.json["ahead_by"].as_u64(),
            resp.json["behind_by"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(resp.json["files"], json!([]));
    let resp = compare("feature...feature".into()).await;
    assert_eq!(resp.json["status"], "identical");
    assert_eq!(resp.json["total_commits"], 0);
    assert_eq!(resp.json["commits"], json!([]));

    // A force-push: the old head is no ancestor of the new one.
    work.git(&["checkout", "-q", "-B", "feature", &shas.m1]);
    work.write("new.txt", b"rewritten\n");
    let f1b = work.commit("rewritten feature");
    work.push("feature");
    let resp = compare(format!("{}...feature", shas.f1)).await;
    assert_eq!(resp.json["status"], "diverged");
    assert_eq!(resp.json["merge_base_commit"]["sha"], shas.m1);
    assert_eq!(resp.json["commits"][0]["sha"], f1b);
    assert_eq!(resp.json["files"][0]["filename"], "new.txt");
    assert_eq!(resp.json["files"][0]["patch"], "@@ -0,0 +1 @@\n+rewritten");

    // Unknown names, another owner, a malformed spec.
    for spec in [
        "main...nope".to_string(),
        format!("main...{}", "0123456789abcdef0123456789abcdef01234567"),
        "someone:main...feature".to_string(),
        "main..feature".to_string(),
    ] {
        let resp = compare(spec.clone()).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{spec}");
        assert_eq!(resp.json["message"], "Not Found");
        assert_eq!(
            resp.json["documentation_url"],
            "https://docs.github.com/rest"
        );
    }

    // It needs contents read.
    let weak = mint_token(
        &base,
        Some(r#"{"permissions": {"pull_requests": "write"}}"#),
    )
    .await;
    let resp = get(&base, &weak, &format!("{REPO}/compare/main...feature")).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let statuses: Vec<u16> = env
        .standin
        .calls_to("GET", &format!("{REPO}/compare/"))
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 404, 404, 404, 404, 403]);
}

/// Where a comment landed: line, side, start line, start side, position.
type Placement<'a> = (u64, &'a str, Option<u64>, Option<&'a str>, u64);

/// Creates a review on pull request 1; returns the response.
async fn review(base: &str, token: &str, body: Value) -> Resp {
    post(base, token, &format!("{REPO}/pulls/1/reviews"), body).await
}

fn comment(path: &str, line: u64, body: &str) -> Value {
    json!({"path": path, "line": line, "body": body})
}

#[tokio::test]
async fn review_comments_must_sit_on_the_diff() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (_work, shas) = seed(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", git_pull(1, &shas.f1));
    let token = mint_token(&base, None).await;

    let resp = review(
        &base,
        &token,
        json!({
            "commit_id": shas.f1,
            "body": "Some notes",
            "event": "COMMENT",
            "comments": [
                comment("src/lib.rs", 2, "changed line"),
                {"path": "src/lib.rs", "line": 15, "side": "LEFT", "body": "removed line"},
                {"path": "src/lib.rs", "start_line": 25, "line": 28, "body": "a range"},
                {"path": "src/lib.rs", "position": 12, "body": "by position"},
                comment("new.txt", 2, "added file"),
                comment("docs/manual.md", 10, "renamed file"),
                {"path": "src/lib.rs", "start_line": 14, "start_side": "LEFT", "line": 15, "body": "sides"},
            ],
        }),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let rev = parse!(octocrab::models::pulls::Review, &resp.json);
    assert_eq!(rev.commit_id.as_deref(), Some(shas.f1.as_str()));

    let resp = get(&base, &token, &format!("{REPO}/pulls/1/comments")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let list = parse!(Vec<octocrab::models::pulls::Comment>, &resp.json);
    assert_eq!(list.len(), 7);
    let placed: Vec<Placement<'_>> = list
        .iter()
        .map(|c| {
            (
                c.line.unwrap(),
                c.side.as_deref().unwrap(),
                c.start_line,
                c.start_side.as_deref(),
                c.position.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            (2, "RIGHT", None, None, 3),
            (15, "LEFT", None, None, 11),
            (28, "RIGHT", Some(25), Some("RIGHT"), 19),
            (15, "RIGHT", None, None, 12),
            (2, "RIGHT", None, None, 2),
            (10, "RIGHT", None, None, 5),
            (15, "RIGHT", Some(14), Some("LEFT"), 12),
        ]
    );
    let first = &resp.json[0];
    assert_eq!(
        first["diff_hunk"],
        "@@ -1,5 +1,5 @@\n line 1\n-line 2\n+line two"
    );
    assert_eq!(
        resp.json[1]["diff_hunk"],
        "@@ -12,7 +12,6 @@ line 11\n line 12\n line 13\n line 14\n-line 15"
    );
    assert_eq!(
        resp.json[2]["diff_hunk"],
        "@@ -26,5 +25,6 @@ line 25\n line 26\n line 27\n line 28\n+inserted"
    );
    assert_eq!(first["path"], "src/lib.rs");
    assert_eq!(first["body"], "changed line");
    assert_eq!(first["commit_id"], shas.f1);
    assert_eq!(first["original_commit_id"], shas.f1);
    assert_eq!(first["original_line"], 2);
    assert_eq!(first["original_position"], 3);
    assert_eq!(first["subject_type"], "line");
    assert_eq!(first["pull_request_review_id"], rev.id.0);
    assert_eq!(first["user"]["login"], BOT);
    assert!(first.get("in_reply_to_id").is_none());
    let id = first["id"].as_u64().unwrap();
    assert_eq!(
        first["html_url"],
        format!("{base}/octo-org/hello-world/pull/1#discussion_r{id}")
    );
    assert_eq!(first["url"], format!("{base}{REPO}/pulls/comments/{id}"));
    assert_eq!(first["pull_request_url"], format!("{base}{REPO}/pulls/1"));
    assert_eq!(first["_links"]["self"]["href"], first["url"]);
    assert_eq!(first["reactions"]["total_count"], 0);
    let resp = get(&base, &token, &format!("{REPO}/pulls/comments/{id}")).await;
    assert_eq!(resp.json, *first);
    let resp = get(
        &base,
        &token,
        &format!("{REPO}/pulls/1/reviews/{}/comments", rev.id.0),
    )
    .await;
    assert_eq!(resp.json.as_array().unwrap().len(), 7);
    let resp = get(&base, &token, &format!("{REPO}/pulls/1")).await;
    assert_eq!(resp.json["review_comments"], 7);

    // Off the diff: the whole review is refused, naming every problem in one sentence.
    let refusals = [
        (comment("src/lib.rs", 8, "x"), "Line could not be resolved"),
        (comment("src/lib.rs", 18, "x"), "Line could not be resolved"),
        (
            json!({"path": "src/lib.rs", "line": 8, "side": "LEFT", "body": "x"}),
            "Line could not be resolved",
        ),
        (
            comment("docs/guide.md", 1, "x"),
            "Path could not be resolved",
        ),
        (comment("README.md", 1, "x"), "Path could not be resolved"),
        (comment("logo.bin", 1, "x"), "Line could not be resolved"),
        (
            json!({"path": "src/lib.rs", "start_line": 20, "line": 28, "body": "x"}),
            "Start line could not be resolved",
        ),
        (
            json!({"path": "src/lib.rs", "start_line": 28, "line": 25, "body": "x"}),
            "Start line must precede the end line.",
        ),
        (
            json!({"path": "src/lib.rs", "position": 7, "body": "x"}),
            "Position could not be resolved",
        ),
    ];
    for (bad, message) in refusals {
        let resp = review(
            &base,
            &token,
            json!({"event": "COMMENT", "comments": [comment("src/lib.rs", 2, "fine"), bad.clone()]}),
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(
            resp.json,
            json!({
                "message": "Unprocessable Entity",
                "errors": [message],
                "documentation_url": REVIEW_DOCS,
                "status": "422",
            }),
            "{bad}"
        );
    }
    let resp = review(
        &base,
        &token,
        json!({"event": "COMMENT", "comments": [
            comment("src/lib.rs", 8, "x"),
            comment("nope.rs", 1, "x"),
            comment("src/lib.rs", 40, "x"),
        ]}),
    )
    .await;
    assert_eq!(
        resp.json["errors"],
        json!(["Line could not be resolved, Path could not be resolved, and Line could not be resolved"])
    );
    // A commit the repository does not have.
    let resp = review(
        &base,
        &token,
        json!({"commit_id": "0123456789abcdef0123456789abcdef01234567", "event": "COMMENT", "body": "x"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json["errors"],
        json!(["The commitOID is not part of the pull request"])
    );
    // Malformed comments fail schema validation.
    let resp = review(
        &base,
        &token,
        json!({"event": "COMMENT", "comments": [{"path": "src/lib.rs", "line": "2", "body": "x"}]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json["message"],
        "Invalid request.\n\nFor 'properties/line', \"2\" is not an integer."
    );
    // Nothing of the refused reviews was stored.
    assert_eq!(s.reviews("octo-org", "hello-world", 1).len(), 1);
    assert_eq!(s.review_comments("octo-org", "hello-world", 1).len(), 7);
    assert_eq!(
        s.reviews("octo-org", "hello-world", 1)[0]["comments"][3]["body"],
        "by position"
    );
}

#[tokio::test]
async fn reviews_at_an_older_commit_use_its_diff() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (work, shas) = seed(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", git_pull(1, &shas.f1));
    let token = mint_token(&base, None).await;
    work.git(&["checkout", "-q", "feature"]);
    work.write("new.txt", b"hello\nworld\nagain\n");
    let f2 = work.commit("more");
    work.push("feature");
    s.push_to_pull("octo-org", "hello-world", 1, &f2);

    // Line 3 of new.txt exists at the head only.
    let line3 = json!([comment("new.txt", 3, "third")]);
    let resp = review(
        &base,
        &token,
        json!({"event": "COMMENT", "comments": line3}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["commit_id"], f2);
    let resp = review(
        &base,
        &token,
        json!({"commit_id": shas.f1, "event": "COMMENT", "comments": line3}),
    )
    .await;
    assert_eq!(resp.json["errors"], json!(["Line could not be resolved"]));
    let resp = review(
        &base,
        &token,
        json!({"commit_id": shas.f1, "event": "COMMENT", "comments": [comment("new.txt", 2, "second")]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["commit_id"], shas.f1);
    let comments = s.review_comments("octo-org", "hello-world", 1);
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0]["commit_id"], f2);
    assert_eq!(
        comments[0]["diff_hunk"],
        "@@ -0,0 +1,3 @@\n+hello\n+world\n+again"
    );
    assert_eq!(comments[1]["commit_id"], shas.f1);
    assert_eq!(comments[1]["diff_hunk"], "@@ -0,0 +1,2 @@\n+hello\n+world");

    // Seeded pull requests: the head or an earlier one, nothing else.
    s.add_pull(
        "octo-org",
        "hello-world",
        PullSpec {
            files: vec![PullFileSpec {
                filename: "x.rs".into(),
                status: "modified".into(),
                additions: 1,
                deletions: 1,
                patch: Some("@@ -1 +1 @@\n-a\n+b".into()),
            }],
            ..git_pull(3, &"a".repeat(40))
        },
    );
    s.push_to_pull("octo-org", "hello-world", 3, &"b".repeat(40));
    let path = format!("{REPO}/pulls/3/reviews");
    for (commit, status) in [
        ("a".repeat(40), StatusCode::OK),
        ("b".repeat(40), StatusCode::OK),
        ("c".repeat(40), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let resp = post(
            &base,
            &token,
            &path,
            json!({"commit_id": commit, "event": "COMMENT", "comments": [comment("x.rs", 1, "b?")]}),
        )
        .await;
        assert_eq!(resp.status, status, "{commit}: {}", resp.json);
    }
    let resp = post(
        &base,
        &token,
        &path,
        json!({"event": "COMMENT", "comments": [{"path": "x.rs", "line": 1, "side": "LEFT", "body": "a?"}]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let resp = post(
        &base,
        &token,
        &path,
        json!({"event": "COMMENT", "comments": [comment("x.rs", 2, "?")]}),
    )
    .await;
    assert_eq!(resp.json["errors"], json!(["Line could not be resolved"]));
}

#[tokio::test]
async fn a_pending_review_is_the_only_one_until_deleted() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (_work, shas) = seed(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", git_pull(1, &shas.f1));
    let token = mint_token(&base, None).await;

    let resp = review(
        &base,
        &token,
        json!({"body": "draft", "comments": [comment("src/lib.rs", 3, "later")]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let pending = parse!(octocrab::models::pulls::Review, &resp.json);
    assert_eq!(
        pending.state,
        Some(octocrab::models::pulls::ReviewState::Pending)
    );
    assert!(resp.json.get("submitted_at").is_none());
    let resp = get(&base, &token, &format!("{REPO}/pulls/1/reviews")).await;
    assert_eq!(resp.json.as_array().unwrap().len(), 1);
    let resp = get(
        &base,
        &token,
        &format!("{REPO}/pulls/1/reviews/{}", pending.id.0),
    )
    .await;
    assert_eq!(resp.json["state"], "PENDING");
    // Its comments do not count on the pull request yet.
    let resp = get(&base, &token, &format!("{REPO}/pulls/1")).await;
    assert_eq!(resp.json["review_comments"], 0);

    // No second review while it is pending, submitted or not.
    for body in [
        json!({"body": "again"}),
        json!({"body": "now", "event": "COMMENT"}),
    ] {
        let resp = review(&base, &token, body).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            resp.json["errors"],
            json!(["User can only have one pending review per pull request"])
        );
        assert_eq!(resp.json["documentation_url"], REVIEW_DOCS);
    }

    // Deleting it answers the review and drops its comments.
    let delete = |id: u64| {
        let (base, token) = (base.clone(), token.clone());
        async move {
            call(
                &base,
                Method::DELETE,
                &format!("{REPO}/pulls/1/reviews/{id}"),
                &token,
                None,
            )
            .await
        }
    };
    let resp = delete(pending.id.0).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(resp.json["id"], pending.id.0);
    assert_eq!(resp.json["state"], "PENDING");
    assert!(s.reviews("octo-org", "hello-world", 1).is_empty());
    assert!(s.review_comments("octo-org", "hello-world", 1).is_empty());
    assert_eq!(delete(pending.id.0).await.status, StatusCode::NOT_FOUND);

    // Now a review goes through; a submitted one cannot be deleted.
    let resp = review(&base, &token, json!({"body": "done", "event": "COMMENT"})).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let id = resp.json["id"].as_u64().unwrap();
    let resp = delete(id).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json["errors"],
        json!(["Can not delete a non-pending pull request review"])
    );
    assert_eq!(s.reviews("octo-org", "hello-world", 1).len(), 1);
    let deletes: Vec<u16> = s
        .calls_to("DELETE", &format!("{REPO}/pulls/1/reviews/"))
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(deletes, [200, 404, 422]);
}

#[tokio::test]
async fn replies_join_the_thread_of_the_comment() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let (_work, shas) = seed(&env);
    let base = env.standin.url();
    let s = &env.standin;
    s.add_pull("octo-org", "hello-world", git_pull(1, &shas.f1));
    s.add_pull("octo-org", "hello-world", git_pull(2, &shas.f1));
    let token = mint_token(&base, None).await;
    let resp = review(
        &base,
        &token,
        json!({"event": "COMMENT", "comments": [
            {"path": "src/lib.rs", "line": 15, "side": "LEFT", "body": "why remove this?"},
        ]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let root = s.review_comments("octo-org", "hello-world", 1)[0].clone();
    let root_id = root["id"].as_u64().unwrap();
    let reply = |n: u64, id: u64, body: Value| {
        let (base, token) = (base.clone(), token.clone());
        async move {
            post(
                &base,
                &token,
                &format!("{REPO}/pulls/{n}/comments/{id}/replies"),
                body,
            )
            .await
        }
    };

    let resp = reply(1, root_id, json!({"body": "It was dead code."})).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let first = parse!(octocrab::models::pulls::Comment, &resp.json);
    assert_eq!(first.in_reply_to_id.map(|i| i.0), Some(root_id));
    assert_eq!(first.body, "It was dead code.");
    for key in [
        "path",
        "line",
        "side",
        "diff_hunk",
        "commit_id",
        "original_commit_id",
        "position",
    ] {
        assert_eq!(resp.json[key], root[key], "{key}");
    }
    assert_ne!(
        resp.json["pull_request_review_id"],
        root["pull_request_review_id"]
    );
    assert_eq!(
        resp.header("location"),
        Some(format!("{base}{REPO}/pulls/comments/{}", first.id.0).as_str())
    );
    // Each reply comes with a review of its own.
    let reviews = s.reviews("octo-org", "hello-world", 1);
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[1]["state"], "COMMENTED");
    assert_eq!(reviews[1]["body"], "");
    assert_eq!(reviews[1]["id"], resp.json["pull_request_review_id"]);

    // A reply to the reply stays in the thread of its first comment.
    let resp = reply(1, first.id.0, json!({"body": "OK"})).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["in_reply_to_id"], root_id);

    // Not on that pull request, unknown, or without a body.
    assert_eq!(
        reply(2, root_id, json!({"body": "x"})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reply(1, 1, json!({"body": "x"})).await.status,
        StatusCode::NOT_FOUND
    );
    let resp = reply(1, root_id, json!({"body": " "})).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["errors"][0]["field"], "body");
    let resp = reply(1, root_id, json!({})).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);

    // All of it, oldest first, paginated.
    let path = format!("{REPO}/pulls/1/comments");
    let resp = get(&base, &token, &format!("{path}?per_page=2")).await;
    let page = parse!(Vec<octocrab::models::pulls::Comment>, &resp.json);
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id.0, root_id);
    assert!(resp
        .header("link")
        .unwrap()
        .contains(&format!("<{path}?per_page=2&page=2>; rel=\"next\"")));
    let all = s.review_comments("octo-org", "hello-world", 1);
    assert_eq!(
        all.iter()
            .map(|c| c["body"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["why remove this?", "It was dead code.", "OK"]
    );
    assert!(s.review_comments("octo-org", "hello-world", 2).is_empty());

    // Replies while a review is pending are refused, like other new comments.
    let resp = review(&base, &token, json!({"body": "draft"})).await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = reply(1, root_id, json!({"body": "x"})).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json["errors"],
        json!(["User can only have one pending review per pull request"])
    );

    // Review routes need pull requests permissions.
    let weak = mint_token(&base, Some(r#"{"permissions": {"contents": "read"}}"#)).await;
    assert_eq!(get(&base, &weak, &path).await.status, StatusCode::FORBIDDEN);
    let read = mint_token(&base, Some(r#"{"permissions": {"pull_requests": "read"}}"#)).await;
    assert_eq!(get(&base, &read, &path).await.status, StatusCode::OK);
    let resp = post(
        &base,
        &read,
        &format!("{REPO}/pulls/1/comments/{root_id}/replies"),
        json!({"body": "x"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
}
