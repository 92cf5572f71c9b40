//! Where the bot touches git: credentials for every network operation
//! ([`auth`]), [`clone`], local commits ([`commit`]), [`push`], and commits
//! GitHub makes and signs through its Git Data API ([`api_commit`]). The
//! self-test pushes through the same functions as a fix.

pub mod api_commit;
pub mod auth;
pub mod clone;
pub mod commit;
pub mod push;

pub use auth::{GitAuth, TokenSource};

/// A git operation that failed, and whether it may work later.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GitError {
    /// What failed, redacted.
    pub message: String,
    /// A network, TLS or credentials-source failure that may pass.
    pub transient: bool,
}

impl GitError {
    /// `what` failed with libgit2's `err`; network-class errors are transient.
    pub fn git2(what: &str, err: &git2::Error) -> GitError {
        let transient = matches!(
            err.class(),
            git2::ErrorClass::Net
                | git2::ErrorClass::Http
                | git2::ErrorClass::Ssl
                | git2::ErrorClass::Os
                | git2::ErrorClass::Callback
        ) || err.code() == git2::ErrorCode::Auth;
        GitError {
            message: penguin_telemetry::redact(&format!("{what}: {}", err.message())).into_owned(),
            transient,
        }
    }

    /// A final failure with `message`.
    pub fn other(message: impl Into<String>) -> GitError {
        GitError {
            message: message.into(),
            transient: false,
        }
    }
}

/// Runs blocking git work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| GitError::other(format!("git work panicked or was cancelled: {e}")))?
}
