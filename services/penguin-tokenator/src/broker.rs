//! The token cache: one slot per scope, single-flight minting, refresh before
//! expiry, and the rule that no token leaves with less than the safety margin.
//! Scoped tokens are shared per scope, so every hand-out is counted per holder
//! and a token is revoked at GitHub only when its last holder releases it.

use crate::{config::Timing, metrics::Metrics};
use penguin_github::{
    AppClient, AppInfo, GitHubError, InstallationToken, ScopeError, Token, TokenScope,
};
use rand::Rng;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::watch;

/// At most this many cached scopes; a caller cannot make us mint without bound.
const MAX_SLOTS: usize = 512;
/// A scoped slot without a live token (none, or an expired one), no mint under
/// way and no watcher is evicted once it has not been asked for this long.
const IDLE_SLOT_AFTER: Duration = Duration::from_secs(120);
/// How often a request retries when the token it got was released meanwhile.
const ISSUE_ATTEMPTS: usize = 3;
/// Repository → installation answers are cached this long.
const INSTALLATION_TTL: Duration = Duration::from_secs(600);
/// `GET /app` answers are cached this long.
const APP_INFO_TTL: Duration = Duration::from_secs(3600);
/// A static token (PAT or operator-managed) has no known expiry.
const STATIC_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// GitHub refused or failed.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// No token exists yet and none can be minted now.
    #[error("no token available yet: {0}")]
    NotReady(String),
    /// The request needs App mode.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The requested scope is malformed.
    #[error("invalid scope: {0}")]
    Scope(#[from] ScopeError),
    /// Too many distinct scopes are cached.
    #[error("too many distinct token scopes are cached (limit {MAX_SLOTS}); reuse scopes or revoke tokens")]
    TooManyScopes,
    /// The default token is shared and cannot be revoked by a caller.
    #[error("the default token is shared by the pod and cannot be revoked")]
    DefaultToken,
    /// The caller holds no hand-out of this token (never issued it, or released it already).
    #[error("this caller was not issued this token (or has released it already); only its holders can release it")]
    NotIssued,
    /// The token or its cache slot was dropped while the request waited for it.
    #[error("the token was released or dropped while this request waited for it; try again")]
    Dropped,
}

/// Who holds a hand-out of a scoped token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The Unix socket: callers have no identity there, so each hand-out is
    /// one hold and each release gives one back.
    Local,
    /// A TCP caller, by its ServiceAccount JWT subject.
    Remote(String),
}

/// What a release did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Other hand-outs of the token are still held: it stays valid and cached.
    StillHeld(u32),
    /// That was the last hold: the token was revoked at GitHub.
    Revoked,
}

/// A minted token: its scope, its expiry and its holders.
struct Issued {
    scope: TokenScope,
    is_default: bool,
    expires_at: SystemTime,
    /// Outstanding hand-outs per holder.
    holds: HashMap<Holder, u32>,
    /// The last hold was released: dropped from the cache, revoked at GitHub,
    /// never handed out again.
    released: bool,
}

/// Where tokens come from.
pub enum TokenSource {
    /// Minted as a GitHub App (the key can be swapped at run time).
    App(RwLock<Arc<AppClient>>),
    /// Given from outside (GITHUB_TOKEN / GITHUB_TOKEN_FILE): the default
    /// scope only, replaced by [`TokenBroker::set_static_token`].
    Static,
}

struct Slot {
    scope: TokenScope,
    is_default: bool,
    current: watch::Sender<Option<Arc<InstallationToken>>>,
    mint_lock: tokio::sync::Mutex<()>,
    used_since_mint: AtomicBool,
    refresher_started: AtomicBool,
    /// Callers already audited for the current token: audit once per caller and token.
    audited: Mutex<HashSet<String>>,
    /// The latest failed mint: callers that queued behind it get its error
    /// instead of starting another full retry cycle.
    last_failure: Mutex<Option<(Instant, GitHubError)>>,
    /// When a caller last asked for this scope.
    last_used: Mutex<Instant>,
    /// Removed from the cache: a request still holding it starts over.
    retired: AtomicBool,
}

impl Slot {
    fn usable(&self, timing: &Timing) -> Option<Arc<InstallationToken>> {
        let current = self.current.borrow();
        let token = current.as_ref()?;
        (token.remaining() > timing.margin(token.lifetime())).then(|| token.clone())
    }

    fn in_use(&self) -> bool {
        self.used_since_mint.load(Ordering::Relaxed) || self.current.receiver_count() > 0
    }

    /// A scoped slot that holds no live scope: no token or an expired one, no
    /// mint under way, no watcher, and not asked for in [`IDLE_SLOT_AFTER`].
    fn idle(&self) -> bool {
        !self.is_default
            && self
                .current
                .borrow()
                .as_ref()
                .is_none_or(|t| t.remaining().is_zero())
            && self.current.receiver_count() == 0
            && self
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                >= IDLE_SLOT_AFTER
            && self.mint_lock.try_lock().is_ok()
    }
}

struct Inner {
    source: TokenSource,
    timing: Timing,
    metrics: Arc<Metrics>,
    slots: RwLock<HashMap<TokenScope, Arc<Slot>>>,
    /// Every minted token until it expires, with its holders. Lock order:
    /// `issued` before `slots`.
    issued: Mutex<HashMap<Token, Issued>>,
    default_scope: watch::Sender<Option<TokenScope>>,
    default_tokens: watch::Sender<Option<Arc<InstallationToken>>>,
    repo_installations: Mutex<HashMap<String, (u64, Instant)>>,
    app_info: Mutex<Option<(AppInfo, Instant)>>,
}

/// Hands out tokens per scope; cheap to clone.
#[derive(Clone)]
pub struct TokenBroker {
    inner: Arc<Inner>,
}

impl TokenBroker {
    /// A broker over `source`. The default scope is set later by
    /// [`set_default_installation`](Self::set_default_installation) (App mode)
    /// or is installation 0 (static mode).
    pub fn new(source: TokenSource, timing: Timing, metrics: Arc<Metrics>) -> Self {
        let default_scope = match source {
            TokenSource::Static => Some(TokenScope::installation(0)),
            TokenSource::App(_) => None,
        };
        TokenBroker {
            inner: Arc::new(Inner {
                source,
                timing,
                metrics,
                slots: RwLock::default(),
                issued: Mutex::default(),
                default_scope: watch::Sender::new(default_scope),
                default_tokens: watch::Sender::new(None),
                repo_installations: Mutex::default(),
                app_info: Mutex::default(),
            }),
        }
    }

    /// True for GITHUB_TOKEN / GITHUB_TOKEN_FILE mode.
    pub fn is_static(&self) -> bool {
        matches!(self.inner.source, TokenSource::Static)
    }

    /// The App client with the current key (`None` with a fixed token), for
    /// App-level calls outside minting (the webhook delivery log).
    pub fn app_client(&self) -> Option<Arc<AppClient>> {
        self.app().ok()
    }

    /// The App client (App mode only).
    fn app(&self) -> Result<Arc<AppClient>, BrokerError> {
        match &self.inner.source {
            TokenSource::App(client) => Ok(client.read().unwrap_or_else(|e| e.into_inner()).clone()),
            TokenSource::Static => Err(BrokerError::Unsupported(
                "this tokenator runs with a fixed token (GITHUB_TOKEN / GITHUB_TOKEN_FILE); scoped tokens, other installations and App info need App mode",
            )),
        }
    }

    /// Uses a new App private key for every later JWT.
    pub fn replace_app_key(&self, key: penguin_github::AppKey) {
        if let TokenSource::App(client) = &self.inner.source {
            let mut guard = client.write().unwrap_or_else(|e| e.into_inner());
            *guard = Arc::new(guard.with_key(key));
        }
    }

    /// Sets the default installation (App mode), once it is known.
    pub fn set_default_installation(&self, installation_id: u64) {
        self.inner
            .default_scope
            .send_replace(Some(TokenScope::installation(installation_id)));
    }

    /// The default scope, once known.
    pub fn default_scope(&self) -> Option<TokenScope> {
        self.inner.default_scope.borrow().clone()
    }

    /// The default installation id, once known (0 in static mode).
    pub fn default_installation(&self) -> Option<u64> {
        self.default_scope().map(|s| s.installation_id)
    }

    /// Each new default token (and `None` when it is dropped).
    pub fn subscribe_default(&self) -> watch::Receiver<Option<Arc<InstallationToken>>> {
        self.inner.default_tokens.subscribe()
    }

    /// Ready = a default token exists with more than the safety margin left.
    pub fn is_ready(&self) -> bool {
        self.default_scope()
            .and_then(|scope| self.existing_slot(&scope))
            .and_then(|slot| slot.usable(&self.inner.timing))
            .is_some()
    }

    /// Replaces the static default token (static mode).
    pub fn set_static_token(&self, token: &str) {
        let issued_at = SystemTime::now();
        let token = Arc::new(InstallationToken {
            token: Token::new(token),
            installation_id: 0,
            issued_at,
            expires_at: issued_at + STATIC_LIFETIME,
            permissions: Default::default(),
            repositories: Vec::new(),
            repository_selection: "all".into(),
        });
        if let Ok(slot) = self.slot(&TokenScope::installation(0), true) {
            self.inner.publish(&slot, token);
        }
    }

    /// A token for `scope`: the cached one while it has more than the safety
    /// margin left, else a fresh one (one mint however many ask at once).
    pub async fn get(&self, scope: &TokenScope) -> Result<Arc<InstallationToken>, BrokerError> {
        let is_default = self.default_scope().as_ref() == Some(scope);
        if self.is_static() && !is_default {
            self.app()?;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let slot = self.slot(scope, is_default)?;
            *slot.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            if let Some(token) = slot.usable(&self.inner.timing) {
                slot.used_since_mint.store(true, Ordering::Relaxed);
                return Ok(token);
            }
            match self.mint_into(&slot, None).await {
                Ok(token) => {
                    slot.used_since_mint.store(true, Ordering::Relaxed);
                    return Ok(token);
                }
                // The slot left the cache while we queued: start over with a new one.
                Err(BrokerError::Dropped) if attempts < ISSUE_ATTEMPTS => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// A token for `scope` handed out to `holder`: [`get`](Self::get), and
    /// for a scoped token one hold by `holder`, kept until it gives it back
    /// with [`release`](Self::release) or the token expires.
    pub async fn issue(
        &self,
        scope: &TokenScope,
        holder: &Holder,
    ) -> Result<Arc<InstallationToken>, BrokerError> {
        for _ in 0..ISSUE_ATTEMPTS {
            let token = self.get(scope).await?;
            if self.hold(&token, holder) {
                return Ok(token);
            }
        }
        Err(BrokerError::Dropped)
    }

    /// Counts one hand-out of `token` to `holder` (nothing to count for a
    /// default token). False when the token's last holder released it
    /// meanwhile: it is being revoked and must not be handed out.
    pub fn hold(&self, token: &InstallationToken, holder: &Holder) -> bool {
        let mut issued = self.inner.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get_mut(&token.token) {
            Some(entry) if entry.is_default => true,
            Some(entry) if !entry.released => {
                *entry.holds.entry(holder.clone()).or_default() += 1;
                true
            }
            _ => false,
        }
    }

    /// The current token of `scope` (minting it first if needed), then each rotation.
    pub async fn watch(
        &self,
        scope: &TokenScope,
    ) -> Result<watch::Receiver<Option<Arc<InstallationToken>>>, BrokerError> {
        for _ in 0..ISSUE_ATTEMPTS {
            self.get(scope).await?;
            if let Some(slot) = self.existing_slot(scope) {
                let updates = slot.current.subscribe();
                if updates.borrow().is_some() {
                    return Ok(updates);
                }
            }
        }
        Err(BrokerError::Dropped)
    }

    /// The usable token of `scope` right now, without minting.
    pub fn usable(&self, scope: &TokenScope) -> Option<Arc<InstallationToken>> {
        self.existing_slot(scope)?.usable(&self.inner.timing)
    }

    /// True the first time `caller` receives the current token of `scope`:
    /// audit once per caller and token, not once per request.
    pub fn first_delivery(&self, scope: &TokenScope, token: &Token, caller: &str) -> bool {
        let Some(slot) = self.existing_slot(scope) else {
            return true;
        };
        let current_matches = slot
            .current
            .borrow()
            .as_ref()
            .is_some_and(|t| &t.token == token);
        if !current_matches {
            return true;
        }
        let mut audited = slot.audited.lock().unwrap_or_else(|e| e.into_inner());
        !audited.contains(caller) && audited.insert(caller.to_string())
    }

    /// Gives back one hand-out of the scoped `token` by `holder`. The last
    /// hold's release drops the token from the cache and then, with no lock
    /// held, revokes it at GitHub. Refused: the default token, and a token
    /// `holder` holds no hand-out of. A token this tokenator does not know
    /// (minted before a restart, or expired) is revoked for Unix-socket
    /// callers only; a token already released is revoked again (idempotent).
    pub async fn release(&self, token: &str, holder: &Holder) -> Result<Release, BrokerError> {
        let app = self.app()?;
        let token = Token::new(token);
        let released = self.inner.take_hold(&token, holder)?;
        if released == Release::Revoked {
            app.http().revoke_token(&token, app.retry_policy()).await?;
        }
        Ok(released)
    }

    /// The installation that covers `owner/repo` (cached).
    pub async fn repository_installation(&self, repository: &str) -> Result<u64, BrokerError> {
        let app = self.app()?;
        let (owner, repo) = penguin_config::parse_repository(repository)
            .map_err(|e| BrokerError::Scope(ScopeError(e)))?;
        let key = repository.to_ascii_lowercase();
        if let Some((id, at)) = self
            .inner
            .repo_installations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if at.elapsed() < INSTALLATION_TTL {
                return Ok(*id);
            }
        }
        let id = app.repository_installation(owner, repo).await?;
        self.inner
            .repo_installations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (id, Instant::now()));
        Ok(id)
    }

    /// The App's identity and bot user (cached).
    pub async fn app_info(&self) -> Result<AppInfo, BrokerError> {
        let app = self.app()?;
        if let Some((info, at)) = self
            .inner
            .app_info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < APP_INFO_TTL {
                return Ok(info.clone());
            }
        }
        let info = app.app_info().await?;
        *self
            .inner
            .app_info
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((info.clone(), Instant::now()));
        Ok(info)
    }

    /// Resolves the default installation from `owner/repo` (App mode without
    /// GITHUB_APP_INSTALLATION_ID), retrying until GitHub answers.
    pub async fn resolve_default_installation(&self, repository: &str) -> u64 {
        let mut failures = 0;
        loop {
            match self.repository_installation(repository).await {
                Ok(id) => {
                    tracing::info!(
                        repository,
                        installation_id = id,
                        "default installation found"
                    );
                    self.set_default_installation(id);
                    return id;
                }
                Err(err) => {
                    failures += 1;
                    let wait = failure_backoff(failures, &err);
                    tracing::error!(repository, error = %err, retry_in_ms = wait.as_millis() as u64, "cannot find the App's installation");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Mints the default token and keeps refreshing it; retries until it works.
    pub async fn start_default(&self) {
        let Some(scope) = self.default_scope() else {
            return;
        };
        if self.is_static() {
            return;
        }
        let mut failures = 0;
        loop {
            match self.get(&scope).await {
                Ok(_) => return,
                Err(err) => {
                    failures += 1;
                    let wait = failure_backoff(failures, &err);
                    tracing::error!(error = %err, retry_in_ms = wait.as_millis() as u64, "cannot mint the default token");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn existing_slot(&self, scope: &TokenScope) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
            .cloned()
    }

    fn slot(&self, scope: &TokenScope, is_default: bool) -> Result<Arc<Slot>, BrokerError> {
        if let Some(slot) = self.existing_slot(scope) {
            return Ok(slot);
        }
        let mut slots = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(scope) && slots.len() >= MAX_SLOTS && !is_default {
            // Only live scopes count: make room by evicting idle slots.
            slots.retain(|_, slot| {
                let idle = slot.idle();
                if idle {
                    slot.retired.store(true, Ordering::SeqCst);
                }
                !idle
            });
            if slots.len() >= MAX_SLOTS {
                return Err(BrokerError::TooManyScopes);
            }
        }
        Ok(slots
            .entry(scope.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    scope: scope.clone(),
                    is_default,
                    current: watch::Sender::new(None),
                    mint_lock: tokio::sync::Mutex::new(()),
                    used_since_mint: AtomicBool::new(false),
                    refresher_started: AtomicBool::new(false),
                    audited: Mutex::default(),
                    last_failure: Mutex::default(),
                    last_used: Mutex::new(Instant::now()),
                    retired: AtomicBool::new(false),
                })
            })
            .clone())
    }

    /// Mints into `slot` under its lock. If another task minted meanwhile
    /// (the current token is usable and is not `stale`), returns that instead.
    async fn mint_into(
        &self,
        slot: &Arc<Slot>,
        stale: Option<&Token>,
    ) -> Result<Arc<InstallationToken>, BrokerError> {
        let queued_at = Instant::now();
        let _single_flight = slot.mint_lock.lock().await;
        if let Some(token) = slot.usable(&self.inner.timing) {
            if stale != Some(&token.token) {
                return Ok(token);
            }
        }
        if let Some((failed_at, err)) = slot
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if *failed_at > queued_at {
                return Err(err.clone().into());
            }
        }
        if slot.retired.load(Ordering::SeqCst) {
            return Err(BrokerError::Dropped);
        }
        if self.is_static() {
            return Err(BrokerError::NotReady(
                "the token file holds no token yet".into(),
            ));
        }
        let app = self.app()?;
        let span = tracing::info_span!("mint", scope = %slot.scope.describe());
        let _enter = span.enter();
        let started = Instant::now();
        drop(_enter);
        let result = async {
            let token = app.create_installation_token(&slot.scope).await?;
            app.http()
                .probe_token(&token.token, self.inner.timing.probe_timeout)
                .await?;
            Ok::<_, GitHubError>(token)
        }
        .await;
        let metrics = &self.inner.metrics;
        metrics
            .mint_duration
            .observe(started.elapsed().as_secs_f64());
        if let Some(remaining) = app.http().rate_limit_remaining() {
            metrics.rate_limit_remaining.set(remaining);
        }
        match result {
            Ok(token) => {
                metrics.mint("ok");
                *slot.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let token = Arc::new(token);
                tracing::info!(
                    parent: &span,
                    token_sha256 = %token.token.fingerprint(),
                    lifetime_secs = token.lifetime().as_secs(),
                    mint_ms = started.elapsed().as_millis() as u64,
                    "minted installation token"
                );
                self.inner.publish(slot, token.clone());
                self.ensure_refresher(slot);
                Ok(token)
            }
            Err(err) => {
                metrics.mint(err.kind());
                tracing::warn!(parent: &span, error = %err, "mint failed");
                *slot.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), err.clone()));
                if matches!(
                    err,
                    GitHubError::NotFound { .. } | GitHubError::Forbidden { .. }
                ) {
                    self.inner.drop_installation(slot.scope.installation_id);
                }
                // A scoped slot that never got a token holds nothing: drop it
                // (still under its mint lock, so no request mints into it
                // unnoticed), or failed scopes would fill the cache.
                let empty = slot.current.borrow().is_none();
                if empty && !slot.is_default {
                    self.inner.remove_slot(slot);
                }
                Err(err.into())
            }
        }
    }

    fn ensure_refresher(&self, slot: &Arc<Slot>) {
        if slot.refresher_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let broker = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move { broker.refresh_loop(slot).await });
    }

    /// Refreshes `slot` at its refresh point; backs off on failure while the
    /// current token (if still valid) keeps being served. A scoped slot nobody
    /// used since its last mint is dropped instead of refreshed.
    async fn refresh_loop(self, slot: Arc<Slot>) {
        let mut failures = 0u32;
        let mut last_error: Option<BrokerError> = None;
        loop {
            let current = slot.current.borrow().clone();
            let delay = match (&last_error, &current) {
                (Some(err), _) => failure_backoff(failures, err),
                (None, Some(token)) => refresh_delay(token, &self.inner.timing),
                (None, None) => Duration::ZERO,
            };
            tokio::time::sleep(delay).await;
            let removed = !self
                .inner
                .slots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&slot.scope)
                .is_some_and(|s| Arc::ptr_eq(s, &slot));
            if removed {
                return;
            }
            if !slot.is_default && !slot.in_use() {
                tracing::debug!(scope = %slot.scope.describe(), "dropping unused scoped token");
                self.inner.remove_slot(&slot);
                return;
            }
            let stale = current.as_ref().map(|t| t.token.clone());
            match self.mint_into(&slot, stale.as_ref()).await {
                Ok(_) => {
                    failures = 0;
                    last_error = None;
                }
                Err(err) => {
                    failures += 1;
                    if !slot.is_default && slot.current.borrow().is_none() {
                        self.inner.remove_slot(&slot);
                        return;
                    }
                    last_error = Some(err);
                }
            }
        }
    }
}

impl Inner {
    fn publish(&self, slot: &Slot, token: Arc<InstallationToken>) {
        {
            let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
            let now = SystemTime::now();
            issued.retain(|_, entry| entry.expires_at > now);
            issued.insert(
                token.token.clone(),
                Issued {
                    scope: slot.scope.clone(),
                    is_default: slot.is_default,
                    expires_at: token.expires_at,
                    holds: HashMap::new(),
                    released: false,
                },
            );
        }
        slot.used_since_mint.store(false, Ordering::Relaxed);
        slot.audited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        slot.current.send_replace(Some(token.clone()));
        if slot.is_default {
            let expiry = token
                .expires_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.metrics.token_expiry.set(expiry);
            self.default_tokens.send_replace(Some(token));
        }
    }

    fn remove_slot(&self, slot: &Arc<Slot>) {
        slot.retired.store(true, Ordering::SeqCst);
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.get(&slot.scope).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&slot.scope);
        }
    }

    /// Takes one hold of `token` from `holder`: [`Release::Revoked`] when
    /// none is left (the token is then marked released and dropped from the
    /// cache, atomically with respect to [`TokenBroker::hold`]) and it must
    /// be revoked at GitHub.
    fn take_hold(&self, token: &Token, holder: &Holder) -> Result<Release, BrokerError> {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        issued.retain(|_, entry| entry.expires_at > now);
        let Some(entry) = issued.get_mut(token) else {
            return match holder {
                Holder::Local => Ok(Release::Revoked),
                Holder::Remote(_) => Err(BrokerError::NotIssued),
            };
        };
        if entry.is_default {
            return Err(BrokerError::DefaultToken);
        }
        if entry.released {
            return Ok(Release::Revoked);
        }
        let Some(holds) = entry.holds.get_mut(holder) else {
            return Err(BrokerError::NotIssued);
        };
        *holds -= 1;
        if *holds == 0 {
            entry.holds.remove(holder);
        }
        let left: u32 = entry.holds.values().sum();
        if left > 0 {
            return Ok(Release::StillHeld(left));
        }
        entry.released = true;
        let slot = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&entry.scope)
            .cloned();
        if let Some(slot) = slot {
            let current = slot
                .current
                .borrow()
                .as_ref()
                .is_some_and(|t| &t.token == token);
            if current {
                slot.current.send_replace(None);
                self.remove_slot(&slot);
            }
        }
        Ok(Release::Revoked)
    }

    /// The installation was deleted or suspended: forget its tokens.
    fn drop_installation(&self, installation_id: u64) {
        tracing::warn!(
            installation_id,
            "installation gone or suspended; dropping its cached tokens"
        );
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        slots.retain(|scope, slot| {
            if scope.installation_id != installation_id {
                return true;
            }
            slot.current.send_replace(None);
            if slot.is_default {
                self.metrics.token_expiry.set(0.0);
                self.default_tokens.send_replace(None);
            } else {
                slot.retired.store(true, Ordering::SeqCst);
            }
            slot.is_default
        });
        self.repo_installations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (id, _)| *id != installation_id);
    }
}

/// When to refresh: after `refresh_fraction` of the lifetime, minus up to 15 %
/// of that as jitter, and never later than the start of the safety margin.
fn refresh_delay(token: &InstallationToken, timing: &Timing) -> Duration {
    let lifetime = token.lifetime();
    let jitter = 1.0 - 0.15 * rand::rng().random::<f64>();
    let at = token.issued_at + lifetime.mul_f64(timing.refresh_fraction * jitter);
    let latest = token.expires_at - timing.margin(lifetime).min(lifetime);
    at.min(latest)
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// Backoff after `failures` failed attempts: 1 s doubling to 60 s with jitter,
/// and at least as long as a rate limit asked.
fn failure_backoff(failures: u32, err: &BrokerError) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << failures.min(6).saturating_sub(1));
    let base = base.min(Duration::from_secs(60));
    let jittered = base.mul_f64(0.5 + 0.5 * rand::rng().random::<f64>());
    match err {
        BrokerError::GitHub(GitHubError::RateLimited { retry_after, .. }) => {
            jittered.max(*retry_after)
        }
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime: Duration, age: Duration) -> InstallationToken {
        let issued_at = SystemTime::now() - age;
        InstallationToken {
            token: Token::new("ghs_x"),
            installation_id: 1,
            issued_at,
            expires_at: issued_at + lifetime,
            permissions: Default::default(),
            repositories: vec![],
            repository_selection: "all".into(),
        }
    }

    /// A PAT-shaped test value, built at run time so no token-shaped literal
    /// sits in the source for secret scanners to flag.
    fn fake_pat(seed: &str) -> String {
        format!("{}_{seed}{}", "ghp", "0123456789abcdefghijklmnopqrstuv")
    }

    fn timing() -> Timing {
        Timing {
            refresh_fraction: 0.5,
            margin_max: Duration::from_secs(300),
            margin_fraction: 0.2,
            probe_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn refresh_happens_around_the_fraction_with_jitter() {
        for _ in 0..50 {
            let d = refresh_delay(&token(Duration::from_secs(3600), Duration::ZERO), &timing());
            assert!(
                d <= Duration::from_secs(1800) && d >= Duration::from_secs(1529),
                "{d:?}"
            );
        }
        // Past the refresh point: refresh now.
        let d = refresh_delay(
            &token(Duration::from_secs(10), Duration::from_secs(7)),
            &timing(),
        );
        assert_eq!(d, Duration::ZERO);
    }

    #[test]
    fn static_broker_serves_only_the_default_scope_and_is_ready_once_set() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let broker = TokenBroker::new(TokenSource::Static, timing(), Arc::new(Metrics::new()));
            assert!(!broker.is_ready());
            let default = broker.default_scope().unwrap();
            assert!(matches!(
                broker.get(&default).await,
                Err(BrokerError::NotReady(_))
            ));
            broker.set_static_token(&fake_pat("abcd"));
            assert!(broker.is_ready());
            let t = broker.get(&default).await.unwrap();
            assert_eq!(t.token.expose(), fake_pat("abcd"));
            let narrow = TokenScope::parse(0, ["a"], []).unwrap();
            assert!(matches!(
                broker.get(&narrow).await,
                Err(BrokerError::Unsupported(_))
            ));
            assert!(matches!(
                broker.app_info().await,
                Err(BrokerError::Unsupported(_))
            ));
        });
    }

    /// A broker minting from a GitHub stand-in, default installation set.
    fn app_broker(github: &penguin_test_support::GitHub) -> TokenBroker {
        use penguin_github::{AppKey, GitHubHttp, HttpSettings, RetryPolicy, ServerClock};
        let http = GitHubHttp::new(
            HttpSettings {
                api_url: github.url(),
                timeout: Duration::from_secs(10),
            },
            Arc::new(ServerClock::new()),
        )
        .unwrap();
        let key = AppKey::from_pem_file(penguin_test_support::fixture("app-key.pem")).unwrap();
        let app = AppClient::new(
            Arc::new(http),
            key,
            penguin_test_support::APP_ID.to_string(),
            RetryPolicy::default(),
        );
        let broker = TokenBroker::new(
            TokenSource::App(RwLock::new(Arc::new(app))),
            timing(),
            Arc::new(Metrics::new()),
        );
        broker.set_default_installation(penguin_test_support::INSTALLATION_ID);
        broker
    }

    fn slot_count(broker: &TokenBroker) -> usize {
        broker.inner.slots.read().unwrap().len()
    }

    #[tokio::test]
    async fn failed_mints_leave_no_slot_behind() {
        let github = penguin_test_support::GitHub::start(Duration::from_secs(3600))
            .await
            .unwrap();
        let broker = app_broker(&github);
        let installation = penguin_test_support::INSTALLATION_ID;
        for i in 0..MAX_SLOTS + 8 {
            // A repository the installation lacks: GitHub answers 422.
            let scope =
                TokenScope::parse(installation, [format!("missing-{i}").as_str()], []).unwrap();
            let err = broker.get(&scope).await.unwrap_err();
            assert!(
                matches!(err, BrokerError::GitHub(GitHubError::Unprocessable { .. })),
                "{err}"
            );
        }
        assert_eq!(slot_count(&broker), 0);
        let scope = TokenScope::parse(installation, ["hello-world"], []).unwrap();
        let token = broker.get(&scope).await.expect("a new scope still mints");
        assert!(github.standin.is_token_live(token.token.expose()));
        assert_eq!(slot_count(&broker), 1);
    }

    #[test]
    fn idle_slots_make_room_and_live_ones_count() {
        let broker = TokenBroker::new(TokenSource::Static, timing(), Arc::new(Metrics::new()));
        let scope = |i: usize| TokenScope::parse(1, [format!("repo-{i}").as_str()], []).unwrap();
        let long_ago = Instant::now() - IDLE_SLOT_AFTER - Duration::from_secs(1);
        // Full: some slots have no token, some an expired one; none is idle yet.
        for i in 0..MAX_SLOTS {
            let slot = broker.slot(&scope(i), false).unwrap();
            if i % 2 == 0 {
                let expired = token(Duration::from_secs(3600), Duration::from_secs(3601));
                broker.inner.publish(&slot, Arc::new(expired));
            }
        }
        assert!(matches!(
            broker.slot(&scope(MAX_SLOTS), false),
            Err(BrokerError::TooManyScopes)
        ));
        // Unused for a while: evicted, except the one with a live token.
        for slot in broker.inner.slots.read().unwrap().values() {
            *slot.last_used.lock().unwrap() = long_ago;
        }
        let live = broker.slot(&scope(0), false).unwrap();
        broker.inner.publish(
            &live,
            Arc::new(token(Duration::from_secs(3600), Duration::ZERO)),
        );
        let fresh = broker.slot(&scope(MAX_SLOTS), false).unwrap();
        assert_eq!(slot_count(&broker), 2);
        assert!(broker.existing_slot(&scope(0)).is_some());
        assert!(!fresh.retired.load(Ordering::SeqCst));
    }

    #[test]
    fn a_scoped_token_is_revoked_only_when_its_last_holder_releases_it() {
        let broker = TokenBroker::new(TokenSource::Static, timing(), Arc::new(Metrics::new()));
        broker.set_static_token(&fake_pat("dflt"));
        let scope = TokenScope::parse(0, ["hello-world"], []).unwrap();
        let slot = broker.slot(&scope, false).unwrap();
        let minted = Arc::new(token(Duration::from_secs(3600), Duration::ZERO));
        broker.inner.publish(&slot, minted.clone());
        let (local, runner) = (Holder::Local, Holder::Remote("runner".into()));
        let stranger = Holder::Remote("stranger".into());
        assert!(broker.hold(&minted, &local));
        assert!(broker.hold(&minted, &local));
        assert!(broker.hold(&minted, &runner));
        let take = |holder: &Holder| broker.inner.take_hold(&minted.token, holder);
        assert!(matches!(take(&stranger), Err(BrokerError::NotIssued)));
        assert_eq!(take(&local).unwrap(), Release::StillHeld(2));
        assert_eq!(take(&runner).unwrap(), Release::StillHeld(1));
        // Released already: no second release by the same subject.
        assert!(matches!(take(&runner), Err(BrokerError::NotIssued)));
        assert!(broker.usable(&scope).is_some());
        assert_eq!(take(&local).unwrap(), Release::Revoked);
        // Gone from the cache and never handed out again.
        assert!(broker.usable(&scope).is_none());
        assert!(slot.retired.load(Ordering::SeqCst));
        assert!(!broker.hold(&minted, &local));
        // The default token is nobody's to release.
        let default = broker.usable(&broker.default_scope().unwrap()).unwrap();
        assert!(broker.hold(&default, &runner));
        assert!(matches!(
            broker.inner.take_hold(&default.token, &local),
            Err(BrokerError::DefaultToken)
        ));
        // A token this broker never minted: the socket may revoke it, a TCP caller may not.
        let unknown = Token::new(fake_pat("gone"));
        assert_eq!(
            broker.inner.take_hold(&unknown, &local).unwrap(),
            Release::Revoked
        );
        assert!(matches!(
            broker.inner.take_hold(&unknown, &runner),
            Err(BrokerError::NotIssued)
        ));
    }

    #[test]
    fn audit_once_per_caller_and_token() {
        let broker = TokenBroker::new(TokenSource::Static, timing(), Arc::new(Metrics::new()));
        broker.set_static_token(&fake_pat("abcd"));
        let scope = broker.default_scope().unwrap();
        let t = broker.usable(&scope).unwrap();
        assert!(broker.first_delivery(&scope, &t.token, "local"));
        assert!(!broker.first_delivery(&scope, &t.token, "local"));
        assert!(broker.first_delivery(&scope, &t.token, "remote"));
        broker.set_static_token(&fake_pat("zzzz"));
        let t2 = broker.usable(&scope).unwrap();
        assert!(broker.first_delivery(&scope, &t2.token, "local"));
    }
}
