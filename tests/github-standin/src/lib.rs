//! A test-only stand-in for GitHub's REST API and git smart HTTP.
//!
//! It implements the small part of GitHub that a GitHub App installation-token minting service
//! talks to — App JWT authentication, installation lookups, installation access tokens with
//! down-scoping, rate-limit headers — plus git over HTTP (served by the real
//! `git http-backend`) authenticated with those tokens. Behaviour follows
//! `docs/github-app-facts.md`; JSON bodies have GitHub's real shapes so `octocrab` models parse
//! them.
//!
//! Tests start it in-process with [`StandIn::start`], steer it with the fault-injection methods
//! (for example [`StandIn::fail_next_mints`] or [`StandIn::set_down`]) and observe what happened
//! with [`StandIn::mint_requests`], [`StandIn::tokens_issued`] and friends. The `github-standin`
//! binary runs the same server from environment variables.

#![warn(missing_docs)]

mod api;
mod auth;
mod git;
mod mint;
mod objects;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::Shared;

/// Configuration of a [`StandIn`].
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// The GitHub App's numeric ID (e.g. 4242). A JWT's `iss` may carry it as a string or an
    /// integer.
    pub app_id: u64,
    /// The App's client ID (e.g. `Iv1.penguintest0001`), also accepted as a JWT `iss`.
    pub client_id: String,
    /// The App's slug (e.g. `penguin-agent`); its bot user is `<slug>[bot]`.
    pub app_slug: String,
    /// The App's public key as an SPKI `BEGIN PUBLIC KEY` PEM, used to verify App JWTs.
    pub app_public_key_pem: String,
    /// The App's installations.
    pub installations: Vec<InstallationSpec>,
    /// Lifetime of minted installation tokens (GitHub: one hour).
    pub token_ttl: Duration,
    /// A new token answers 401 (API and git) until this much time has passed since it was minted.
    pub replication_lag: Duration,
    /// The stand-in's clock is the real clock plus this many seconds. It drives the `Date`
    /// header, App JWT checks and token expiry.
    pub clock_skew_secs: i64,
    /// Bare repositories live at `{git_root}/{owner}/{repo}.git`.
    pub git_root: PathBuf,
    /// Requests per hour allowed for each installation token and for the App (JWT) identity.
    pub rate_limit_per_hour: u32,
}

impl StandInConfig {
    /// A configuration with sensible defaults: client ID `Iv1.penguintest0001`, slug
    /// `penguin-agent`, one installation (ID 1001) on the organization `octo-org` covering
    /// `hello-world` and `other-repo` with contents, pull requests, issues and checks `write` and
    /// metadata `read`; tokens live 3600 s, no replication lag, no clock skew, 5000 requests per
    /// hour.
    pub fn new(app_id: u64, app_public_key_pem: impl Into<String>, git_root: PathBuf) -> Self {
        let permissions = [
            ("contents", "write"),
            ("pull_requests", "write"),
            ("issues", "write"),
            ("checks", "write"),
            ("metadata", "read"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        StandInConfig {
            app_id,
            client_id: "Iv1.penguintest0001".to_string(),
            app_slug: "penguin-agent".to_string(),
            app_public_key_pem: app_public_key_pem.into(),
            installations: vec![InstallationSpec {
                id: 1001,
                account: "octo-org".to_string(),
                repositories: vec!["hello-world".to_string(), "other-repo".to_string()],
                permissions,
            }],
            token_ttl: Duration::from_secs(3600),
            replication_lag: Duration::ZERO,
            clock_skew_secs: 0,
            git_root,
            rate_limit_per_hour: 5000,
        }
    }
}

/// One installation of the App on an account (organization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationSpec {
    /// The installation ID.
    pub id: u64,
    /// The login of the organization the App is installed on.
    pub account: String,
    /// Names (without owner) of the repositories the installation can access.
    pub repositories: Vec<String>,
    /// The installation's permissions, e.g. `contents` → `write`.
    pub permissions: BTreeMap<String, String>,
}

/// A fault to answer mint requests with (see [`StandIn::fail_next_mints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a GitHub-shaped JSON error body (e.g. 500, 502, 503).
    Status(u16),
    /// 403 secondary rate limit with a `retry-after` header.
    RateLimited {
        /// Value of the `retry-after` header.
        retry_after_secs: u64,
    },
    /// 403 primary rate limit: `x-ratelimit-remaining: 0`, `x-ratelimit-reset` = now + this.
    PrimaryRateLimit {
        /// Seconds until `x-ratelimit-reset`.
        reset_in_secs: u64,
    },
    /// 429 with a `retry-after` header.
    TooManyRequests {
        /// Value of the `retry-after` header.
        retry_after_secs: u64,
    },
    /// Sleep this long, then answer normally (a slow GitHub, or a client timeout).
    Delay(Duration),
}

/// One mint request (`POST /app/installations/{id}/access_tokens`) that passed App JWT
/// authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRecord {
    /// The installation ID from the URL.
    pub installation_id: u64,
    /// The requested `repositories` (names), if the body had them.
    pub repositories: Option<Vec<String>>,
    /// The requested `permissions`, if the body had them.
    pub permissions: Option<BTreeMap<String, String>>,
    /// The status answered; 499 while unanswered or if the client went away first.
    pub status: u16,
}

/// A running stand-in server. Dropping it shuts the server down, including open connections.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    /// Starts the stand-in on `127.0.0.1` with an ephemeral port.
    pub async fn start(config: StandInConfig) -> anyhow::Result<StandIn> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the stand-in on the given address.
    pub async fn start_on(config: StandInConfig, addr: SocketAddr) -> anyhow::Result<StandIn> {
        let shared = Arc::new(Shared::new(config)?);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let router = api::router(shared.clone());
        let task = tokio::spawn(api::serve(listener, router));
        tracing::debug!(%addr, "GitHub stand-in listening");
        Ok(StandIn { shared, addr, task })
    }

    /// `http://127.0.0.1:PORT`: both the API base URL and the git server URL
    /// (`{url}/{owner}/{repo}.git`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `n` mint requests (after those already queued) answer with `fault`.
    pub fn fail_next_mints(&self, n: usize, fault: Fault) {
        self.shared
            .with(|s| s.faults.extend(std::iter::repeat_n(fault, n)));
    }

    /// While down, every API route (not git) answers 503 `{"message":"Service Unavailable"}`.
    pub fn set_down(&self, down: bool) {
        self.shared.with(|s| s.down = down);
    }

    /// Lifetime of tokens minted from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.with(|s| s.token_ttl = ttl);
    }

    /// Replication lag of tokens minted from now on.
    pub fn set_replication_lag(&self, lag: Duration) {
        self.shared.with(|s| s.replication_lag = lag);
    }

    /// The stand-in's clock becomes the real clock plus `skew` seconds.
    pub fn set_clock_skew_secs(&self, skew: i64) {
        self.shared.with(|s| s.clock_skew_secs = skew);
    }

    /// Suspends an installation: minting answers 403 and its tokens stop working.
    pub fn suspend_installation(&self, id: u64) {
        let now = self.shared.now();
        self.shared.with(|s| {
            if let Some(inst) = s.installation_mut(id) {
                inst.suspended_at.get_or_insert(now);
            }
        });
    }

    /// Deletes (uninstalls) an installation: minting and lookups answer 404 and its tokens stop
    /// working.
    pub fn delete_installation(&self, id: u64) {
        self.shared.with(|s| {
            if let Some(inst) = s.installation_mut(id) {
                inst.deleted = true;
            }
        });
    }

    /// Every mint request that passed App JWT authentication, in arrival order (including those
    /// answered with an injected fault).
    pub fn mint_requests(&self) -> Vec<MintRecord> {
        self.shared.with(|s| s.mints.clone())
    }

    /// Every token ever issued, in order.
    pub fn tokens_issued(&self) -> Vec<String> {
        self.shared.with(|s| s.issued.clone())
    }

    /// Whether `token` was issued, has not expired or been revoked, and its installation is
    /// active. Replication lag is not considered.
    pub fn is_token_live(&self, token: &str) -> bool {
        let now = self.shared.now();
        self.shared.with(|s| s.token_live(token, now))
    }

    /// Tokens revoked through `DELETE /installation/token`, in order.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.shared.with(|s| s.revoked.clone())
    }

    /// How many requests were answered 401 because of a bad App JWT.
    pub fn jwt_rejections(&self) -> usize {
        self.shared.with(|s| s.jwt_rejections)
    }

    /// How many git requests carrying credentials were answered 401 (bad, expired or lagging
    /// token). Anonymous challenge 401s are not counted.
    pub fn git_auth_failures(&self) -> usize {
        self.shared.with(|s| s.git_auth_failures)
    }

    /// How many `git-receive-pack` POSTs `git http-backend` answered successfully.
    pub fn git_pushes(&self) -> usize {
        self.shared.with(|s| s.git_pushes)
    }

    /// Creates `{git_root}/{owner}/{repo}.git` as a bare repository (default branch `main`) with
    /// `http.receivepack` enabled, and returns its path. An existing repository is kept.
    pub fn create_repo(&self, owner: &str, repo: &str) -> anyhow::Result<PathBuf> {
        create_bare_repo(&self.shared.git_root, owner, repo)
    }
}

/// Creates `{git_root}/{owner}/{repo}.git` (see [`StandIn::create_repo`]).
fn create_bare_repo(git_root: &Path, owner: &str, repo: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        git::valid_name(owner) && git::valid_name(repo),
        "invalid repository name {owner}/{repo}"
    );
    let path = git_root.join(owner).join(format!("{repo}.git"));
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("git")
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .context("running git")?;
        anyhow::ensure!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let dir = path.to_string_lossy().into_owned();
    if !path.join("HEAD").exists() {
        run(&["init", "--quiet", "--bare", "--initial-branch=main", &dir])?;
    }
    run(&["-C", &dir, "config", "http.receivepack", "true"])?;
    Ok(path)
}
