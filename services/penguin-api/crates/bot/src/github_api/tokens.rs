//! The tokenator, asked over its Unix socket: tokens scoped to one
//! repository, their revocation, and the App's bot identity. The bot never
//! holds the App key.

use crate::{BotError, BotResult};
use penguin_proto::tokenator::v1::{
    installation_selector::Target, token_service_client::TokenServiceClient, GetAppInfoRequest,
    GetTokenRequest, GetTokenResponse, InstallationSelector, RevokeTokenRequest,
};
use std::{collections::HashMap, path::Path};

/// The App's bot identity (for commit authorship and loop prevention).
#[derive(Clone, Debug)]
pub struct BotIdentity {
    /// `<slug>[bot]`.
    pub login: String,
    /// `<id>+<slug>[bot]@users.noreply.github.com`.
    pub email: String,
}

async fn connect(socket: &Path) -> BotResult<TokenServiceClient<tonic::transport::Channel>> {
    let channel = penguin_proto::connect_unix(socket)
        .await
        .map_err(|e| BotError::Tokenator {
            message: format!("cannot reach {}: {e}", socket.display()),
            unavailable: true,
        })?;
    Ok(TokenServiceClient::new(channel))
}

/// A token from the tokenator for `owner/repo` only, with `permissions`.
pub async fn scoped_token(
    socket: &Path,
    full_name: &str,
    permissions: &[(String, String)],
) -> BotResult<GetTokenResponse> {
    let repo = full_name.split('/').nth(1).unwrap_or(full_name);
    Ok(connect(socket)
        .await?
        .get_token(GetTokenRequest {
            installation: Some(InstallationSelector {
                target: Some(Target::Repository(full_name.to_string())),
            }),
            repositories: vec![repo.to_string()],
            permissions: permissions.iter().cloned().collect::<HashMap<_, _>>(),
        })
        .await
        .map_err(|s| BotError::tokenator(&s))?
        .into_inner())
}

/// Releases `tokens`, one `RevokeToken` each (a token got twice is listed
/// twice): the tokenator revokes a token at GitHub when its last holder
/// releases it (best effort: they expire within the hour anyway).
pub async fn revoke(socket: &Path, tokens: Vec<String>) {
    let Ok(mut client) = connect(socket).await else {
        tracing::warn!("could not revoke scoped tokens; they expire on their own");
        return;
    };
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

/// The App's bot user, from the tokenator's `GetAppInfo`.
pub async fn bot_identity(socket: &Path) -> BotResult<BotIdentity> {
    let info = connect(socket)
        .await?
        .get_app_info(GetAppInfoRequest {})
        .await
        .map_err(|s| BotError::tokenator(&s))?
        .into_inner();
    Ok(BotIdentity {
        login: info.bot_login,
        email: info.bot_email,
    })
}
