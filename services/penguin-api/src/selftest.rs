//! `penguin-api self-test`: proves from inside the api container that git
//! pushes work with the pod's credentials — a clone, then a commit and a push
//! to `penguin/self-test` every interval, each asking for credentials fresh
//! (the tokenator, else the shared credentials file), as the bot does. One
//! JSON line per push on stdout; tokens are never printed.

use crate::{config::Settings, github::git_auth::GitAuth};
use serde_json::json;
use std::{path::Path, time::Duration};

/// Branch the self-test pushes to (the bot only pushes to `penguin/*`).
const BRANCH: &str = "penguin/self-test";

/// Why the self-test could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// No repository to push to.
    #[error("GITHUB_REPOSITORY is not set: the self-test needs a repository to push to")]
    NoRepository,
    /// The clone failed.
    #[error("clone failed: {0}")]
    Clone(String),
}

/// Runs the self-test; `Ok(failed pushes)`.
pub async fn run(
    settings: &Settings,
    pushes: u32,
    interval: Duration,
) -> Result<u32, SelfTestError> {
    let repository = settings
        .github_repository
        .clone()
        .ok_or(SelfTestError::NoRepository)?;
    let auth = GitAuth::from_settings(settings);
    let url = format!(
        "{}/{repository}.git",
        settings.github_server_url.trim_end_matches('/')
    );
    // /tmp is writable in the container (the root filesystem is not).
    let clone = std::env::temp_dir().join(format!("penguin-self-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&clone);
    {
        let (auth, repository, clone) = (auth.clone(), repository.clone(), clone.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut fetch = git2::FetchOptions::new();
            fetch.remote_callbacks(auth.callbacks(&repository, handle));
            git2::build::RepoBuilder::new()
                .fetch_options(fetch)
                .clone(&url, &clone)
                .map(|_| ())
                .map_err(|e| SelfTestError::Clone(e.message().to_string()))
        })
        .await
        .map_err(|e| SelfTestError::Clone(e.to_string()))??;
    }
    let mut failed = 0;
    for round in 1..=pushes {
        let (_, source) = match auth.token(&repository).await {
            Ok(answer) => answer,
            Err(e) => {
                failed += 1;
                println!(
                    "{}",
                    json!({ "push": round, "ok": false, "error": e.to_string() })
                );
                continue;
            }
        };
        let started = std::time::Instant::now();
        let (auth, repository, clone) = (auth.clone(), repository.clone(), clone.clone());
        let handle = tokio::runtime::Handle::current();
        let result =
            tokio::task::spawn_blocking(move || push(&auth, &repository, &clone, round, handle))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        let line = match &result {
            Ok(sha) => json!({
                "push": round, "ok": true, "sha": sha, "branch": BRANCH,
                "credentials": source.as_str(), "ms": started.elapsed().as_millis() as u64,
            }),
            Err(e) => json!({ "push": round, "ok": false, "error": penguin_telemetry::redact(e) }),
        };
        if result.is_err() {
            failed += 1;
        }
        println!("{line}");
        if round < pushes {
            tokio::time::sleep(interval).await;
        }
    }
    let _ = std::fs::remove_dir_all(&clone);
    Ok(failed)
}

/// Commits one change and pushes it; returns the commit's sha.
fn push(
    auth: &GitAuth,
    repository: &str,
    clone: &Path,
    round: u32,
    handle: tokio::runtime::Handle,
) -> Result<String, String> {
    let repo = git2::Repository::open(clone).map_err(|e| e.message().to_string())?;
    let stamp = chrono::Utc::now().to_rfc3339();
    std::fs::write(
        clone.join("penguin-self-test.txt"),
        format!("push {round} at {stamp}\n"),
    )
    .map_err(|e| e.to_string())?;
    let mut index = repo.index().map_err(|e| e.message().to_string())?;
    index
        .add_path(Path::new("penguin-self-test.txt"))
        .map_err(|e| e.message().to_string())?;
    let sha = crate::github::git_commit::commit_staged(
        &repo,
        &mut index,
        "penguin self-test",
        "self-test@penguin.invalid",
        &format!("penguin self-test push {round}"),
    )?;
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.name().map(str::to_string))
        .ok_or("HEAD is not a branch")?;
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(auth.callbacks(repository, handle));
    repo.find_remote("origin")
        .and_then(|mut remote| {
            remote.push(
                &[format!("+{head}:refs/heads/{BRANCH}")],
                Some(&mut options),
            )
        })
        .map_err(|e| format!("push failed: {}", e.message()))?;
    Ok(sha)
}
