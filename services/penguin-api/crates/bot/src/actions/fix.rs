//! `@Penguin fix tests` / `fix <text>`: clone with a token down-scoped to
//! the one repository, branch `penguin/<task>-<slug>`, run the repository's
//! test command through the runner and let the agent fix the failure with
//! its tools ([`super::fix_loop`]), check the change (paths, workflows,
//! size), commit as the App's bot with a `Task-ID:` trailer, push, and open
//! or update the pull request (a draft saying what still fails, when
//! `on_failure: draft`).
//!
//! Every git network operation asks the tokenator for a fresh token, so a
//! rotation between two pushes is invisible; tokens never touch the disk.

use super::fix_loop::{self, Brief, Rounds};
use super::Target;
use crate::config::OnFailure;
use crate::{
    approval,
    command::Command,
    config::{HookEvent, ServerConfig},
    event::Mention,
    git::{self, api_commit::FileChange, commit::Signature},
    github_api::RepoClient,
    BotContext, BotError, BotResult,
};
use serde_json::{json, Value};
use std::{path::Path, time::Duration};

/// What is being fixed.
struct FixRequest<'a> {
    /// `owner/repo`.
    pub repository: &'a str,
    /// Issue or pull request number.
    pub number: u64,
    /// Title of the issue or pull request.
    pub title: &'a str,
    /// The branch to start from (a PR's head, or the default branch).
    pub base_ref: &'a str,
    /// The task id (branch name, commit trailer).
    pub task_id: &'a str,
    /// Extra instructions (`fix <text>`).
    pub instructions: Option<&'a str>,
    /// A maintainer approved it (`@Penguin approve`): "ask" capabilities may proceed.
    pub approved: bool,
    /// Who asked for it (hook context).
    pub actor: &'a str,
    /// On a pull request: its number and head commit, whose code is fixed.
    pub pull: Option<(u64, &'a str)>,
    /// Where the agent's steps are shown as they happen.
    pub progress: Option<(&'a RepoClient, octocrab::models::CommentId)>,
}

/// Runs the pre-hooks of `event`; a failure stops the fix with the hook's stderr.
async fn pre_hooks(config: &ServerConfig, event: HookEvent, context: &Value) -> BotResult<()> {
    let mut context = context.clone();
    context["event"] = json!(event.as_str());
    crate::hooks::run_hooks(config.hooks.pre(event), &context)
        .await
        .map_err(|failure| {
            BotError::Failed(format!(
                "the {} pre-hook stopped the fix: {failure}",
                event.as_str()
            ))
        })
}

/// Runs the post-hooks of `event`; a failure is reported, not fatal.
async fn post_hooks(
    config: &ServerConfig,
    event: HookEvent,
    context: &Value,
    warnings: &mut Vec<String>,
) {
    let mut context = context.clone();
    context["event"] = json!(event.as_str());
    if let Err(failure) = crate::hooks::run_hooks(config.hooks.post(event), &context).await {
        warnings.push(format!("⚠️ {} post-hook: {failure}", event.as_str()));
    }
}

fn slug(text: &str) -> String {
    let slug: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.chars()
        .take(40)
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// `fix tests` / `fix <text>`: a pull request is fixed on top of its head,
/// an issue on the default branch. `approved`: a maintainer approved it.
pub async fn run(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    command: &Command,
    target: &Target<'_>,
    approved: bool,
) -> BotResult<String> {
    let base_ref = match target.head_ref {
        Some(head) => head.to_string(),
        None => {
            let (owner, repo) = (&target.client.owner, &target.client.repo);
            let repository: Value = target
                .client
                .call("repository", |crab| async move {
                    crab.get(format!("/repos/{owner}/{repo}"), None::<&()>)
                        .await
                })
                .await?;
            repository["default_branch"]
                .as_str()
                .unwrap_or("main")
                .to_string()
        }
    };
    let instructions = match command {
        Command::Fix(text) => Some(text.as_str()),
        _ => None,
    };
    fix_tests(
        ctx,
        config,
        FixRequest {
            repository: &m.repository,
            number: m.number,
            title: &m.title,
            base_ref: &base_ref,
            task_id: target.task_id,
            instructions,
            approved,
            actor: &m.login,
            pull: target.head_sha.map(|sha| (m.number, sha)),
            progress: target.progress_comment.map(|id| (target.client, id)),
        },
    )
    .await
}

/// Runs the whole fix in a fresh clone, removed afterwards; returns the
/// markdown report.
async fn fix_tests(
    ctx: &BotContext,
    config: &ServerConfig,
    request: FixRequest<'_>,
) -> BotResult<String> {
    if !approval::policy_allows_write(&ctx.policy).map_err(BotError::Config)? && !request.approved {
        return Err(BotError::Failed(
            "this needs a maintainer's approval first (`@Penguin approve`)".into(),
        ));
    }
    let work = ctx.work_root.join(request.task_id);
    let _ = tokio::fs::remove_dir_all(&work).await;
    let result = fix_in(ctx, config, &request, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}

async fn fix_in(
    ctx: &BotContext,
    config: &ServerConfig,
    request: &FixRequest<'_>,
    work: &Path,
) -> BotResult<String> {
    let fix = &config.github.fix_tests;
    let branch = format!(
        "penguin/{}-{}",
        request
            .task_id
            .trim_start_matches("task_")
            .chars()
            .take(8)
            .collect::<String>(),
        slug(request.instructions.unwrap_or("fix tests"))
    );
    let mut warnings = Vec::new();
    let mut hook_context = json!({
        "repository": request.repository,
        "issue": request.number,
        "branch": branch,
        "base": request.base_ref,
        "sha": Value::Null,
        "task_id": request.task_id,
        "actor": request.actor,
    });
    pre_hooks(config, HookEvent::BranchCreate, &hook_context).await?;
    // Clone, check out the code to fix (a pull request's own head commit,
    // never a branch of the same name in the base repository), and branch.
    let url = ctx.git.clone_url(request.repository);
    match request.pull {
        Some((number, head_sha)) => {
            git::clone::clone(&ctx.git, request.repository, &url, None, work).await?;
            git::clone::checkout_pull(&ctx.git, request.repository, work, number, head_sha).await?;
        }
        None => {
            let base = Some(request.base_ref);
            git::clone::clone(&ctx.git, request.repository, &url, base, work).await?;
        }
    }
    git::clone::start_branch(work, &branch).await?;
    post_hooks(
        config,
        HookEvent::BranchCreate,
        &hook_context,
        &mut warnings,
    )
    .await;

    let Rounds {
        log,
        steps,
        summary,
        passed,
        last_output,
        usage,
        model,
    } = fix_loop::repair(
        ctx,
        &Brief {
            repository: request.repository,
            number: request.number,
            title: request.title,
            instructions: request.instructions,
            task_id: request.task_id,
            progress: request.progress,
        },
        work,
        fix,
    )
    .await?;
    let changed = fix_loop::changed_files(work)?;
    let steps_text = if steps.is_empty() {
        String::new()
    } else {
        format!(
            "\n\n<details><summary>Steps ({})</summary>\n\n{}\n</details>",
            steps.len(),
            steps
                .iter()
                .map(|s| format!("- {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let usage_text = format!(
        "Model `{model}`: {} tokens (prompt {}, completion {}).",
        usage.total_tokens, usage.prompt_tokens, usage.completion_tokens
    );
    let failing = |what: &str| {
        format!(
            "{what} after {} round(s) of `{}`:\n\n```text\n{}\n```",
            log.iter().filter(|l| l.contains("tests fail")).count(),
            fix.test_command,
            fix_loop::tail(&last_output)
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
                .replace("```", "`\u{200b}``")
        )
    };
    if !passed && (fix.on_failure == OnFailure::Fail || changed.is_empty()) {
        return Err(BotError::Failed(format!(
            "{}\n\nNothing was pushed. {usage_text}{steps_text}",
            failing("The tests still fail")
        )));
    }
    if changed.is_empty() {
        return Ok("The tests already pass: nothing to fix.".into());
    }
    fix_loop::check_change(&ctx.policy, work, &changed, fix).map_err(|e| match e {
        BotError::Failed(reason) => {
            BotError::Failed(format!("{reason}. Nothing was pushed.{steps_text}"))
        }
        other => other,
    })?;
    let edited: Vec<String> = changed.iter().map(|c| c.path.clone()).collect();
    let deleted: Vec<String> = changed
        .iter()
        .filter(|c| c.deleted)
        .map(|c| c.path.clone())
        .collect();

    let headline = if passed {
        "Fix failing tests"
    } else {
        "WIP: tests still fail"
    };
    let message = format!(
        "{headline}\n\n{}\n\nEdited by Penguin for #{}: {}\n\nTask-ID: {}\n",
        summary.as_deref().unwrap_or("").trim(),
        request.number,
        edited.join(", "),
        request.task_id
    );
    let mut change = Change {
        work,
        branch: &branch,
        message: &message,
        hook_context: &mut hook_context,
        warnings: &mut warnings,
    };
    let sha = commit_and_publish(ctx, config, request, &edited, &deleted, &mut change).await?;

    pre_hooks(config, HookEvent::PrCreate, &hook_context).await?;
    let outcome_text = if passed {
        format!("The test command `{}` passes.", fix.test_command)
    } else {
        failing("The tests still fail")
    };
    let pr = open_or_update_pr(
        ctx,
        request,
        &PullText {
            branch: &branch,
            sha: &sha,
            log: &log,
            summary: summary.as_deref(),
            outcome: &outcome_text,
            usage: &usage_text,
            draft: !passed,
        },
    )
    .await?;
    post_hooks(config, HookEvent::PrCreate, &hook_context, &mut warnings).await;
    let lead = if passed {
        format!("Tests pass after my changes ({}).", edited.join(", "))
    } else {
        failing("The tests still fail")
            + &format!(
                "\n\nMy unfinished change ({}) is in a draft.",
                edited.join(", ")
            )
    };
    let mut report = format!(
        "{lead} Pushed `{}` to `{branch}` — {pr}.\n\n{}\n\n{usage_text}{steps_text}",
        &sha[..sha.len().min(12)],
        log.iter()
            .map(|l| format!("- {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if let Some(summary) = &summary {
        report.push_str(&format!(
            "\n\n{}",
            fix_loop::fence("The agent's summary", summary)
        ));
    }
    for warning in warnings {
        report.push_str("\n\n");
        report.push_str(&warning);
    }
    Ok(report)
}

/// The commit being made: where, on which branch, with which message, and
/// the hooks' context and warnings.
struct Change<'a> {
    work: &'a Path,
    branch: &'a str,
    message: &'a str,
    hook_context: &'a mut Value,
    warnings: &'a mut Vec<String>,
}

/// How a fix's commit is made and published.
enum Publisher {
    /// A local commit as the App's bot, pushed with a fresh token.
    Git { by: Signature },
    /// GitHub makes and signs the commit through its Git Data API (it shows
    /// as Verified) and the branch is moved to it.
    Api {
        client: Box<RepoClient>,
        parent: String,
        base_tree: String,
        changes: Vec<FileChange>,
    },
}

impl Publisher {
    /// The publisher `commit_via_api` asks for, with what it needs read
    /// before any hook runs.
    async fn prepare(
        ctx: &BotContext,
        request: &FixRequest<'_>,
        work: &Path,
        edited: &[String],
        via_api: bool,
    ) -> BotResult<Publisher> {
        if !via_api {
            let bot = ctx.github.bot_identity().await?;
            return Ok(Publisher::Git {
                by: Signature {
                    name: bot.login,
                    email: bot.email,
                },
            });
        }
        let (parent, base_tree) = git::commit::head(work).await?;
        let mut changes: Vec<FileChange> = Vec::new();
        for path in edited {
            if changes.iter().any(|c| &c.path == path) {
                continue;
            }
            let full = work.join(path);
            let content = tokio::fs::read(&full)
                .await
                .map_err(|e| BotError::Io(format!("{path}: {e}")))?;
            let executable = {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(&full).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
            };
            changes.push(FileChange {
                path: path.clone(),
                content,
                executable,
            });
        }
        let client = ctx
            .github
            .repo(request.repository, &[("contents", "write")])
            .await?;
        Ok(Publisher::Api {
            client: Box::new(client),
            parent,
            base_tree,
            changes,
        })
    }

    /// Makes the commit; its sha.
    async fn commit(&self, change: &Change<'_>) -> BotResult<String> {
        match self {
            Publisher::Git { by } => {
                Ok(
                    git::commit::commit(change.work, git::commit::Stage::All, by, change.message)
                        .await?,
                )
            }
            Publisher::Api {
                client,
                parent,
                base_tree,
                changes,
            } => {
                git::api_commit::create_commit(client, parent, base_tree, changes, change.message)
                    .await
            }
        }
    }

    /// Points the branch at `sha` on GitHub.
    async fn publish(
        &self,
        ctx: &BotContext,
        request: &FixRequest<'_>,
        change: &Change<'_>,
        sha: &str,
    ) -> BotResult<()> {
        match self {
            Publisher::Git { .. } => {
                Ok(
                    git::push::push_head(&ctx.git, request.repository, change.work, change.branch)
                        .await?,
                )
            }
            Publisher::Api { client, .. } => {
                git::api_commit::point_branch(client, change.branch, sha).await
            }
        }
    }

    async fn finish(self) {
        if let Publisher::Api { client, .. } = self {
            (*client).finish().await;
        }
    }
}

/// Commits and publishes the fix, with the `commit.create` and `push` hooks
/// around the two steps; returns the commit's sha.
async fn commit_and_publish(
    ctx: &BotContext,
    config: &ServerConfig,
    request: &FixRequest<'_>,
    edited: &[String],
    deleted: &[String],
    change: &mut Change<'_>,
) -> BotResult<String> {
    let via_api = config.github.fix_tests.commit_via_api;
    if via_api && !deleted.is_empty() {
        // The Git Data API path sends file contents; deletions are not
        // implemented there yet.
        return Err(BotError::Failed(format!(
            "the fix deletes {}, which commit_via_api cannot publish yet; nothing was pushed",
            deleted.join(", ")
        )));
    }
    let publisher = Publisher::prepare(ctx, request, change.work, edited, via_api).await?;
    let result = async {
        pre_hooks(config, HookEvent::CommitCreate, change.hook_context).await?;
        let sha = publisher.commit(change).await?;
        change.hook_context["sha"] = json!(sha);
        post_hooks(
            config,
            HookEvent::CommitCreate,
            change.hook_context,
            change.warnings,
        )
        .await;
        pre_hooks(config, HookEvent::Push, change.hook_context).await?;
        publisher.publish(ctx, request, change, &sha).await?;
        post_hooks(
            config,
            HookEvent::Push,
            change.hook_context,
            change.warnings,
        )
        .await;
        Ok(sha)
    }
    .await;
    publisher.finish().await;
    result
}

/// (passed, combined output).
pub(super) async fn run_tests(
    ctx: &BotContext,
    work: &Path,
    command: &str,
    timeout: Duration,
) -> BotResult<(bool, String)> {
    // A fresh runner per round: the local runner copies the working tree once.
    let output = ctx
        .runners
        .runner(work.to_path_buf())
        .run(command, timeout)
        .await
        .map_err(|e| {
            if e.is_transient() {
                BotError::Runner {
                    message: e.to_string(),
                    unavailable: true,
                }
            } else {
                BotError::Failed(format!("the test command could not run: {e}"))
            }
        })?;
    let combined = format!("{}\n{}", output.stdout, output.stderr);
    Ok((output.exit_code == Some(0) && !output.timed_out, combined))
}

/// What the pull request says.
struct PullText<'a> {
    branch: &'a str,
    sha: &'a str,
    log: &'a [String],
    summary: Option<&'a str>,
    outcome: &'a str,
    usage: &'a str,
    draft: bool,
}

async fn open_or_update_pr(
    ctx: &BotContext,
    request: &FixRequest<'_>,
    text: &PullText<'_>,
) -> BotResult<String> {
    let client = ctx
        .github
        .repo(
            request.repository,
            &[("pull_requests", "write"), ("contents", "read")],
        )
        .await?;
    let (owner, repo) = (client.owner.clone(), client.repo.clone());
    let branch = text.branch;
    let summary = text
        .summary
        .map(|s| format!("\n\n{}", fix_loop::fence("The agent's summary", s)))
        .unwrap_or_default();
    let body = format!(
        "Penguin's fix for #{}.\n\n{}{summary}\n\n{}\n\n{}\n\nTask-ID: {}\nCommit: {}",
        request.number,
        text.outcome,
        text.log
            .iter()
            .map(|l| format!("- {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        text.usage,
        request.task_id,
        text.sha
    );
    let result = async {
        let (owner, repo) = (owner.as_str(), repo.as_str());
        let existing: Vec<Value> = client
            .call("open pull requests", |crab| async move {
                crab.get(
                    format!("/repos/{owner}/{repo}/pulls"),
                    Some(&json!({ "head": format!("{owner}:{branch}"), "state": "open" })),
                )
                .await
            })
            .await?;
        match existing.first().and_then(|p| p["number"].as_u64()) {
            // Idempotent by branch: a rerun adds to the same pull request.
            Some(number) => client
                .set_pull_body(number, &body)
                .await
                .map(|()| format!("updated pull request #{number}")),
            None => client
                .create("pull request", |crab| {
                    let title = if text.draft {
                        format!("[WIP] Fix tests for #{}", request.number)
                    } else {
                        format!("Fix tests for #{}", request.number)
                    };
                    let pull = json!({
                        "title": title,
                        "head": branch,
                        "base": request.base_ref,
                        "body": body,
                        "draft": text.draft,
                    });
                    async move {
                        crab.post::<_, Value>(format!("/repos/{owner}/{repo}/pulls"), Some(&pull))
                            .await
                    }
                })
                .await
                .map(|pr| {
                    let kind = if text.draft {
                        "draft pull request"
                    } else {
                        "pull request"
                    };
                    format!("opened {kind} #{}", pr["number"])
                }),
        }
    }
    .await;
    client.finish().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_slugs_are_short_and_safe() {
        assert_eq!(
            slug("Fix the flaky `parse()` test!"),
            "fix-the-flaky-parse-test"
        );
        assert!(slug(&"a".repeat(100)).len() <= 40);
        assert_eq!(slug("../../etc"), "etc");
    }
}
