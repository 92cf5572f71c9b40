//! What a mention does: the gates, then 👀, a check run on pull requests, one
//! progress comment edited in place, the model's work, labels per outcome.

use super::{access, client::RepoClient, repo_config};
use crate::state::AppState;
use octocrab::{
    models::{
        reactions::ReactionContent,
        webhook_events::{
            payload::{
                IssueCommentWebhookEventAction, PullRequestReviewCommentWebhookEventAction,
                PullRequestReviewWebhookEventAction,
            },
            WebhookEvent, WebhookEventPayload,
        },
        CheckRunId, CommentId,
    },
    params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus},
};
use penguin_api_store::{Delivery, NewTask, TaskState};
use penguin_bot::{
    command::{self, Command},
    config::{HookEvent, ServerConfig},
    gate::{self, Actor, Decision, Target},
};
use penguin_llm::{ChatMessage, ChatRequest, Role};
use serde_json::{json, Value};
use std::time::Instant;

/// Permissions of the token a command works with.
const TOKEN_PERMISSIONS: &[(&str, &str)] = &[
    ("issues", "write"),
    ("pull_requests", "write"),
    ("checks", "write"),
    ("contents", "read"),
    ("metadata", "read"),
];

/// Events the bot acts on: their payloads must parse.
const ACTED_ON: &[&str] = &[
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
];

/// Where the 👀 reaction goes.
#[derive(Clone, Copy, Debug)]
enum ReactTo {
    /// An issue or pull-request conversation comment.
    IssueComment(u64),
    /// A line comment in a pull-request review.
    ReviewComment(u64),
    /// A review body: GitHub has no reactions for reviews.
    Nothing,
}

/// How a delivery ended.
#[derive(Debug)]
pub enum Outcome {
    /// Acted on; the note says what was done.
    Done(String),
    /// Nothing to do; the note says why.
    Ignored(String),
}

/// What a delivery already did on GitHub, stored with the delivery as each
/// step happens: a delivery resumed after a crash reuses its task, check run
/// and progress comment instead of creating them twice.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct DeliveryProgress {
    task_id: Option<String>,
    check_run: Option<u64>,
    comment: Option<u64>,
}

impl DeliveryProgress {
    async fn load(state: &AppState, delivery_id: &str) -> DeliveryProgress {
        match state.store.delivery_progress(delivery_id).await {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_default(),
            _ => DeliveryProgress::default(),
        }
    }

    async fn save(&self, state: &AppState, delivery_id: &str) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        state
            .store
            .set_delivery_progress(delivery_id, &text)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A mention in a comment, with what the gates need.
struct Mention {
    /// An automatic review configured by the operator (no commenter to gate).
    automatic: bool,
    repository: String,
    /// Deduplication key: the comment's (or review's) id.
    comment_id: u64,
    react_to: ReactTo,
    body: String,
    login: String,
    is_bot: bool,
    association: String,
    number: u64,
    is_pull_request: bool,
    labels: Vec<String>,
    title: String,
    issue_body: String,
    org_owned: bool,
}

/// Handles one stored delivery.
pub async fn handle(state: &AppState, delivery: &Delivery) -> Result<Outcome, String> {
    if delivery.event == "pull_request" {
        let action = delivery.action.as_deref().unwrap_or_default();
        let config = state.github.config.current();
        if !config.github.bot.auto_review_on.iter().any(|a| a == action) {
            return Ok(Outcome::Ignored(format!(
                "pull_request.{action}: no automatic review configured"
            )));
        }
    }
    let event = match WebhookEvent::try_from_header_and_body(&delivery.event, &delivery.payload) {
        Ok(event) => event,
        Err(err) if ACTED_ON.contains(&delivery.event.as_str()) => {
            return Err(format!("{} payload not understood: {err}", delivery.event))
        }
        // Events the bot does not act on need not fit octocrab's models.
        Err(err) => {
            return Ok(Outcome::Ignored(format!(
                "{} payload not parsed: {err}",
                delivery.event
            )))
        }
    };
    let repository = event
        .repository
        .as_ref()
        .and_then(|r| r.full_name.clone())
        .unwrap_or_default();
    let org_owned = event.organization.is_some();
    let sender_is_bot = event.sender.as_ref().is_some_and(|s| s.r#type == "Bot");
    match event.specific {
        WebhookEventPayload::IssueComment(p)
            if p.action == IssueCommentWebhookEventAction::Created =>
        {
            let association = association_of(p.comment.author_association.as_ref());
            let mention = Mention {
                automatic: false,
                repository,
                comment_id: p.comment.id.0,
                react_to: ReactTo::IssueComment(p.comment.id.0),
                body: p.comment.body.clone().unwrap_or_default(),
                is_bot: sender_is_bot || p.comment.user.r#type == "Bot",
                login: p.comment.user.login.clone(),
                association,
                number: p.issue.number,
                is_pull_request: p.issue.pull_request.is_some(),
                labels: p.issue.labels.iter().map(|l| l.name.clone()).collect(),
                title: p.issue.title.clone(),
                issue_body: p.issue.body.clone().unwrap_or_default(),
                org_owned,
            };
            on_mention(state, delivery, mention).await
        }
        WebhookEventPayload::PullRequestReview(p)
            if p.action == PullRequestReviewWebhookEventAction::Submitted =>
        {
            let Some(user) = p.review.user.clone() else {
                return Ok(Outcome::Ignored("review without an author".into()));
            };
            let mention = pr_mention(
                &p.pull_request,
                repository,
                org_owned,
                PrText {
                    id: p.review.id.0,
                    react_to: ReactTo::Nothing,
                    body: p.review.body.clone().unwrap_or_default(),
                    is_bot: sender_is_bot || user.r#type == "Bot",
                    login: user.login.clone(),
                    association: association_of(p.review.author_association.as_ref()),
                },
            );
            on_mention(state, delivery, mention).await
        }
        WebhookEventPayload::PullRequestReviewComment(p)
            if p.action == PullRequestReviewCommentWebhookEventAction::Created =>
        {
            let Some(user) = p.comment.user.clone() else {
                return Ok(Outcome::Ignored("review comment without an author".into()));
            };
            let mention = pr_mention(
                &p.pull_request,
                repository,
                org_owned,
                PrText {
                    id: p.comment.id.0,
                    react_to: ReactTo::ReviewComment(p.comment.id.0),
                    body: p.comment.body.clone(),
                    is_bot: sender_is_bot || user.r#type == "Bot",
                    login: user.login.clone(),
                    association: association_of(p.comment.author_association.as_ref()),
                },
            );
            on_mention(state, delivery, mention).await
        }
        WebhookEventPayload::PullRequest(p) => {
            let config = state.github.config.current();
            let bot = &config.github.bot;
            let action = delivery.action.as_deref().unwrap_or_default();
            let labels: Vec<String> = p
                .pull_request
                .labels
                .iter()
                .flatten()
                .map(|l| l.name.clone())
                .collect();
            if !bot.auto_review_on.iter().any(|a| a == action) {
                return Ok(Outcome::Ignored(format!(
                    "pull_request.{action}: no automatic review configured"
                )));
            }
            if bot
                .auto_review_label
                .as_ref()
                .is_some_and(|label| !labels.contains(label))
            {
                return Ok(Outcome::Ignored(
                    "automatic review: the pull request lacks the label".into(),
                ));
            }
            if p.pull_request.draft == Some(true) {
                return Ok(Outcome::Ignored(
                    "automatic review: draft pull request".into(),
                ));
            }
            let author = p
                .pull_request
                .user
                .as_ref()
                .map(|u| u.login.clone())
                .unwrap_or_default();
            let mut mention = pr_mention(
                &p.pull_request,
                repository,
                org_owned,
                PrText {
                    id: 0,
                    react_to: ReactTo::Nothing,
                    body: String::new(),
                    is_bot: false,
                    login: author,
                    association: "NONE".into(),
                },
            );
            mention.automatic = true;
            auto_review(state, delivery, mention).await
        }
        _ => Ok(Outcome::Ignored(format!(
            "{}{} is not acted on",
            delivery.event,
            delivery
                .action
                .as_deref()
                .map(|a| format!(".{a}"))
                .unwrap_or_default()
        ))),
    }
}

/// `author_association` as GitHub spells it (`OWNER`, `MEMBER`, …).
fn association_of(association: Option<&octocrab::models::AuthorAssociation>) -> String {
    association
        .and_then(|a| serde_json::to_value(a).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "NONE".into())
}

/// The text of a review or review comment and who wrote it.
struct PrText {
    id: u64,
    react_to: ReactTo,
    body: String,
    is_bot: bool,
    login: String,
    association: String,
}

fn pr_mention(
    pull: &octocrab::models::pulls::PullRequest,
    repository: String,
    org_owned: bool,
    text: PrText,
) -> Mention {
    Mention {
        automatic: false,
        repository,
        comment_id: text.id,
        react_to: text.react_to,
        body: text.body,
        login: text.login,
        is_bot: text.is_bot,
        association: text.association,
        number: pull.number,
        is_pull_request: true,
        labels: pull
            .labels
            .iter()
            .flatten()
            .map(|l| l.name.clone())
            .collect(),
        title: pull.title.clone().unwrap_or_default(),
        issue_body: pull.body.clone().unwrap_or_default(),
        org_owned,
    }
}

/// An operator-configured review of a pull request (no command, no commenter).
async fn auto_review(state: &AppState, delivery: &Delivery, m: Mention) -> Result<Outcome, String> {
    let config = state.github.config.current();
    let client = RepoClient::connect(
        state.settings.tokenator_socket.as_deref(),
        &state.settings.github_api_url,
        &m.repository,
        TOKEN_PERMISSIONS,
        &state.token_users,
    )
    .await
    .map_err(|e| e.to_string())?;
    let result = match repo_config::narrowed(&client, &config).await {
        // The repository may have switched reviews off.
        Ok(config) => run_mention(state, &config, delivery, &m, Command::Review, &client).await,
        Err(e) => Ok(Outcome::Ignored(format!("automatic review skipped: {e}"))),
    };
    finish(state, client).await;
    result
}

async fn on_mention(state: &AppState, delivery: &Delivery, m: Mention) -> Result<Outcome, String> {
    let config = state.github.config.current();
    let Some(command) = command::parse(&m.body, &config.github.bot.mention_trigger) else {
        return Ok(Outcome::Ignored("no command for the bot".into()));
    };
    if m.is_bot || m.login.ends_with("[bot]") {
        return Ok(Outcome::Ignored(format!(
            "comment by the bot {} (no loops)",
            m.login
        )));
    }
    // Dedupe by comment id as well as by delivery GUID.
    if !state
        .store
        .claim_comment(m.comment_id, &delivery.delivery_id)
        .await
        .map_err(|e| e.to_string())?
    {
        state.bot_metrics.dedupe_hit();
        return Ok(Outcome::Ignored(format!(
            "comment {} already handled",
            m.comment_id
        )));
    }
    let client = RepoClient::connect(
        state.settings.tokenator_socket.as_deref(),
        &state.settings.github_api_url,
        &m.repository,
        TOKEN_PERMISSIONS,
        &state.token_users,
    )
    .await
    .map_err(|e| e.to_string())?;
    let result = match repo_config::narrowed(&client, &config).await {
        Ok(config) => run_mention(state, &config, delivery, &m, command, &client).await,
        Err(e) => {
            let reason = e.to_string();
            refuse(&client, &m, &reason)
                .await
                .map(|()| Outcome::Done(format!("denied: {reason}")))
        }
    };
    finish(state, client).await;
    result
}

/// Records GitHub's rate-limit budget, then revokes the command's tokens.
async fn finish(state: &AppState, client: RepoClient) {
    if let Some(remaining) = client.rate_limit_remaining().await {
        state.bot_metrics.rate_limit_remaining(remaining);
    }
    client.finish().await;
}

/// Tells the commenter why nothing will happen.
async fn refuse(client: &RepoClient, m: &Mention, reason: &str) -> Result<(), String> {
    let crab = client.crab().await.map_err(|e| e.to_string())?;
    crab.issues(&client.owner, &client.repo)
        .create_comment(
            m.number,
            format!("@{} I can't do that here: {reason}", m.login),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn run_mention(
    state: &AppState,
    config: &ServerConfig,
    delivery: &Delivery,
    m: &Mention,
    command: Command,
    client: &RepoClient,
) -> Result<Outcome, String> {
    let crab = client.crab().await.map_err(|e| e.to_string())?;
    let (owner, repo) = (client.owner.as_str(), client.repo.as_str());
    let issues = crab.issues(owner, repo);
    let permission = access::collaborator_permission(state, client, &m.login).await;
    let (head_sha, from_fork, pull_body, head_ref) = if m.is_pull_request {
        let pull = crab
            .pulls(owner, repo)
            .get(m.number)
            .await
            .map_err(|e| e.to_string())?;
        let fork = pull
            .head
            .repo
            .as_ref()
            .and_then(|r| r.fork)
            .unwrap_or(false);
        (
            Some(pull.head.sha.clone()),
            fork,
            pull.body.clone().unwrap_or_default(),
            Some(pull.head.ref_field.clone()),
        )
    } else {
        (None, false, String::new(), None)
    };
    let mut actor = Actor {
        login: m.login.clone(),
        is_bot: m.is_bot,
        association: m.association.clone(),
        permission,
        teams: Vec::new(),
    };
    let bot_config = &config.github.bot;
    if !m.automatic
        && !bot_config.allowed_teams.is_empty()
        && !gate::trusted_without_teams(bot_config, &actor)
    {
        actor.teams =
            access::team_memberships(state, &m.repository, &bot_config.allowed_teams, &m.login)
                .await;
    }
    let target = Target {
        is_pull_request: m.is_pull_request,
        from_fork,
        labels: m.labels.clone(),
        org_wide_install: m.org_owned,
    };
    let decision = if m.automatic {
        // Configured by the operator: a review only reads the diff, even of a fork.
        Decision::Allow
    } else {
        gate::decide(&config.github.bot, &command, &actor, &target, false)
    };
    tracing::info!(delivery_id = %delivery.delivery_id, login = %m.login, command = command.name(), ?decision, "gate decision");
    match decision {
        Decision::Allow => {}
        Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
        Decision::Deny(reason) => {
            refuse(client, m, &reason).await?;
            return Ok(Outcome::Done(format!("denied: {reason}")));
        }
        Decision::NeedsLabel(label) => {
            let body = format!(
                "@{} this needs the opt-in label `{label}` on this issue or pull request before I may write anything.",
                m.login
            );
            issues
                .create_comment(m.number, body)
                .await
                .map_err(|e| e.to_string())?;
            if config.github.labels.enabled {
                let needs = config.github.labels.label_map.needs_input.clone();
                let _ = issues.add_labels(m.number, &[needs]).await;
            }
            return Ok(Outcome::Done(format!("waiting for label {label}")));
        }
    }
    // A delivery resumed after a crash reuses what it already created, and
    // was already counted against the caps.
    let mut progress = DeliveryProgress::load(state, &delivery.delivery_id).await;
    let resumed = progress.task_id.is_some();
    let allowed = if m.automatic || resumed {
        Ok(())
    } else {
        state
            .bot_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check_and_record(&m.repository, &m.login, Instant::now())
    };
    if let Err(limit) = allowed {
        issues
            .create_comment(m.number, format!("@{} {limit}", m.login))
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Outcome::Done(format!("rate limited: {limit}")));
    }

    // "ask" capabilities: a write command waits for a maintainer's approval.
    if command.writes() {
        match super::fix::policy_allows_fix(&state.policy) {
            Err(reason) => {
                refuse(client, m, &reason).await?;
                return Ok(Outcome::Done(format!("denied by policy: {reason}")));
            }
            Ok(false) => {
                let pending =
                    json!({ "command": command.name(), "text": m.body, "requested_by": m.login });
                state
                    .store
                    .set_setting(&pending_key(&m.repository, m.number), &pending.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                issues
                    .create_comment(
                        m.number,
                        format!(
                            "@{} `{}` changes the repository, which this server's policy allows only with a maintainer's approval. \
                             A maintainer can reply `{} approve`.",
                            m.login,
                            command.name(),
                            config.github.bot.mention_trigger
                        ),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if config.github.labels.enabled {
                    let _ = issues
                        .add_labels(
                            m.number,
                            std::slice::from_ref(&config.github.labels.label_map.needs_input),
                        )
                        .await;
                }
                tracing::info!(delivery_id = %delivery.delivery_id, command = command.name(), "waiting for approval");
                return Ok(Outcome::Done("waiting for approval".into()));
            }
            Ok(true) => {}
        }
    }
    if !resumed {
        // 👀 first: the person sees at once that the bot is on it.
        match m.react_to {
            ReactTo::IssueComment(id) => {
                issues
                    .create_comment_reaction(CommentId(id), ReactionContent::Eyes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ReactTo::ReviewComment(id) => {
                crab.pulls(owner, repo)
                    .create_comment_reaction(CommentId(id), ReactionContent::Eyes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ReactTo::Nothing => {}
        }
    }
    let task_id = match progress.task_id.clone() {
        Some(id) if state.store.get_task(&id).await.is_ok() => {
            tracing::info!(delivery_id = %delivery.delivery_id, task_id = %id, "resuming after a restart");
            id
        }
        _ => {
            let task = state
                .store
                .create_task(NewTask {
                    name: format!("github:{}", command.name()),
                    description: format!("{} #{}: {}", m.repository, m.number, m.title),
                    metadata: json!({ "repository": m.repository, "number": m.number, "delivery_id": delivery.delivery_id, "actor": m.login }),
                })
                .await
                .map_err(|e| e.to_string())?;
            progress.task_id = Some(task.id.clone());
            progress.save(state, &delivery.delivery_id).await?;
            task.id
        }
    };
    let _ = state
        .store
        .set_task_state(&task_id, TaskState::Running)
        .await;
    let started = Instant::now();
    let details_url = format!(
        "{}/api/v1/tasks/{}",
        state.settings.public_url.trim_end_matches('/'),
        task_id
    );
    let check_name = match command {
        Command::Review => Some(config.github.checks.check_names.review.clone()),
        Command::Plan => Some(config.github.checks.check_names.plan.clone()),
        Command::FixTests | Command::Fix(_) => Some(config.github.checks.check_names.tests.clone()),
        _ => None,
    };
    let check_run: Option<CheckRunId> = match (&head_sha, check_name, config.github.checks.enabled)
    {
        _ if progress.check_run.is_some() => progress.check_run.map(CheckRunId),
        (Some(sha), Some(name), true) => {
            let id = crab
                .checks(owner, repo)
                .create_check_run(name, sha.clone())
                .status(CheckRunStatus::InProgress)
                .details_url(details_url.clone())
                .external_id(task_id.clone())
                .send()
                .await
                .map(|c| c.id)
                .map_err(|e| tracing::warn!(error = %e, "cannot create the check run"))
                .ok();
            progress.check_run = id.map(|id| id.0);
            progress.save(state, &delivery.delivery_id).await?;
            id
        }
        _ => None,
    };
    let progress_body = format!(
        "🐧 Working on `{}` … (task [`{}`]({details_url}))",
        command.name(),
        task_id
    );
    let progress_comment = match progress.comment {
        Some(id) => {
            let body = format!("{progress_body} — resumed after a restart");
            creating("progress comment", || {
                issues.update_comment(CommentId(id), body.clone())
            })
            .await?;
            CommentId(id)
        }
        None => {
            let comment = creating("progress comment", || {
                issues.create_comment(m.number, progress_body.clone())
            })
            .await?;
            progress.comment = Some(comment.id.0);
            progress.save(state, &delivery.delivery_id).await?;
            comment.id
        }
    };
    if config.github.labels.enabled {
        let _ = issues
            .add_labels(
                m.number,
                std::slice::from_ref(&config.github.labels.label_map.in_progress),
            )
            .await;
    }

    let outcome = if command == Command::Review {
        // review.run hooks: a failing pre-hook stops the review; a failing
        // post-hook is reported with the result.
        let context = json!({
            "event": "review.run",
            "repository": m.repository,
            "pull_request": m.number,
            "sha": head_sha,
            "task_id": task_id,
            "actor": m.login,
        });
        match penguin_bot::hooks::run_hooks(config.hooks.pre(HookEvent::ReviewRun), &context).await
        {
            Err(failure) => Err(format!(
                "the review.run pre-hook stopped the review: {failure}"
            )),
            Ok(()) => {
                let result = perform(
                    state,
                    config,
                    m,
                    &command,
                    client,
                    &task_id,
                    head_ref.as_deref(),
                )
                .await;
                match penguin_bot::hooks::run_hooks(
                    config.hooks.post(HookEvent::ReviewRun),
                    &context,
                )
                .await
                {
                    Err(failure) => {
                        result.map(|text| format!("{text}\n\n⚠️ review.run post-hook: {failure}"))
                    }
                    Ok(()) => result,
                }
            }
        }
    } else {
        perform(
            state,
            config,
            m,
            &command,
            client,
            &task_id,
            head_ref.as_deref(),
        )
        .await
    };
    // The work may have outlived the token: fresh client for the reporting.
    let crab = client.crab().await.map_err(|e| e.to_string())?;
    let issues = crab.issues(owner, repo);
    let (ok, summary, body) = match &outcome {
        Ok(text) => (true, format!("`{}` finished", command.name()), text.clone()),
        Err(reason) => (
            false,
            format!("`{}` failed", command.name()),
            format!("❌ {reason}"),
        ),
    };
    let footer = format!(
        "\n\n<sub>task [`{}`]({details_url}) · {:.1} s</sub>",
        task_id,
        started.elapsed().as_secs_f64()
    );
    let report = format!("{body}{footer}");
    creating("report comment", || {
        issues.update_comment(progress_comment, report.clone())
    })
    .await?;
    if let Some(id) = check_run {
        let conclusion = if ok {
            CheckRunConclusion::Success
        } else {
            CheckRunConclusion::Failure
        };
        let _ = crab
            .checks(owner, repo)
            .update_check_run(id)
            .status(CheckRunStatus::Completed)
            .conclusion(conclusion)
            .output(CheckRunOutput {
                title: summary.clone(),
                summary: truncate(&body, 60_000),
                text: None,
                annotations: Vec::new(),
                images: Vec::new(),
            })
            .send()
            .await
            .map_err(|e| tracing::warn!(error = %e, "cannot complete the check run"));
    }
    if m.is_pull_request {
        let summary_block = format!(
            "**Penguin** `{}`: {} — task [`{}`]({details_url})",
            command.name(),
            if ok { "✅ done" } else { "❌ failed" },
            task_id
        );
        let body = with_summary(&pull_body, &summary_block);
        if body != pull_body {
            let _ = crab
                .patch::<Value, _, _>(
                    format!("/repos/{owner}/{repo}/pulls/{}", m.number),
                    Some(&json!({ "body": body })),
                )
                .await
                .map_err(|e| tracing::warn!(error = %e, "cannot update the pull request body"));
        }
    }
    if config.github.labels.enabled {
        let map = &config.github.labels.label_map;
        let _ = issues.remove_label(m.number, &map.in_progress).await;
        let done = if ok {
            map.done.clone()
        } else {
            map.failed.clone()
        };
        let _ = issues.add_labels(m.number, &[done]).await;
    }
    let state_after = if ok {
        TaskState::Completed
    } else {
        TaskState::Failed
    };
    let _ = state
        .store
        .finish_task(
            &task_id,
            state_after,
            json!({ "command": command.name(), "ok": ok, "summary": summary }),
        )
        .await;
    state
        .bot_metrics
        .command(command.name(), ok, started.elapsed());
    Ok(Outcome::Done(summary))
}

/// Retries of a content-creating call that hit a secondary rate limit.
const CREATE_RETRIES: u32 = 3;

/// Runs a call that creates content (comments, reviews), backing off when
/// GitHub answers with a secondary rate limit: at least as long as its
/// `retry-after` asks, doubling from one second otherwise.
pub(super) async fn creating<T, F, Fut>(what: &'static str, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = octocrab::Result<T>>,
{
    let mut backoff = std::time::Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(octocrab::Error::GitHub { source, .. })
                if attempt < CREATE_RETRIES
                    && matches!(source.status_code.as_u16(), 403 | 429)
                    && source.message.to_ascii_lowercase().contains("rate limit") =>
            {
                let asked = source
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("retry-after"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(std::time::Duration::from_secs)
                    .unwrap_or_default();
                let wait = backoff.max(asked);
                tracing::warn!(
                    call = what,
                    wait_ms = wait.as_millis() as u64,
                    "secondary rate limit; backing off"
                );
                tokio::time::sleep(wait).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(err) => return Err(err.to_string()),
        }
    }
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

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n\n[truncated]", &text[..cut])
}

/// Runs the command; returns the markdown to post.
async fn perform(
    state: &AppState,
    config: &ServerConfig,
    m: &Mention,
    command: &Command,
    client: &RepoClient,
    task_id: &str,
    head_ref: Option<&str>,
) -> Result<String, String> {
    let subject = format!(
        "{} #{}: {}\n\n{}",
        if m.is_pull_request {
            "Pull request"
        } else {
            "Issue"
        },
        m.number,
        penguin_agent::strip_hidden(&m.title),
        penguin_agent::strip_hidden(&m.issue_body)
    );
    match command {
        Command::Help => Ok(help(config)),
        Command::Plan => {
            let answer = ask(state, "You plan software work. Answer with a short plan as a Markdown checklist (`- [ ] step`), nothing else.", &subject).await?;
            Ok(ensure_checklist(&answer))
        }
        Command::Summarize => {
            ask(
                state,
                "Summarize this issue or pull request in a few sentences for a maintainer.",
                &subject,
            )
            .await
        }
        Command::Question(question) => {
            let prompt = format!(
                "{subject}\n\nQuestion from @{}: {}",
                m.login,
                penguin_agent::strip_hidden(question)
            );
            ask(state, "You are Penguin, a coding assistant on GitHub. Answer the question about this issue or pull request briefly.", &prompt).await
        }
        Command::Review => {
            if !m.is_pull_request {
                return Err("`review` works on pull requests".into());
            }
            review(state, config, m, client, &subject).await
        }
        Command::Approve => {
            let key = pending_key(&m.repository, m.number);
            let pending = state
                .store
                .get_setting(&key)
                .await
                .map_err(|e| e.to_string())?;
            let Some(pending) = pending.filter(|p| !p.is_empty()) else {
                return Ok("Nothing here is waiting for approval.".into());
            };
            // One approval runs the pending command once.
            state
                .store
                .set_setting(&key, "")
                .await
                .map_err(|e| e.to_string())?;
            let crab = client.crab().await.map_err(|e| e.to_string())?;
            let label = &config.github.labels.label_map.needs_input;
            let _ = crab
                .issues(&client.owner, &client.repo)
                .remove_label(m.number, label)
                .await;
            let pending: Value = serde_json::from_str(&pending).map_err(|e| e.to_string())?;
            let text = pending["text"].as_str().unwrap_or_default();
            let requested = penguin_bot::command::parse(text, &config.github.bot.mention_trigger);
            let report = match requested {
                Some(cmd @ (Command::FixTests | Command::Fix(_))) => {
                    run_fix(state, config, m, &cmd, client, task_id, head_ref, true).await?
                }
                _ => return Err("the pending request is no longer understood".into()),
            };
            Ok(format!(
                "Approved by @{}; ran `{}` requested by @{}.\n\n{report}",
                m.login,
                pending["command"].as_str().unwrap_or("?"),
                pending["requested_by"].as_str().unwrap_or("?")
            ))
        }
        Command::FixTests | Command::Fix(_) => {
            run_fix(state, config, m, command, client, task_id, head_ref, false).await
        }
    }
}

/// Settings key of a command waiting for approval on an issue or pull request.
fn pending_key(repository: &str, number: u64) -> String {
    format!("pending_approval:{repository}#{number}")
}

/// `fix tests` / `fix <text>`: a pull request is fixed on top of its head,
/// an issue on the default branch.
#[allow(clippy::too_many_arguments)]
async fn run_fix(
    state: &AppState,
    config: &ServerConfig,
    m: &Mention,
    command: &Command,
    client: &RepoClient,
    task_id: &str,
    head_ref: Option<&str>,
    approved: bool,
) -> Result<String, String> {
    let base_ref = match head_ref {
        Some(head) => head.to_string(),
        None => client
            .crab()
            .await
            .map_err(|e| e.to_string())?
            .get::<Value, _, ()>(format!("/repos/{}/{}", client.owner, client.repo), None)
            .await
            .map_err(|e| e.to_string())?["default_branch"]
            .as_str()
            .unwrap_or("main")
            .to_string(),
    };
    let instructions = match command {
        Command::Fix(text) => Some(text.as_str()),
        _ => None,
    };
    super::fix::fix_tests(
        state,
        config,
        super::fix::FixRequest {
            repository: &m.repository,
            number: m.number,
            title: &m.title,
            base_ref: &base_ref,
            task_id,
            instructions,
            approved,
            actor: &m.login,
        },
    )
    .await
}

fn help(config: &ServerConfig) -> String {
    let trigger = &config.github.bot.mention_trigger;
    format!(
        "Commands: `{trigger} review` (pull requests), `{trigger} plan`, `{trigger} summarize`, `{trigger} fix tests`, \
         `{trigger} approve`, `{trigger} help`; anything else is answered as a question. `/penguin <command>` works too.\n\
         Enabled here: {}",
        config.github.bot.enabled_commands.join(", ")
    )
}

fn ensure_checklist(answer: &str) -> String {
    if answer.lines().any(|l| l.trim_start().starts_with("- [ ]")) {
        return answer.trim().to_string();
    }
    answer
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            format!(
                "- [ ] {}",
                l.trim_start_matches(['-', '*', ' '])
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                    .trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn ask(state: &AppState, system: &str, prompt: &str) -> Result<String, String> {
    let model = state
        .model
        .as_ref()
        .ok_or("no model provider is configured on this server (MODEL_NOT_CONFIGURED)")?;
    let answer = model
        .complete(ChatRequest {
            model: state.model_for(None),
            messages: vec![
                ChatMessage::new(Role::System, system),
                ChatMessage::new(Role::User, prompt),
            ],
            ..Default::default()
        })
        .await
        .map_err(|e| penguin_telemetry::redact(&e.to_string()).into_owned())?;
    state.add_usage(answer.usage);
    Ok(answer.message.content)
}

async fn review(
    state: &AppState,
    config: &ServerConfig,
    m: &Mention,
    client: &RepoClient,
    subject: &str,
) -> Result<String, String> {
    let limits = &config.github.review;
    let crab = client.crab().await.map_err(|e| e.to_string())?;
    let files = crab
        .pulls(&client.owner, &client.repo)
        .list_files(m.number)
        .await
        .map_err(|e| e.to_string())?;
    let all = crab.all_pages(files).await.map_err(|e| e.to_string())?;
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
    let findings = ask(
        state,
        "You review pull requests. List concrete findings (bugs, risks, missing tests) as Markdown bullets with file names; say so if there are none.",
        &format!("{subject}\n\nDiff:\n{diff}"),
    )
    .await?;
    let body = format!("## 🐧 Penguin review\n\n{findings}");
    crab.post::<_, Value>(
        format!(
            "/repos/{}/{}/pulls/{}/reviews",
            client.owner, client.repo, m.number
        ),
        Some(&json!({ "body": body, "event": "COMMENT" })),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "Review posted ({} files, {lines} diff lines).\n\n{findings}",
        all.len().min(limits.max_files)
    ))
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

    #[test]
    fn plans_become_checklists() {
        assert_eq!(ensure_checklist("1. a\n2. b"), "- [ ] a\n- [ ] b");
        assert_eq!(ensure_checklist("- [ ] a\n- [x] b"), "- [ ] a\n- [x] b");
    }
}
