//! Writing on an issue or pull request thread: comments, labels and a pull
//! request's body. Everything written is redacted first: a model's answer,
//! a hook's stderr or an error may quote a token.

use super::RepoClient;
use crate::BotResult;
use serde_json::{json, Value};

impl RepoClient {
    /// Posts `body` on issue or pull request `number`.
    pub async fn comment(&self, number: u64, body: String) -> BotResult<()> {
        let body = scrub(&body);
        let (owner, repo) = (&self.owner, &self.repo);
        self.create("comment", |crab| {
            let body = body.clone();
            async move { crab.issues(owner, repo).create_comment(number, body).await }
        })
        .await
        .map(|_| ())
    }

    /// Edits comment `id` to `body`.
    pub async fn edit_comment(
        &self,
        id: octocrab::models::CommentId,
        body: String,
    ) -> BotResult<()> {
        let body = scrub(&body);
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        self.call("edit comment", |crab| {
            let body = body.clone();
            async move { crab.issues(owner, repo).update_comment(id, body).await }
        })
        .await
        .map(|_| ())
    }

    /// Adds `label` (best effort: labels are a courtesy, not the outcome).
    pub async fn add_label(&self, number: u64, label: &str) {
        let (owner, repo) = (&self.owner, &self.repo);
        let _ = self
            .call("add label", |crab| async move {
                crab.issues(owner, repo)
                    .add_labels(number, &[label.to_string()])
                    .await
            })
            .await;
    }

    /// Removes `label` (best effort).
    pub async fn remove_label(&self, number: u64, label: &str) {
        let (owner, repo) = (&self.owner, &self.repo);
        let _ = self
            .call("remove label", |crab| async move {
                crab.issues(owner, repo).remove_label(number, label).await
            })
            .await;
    }

    /// Replaces pull request `number`'s body.
    pub async fn set_pull_body(&self, number: u64, body: &str) -> BotResult<()> {
        let body = scrub(body);
        let body = body.as_str();
        let (owner, repo) = (self.owner.as_str(), self.repo.as_str());
        self.call("pull request body", |crab| async move {
            crab.patch::<Value, _, _>(
                format!("/repos/{owner}/{repo}/pulls/{number}"),
                Some(&json!({ "body": body })),
            )
            .await
        })
        .await
        .map(|_| ())
    }
}

/// `text` with every secret shape masked.
pub fn scrub(text: &str) -> String {
    penguin_telemetry::redact(text).into_owned()
}
