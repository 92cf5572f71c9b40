//! Cloning a repository over https with credentials asked for fresh.

use super::{blocking, GitAuth, GitError};
use std::path::{Path, PathBuf};

/// Clones `repository` (`owner/name`) from `url` into `dir`, checking out
/// `branch` (the remote's default branch when `None`).
pub async fn clone(
    auth: &GitAuth,
    repository: &str,
    url: &str,
    branch: Option<&str>,
    dir: &Path,
) -> Result<(), GitError> {
    let (auth, repository, url, branch, dir): (GitAuth, String, String, Option<String>, PathBuf) = (
        auth.clone(),
        repository.to_string(),
        url.to_string(),
        branch.map(str::to_string),
        dir.to_path_buf(),
    );
    let handle = tokio::runtime::Handle::current();
    blocking(move || {
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(auth.callbacks(&repository, handle));
        let mut builder = git2::build::RepoBuilder::new();
        if let Some(branch) = &branch {
            builder.branch(branch);
        }
        builder
            .fetch_options(fetch)
            .clone(&url, &dir)
            .map(|_| ())
            .map_err(|e| GitError::git2("clone failed", &e))
    })
    .await
}

/// Creates `branch` at HEAD in the clone at `dir` and checks it out.
pub async fn start_branch(dir: &Path, branch: &str) -> Result<(), GitError> {
    let (dir, branch) = (dir.to_path_buf(), branch.to_string());
    blocking(move || {
        let git = |e: git2::Error| GitError::git2("branch", &e);
        let repo = git2::Repository::open(&dir).map_err(git)?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).map_err(git)?;
        repo.branch(&branch, &head, true).map_err(git)?;
        repo.set_head(&format!("refs/heads/{branch}")).map_err(git)
    })
    .await
}

/// Fetches pull request `number`'s code (`refs/pull/<n>/head`, which the
/// base repository keeps whether the branch lives in a fork or was deleted)
/// into the clone at `dir` and checks out exactly `head_sha`; a pull request
/// that moved since is refused rather than fixed at another commit.
pub async fn checkout_pull(
    auth: &GitAuth,
    repository: &str,
    dir: &Path,
    number: u64,
    head_sha: &str,
) -> Result<(), GitError> {
    let (auth, repository, dir, head_sha) = (
        auth.clone(),
        repository.to_string(),
        dir.to_path_buf(),
        head_sha.to_string(),
    );
    let handle = tokio::runtime::Handle::current();
    blocking(move || {
        let git = |e: git2::Error| GitError::git2("fetch pull request", &e);
        let repo = git2::Repository::open(&dir).map_err(git)?;
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(auth.callbacks(&repository, handle));
        let tracking = format!("refs/remotes/origin/pull/{number}");
        repo.find_remote("origin")
            .and_then(|mut remote| {
                remote.fetch(
                    &[format!("+refs/pull/{number}/head:{tracking}")],
                    Some(&mut fetch),
                    None,
                )
            })
            .map_err(|e| GitError::git2("fetch failed", &e))?;
        let fetched = repo.refname_to_id(&tracking).map_err(git)?.to_string();
        if fetched != head_sha {
            return Err(GitError::other(format!(
                "the pull request moved to {fetched} since the command; ask again"
            )));
        }
        let oid = git2::Oid::from_str(&head_sha).map_err(git)?;
        repo.set_head_detached(oid).map_err(git)?;
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .map_err(git)
    })
    .await
}
