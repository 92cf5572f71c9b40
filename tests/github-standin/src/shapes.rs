//! GitHub's JSON shapes for repository contents: issues, pull requests, comments, labels,
//! reactions, check runs, reviews, review comments, changed files and collaborator permissions.
//!
//! Shapes are copied from real API and webhook payloads; values come from the stored records
//! and URLs point at the stand-in (`base`).

use serde_json::{json, Map, Value};

use crate::changes::{FileChange, PullDiff};
use crate::objects::{self, node_id, timestamp};
use crate::state::{RepoInfo, Shared};
use crate::store::{
    fnv, CheckRunRec, CommentRec, IssueRec, PullRec, ReactionRec, RepoData, ReviewCommentRec,
    ReviewRec,
};

/// The reaction contents GitHub accepts.
pub(crate) const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// What rendering needs: the stand-in, the URL base, the repository and its stored data.
pub(crate) struct View<'a> {
    pub shared: &'a Shared,
    pub base: &'a str,
    pub repo: &'a RepoInfo,
    pub data: &'a RepoData,
}

impl View<'_> {
    /// `{base}/repos/{owner}/{repo}`.
    fn api(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.repo.owner, self.repo.name)
    }

    /// `{base}/{owner}/{repo}`.
    fn html(&self) -> String {
        format!("{}/{}/{}", self.base, self.repo.owner, self.repo.name)
    }

    /// The user object of a login.
    pub fn user(&self, login: &str) -> Value {
        user_for(self.shared, self.base, login)
    }

    /// `author_association` of a login in this repository.
    fn association(&self, login: &str) -> &'static str {
        if login.eq_ignore_ascii_case(&self.repo.owner) {
            "OWNER"
        } else if self.data.permission(login) != "none" {
            "COLLABORATOR"
        } else {
            "NONE"
        }
    }

    /// Whether a review is still pending (unknown reviews count as submitted).
    pub fn pending(&self, review_id: u64) -> bool {
        self.data
            .reviews
            .iter()
            .any(|r| r.id == review_id && r.state == "PENDING")
    }

    /// Whether this issue number is a pull request.
    fn is_pull(&self, number: u64) -> bool {
        self.data.pulls.contains_key(&number)
    }
}

/// A stable user ID for an arbitrary login.
pub(crate) fn user_id(login: &str) -> u64 {
    10_000_000 + fnv(login.to_ascii_lowercase().as_bytes()) % 80_000_000
}

/// The user object of a login: the App's bot, an installation account, or a plain user.
pub(crate) fn user_for(shared: &Shared, base: &str, login: &str) -> Value {
    if login.eq_ignore_ascii_case(&shared.bot_login()) {
        objects::bot_user(shared, base)
    } else if shared.account(login).is_some() {
        objects::account(shared, base, login)
    } else {
        objects::user(base, login, user_id(login), "User")
    }
}

/// Percent-encodes a string for one URL path segment (or a path with `/` kept).
pub(crate) fn encode_path(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || (keep_slash && c == '/') {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A label object.
pub(crate) fn label(view: &View<'_>, name: &str) -> Value {
    let (id, name, color) = match view.data.label(name) {
        Some(l) => (l.id, l.name.clone(), l.color.clone()),
        None => (0, name.to_string(), "ededed".to_string()),
    };
    json!({
        "id": id,
        "node_id": node_id("Label", id),
        "url": format!("{}/labels/{}", view.api(), encode_path(&name, false)),
        "name": name,
        "color": color,
        "default": false,
        "description": null,
    })
}

/// A reactions rollup.
fn reaction_rollup(url: String, contents: &[&str]) -> Value {
    let mut m = Map::new();
    m.insert("url".into(), json!(url));
    m.insert("total_count".into(), json!(contents.len()));
    for r in REACTIONS {
        let n = contents.iter().filter(|c| **c == r).count();
        m.insert(r.into(), json!(n));
    }
    Value::Object(m)
}

/// An issue object (with a `pull_request` key for pull requests).
pub(crate) fn issue(view: &View<'_>, rec: &IssueRec) -> Value {
    let api = format!("{}/issues/{}", view.api(), rec.number);
    let is_pull = view.is_pull(rec.number);
    let kind = if is_pull { "pull" } else { "issues" };
    let html = format!("{}/{kind}/{}", view.html(), rec.number);
    let mut out = json!({
        "url": api,
        "repository_url": view.api(),
        "labels_url": format!("{api}/labels{{/name}}"),
        "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": html,
        "id": rec.id,
        "node_id": node_id("Issue", rec.id),
        "number": rec.number,
        "title": rec.title,
        "user": view.user(&rec.author),
        "labels": rec.labels.iter().map(|l| label(view, l)).collect::<Vec<_>>(),
        "state": rec.state,
        "locked": false,
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": view.data.comment_count(rec.number),
        "created_at": timestamp(rec.created_at),
        "updated_at": timestamp(rec.updated_at),
        "closed_at": rec.closed_at.map(timestamp),
        "author_association": view.association(&rec.author),
        "active_lock_reason": null,
        "body": rec.body,
        "reactions": reaction_rollup(format!("{api}/reactions"), &[]),
        "timeline_url": format!("{api}/timeline"),
        "performed_via_github_app": null,
        "state_reason": null,
    });
    if is_pull {
        let pull_html = format!("{}/pull/{}", view.html(), rec.number);
        out["pull_request"] = json!({
            "url": format!("{}/pulls/{}", view.api(), rec.number),
            "html_url": pull_html,
            "diff_url": format!("{pull_html}.diff"),
            "patch_url": format!("{pull_html}.patch"),
            "merged_at": null,
        });
        out["draft"] = json!(view.data.pulls.get(&rec.number).is_some_and(|p| p.draft));
    }
    out
}

/// An issue comment object.
pub(crate) fn comment(view: &View<'_>, rec: &CommentRec, app: &Value) -> Value {
    let url = format!("{}/issues/comments/{}", view.api(), rec.id);
    let kind = if view.is_pull(rec.issue_number) {
        "pull"
    } else {
        "issues"
    };
    let contents: Vec<&str> = view
        .data
        .reactions
        .iter()
        .filter(|r| r.comment_id == rec.id)
        .map(|r| r.content.as_str())
        .collect();
    let by_bot = rec.author.eq_ignore_ascii_case(&view.shared.bot_login());
    json!({
        "url": url,
        "html_url": format!("{}/{kind}/{}#issuecomment-{}", view.html(), rec.issue_number, rec.id),
        "issue_url": format!("{}/issues/{}", view.api(), rec.issue_number),
        "id": rec.id,
        "node_id": node_id("IssueComment", rec.id),
        "user": view.user(&rec.author),
        "created_at": timestamp(rec.created_at),
        "updated_at": timestamp(rec.updated_at),
        "author_association": view.association(&rec.author),
        "body": rec.body,
        "reactions": reaction_rollup(format!("{url}/reactions"), &contents),
        "performed_via_github_app": if by_bot { app.clone() } else { Value::Null },
    })
}

/// A reaction object.
pub(crate) fn reaction(view: &View<'_>, rec: &ReactionRec) -> Value {
    json!({
        "id": rec.id,
        "node_id": node_id("Reaction", rec.id),
        "user": view.user(&rec.user),
        "content": rec.content,
        "created_at": timestamp(rec.created_at),
    })
}

/// The minimal repository reference inside check runs' `pull_requests`.
fn repo_ref(view: &View<'_>) -> Value {
    json!({"id": view.repo.id, "url": view.api(), "name": view.repo.name})
}

/// A check run object.
pub(crate) fn check_run(view: &View<'_>, rec: &CheckRunRec, app: &Value) -> Value {
    let url = format!("{}/check-runs/{}", view.api(), rec.id);
    let pull_requests: Vec<Value> = view
        .data
        .pulls
        .iter()
        .filter(|(n, p)| {
            p.head_sha == rec.head_sha
                && !p.from_fork
                && view.data.issues.get(n).is_some_and(|i| i.state == "open")
        })
        .map(|(n, p)| {
            json!({
                "url": format!("{}/pulls/{n}", view.api()),
                "id": p.id,
                "number": n,
                "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_ref(view)},
                "base": {"ref": p.base_ref, "sha": p.base_sha, "repo": repo_ref(view)},
            })
        })
        .collect();
    json!({
        "id": rec.id,
        "name": rec.name,
        "node_id": node_id("CheckRun", rec.id),
        "head_sha": rec.head_sha,
        "external_id": rec.external_id,
        "url": url,
        "html_url": format!("{}/runs/{}", view.html(), rec.id),
        "details_url": rec.details_url,
        "status": rec.status,
        "conclusion": rec.conclusion,
        "started_at": timestamp(rec.started_at),
        "completed_at": rec.completed_at.map(timestamp),
        "output": {
            "title": rec.output.title,
            "summary": rec.output.summary,
            "text": rec.output.text,
            "annotations_count": rec.annotations_count,
            "annotations_url": format!("{url}/annotations"),
        },
        "check_suite": {"id": rec.suite_id},
        "app": app,
        "pull_requests": pull_requests,
    })
}

/// The repository a pull request's head lives in: the base repository, or the author's fork.
fn head_repo(view: &View<'_>, issue: &IssueRec, pull: &PullRec) -> Value {
    if !pull.from_fork {
        return objects::repository(view.shared, view.base, view.repo);
    }
    let fork = RepoInfo {
        id: 600_000 + fnv(format!("{}/{}", issue.author, view.repo.name).as_bytes()) % 100_000,
        owner: issue.author.clone(),
        name: view.repo.name.clone(),
    };
    let mut repo = objects::repository(view.shared, view.base, &fork);
    repo["owner"] = view.user(&issue.author);
    repo["fork"] = json!(true);
    repo["private"] = json!(false);
    repo["visibility"] = json!("public");
    repo
}

/// A pull request object; `diff` is its diff at its head.
pub(crate) fn pull(view: &View<'_>, issue: &IssueRec, pull: &PullRec, diff: &PullDiff) -> Value {
    let n = issue.number;
    let api = format!("{}/pulls/{n}", view.api());
    let html = format!("{}/pull/{n}", view.html());
    let issue_api = format!("{}/issues/{n}", view.api());
    let statuses = format!("{}/statuses/{}", view.api(), pull.head_sha);
    let head_owner = if pull.from_fork {
        issue.author.clone()
    } else {
        view.repo.owner.clone()
    };
    let additions = diff
        .files
        .iter()
        .fold(0u64, |n, f| n.saturating_add(f.additions));
    let deletions = diff
        .files
        .iter()
        .fold(0u64, |n, f| n.saturating_add(f.deletions));
    // Comments of pending reviews are not counted until submitted.
    let review_comments = view
        .data
        .review_comments
        .iter()
        .filter(|c| c.number == n && !view.pending(c.review_id))
        .count();
    let head_label = format!("{head_owner}:{}", pull.head_ref);
    let base_label = format!("{}:{}", view.repo.owner, pull.base_ref);
    let review_comment = format!("{}/pulls/comments{{/number}}", view.api());
    let mut out = json!({
        "url": api,
        "id": pull.id,
        "node_id": node_id("PullRequest", pull.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": issue_api,
        "number": n,
        "state": issue.state,
        "locked": false,
        "title": issue.title,
        "user": view.user(&issue.author),
        "body": issue.body,
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "closed_at": issue.closed_at.map(timestamp),
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": issue.labels.iter().map(|l| label(view, l)).collect::<Vec<_>>(),
        "milestone": null,
        "draft": pull.draft,
    });
    let more = json!({
        "commits_url": format!("{api}/commits"),
        "review_comments_url": format!("{api}/comments"),
        "review_comment_url": review_comment,
        "comments_url": format!("{issue_api}/comments"),
        "statuses_url": statuses,
        "head": {
            "label": head_label,
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "user": view.user(&head_owner),
            "repo": head_repo(view, issue, pull),
        },
        "base": {
            "label": base_label,
            "ref": pull.base_ref,
            "sha": pull.base_sha,
            "user": view.user(&view.repo.owner),
            "repo": objects::repository(view.shared, view.base, view.repo),
        },
        "_links": {
            "self": {"href": api},
            "html": {"href": html},
            "issue": {"href": issue_api},
            "comments": {"href": format!("{issue_api}/comments")},
            "review_comments": {"href": format!("{api}/comments")},
            "review_comment": {"href": review_comment},
            "commits": {"href": format!("{api}/commits")},
            "statuses": {"href": statuses},
        },
    });
    let counts = json!({
        "author_association": view.association(&issue.author),
        "auto_merge": null,
        "active_lock_reason": null,
        "merged": false,
        "mergeable": null,
        "rebaseable": null,
        "mergeable_state": "unknown",
        "merged_by": null,
        "comments": view.data.comment_count(n),
        "review_comments": review_comments,
        "maintainer_can_modify": pull.from_fork,
        "commits": diff.commits,
        "additions": additions,
        "deletions": deletions,
        "changed_files": diff.files.len(),
    });
    if let Value::Object(m) = &mut out {
        for part in [more, counts] {
            if let Value::Object(p) = part {
                m.extend(p);
            }
        }
    }
    out
}

/// A changed-file object of `GET /pulls/{n}/files` and compare's `files`; URLs name the file at
/// commit `at`.
pub(crate) fn file(view: &View<'_>, at: &str, f: &FileChange) -> Value {
    let path = encode_path(&f.filename, true);
    let mut out = json!({
        "sha": f.sha,
        "filename": f.filename,
        "status": f.status,
        "additions": f.additions,
        "deletions": f.deletions,
        "changes": f.additions.saturating_add(f.deletions),
        "blob_url": format!("{}/blob/{at}/{path}", view.html()),
        "raw_url": format!("{}/raw/{at}/{path}", view.html()),
        "contents_url": format!("{}/contents/{path}?ref={at}", view.api()),
    });
    if let Some(patch) = &f.patch {
        out["patch"] = json!(patch);
    }
    if let Some(previous) = &f.previous_filename {
        out["previous_filename"] = json!(previous);
    }
    out
}

/// A pull request review object.
pub(crate) fn review(view: &View<'_>, rec: &ReviewRec) -> Value {
    let html = format!(
        "{}/pull/{}#pullrequestreview-{}",
        view.html(),
        rec.number,
        rec.id
    );
    let pull_url = format!("{}/pulls/{}", view.api(), rec.number);
    let mut out = json!({
        "id": rec.id,
        "node_id": node_id("PullRequestReview", rec.id),
        "user": view.user(&rec.author),
        "body": rec.body,
        "state": rec.state,
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": view.association(&rec.author),
        "_links": {
            "html": {"href": html},
            "pull_request": {"href": pull_url},
        },
        "commit_id": rec.commit_id,
    });
    if let Some(at) = rec.submitted_at {
        out["submitted_at"] = json!(timestamp(at));
    }
    out
}

/// A review comment object.
pub(crate) fn review_comment(view: &View<'_>, rec: &ReviewCommentRec) -> Value {
    let url = format!("{}/pulls/comments/{}", view.api(), rec.id);
    let html = format!("{}/pull/{}#discussion_r{}", view.html(), rec.number, rec.id);
    let pull_url = format!("{}/pulls/{}", view.api(), rec.number);
    let contents: Vec<&str> = view
        .data
        .reactions
        .iter()
        .filter(|r| r.comment_id == rec.id)
        .map(|r| r.content.as_str())
        .collect();
    let mut out = json!({
        "url": url,
        "pull_request_review_id": rec.review_id,
        "id": rec.id,
        "node_id": node_id("PullRequestReviewComment", rec.id),
        "diff_hunk": rec.diff_hunk,
        "path": rec.path,
        "position": rec.position,
        "original_position": rec.position,
        "commit_id": rec.commit_id,
        "original_commit_id": rec.commit_id,
        "user": view.user(&rec.author),
        "body": rec.body,
        "created_at": timestamp(rec.created_at),
        "updated_at": timestamp(rec.updated_at),
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": view.association(&rec.author),
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "pull_request": {"href": pull_url},
        },
        "reactions": reaction_rollup(format!("{url}/reactions"), &contents),
        "start_line": rec.start_line,
        "original_start_line": rec.start_line,
        "start_side": rec.start_side,
        "line": rec.line,
        "original_line": rec.line,
        "side": rec.side,
        "subject_type": "line",
    });
    if let Some(parent) = rec.in_reply_to_id {
        out["in_reply_to_id"] = json!(parent);
    }
    out
}

/// GitHub's legacy permission for a role: `maintain` → `write`, `triage` → `read`.
pub(crate) fn legacy_permission(role: &str) -> &'static str {
    match role {
        "admin" => "admin",
        "maintain" | "write" => "write",
        "triage" | "read" => "read",
        _ => "none",
    }
}

/// The body of `GET /collaborators/{user}/permission`.
pub(crate) fn permission(view: &View<'_>, login: &str) -> Value {
    let role = view.data.permission(login).to_string();
    let rank = |r: &str| match r {
        "admin" => 5,
        "maintain" => 4,
        "write" => 3,
        "triage" => 2,
        "read" => 1,
        _ => 0,
    };
    let have = rank(&role);
    let mut user = view.user(login);
    if let Value::Object(m) = &mut user {
        m.insert(
            "permissions".into(),
            json!({
                "admin": have >= 5,
                "maintain": have >= 4,
                "push": have >= 3,
                "triage": have >= 2,
                "pull": have >= 1,
            }),
        );
        m.insert("role_name".into(), json!(role));
    }
    json!({
        "permission": legacy_permission(&role),
        "role_name": role,
        "user": user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_path("a b/c#d", true), "a%20b/c%23d");
        assert_eq!(encode_path("needs review/x", false), "needs%20review%2Fx");
    }

    #[test]
    fn legacy_permissions_map_roles() {
        assert_eq!(legacy_permission("maintain"), "write");
        assert_eq!(legacy_permission("triage"), "read");
        assert_eq!(legacy_permission("bogus"), "none");
        assert_eq!(legacy_permission("admin"), "admin");
    }

    #[test]
    fn user_ids_are_stable() {
        assert_eq!(user_id("Alice"), user_id("alice"));
        assert!(user_id("alice") >= 10_000_000);
    }
}
