//! `review`: the pull request's diff (within the configured limits) to the
//! model, its findings posted as one review.

use crate::{config::ServerConfig, event::Mention, github_api::RepoClient, BotContext, BotResult};
use serde_json::{json, Value};

/// Reviews pull request `m`; returns the report for the progress comment.
pub async fn review(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    client: &RepoClient,
    subject: &str,
) -> BotResult<String> {
    let limits = &config.github.review;
    let (owner, repo, number) = (client.owner.as_str(), client.repo.as_str(), m.number);
    let all = client
        .call("pull request files", |crab| async move {
            let first = crab.pulls(owner, repo).list_files(number).await?;
            crab.all_pages(first).await
        })
        .await?;
    let mut diff = String::new();
    let mut lines = 0usize;
    let mut skipped = 0usize;
    for (i, file) in all.iter().enumerate() {
        if i >= limits.max_files {
            skipped = all.len() - i;
            break;
        }
        diff.push_str(&format!(
            "--- {} (+{} -{})\n",
            file.filename, file.additions, file.deletions
        ));
        match &file.patch {
            Some(patch) => {
                let patch = penguin_agent::strip_hidden(patch);
                for line in patch.lines() {
                    if lines >= limits.max_diff_lines {
                        diff.push_str("[patch truncated]\n");
                        break;
                    }
                    diff.push_str(line);
                    diff.push('\n');
                    lines += 1;
                }
            }
            None => diff.push_str("[no patch: binary or too large]\n"),
        }
    }
    if skipped > 0 {
        diff.push_str(&format!("[{skipped} more files not reviewed]\n"));
    }
    let findings = ctx
        .model
        .ask(
            "You review pull requests. List concrete findings (bugs, risks, missing tests) as Markdown bullets with file names; say so if there are none.",
            &format!("{subject}\n\nDiff:\n{diff}"),
        )
        .await?;
    let body = crate::github_api::thread::scrub(&format!("## 🐧 Penguin review\n\n{findings}"));
    client
        .create("review", |crab| {
            let review = json!({ "body": body, "event": "COMMENT" });
            async move {
                crab.post::<_, Value>(
                    format!("/repos/{owner}/{repo}/pulls/{number}/reviews"),
                    Some(&review),
                )
                .await
            }
        })
        .await?;
    Ok(format!(
        "Review posted ({} files, {lines} diff lines).\n\n{findings}",
        all.len().min(limits.max_files)
    ))
}
