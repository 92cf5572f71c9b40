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
