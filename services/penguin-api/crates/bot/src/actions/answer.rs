//! Commands the model answers in words: `plan`, `summarize`, questions, and
//! `help`, which needs no model.

use crate::{config::ServerConfig, event::Mention, BotContext, BotResult};

/// The issue or pull request as the model sees it: hidden content stripped.
pub fn subject(m: &Mention) -> String {
    format!(
        "{} #{}: {}\n\n{}",
        if m.is_pull_request {
            "Pull request"
        } else {
            "Issue"
        },
        m.number,
        penguin_agent::strip_hidden(&m.title),
        penguin_agent::strip_hidden(&m.issue_body)
    )
}

/// `plan`: a Markdown checklist.
pub async fn plan(ctx: &BotContext, m: &Mention) -> BotResult<String> {
    let answer = ctx
        .ask(
            &m.repository,
            "You plan software work. Answer with a short plan as a Markdown checklist (`- [ ] step`), nothing else.",
            &subject(m),
        )
        .await?;
    Ok(ensure_checklist(&answer))
}

/// `summarize`: a few sentences.
pub async fn summarize(ctx: &BotContext, m: &Mention) -> BotResult<String> {
    ctx.ask(
        &m.repository,
        "Summarize this issue or pull request in a few sentences for a maintainer.",
        &subject(m),
    )
    .await
}

/// Anything else addressed to the bot: answered briefly.
pub async fn question(ctx: &BotContext, m: &Mention, question: &str) -> BotResult<String> {
    let prompt = format!(
        "{}\n\nQuestion from @{}: {}",
        subject(m),
        m.login,
        penguin_agent::strip_hidden(question)
    );
    ctx.ask(
            &m.repository,
            "You are Penguin, a coding assistant on GitHub. Answer the question about this issue or pull request briefly.",
            &prompt,
        )
        .await
}

/// `help`: the commands and which are enabled here.
pub fn help(config: &ServerConfig) -> String {
    let trigger = &config.github.bot.mention_trigger;
    format!(
        "Commands: `{trigger} review` (pull requests; `{trigger} review full` reviews everything again), `{trigger} plan`, `{trigger} summarize`, `{trigger} fix tests`, \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_become_checklists() {
        assert_eq!(ensure_checklist("1. a\n2. b"), "- [ ] a\n- [ ] b");
        assert_eq!(ensure_checklist("- [ ] a\n- [x] b"), "- [ ] a\n- [x] b");
    }
}
