//! A pull request's diff and reviews on GitHub: its changed files, what
//! changed between two commits, reviews with inline comments, and replies
//! in a comment's thread. Everything written is redacted first.

use super::{thread::scrub, RepoClient};
use crate::{BotError, BotResult};
use serde::Deserialize;
use serde_json::{json, Value};

/// GitHub lists at most this many files of a pull request; other lists are
/// read no further either.
const MAX_ITEMS: usize = 3000;

/// One changed file, as `GET /pulls/{n}/files` and compare list them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ChangedFile {
    /// Its path (the new one, for a rename).
    pub filename: String,
    /// `added`, `removed`, `modified`, `renamed`, …
    pub status: String,
    /// Lines added.
    #[serde(default)]
    pub additions: u64,
    /// Lines removed.
    #[serde(default)]
    pub deletions: u64,
    /// The unified diff hunks (absent for binary or very large files).
    #[serde(default)]
    pub patch: Option<String>,
}

/// What changed between two commits (`GET /compare/{base}...{head}`).
#[derive(Clone, Debug, Deserialize)]
pub struct Comparison {
    /// `ahead` (head descends from base), `identical`, `behind` or `diverged`.
    pub status: String,
    /// Commits in head that base lacks.
    #[serde(default)]
    pub ahead_by: u64,
    /// The files changed from the merge base to head.
    #[serde(default)]
    pub files: Vec<ChangedFile>,
}

/// The parts of a pull request a review needs.
#[derive(Clone, Debug, Deserialize)]
pub struct PullInfo {
    /// Its head.
    pub head: PullRef,
    /// Its base.
    pub base: PullRef,
}

/// A pull request's head or base.
#[derive(Clone, Debug, Deserialize)]
pub struct PullRef {
    /// The branch.
    #[serde(rename = "ref")]
    pub branch: String,
    /// The commit.
    pub sha: String,
}

/// An inline comment of a posted review.
#[derive(Clone, Debug, Deserialize)]
pub struct ReviewComment {
    /// Its id (replies go to it).
    pub id: u64,
    /// The file.
    pub path: String,
    /// Its line (`None` when GitHub no longer places it).
    #[serde(default)]
    pub line: Option<u64>,
    /// Its body.
    #[serde(default)]
    pub body: String,
}

impl RepoClient {
    /// Pull request `number`'s head and base.
    pub async fn pull_info(&self, number: u64) -> BotResult<PullInfo> {
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        self.call("pull request", |crab| async move {
            crab.get(format!("/repos/{owner}/{repo}/pulls/{number}"), None::<&()>)
                .await
        })
        .await
    }

    /// Every item of a list `path` (without query), 100 per page, up to
    /// [`MAX_ITEMS`].
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> BotResult<Vec<T>> {
        let mut all = Vec::new();
        for page in 1.. {
            let batch: Vec<T> = self
                .call(what, |crab| async move {
                    crab.get(format!("{path}?per_page=100&page={page}"), None::<&()>)
                        .await
                })
                .await?;
            let last = batch.len() < 100;
            all.extend(batch);
            if last || all.len() >= MAX_ITEMS {
                break;
            }
        }
        Ok(all)
    }

    /// Every changed file of pull request `number` (GitHub lists 3000 at most).
    pub async fn pull_files(&self, number: u64) -> BotResult<Vec<ChangedFile>> {
        let (owner, repo) = (&self.owner, &self.repo);
        self.list_all(
            "pull request files",
            &format!("/repos/{owner}/{repo}/pulls/{number}/files"),
        )
        .await
    }

    /// What changed from `base` to `head`; `None` when GitHub knows no such
    /// commit (a force-push can make an old head disappear).
    pub async fn compare(&self, base: &str, head: &str) -> BotResult<Option<Comparison>> {
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        let answer = self
            .call("compare", |crab| async move {
                crab.get(
                    format!("/repos/{owner}/{repo}/compare/{base}...{head}"),
                    None::<&()>,
                )
                .await
            })
            .await;
        match answer {
            Ok(comparison) => Ok(Some(comparison)),
            Err(BotError::GitHub(e)) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The text of `path` at `reference`, or `None` when there is no such
    /// file (or it is not text).
    pub async fn file_text(&self, path: &str, reference: &str) -> BotResult<Option<String>> {
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        let answer = self
            .call("file contents", |crab| async move {
                crab.repos(owner, repo)
                    .get_content()
                    .path(path)
                    .r#ref(reference)
                    .send()
                    .await
            })
            .await;
        match answer {
            Ok(items) => Ok(items.items.first().and_then(|c| c.decoded_content())),
            Err(BotError::GitHub(e)) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Posts a review of pull request `number` at `commit_id`; its id.
    /// `event` `None` leaves it pending (to check that comments are placed).
    pub async fn create_review(
        &self,
        number: u64,
        commit_id: &str,
        body: &str,
        event: Option<&str>,
        comments: &[Value],
    ) -> BotResult<u64> {
        // Comment bodies are the model's words: redacted like everything written.
        let comments: Vec<Value> = comments
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(text) = c["body"].as_str() {
                    c["body"] = json!(scrub(text));
                }
                c
            })
            .collect();
        let mut review = json!({
            "commit_id": commit_id,
            "body": scrub(body),
            "comments": comments,
        });
        if let Some(event) = event {
            review["event"] = json!(event);
        }
        let review = &review;
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        let created: Value = self
            .create("review", |crab| async move {
                crab.post(
                    format!("/repos/{owner}/{repo}/pulls/{number}/reviews"),
                    Some(review),
                )
                .await
            })
            .await?;
        created["id"]
            .as_u64()
            .ok_or_else(|| BotError::Failed("GitHub's review has no id".into()))
    }

    /// Deletes pending review `review_id`.
    pub async fn delete_pending_review(&self, number: u64, review_id: u64) -> BotResult<()> {
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        self.call("delete pending review", |crab| async move {
            crab.delete::<Value, _, ()>(
                format!("/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}"),
                None,
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// The inline comments of review `review_id`, in order.
    pub async fn review_comments(
        &self,
        number: u64,
        review_id: u64,
    ) -> BotResult<Vec<ReviewComment>> {
        let (owner, repo) = (&self.owner, &self.repo);
        self.list_all(
            "review comments",
            &format!("/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments"),
        )
        .await
    }

    /// Replies `body` in the thread of review comment `comment_id`.
    pub async fn reply_to_review_comment(
        &self,
        number: u64,
        comment_id: u64,
        body: &str,
    ) -> BotResult<()> {
        let reply = json!({ "body": scrub(body) });
        let reply = &reply;
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        self.create("review comment reply", |crab| async move {
            crab.post::<_, Value>(
                format!("/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies"),
                Some(reply),
            )
            .await
        })
        .await
        .map(|_| ())
    }
}
