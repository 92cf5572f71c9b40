//! The action stage: what a command does once it is allowed to run.
//!
//! - [`answer`]: `plan`, `summarize`, questions, `help`.
//! - [`review`]: `review` of a pull request.
//! - [`fix`]: `fix tests` / `fix <text>`, also when a maintainer approves one.

pub mod answer;
pub mod fix;
pub mod fix_loop;
pub mod review;

use crate::{
    approval,
    command::Command,
    config::{HookEvent, ServerConfig},
    event::Mention,
    github_api::RepoClient,
    BotContext, BotError, BotResult,
};
use serde_json::json;

/// Where a command runs on GitHub.
pub struct Target<'a> {
    /// The repository's client.
    pub client: &'a RepoClient,
    /// The task the command belongs to.
    pub task_id: &'a str,
    /// The pull request's head branch (`None` on issues).
    pub head_ref: Option<&'a str>,
    /// The pull request's head commit (`None` on issues).
    pub head_sha: Option<&'a str>,
    /// For `approve`: the request it approved, if one was waiting.
    pub approved: Option<&'a approval::Approved>,
    /// The progress comment, for updates while the action runs.
    pub progress_comment: Option<octocrab::models::CommentId>,
}

/// Runs `command`; returns the markdown to report. `review` runs between
/// its `review.run` hooks: a failing pre-hook stops it, a failing post-hook
/// is reported with the result.
pub async fn perform(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    command: &Command,
    target: &Target<'_>,
) -> BotResult<String> {
    if !matches!(command, Command::Review { .. }) {
        return run(ctx, config, m, command, target).await;
    }
    let context = json!({
        "event": "review.run",
        "repository": m.repository,
        "pull_request": m.number,
        "sha": target.head_sha,
        "task_id": target.task_id,
        "actor": m.login,
    });
    if let Err(failure) =
        crate::hooks::run_hooks(config.hooks.pre(HookEvent::ReviewRun), &context).await
    {
        return Err(BotError::Failed(format!(
            "the review.run pre-hook stopped the review: {failure}"
        )));
    }
    let result = run(ctx, config, m, command, target).await;
    match crate::hooks::run_hooks(config.hooks.post(HookEvent::ReviewRun), &context).await {
        Err(failure) => result.map(|text| format!("{text}\n\n⚠️ review.run post-hook: {failure}")),
        Ok(()) => result,
    }
}

async fn run(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    command: &Command,
    target: &Target<'_>,
) -> BotResult<String> {
    match command {
        Command::Help => Ok(answer::help(config)),
        Command::Plan => answer::plan(ctx, m).await,
        Command::Summarize => answer::summarize(ctx, m).await,
        Command::Question(question) => answer::question(ctx, m, question).await,
        Command::Review { full } => {
            if !m.is_pull_request {
                return Err(BotError::Failed("`review` works on pull requests".into()));
            }
            review::review(ctx, config, m, target, *full).await
        }
        Command::Approve => {
            let Some(approved) = target.approved else {
                return Ok("Nothing here is waiting for approval.".into());
            };
            let command = approved.command(config)?;
            let report = match &command {
                Command::FixTests | Command::Fix(_) => {
                    fix::run(ctx, config, m, &command, target, true).await?
                }
                // Held back by the daily token budget: it runs as if asked
                // now, `review` between its hooks.
                other => Box::pin(perform(ctx, config, m, other, target)).await?,
            };
            Ok(format!(
                "Approved by @{}; ran `{}` requested by @{}.\n\n{report}",
                m.login, approved.name, approved.requested_by
            ))
        }
        Command::FixTests | Command::Fix(_) => {
            fix::run(ctx, config, m, command, target, false).await
        }
    }
}
