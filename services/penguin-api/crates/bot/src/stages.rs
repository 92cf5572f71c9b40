//! One delivery, stage by stage: event → mention → gate and limits →
//! approval → action → feedback. Each stage is a function of its own; this
//! module only puts them in order.

use crate::{
    actions::{self, Target},
    approval,
    command::{self, Command},
    config::ServerConfig,
    event::{self, Event, Mention},
    feedback::{self, DeliveryProgress},
    gate::{self, Actor, Decision},
    github_api::{access, repo_config, RepoClient},
    BotContext, BotResult,
};
use penguin_api_store::Delivery;
use std::time::Instant;

/// Permissions of the token a command works with.
const TOKEN_PERMISSIONS: &[(&str, &str)] = &[
    ("issues", "write"),
    ("pull_requests", "write"),
    ("checks", "write"),
    ("contents", "read"),
    ("metadata", "read"),
];

/// How a delivery ended.
#[derive(Debug)]
pub enum Outcome {
    /// Acted on; the note says what was done.
    Done(String),
    /// Nothing to do; the note says why.
    Ignored(String),
}

/// Handles one stored delivery. An `Err` that [`BotError::is_transient`]
/// is worth another attempt later; any other `Err` is final.
pub async fn handle(ctx: &BotContext, delivery: &Delivery) -> BotResult<Outcome> {
    let config = ctx.config.current();
    match event::read(delivery, &config)? {
        Event::Ignored(note) => Ok(Outcome::Ignored(note)),
        Event::Mention(m) => on_mention(ctx, &config, delivery, m).await,
        Event::AutoReview(m, claim) => auto_review(ctx, &config, delivery, m, &claim).await,
    }
}

/// An operator-configured review of a pull request (no command, no commenter).
async fn auto_review(
    ctx: &BotContext,
    config: &ServerConfig,
    delivery: &Delivery,
    m: Mention,
    claim: &str,
) -> BotResult<Outcome> {
    if !ctx.store.claim(claim, &delivery.delivery_id).await? {
        ctx.metrics.dedupe_hit();
        return Ok(Outcome::Ignored(format!("{claim} already reviewed")));
    }
    let client = ctx.github.repo(&m.repository, TOKEN_PERMISSIONS).await?;
    let result = match repo_config::narrowed(&client, config).await {
        // The repository may have switched reviews off.
        Ok(config) => {
            run_mention(
                ctx,
                &config,
                delivery,
                &m,
                Command::Review { full: false },
                &client,
            )
            .await
        }
        Err(e) => Ok(Outcome::Ignored(format!("automatic review skipped: {e}"))),
    };
    finish(ctx, client).await;
    result
}

/// A comment that mentions the bot: the command, loops and duplicates, then
/// the repository's own configuration.
async fn on_mention(
    ctx: &BotContext,
    config: &ServerConfig,
    delivery: &Delivery,
    m: Mention,
) -> BotResult<Outcome> {
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
    if !ctx
        .store
        .claim_comment(m.comment_id, &delivery.delivery_id)
        .await?
    {
        ctx.metrics.dedupe_hit();
        return Ok(Outcome::Ignored(format!(
            "comment {} already handled",
            m.comment_id
        )));
    }
    let client = ctx.github.repo(&m.repository, TOKEN_PERMISSIONS).await?;
    let result = match repo_config::narrowed(&client, config).await {
        Ok(config) => run_mention(ctx, &config, delivery, &m, command, &client).await,
        Err(e) => {
            let reason = e.to_string();
            feedback::refuse(&client, &m, &reason)
                .await
                .map(|()| Outcome::Done(format!("denied: {reason}")))
        }
    };
    finish(ctx, client).await;
    result
}

/// Records GitHub's rate-limit budget, then revokes the command's tokens.
async fn finish(ctx: &BotContext, client: RepoClient) {
    if let Some(remaining) = client.rate_limit_remaining().await {
        ctx.metrics.rate_limit_remaining(remaining);
    }
    client.finish().await;
}

/// The pull request a command is about, read once at the start.
#[derive(Default)]
struct Pull {
    head_sha: Option<String>,
    head_ref: Option<String>,
    from_fork: bool,
}

async fn read_pull(client: &RepoClient, m: &Mention) -> BotResult<Pull> {
    if !m.is_pull_request {
        return Ok(Pull::default());
    }
    let (owner, repo, number) = (client.owner.as_str(), client.repo.as_str(), m.number);
    let pull = client
        .call("pull request", |crab| async move {
            crab.pulls(owner, repo).get(number).await
        })
        .await?;
    Ok(Pull {
        from_fork: from_fork(&pull),
        head_sha: Some(pull.head.sha.clone()),
        head_ref: Some(pull.head.ref_field.clone()),
    })
}

/// Whether `pull`'s code comes from another repository than the one it
/// targets: the head and base repositories differ, or the head's is gone
/// (a deleted fork). A repository's `fork` flag says nothing about this: a
/// pull request between two branches of a fork is not from a fork.
fn from_fork(pull: &octocrab::models::pulls::PullRequest) -> bool {
    match (pull.head.repo.as_ref(), pull.base.repo.as_ref()) {
        (Some(head), Some(base)) => head.id != base.id,
        _ => true,
    }
}

async fn run_mention(
    ctx: &BotContext,
    config: &ServerConfig,
    delivery: &Delivery,
    m: &Mention,
    command: Command,
    client: &RepoClient,
) -> BotResult<Outcome> {
    let permission = access::collaborator_permission(&ctx.access, client, &m.login).await;
    let pull = read_pull(client, m).await?;
    let (actor, gate_target) = match gate(
        ctx, config, delivery, m, &command, client, permission, &pull,
    )
    .await?
    {
        Ok(gated) => gated,
        Err(outcome) => return Ok(outcome),
    };
    // A delivery tried before reuses what it already created, and was
    // already counted against the caps.
    let mut progress = DeliveryProgress::load(ctx, &delivery.delivery_id).await;
    let resumed = progress.task_id.is_some();
    if !resumed {
        if let Some(outcome) = limits(ctx, client, m).await? {
            return Ok(outcome);
        }
        if let Some(outcome) = budget(ctx, config, client, m, &command, &pull).await? {
            return Ok(outcome);
        }
    }
    if command.writes() {
        match approval::policy_allows_write(&ctx.policy) {
            Err(reason) => {
                feedback::refuse(client, m, &reason).await?;
                return Ok(Outcome::Done(format!("denied by policy: {reason}")));
            }
            Ok(false) => {
                tracing::info!(delivery_id = %delivery.delivery_id, command = command.name(), "waiting for approval");
                let why = approval::Why::Writes;
                let head = pull.head_sha.as_deref();
                approval::request(ctx, config, client, m, &command, head, why).await?;
                return Ok(Outcome::Done("waiting for approval".into()));
            }
            Ok(true) => {}
        }
    }
    if command == Command::Approve && progress.approved.is_none() {
        let approving = Approving {
            ctx,
            config,
            m,
            client,
            approver: &actor,
            target: &gate_target,
        };
        if let Some(outcome) = approve(&approving, &pull, delivery, &mut progress).await? {
            return Ok(outcome);
        }
    }
    let run = feedback::Run {
        ctx,
        config,
        m,
        command: &command,
        client,
    };
    let started = feedback::start(
        &run,
        &delivery.delivery_id,
        pull.head_sha.as_deref(),
        &mut progress,
    )
    .await?;
    let target = Target {
        client,
        task_id: &started.task_id,
        head_ref: pull.head_ref.as_deref(),
        head_sha: pull.head_sha.as_deref(),
        approved: progress.approved.as_ref(),
        progress_comment: Some(started.comment()),
    };
    let outcome = actions::perform(ctx, config, m, &command, &target).await;
    match outcome {
        // Another attempt may succeed: the delivery is tried again later and
        // resumes with the task, check run and comment made so far.
        Err(err) if err.is_transient() => Err(err),
        outcome => {
            let summary = feedback::finish(&run, &started, &outcome).await?;
            Ok(Outcome::Done(summary))
        }
    }
}

/// The daily token budget: once a repository spent it, automatic reviews
/// stop and commands that use the model wait for a maintainer's `approve`
/// (`Some`: the delivery ends with that outcome).
async fn budget(
    ctx: &BotContext,
    config: &ServerConfig,
    client: &RepoClient,
    m: &Mention,
    command: &Command,
    pull: &Pull,
) -> BotResult<Option<Outcome>> {
    let daily = config.github.budget.daily_tokens;
    if daily == 0 || !command.uses_model() {
        return Ok(None);
    }
    let spent = ctx.tokens_spent_today(&m.repository).await?;
    if spent < daily {
        return Ok(None);
    }
    ctx.metrics.budget_refusal();
    if m.automatic {
        return Ok(Some(Outcome::Ignored(format!(
            "automatic review skipped: the daily token budget is spent ({spent} of {daily})"
        ))));
    }
    let why = approval::Why::Budget { spent, daily };
    let head = pull.head_sha.as_deref();
    approval::request(ctx, config, client, m, command, head, why).await?;
    Ok(Some(Outcome::Done(format!(
        "waiting for approval: the daily token budget is spent ({spent} of {daily})"
    ))))
}

/// An `approve` and who gives it, as the gate saw them.
struct Approving<'a> {
    ctx: &'a BotContext,
    config: &'a ServerConfig,
    m: &'a Mention,
    client: &'a RepoClient,
    approver: &'a Actor,
    target: &'a gate::Target,
}

/// The approval stage: the request waiting on the thread is authorized and
/// recorded with the delivery (a retry runs it without it), or the approver
/// is told why not (`Some`).
async fn approve(
    a: &Approving<'_>,
    pull: &Pull,
    delivery: &Delivery,
    progress: &mut DeliveryProgress,
) -> BotResult<Option<Outcome>> {
    let verdict = approval::authorize(
        a.ctx,
        a.config,
        a.client,
        a.m,
        a.approver,
        a.target,
        pull.head_sha.as_deref(),
    )
    .await?;
    match verdict {
        approval::Verdict::Nothing => Ok(None),
        approval::Verdict::Approved(approved) => {
            progress.approved = Some(approved);
            progress.save(a.ctx, &delivery.delivery_id).await?;
            Ok(None)
        }
        approval::Verdict::Refused(reason) => {
            feedback::refuse(a.client, a.m, &reason).await?;
            Ok(Some(Outcome::Done(format!("approval refused: {reason}"))))
        }
    }
}

/// Who may make the bot act: the commenter's permission, teams, labels and
/// forks, decided by [`gate::decide`]. `Err` ends the delivery with that
/// outcome; `Ok` gives the actor and target as the gate saw them.
#[allow(clippy::too_many_arguments)]
async fn gate(
    ctx: &BotContext,
    config: &ServerConfig,
    delivery: &Delivery,
    m: &Mention,
    command: &Command,
    client: &RepoClient,
    permission: Option<String>,
    pull: &Pull,
) -> BotResult<Result<(Actor, gate::Target), Outcome>> {
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
        actor.teams = access::team_memberships(
            &ctx.access,
            &ctx.github,
            &m.repository,
            &bot_config.allowed_teams,
            &m.login,
        )
        .await;
    }
    let target = gate::Target {
        is_pull_request: m.is_pull_request,
        from_fork: pull.from_fork,
        labels: m.labels.clone(),
        org_wide_install: m.org_owned,
    };
    let decision = if m.automatic {
        // Configured by the operator: a review only reads the diff, even of a fork.
        Decision::Allow
    } else {
        gate::decide(bot_config, command, &actor, &target, false)
    };
    tracing::info!(delivery_id = %delivery.delivery_id, login = %m.login, command = command.name(), ?decision, "gate decision");
    Ok(match decision {
        Decision::Allow => Ok((actor, target)),
        Decision::Ignore(reason) => Err(Outcome::Ignored(reason)),
        Decision::Deny(reason) => {
            feedback::refuse(client, m, &reason).await?;
            Err(Outcome::Done(format!("denied: {reason}")))
        }
        Decision::NeedsLabel(label) => {
            let body = format!(
                "@{} this needs the opt-in label `{label}` on this issue or pull request before I may write anything.",
                m.login
            );
            client.comment(m.number, body).await?;
            if config.github.labels.enabled {
                client
                    .add_label(m.number, &config.github.labels.label_map.needs_input)
                    .await;
            }
            Err(Outcome::Done(format!("waiting for label {label}")))
        }
    })
}

/// The per-repository and per-user caps; `Some` when one is reached.
async fn limits(ctx: &BotContext, client: &RepoClient, m: &Mention) -> BotResult<Option<Outcome>> {
    let allowed = ctx
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check_and_record(&m.repository, &m.login, Instant::now());
    match allowed {
        Ok(()) => Ok(None),
        // Nobody asked for an automatic review: nobody to tell.
        Err(limit) if m.automatic => {
            Ok(Some(Outcome::Ignored(format!("automatic review: {limit}"))))
        }
        Err(limit) => {
            client
                .comment(m.number, format!("@{} {limit}", m.login))
                .await?;
            Ok(Some(Outcome::Done(format!("rate limited: {limit}"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// GitHub's `pull_request.opened` example's pull request, with its head
    /// repository replaced by `head` (`Value::Null` for a deleted fork).
    fn pull(head: Value) -> octocrab::models::pulls::PullRequest {
        let (_, payload) = opened_example();
        let mut pull = payload["pull_request"].clone();
        pull["head"]["repo"] = head;
        serde_json::from_value(pull).expect("a pull request")
    }

    fn opened_example() -> (String, Value) {
        let text =
            include_str!("../../../../../tests/support/fixtures/webhooks/api.github.com.json");
        let events: Vec<Value> = serde_json::from_str(text).unwrap();
        let example = events
            .iter()
            .find(|e| e["name"] == "pull_request")
            .and_then(|e| e["examples"].as_array())
            .and_then(|ex| ex.iter().find(|p| p["action"] == "opened"))
            .cloned()
            .unwrap();
        ("pull_request".into(), example)
    }

    #[test]
    fn forks_are_told_by_repository_ids_not_by_the_fork_flag() {
        let (_, payload) = opened_example();
        let base = payload["pull_request"]["base"]["repo"].clone();
        // Same repository: not a fork, even when that repository is itself a fork.
        let mut same = base.clone();
        same["fork"] = json!(true);
        assert!(!from_fork(&pull(same)));
        // Another repository, even one not flagged as a fork.
        let mut other = base.clone();
        other["id"] = json!(base["id"].as_u64().unwrap() + 1);
        other["fork"] = json!(false);
        assert!(from_fork(&pull(other)));
        // The fork was deleted: `head.repo` is null.
        assert!(from_fork(&pull(Value::Null)));
    }
}
