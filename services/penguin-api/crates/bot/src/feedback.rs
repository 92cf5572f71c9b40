//! What the person sees on GitHub while a command runs: the 👀 reaction, a
//! check run on pull requests, one progress comment edited in place, labels
//! per outcome and a summary block in the pull request's body. Each thing a
//! delivery creates is recorded with it ([`DeliveryProgress`]), so a delivery
//! tried again (after a crash or a transient failure) edits what it already
//! made instead of posting twice.

use crate::github_api::thread::scrub;
use crate::{
    command::Command,
    config::ServerConfig,
    event::{Mention, ReactTo},
    github_api::RepoClient,
    BotContext, BotError, BotResult,
};
use octocrab::{
    models::{reactions::ReactionContent, CheckRunId, CommentId},
    params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus},
};
use penguin_api_store::{NewTask, TaskState};
use serde_json::json;
use std::time::Instant;

/// What a delivery already did on GitHub, stored with the delivery as each
/// step happens.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DeliveryProgress {
    /// The task it created.
    pub task_id: Option<String>,
    /// The check run it created.
    pub check_run: Option<u64>,
    /// The progress comment it posted.
    pub comment: Option<u64>,
    /// The request an `approve` consumed (a retry runs it without it).
    #[serde(default)]
    pub approved: Option<crate::approval::Approved>,
}

impl DeliveryProgress {
    /// What `delivery_id` recorded (nothing for a first attempt).
    pub async fn load(ctx: &BotContext, delivery_id: &str) -> DeliveryProgress {
        match ctx.store.delivery_progress(delivery_id).await {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_default(),
            _ => DeliveryProgress::default(),
        }
    }

    /// Records it with the delivery.
    pub async fn save(&self, ctx: &BotContext, delivery_id: &str) -> BotResult<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| BotError::Failed(format!("cannot record progress: {e}")))?;
        Ok(ctx.store.set_delivery_progress(delivery_id, &text).await?)
    }
}

/// Tells the commenter why nothing will happen.
pub async fn refuse(client: &RepoClient, m: &Mention, reason: &str) -> BotResult<()> {
    client
        .comment(
            m.number,
            format!("@{} I can't do that here: {reason}", m.login),
        )
        .await
}

/// One command on one thread: what every feedback step needs.
pub struct Run<'a> {
    /// The bot.
    pub ctx: &'a BotContext,
    /// The configuration in force (the repository's narrowing applied).
    pub config: &'a ServerConfig,
    /// The mention being answered.
    pub m: &'a Mention,
    /// Its command.
    pub command: &'a Command,
    /// The repository's client.
    pub client: &'a RepoClient,
}

/// A command under way: its task, check run and progress comment.
pub struct Started {
    /// The task id.
    pub task_id: String,
    /// The task's page in the api.
    pub details_url: String,
    check_run: Option<CheckRunId>,
    comment: CommentId,
    at: Instant,
}

impl Started {
    /// The progress comment, which the action may update as it works.
    pub fn comment(&self) -> CommentId {
        self.comment
    }
}

/// 👀 (first attempt only), the task, the check run, the progress comment and
/// the in-progress label; each recorded in `progress` as it is made.
pub async fn start(
    run: &Run<'_>,
    delivery_id: &str,
    head_sha: Option<&str>,
    progress: &mut DeliveryProgress,
) -> BotResult<Started> {
    let Run {
        ctx,
        config,
        m,
        command,
        client,
    } = *run;
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    let resumed = progress.task_id.is_some();
    if !resumed {
        // 👀 first: the person sees at once that the bot is on it.
        react(client, m.react_to).await?;
    }
    let task_id = match progress.task_id.clone() {
        Some(id) if ctx.store.get_task(&id).await.is_ok() => {
            tracing::info!(delivery_id, task_id = %id, "resuming a delivery tried before");
            id
        }
        _ => {
            let task = ctx
                .store
                .create_task(NewTask {
                    name: format!("github:{}", command.name()),
                    description: format!("{} #{}: {}", m.repository, m.number, m.title),
                    metadata: json!({ "repository": m.repository, "number": m.number, "delivery_id": delivery_id, "actor": m.login }),
                })
                .await?;
            progress.task_id = Some(task.id.clone());
            progress.save(ctx, delivery_id).await?;
            task.id
        }
    };
    let _ = ctx.store.set_task_state(&task_id, TaskState::Running).await;
    let at = Instant::now();
    let details_url = ctx.task_url(&task_id);
    let check_run = match progress.check_run {
        Some(id) => Some(CheckRunId(id)),
        None => {
            let id = create_check_run(run, head_sha, &task_id, &details_url).await;
            if id.is_some() {
                progress.check_run = id.map(|id| id.0);
                progress.save(ctx, delivery_id).await?;
            }
            id
        }
    };
    let body = format!(
        "🐧 Working on `{}` … (task [`{}`]({details_url}))",
        command.name(),
        task_id
    );
    let comment = match progress.comment {
        Some(id) => {
            let body = format!("{body} — resumed after a restart");
            client.edit_comment(CommentId(id), body).await?;
            CommentId(id)
        }
        None => {
            let number = m.number;
            let created = client
                .create("progress comment", |crab| {
                    let body = body.clone();
                    async move { crab.issues(owner, repo).create_comment(number, body).await }
                })
                .await?;
            progress.comment = Some(created.id.0);
            progress.save(ctx, delivery_id).await?;
            created.id
        }
    };
    if config.github.labels.enabled {
        client
            .add_label(m.number, &config.github.labels.label_map.in_progress)
            .await;
    }
    Ok(Started {
        task_id,
        details_url,
        check_run,
        comment,
        at,
    })
}

/// The command's check run on the pull request's head, when checks are on
/// and the command has one; a failure is logged, not fatal.
async fn create_check_run(
    run: &Run<'_>,
    head_sha: Option<&str>,
    task_id: &str,
    details_url: &str,
) -> Option<CheckRunId> {
    let (client, checks) = (run.client, &run.config.github.checks);
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    let name = match run.command {
        Command::Review { .. } => &checks.check_names.review,
        Command::Plan => &checks.check_names.plan,
        Command::FixTests | Command::Fix(_) => &checks.check_names.tests,
        _ => return None,
    };
    let sha = head_sha.filter(|_| checks.enabled)?;
    client
        .create("check run", |crab| async move {
            crab.checks(owner, repo)
                .create_check_run(name, sha)
                .status(CheckRunStatus::InProgress)
                .details_url(details_url)
                .external_id(task_id)
                .send()
                .await
        })
        .await
        .map(|c| c.id)
        .map_err(|e| tracing::warn!(error = %e.redacted(), "cannot create the check run"))
        .ok()
}

/// 👀 on the comment that asked (reviews have no reactions).
async fn react(client: &RepoClient, react_to: ReactTo) -> BotResult<()> {
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    match react_to {
        ReactTo::IssueComment(id) => client
            .create("reaction", |crab| async move {
                crab.issues(owner, repo)
                    .create_comment_reaction(CommentId(id), ReactionContent::Eyes)
                    .await
            })
            .await
            .map(|_| ()),
        ReactTo::ReviewComment(id) => client
            .create("reaction", |crab| async move {
                crab.pulls(owner, repo)
                    .create_comment_reaction(CommentId(id), ReactionContent::Eyes)
                    .await
            })
            .await
            .map(|_| ()),
        ReactTo::Nothing => Ok(()),
    }
}

/// The report: the progress comment becomes the result, the check run is
/// completed, the pull request's summary block is set, labels follow the
/// outcome, the task is finished. Returns the one-line summary.
pub async fn finish(
    run: &Run<'_>,
    started: &Started,
    outcome: &BotResult<String>,
) -> BotResult<String> {
    let Run {
        ctx,
        config,
        m,
        command,
        client,
    } = *run;
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    let (ok, summary, body) = match outcome {
        Ok(text) => (true, format!("`{}` finished", command.name()), text.clone()),
        Err(reason) => (
            false,
            format!("`{}` failed", command.name()),
            format!("❌ {}", reason.redacted()),
        ),
    };
    let task_id = &started.task_id;
    let details_url = &started.details_url;
    let footer = format!(
        "\n\n<sub>task [`{}`]({details_url}) · {:.1} s</sub>",
        task_id,
        started.at.elapsed().as_secs_f64()
    );
    client
        .edit_comment(started.comment, format!("{body}{footer}"))
        .await?;
    if let Some(id) = started.check_run {
        let conclusion = if ok {
            CheckRunConclusion::Success
        } else {
            CheckRunConclusion::Failure
        };
        let report = scrub(&truncate(&body, 60_000));
        let _ = client
            .call("complete check run", |crab| {
                let output = CheckRunOutput {
                    title: summary.clone(),
                    summary: report.clone(),
                    text: None,
                    annotations: Vec::new(),
                    images: Vec::new(),
                };
                async move {
                    crab.checks(owner, repo)
                        .update_check_run(id)
                        .status(CheckRunStatus::Completed)
                        .conclusion(conclusion)
                        .output(output)
                        .send()
                        .await
                }
            })
            .await
            .map_err(|e| tracing::warn!(error = %e.redacted(), "cannot complete the check run"));
    }
    if m.is_pull_request {
        let block = format!(
            "**Penguin** `{}`: {} — task [`{}`]({details_url})",
            command.name(),
            if ok { "✅ done" } else { "❌ failed" },
            task_id
        );
        if let Err(e) = set_summary(client, m.number, &block).await {
            tracing::warn!(error = %e.redacted(), "cannot update the pull request body");
        }
    }
    if config.github.labels.enabled {
        let map = &config.github.labels.label_map;
        client.remove_label(m.number, &map.in_progress).await;
        client
            .add_label(m.number, if ok { &map.done } else { &map.failed })
            .await;
    }
    let state = if ok {
        TaskState::Completed
    } else {
        TaskState::Failed
    };
    let _ = ctx
        .store
        .finish_task(
            task_id,
            state,
            json!({ "command": command.name(), "ok": ok, "summary": summary }),
        )
        .await;
    ctx.metrics
        .command(command.name(), ok, started.at.elapsed());
    Ok(summary)
}

/// Sets the bot's block in pull request `number`'s body. The body is read
/// right before it is written, and only the block changes: the author may
/// have edited the rest while the command ran.
async fn set_summary(client: &RepoClient, number: u64, block: &str) -> BotResult<()> {
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    let pull = client
        .call("pull request", |crab| async move {
            crab.pulls(owner, repo).get(number).await
        })
        .await?;
    let current = pull.body.unwrap_or_default();
    let body = with_summary(&current, block);
    if body == current {
        return Ok(());
    }
    client.set_pull_body(number, &body).await
}

/// Marks the bot's block in a pull request's body.
const SUMMARY_START: &str = "<!-- penguin:summary:start -->";
/// Ends the bot's block.
const SUMMARY_END: &str = "<!-- penguin:summary:end -->";

/// `body` with the bot's block set to `summary`: replaced in place when the
/// markers exist, appended otherwise, so repeated runs keep one block.
fn with_summary(body: &str, summary: &str) -> String {
    let block = format!("{SUMMARY_START}\n{summary}\n{SUMMARY_END}");
    match (body.find(SUMMARY_START), body.find(SUMMARY_END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{block}{}",
                &body[..start],
                &body[end + SUMMARY_END.len()..]
            )
        }
        _ if body.trim().is_empty() => block,
        _ => format!("{}\n\n{block}", body.trim_end()),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n\n[truncated]", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_block_is_added_once_and_replaced_in_place() {
        let first = with_summary("Fixes #1", "review: done");
        assert_eq!(
            first,
            format!("Fixes #1\n\n{SUMMARY_START}\nreview: done\n{SUMMARY_END}")
        );
        let second = with_summary(&format!("{first}\n\nmore text"), "review: failed");
        assert_eq!(second.matches(SUMMARY_START).count(), 1);
        assert!(second.contains("review: failed") && !second.contains("review: done"));
        assert!(second.starts_with("Fixes #1") && second.ends_with("more text"));
        assert_eq!(
            with_summary("", "x"),
            format!("{SUMMARY_START}\nx\n{SUMMARY_END}")
        );
        assert_eq!(with_summary(&second, "review: failed"), second);
    }
}
