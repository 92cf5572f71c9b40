//! Git smart HTTP through `git http-backend`, authenticated with installation tokens.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use penguin_test_support::github_api::*;

/// Runs git with a clean environment (no user config, no prompts); returns (success, stderr).
async fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    git_env(dir, args, &[]).await
}

/// [`git`] with extra environment variables.
async fn git_env(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new("git")
        .args(args)
        .envs(extra.iter().copied())
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "Penguin Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Penguin Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

async fn git_stdout(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree with one commit.
async fn work_tree(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(git(&dir, &["init", "-q", "-b", "main"]).await.0);
    std::fs::write(dir.join("README.md"), format!("hello from {name}\n")).unwrap();
    assert!(git(&dir, &["add", "README.md"]).await.0);
    let (ok, err) = git(&dir, &["commit", "-q", "-m", "first commit"]).await;
    assert!(ok, "{err}");
    dir
}

fn remote(base: &str, token: &str, repo: &str) -> String {
    let hostport = base.trim_start_matches("http://");
    format!("http://x-access-token:{token}@{hostport}/octo-org/{repo}.git")
}

#[tokio::test]
async fn push_and_clone_with_an_installation_token() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    let bare = env.standin.create_repo("octo-org", "hello-world").unwrap();
    assert!(bare.join("HEAD").is_file());
    let token = mint_token(&base, None).await;
    let work = work_tree(env.dir.path(), "work").await;
    let (ok, err) = git(
        &work,
        &[
            "push",
            &remote(&base, &token, "hello-world"),
            "HEAD:refs/heads/main",
        ],
    )
    .await;
    assert!(ok, "push failed: {err}");
    assert_eq!(env.standin.git_pushes(), 1);
    assert_eq!(env.standin.git_auth_failures(), 0);
    let local = git_stdout(&work, &["rev-parse", "HEAD"]).await;
    let pushed = git_stdout(&bare, &["rev-parse", "refs/heads/main"]).await;
    assert_eq!(local, pushed);

    // Clone it back (upload-pack, protocol v2).
    let (ok, err) = git(
        env.dir.path(),
        &[
            "clone",
            "-q",
            &remote(&base, &token, "hello-world"),
            "clone",
        ],
    )
    .await;
    assert!(ok, "clone failed: {err}");
    let cloned = std::fs::read_to_string(env.dir.path().join("clone/README.md")).unwrap();
    assert_eq!(cloned, "hello from work\n");
    assert_eq!(env.standin.git_pushes(), 1);
}

#[tokio::test]
async fn both_token_formats_push() {
    let env = GitHub::empty(|c| c.token_format = github_standin::TokenFormat::Classic)
        .await
        .unwrap();
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let classic = mint_token(&base, None).await;
    assert_eq!(classic.len(), 40, "{classic}");
    let stateless = mint_with_headers(&base, &[("X-GitHub-Stateless-S2S-Token", "enabled")], None)
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stateless.contains('-') && stateless.len() > 350,
        "{stateless}"
    );
    let work = work_tree(env.dir.path(), "work").await;
    for (i, token) in [classic, stateless].iter().enumerate() {
        let (ok, err) = git(
            &work,
            &[
                "push",
                &remote(&base, token, "hello-world"),
                &format!("HEAD:refs/heads/branch-{i}"),
            ],
        )
        .await;
        assert!(ok, "push {i} failed: {err}");
    }
    assert_eq!(env.standin.git_pushes(), 2);
    assert_eq!(env.standin.git_auth_failures(), 0);
}

#[tokio::test]
async fn push_with_an_expired_token_fails() {
    let env = GitHub::empty(|c| c.token_ttl = Duration::from_secs(1))
        .await
        .unwrap();
    let base = env.standin.url();
    let bare = env.standin.create_repo("octo-org", "hello-world").unwrap();
    let token = mint_token(&base, None).await;
    let work = work_tree(env.dir.path(), "work").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, err) = git(
        &work,
        &[
            "push",
            &remote(&base, &token, "hello-world"),
            "HEAD:refs/heads/main",
        ],
    )
    .await;
    assert!(!ok, "push with an expired token succeeded");
    assert!(
        err.contains("Authentication failed") || err.contains("401"),
        "{err}"
    );
    assert!(env.standin.git_auth_failures() >= 1);
    assert_eq!(env.standin.git_pushes(), 0);
    let (has_main, _) = git(&bare, &["rev-parse", "--verify", "-q", "refs/heads/main"]).await;
    assert!(!has_main);
}

#[tokio::test]
async fn push_needs_the_repository_and_contents_write() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let work = work_tree(env.dir.path(), "work").await;

    // Scoped to another repository: not found.
    let other = mint_token(&base, Some(r#"{"repositories":["other-repo"]}"#)).await;
    let (ok, err) = git(
        &work,
        &[
            "push",
            &remote(&base, &other, "hello-world"),
            "HEAD:refs/heads/main",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not found") || err.contains("404"), "{err}");

    // Read-only contents: forbidden to push, allowed to fetch.
    let read_only = mint_token(&base, Some(r#"{"permissions":{"contents":"read"}}"#)).await;
    let (ok, err) = git(
        &work,
        &[
            "push",
            &remote(&base, &read_only, "hello-world"),
            "HEAD:refs/heads/main",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("403"), "{err}");
    let (ok, err) = git(
        &work,
        &["ls-remote", &remote(&base, &read_only, "hello-world")],
    )
    .await;
    assert!(ok, "{err}");

    // Lagging token: 401, counted.
    env.standin.set_replication_lag(Duration::from_secs(30));
    let lagging = mint_token(&base, None).await;
    let before = env.standin.git_auth_failures();
    let (ok, _) = git(
        &work,
        &["ls-remote", &remote(&base, &lagging, "hello-world")],
    )
    .await;
    assert!(!ok);
    assert!(env.standin.git_auth_failures() > before);
    assert_eq!(env.standin.git_pushes(), 0);
}

#[tokio::test]
async fn anonymous_requests_get_a_challenge_that_is_not_counted() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let path = "/octo-org/hello-world.git/info/refs?service=git-upload-pack";
    let resp = get(&base, path, None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Basic realm=\"GitHub\"")
    );
    assert_eq!(env.standin.git_auth_failures(), 0);
    // Bad credentials are counted.
    let resp = get(&base, path, Some("Basic eC1hY2Nlc3MtdG9rZW46Z2hzX25vcGU=")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.header("www-authenticate").is_some());
    assert_eq!(env.standin.git_auth_failures(), 1);
    // Git keeps working while the API is down.
    env.standin.set_down(true);
    let token = mint_token_while_down(&env).await;
    assert!(token.is_none());
    let resp = get(&base, path, None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

async fn mint_token_while_down(env: &GitHub) -> Option<String> {
    let resp = send(
        &env.standin.url(),
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&bearer(&app_jwt())),
        None,
    )
    .await;
    (resp.status == StatusCode::CREATED).then(|| resp.json["token"].to_string())
}

#[tokio::test]
async fn info_refs_is_served_by_http_backend() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let token = mint_token(&base, None).await;
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let resp = get(
        &base,
        "/octo-org/hello-world.git/info/refs?service=git-receive-pack",
        Some(&format!("Basic {basic}")),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("application/x-git-receive-pack-advertisement")
    );
    assert!(resp.body.starts_with(b"001f# service=git-receive-pack\n"));
    // Wrong user name with a good token is rejected.
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("someone:{token}"));
    let resp = get(
        &base,
        "/octo-org/hello-world.git/info/refs?service=git-receive-pack",
        Some(&format!("Basic {wrong}")),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // A repository that does not exist on disk.
    let resp = get(
        &base,
        "/octo-org/other-repo.git/info/refs?service=git-upload-pack",
        Some(&format!("Basic {basic}")),
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chunked_pushes_and_gzipped_fetches_work() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let base = env.standin.url();
    env.standin.create_repo("octo-org", "hello-world").unwrap();
    let token = mint_token(&base, None).await;
    let work = work_tree(env.dir.path(), "work").await;
    // An incompressible 3 MB file makes the pack larger than http.postBuffer (1 MB), so git
    // streams the push with chunked transfer encoding and no Content-Length.
    let mut blob = vec![0u8; 3 * 1024 * 1024];
    rand::Rng::fill(&mut rand::rng(), &mut blob[..]);
    std::fs::write(work.join("big.bin"), &blob).unwrap();
    assert!(git(&work, &["add", "big.bin"]).await.0);
    assert!(git(&work, &["commit", "-q", "-m", "big"]).await.0);
    // Many branches with distinct commits make the clone's want list larger than 1 KiB, which
    // git sends gzip-compressed.
    for i in 0..40 {
        let branch = format!("b{i}");
        assert!(git(&work, &["branch", &branch, "main"]).await.0);
        assert!(git(&work, &["checkout", "-q", &branch]).await.0);
        assert!(
            git(&work, &["commit", "-q", "--allow-empty", "-m", &branch])
                .await
                .0
        );
    }
    assert!(git(&work, &["checkout", "-q", "main"]).await.0);
    let url = remote(&base, &token, "hello-world");
    let (ok, err) = git_env(
        &work,
        &["push", "-q", &url, "refs/heads/*:refs/heads/*"],
        &[("GIT_TRACE_CURL", "1"), ("GIT_TRACE_CURL_NO_DATA", "1")],
    )
    .await;
    assert!(ok, "push failed: {err}");
    assert!(
        err.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "push was not chunked"
    );
    assert_eq!(env.standin.git_pushes(), 1);
    let (ok, err) = git_env(
        env.dir.path(),
        &["clone", "-q", "--no-single-branch", &url, "clone"],
        &[("GIT_TRACE_CURL", "1"), ("GIT_TRACE_CURL_NO_DATA", "1")],
    )
    .await;
    assert!(ok, "clone failed: {err}");
    assert!(
        err.to_ascii_lowercase().contains("content-encoding: gzip"),
        "fetch request was not gzipped"
    );
    let cloned = std::fs::read(env.dir.path().join("clone/big.bin")).unwrap();
    assert!(cloned == blob, "big file differs after the round trip");
    let branches = git_stdout(&env.dir.path().join("clone"), &["branch", "-r"]).await;
    assert_eq!(
        branches.lines().filter(|l| l.contains("origin/b")).count(),
        40
    );
}
