//! Repository contents, the Git Data API (blobs, trees, commits, refs) over the real bare
//! repositories, and team memberships. Objects are parsed with octocrab's models, and what the
//! API creates is checked with a real `git clone`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use octocrab::models::git::{CreatedBlob, GitCommitObject, GitTree};
use octocrab::models::memberships::{Role, TeamMembership};
use octocrab::models::repos::{Content, Ref};
use penguin_test_support::github_api::*;
use penguin_test_support::parse;
use serde_json::{json, Value};

const REPO: &str = "/repos/octo-org/hello-world";
const BOT: &str = "penguin-agent[bot]";
/// `<bot user id>+<slug>[bot]@users.noreply.github.com`; the bot user ID is 900000 + App ID.
const BOT_EMAIL: &str = "904242+penguin-agent[bot]@users.noreply.github.com";

/// Runs git with a clean environment in `dir`; panics unless it succeeds; returns stdout.
async fn git(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "Penguin Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Penguin Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn remote(base: &str, token: &str) -> String {
    let hostport = base.trim_start_matches("http://");
    format!("http://x-access-token:{token}@{hostport}/octo-org/hello-world.git")
}

/// Creates `octo-org/hello-world` and pushes `main` (README.md, docs/guide.md, run.sh), a
/// `feature` branch with another README and a `v1` tag. Returns the main commit.
async fn seed(env: &GitHub, token: &str) -> String {
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let work = env.dir.path().join("seed");
    std::fs::create_dir_all(work.join("docs")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]).await;
    std::fs::write(work.join("README.md"), "hello from main\n").unwrap();
    std::fs::write(work.join("docs/guide.md"), "# Guide\n").unwrap();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\n").unwrap();
    git(&work, &["add", "."]).await;
    git(&work, &["update-index", "--chmod=+x", "run.sh"]).await;
    git(&work, &["commit", "-q", "-m", "first commit"]).await;
    git(&work, &["tag", "v1"]).await;
    let main = git(&work, &["rev-parse", "HEAD"]).await;
    git(&work, &["checkout", "-q", "-b", "feature"]).await;
    std::fs::write(work.join("README.md"), "hello from feature\n").unwrap();
    git(&work, &["commit", "-q", "-am", "feature readme"]).await;
    git(
        &work,
        &[
            "push",
            "-q",
            &remote(&base, token),
            "main:refs/heads/main",
            "feature:refs/heads/feature",
            "refs/tags/v1:refs/tags/v1",
        ],
    )
    .await;
    main
}

/// Decodes a content object's `content`.
fn decoded(v: &Value) -> String {
    let text: String = v["content"]
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| *c != '\n')
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// A commit through the Git Data API: `files` (path → content) on top of `parent`'s tree.
async fn api_commit(
    base: &str,
    token: &str,
    parent: &str,
    files: &[(&str, &str)],
    author: Option<Value>,
) -> Value {
    let parent_commit = call(
        base,
        Method::GET,
        &format!("{REPO}/git/commits/{parent}"),
        token,
        None,
    )
    .await;
    assert_eq!(
        parent_commit.status,
        StatusCode::OK,
        "{}",
        parent_commit.json
    );
    let entries: Vec<Value> = files
        .iter()
        .map(|(path, content)| json!({"path": path, "mode": "100644", "type": "blob", "content": content}))
        .collect();
    let tree = call(
        base,
        Method::POST,
        &format!("{REPO}/git/trees"),
        token,
        Some(json!({"base_tree": parent_commit.json["tree"]["sha"], "tree": entries})),
    )
    .await;
    assert_eq!(tree.status, StatusCode::CREATED, "{}", tree.json);
    let mut body = json!({"message": "api commit", "tree": tree.json["sha"], "parents": [parent]});
    if let Some(a) = author {
        body["author"] = a;
    }
    let commit = call(
        base,
        Method::POST,
        &format!("{REPO}/git/commits"),
        token,
        Some(body),
    )
    .await;
    assert_eq!(commit.status, StatusCode::CREATED, "{}", commit.json);
    commit.json
}

/// Clones `branch` into `dir` and returns the path.
async fn clone(env: &GitHub, token: &str, branch: &str, name: &str) -> PathBuf {
    let dir = env.dir.path().join(name);
    git(
        env.dir.path(),
        &[
            "clone",
            "-q",
            "--branch",
            branch,
            &remote(&env.standin.url(), token),
            name,
        ],
    )
    .await;
    dir
}

#[tokio::test]
async fn contents_are_read_from_the_default_branch_or_a_ref() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let main = seed(&env, &token).await;

    // Default branch.
    let file = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        &token,
        None,
    )
    .await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.json);
    let content = parse!(Content, &file.json);
    assert_eq!(content.r#type, "file");
    assert_eq!(content.encoding.as_deref(), Some("base64"));
    assert_eq!(
        content.decoded_content().as_deref(),
        Some("hello from main\n")
    );
    assert_eq!(content.size, 16);
    assert_eq!(content.path, "README.md");
    let blob_sha = git(
        env.dir.path(),
        &["-C", "seed", "rev-parse", "main:README.md"],
    )
    .await;
    assert_eq!(content.sha, blob_sha);
    assert!(
        content.url.ends_with("/contents/README.md?ref=main"),
        "{}",
        content.url
    );
    assert!(content
        .git_url
        .unwrap()
        .ends_with(&format!("/git/blobs/{blob_sha}")));
    assert!(content.links._self.as_str().ends_with("README.md?ref=main"));

    // A branch, a tag and a commit sha.
    for (reference, expected) in [
        ("feature", "hello from feature\n"),
        ("v1", "hello from main\n"),
        (main.as_str(), "hello from main\n"),
        ("refs/heads/feature", "hello from feature\n"),
    ] {
        let resp = call(
            &base,
            Method::GET,
            &format!("{REPO}/contents/README.md?ref={reference}"),
            &token,
            None,
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "{reference}: {}", resp.json);
        assert_eq!(decoded(&resp.json), expected, "{reference}");
    }

    // Directories: the root and a subdirectory.
    let root = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents"),
        &token,
        None,
    )
    .await;
    assert_eq!(root.status, StatusCode::OK, "{}", root.json);
    let slash = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/"),
        &token,
        None,
    )
    .await;
    assert_eq!(slash.json, root.json);
    let items = parse!(Vec<Content>, &root.json);
    let kinds: Vec<(&str, &str)> = items
        .iter()
        .map(|c| (c.name.as_str(), c.r#type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("README.md", "file"), ("docs", "dir"), ("run.sh", "file")]
    );
    assert!(items.iter().all(|c| c.content.is_none()));
    let docs = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/docs/"),
        &token,
        None,
    )
    .await;
    assert_eq!(docs.status, StatusCode::OK, "{}", docs.json);
    assert_eq!(docs.json[0]["path"], "docs/guide.md");
    let nested = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/docs/guide.md"),
        &token,
        None,
    )
    .await;
    assert_eq!(decoded(&nested.json), "# Guide\n");

    // octocrab's contents API parses both answers.
    let crab = octocrab::Octocrab::builder()
        .base_uri(base.clone())
        .unwrap()
        .personal_token(token.clone())
        .build()
        .unwrap();
    let mut got = crab
        .repos("octo-org", "hello-world")
        .get_content()
        .path("README.md")
        .r#ref("feature")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.take_items()[0].decoded_content().as_deref(),
        Some("hello from feature\n")
    );
    let listing = crab
        .repos("octo-org", "hello-world")
        .get_content()
        .path("docs")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.items.len(), 1);

    // The raw media type answers the bytes.
    let raw = crab
        .repos("octo-org", "hello-world")
        .raw_file("feature", "README.md")
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.headers()["content-type"], "application/vnd.github.raw");
    let bytes = raw.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"hello from feature\n");

    // Missing paths and refs, and names that must not reach git.
    for (path, message) in [
        ("contents/nope.txt", "Not Found"),
        ("contents/docs/nope.md", "Not Found"),
        ("contents/README.md/x", "Not Found"),
        (
            "contents/README.md?ref=nope",
            "No commit found for the ref nope",
        ),
        ("contents/docs/../README.md", "Not Found"),
        ("contents/-n", "Not Found"),
        (
            "contents/README.md?ref=--output%3D%2Ftmp%2Fx",
            "No commit found for the ref --output=/tmp/x",
        ),
        (
            "contents/README.md?ref=main..feature",
            "No commit found for the ref main..feature",
        ),
    ] {
        let resp = call(&base, Method::GET, &format!("{REPO}/{path}"), &token, None).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}: {}", resp.json);
        assert_eq!(resp.json["message"], message, "{path}");
    }
    let calls = env.standin.calls_to("GET", &format!("{REPO}/contents"));
    assert!(calls.len() >= 10, "{calls:?}");
    assert!(calls.iter().all(|c| !c.path.contains('?')));
}

#[tokio::test]
async fn a_git_data_commit_is_signed_by_the_bot_and_clonable() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let main = seed(&env, &token).await;

    let blob = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/blobs"),
        &token,
        Some(json!({
            "content": base64::engine::general_purpose::STANDARD.encode("generated by the bot\n"),
            "encoding": "base64",
        })),
    )
    .await;
    assert_eq!(blob.status, StatusCode::CREATED, "{}", blob.json);
    let blob = parse!(CreatedBlob, &blob.json);
    let got = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/blobs/{}", blob.sha),
        &token,
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    assert_eq!(decoded(&got.json), "generated by the bot\n");
    assert_eq!(got.json["size"], 21);

    let parent = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/commits/{main}"),
        &token,
        None,
    )
    .await;
    assert_eq!(parent.status, StatusCode::OK, "{}", parent.json);
    let parent = parse!(GitCommitObject, &parent.json);
    assert_eq!(parent.author.name, "Penguin Test");
    assert!(!parent.verification.verified);
    assert_eq!(parent.verification.reason, "unsigned");

    let tree = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/trees"),
        &token,
        Some(json!({
            "base_tree": parent.tree.sha,
            "tree": [
                {"path": "src/bot/new file.txt", "mode": "100644", "type": "blob", "sha": blob.sha},
                {"path": "tool.sh", "mode": "100755", "type": "blob", "content": "#!/bin/sh\necho hi\n"},
            ],
        })),
    )
    .await;
    assert_eq!(tree.status, StatusCode::CREATED, "{}", tree.json);
    let tree = parse!(GitTree, &tree.json);
    assert!(!tree.truncated);
    let top: Vec<(&str, &str)> = tree
        .tree
        .iter()
        .map(|e| (e.path.as_str(), e.r#type.as_str()))
        .collect();
    assert_eq!(
        top,
        [
            ("README.md", "blob"),
            ("docs", "tree"),
            ("run.sh", "blob"),
            ("src", "tree"),
            ("tool.sh", "blob"),
        ]
    );
    let recursive = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/trees/{}?recursive=1", tree.sha),
        &token,
        None,
    )
    .await;
    let recursive = parse!(GitTree, &recursive.json);
    assert!(recursive
        .tree
        .iter()
        .any(|e| e.path == "src/bot/new file.txt" && e.sha == blob.sha && e.size == Some(21)));

    // No author, no committer: the bot commits, and the commit is signed.
    let commit = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/commits"),
        &token,
        Some(json!({"message": "Add a file\n\nBy the bot.", "tree": tree.sha, "parents": [main]})),
    )
    .await;
    assert_eq!(commit.status, StatusCode::CREATED, "{}", commit.json);
    assert!(commit
        .header("location")
        .unwrap()
        .ends_with(commit.json["sha"].as_str().unwrap()));
    assert!(commit.json["verification"]["verified_at"].is_string());
    let commit = parse!(GitCommitObject, &commit.json);
    assert_eq!(commit.author.name, BOT);
    assert_eq!(commit.author.email.as_deref(), Some(BOT_EMAIL));
    assert_eq!(commit.committer.name, BOT);
    assert_eq!(commit.message, "Add a file\n\nBy the bot.");
    assert_eq!(commit.tree.sha, tree.sha);
    assert_eq!(commit.parents[0].sha.as_deref(), Some(main.as_str()));
    assert!(commit.verification.verified);
    assert_eq!(commit.verification.reason, "valid");
    assert!(commit
        .verification
        .signature
        .as_deref()
        .unwrap()
        .starts_with("-----BEGIN PGP SIGNATURE-----"));
    assert!(commit
        .verification
        .payload
        .as_deref()
        .unwrap()
        .starts_with(&format!("tree {}", tree.sha)));
    assert_eq!(env.standin.verified_commits(), vec![commit.sha.clone()]);
    let again = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/commits/{}", commit.sha),
        &token,
        None,
    )
    .await;
    assert_eq!(again.json["verification"]["verified"], true);
    assert_eq!(again.json["author"]["email"], BOT_EMAIL);

    // A branch at the commit, then a real clone of it.
    let created = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/refs"),
        &token,
        Some(json!({"ref": "refs/heads/penguin/fix-1", "sha": commit.sha})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let created = parse!(Ref, &created.json);
    assert_eq!(created.ref_field, "refs/heads/penguin/fix-1");
    let got = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/ref/heads/penguin/fix-1"),
        &token,
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    match parse!(Ref, &got.json).object {
        octocrab::models::repos::Object::Commit { sha, .. } => assert_eq!(sha, commit.sha),
        other => panic!("unexpected object {other:?}"),
    }
    let octo_ref = octocrab::Octocrab::builder()
        .base_uri(base.clone())
        .unwrap()
        .personal_token(token.clone())
        .build()
        .unwrap()
        .repos("octo-org", "hello-world")
        .get_ref(&octocrab::params::repos::Reference::Branch(
            "penguin/fix-1".into(),
        ))
        .await
        .unwrap();
    assert_eq!(octo_ref.ref_field, "refs/heads/penguin/fix-1");

    let dir = clone(&env, &token, "penguin/fix-1", "clone").await;
    assert_eq!(
        std::fs::read_to_string(dir.join("src/bot/new file.txt")).unwrap(),
        "generated by the bot\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "hello from main\n"
    );
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]).await, commit.sha);
    assert_eq!(
        git(&dir, &["log", "-1", "--format=%an <%ae>|%cn|%B"]).await,
        format!("{BOT} <{BOT_EMAIL}>|{BOT}|Add a file\n\nBy the bot.")
    );
    assert_eq!(
        git(&dir, &["ls-files", "-s", "tool.sh"])
            .await
            .split(' ')
            .next(),
        Some("100755")
    );
    // The pushed head is one the stand-in signed.
    assert!(env
        .standin
        .verified_commits()
        .contains(&git(&dir, &["rev-parse", "HEAD"]).await));

    // Every call was recorded.
    let posts = env.standin.calls_to("POST", &format!("{REPO}/git/"));
    let paths: Vec<&str> = posts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/repos/octo-org/hello-world/git/blobs",
            "/repos/octo-org/hello-world/git/trees",
            "/repos/octo-org/hello-world/git/commits",
            "/repos/octo-org/hello-world/git/refs",
        ]
    );
    assert!(posts.iter().all(|c| c.status == 201));
}

#[tokio::test]
async fn ref_updates_must_fast_forward_unless_forced() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let main = seed(&env, &token).await;

    // An author given: the commit is the author's and unsigned.
    let alice =
        json!({"name": "Alice", "email": "alice@example.com", "date": "2024-03-01T10:00:00+02:00"});
    let one = api_commit(&base, &token, &main, &[("a.txt", "one\n")], Some(alice)).await;
    assert_eq!(one["author"]["name"], "Alice");
    assert_eq!(one["author"]["date"], "2024-03-01T10:00:00+02:00");
    assert_eq!(one["committer"]["name"], "Alice");
    assert_eq!(
        one["verification"],
        json!({"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null})
    );
    let one = one["sha"].as_str().unwrap().to_string();
    let sibling = api_commit(&base, &token, &main, &[("b.txt", "two\n")], None).await;
    let sibling = sibling["sha"].as_str().unwrap().to_string();
    let child = api_commit(&base, &token, &sibling, &[("c.txt", "three\n")], None).await;
    let child = child["sha"].as_str().unwrap().to_string();
    assert_eq!(
        env.standin.verified_commits(),
        [sibling.clone(), child.clone()]
    );

    let refs = format!("{REPO}/git/refs");
    let create = |sha: &str| json!({"ref": "refs/heads/penguin/x", "sha": sha});
    let resp = call(&base, Method::POST, &refs, &token, Some(create(&one))).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let resp = call(&base, Method::POST, &refs, &token, Some(create(&sibling))).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["message"], "Reference already exists");

    // Not a fast forward: refused, then forced.
    let branch = format!("{REPO}/git/refs/heads/penguin/x");
    let resp = call(
        &base,
        Method::PATCH,
        &branch,
        &token,
        Some(json!({"sha": sibling})),
    )
    .await;
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        resp.json
    );
    assert_eq!(resp.json["message"], "Update is not a fast forward");
    let resp = call(
        &base,
        Method::PATCH,
        &branch,
        &token,
        Some(json!({"sha": sibling, "force": false})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let resp = call(
        &base,
        Method::PATCH,
        &branch,
        &token,
        Some(json!({"sha": sibling, "force": true})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    assert_eq!(parse!(Ref, &resp.json).ref_field, "refs/heads/penguin/x");
    assert_eq!(resp.json["object"]["sha"], sibling.as_str());

    // A fast forward needs no force, and POST counts as PATCH.
    let resp = call(
        &base,
        Method::POST,
        &branch,
        &token,
        Some(json!({"sha": child})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let patches = env.standin.calls_to("PATCH", &branch);
    assert_eq!(patches.len(), 4);
    assert_eq!(
        patches.iter().map(|c| c.status).collect::<Vec<_>>(),
        [422, 422, 200, 200]
    );
    let dir = clone(&env, &token, "penguin/x", "clone").await;
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]).await, child);
    assert!(dir.join("b.txt").is_file() && dir.join("c.txt").is_file());
    assert!(!dir.join("a.txt").exists());

    // Listing and matching.
    let matching = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/matching-refs/heads/penguin/"),
        &token,
        None,
    )
    .await;
    let names: Vec<String> = parse!(Vec<Ref>, &matching.json)
        .into_iter()
        .map(|r| r.ref_field)
        .collect();
    assert_eq!(names, ["refs/heads/penguin/x"]);
    let none = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/matching-refs/heads/nope"),
        &token,
        None,
    )
    .await;
    assert_eq!(none.json, json!([]));
    let tags = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/refs/tags"),
        &token,
        None,
    )
    .await;
    assert_eq!(tags.json[0]["ref"], "refs/tags/v1");

    // Bad requests.
    for (body, message) in [
        (
            json!({"ref": "heads/y", "sha": main}),
            "Reference name must start with 'refs/' and have at least two slashes.",
        ),
        (
            json!({"ref": "refs/y", "sha": main}),
            "Reference name must start with 'refs/' and have at least two slashes.",
        ),
        (
            json!({"ref": "refs/heads/a..b", "sha": main}),
            "refs/heads/a..b is not a valid ref name.",
        ),
        (
            json!({"ref": "refs/heads/y", "sha": "0123456789012345678901234567890123456789"}),
            "Object does not exist",
        ),
        (
            json!({"ref": "refs/heads/y", "sha": "--help"}),
            "Object does not exist",
        ),
    ] {
        let resp = call(&base, Method::POST, &refs, &token, Some(body)).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
        assert_eq!(resp.json["message"], message);
    }
    let resp = call(
        &base,
        Method::PATCH,
        &format!("{REPO}/git/refs/heads/nope"),
        &token,
        Some(json!({"sha": main})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["message"], "Reference does not exist");

    // Deleting.
    let resp = call(&base, Method::DELETE, &branch, &token, None).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/ref/heads/penguin/x"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = call(&base, Method::DELETE, &branch, &token, None).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json["message"], "Reference does not exist");
}

#[tokio::test]
async fn trees_delete_paths_and_reject_bad_input() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;

    // Before the first push the repository is empty.
    let bare = env.standin.create_repo("octo-org", "hello-world").unwrap();
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/blobs"),
        &token,
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CONFLICT);
    assert_eq!(resp.json["message"], "Git Repository is empty.");
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.json["message"], "This repository is empty.");

    let main = seed(&env, &token).await;
    let trees = format!("{REPO}/git/trees");
    let main_commit = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/commits/{main}"),
        &token,
        None,
    )
    .await;
    let base_tree = main_commit.json["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_string();

    // `sha: null` deletes a file or a whole directory; a file may replace a directory.
    let resp = call(
        &base,
        Method::POST,
        &trees,
        &token,
        Some(json!({"base_tree": base_tree, "tree": [
            {"path": "README.md", "mode": "100644", "type": "blob", "sha": null},
            {"path": "docs", "mode": "040000", "type": "tree", "sha": null},
            {"path": "run.sh/inner.txt", "mode": "100644", "type": "blob", "content": "nested\n"},
        ]})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let tree = parse!(GitTree, &resp.json);
    let top: Vec<(&str, &str)> = tree
        .tree
        .iter()
        .map(|e| (e.path.as_str(), e.mode.as_str()))
        .collect();
    assert_eq!(top, [("run.sh", "040000")]);

    // A whole subtree by sha, and a tree without a base.
    let docs_sha = git(env.dir.path(), &["-C", "seed", "rev-parse", "main:docs"]).await;
    let resp = call(
        &base,
        Method::POST,
        &trees,
        &token,
        Some(json!({"tree": [{"path": "copied/docs", "mode": "040000", "type": "tree", "sha": docs_sha}]})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    let sha = resp.json["sha"].as_str().unwrap();
    let listed = call(
        &base,
        Method::GET,
        &format!("{trees}/{sha}?recursive=1"),
        &token,
        None,
    )
    .await;
    let paths: Vec<&str> = listed.json["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["copied", "copied/docs", "copied/docs/guide.md"]);
    let by_branch = call(
        &base,
        Method::GET,
        &format!("{trees}/feature"),
        &token,
        None,
    )
    .await;
    assert_eq!(by_branch.status, StatusCode::OK, "{}", by_branch.json);

    // Bad input.
    let blob_sha = git(
        env.dir.path(),
        &["-C", "seed", "rev-parse", "main:README.md"],
    )
    .await;
    let missing = "0123456789012345678901234567890123456789";
    for (body, message) in [
        (json!({"base_tree": missing, "tree": []}), "base_tree is not a valid tree".to_string()),
        (json!({"base_tree": main, "tree": []}), "base_tree is not a valid tree".to_string()),
        (json!({"tree": [{"path": "x", "mode": "100644", "type": "blob", "sha": missing}]}), format!("tree.sha {missing} is not a valid blob")),
        (json!({"tree": [{"path": "x", "mode": "040000", "type": "tree", "sha": blob_sha}]}), format!("tree.sha {blob_sha} is not a valid tree")),
        (json!({"tree": [{"path": "x", "mode": "100644", "type": "blob", "sha": "--all"}]}), "tree.sha --all is not a valid blob".to_string()),
        (json!({"tree": [{"path": "x", "mode": "100644", "type": "tree", "sha": blob_sha}]}), "Invalid tree info".to_string()),
        (json!({"tree": [{"path": "x", "mode": "100644", "type": "blob", "sha": blob_sha, "content": "y"}]}), "Invalid tree info".to_string()),
        (json!({"tree": [{"path": "x", "mode": "100644", "type": "blob"}]}), "Must supply either tree.sha or tree.content".to_string()),
        (json!({"tree": [{"path": "a/../b", "mode": "100644", "type": "blob", "content": "y"}]}), "tree.path contains a malformed path component".to_string()),
        (json!({"tree": [{"path": "/abs", "mode": "100644", "type": "blob", "content": "y"}]}), "tree.path contains a malformed path component".to_string()),
        (json!({"tree": [{"path": "x", "mode": "100600", "type": "blob", "content": "y"}]}), "Invalid request.\n\nFor 'properties/mode', \"100600\" is not one of [\"100644\", \"100755\", \"040000\", \"160000\", \"120000\"].".to_string()),
        (json!({}), "Invalid request.\n\n\"tree\" wasn't supplied.".to_string()),
    ] {
        let resp = call(&base, Method::POST, &trees, &token, Some(body.clone())).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", resp.json);
        assert_eq!(resp.json["message"], message.as_str(), "{body}");
    }

    // Commits need an existing tree and commit parents.
    let commits = format!("{REPO}/git/commits");
    for (body, message) in [
        (
            json!({"message": "m", "tree": missing}),
            "Tree SHA does not exist",
        ),
        (
            json!({"message": "m", "tree": blob_sha}),
            "Tree SHA does not exist",
        ),
        (
            json!({"message": "m", "tree": base_tree, "parents": [missing]}),
            "Parent SHA does not exist or is not a commit object",
        ),
        (
            json!({"message": "m", "tree": base_tree, "parents": [base_tree]}),
            "Parent SHA does not exist or is not a commit object",
        ),
        (
            json!({"tree": base_tree}),
            "Invalid request.\n\n\"message\" wasn't supplied.",
        ),
        (
            json!({"message": "m", "tree": base_tree, "author": {"name": "A"}}),
            "Invalid request.\n\n\"email\" wasn't supplied.",
        ),
    ] {
        let resp = call(&base, Method::POST, &commits, &token, Some(body.clone())).await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            resp.json
        );
        assert_eq!(resp.json["message"], message, "{body}");
    }
    // A signature sent along is kept in the commit, but the stand-in cannot verify it; a
    // committer alone leaves the bot as the author.
    let signature = "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
    let resp = call(
        &base,
        Method::POST,
        &commits,
        &token,
        Some(json!({
            "message": "signed elsewhere",
            "tree": base_tree,
            "parents": [main],
            "committer": {"name": "Carol", "email": "carol@example.com"},
            "signature": signature,
        })),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    assert_eq!(resp.json["author"]["name"], BOT);
    assert_eq!(resp.json["committer"]["name"], "Carol");
    assert_eq!(resp.json["verification"]["verified"], false);
    assert_eq!(resp.json["verification"]["reason"], "unknown_key");
    assert_eq!(resp.json["verification"]["signature"], signature);
    let payload = resp.json["verification"]["payload"].as_str().unwrap();
    assert!(payload.ends_with("\n\nsigned elsewhere") && !payload.contains("gpgsig"));
    let sha = resp.json["sha"].as_str().unwrap();
    let raw = git(&bare, &["cat-file", "commit", sha]).await;
    assert!(
        raw.contains("\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n"),
        "{raw}"
    );

    // Unknown objects are not found.
    for path in [
        format!("{REPO}/git/commits/{missing}"),
        format!("{REPO}/git/commits/{base_tree}"),
        format!("{REPO}/git/blobs/{base_tree}"),
        format!("{REPO}/git/trees/{missing}"),
        format!("{REPO}/git/ref/heads/nope"),
    ] {
        let resp = call(&base, Method::GET, &path, &token, None).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(env.standin.verified_commits().is_empty());
}

#[tokio::test]
async fn git_data_needs_the_repository_and_contents_permissions() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let token = mint_token(&base, None).await;
    let main = seed(&env, &token).await;

    let read_only = mint_token(&base, Some(r#"{"permissions":{"contents":"read"}}"#)).await;
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        &read_only,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/ref/heads/main"),
        &read_only,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    for (method, path, body) in [
        (Method::POST, "git/blobs", json!({"content": "x"})),
        (Method::POST, "git/trees", json!({"tree": []})),
        (
            Method::POST,
            "git/commits",
            json!({"message": "m", "tree": "x"}),
        ),
        (
            Method::POST,
            "git/refs",
            json!({"ref": "refs/heads/y", "sha": main}),
        ),
        (Method::PATCH, "git/refs/heads/main", json!({"sha": main})),
        (Method::DELETE, "git/refs/heads/main", Value::Null),
    ] {
        let resp = call(
            &base,
            method.clone(),
            &format!("{REPO}/{path}"),
            &read_only,
            Some(body),
        )
        .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            resp.json["message"],
            "Resource not accessible by integration"
        );
    }
    // Still there.
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/git/ref/heads/main"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.json["object"]["sha"], main.as_str());

    let no_contents = mint_token(&base, Some(r#"{"permissions":{"issues":"write"}}"#)).await;
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        &no_contents,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "Resource not accessible by integration"
    );

    let other_repo = mint_token(&base, Some(r#"{"repositories":["other-repo"]}"#)).await;
    let resp = call(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        &other_repo,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = send(
        &base,
        Method::GET,
        &format!("{REPO}/contents/README.md"),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // Faults apply to these routes too.
    env.standin.fail_next_calls(
        1,
        "POST",
        &format!("{REPO}/git/"),
        github_standin::Fault::Status(502),
    );
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/blobs"),
        &token,
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    let resp = call(
        &base,
        Method::POST,
        &format!("{REPO}/git/blobs"),
        &token,
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
}

#[tokio::test]
async fn team_memberships_need_the_organization_and_members_read() {
    let env = GitHub::empty(|c| {
        c.installations[0]
            .permissions
            .insert("members".to_string(), "read".to_string());
    })
    .await
    .unwrap();
    let base = env.standin.url();
    env.standin
        .add_team_member("Octo-Org", "Core-Team", "Alice");
    env.standin
        .add_team_maintainer("octo-org", "core-team", "bob");
    let token = mint_token(&base, None).await;
    let path =
        |org: &str, team: &str, user: &str| format!("/orgs/{org}/teams/{team}/memberships/{user}");

    let resp = call(
        &base,
        Method::GET,
        &path("octo-org", "core-team", "alice"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.json);
    let m = parse!(TeamMembership, &resp.json);
    assert_eq!(m.role, Role::Member);
    assert_eq!(resp.json["state"], "active");
    let resp = call(
        &base,
        Method::GET,
        &path("OCTO-ORG", "Core-Team", "ALICE"),
        &token,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = call(
        &base,
        Method::GET,
        &path("octo-org", "core-team", "bob"),
        &token,
        None,
    )
    .await;
    assert_eq!(parse!(TeamMembership, &resp.json).role, Role::Maintainer);

    for (org, team, user) in [
        ("octo-org", "core-team", "carol"),
        ("octo-org", "other-team", "alice"),
        ("other-org", "core-team", "alice"),
    ] {
        let resp = call(&base, Method::GET, &path(org, team, user), &token, None).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{org}/{team}/{user}");
        assert_eq!(resp.json["message"], "Not Found");
    }

    // Without members: read.
    let no_members = mint_token(&base, Some(r#"{"permissions":{"contents":"read"}}"#)).await;
    let resp = call(
        &base,
        Method::GET,
        &path("octo-org", "core-team", "alice"),
        &no_members,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json["message"],
        "Resource not accessible by integration"
    );
    // The App JWT is not an installation token.
    let resp = send(
        &base,
        Method::GET,
        &path("octo-org", "core-team", "alice"),
        Some(&bearer(&app_jwt())),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // octocrab reads it too.
    let crab = octocrab::Octocrab::builder()
        .base_uri(base.clone())
        .unwrap()
        .personal_token(token.clone())
        .build()
        .unwrap();
    let m: TeamMembership = crab
        .get(path("octo-org", "core-team", "alice"), None::<&()>)
        .await
        .unwrap();
    assert_eq!(m.role, Role::Member);

    let calls = env.standin.calls_to("GET", "/orgs/");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 404, 404, 403, 404, 200]);
}
