//! GitHub's webhook payloads for what happens in the stand-in — `issue_comment`, `issues` and
//! `pull_request` events — queued for delivery ([`crate::webhook`]). The objects in them are the
//! REST shapes ([`crate::shapes`]) of the state right after the change, in GitHub's envelope:
//! `action`, `repository`, `organization`, `installation` (`{id, node_id}`) and `sender`.
//!
//! Nothing is rendered unless the event would be delivered (a webhook URL is set, the App
//! subscribes to the event and an active installation covers the repository).

use serde_json::{json, Map, Value};

use crate::changes::pull_diff;
use crate::objects;
use crate::shapes::{self, View};
use crate::state::{RepoInfo, Shared};
use crate::store::RepoData;

/// A repository's data as it is now.
fn snapshot(shared: &Shared, repo: &RepoInfo) -> RepoData {
    shared.with(|s| {
        s.store
            .repo(&repo.owner, &repo.name)
            .cloned()
            .unwrap_or_default()
    })
}

/// Wraps `fields` in GitHub's envelope and queues the delivery.
fn deliver(
    view: &View<'_>,
    installation: u64,
    event: &str,
    action: &str,
    sender: &str,
    mut fields: Map<String, Value>,
) {
    let shared = view.shared;
    fields.insert("action".into(), json!(action));
    fields.insert(
        "repository".into(),
        objects::repository(shared, view.base, view.repo),
    );
    if let Some(org) = objects::organization(shared, view.base, &view.repo.owner) {
        fields.insert("organization".into(), org);
    }
    fields.insert(
        "installation".into(),
        objects::installation_ref(installation),
    );
    fields.insert("sender".into(), view.user(sender));
    crate::webhook::enqueue(
        shared,
        event,
        Some(action),
        Some(installation),
        Some(view.repo.id),
        &Value::Object(fields),
    );
}

/// `issue_comment` (`created`, or `edited` with `changes`) for comment `comment_id`.
pub(crate) fn issue_comment(
    shared: &Shared,
    base: &str,
    repo: &RepoInfo,
    comment_id: u64,
    action: &str,
    changes: Option<Value>,
    sender: &str,
) {
    let Some(installation) =
        crate::webhook::target(shared, "issue_comment", &repo.owner, &repo.name)
    else {
        return;
    };
    let data = snapshot(shared, repo);
    let Some(comment) = data.comments.iter().find(|c| c.id == comment_id) else {
        return;
    };
    let Some(issue) = data.issues.get(&comment.issue_number) else {
        return;
    };
    let view = View {
        shared,
        base,
        repo,
        data: &data,
    };
    let app = objects::app(shared, base);
    let mut fields = Map::new();
    if let Some(changes) = changes {
        fields.insert("changes".into(), changes);
    }
    fields.insert("issue".into(), shapes::issue(&view, issue));
    fields.insert("comment".into(), shapes::comment(&view, comment, &app));
    deliver(&view, installation, "issue_comment", action, sender, fields);
}

/// An event about issue or pull request `number`: `pull_request` (with `number` and
/// `pull_request`) when it is a pull request, else `issues` (with `issue`). `extra` adds
/// fields such as `label`, `changes`, `before` and `after`.
pub(crate) async fn issue_or_pull(
    shared: &Shared,
    base: &str,
    repo: &RepoInfo,
    number: u64,
    action: &str,
    extra: Map<String, Value>,
    sender: &str,
) {
    let is_pull = shared.with(|s| {
        s.store
            .repo(&repo.owner, &repo.name)
            .is_some_and(|d| d.pulls.contains_key(&number))
    });
    let event = if is_pull { "pull_request" } else { "issues" };
    let Some(installation) = crate::webhook::target(shared, event, &repo.owner, &repo.name) else {
        return;
    };
    let data = snapshot(shared, repo);
    let Some(issue) = data.issues.get(&number) else {
        return;
    };
    let view = View {
        shared,
        base,
        repo,
        data: &data,
    };
    let mut fields = Map::new();
    match data.pulls.get(&number) {
        Some(pull) => {
            let diff = pull_diff(shared, repo, pull, None)
                .await
                .unwrap_or_default();
            fields.insert("number".into(), json!(number));
            fields.insert(
                "pull_request".into(),
                shapes::pull(&view, issue, pull, &diff),
            );
        }
        None => {
            fields.insert("issue".into(), shapes::issue(&view, issue));
        }
    }
    fields.extend(extra);
    deliver(&view, installation, event, action, sender, fields);
}

/// The `label` field of a `labeled` / `unlabeled` event.
pub(crate) fn label_field(
    shared: &Shared,
    base: &str,
    repo: &RepoInfo,
    label: &str,
) -> Map<String, Value> {
    let data = snapshot(shared, repo);
    let view = View {
        shared,
        base,
        repo,
        data: &data,
    };
    Map::from_iter([("label".to_string(), shapes::label(&view, label))])
}

/// `changes` of an `edited` event: the previous title and/or body, for those that changed.
pub(crate) fn edit_changes(
    old_title: &str,
    new_title: &str,
    old_body: &str,
    new_body: &str,
) -> Option<Map<String, Value>> {
    let mut changes = Map::new();
    if old_title != new_title {
        changes.insert("title".into(), json!({"from": old_title}));
    }
    if old_body != new_body {
        changes.insert("body".into(), json!({"from": old_body}));
    }
    (!changes.is_empty()).then(|| Map::from_iter([("changes".to_string(), Value::Object(changes))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_changes_name_only_what_changed() {
        assert_eq!(edit_changes("t", "t", "b", "b"), None);
        assert_eq!(
            edit_changes("t", "t", "b", "c").map(Value::Object),
            Some(json!({"changes": {"body": {"from": "b"}}}))
        );
        assert_eq!(
            edit_changes("t", "u", "b", "c").map(Value::Object),
            Some(json!({"changes": {"title": {"from": "t"}, "body": {"from": "b"}}}))
        );
    }
}
