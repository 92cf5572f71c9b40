//! The first stage: a stored delivery becomes a [`Mention`] (a comment,
//! review or review comment that may hold a command, or an operator-configured
//! automatic review), or is ignored with a reason.

use crate::{config::ServerConfig, BotError, BotResult};
use octocrab::models::webhook_events::{
    payload::{
        IssueCommentWebhookEventAction, PullRequestReviewCommentWebhookEventAction,
        PullRequestReviewWebhookEventAction,
    },
    WebhookEvent, WebhookEventPayload,
};
use penguin_api_store::Delivery;

/// Events the bot acts on: their payloads must parse.
const ACTED_ON: &[&str] = &[
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
];

/// Where the 👀 reaction goes.
#[derive(Clone, Copy, Debug)]
pub enum ReactTo {
    /// An issue or pull-request conversation comment.
    IssueComment(u64),
    /// A line comment in a pull-request review.
    ReviewComment(u64),
    /// A review body: GitHub has no reactions for reviews.
    Nothing,
}

/// A mention in a comment, with what the gates need.
#[derive(Clone, Debug)]
pub struct Mention {
    /// An automatic review configured by the operator (no commenter to gate).
    pub automatic: bool,
    /// `owner/repo`.
    pub repository: String,
    /// Deduplication key: the comment's (or review's) id.
    pub comment_id: u64,
    /// Where the 👀 goes.
    pub react_to: ReactTo,
    /// The comment's text.
    pub body: String,
    /// Its author.
    pub login: String,
    /// Whether the author (or the sender) is a bot.
    pub is_bot: bool,
    /// `author_association` as GitHub spells it.
    pub association: String,
    /// The issue or pull request number.
    pub number: u64,
    /// Whether it is a pull request.
    pub is_pull_request: bool,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its title.
    pub title: String,
    /// Its body.
    pub issue_body: String,
    /// Whether the repository belongs to an organization.
    pub org_owned: bool,
}

/// What a delivery is for the bot.
#[derive(Debug)]
pub enum Event {
    /// A comment, review or review comment that may hold a command.
    Mention(Mention),
    /// A pull request event the operator configured an automatic review
    /// for, with the key it is claimed under: one review per repository,
    /// pull request, head commit and action, however often the payload is
    /// delivered (a replayed body carries a new GUID).
    AutoReview(Mention, String),
    /// Nothing to do; the note says why.
    Ignored(String),
}

/// Reads a stored delivery.
pub fn read(delivery: &Delivery, config: &ServerConfig) -> BotResult<Event> {
    let action = delivery.action.as_deref().unwrap_or_default();
    if delivery.event == "pull_request" && !auto_review_configured(config, action) {
        return Ok(Event::Ignored(format!(
            "pull_request.{action}: no automatic review configured"
        )));
    }
    let event = match WebhookEvent::try_from_header_and_body(&delivery.event, &delivery.payload) {
        Ok(event) => event,
        Err(err) if ACTED_ON.contains(&delivery.event.as_str()) => {
            return Err(BotError::Payload {
                event: delivery.event.clone(),
                reason: err.to_string(),
            })
        }
        // Events the bot does not act on need not fit octocrab's models.
        Err(err) => {
            return Ok(Event::Ignored(format!(
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
    Ok(match event.specific {
        WebhookEventPayload::IssueComment(p)
            if p.action == IssueCommentWebhookEventAction::Created =>
        {
            Event::Mention(Mention {
                automatic: false,
                repository,
                comment_id: p.comment.id.0,
                react_to: ReactTo::IssueComment(p.comment.id.0),
                body: p.comment.body.clone().unwrap_or_default(),
                is_bot: sender_is_bot || p.comment.user.r#type == "Bot",
                login: p.comment.user.login.clone(),
                association: association_of(p.comment.author_association.as_ref()),
                number: p.issue.number,
                is_pull_request: p.issue.pull_request.is_some(),
                labels: p.issue.labels.iter().map(|l| l.name.clone()).collect(),
                title: p.issue.title.clone(),
                issue_body: p.issue.body.clone().unwrap_or_default(),
                org_owned,
            })
        }
        WebhookEventPayload::PullRequestReview(p)
            if p.action == PullRequestReviewWebhookEventAction::Submitted =>
        {
            let Some(user) = p.review.user.clone() else {
                return Ok(Event::Ignored("review without an author".into()));
            };
            Event::Mention(pr_mention(
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
            ))
        }
        WebhookEventPayload::PullRequestReviewComment(p)
            if p.action == PullRequestReviewCommentWebhookEventAction::Created =>
        {
            let Some(user) = p.comment.user.clone() else {
                return Ok(Event::Ignored("review comment without an author".into()));
            };
            Event::Mention(pr_mention(
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
            ))
        }
        WebhookEventPayload::PullRequest(p) => {
            auto_review(&p.pull_request, repository, org_owned, config, action)
        }
        _ => Event::Ignored(format!(
            "{}{} is not acted on",
            delivery.event,
            delivery
                .action
                .as_deref()
                .map(|a| format!(".{a}"))
                .unwrap_or_default()
        )),
    })
}

/// A pull request event: an automatic review when the operator configured
/// one for this action (and label), never for drafts.
fn auto_review(
    pull: &octocrab::models::pulls::PullRequest,
    repository: String,
    org_owned: bool,
    config: &ServerConfig,
    action: &str,
) -> Event {
    let bot = &config.github.bot;
    let labels: Vec<String> = pull
        .labels
        .iter()
        .flatten()
        .map(|l| l.name.clone())
        .collect();
    if !auto_review_configured(config, action) {
        return Event::Ignored(format!(
            "pull_request.{action}: no automatic review configured"
        ));
    }
    if bot
        .auto_review_label
        .as_ref()
        .is_some_and(|label| !labels.contains(label))
    {
        return Event::Ignored("automatic review: the pull request lacks the label".into());
    }
    if pull.draft == Some(true) {
        return Event::Ignored("automatic review: draft pull request".into());
    }
    let author = pull
        .user
        .as_ref()
        .map(|u| u.login.clone())
        .unwrap_or_default();
    let mut mention = pr_mention(
        pull,
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
    let claim = format!(
        "auto_review:{}#{}@{}:{action}",
        mention.repository, mention.number, pull.head.sha
    );
    Event::AutoReview(mention, claim)
}

fn auto_review_configured(config: &ServerConfig, action: &str) -> bool {
    config.github.bot.auto_review_on.iter().any(|a| a == action)
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
