//! `penguin-api self-test`: proves from inside the api container that git
//! pushes work with the pod's credentials — a clone, then a commit and a push
//! to `penguin/self-test` every interval, each asking for credentials fresh
//! (the tokenator, else the shared credentials file), as the bot does. One
//! JSON line per push on stdout; tokens are never printed.

use crate::config::Settings;
use penguin_bot::git::{
    self,
    commit::{Signature, Stage},
    GitAuth,
};
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
    let auth = settings.git_auth();
    let url = auth.clone_url(&repository);
    // /tmp is writable in the container (the root filesystem is not).
    let clone = std::env::temp_dir().join(format!("penguin-self-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&clone);
    git::clone::clone(&auth, &repository, &url, None, &clone)
        .await
        .map_err(|e| SelfTestError::Clone(e.to_string()))?;
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
        let result = push(&auth, &repository, &clone, round).await;
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
async fn push(
    auth: &GitAuth,
    repository: &str,
    clone: &Path,
    round: u32,
) -> Result<String, String> {
    let stamp = chrono::Utc::now().to_rfc3339();
    std::fs::write(
        clone.join("penguin-self-test.txt"),
        format!("push {round} at {stamp}\n"),
    )
    .map_err(|e| e.to_string())?;
    let by = Signature {
        name: "penguin self-test".into(),
        email: "self-test@penguin.invalid".into(),
    };
    let sha = git::commit::commit(
        clone,
        Stage::Paths(vec!["penguin-self-test.txt".into()]),
        &by,
        &format!("penguin self-test push {round}"),
    )
    .await
    .map_err(|e| e.to_string())?;
    git::push::push_head(auth, repository, clone, BRANCH)
        .await
        .map_err(|e| e.to_string())?;
    Ok(sha)
}
