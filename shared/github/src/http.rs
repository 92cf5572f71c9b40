//! One GitHub REST call over octocrab's HTTP client: our own Authorization
//! header, a deadline, and bookkeeping of `Date` and rate-limit headers.

use crate::{
    answer::Response,
    clock::ServerClock,
    error::{from_status, Hints},
    retry::{self, RetryPolicy},
    GitHubError, Token,
};

use http::{header, HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

/// Where and how to reach GitHub's REST API.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Base URL, e.g. `https://api.github.com` or `https://ghe.example/api/v3`.
    pub api_url: String,
    /// Deadline for one request, answer body included.
    pub timeout: Duration,
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// Anonymous.
    None,
    /// An App JWT (`Authorization: Bearer`).
    Jwt(&'a str),
    /// An installation token or PAT (`Authorization: token`).
    Token(&'a Token),
}

/// One REST call: what it is for (in logs), the request, and the hints that
/// explain a 401/403/404/422.
pub(crate) struct Call<'a> {
    pub what: &'static str,
    pub method: Method,
    pub path: &'a str,
    pub auth: Auth<'a>,
    pub body: Option<&'a serde_json::Value>,
    pub hints: &'a Hints,
}

/// GitHub's REST API over octocrab's client (rustls, connection pooling).
/// octocrab's own auth is left unset: tokens and JWTs are attached per call,
/// so one client serves the App, every installation and every probe.
#[derive(Debug)]
pub struct GitHubHttp {
    crab: Octocrab,
    api_url: String,
    timeout: Duration,
    clock: Arc<ServerClock>,
    rate_limit_remaining: AtomicI64,
}

impl GitHubHttp {
    /// Builds the client; fails only if TLS roots cannot be loaded.
    pub fn new(settings: HttpSettings, clock: Arc<ServerClock>) -> Result<Self, GitHubError> {
        let crab = Octocrab::builder()
            .set_connect_timeout(Some(settings.timeout))
            .set_read_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| GitHubError::Transport(format!("cannot build HTTP client: {e}")))?;
        Ok(GitHubHttp {
            crab,
            api_url: settings.api_url.trim_end_matches('/').to_string(),
            timeout: settings.timeout,
            clock,
            rate_limit_remaining: AtomicI64::new(-1),
        })
    }

    /// The clock estimated from GitHub's `Date` headers.
    pub fn clock(&self) -> &Arc<ServerClock> {
        &self.clock
    }

    /// `x-ratelimit-remaining` of the latest authenticated answer, if any.
    pub fn rate_limit_remaining(&self) -> Option<i64> {
        Some(self.rate_limit_remaining.load(Ordering::Relaxed)).filter(|v| *v >= 0)
    }

    /// Sends one request (no retries). Transport failures and the deadline are
    /// errors; every HTTP status is an `Ok` answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, GitHubError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.api_url, path))
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(value) = authorization(auth)? {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = self.crab.build_request(builder, body).map_err(|e| {
            GitHubError::Transport(penguin_telemetry::redact(&e.to_string()).into_owned())
        })?;
        let call = async {
            let response = self.crab.execute(request).await.map_err(|e| {
                GitHubError::Transport(
                    penguin_telemetry::redact(&describe_octocrab(&e)).into_owned(),
                )
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| GitHubError::Transport(format!("reading answer: {e}")))?
                .to_bytes();
            Ok::<_, GitHubError>(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let response = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| GitHubError::Timeout(self.timeout))??;
        self.observe(&response.headers);
        Ok(response)
    }

    /// Like [`send`](Self::send) with retries per `policy`, mapping a final
    /// non-success status to an error with the call's hints.
    pub(crate) async fn call(
        &self,
        policy: &RetryPolicy,
        call: Call<'_>,
    ) -> Result<Response, GitHubError> {
        let response = retry::run(policy, &self.clock, call.what, || {
            self.send(call.method.clone(), call.path, call.auth, call.body)
        })
        .await?;
        success(response, call.hints)
    }

    /// Waits until a freshly minted token is accepted (GitHub's replication
    /// lag answers 401/403 for a few seconds), for at most `deadline`.
    pub async fn probe_token(&self, token: &Token, deadline: Duration) -> Result<(), GitHubError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let response = self
                .send(
                    Method::GET,
                    "/installation/repositories?per_page=1",
                    Auth::Token(token),
                    None,
                )
                .await;
            match response {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) if matches!(r.status.as_u16(), 401 | 403) => {
                    if started.elapsed() + pause > deadline {
                        return Err(from_status(r.status.as_u16(), &r.body, &Hints {
                            unauthorized: "the new token was still refused after the probe deadline (PENGUIN_TOKENATOR_PROBE_TIMEOUT_SECS)",
                            forbidden: "the new token was still refused after the probe deadline (PENGUIN_TOKENATOR_PROBE_TIMEOUT_SECS)",
                            ..Hints::default()
                        }));
                    }
                }
                Ok(r) => return Err(from_status(r.status.as_u16(), &r.body, &Hints::default())),
                Err(err) if err.is_transient() && started.elapsed() + pause <= deadline => {}
                Err(err) => return Err(err),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Revokes an installation token (`DELETE /installation/token`). A token
    /// GitHub no longer accepts counts as revoked.
    pub async fn revoke_token(
        &self,
        token: &Token,
        policy: &RetryPolicy,
    ) -> Result<(), GitHubError> {
        let response = retry::run(policy, &self.clock, "revoke token", || {
            self.send(
                Method::DELETE,
                "/installation/token",
                Auth::Token(token),
                None,
            )
        })
        .await?;
        match response.status.as_u16() {
            204 | 200 | 401 => Ok(()),
            status => Err(from_status(status, &response.body, &Hints::default())),
        }
    }

    fn observe(&self, headers: &HeaderMap) {
        if let Some(date) = headers.get(header::DATE).and_then(|v| v.to_str().ok()) {
            if self.clock.observe(date) {
                tracing::info!(
                    offset_ms = self.clock.offset_ms(),
                    "GitHub's clock differs from ours; correcting"
                );
            }
        }
        if let Some(remaining) = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.rate_limit_remaining
                .store(remaining, Ordering::Relaxed);
        }
    }
}

pub(crate) fn success(response: Response, hints: &Hints) -> Result<Response, GitHubError> {
    if response.status.is_success() {
        Ok(response)
    } else {
        Err(from_status(response.status.as_u16(), &response.body, hints))
    }
}

fn authorization(auth: Auth<'_>) -> Result<Option<HeaderValue>, GitHubError> {
    let value = match auth {
        Auth::None => return Ok(None),
        Auth::Jwt(jwt) => format!("Bearer {jwt}"),
        Auth::Token(token) => format!("token {}", token.expose()),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| GitHubError::Jwt("credential is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// octocrab's errors wrap hyper's; the chain names the real cause.
fn describe_octocrab(err: &octocrab::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
