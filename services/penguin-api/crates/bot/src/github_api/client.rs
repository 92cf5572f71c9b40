//! GitHub REST for one repository, as the App's installation: a token
//! down-scoped to that repository comes from the tokenator (the bot never
//! holds the App key) and is released when the work ends. The tokenator
//! shares a token among everyone who asks for its scope, counts each
//! `GetToken` as one hold and revokes the token when the last hold is
//! released, so a client simply releases every token it got. Every call goes
//! through the shared [`RetryPolicy`] (rate limits waited out, idempotent
//! calls retried on 5xx), so the bot and the tokenator retry alike.

use super::tokens;
use crate::{BotError, BotResult};
use octocrab::Octocrab;
use penguin_github::{Repeat, RetryPolicy};
use std::{
    future::Future,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How the bot reaches GitHub: the tokenator's socket for tokens, the REST
/// base URL, and the retry policy. Built once; [`GitHubAccess::repo`] makes
/// a client for one repository.
#[derive(Clone)]
pub struct GitHubAccess {
    socket: Option<PathBuf>,
    api_url: String,
    retry: RetryPolicy,
}

impl GitHubAccess {
    /// Tokens from the tokenator at `socket`; REST at `api_url`.
    pub fn new(socket: Option<PathBuf>, api_url: &str) -> GitHubAccess {
        GitHubAccess {
            socket,
            api_url: api_url.to_string(),
            retry: bot_retry_policy(),
        }
    }

    /// A client for `full_name` (`owner/repo`) with a token carrying only
    /// `permissions`.
    pub async fn repo(
        &self,
        full_name: &str,
        permissions: &[(&str, &str)],
    ) -> BotResult<RepoClient> {
        RepoClient::connect(self, full_name, permissions).await
    }

    /// The App's bot identity.
    pub async fn bot_identity(&self) -> BotResult<tokens::BotIdentity> {
        tokens::bot_identity(self.socket()?).await
    }

    fn socket(&self) -> BotResult<&std::path::Path> {
        self.socket.as_deref().ok_or_else(|| {
            BotError::Config(
                "PENGUIN_TOKENATOR_SOCKET is not set: the bot needs the tokenator for GitHub tokens"
                    .into(),
            )
        })
    }
}

/// The bot's retries within one call: up to four attempts, from one second
/// doubling, at least as long as GitHub's `retry-after`. Longer outages are
/// the worker's to retry.
fn bot_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        max_wait: Duration::from_secs(120),
    }
}

/// A client's current token and when to replace it.
struct Current {
    crab: Octocrab,
    refresh_at: SystemTime,
}

/// GitHub for one repository with a token down-scoped to it. The token is
/// replaced once half of its remaining life is gone (long commands outlive
/// one token), and every token it got is released by [`RepoClient::finish`]:
/// one `RevokeToken` per `GetToken`.
pub struct RepoClient {
    /// `owner`.
    pub owner: String,
    /// `repo`.
    pub repo: String,
    full_name: String,
    access: GitHubAccess,
    permissions: Vec<(String, String)>,
    current: Mutex<Current>,
    /// Every token the tokenator handed this client, once per hand-out.
    used: Mutex<Vec<String>>,
}

impl RepoClient {
    async fn connect(
        access: &GitHubAccess,
        full_name: &str,
        permissions: &[(&str, &str)],
    ) -> BotResult<RepoClient> {
        access.socket()?;
        let (owner, repo) = full_name
            .split_once('/')
            .ok_or_else(|| BotError::Config(format!("{full_name:?} is not owner/repo")))?;
        let permissions: Vec<(String, String)> = permissions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (token, current) = fetch(access, full_name, &permissions).await?;
        Ok(RepoClient {
            owner: owner.to_string(),
            repo: repo.to_string(),
            full_name: full_name.to_string(),
            access: access.clone(),
            permissions,
            current: Mutex::new(current),
            used: Mutex::new(vec![token]),
        })
    }

    /// `owner/repo`.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// octocrab with a token that has at least half of its remaining life left.
    pub async fn crab(&self) -> BotResult<Octocrab> {
        {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if SystemTime::now() < current.refresh_at {
                return Ok(current.crab.clone());
            }
        }
        let (token, fresh) = fetch(&self.access, &self.full_name, &self.permissions).await?;
        let crab = fresh.crab.clone();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
        Ok(crab)
    }

    /// A read, update or delete (`what` names it in logs), retried under the
    /// shared policy. `call` gets a client with a fresh enough token.
    pub async fn call<T, F, Fut>(&self, what: &'static str, call: F) -> BotResult<T>
    where
        F: FnMut(Octocrab) -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        self.run(what, Repeat::Idempotent, call).await
    }

    /// A call that creates content (a comment, a review, a check run, a git
    /// object): retried only after rate limits, never after a 5xx that may
    /// have created it; the delivery's own retry covers those.
    pub async fn create<T, F, Fut>(&self, what: &'static str, call: F) -> BotResult<T>
    where
        F: FnMut(Octocrab) -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        self.run(what, Repeat::OnlyAfterRateLimits, call).await
    }

    async fn run<T, F, Fut>(&self, what: &'static str, repeat: Repeat, mut call: F) -> BotResult<T>
    where
        F: FnMut(Octocrab) -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        let crab = self.crab().await?;
        Ok(self
            .access
            .retry
            .run_octocrab(what, repeat, || call(crab.clone()))
            .await?)
    }

    /// Requests left in the installation's core REST window (`GET /rate_limit`,
    /// which does not count against it).
    pub async fn rate_limit_remaining(&self) -> Option<u64> {
        let crab = self.crab().await.ok()?;
        let limits = crab.ratelimit().get().await.ok()?;
        Some(limits.resources.core.remaining as u64)
    }

    /// Releases every token this client got, once per hand-out; the
    /// tokenator revokes a token when its last holder releases it (best
    /// effort: they expire within the hour anyway).
    pub async fn finish(self) {
        let tokens = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        if let Ok(socket) = self.access.socket() {
            tokens::revoke(socket, tokens).await;
        }
    }
}

/// A scoped token from the tokenator (one hold, to release with
/// `RevokeToken`) and an octocrab client using it.
async fn fetch(
    access: &GitHubAccess,
    full_name: &str,
    permissions: &[(String, String)],
) -> BotResult<(String, Current)> {
    let answer = tokens::scoped_token(access.socket()?, full_name, permissions).await?;
    let now = SystemTime::now();
    let refresh_at = match answer.expires_at {
        Some(t) => {
            let expires = UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64);
            now + expires.duration_since(now).unwrap_or_default() / 2
        }
        // A fixed token (no known expiry): keep it.
        None => now + Duration::from_secs(3600),
    };
    let build = |e: octocrab::Error| BotError::Config(format!("GitHub client: {e}"));
    let crab = Octocrab::builder()
        .base_uri(access.api_url.as_str())
        .map_err(build)?
        .personal_token(answer.token.clone())
        .build()
        .map_err(build)?;
    Ok((answer.token, Current { crab, refresh_at }))
}
