//! Pull request reviews and their line comments: creating a review whose inline comments are
//! checked against the pull request's diff as GitHub checks them, pending reviews, listing
//! reviews and review comments, and replies.
//!
//! A comment sits on a line of a hunk of the diff at the review's `commit_id` (`line` on `side`,
//! optionally from `start_line` on `start_side`), or at a legacy diff `position`. Like GitHub,
//! one comment off the diff refuses the whole review: 422 `Unprocessable Entity` with a single
//! `errors` entry joining every problem into a sentence ("Line could not be resolved, Path could
//! not be resolved, and Line could not be resolved"). A review without `event` stays `PENDING`,
//! seen only by its author; a user has at most one pending review per pull request.
//!
//! The routes are served by [`crate::rest`] (recorded calls, faults, token visibility and
//! permissions); the caller is the App's bot or, with a personal access token, a person.

use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::{json_response, ApiError};
use crate::changes::{pull_diff, FileChange};
use crate::patch::{Anchor, Patch, Side};
use crate::plumbing::Bare;
use crate::rest::{
    check_body_length, created, invalid, not_one_of, object, opt_str, paginate, req_str, Ctx,
};
use crate::shapes;
use crate::store::{PullRec, RepoData, ReviewCommentRec, ReviewRec};

/// Documentation of the create-review route, named by its 422s.
const CREATE_DOCS: &str =
    "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request";
/// Documentation of the delete-review route.
const DELETE_DOCS: &str =
    "https://docs.github.com/rest/pulls/reviews#delete-a-pending-review-for-a-pull-request";
/// Documentation of the reply route.
const REPLY_DOCS: &str =
    "https://docs.github.com/rest/pulls/comments#create-a-reply-for-a-review-comment";
/// A `commit_id` the repository does not have.
const NOT_IN_PULL: &str = "The commitOID is not part of the pull request";
/// A second pending review (or a new review while one is pending).
const ONE_PENDING: &str = "User can only have one pending review per pull request";
/// Deleting a submitted review.
const NOT_PENDING: &str = "Can not delete a non-pending pull request review";
/// The comment's file is not in the diff.
const NO_PATH: &str = "Path could not be resolved";
/// `line` is in no hunk on its side.
const NO_LINE: &str = "Line could not be resolved";
/// `start_line` is in no hunk on its side.
const NO_START_LINE: &str = "Start line could not be resolved";
/// `start_line` is at or after `line`.
const START_AFTER_END: &str = "Start line must precede the end line.";
/// `position` is no line of the file's patch.
const NO_POSITION: &str = "Position could not be resolved";

/// Rails' `to_sentence`, which GitHub joins review errors with: `a`, `a and b`, `a, b, and c`.
fn to_sentence(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// A 422 `Unprocessable Entity` with `message` as its one `errors` entry.
fn refused(message: &str, docs: &str) -> ApiError {
    ApiError::unprocessable_with("Unprocessable Entity", json!([message])).docs(docs)
}

/// An optional non-negative integer property (`null` counts as absent).
fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            invalid(format_args!(
                "For 'properties/{key}', {v} is not an integer."
            ))
        }),
    }
}

/// An optional `LEFT`/`RIGHT` property.
fn opt_side(m: &Map<String, Value>, key: &str) -> Result<Option<Side>, ApiError> {
    match opt_str(m, key)? {
        None => Ok(None),
        Some(s) => Side::parse(&s)
            .map(Some)
            .ok_or_else(|| not_one_of(key, &s, &["LEFT", "RIGHT"])),
    }
}

/// Where a requested comment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spot {
    /// `line` on `side`, from `start` (line and side) for a range.
    Line {
        line: u64,
        side: Side,
        start: Option<(u64, Side)>,
    },
    /// A legacy diff position.
    Position(u64),
}

/// One inline comment of a create-review request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Draft {
    path: String,
    body: String,
    spot: Spot,
}

impl Draft {
    /// Reads one item of `comments`.
    fn parse(item: &Value) -> Result<Draft, ApiError> {
        let Value::Object(o) = item else {
            return Err(invalid(format_args!(
                "For 'items', {item} is not an object."
            )));
        };
        let path = req_str(o, "path")?;
        let body = req_str(o, "body")?;
        let side = opt_side(o, "side")?.unwrap_or(Side::Right);
        let start_side = opt_side(o, "start_side")?;
        let start_line = opt_u64(o, "start_line")?;
        let spot = match (opt_u64(o, "line")?, opt_u64(o, "position")?) {
            (Some(line), _) => Spot::Line {
                line,
                side,
                start: start_line.map(|l| (l, start_side.unwrap_or(side))),
            },
            (None, Some(position)) => Spot::Position(position),
            (None, None) => {
                return Err(invalid(
                    "No subschema in \"oneOf\" matched.\n\"line\" wasn't supplied.",
                ))
            }
        };
        Ok(Draft { path, body, spot })
    }

    /// Places the comment on the diff, or says why it cannot be placed.
    fn place(&self, files: &[FileChange]) -> Result<Placed, Vec<String>> {
        let file = files
            .iter()
            .find(|f| f.filename == self.path)
            .ok_or_else(|| vec![NO_PATH.to_string()])?;
        // Binary files have no patch, so no line to comment on.
        let patch = Patch::parse(file.patch.as_deref().unwrap_or_default());
        let (anchor, start) = match &self.spot {
            Spot::Position(p) => (
                patch
                    .at_position(*p)
                    .ok_or_else(|| vec![NO_POSITION.to_string()])?,
                None,
            ),
            Spot::Line { line, side, start } => {
                let anchor = patch.anchor(*line, *side);
                let start_anchor = start.map(|(l, s)| patch.anchor(l, s));
                let mut errors = Vec::new();
                if anchor.is_none() {
                    errors.push(NO_LINE.to_string());
                }
                if matches!(start_anchor, Some(None)) {
                    errors.push(NO_START_LINE.to_string());
                }
                if let (Some(a), Some(Some(s))) = (anchor, start_anchor) {
                    if s.position >= a.position {
                        errors.push(START_AFTER_END.to_string());
                    }
                }
                match anchor {
                    Some(a) if errors.is_empty() => (a, start_anchor.flatten()),
                    _ => return Err(errors),
                }
            }
        };
        Ok(Placed {
            diff_hunk: patch.diff_hunk(&anchor),
            anchor,
            start,
        })
    }
}

/// A comment placed on the diff.
struct Placed {
    anchor: Anchor,
    start: Option<Anchor>,
    diff_hunk: String,
}

/// Whether `viewer` may see a review: submitted ones are public, pending ones its author's.
fn visible(review: &ReviewRec, viewer: &str) -> bool {
    review.state != "PENDING" || review.author.eq_ignore_ascii_case(viewer)
}

/// Whether `viewer` may see a review comment (the review it belongs to is visible).
fn comment_visible(data: &RepoData, c: &ReviewCommentRec, viewer: &str) -> bool {
    data.reviews
        .iter()
        .find(|r| r.id == c.review_id)
        .is_none_or(|r| visible(r, viewer))
}

/// The pending review of `user` on pull request `n`, if any.
fn pending_of<'d>(data: &'d RepoData, n: u64, user: &str) -> Option<&'d ReviewRec> {
    data.reviews
        .iter()
        .find(|r| r.number == n && r.state == "PENDING" && r.author.eq_ignore_ascii_case(user))
}

impl Ctx<'_> {
    /// The commit a review names: the head when unnamed; a head the pull request had; or any
    /// commit of the repository (GitHub refuses only shas it does not have).
    async fn review_commit(&self, pull: &PullRec, asked: Option<&str>) -> Result<String, ApiError> {
        let Some(asked) = asked else {
            return Ok(pull.head_sha.clone());
        };
        let known = std::iter::once(&pull.head_sha)
            .chain(&pull.past_heads)
            .find(|h| h.eq_ignore_ascii_case(asked));
        if let Some(head) = known {
            return Ok(head.clone());
        }
        Bare::of(self.shared, self.repo)
            .commit(asked)
            .await?
            .ok_or_else(|| refused(NOT_IN_PULL, CREATE_DOCS))
    }

    /// `POST /pulls/{n}/reviews`.
    pub(crate) async fn create_review(&self, n: u64) -> Result<Response, ApiError> {
        const EVENTS: [&str; 3] = ["APPROVE", "REQUEST_CHANGES", "COMMENT"];
        let m = object(self.body)?;
        let event = opt_str(&m, "event")?;
        if let Some(e) = &event {
            if !EVENTS.contains(&e.as_str()) {
                return Err(not_one_of("event", e, &EVENTS));
            }
        }
        let body = opt_str(&m, "body")?.unwrap_or_default();
        check_body_length("PullRequestReview", &body)?;
        let asked_commit = opt_str(&m, "commit_id")?;
        let drafts = match m.get("comments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(Draft::parse).collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/comments', {other} is not an array."
                )))
            }
        };
        let data = self.snapshot();
        let pull = data.pulls.get(&n).ok_or_else(ApiError::not_found)?;
        let issue = data.issues.get(&n).ok_or_else(ApiError::not_found)?;
        let commit = self.review_commit(pull, asked_commit.as_deref()).await?;
        let caller = self.caller();
        let own = issue.author.eq_ignore_ascii_case(&caller);
        let state = match event.as_deref() {
            Some("APPROVE") if own => {
                return Err(refused(
                    "Review Can not approve your own pull request",
                    CREATE_DOCS,
                ))
            }
            Some("REQUEST_CHANGES") if own => {
                return Err(refused(
                    "Review Can not request changes on your own pull request",
                    CREATE_DOCS,
                ))
            }
            Some("APPROVE") => "APPROVED",
            Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
            Some(_) => "COMMENTED",
            None => "PENDING",
        };
        if pending_of(&data, n, &caller).is_some() {
            return Err(refused(ONE_PENDING, CREATE_DOCS));
        }
        if matches!(state, "COMMENTED" | "CHANGES_REQUESTED")
            && body.trim().is_empty()
            && drafts.is_empty()
        {
            let what = if state == "COMMENTED" {
                "comment"
            } else {
                "request changes"
            };
            return Err(refused(
                &format!("Review Body is required when using the {what} event"),
                CREATE_DOCS,
            ));
        }
        let diff = pull_diff(self.shared, self.repo, pull, Some(&commit)).await?;
        let mut placed = Vec::with_capacity(drafts.len());
        let mut errors = Vec::new();
        for d in &drafts {
            match d.place(&diff.files) {
                Ok(p) => placed.push(p),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(refused(&to_sentence(&errors), CREATE_DOCS));
        }
        let now = self.now();
        let (rec, data) = self.mutate(|store, data| {
            // Checked again under the lock: two requests may race.
            if pending_of(data, n, &caller).is_some() {
                return Err(refused(ONE_PENDING, CREATE_DOCS));
            }
            let rec = ReviewRec {
                id: store.next_id(),
                number: n,
                body,
                state: state.to_string(),
                commit_id: commit.clone(),
                submitted_at: (state != "PENDING").then_some(now),
                author: caller.clone(),
            };
            for (d, p) in drafts.into_iter().zip(placed) {
                data.review_comments.push(ReviewCommentRec {
                    id: store.next_id(),
                    review_id: rec.id,
                    number: n,
                    path: d.path,
                    line: p.anchor.line,
                    side: p.anchor.side.as_str().to_string(),
                    start_line: p.start.map(|s| s.line),
                    start_side: p.start.map(|s| s.side.as_str().to_string()),
                    position: p.anchor.position,
                    commit_id: commit.clone(),
                    diff_hunk: p.diff_hunk,
                    in_reply_to_id: None,
                    author: caller.clone(),
                    body: d.body,
                    created_at: now,
                    updated_at: now,
                });
            }
            data.reviews.push(rec.clone());
            Ok(rec)
        })?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::review(&self.view(&data), &rec),
        ))
    }

    /// The visible review `id` of pull request `n`.
    fn find_review<'d>(
        &self,
        data: &'d RepoData,
        n: u64,
        id: u64,
    ) -> Result<&'d ReviewRec, ApiError> {
        if !data.pulls.contains_key(&n) {
            return Err(ApiError::not_found());
        }
        data.reviews
            .iter()
            .find(|r| r.id == id && r.number == n && visible(r, &self.caller()))
            .ok_or_else(ApiError::not_found)
    }

    /// `GET /pulls/{n}/reviews`: oldest first.
    pub(crate) fn list_reviews(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        if !data.pulls.contains_key(&n) {
            return Err(ApiError::not_found());
        }
        let caller = self.caller();
        let view = self.view(&data);
        let items: Vec<Value> = data
            .reviews
            .iter()
            .filter(|r| r.number == n && visible(r, &caller))
            .map(|r| shapes::review(&view, r))
            .collect();
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    /// `GET /pulls/{n}/reviews/{id}`.
    pub(crate) fn get_review(&self, n: u64, id: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let rec = self.find_review(&data, n, id)?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::review(&self.view(&data), rec),
        ))
    }

    /// `DELETE /pulls/{n}/reviews/{id}`: only a pending review goes, with its comments.
    pub(crate) fn delete_review(&self, n: u64, id: u64) -> Result<Response, ApiError> {
        let (rec, data) = self.mutate(|_, data| {
            let rec = self.find_review(data, n, id)?.clone();
            if rec.state != "PENDING" {
                return Err(refused(NOT_PENDING, DELETE_DOCS));
            }
            data.reviews.retain(|r| r.id != id);
            data.review_comments.retain(|c| c.review_id != id);
            Ok(rec)
        })?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::review(&self.view(&data), &rec),
        ))
    }

    /// `GET /pulls/{n}/reviews/{id}/comments`.
    pub(crate) fn list_review_comments(&self, n: u64, id: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        self.find_review(&data, n, id)?;
        let view = self.view(&data);
        let items: Vec<Value> = data
            .review_comments
            .iter()
            .filter(|c| c.review_id == id)
            .map(|c| shapes::review_comment(&view, c))
            .collect();
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    /// `GET /pulls/{n}/comments`: every review comment of the pull request, oldest first.
    pub(crate) fn list_pull_comments(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        if !data.pulls.contains_key(&n) {
            return Err(ApiError::not_found());
        }
        let caller = self.caller();
        let view = self.view(&data);
        let items: Vec<Value> = data
            .review_comments
            .iter()
            .filter(|c| c.number == n && comment_visible(&data, c, &caller))
            .map(|c| shapes::review_comment(&view, c))
            .collect();
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    /// `GET /pulls/comments/{id}`.
    pub(crate) fn get_pull_comment(&self, id: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let rec = data
            .review_comments
            .iter()
            .find(|c| c.id == id && comment_visible(&data, c, &self.caller()))
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::review_comment(&self.view(&data), rec),
        ))
    }

    /// `POST /pulls/{n}/comments/{id}/replies`: a comment in the same thread, in a review of
    /// its own (state `COMMENTED`, empty body), as GitHub records replies.
    pub(crate) fn create_reply(&self, n: u64, comment_id: u64) -> Result<Response, ApiError> {
        let body = req_str(&object(self.body)?, "body")?;
        if body.trim().is_empty() {
            return Err(ApiError::validation(json!([{
                "resource": "PullRequestReviewComment",
                "code": "missing_field",
                "field": "body",
            }])));
        }
        check_body_length("PullRequestReviewComment", &body)?;
        let now = self.now();
        let caller = self.caller();
        let (rec, data) = self.mutate(|store, data| {
            if !data.pulls.contains_key(&n) {
                return Err(ApiError::not_found());
            }
            let parent = data
                .review_comments
                .iter()
                .find(|c| c.id == comment_id && c.number == n && comment_visible(data, c, &caller))
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            if pending_of(data, n, &caller).is_some() {
                return Err(refused(ONE_PENDING, REPLY_DOCS));
            }
            let review = ReviewRec {
                id: store.next_id(),
                number: n,
                body: String::new(),
                state: "COMMENTED".to_string(),
                commit_id: parent.commit_id.clone(),
                submitted_at: Some(now),
                author: caller.clone(),
            };
            let rec = ReviewCommentRec {
                id: store.next_id(),
                review_id: review.id,
                // Replies to replies join the thread of its first comment.
                in_reply_to_id: Some(parent.in_reply_to_id.unwrap_or(parent.id)),
                author: caller.clone(),
                body,
                created_at: now,
                updated_at: now,
                ..parent
            };
            data.reviews.push(review);
            data.review_comments.push(rec.clone());
            Ok(rec)
        })?;
        let out = shapes::review_comment(&self.view(&data), &rec);
        let location = format!("{}/pulls/comments/{}", self.api(), rec.id);
        Ok(created(&out, &location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, patch: Option<&str>) -> FileChange {
        FileChange {
            filename: path.to_string(),
            previous_filename: None,
            status: "modified".to_string(),
            sha: None,
            additions: 0,
            deletions: 0,
            patch: patch.map(str::to_string),
        }
    }

    fn draft(v: Value) -> Draft {
        Draft::parse(&v).unwrap()
    }

    #[test]
    fn sentences_join_like_rails() {
        let s = |v: &[&str]| to_sentence(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b, and c");
    }

    #[test]
    fn drafts_are_read_with_githubs_defaults() {
        let d = draft(json!({"path": "a", "body": "x", "line": 3, "start_line": 1}));
        assert_eq!(
            d.spot,
            Spot::Line {
                line: 3,
                side: Side::Right,
                start: Some((1, Side::Right))
            }
        );
        let d = draft(json!({"path": "a", "body": "x", "position": 2}));
        assert_eq!(d.spot, Spot::Position(2));
        for bad in [
            json!({"path": "a", "body": "x"}),
            json!({"path": "a", "line": 1}),
            json!({"path": "a", "body": "x", "line": "1"}),
            json!({"path": "a", "body": "x", "line": 1, "side": "left"}),
            json!("a"),
        ] {
            let err = Draft::parse(&bad).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert!(err.message.starts_with("Invalid request."), "{bad}");
        }
    }

    #[test]
    fn comments_are_placed_on_hunk_lines_only() {
        let files = [
            file("a.rs", Some("@@ -1,3 +1,3 @@\n a\n-b\n+B\n c")),
            file("bin", None),
        ];
        let place = |v: Value| draft(v).place(&files);
        let p = place(json!({"path": "a.rs", "body": "x", "line": 2})).unwrap();
        assert_eq!((p.anchor.position, p.anchor.side), (3, Side::Right));
        assert_eq!(p.diff_hunk, "@@ -1,3 +1,3 @@\n a\n-b\n+B");
        let p = place(json!({"path": "a.rs", "body": "x", "line": 2, "side": "LEFT"})).unwrap();
        assert_eq!(p.anchor.position, 2);
        let p = place(json!({"path": "a.rs", "body": "x", "line": 3, "start_line": 1})).unwrap();
        assert_eq!(p.start.map(|s| s.line), Some(1));
        // GitHub takes ranges across hunks (measured); the hunk is that of `line`.
        let two = [file(
            "t",
            Some("@@ -1,2 +1,2 @@\n-a\n+A\n b\n@@ -9,2 +9,2 @@ f\n i\n-j\n+J"),
        )];
        let p = draft(json!({"path": "t", "body": "x", "line": 10, "start_line": 1}))
            .place(&two)
            .unwrap();
        assert_eq!((p.start.unwrap().position, p.anchor.position), (2, 7));
        assert_eq!(p.diff_hunk, "@@ -9,2 +9,2 @@ f\n i\n-j\n+J");
        let err = |v: Value| place(v).err().unwrap();
        assert_eq!(
            err(json!({"path": "b.rs", "body": "x", "line": 1})),
            [NO_PATH]
        );
        assert_eq!(
            err(json!({"path": "a.rs", "body": "x", "line": 4})),
            [NO_LINE]
        );
        assert_eq!(
            err(json!({"path": "bin", "body": "x", "line": 1})),
            [NO_LINE]
        );
        assert_eq!(
            err(json!({"path": "a.rs", "body": "x", "line": 9, "start_line": 8})),
            [NO_LINE, NO_START_LINE]
        );
        assert_eq!(
            err(json!({"path": "a.rs", "body": "x", "line": 2, "start_line": 3})),
            [START_AFTER_END]
        );
        assert_eq!(
            err(json!({"path": "a.rs", "body": "x", "line": 2, "start_line": 2})),
            [START_AFTER_END]
        );
        assert_eq!(
            err(json!({"path": "a.rs", "body": "x", "position": 5})),
            [NO_POSITION]
        );
    }
}
