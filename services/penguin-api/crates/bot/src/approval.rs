//! The "ask" flow: a command that writes, under a policy whose `repo_write`
//! or `shell` capability is `ask`, or any command that uses the model once
//! the repository's daily token budget is spent, waits as a pending request
//! on its issue or pull request (labelled `needs_input`) until a maintainer
//! replies `@Penguin approve`, which runs it once.

use crate::{
    command::Command,
    config::ServerConfig,
    event::Mention,
    gate::{self, Actor},
    github_api::RepoClient,
    BotContext, BotError, BotResult,
};
use penguin_agent::{Capability, Decision, SecurityPolicy};
use serde_json::{json, Value};

/// What the policy says about a write command: `Ok(true)` proceed,
/// `Ok(false)` ask first, `Err` refused.
pub fn policy_allows_write(policy: &SecurityPolicy) -> Result<bool, String> {
    let mut ask = false;
    for capability in [Capability::RepoWrite, Capability::Shell] {
        match policy.decide(capability) {
            Decision::Allow => {}
            Decision::Ask => ask = true,
            Decision::Deny => {
                return Err(format!(
                    "the server's security policy denies {capability:?} (security.capabilities in .penguin/config.yml)"
                ))
            }
        }
    }
    Ok(!ask)
}

/// Settings key of a command waiting for approval on an issue or pull request.
fn pending_key(repository: &str, number: u64) -> String {
    format!("pending_approval:{repository}#{number}")
}

/// Why a command waits for a maintainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// It writes, and the policy asks first.
    Writes,
    /// The repository's daily token budget is spent.
    Budget {
        /// Tokens spent today.
        spent: u64,
        /// The budget.
        daily: u64,
    },
}

/// Records `command` as waiting for a maintainer, says so on GitHub and
/// labels the thread. On a pull request the request is bound to its head
/// commit: a push cancels it.
pub async fn request(
    ctx: &BotContext,
    config: &ServerConfig,
    client: &RepoClient,
    m: &Mention,
    command: &Command,
    head_sha: Option<&str>,
    why: Why,
) -> BotResult<()> {
    let pending = json!({
        "command": command.name(),
        "text": m.body,
        "requested_by": m.login,
        "head_sha": head_sha,
    });
    ctx.store
        .set_setting(&pending_key(&m.repository, m.number), &pending.to_string())
        .await?;
    let reason = match why {
        Why::Writes => "changes the repository, which this server's policy allows only with a maintainer's approval".to_string(),
        Why::Budget { spent, daily } => format!(
            "needs the model, and this repository's daily token budget is spent ({spent} of {daily} tokens today, UTC); it runs with a maintainer's approval"
        ),
    };
    client
        .comment(
            m.number,
            format!(
                "@{} `{}` {reason}. Another maintainer can reply `{} approve`.",
                m.login,
                command.name(),
                config.github.bot.mention_trigger
            ),
        )
        .await?;
    if config.github.labels.enabled {
        client
            .add_label(m.number, &config.github.labels.label_map.needs_input)
            .await;
    }
    Ok(())
}

/// A request a maintainer approved.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Approved {
    /// What was asked (the comment's text, to parse the command from).
    pub text: String,
    /// The command's name as requested.
    pub name: String,
    /// Who asked for it.
    pub requested_by: String,
}

impl Approved {
    /// The approved command.
    pub fn command(&self, config: &ServerConfig) -> BotResult<Command> {
        match crate::command::parse(&self.text, &config.github.bot.mention_trigger) {
            Some(Command::Approve | Command::Help) | None => Err(BotError::Failed(
                "the pending request is no longer understood".into(),
            )),
            Some(command) => Ok(command),
        }
    }
}

/// What an `approve` comes to.
pub enum Verdict {
    /// Nothing is waiting on this thread.
    Nothing,
    /// The request is approved and consumed; run it.
    Approved(Approved),
    /// Not approved, and why.
    Refused(String),
}

/// Decides `approver`'s `approve` of the request waiting on `m`'s thread:
/// the approver needs write permission or higher and (by default) must not
/// be the requester; the request must be for the pull request's current
/// head (a push since cancels it); the gates are checked again for the
/// requested command; and the request is consumed atomically, so two
/// approvals processed together run it once.
pub async fn authorize(
    ctx: &BotContext,
    config: &ServerConfig,
    client: &RepoClient,
    m: &Mention,
    approver: &Actor,
    target: &gate::Target,
    head_sha: Option<&str>,
) -> BotResult<Verdict> {
    let key = pending_key(&m.repository, m.number);
    let Some(raw) = ctx.store.get_setting(&key).await?.filter(|p| !p.is_empty()) else {
        return Ok(Verdict::Nothing);
    };
    let pending: Value = serde_json::from_str(&raw)
        .map_err(|e| BotError::Failed(format!("the pending request is unreadable: {e}")))?;
    let approved = Approved {
        text: pending["text"].as_str().unwrap_or_default().to_string(),
        name: pending["command"].as_str().unwrap_or("?").to_string(),
        requested_by: pending["requested_by"].as_str().unwrap_or("?").to_string(),
    };
    let command = approved.command(config)?;
    if !gate::grants_write(approver.permission.as_deref().unwrap_or_default()) {
        return Ok(Verdict::Refused(
            "approving needs write permission or higher on this repository".into(),
        ));
    }
    if config.github.bot.approver_must_differ
        && approver.login.eq_ignore_ascii_case(&approved.requested_by)
    {
        return Ok(Verdict::Refused(format!(
            "@{} asked for `{}` and cannot approve it too; another maintainer must",
            approved.requested_by, approved.name
        )));
    }
    let requested_head = pending["head_sha"].as_str();
    if let (Some(requested), Some(current)) = (requested_head, head_sha) {
        if requested != current {
            // Consumed: what was asked about is not what would run.
            ctx.store.swap_setting(&key, &raw, "").await?;
            return Ok(Verdict::Refused(format!(
                "the pull request changed since `{}` was requested (now at {}); ask again",
                approved.name,
                &current[..current.len().min(12)]
            )));
        }
    }
    let refusal = match gate::decide(&config.github.bot, &command, approver, target, false) {
        gate::Decision::Allow => None,
        gate::Decision::Ignore(reason) | gate::Decision::Deny(reason) => Some(reason),
        gate::Decision::NeedsLabel(label) => Some(format!("the opt-in label `{label}` is missing")),
    };
    if let Some(reason) = refusal {
        return Ok(Verdict::Refused(format!(
            "`{}` is not allowed here any more: {reason}",
            approved.name
        )));
    }
    if !ctx.store.swap_setting(&key, &raw, "").await? {
        return Ok(Verdict::Refused(format!(
            "`{}` was already approved",
            approved.name
        )));
    }
    client
        .remove_label(m.number, &config.github.labels.label_map.needs_input)
        .await;
    Ok(Verdict::Approved(approved))
}
