//! GitHub REST for one repository, as the App's installation: a token
//! down-scoped to that repository comes from the tokenator over its Unix
//! socket (the API never holds the App key) and is revoked when the work ends.

use octocrab::Octocrab;
use penguin_proto::tokenator::v1::{
    installation_selector::Target, token_service_client::TokenServiceClient, GetAppInfoRequest,
    GetTokenRequest, InstallationSelector, RevokeTokenRequest,
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Why GitHub could not be reached for a repository.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No tokenator socket is configured.
    #[error("PENGUIN_TOKENATOR_SOCKET is not set: the bot needs the tokenator for GitHub tokens")]
    NoTokenator,
    /// The tokenator refused or could not be reached.
    #[error("tokenator: {0}")]
    Tokenator(String),
    /// octocrab could not be built.
    #[error("GitHub client: {0}")]
    Build(String),
}

/// The App's bot identity (for commit authorship and loop prevention).
#[derive(Clone, Debug)]
pub struct BotIdentity {
    /// `<slug>[bot]`.
    pub login: String,
    /// `<id>+<slug>[bot]@users.noreply.github.com`.
    pub email: String,
}

/// Live clients per repository. The tokenator caches scoped tokens per
/// scope, so concurrent work on one repository shares tokens: they are
/// revoked only when the last client for the repository finishes. Connects
/// and revocations are serialized so no client picks up a token that is
/// being revoked.
#[derive(Default)]
pub struct TokenUsers {
    live: tokio::sync::Mutex<HashMap<String, usize>>,
}

/// A client's current token and when to replace it.
struct Current {
    crab: Octocrab,
    refresh_at: SystemTime,
}

/// GitHub for one repository with a token down-scoped to it. The token is
/// replaced once half of its remaining life is gone (long commands outlive
/// one token), and every token used is revoked by [`RepoClient::finish`].
pub struct RepoClient {
    /// `owner`.
    pub owner: String,
    /// `repo`.
    pub repo: String,
    full_name: String,
    api_url: String,
    socket: PathBuf,
    permissions: Vec<(String, String)>,
    current: Mutex<Current>,
    used: Mutex<Vec<String>>,
    users: std::sync::Arc<TokenUsers>,
}

impl RepoClient {
    /// A token for `owner/repo` only, with `permissions`, and a client using it.
    pub async fn connect(
        socket: Option<&Path>,
        api_url: &str,
        full_name: &str,
        permissions: &[(&str, &str)],
        users: &std::sync::Arc<TokenUsers>,
    ) -> Result<RepoClient, ClientError> {
        let socket = socket.ok_or(ClientError::NoTokenator)?;
        let (owner, repo) = full_name
            .split_once('/')
            .ok_or_else(|| ClientError::Tokenator(format!("{full_name:?} is not owner/repo")))?;
        let permissions: Vec<(String, String)> = permissions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut live = users.live.lock().await;
        let (token, current) = fetch(socket, api_url, full_name, &permissions).await?;
        *live.entry(full_name.to_string()).or_default() += 1;
        drop(live);
        Ok(RepoClient {
            owner: owner.to_string(),
            repo: repo.to_string(),
            full_name: full_name.to_string(),
            api_url: api_url.to_string(),
            socket: socket.to_path_buf(),
            permissions,
            current: Mutex::new(current),
            used: Mutex::new(vec![token]),
            users: users.clone(),
        })
    }

    /// octocrab with a token that has at least half of its remaining life left.
    pub async fn crab(&self) -> Result<Octocrab, ClientError> {
        {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if SystemTime::now() < current.refresh_at {
                return Ok(current.crab.clone());
            }
        }
        let (token, fresh) = fetch(
            &self.socket,
            &self.api_url,
            &self.full_name,
            &self.permissions,
        )
        .await?;
        let crab = fresh.crab.clone();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(&token) {
            used.push(token);
        }
        Ok(crab)
    }

    /// Requests left in the installation's core REST window (`GET /rate_limit`,
    /// which does not count against it).
    pub async fn rate_limit_remaining(&self) -> Option<u64> {
        let crab = self.crab().await.ok()?;
        let limits = crab.ratelimit().get().await.ok()?;
        Some(limits.resources.core.remaining as u64)
    }

    /// Revokes every token this client used once no other client for the
    /// repository is live (best effort: they expire within the hour anyway).
    pub async fn finish(self) {
        let mut live = self.users.live.lock().await;
        let remaining = live.get_mut(&self.full_name).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if remaining.unwrap_or(0) > 0 {
            return;
        }
        live.remove(&self.full_name);
        let tokens = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        let Ok(channel) = penguin_proto::connect_unix(&self.socket).await else {
            tracing::warn!("could not revoke scoped tokens; they expire on their own");
            return;
        };
        let mut client = TokenServiceClient::new(channel);
        for token in tokens {
            if client
                .revoke_token(RevokeTokenRequest { token })
                .await
                .is_err()
            {
                tracing::warn!("could not revoke a scoped token; it expires on its own");
            }
        }
    }
}

/// A token from the tokenator for `owner/repo` only, with `permissions`.
pub async fn scoped_token(
    socket: &Path,
    full_name: &str,
    permissions: &[(String, String)],
) -> Result<penguin_proto::tokenator::v1::GetTokenResponse, ClientError> {
    let repo = full_name.split('/').nth(1).unwrap_or(full_name);
    let channel = penguin_proto::connect_unix(socket)
        .await
        .map_err(|e| ClientError::Tokenator(e.to_string()))?;
    Ok(TokenServiceClient::new(channel)
        .get_token(GetTokenRequest {
            installation: Some(InstallationSelector {
                target: Some(Target::Repository(full_name.to_string())),
            }),
            repositories: vec![repo.to_string()],
            permissions: permissions.iter().cloned().collect::<HashMap<_, _>>(),
        })
        .await
        .map_err(|s| ClientError::Tokenator(s.message().to_string()))?
        .into_inner())
}

/// A scoped token from the tokenator and an octocrab client using it.
async fn fetch(
    socket: &Path,
    api_url: &str,
    full_name: &str,
    permissions: &[(String, String)],
) -> Result<(String, Current), ClientError> {
    let answer = scoped_token(socket, full_name, permissions).await?;
    let now = SystemTime::now();
    let refresh_at = match answer.expires_at {
        Some(t) => {
            let expires = UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64);
            now + expires.duration_since(now).unwrap_or_default() / 2
        }
        // A fixed token (no known expiry): keep it.
        None => now + Duration::from_secs(3600),
    };
    let crab = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| ClientError::Build(e.to_string()))?
        .personal_token(answer.token.clone())
        .build()
        .map_err(|e| ClientError::Build(e.to_string()))?;
    Ok((answer.token, Current { crab, refresh_at }))
}

/// The App's bot user, from the tokenator's `GetAppInfo`.
pub async fn bot_identity(socket: &Path) -> Result<BotIdentity, ClientError> {
    let channel = penguin_proto::connect_unix(socket)
        .await
        .map_err(|e| ClientError::Tokenator(e.to_string()))?;
    let info = TokenServiceClient::new(channel)
        .get_app_info(GetAppInfoRequest {})
        .await
        .map_err(|s| ClientError::Tokenator(s.message().to_string()))?
        .into_inner();
    Ok(BotIdentity {
        login: info.bot_login,
        email: info.bot_email,
    })
}
