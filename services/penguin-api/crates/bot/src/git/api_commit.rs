//! Commits through GitHub's Git Data API (blobs, a tree, a commit, a ref)
//! instead of a local commit and a push. Author and committer are left out,
//! so GitHub commits as the App's bot user and signs the commit: it shows as
//! Verified, which branch protection rules may require.

use crate::{github_api::RepoClient, BotError, BotResult};
use base64::Engine;
use serde_json::{json, Value};

/// A file of the new commit.
pub struct FileChange {
    /// Path relative to the repository root.
    pub path: String,
    /// The whole new content.
    pub content: Vec<u8>,
    /// Whether it is executable (mode `100755`).
    pub executable: bool,
}

/// Creates the commit `parent + changes` on GitHub and returns its sha.
/// `base_tree` is the parent's tree, so unchanged files are kept.
pub async fn create_commit(
    client: &RepoClient,
    parent: &str,
    base_tree: &str,
    changes: &[FileChange],
    message: &str,
) -> BotResult<String> {
    let repo = format!("/repos/{}/{}", client.owner, client.repo);
    let mut entries = Vec::with_capacity(changes.len());
    for change in changes {
        let body = json!({
            "content": base64::engine::general_purpose::STANDARD.encode(&change.content),
            "encoding": "base64",
        });
        let blob: Value = client
            .create("git blob", |crab| {
                let (url, body) = (format!("{repo}/git/blobs"), &body);
                async move { crab.post(url, Some(body)).await }
            })
            .await?;
        entries.push(json!({
            "path": change.path,
            "mode": if change.executable { "100755" } else { "100644" },
            "type": "blob",
            "sha": sha_of(&blob)?,
        }));
    }
    let tree_body = json!({ "base_tree": base_tree, "tree": entries });
    let tree: Value = client
        .create("git tree", |crab| {
            let (url, body) = (format!("{repo}/git/trees"), &tree_body);
            async move { crab.post(url, Some(body)).await }
        })
        .await?;
    // No author, no committer: GitHub signs commits it attributes to the App.
    let commit_body = json!({ "message": message, "tree": sha_of(&tree)?, "parents": [parent] });
    let commit: Value = client
        .create("git commit", |crab| {
            let (url, body) = (format!("{repo}/git/commits"), &commit_body);
            async move { crab.post(url, Some(body)).await }
        })
        .await?;
    if commit["verification"]["verified"].as_bool() != Some(true) {
        tracing::warn!(
            reason = commit["verification"]["reason"]
                .as_str()
                .unwrap_or("unknown"),
            "GitHub did not sign the commit"
        );
    }
    sha_of(&commit)
}

/// Points `refs/heads/<branch>` at `sha`: creates the branch, or moves it
/// (forced: `penguin/*` branches belong to the bot, as with a `+` push).
pub async fn point_branch(client: &RepoClient, branch: &str, sha: &str) -> BotResult<()> {
    let crab = client.crab().await?;
    let repo = format!("/repos/{}/{}", client.owner, client.repo);
    let create = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
    match crab
        .post::<_, Value>(format!("{repo}/git/refs"), Some(&create))
        .await
    {
        Ok(_) => Ok(()),
        Err(octocrab::Error::GitHub { source, .. })
            if source.status_code.as_u16() == 422 && source.message.contains("already exists") =>
        {
            client
                .call("move branch", |crab| {
                    let (url, body) = (
                        format!("{repo}/git/refs/heads/{branch}"),
                        json!({ "sha": sha, "force": true }),
                    );
                    async move { crab.patch::<Value, _, _>(url, Some(&body)).await }
                })
                .await
                .map(|_| ())
        }
        Err(e) => Err(BotError::GitHub(
            penguin_github::GitHubError::from_octocrab(&e),
        )),
    }
}

fn sha_of(object: &Value) -> BotResult<String> {
    object["sha"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| BotError::Failed("GitHub's answer has no sha".into()))
}
