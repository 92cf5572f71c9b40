//! A test-only stand-in for GitHub's REST API and git smart HTTP.
//!
//! It implements the small part of GitHub that a GitHub App installation-token minting service
//! talks to — App JWT authentication, installation lookups, installation access tokens with
//! down-scoping, rate-limit headers — plus git over HTTP (served by the real
//! `git http-backend`) authenticated with those tokens. Tokens are GitHub's stateless
//! `ghs_<app id>_<JWT>` (about 520 characters, with `-`, `_` and `.`) unless
//! [`StandInConfig::token_format`] or the mint request's `X-GitHub-Stateless-S2S-Token: disabled`
//! asks for the classic `ghs_` + 36 alphanumerics ([`TokenFormat`]). Behaviour follows
//! `docs/github-app-facts.md`; JSON bodies have GitHub's real shapes so `octocrab` models parse
//! them.
//!
//! It also serves the REST routes a GitHub App bot uses on a repository — issues, issue
//! comments, reactions, labels, check runs, pull requests and their files, reviews with inline
//! comments checked against the diff as GitHub checks them, review comments and replies, and
//! collaborator permissions — over state seeded with [`StandIn::add_issue`],
//! [`StandIn::add_pull`] and friends. A pull request seeded without files, or created through
//! the API, has the files of its real diff in the bare repository (GitHub's three-dot diff with
//! rename detection). It serves repository contents (`GET /repos/{owner}/{repo}/contents`),
//! comparisons of two commits (`GET /repos/{owner}/{repo}/compare/{base}...{head}`) and the Git
//! Data API (blobs, trees, commits, refs under `/repos/{owner}/{repo}/git/`) over the real bare
//! repositories, with commits the App leaves unattributed signed as its bot
//! ([`StandIn::verified_commits`]); and team memberships
//! (`GET /orgs/{org}/teams/{team}/memberships/{user}`, seeded with
//! [`StandIn::add_team_member`]). Those calls need an installation token that can see the
//! repository (or is installed on the organization) and has the permission the route needs
//! (contents `read`/`write`, members `read`, ...), are recorded ([`StandIn::calls`]) and can be
//! failed with [`StandIn::fail_next_calls`].
//!
//! Like GitHub, it sends the App's webhooks: when a comment, pull request or label is added (or
//! a pull request is pushed to or edited) through the API or the test-side methods, it posts
//! GitHub's payload for the event to [`StandInConfig::webhook_url`], signed with
//! `X-Hub-Signature-256`, from a background task, in order. Every attempt is in the delivery
//! log ([`StandIn::deliveries`], `GET /app/hook/deliveries`), and failed ones can be redelivered
//! (`POST /app/hook/deliveries/{id}/attempts`); GitHub itself never retries.
//!
//! People act over HTTP with personal access tokens ([`StandInConfig::user_tokens`],
//! [`StandIn::add_user_token`]), as with a classic PAT with the `repo` scope on GitHub: a REST
//! call with `Authorization: token <pat>` (or `Bearer <pat>`) reads and writes the issues,
//! comments, labels, pull requests, reviews and contents of every repository the stand-in serves
//! (those of its installations) as that user — what it creates is theirs, and the App's
//! webhooks name them as `sender` — while the App-only routes refuse it: `/app/...` answers 401,
//! `/installation/...` 403, and creating or updating check runs 403 `You must authenticate via a
//! GitHub App.`. Each user has a rate limit of its own, and `GET /user` names them. Git over HTTP
//! takes a PAT as the Basic password (with any user name).
//!
//! Tests start it in-process with [`StandIn::start`], steer it with the fault-injection methods
//! (for example [`StandIn::fail_next_mints`] or [`StandIn::set_down`]) and observe what happened
//! with [`StandIn::mint_requests`], [`StandIn::tokens_issued`] and friends. The `github-standin`
//! binary runs the same server from environment variables.

#![warn(missing_docs)]

mod api;
mod auth;
mod changes;
mod compare;
mod deliveries;
mod events;
mod git;
mod gitdata;
mod mint;
mod objects;
mod patch;
mod plumbing;
mod rest;
mod reviews;
mod shapes;
mod state;
mod store;
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Map;
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
    /// Requests per hour allowed for each installation token, for the App (JWT) identity and for
    /// each user with personal access tokens (all of a user's tokens share one window).
    pub rate_limit_per_hour: u32,
    /// The format of minted installation tokens when the mint request does not force one with
    /// `X-GitHub-Stateless-S2S-Token: enabled` (stateless) or `disabled` (classic).
    pub token_format: TokenFormat,
    /// Where the App's webhook deliveries go (a plain `http://` URL); `None`: nothing is
    /// delivered. Changeable with [`StandIn::set_webhook`].
    pub webhook_url: Option<String>,
    /// The webhook secret deliveries are signed with (`X-Hub-Signature-256`); empty: unsigned,
    /// as GitHub sends them without a secret.
    pub webhook_secret: String,
    /// The webhook's ID (`X-GitHub-Hook-ID`).
    pub hook_id: u64,
    /// How long a receiver has to answer a delivery before the attempt fails as `timed out`
    /// (GitHub: 10 s).
    pub webhook_timeout: Duration,
    /// The events the App subscribes to (also the `events` of the App and installation
    /// objects); others are not delivered, except through [`StandIn::deliver_event`].
    pub webhook_events: Vec<String>,
    /// People's personal access tokens as (login, token); more with [`StandIn::add_user_token`].
    /// A REST request carrying one (`token <pat>` or `Bearer <pat>`) acts as that user, as a
    /// classic PAT with the `repo` scope does on GitHub.
    pub user_tokens: Vec<(String, String)>,
}

/// The format of the installation tokens the stand-in mints.
///
/// Both start with `ghs_` and work the same everywhere (REST `token`/`Bearer`, git Basic auth,
/// revocation); treat them as opaque strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenFormat {
    /// GitHub's stateless format (since 2026): `ghs_<app id>_<JWT>`, about 520 characters and
    /// varying. The JWT (HS256 with a key of this stand-in, claims `iss` = the App ID,
    /// `installation_id`, `iat`, `exp`, `permissions`, ...) is base64url, so `_`, `.` and `-`
    /// occur; every token has a `-` early in its signature, so that a redaction pattern that
    /// stops at `-` leaves a long tail of it visible.
    #[default]
    Stateless,
    /// The classic format: `ghs_` + 36 alphanumerics.
    Classic,
}

impl std::str::FromStr for TokenFormat {
    type Err = anyhow::Error;

    /// `stateless` or `classic` (case-insensitive).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stateless" => Ok(TokenFormat::Stateless),
            "classic" => Ok(TokenFormat::Classic),
            other => anyhow::bail!("token format {other:?} is not stateless or classic"),
        }
    }
}

impl StandInConfig {
    /// A configuration with sensible defaults: client ID `Iv1.penguintest0001`, slug
    /// `penguin-agent`, one installation (ID 1001) on the organization `octo-org` covering
    /// `hello-world` and `other-repo` with contents, pull requests, issues and checks `write`,
    /// and metadata and organization members `read`; tokens live 3600 s, no replication lag,
    /// no clock skew, 5000 requests per hour, stateless tokens; no webhook URL (hook ID 424242,
    /// a 10 s timeout, events `issue_comment`, `issues`, `pull_request`, `pull_request_review`
    /// and `pull_request_review_comment`); no personal access tokens.
    pub fn new(app_id: u64, app_public_key_pem: impl Into<String>, git_root: PathBuf) -> Self {
        let permissions = [
            ("contents", "write"),
            ("pull_requests", "write"),
            ("issues", "write"),
            ("checks", "write"),
            ("metadata", "read"),
            ("members", "read"),
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
            token_format: TokenFormat::default(),
            webhook_url: None,
            webhook_secret: String::new(),
            hook_id: 424_242,
            webhook_timeout: Duration::from_secs(10),
            webhook_events: objects::EVENTS.iter().map(|e| e.to_string()).collect(),
            user_tokens: Vec::new(),
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

/// One call to a bot route (issues, comments, reactions, labels, check runs, pull requests,
/// reviews, collaborator permissions, contents, the Git Data API, team memberships) or to the
/// webhook delivery log (`/app/hook/deliveries...`), as recorded by the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The HTTP method, e.g. `POST`. Updates sent as `POST` (GitHub accepts POST for its PATCH
    /// endpoints, and octocrab's `update_comment` uses it) are recorded as `PATCH`.
    pub method: String,
    /// The request path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// The request body as JSON: `Null` if there was none, a JSON string holding the raw text if
    /// it was not JSON.
    pub body: serde_json::Value,
    /// The status answered; 499 while unanswered or if the client went away first.
    pub status: u16,
}

/// A pull request to seed with [`StandIn::add_pull`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullSpec {
    /// The pull request (and issue) number.
    pub number: u64,
    /// The title.
    pub title: String,
    /// The description.
    pub body: String,
    /// The author's login.
    pub author: String,
    /// The head branch name.
    pub head_ref: String,
    /// The head commit.
    pub head_sha: String,
    /// The base branch name.
    pub base_ref: String,
    /// Label names (created in the repository if needed).
    pub labels: Vec<String>,
    /// Whether the head lives in the author's fork (`{author}/{repo}`) rather than the
    /// repository itself.
    pub from_fork: bool,
    /// The changed files (`GET /pulls/{n}/files`). Leave it empty to have the files of the real
    /// diff in the bare repository (from the merge base with `base_ref` to `head_sha`).
    pub files: Vec<PullFileSpec>,
}

/// One changed file of a [`PullSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullFileSpec {
    /// The path.
    pub filename: String,
    /// `added`, `modified`, `removed` (also `renamed`, `copied`, `changed`, `unchanged`).
    pub status: String,
    /// Added lines.
    pub additions: u64,
    /// Deleted lines.
    pub deletions: u64,
    /// The unified diff hunk; omitted from the JSON when `None` (as GitHub does for binary or
    /// huge files).
    pub patch: Option<String>,
}

/// A running stand-in server. Dropping it shuts the server down, including open connections.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Posts webhook deliveries.
    sender: JoinHandle<()>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
        self.sender.abort();
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
        let sender = tokio::spawn(webhook::run(shared.clone()));
        tracing::debug!(%addr, "GitHub stand-in listening");
        Ok(StandIn {
            shared,
            addr,
            task,
            sender,
        })
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

    /// The format of tokens minted from now on, unless a mint request forces one with
    /// `X-GitHub-Stateless-S2S-Token`.
    pub fn set_token_format(&self, format: TokenFormat) {
        self.shared.with(|s| s.token_format = format);
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

    /// Every call to the bot routes, in arrival order (including those answered with an error
    /// or an injected fault).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.with(|s| s.store.calls.clone())
    }

    /// The recorded calls with this method (case-insensitive) whose path starts with
    /// `path_prefix`.
    pub fn calls_to(&self, method: &str, path_prefix: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method) && c.path.starts_with(path_prefix))
            .collect()
    }

    /// The next `n` bot-route calls (after those already queued) with this method whose path
    /// starts with `path_prefix` answer with `fault`. Faults apply after authentication and
    /// rate limiting, as for mints.
    pub fn fail_next_calls(&self, n: usize, method: &str, path_prefix: &str, fault: Fault) {
        let entry = store::CallFault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            fault,
        };
        self.shared
            .with(|s| s.store.faults.extend(std::iter::repeat_n(entry, n)));
    }

    /// Pagination `Link` headers of the bot routes carry absolute URLs
    /// (`http://127.0.0.1:PORT/repos/...`, GitHub's form) instead of the default path-only
    /// targets (`/repos/...`). octocrab sends no credentials when following an absolute link to
    /// a host other than `api.github.com`, so its `get_page`/`all_pages` only work against the
    /// stand-in with path-only targets.
    pub fn set_absolute_links(&self, absolute: bool) {
        self.shared.with(|s| s.store.absolute_links = absolute);
    }

    /// Adds (or replaces) an open issue. Labels are created in the repository if needed.
    #[allow(clippy::too_many_arguments)]
    pub fn add_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        title: &str,
        body: &str,
        author: &str,
        labels: &[&str],
    ) {
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        self.put_issue(owner, repo, number, title, body, author, &labels);
        self.shared
            .with(|s| s.store.repo_mut(owner, repo).pulls.remove(&number));
    }

    /// Adds a comment by `author` to an existing issue or pull request and returns its ID, or
    /// `None` if there is no such issue. (For seeding conversations: the bot may only edit its
    /// own comments.) It is delivered as `issue_comment` `created`, sent by `author`.
    pub fn add_comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
        author: &str,
    ) -> Option<u64> {
        let now = self.shared.now();
        let id = self.shared.with(|s| {
            s.store.repo(owner, repo)?.issues.get(&number)?;
            let id = s.store.next_id();
            s.store
                .repo_mut(owner, repo)
                .comments
                .push(store::CommentRec {
                    id,
                    issue_number: number,
                    body: body.to_string(),
                    author: author.to_string(),
                    created_at: now,
                    updated_at: now,
                });
            Some(id)
        })?;
        let info = self.shared.repo_info(owner, repo);
        events::issue_comment(
            &self.shared,
            &self.url(),
            &info,
            id,
            "created",
            None,
            author,
        );
        Some(id)
    }

    /// Adds (or replaces) an open issue record.
    #[allow(clippy::too_many_arguments)]
    fn put_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        title: &str,
        body: &str,
        author: &str,
        labels: &[String],
    ) {
        let now = self.shared.now();
        self.shared.with(|s| {
            let labels = s.store.ensure_labels(owner, repo, labels);
            let fresh_id = s.store.next_id();
            let data = s.store.repo_mut(owner, repo);
            let (id, created_at) = data
                .issues
                .get(&number)
                .map_or((fresh_id, now), |i| (i.id, i.created_at));
            let mut unique: Vec<String> = Vec::new();
            for l in labels {
                if !unique.iter().any(|u| u.eq_ignore_ascii_case(&l)) {
                    unique.push(l);
                }
            }
            data.issues.insert(
                number,
                store::IssueRec {
                    id,
                    number,
                    title: title.to_string(),
                    body: body.to_string(),
                    author: author.to_string(),
                    labels: unique,
                    state: "open".to_string(),
                    created_at,
                    updated_at: now,
                    closed_at: None,
                },
            );
        });
    }

    /// Adds (or replaces) an open pull request, which is also an issue with the same number.
    /// The base commit is the base branch of the bare repository if it exists. A new pull
    /// request is delivered as `pull_request` `opened` (its seeded labels send no `labeled`).
    pub fn add_pull(&self, owner: &str, repo: &str, spec: PullSpec) {
        let info = self.shared.repo_info(owner, repo);
        let (number, author) = (spec.number, spec.author.clone());
        let fresh = self.shared.with(|s| {
            s.store
                .repo(owner, repo)
                .is_none_or(|d| !d.pulls.contains_key(&number))
        });
        let base_sha = rest::branch_sha_blocking(&self.shared, &info, &spec.base_ref)
            .unwrap_or_else(|| rest::fallback_sha(&info, &spec.base_ref));
        self.set_pull_ref(owner, repo, spec.number, &spec.head_sha);
        self.put_issue(
            owner,
            repo,
            spec.number,
            &spec.title,
            &spec.body,
            &spec.author,
            &spec.labels,
        );
        self.shared.with(|s| {
            let fresh_id = s.store.next_id();
            let data = s.store.repo_mut(owner, repo);
            let id = data.pulls.get(&spec.number).map_or(fresh_id, |p| p.id);
            data.pulls.insert(
                spec.number,
                store::PullRec {
                    id,
                    head_ref: spec.head_ref,
                    head_sha: spec.head_sha,
                    base_ref: spec.base_ref,
                    base_sha,
                    from_fork: spec.from_fork,
                    draft: false,
                    files: spec.files,
                    past_heads: Vec::new(),
                },
            );
        });
        if fresh {
            self.send_event(owner, repo, number, "opened", |_| Map::new(), &author);
        }
    }

    /// Delivers an event of issue or pull request `number` ([`events::issue_or_pull`]) with
    /// the fields `extra` makes; rendering (which may need git) is skipped outright without a
    /// webhook URL.
    fn send_event(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        action: &str,
        extra: impl FnOnce(&state::RepoInfo) -> Map<String, serde_json::Value>,
        sender: &str,
    ) {
        if self.shared.with(|s| s.webhook.url.is_none()) {
            return;
        }
        let (info, base) = (self.shared.repo_info(owner, repo), self.url());
        let extra = extra(&info);
        let event =
            events::issue_or_pull(&self.shared, &base, &info, number, action, extra, sender);
        block_on(event);
    }

    /// Adds labels (created in the repository if needed) to an issue or pull request as
    /// `actor` would on GitHub: each one it did not have yet is delivered as `issues` or
    /// `pull_request` `labeled`. Nothing happens without such an issue.
    pub fn add_labels(&self, owner: &str, repo: &str, number: u64, labels: &[&str], actor: &str) {
        let names: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let now = self.shared.now();
        let added = self.shared.with(|s| {
            s.store.repo(owner, repo)?.issues.get(&number)?;
            let canonical = s.store.ensure_labels(owner, repo, &names);
            let issue = s.store.repo_mut(owner, repo).issues.get_mut(&number)?;
            let mut added = Vec::new();
            for label in canonical {
                if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
                    issue.labels.push(label.clone());
                    added.push(label);
                }
            }
            issue.updated_at = now;
            Some(added)
        });
        for label in added.unwrap_or_default() {
            let field = |info: &state::RepoInfo| {
                events::label_field(&self.shared, &self.url(), info, &label)
            };
            self.send_event(owner, repo, number, "labeled", field, actor);
        }
    }

    /// Sets a user's role on a repository: `admin`, `maintain`, `write`, `triage`, `read` or
    /// `none` (anything else counts as `none`). Users never set have `none`.
    pub fn set_permission(&self, owner: &str, repo: &str, user: &str, permission: &str) {
        let permission = permission.to_ascii_lowercase();
        self.shared.with(|s| {
            let perms = &mut s.store.repo_mut(owner, repo).permissions;
            if ["admin", "maintain", "write", "triage", "read"].contains(&permission.as_str()) {
                perms.insert(user.to_ascii_lowercase(), permission);
            } else {
                perms.remove(&user.to_ascii_lowercase());
            }
        });
    }

    /// The label names of an issue or pull request, in the order they were added (empty if
    /// there is no such issue).
    pub fn issue_labels(&self, owner: &str, repo: &str, number: u64) -> Vec<String> {
        self.shared.with(|s| {
            s.store
                .repo(owner, repo)
                .and_then(|d| d.issues.get(&number))
                .map(|i| i.labels.clone())
                .unwrap_or_default()
        })
    }

    /// Replaces the body of an issue or pull request, as its author editing it on GitHub would
    /// (delivered as `issues` or `pull_request` `edited` when the body changed).
    pub fn edit_body(&self, owner: &str, repo: &str, number: u64, body: &str) {
        let edited = self.shared.with(|s| {
            let issue = s.store.repo_mut(owner, repo).issues.get_mut(&number)?;
            let old = std::mem::replace(&mut issue.body, body.to_string());
            issue.updated_at = chrono::Utc::now();
            Some((old, issue.title.clone(), issue.author.clone()))
        });
        let Some((old, title, author)) = edited else {
            return;
        };
        if let Some(changes) = events::edit_changes(&title, &title, &old, body) {
            self.send_event(owner, repo, number, "edited", |_| changes, &author);
        }
    }

    /// Like GitHub, the base repository keeps a pull request's code at `refs/pull/<n>/head`,
    /// wherever its branch lives (a fork, or deleted). Shas the repository lacks are skipped.
    fn set_pull_ref(&self, owner: &str, repo: &str, number: u64, sha: &str) {
        let bare = plumbing::Bare::of(&self.shared, &self.shared.repo_info(owner, repo));
        if bare.exists() && plumbing::is_full_sha(sha) {
            let _ = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(bare.path())
                .args(["update-ref", &format!("refs/pull/{number}/head"), sha])
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .output();
        }
    }

    /// Moves a pull request's head to `sha`, as a push to its branch does (also moving
    /// `refs/pull/<n>/head` in the bare repository). Reviews may still name earlier heads. A
    /// new head is delivered as `pull_request` `synchronize` with `before` and `after`, sent by
    /// the pull request's author.
    pub fn push_to_pull(&self, owner: &str, repo: &str, number: u64, sha: &str) {
        let moved = self.shared.with(|s| {
            let data = s.store.repo_mut(owner, repo);
            let author = data.issues.get(&number).map(|i| i.author.clone());
            let pull = data.pulls.get_mut(&number)?;
            let old = std::mem::replace(&mut pull.head_sha, sha.to_string());
            if old != sha {
                pull.past_heads.push(old.clone());
            }
            Some((old, author.unwrap_or_default()))
        });
        let Some((before, author)) = moved else {
            return;
        };
        self.set_pull_ref(owner, repo, number, sha);
        if before != sha {
            let extra = |_: &state::RepoInfo| {
                Map::from_iter([
                    ("before".to_string(), serde_json::json!(before)),
                    ("after".to_string(), serde_json::json!(sha)),
                ])
            };
            self.send_event(owner, repo, number, "synchronize", extra, &author);
        }
    }

    /// The comments of an issue or pull request in order: (id, body, author login).
    pub fn comments(&self, owner: &str, repo: &str, number: u64) -> Vec<(u64, String, String)> {
        self.shared.with(|s| {
            s.store
                .repo(owner, repo)
                .map(|d| {
                    d.comments
                        .iter()
                        .filter(|c| c.issue_number == number)
                        .map(|c| (c.id, c.body.clone(), c.author.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// A copy of the repository's data and what rendering it needs.
    fn repo_data(&self, owner: &str, repo: &str) -> (store::RepoData, state::RepoInfo, String) {
        let data = self
            .shared
            .with(|s| s.store.repo(owner, repo).cloned().unwrap_or_default());
        (data, self.shared.repo_info(owner, repo), self.url())
    }

    /// The current state of every check run of a repository, in creation order, as GitHub's
    /// check run objects.
    pub fn check_runs(&self, owner: &str, repo: &str) -> Vec<serde_json::Value> {
        let (data, info, base) = self.repo_data(owner, repo);
        let app = objects::app(&self.shared, &base);
        let view = shapes::View {
            shared: &self.shared,
            base: &base,
            repo: &info,
            data: &data,
        };
        data.check_runs
            .iter()
            .map(|r| shapes::check_run(&view, r, &app))
            .collect()
    }

    /// The reviews of a pull request in order (pending ones included), as GitHub's review
    /// objects plus a `comments` key holding the review's inline comments as GitHub's review
    /// comment objects (`path`, `line`, `side`, `start_line`, `diff_hunk`, `body`, ...).
    pub fn reviews(&self, owner: &str, repo: &str, number: u64) -> Vec<serde_json::Value> {
        let (data, info, base) = self.repo_data(owner, repo);
        let view = shapes::View {
            shared: &self.shared,
            base: &base,
            repo: &info,
            data: &data,
        };
        data.reviews
            .iter()
            .filter(|r| r.number == number)
            .map(|r| {
                let mut v = shapes::review(&view, r);
                v["comments"] = data
                    .review_comments
                    .iter()
                    .filter(|c| c.review_id == r.id)
                    .map(|c| shapes::review_comment(&view, c))
                    .collect();
                v
            })
            .collect()
    }

    /// The review comments of a pull request, oldest first, as GitHub's review comment objects:
    /// inline comments of every review (pending ones included) and replies (`in_reply_to_id`).
    pub fn review_comments(&self, owner: &str, repo: &str, number: u64) -> Vec<serde_json::Value> {
        let (data, info, base) = self.repo_data(owner, repo);
        let view = shapes::View {
            shared: &self.shared,
            base: &base,
            repo: &info,
            data: &data,
        };
        data.review_comments
            .iter()
            .filter(|c| c.number == number)
            .map(|c| shapes::review_comment(&view, c))
            .collect()
    }

    /// Every pull request of a repository (seeded or created through the API, open or closed),
    /// by number, as GitHub's pull request objects.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<serde_json::Value> {
        let (data, info, base) = self.repo_data(owner, repo);
        let view = shapes::View {
            shared: &self.shared,
            base: &base,
            repo: &info,
            data: &data,
        };
        let shared = &self.shared;
        let diffs: Vec<changes::PullDiff> = block_on(async {
            let mut diffs = Vec::new();
            for p in data.pulls.values() {
                diffs.push(
                    changes::pull_diff(shared, &info, p, None)
                        .await
                        .unwrap_or_default(),
                );
            }
            diffs
        });
        data.pulls
            .iter()
            .zip(&diffs)
            .filter_map(|((n, p), d)| Some(shapes::pull(&view, data.issues.get(n)?, p, d)))
            .collect()
    }

    /// The commits the stand-in created and signed as the App's bot (`POST .../git/commits`
    /// without `author`, `committer` or `signature`), in creation order. Their
    /// `verification.verified` is `true`.
    pub fn verified_commits(&self) -> Vec<String> {
        self.shared.with(|s| {
            s.store
                .signed_commits
                .iter()
                .map(|(sha, _)| sha.clone())
                .collect()
        })
    }

    /// Makes `login` a member (role `member`) of the team `team_slug` of `org`. Organization,
    /// team and login are case-insensitive, as on GitHub.
    pub fn add_team_member(&self, org: &str, team_slug: &str, login: &str) {
        self.set_team_role(org, team_slug, login, "member");
    }

    /// Makes `login` a maintainer (role `maintainer`) of the team `team_slug` of `org`.
    pub fn add_team_maintainer(&self, org: &str, team_slug: &str, login: &str) {
        self.set_team_role(org, team_slug, login, "maintainer");
    }

    /// Adds or updates a team membership.
    fn set_team_role(&self, org: &str, team_slug: &str, login: &str, role: &str) {
        self.shared.with(|s| {
            s.store
                .teams
                .entry(store::repo_key(org, team_slug))
                .or_default()
                .insert(login.to_ascii_lowercase(), role.to_string());
        });
    }

    /// Points the App's webhook at `url` (`None`: deliver nothing) with `secret` (empty:
    /// unsigned). Applies to events from now on; queued deliveries keep their URL.
    pub fn set_webhook(&self, url: Option<&str>, secret: &str) {
        self.shared.with(|s| {
            s.webhook.url = url.map(str::to_string);
            s.webhook.secret = secret.to_string();
        });
    }

    /// How long receivers have to answer deliveries attempted from now on.
    pub fn set_webhook_timeout(&self, timeout: Duration) {
        self.shared.with(|s| s.webhook.timeout = timeout);
    }

    /// Sends `payload` verbatim as a delivery of `event` (logged with `action`, the covering
    /// installation, if any, and the repository's ID), through the same signing, queue and log
    /// as the stand-in's own events, whatever the App subscribes to. Returns its GUID, or
    /// `None` without a webhook URL.
    pub fn deliver_event(
        &self,
        event: &str,
        action: Option<&str>,
        payload: serde_json::Value,
        owner: &str,
        repo: &str,
    ) -> Option<String> {
        let repository_id = self.shared.repo_info(owner, repo).id;
        let installation = self.shared.installation_covering(owner, repo);
        webhook::enqueue(
            &self.shared,
            event,
            action,
            installation,
            Some(repository_id),
            &payload,
        )
    }

    /// Every delivery attempt so far, oldest first, as `GET /app/hook/deliveries/{id}` shows
    /// it: `id`, `guid`, `delivered_at`, `redelivery`, `duration`, `status`, `status_code`,
    /// `event`, `action`, `installation_id`, `repository_id`, `throttled_at`, `url`,
    /// `request` (`headers`, `payload`) and `response` (`headers`, `payload`; `null` when
    /// nothing answered). Queued and running attempts are not in it yet.
    pub fn deliveries(&self) -> Vec<serde_json::Value> {
        self.shared
            .with(|s| s.webhook.log.iter().map(deliveries::full).collect())
    }

    /// How many deliveries are queued or under way.
    pub fn pending_deliveries(&self) -> usize {
        self.shared.deliveries.pending()
    }

    /// Waits until every queued delivery has been attempted and logged.
    pub async fn deliveries_settled(&self) {
        self.shared.deliveries.settled().await;
    }

    /// Makes every logged attempt `by` older (`delivered_at`), e.g. past the 3 days after which
    /// GitHub refuses redeliveries.
    pub fn age_deliveries(&self, by: Duration) {
        let by = chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX / 2);
        self.shared.with(|s| {
            for d in &mut s.webhook.log {
                d.delivered_at = d
                    .delivered_at
                    .checked_sub_signed(by)
                    .unwrap_or(d.delivered_at);
            }
        });
    }

    /// Gives `login` the personal access token `token` (see [`StandInConfig::user_tokens`]); a
    /// token given before to someone else now belongs to `login`.
    pub fn add_user_token(&self, login: &str, token: &str) {
        self.shared.with(|s| {
            s.user_tokens.insert(token.to_string(), login.to_string());
        });
    }

    /// Creates `{git_root}/{owner}/{repo}.git` as a bare repository (default branch `main`) with
    /// `http.receivepack` enabled, and returns its path. An existing repository is kept.
    pub fn create_repo(&self, owner: &str, repo: &str) -> anyhow::Result<PathBuf> {
        create_bare_repo(&self.shared.git_root, owner, repo)
    }
}

/// Runs async work (git) for the synchronous test API on a thread and runtime of its own, so it
/// works inside and outside a Tokio runtime.
fn block_on<F>(work: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building a runtime")
                    .block_on(work)
            })
            .join()
            .expect("the git work panicked")
    })
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
