//! Where an installation token is minted:
//! `POST /app/installations/{id}/access_tokens` with the App's JWT, narrowed
//! to the scope's repositories and permissions when it names any.

use crate::{AppClient, GitHubError, InstallationToken, Token, TokenScope};
use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, time::SystemTime};

#[derive(Serialize)]
struct AccessTokenRequest<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repositories: Vec<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    permissions: BTreeMap<&'a str, &'a str>,
}

#[derive(Deserialize)]
struct AccessTokenAnswer {
    token: String,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
    #[serde(default)]
    repository_selection: Option<String>,
    #[serde(default)]
    repositories: Option<Vec<RepositoryName>>,
}

#[derive(Deserialize)]
struct RepositoryName {
    name: String,
}

impl AppClient {
    /// Mints an installation token for `scope`
    /// (`POST /app/installations/{id}/access_tokens`), narrowed to the
    /// scope's repositories and permissions when it names any.
    pub async fn create_installation_token(
        &self,
        scope: &TokenScope,
    ) -> Result<InstallationToken, GitHubError> {
        let request = AccessTokenRequest {
            repositories: scope.repositories.iter().map(String::as_str).collect(),
            permissions: scope
                .permissions
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let body =
            serde_json::to_value(&request).map_err(|e| GitHubError::decode("token request", e))?;
        let path = format!("/app/installations/{}/access_tokens", scope.installation_id);
        let response = self
            .app_call(
                "create installation token",
                Method::POST,
                &path,
                Some(&body),
                &self.jwt_hints(
                    "check GITHUB_APP_INSTALLATION_ID: the App has no such installation (or it was uninstalled)",
                    "the requested repositories or permissions exceed what the installation grants",
                ),
            )
            .await?;
        let answer: AccessTokenAnswer = serde_json::from_slice(&response.body)
            .map_err(|e| GitHubError::decode("create installation token", e))?;
        let expires_at = self
            .http()
            .clock()
            .to_local(SystemTime::from(answer.expires_at));
        Ok(InstallationToken {
            token: Token::new(answer.token),
            installation_id: scope.installation_id,
            issued_at: SystemTime::now(),
            expires_at,
            permissions: answer.permissions,
            repositories: answer
                .repositories
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect(),
            repository_selection: answer.repository_selection.unwrap_or_else(|| "all".into()),
        })
    }
}
