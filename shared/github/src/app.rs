//! Calls made as the App (JWT-authenticated): its JWTs, finding a
//! repository's installation, describing the App. Minting installation
//! tokens is in [`crate::mint`].

use crate::{
    error::Hints,
    http::{Auth, Call, GitHubHttp},
    key::AppKey,
    retry::RetryPolicy,
    GitHubError,
};
use http::Method;
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

/// GitHub tolerates `iat` this far in the past, which absorbs small skew.
const IAT_BACKDATE: Duration = Duration::from_secs(60);
/// Libraries use nine minutes; GitHub's ceiling is ten.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);

/// The App's identity and its bot user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInfo {
    /// The App id.
    pub app_id: u64,
    /// URL-friendly name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `<slug>[bot]`.
    pub bot_login: String,
    /// The bot user's id.
    pub bot_user_id: u64,
}

impl AppInfo {
    /// The commit e-mail GitHub attributes to the bot.
    pub fn bot_email(&self) -> String {
        format!(
            "{}+{}@users.noreply.github.com",
            self.bot_user_id, self.bot_login
        )
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

/// The GitHub App: signs JWTs with its key and makes App-level calls.
#[derive(Debug)]
pub struct AppClient {
    http: Arc<GitHubHttp>,
    key: AppKey,
    issuer: String,
    retry: RetryPolicy,
}

impl AppClient {
    /// `issuer` is the App id or its client id (the JWT `iss`).
    pub fn new(http: Arc<GitHubHttp>, key: AppKey, issuer: String, retry: RetryPolicy) -> Self {
        AppClient {
            http,
            key,
            issuer,
            retry,
        }
    }

    /// The HTTP client, for token-authenticated calls (probe, revoke).
    pub fn http(&self) -> &Arc<GitHubHttp> {
        &self.http
    }

    /// The retry policy used for App calls.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Swaps in a new private key (after the key file changed).
    pub fn with_key(&self, key: AppKey) -> Self {
        AppClient {
            http: self.http.clone(),
            key,
            issuer: self.issuer.clone(),
            retry: self.retry.clone(),
        }
    }

    /// Signs an App JWT valid on GitHub's clock: `iat` one minute back,
    /// `exp` nine minutes ahead.
    pub fn jwt(&self) -> Result<String, GitHubError> {
        let now = self
            .http
            .clock()
            .server_now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            iat: (now - IAT_BACKDATE.min(now)).as_secs(),
            exp: (now + JWT_LIFETIME).as_secs(),
            iss: &self.issuer,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            self.key.encoding_key(),
        )
        .map_err(|e| GitHubError::Jwt(e.to_string()))
    }

    /// One App-authenticated call with retries. A 401 right after GitHub's
    /// `Date` revealed a clock skew is retried once with a re-signed JWT.
    pub(crate) async fn app_call(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        hints: &Hints,
    ) -> Result<crate::answer::Response, GitHubError> {
        let mut skew_retry_left = true;
        loop {
            let offset_before = self.http.clock().offset_ms();
            let jwt = self.jwt()?;
            let call = Call {
                what,
                method: method.clone(),
                path,
                auth: Auth::Jwt(&jwt),
                body,
                hints,
            };
            let result = self.http.call(&self.retry, call).await;
            match result {
                Err(GitHubError::Unauthorized { .. })
                    if skew_retry_left && self.http.clock().offset_ms() != offset_before =>
                {
                    tracing::info!(call = what, "retrying with a JWT signed on GitHub's clock");
                    skew_retry_left = false;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn jwt_hints(&self, not_found: &'static str, unprocessable: &'static str) -> Hints {
        Hints {
            unauthorized: "check GITHUB_APP_ID (or GITHUB_APP_CLIENT_ID) and that GITHUB_APP_PRIVATE_KEY_PATH holds this App's current key",
            forbidden: "the installation may be suspended, or the App lacks access",
            not_found,
            unprocessable,
        }
    }

    /// The installation that covers `owner/repo`
    /// (`GET /repos/{owner}/{repo}/installation`).
    pub async fn repository_installation(
        &self,
        owner: &str,
        repo: &str,
    ) -> Result<u64, GitHubError> {
        let path = format!("/repos/{owner}/{repo}/installation");
        let response = self
            .app_call(
                "find repository installation",
                Method::GET,
                &path,
                None,
                &self.jwt_hints(
                    "the App is not installed on this repository (check GITHUB_REPOSITORY)",
                    "",
                ),
            )
            .await?;
        let installation: octocrab::models::Installation =
            serde_json::from_slice(&response.body)
                .map_err(|e| GitHubError::decode("find repository installation", e))?;
        Ok(installation.id.0)
    }

    /// The App and its bot user (`GET /app`, `GET /users/<slug>[bot]`).
    pub async fn app_info(&self) -> Result<AppInfo, GitHubError> {
        let hints = self.jwt_hints("the App was not found", "");
        let response = self
            .app_call("get app", Method::GET, "/app", None, &hints)
            .await?;
        let app: octocrab::models::apps::App = serde_json::from_slice(&response.body)
            .map_err(|e| GitHubError::decode("get app", e))?;
        let slug = app
            .slug
            .clone()
            .ok_or_else(|| GitHubError::decode("get app", "the App has no slug"))?;
        let bot_login = format!("{slug}[bot]");
        let response = self
            .http
            .call(
                &self.retry,
                Call {
                    what: "get bot user",
                    method: Method::GET,
                    path: &format!("/users/{slug}%5Bbot%5D"),
                    auth: Auth::None,
                    body: None,
                    hints: &Hints {
                        not_found: "the App's bot user does not exist",
                        ..Hints::default()
                    },
                },
            )
            .await?;
        let bot: octocrab::models::Author = serde_json::from_slice(&response.body)
            .map_err(|e| GitHubError::decode("get bot user", e))?;
        Ok(AppInfo {
            app_id: app.id.0,
            slug,
            name: app.name,
            bot_login,
            bot_user_id: bot.id.0,
        })
    }
}
