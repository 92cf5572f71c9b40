//! GitHub REST for one repository, as the App's installation: a token
//! down-scoped to that repository comes from the tokenator over its Unix
//! socket (the API never holds the App key) and is revoked when the work ends.

use octocrab::Octocrab;
use penguin_proto::tokenator::v1::{
    installation_selector::Target, token_service_client::TokenServiceClient, GetAppInfoRequest,
    GetTokenRequest, InstallationSelector, RevokeTokenRequest,
};
use std::{collections::HashMap, path::Path};

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

/// An octocrab client for one repository plus the scoped token to revoke.
pub struct RepoClient {
    /// octocrab with the scoped installation token.
    pub crab: Octocrab,
    /// `owner`.
    pub owner: String,
    /// `repo`.
    pub repo: String,
    token: String,
    socket: std::path::PathBuf,
}

impl RepoClient {
    /// A token for `owner/repo` only, with `permissions`, and a client using it.
    pub async fn connect(
        socket: Option<&Path>,
        api_url: &str,
        full_name: &str,
        permissions: &[(&str, &str)],
    ) -> Result<RepoClient, ClientError> {
        let socket = socket.ok_or(ClientError::NoTokenator)?;
        let (owner, repo) = full_name
            .split_once('/')
            .ok_or_else(|| ClientError::Tokenator(format!("{full_name:?} is not owner/repo")))?;
        let channel = penguin_proto::connect_unix(socket)
            .await
            .map_err(|e| ClientError::Tokenator(e.to_string()))?;
        let answer = TokenServiceClient::new(channel)
            .get_token(GetTokenRequest {
                installation: Some(InstallationSelector {
                    target: Some(Target::Repository(full_name.to_string())),
                }),
                repositories: vec![repo.to_string()],
                permissions: permissions
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            })
            .await
            .map_err(|s| ClientError::Tokenator(s.message().to_string()))?
            .into_inner();
        let crab = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| ClientError::Build(e.to_string()))?
            .personal_token(answer.token.clone())
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(RepoClient {
            crab,
            owner: owner.to_string(),
            repo: repo.to_string(),
            token: answer.token,
            socket: socket.to_path_buf(),
        })
    }

    /// Revokes the scoped token (best effort: it expires within the hour anyway).
    pub async fn finish(self) {
        let revoke = async {
            let channel = penguin_proto::connect_unix(&self.socket).await.ok()?;
            TokenServiceClient::new(channel)
                .revoke_token(RevokeTokenRequest { token: self.token })
                .await
                .ok()
        };
        if revoke.await.is_none() {
            tracing::warn!("could not revoke a scoped token; it expires on its own");
        }
    }
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
