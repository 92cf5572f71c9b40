//! What can go wrong talking to GitHub, with hints naming the setting to fix.

use penguin_telemetry::redact;
use std::time::Duration;

/// A failed GitHub call. Messages quote GitHub's `message` field, redacted,
/// never a token or the request's credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitHubError {
    /// The connection failed.
    #[error("could not reach GitHub: {0}")]
    Transport(String),
    /// No answer in time.
    #[error("GitHub did not answer within {0:?}")]
    Timeout(Duration),
    /// GitHub failed (5xx).
    #[error("GitHub answered {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// A primary or secondary rate limit that lasts longer than we wait.
    #[error("GitHub rate limit ({status}: {message}); retry in {retry_after:?}")]
    RateLimited {
        /// HTTP status (403 or 429).
        status: u16,
        /// GitHub's message.
        message: String,
        /// How long GitHub asked us to wait.
        retry_after: Duration,
    },
    /// 401: the credentials were refused.
    #[error("GitHub rejected the credentials (401: {message}); {hint}")]
    Unauthorized {
        /// GitHub's message.
        message: String,
        /// Which setting to check.
        hint: String,
    },
    /// 403 that is not a rate limit (e.g. a suspended installation).
    #[error("GitHub refused the request (403: {message}); {hint}")]
    Forbidden {
        /// GitHub's message.
        message: String,
        /// Which setting to check.
        hint: String,
    },
    /// 404: the installation, repository or app does not exist (for us).
    #[error("not found on GitHub (404: {message}); {hint}")]
    NotFound {
        /// GitHub's message.
        message: String,
        /// Which setting to check.
        hint: String,
    },
    /// 422: GitHub refused the requested scope.
    #[error("GitHub refused the request (422: {message}); {hint}")]
    Unprocessable {
        /// GitHub's message.
        message: String,
        /// What to change.
        hint: String,
    },
    /// Any other unexpected status.
    #[error("GitHub answered {status}: {message}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// GitHub's answer did not have the expected shape.
    #[error("cannot read GitHub's answer to {what}: {reason}")]
    Decode {
        /// Which call.
        what: &'static str,
        /// What did not fit (redacted).
        reason: String,
    },
    /// The App JWT could not be signed.
    #[error("cannot sign the App JWT: {0}")]
    Jwt(String),
}

impl GitHubError {
    /// Worth retrying: the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GitHubError::Transport(_)
                | GitHubError::Timeout(_)
                | GitHubError::Server { .. }
                | GitHubError::RateLimited { .. }
        )
    }

    /// An octocrab call's failure, redacted, keeping GitHub's status (a rate
    /// limit becomes `RateLimited`, a 5xx `Server`, a connection failure
    /// `Transport`), so callers of octocrab classify failures as this crate does.
    pub fn from_octocrab(err: &octocrab::Error) -> Self {
        from_octocrab(err)
    }

    /// The HTTP status GitHub answered with, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Server { status, .. }
            | GitHubError::RateLimited { status, .. }
            | GitHubError::Unexpected { status, .. } => Some(*status),
            GitHubError::Unauthorized { .. } => Some(401),
            GitHubError::Forbidden { .. } => Some(403),
            GitHubError::NotFound { .. } => Some(404),
            GitHubError::Unprocessable { .. } => Some(422),
            _ => None,
        }
    }

    /// A short label for metrics (`result` label values).
    pub fn kind(&self) -> &'static str {
        match self {
            GitHubError::Transport(_) => "transport",
            GitHubError::Timeout(_) => "timeout",
            GitHubError::Server { .. } => "server_error",
            GitHubError::RateLimited { .. } => "rate_limited",
            GitHubError::Unauthorized { .. } => "unauthorized",
            GitHubError::Forbidden { .. } => "forbidden",
            GitHubError::NotFound { .. } => "not_found",
            GitHubError::Unprocessable { .. } => "unprocessable",
            GitHubError::Unexpected { .. } => "unexpected",
            GitHubError::Decode { .. } => "decode",
            GitHubError::Jwt(_) => "jwt",
        }
    }

    pub(crate) fn decode(what: &'static str, err: impl std::fmt::Display) -> Self {
        GitHubError::Decode {
            what,
            reason: redact(&err.to_string()).into_owned(),
        }
    }
}

/// Per-call hints: which setting a 401/403/404/422 points at.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hints {
    pub unauthorized: &'static str,
    pub forbidden: &'static str,
    pub not_found: &'static str,
    pub unprocessable: &'static str,
}

/// Extracts and redacts GitHub's `message` field (or a prefix of the body).
pub(crate) fn github_message(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let mut message = redact(&message).into_owned();
    if message.len() > 300 {
        let mut cut = 300;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

/// An octocrab call's failure as a [`GitHubError`], redacted. GitHub's
/// answers keep their status (a rate limit becomes `RateLimited`, a 5xx
/// `Server`); connection failures are `Transport`.
pub(crate) fn from_octocrab(err: &octocrab::Error) -> GitHubError {
    match err {
        octocrab::Error::GitHub { source, .. } => from_answer(
            source.status_code.as_u16(),
            source
                .headers
                .as_ref()
                .and_then(|h| h.get("retry-after"))
                .and_then(|v| v.to_str().ok()),
            &source.message,
        ),
        octocrab::Error::Serde { source, .. } => GitHubError::decode("a REST call", source),
        octocrab::Error::Json { source, .. } => GitHubError::decode("a REST call", source),
        octocrab::Error::Hyper { source, .. } => {
            GitHubError::Transport(redact(&source.to_string()).into_owned())
        }
        octocrab::Error::Service { source, .. } => {
            GitHubError::Transport(redact(&source.to_string()).into_owned())
        }
        octocrab::Error::Http { source, .. } => {
            GitHubError::Transport(redact(&source.to_string()).into_owned())
        }
        other => GitHubError::Unexpected {
            status: 0,
            message: redact(&first_line(&other.to_string())).into_owned(),
        },
    }
}

/// An error answer (`status`, its `retry-after`, GitHub's `message`) as a
/// [`GitHubError`]: a rate limit becomes `RateLimited`, the rest as
/// [`from_status`] maps them.
pub(crate) fn from_answer(status: u16, retry_after: Option<&str>, message: &str) -> GitHubError {
    let message = redact(message).into_owned();
    if status == 429 || (status == 403 && message.to_ascii_lowercase().contains("rate limit")) {
        return GitHubError::RateLimited {
            status,
            message,
            retry_after: retry_after
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs)
                .unwrap_or_default(),
        };
    }
    let body = serde_json::json!({ "message": message }).to_string();
    from_status(status, body.as_bytes(), &BOT_HINTS)
}

/// octocrab's messages end with a backtrace; only the first line says what happened.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Hints for calls made with an installation token on a repository.
const BOT_HINTS: Hints = Hints {
    unauthorized: "the installation token was refused (expired or revoked)",
    forbidden: "check the App's permissions on this repository",
    not_found: "the repository or resource does not exist or the App cannot see it",
    unprocessable: "GitHub refused the request's content",
};

/// Maps a final, non-success answer to an error carrying the hint.
pub(crate) fn from_status(status: u16, body: &[u8], hints: &Hints) -> GitHubError {
    let message = github_message(body);
    let hint = |h: &'static str| h.to_string();
    match status {
        401 => GitHubError::Unauthorized {
            message,
            hint: hint(hints.unauthorized),
        },
        403 => GitHubError::Forbidden {
            message,
            hint: hint(hints.forbidden),
        },
        404 => GitHubError::NotFound {
            message,
            hint: hint(hints.not_found),
        },
        422 => GitHubError::Unprocessable {
            message,
            hint: hint(hints.unprocessable),
        },
        500..=599 => GitHubError::Server { status, message },
        _ => GitHubError::Unexpected { status, message },
    }
}
