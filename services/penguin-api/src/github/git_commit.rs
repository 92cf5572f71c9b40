//! Committing what is staged in a local clone, for the bot's fixes and the
//! self-test.

/// Writes `index` and commits its tree on top of HEAD (a root commit in an
/// empty clone) as `name <email>`, moving HEAD; returns the commit's sha.
pub fn commit_staged(
    repo: &git2::Repository,
    index: &mut git2::Index,
    name: &str,
    email: &str,
    message: &str,
) -> Result<String, String> {
    let git = |e: git2::Error| e.message().to_string();
    index.write().map_err(git)?;
    let tree = repo
        .find_tree(index.write_tree().map_err(git)?)
        .map_err(git)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let signature = git2::Signature::now(name, email).map_err(git)?;
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
    .map(|oid| oid.to_string())
    .map_err(git)
}
