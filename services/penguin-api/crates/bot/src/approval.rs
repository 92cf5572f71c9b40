//! The "ask" flow: a command that writes, under a policy whose `repo_write`
//! or `shell` capability is `ask`, waits as a pending request on its issue or
//! pull request (labelled `needs_input`) until a maintainer replies
//! `@Penguin approve`, which runs it once.

use crate::{
    command::Command, config::ServerConfig, event::Mention, feedback, github_api::RepoClient,
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

/// Records `command` as waiting for a maintainer, says so on GitHub and
/// labels the thread.
pub async fn request(
    ctx: &BotContext,
    config: &ServerConfig,
    client: &RepoClient,
    m: &Mention,
    command: &Command,
) -> BotResult<()> {
    let pending = json!({ "command": command.name(), "text": m.body, "requested_by": m.login });
    ctx.store
        .set_setting(&pending_key(&m.repository, m.number), &pending.to_string())
        .await?;
    feedback::comment(
        client,
        m.number,
        format!(
            "@{} `{}` changes the repository, which this server's policy allows only with a maintainer's approval. \
             A maintainer can reply `{} approve`.",
            m.login,
            command.name(),
            config.github.bot.mention_trigger
        ),
    )
    .await?;
    if config.github.labels.enabled {
        feedback::add_label(
            client,
            m.number,
            &config.github.labels.label_map.needs_input,
        )
        .await;
    }
    Ok(())
}

/// A request a maintainer approved.
pub struct Approved {
    /// The command to run.
    pub command: Command,
    /// Its name as requested.
    pub name: String,
    /// Who asked for it.
    pub requested_by: String,
}

/// Takes the pending request on `m`'s thread (one approval runs it once) and
/// removes the `needs_input` label; `None` when nothing is waiting.
pub async fn take(
    ctx: &BotContext,
    config: &ServerConfig,
    client: &RepoClient,
    m: &Mention,
) -> BotResult<Option<Approved>> {
    let key = pending_key(&m.repository, m.number);
    let Some(pending) = ctx.store.get_setting(&key).await?.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    ctx.store.set_setting(&key, "").await?;
    feedback::remove_label(
        client,
        m.number,
        &config.github.labels.label_map.needs_input,
    )
    .await;
    let pending: Value = serde_json::from_str(&pending)
        .map_err(|e| BotError::Failed(format!("the pending request is unreadable: {e}")))?;
    let text = pending["text"].as_str().unwrap_or_default();
    match crate::command::parse(text, &config.github.bot.mention_trigger) {
        Some(command @ (Command::FixTests | Command::Fix(_))) => Ok(Some(Approved {
            command,
            name: pending["command"].as_str().unwrap_or("?").to_string(),
            requested_by: pending["requested_by"].as_str().unwrap_or("?").to_string(),
        })),
        _ => Err(BotError::Failed(
            "the pending request is no longer understood".into(),
        )),
    }
}
