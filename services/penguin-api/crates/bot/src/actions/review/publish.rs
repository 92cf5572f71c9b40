//! Posting one review: its inline comments, and when GitHub refuses the
//! review (422: a comment it cannot place, which fails the whole review),
//! each comment is tried alone as a pending review (deleted right after),
//! and those GitHub refuses move into the review's body.

use crate::{feedback::truncate, github_api::RepoClient, BotError, BotResult};
use serde_json::{json, Value};

/// GitHub refuses review bodies over 65,536 characters.
const MAX_BODY: usize = 60_000;

/// An inline comment to post, and how to list it in the body instead.
pub struct Inline {
    /// `path`, `line`, `side`, (`start_line`, `start_side`), `body`.
    pub comment: Value,
    /// The same finding as a line of the review's body.
    pub fallback: String,
}

impl Inline {
    /// A comment on `path` lines `start..=line` of `side`.
    pub fn new(
        path: &str,
        start: u64,
        line: u64,
        side: &str,
        body: String,
        fallback: String,
    ) -> Self {
        let mut comment = json!({ "path": path, "line": line, "side": side, "body": body });
        if start < line {
            comment["start_line"] = json!(start);
            comment["start_side"] = json!(side);
        }
        Inline { comment, fallback }
    }
}

/// What was posted.
pub struct Posted {
    /// GitHub's review id.
    pub review_id: u64,
    /// Indexes (into the comments given) of those posted inline.
    pub inline: Vec<usize>,
    /// The event the review was posted with.
    pub event: &'static str,
}

fn refused(e: &BotError) -> bool {
    matches!(e, BotError::GitHub(g) if g.status() == Some(422))
}

/// Posts a submitted review; `REQUEST_CHANGES` becomes `COMMENT` when GitHub
/// refuses it (the App's own pull request). The event used and the id.
async fn submit(
    client: &RepoClient,
    number: u64,
    commit_id: &str,
    event: &'static str,
    body: &str,
    comments: &[Value],
) -> BotResult<(&'static str, u64)> {
    let body = truncate(body, MAX_BODY);
    match client
        .create_review(number, commit_id, &body, Some(event), comments)
        .await
    {
        Err(e)
            if event == "REQUEST_CHANGES"
                && refused(&e)
                && e.to_string().contains("request changes") =>
        {
            let id = client
                .create_review(number, commit_id, &body, Some("COMMENT"), comments)
                .await?;
            Ok(("COMMENT", id))
        }
        other => other.map(|id| (event, id)),
    }
}

/// Posts the review: `body(moved)` is the body given the fallback lines of
/// comments that could not be placed.
pub async fn post(
    client: &RepoClient,
    number: u64,
    commit_id: &str,
    event: &'static str,
    comments: &[Inline],
    body: impl Fn(&[&str]) -> String,
) -> BotResult<Posted> {
    let values = |keep: &[usize]| -> Vec<Value> {
        keep.iter().map(|i| comments[*i].comment.clone()).collect()
    };
    let moved = |keep: &[usize]| -> Vec<&str> {
        (0..comments.len())
            .filter(|i| !keep.contains(i))
            .map(|i| comments[i].fallback.as_str())
            .collect()
    };
    let all: Vec<usize> = (0..comments.len()).collect();
    match submit(client, number, commit_id, event, &body(&[]), &values(&all)).await {
        Ok((event, review_id)) => {
            return Ok(Posted {
                review_id,
                inline: all,
                event,
            })
        }
        Err(e) if refused(&e) && !comments.is_empty() => {
            tracing::info!(error = %e.redacted(), "GitHub refused the review's comments; checking each");
        }
        Err(e) => return Err(e),
    }
    let mut keep = Vec::new();
    for (i, inline) in comments.iter().enumerate() {
        let probe = client
            .create_review(
                number,
                commit_id,
                "",
                None,
                std::slice::from_ref(&inline.comment),
            )
            .await;
        match probe {
            Ok(pending) => {
                keep.push(i);
                // A pending review left behind would make GitHub refuse the
                // next probe ("one pending review per pull request").
                if let Err(e) = client.delete_pending_review(number, pending).await {
                    tracing::warn!(error = %e.redacted(), "could not delete a pending review");
                }
            }
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let (event, review_id) = submit(
        client,
        number,
        commit_id,
        event,
        &body(&moved(&keep)),
        &values(&keep),
    )
    .await?;
    Ok(Posted {
        review_id,
        inline: keep,
        event,
    })
}
