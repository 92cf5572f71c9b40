//! Rotation end to end: the real git CLI (credential store file, and the
//! tokenator's own credential helper) and git2 push in a loop while tokens
//! rotate every couple of seconds; WatchToken sees each rotation; the
//! credentials file is restored when deleted or erased by git.

use penguin_proto::tokenator::v1::WatchTokenRequest;
use penguin_test_support::{
    git::{git, git_ok},
    tokenator::Tokenator,
    GitHub,
};
use std::{collections::HashSet, path::Path, time::Duration};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

const TTL: Duration = Duration::from_secs(3);

/// Clones the repository with credentials coming from `helper`.
fn clone_with_helper(github: &GitHub, tokenator: &Tokenator, helper: &str) -> std::path::PathBuf {
    let work = tokenator.dir.path().join("work");
    git_ok(
        tokenator.dir.path(),
        &tokenator.home,
        &["config", "--global", "credential.helper", helper],
    );
    git_ok(
        tokenator.dir.path(),
        &tokenator.home,
        &["config", "--global", "init.defaultBranch", "main"],
    );
    git_ok(
        tokenator.dir.path(),
        &tokenator.home,
        &["clone", "-q", &github.repo_url(), work.to_str().unwrap()],
    );
    work
}

/// Commits and pushes until `duration` passed; returns (pushes, failures).
async fn push_loop(work: &Path, home: &Path, duration: Duration) -> (usize, Vec<String>) {
    let deadline = tokio::time::Instant::now() + duration;
    let (mut pushes, mut failures) = (0, Vec::new());
    while tokio::time::Instant::now() < deadline {
        std::fs::write(work.join("counter.txt"), pushes.to_string()).unwrap();
        git_ok(work, home, &["add", "counter.txt"]);
        git_ok(
            work,
            home,
            &["commit", "-q", "-m", &format!("push {pushes}")],
        );
        let out = git(
            work,
            home,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        if out.status.success() {
            pushes += 1;
        } else {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (pushes, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_cli_pushes_never_fail_across_many_rotations_with_the_store_file() {
    let github = GitHub::start(TTL).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, _| {
        // Every level, so the leak check covers trace output too.
        env.insert("RUST_LOG".into(), "trace".into());
    })
    .await;
    tokenator.wait_ready().await;
    let work = clone_with_helper(&github, &tokenator, "store");

    let (pushes, failures) = push_loop(&work, &tokenator.home, Duration::from_secs(16)).await;
    let rotations = github.standin.mint_requests().len();
    assert!(
        failures.is_empty(),
        "{} failed pushes: {failures:?}",
        failures.len()
    );
    assert!(pushes >= 10, "only {pushes} pushes");
    assert!(rotations >= 6, "only {rotations} tokens minted");
    assert_eq!(github.standin.git_auth_failures(), 0);
    assert!(github.standin.git_pushes() >= pushes);
    // git's store helper never saw a broken file: the line is intact.
    let line = tokenator.credentials_line();
    assert!(
        line.starts_with("http://x-access-token:ghs_")
            && line.ends_with('\n')
            && line.lines().count() == 1
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_cli_pushes_through_the_tokenator_credential_helper() {
    let github = GitHub::start(TTL).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    // credential.helper runs through a shell: hand it the socket and server URL.
    let helper = format!(
        "!PENGUIN_TOKENATOR_SOCKET={} GITHUB_SERVER_URL={} {} git-credential",
        tokenator.socket.display(),
        github.url(),
        BIN
    );
    let work = clone_with_helper(&github, &tokenator, &helper);
    // Nothing must come from the store file in this test.
    std::fs::remove_file(&tokenator.credentials).ok();
    let (pushes, failures) = push_loop(&work, &tokenator.home, Duration::from_secs(8)).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(pushes >= 5, "only {pushes} pushes");
    assert!(github.standin.mint_requests().len() >= 3);
    assert_eq!(github.standin.git_auth_failures(), 0);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git2_pushes_with_the_current_token_across_rotations() {
    let github = GitHub::start(TTL).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let work = tokenator.dir.path().join("git2-work");
    let repo = git2::Repository::init(&work).unwrap();
    let sig = git2::Signature::now("Penguin Test", "test@penguin.invalid").unwrap();
    let mut parent: Option<git2::Oid> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut pushes = 0;
    while tokio::time::Instant::now() < deadline {
        // A commit with one file whose content changes each time.
        let blob = repo
            .blob(format!("git2 push {pushes}\n").as_bytes())
            .unwrap();
        let mut tree = repo.treebuilder(None).unwrap();
        tree.insert("git2.txt", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tree.write().unwrap()).unwrap();
        let parents: Vec<git2::Commit> = parent
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let commit = repo
            .commit(
                Some("refs/heads/git2"),
                &sig,
                &sig,
                &format!("git2 {pushes}"),
                &tree,
                &parent_refs,
            )
            .unwrap();
        parent = Some(commit);

        let token = tokenator.default_token().await.token;
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks
            .credentials(move |_, _, _| git2::Cred::userpass_plaintext("x-access-token", &token));
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let mut remote = repo.remote_anonymous(&github.repo_url()).unwrap();
        remote
            .push(&["+refs/heads/git2:refs/heads/git2"], Some(&mut options))
            .unwrap_or_else(|e| panic!("git2 push {pushes} failed: {e}"));
        pushes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pushes >= 5);
    assert!(github.standin.mint_requests().len() >= 3);
    assert_eq!(github.standin.git_auth_failures(), 0);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn watch_token_sees_every_rotation() {
    let github = GitHub::start(TTL).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let mut stream = tokenator
        .client()
        .await
        .watch_token(WatchTokenRequest { scope: None })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a rotation within 10 s")
            .unwrap()
            .unwrap();
        // Each delivered token works right away (no replication-lag 401s).
        assert!(github.standin.is_token_live(&next.token));
        seen.push(next.token);
    }
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        4,
        "every message is a new token"
    );
    // The store file follows the rotations: it no longer holds a rotated-out token.
    let rotated_out = &seen[..3];
    assert!(
        penguin_test_support::eventually(Duration::from_secs(2), || {
            let line = tokenator.credentials_line();
            line.contains("ghs_") && rotated_out.iter().all(|t| !line.contains(t.as_str()))
        })
        .await,
        "credentials file still holds an old token"
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn credentials_file_is_restored_after_deletion_and_git_erase() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let expected = tokenator.credentials_line();
    assert!(!expected.is_empty());

    std::fs::remove_file(&tokenator.credentials).unwrap();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(2), || tokenator.credentials_line()
            == expected)
        .await,
        "not restored after deletion"
    );

    // What git does after a 401: `git credential reject` erases the line.
    let url = github.url();
    let (scheme, host) = url.split_once("://").unwrap();
    let mut erase = std::process::Command::new("git")
        .args(["credential-store", "erase"])
        .env("HOME", &tokenator.home)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    erase
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("protocol={scheme}\nhost={host}\nusername=x-access-token\n\n").as_bytes(),
        )
        .unwrap();
    assert!(erase.wait().unwrap().success());
    assert!(
        penguin_test_support::eventually(Duration::from_secs(2), || tokenator.credentials_line()
            == expected)
        .await,
        "not restored after git erased the line"
    );
    let (_, metrics) = tokenator.http_get("/metrics").await;
    assert!(metrics.contains("reason=\"restored\""), "{metrics}");
    tokenator.assert_no_token_in_logs(&github);
}
