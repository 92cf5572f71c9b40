//! What can stop a delivery, and whether trying it again later can help.

use penguin_api_store::StoreError;
use penguin_github::GitHubError;
use penguin_llm::LlmError;

/// A failure while handling a delivery. Every message is redacted before it
/// is logged, stored or posted.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// A GitHub REST call failed (after the call's own retries).
    #[error("GitHub: {0}")]
    GitHub(#[from] GitHubError),
    /// The tokenator could not be asked for a token, or refused one.
    #[error("tokenator: {message}")]
    Tokenator {
        /// What went wrong.
        message: String,
        /// The tokenator was unreachable or unavailable (not a refusal).
        unavailable: bool,
    },
    /// The store could not read or record something.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The model provider failed.
    #[error("model: {0}")]
    Model(#[from] LlmError),
    /// No model provider is configured.
    #[error("no model provider is configured on this server (MODEL_NOT_CONFIGURED)")]
    NoModel,
    /// A git operation (clone, commit, push) failed.
    #[error("{0}")]
    Git(#[from] crate::git::GitError),
    /// The payload of an event the bot acts on did not parse.
    #[error("{event} payload not understood: {reason}")]
    Payload {
        /// The `X-GitHub-Event`.
        event: String,
        /// Why.
        reason: String,
    },
    /// A configuration (the server's or the repository's) forbids or breaks it.
    #[error("{0}")]
    Config(String),
    /// The command itself failed for a reason a retry does not change (tests
    /// still fail, the model proposed nothing, a pre-hook refused, …).
    #[error("{0}")]
    Failed(String),
    /// Local disk or process trouble (work directories, hooks).
    #[error("{0}")]
    Io(String),
    /// penguin-runner could not run the test command.
    #[error("runner: {message}")]
    Runner {
        /// What went wrong.
        message: String,
        /// The runner was unreachable, busy or restarting (not a refusal).
        unavailable: bool,
    },
}

impl BotError {
    /// Whether the same delivery may succeed if it is tried again later:
    /// GitHub 5xx, rate limits, timeouts and transport failures, an
    /// unreachable tokenator, a model provider that failed or timed out, a
    /// store that could not write, a git network failure. Bad configuration,
    /// refusals (401/403/404/422), invalid payloads and failed commands are
    /// final.
    pub fn is_transient(&self) -> bool {
        match self {
            BotError::GitHub(e) => e.is_transient(),
            BotError::Tokenator { unavailable, .. } | BotError::Runner { unavailable, .. } => {
                *unavailable
            }
            BotError::Store(e) => matches!(e, StoreError::Db(_) | StoreError::Io(_)),
            BotError::Model(e) => match e {
                LlmError::Upstream { status, .. } => *status == 429 || *status >= 500,
                LlmError::Timeout(_) | LlmError::Transport(_) => true,
                LlmError::Decode(_) => false,
            },
            BotError::Git(e) => e.transient,
            BotError::NoModel
            | BotError::Payload { .. }
            | BotError::Config(_)
            | BotError::Failed(_)
            | BotError::Io(_) => false,
        }
    }

    /// The message, with every secret shape redacted.
    pub fn redacted(&self) -> String {
        penguin_telemetry::redact(&self.to_string()).into_owned()
    }

    /// A tokenator failure from a gRPC status: unreachable and unavailable
    /// are transient, refusals are not.
    pub fn tokenator(status: &tonic::Status) -> BotError {
        BotError::Tokenator {
            message: status.message().to_string(),
            unavailable: matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
            ),
        }
    }
}

/// The bot's results.
pub type BotResult<T> = Result<T, BotError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transient_failures_are_told_from_final_ones() {
        let transient = [
            BotError::GitHub(GitHubError::Server {
                status: 502,
                message: "Bad Gateway".into(),
            }),
            BotError::GitHub(GitHubError::Timeout(Duration::from_secs(10))),
            BotError::tokenator(&tonic::Status::unavailable("connection refused")),
            BotError::Store(StoreError::Db("database is locked".into())),
            BotError::Model(LlmError::Upstream {
                status: 503,
                message: "overloaded".into(),
            }),
            BotError::Model(LlmError::Timeout(Duration::from_secs(60))),
        ];
        for error in &transient {
            assert!(error.is_transient(), "{error}");
        }
        let permanent = [
            BotError::GitHub(GitHubError::Forbidden {
                message: "Resource not accessible by integration".into(),
                hint: String::new(),
            }),
            BotError::tokenator(&tonic::Status::permission_denied("not allowed")),
            BotError::Store(StoreError::Invalid("bad".into())),
            BotError::Model(LlmError::Upstream {
                status: 400,
                message: "bad request".into(),
            }),
            BotError::NoModel,
            BotError::Payload {
                event: "issue_comment".into(),
                reason: "missing field".into(),
            },
            BotError::Config("invalid".into()),
            BotError::Failed("tests still fail".into()),
        ];
        for error in &permanent {
            assert!(!error.is_transient(), "{error}");
        }
    }
}
