//! Pushing a branch: every git request asks for a token fresh (the
//! tokenator's, scoped to the repository), so a rotation between two pushes
//! is invisible.

use super::{blocking, GitAuth, GitError};
use std::path::Path;

/// Pushes the clone's HEAD at `dir` to `refs/heads/<branch>` of `origin`,
/// forced (`penguin/*` branches belong to the bot).
pub async fn push_head(
    auth: &GitAuth,
    repository: &str,
    dir: &Path,
    branch: &str,
) -> Result<(), GitError> {
    let (auth, repository, dir, branch) = (
        auth.clone(),
        repository.to_string(),
        dir.to_path_buf(),
        branch.to_string(),
    );
    let handle = tokio::runtime::Handle::current();
    blocking(move || {
        let repo = git2::Repository::open(&dir).map_err(|e| GitError::git2("open", &e))?;
        let head = repo
            .head()
            .ok()
            .and_then(|h| h.name().map(str::to_string))
            .ok_or_else(|| GitError::other("HEAD is not a branch"))?;
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(auth.callbacks(&repository, handle));
        repo.find_remote("origin")
            .and_then(|mut remote| {
                remote.push(
                    &[format!("+{head}:refs/heads/{branch}")],
                    Some(&mut options),
                )
            })
            .map_err(|e| GitError::git2("push failed", &e))
    })
    .await
}
