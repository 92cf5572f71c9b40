//! Local commits in a clone, for the bot's fixes and the self-test.

use super::{blocking, GitError};
use std::path::{Path, PathBuf};

/// Who a commit is by.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The name (the App's `<slug>[bot]`).
    pub name: String,
    /// The e-mail (`<id>+<slug>[bot]@users.noreply.github.com`).
    pub email: String,
}

/// What to stage before committing.
#[derive(Clone, Debug)]
pub enum Stage {
    /// Everything in the working tree (a fix's edits, new files included).
    All,
    /// These paths, relative to the clone.
    Paths(Vec<PathBuf>),
}

/// Stages `what` in the clone at `dir` and commits it on top of HEAD (a root
/// commit in an empty clone) as `by`, moving HEAD; returns the commit's sha.
pub async fn commit(
    dir: &Path,
    what: Stage,
    by: &Signature,
    message: &str,
) -> Result<String, GitError> {
    let (dir, by, message) = (dir.to_path_buf(), by.clone(), message.to_string());
    blocking(move || {
        let git = |e: git2::Error| GitError::git2("commit", &e);
        let repo = git2::Repository::open(&dir).map_err(git)?;
        let mut index = repo.index().map_err(git)?;
        match &what {
            Stage::All => index
                .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
                .map_err(git)?,
            Stage::Paths(paths) => {
                for path in paths {
                    index.add_path(path).map_err(git)?;
                }
            }
        }
        index.write().map_err(git)?;
        let tree = repo
            .find_tree(index.write_tree().map_err(git)?)
            .map_err(git)?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let signature = git2::Signature::now(&by.name, &by.email).map_err(git)?;
        repo.commit(
            Some("HEAD"),
            &signature,
            &signature,
            &message,
            &tree,
            &parents,
        )
        .map(|oid| oid.to_string())
        .map_err(git)
    })
    .await
}

/// The HEAD commit's sha and its tree's sha in the clone at `dir`.
pub async fn head(dir: &Path) -> Result<(String, String), GitError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        let git = |e: git2::Error| GitError::git2("HEAD", &e);
        let repo = git2::Repository::open(&dir).map_err(git)?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).map_err(git)?;
        Ok((head.id().to_string(), head.tree_id().to_string()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git2_speaks_https_for_github() {
        // GitHub serves git only over https: without it every clone fails.
        assert!(git2::Version::get().https(), "git2 built without https");
    }

    #[tokio::test]
    async fn commits_stack_on_head_with_the_given_author() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        let by = Signature {
            name: "penguin[bot]".into(),
            email: "1+penguin[bot]@users.noreply.github.com".into(),
        };
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let first = commit(dir.path(), Stage::Paths(vec!["a.txt".into()]), &by, "first")
            .await
            .unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        let second = commit(dir.path(), Stage::All, &by, "second\n\nTask-ID: t1\n")
            .await
            .unwrap();
        let repo = git2::Repository::open(dir.path()).unwrap();
        let tip = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(tip.id().to_string(), second);
        assert_eq!(tip.parent_id(0).unwrap().to_string(), first);
        assert_eq!(tip.author().name(), Some("penguin[bot]"));
        assert!(tip.tree().unwrap().get_name("b.txt").is_some());
        assert_eq!(head(dir.path()).await.unwrap().0, second);
    }
}
