//! The stand-in's mutable state: installations, tokens, rate-limit windows, counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::Rng as _;
use serde_json::json;

use crate::store::{fnv, Store};
use crate::webhook::{Hook, Queue};
use crate::{Fault, InstallationSpec, MintRecord, StandInConfig, TokenFormat};

/// Immutable configuration plus the mutable [`Inner`] state behind a mutex.
pub(crate) struct Shared {
    pub app_id: u64,
    pub client_id: String,
    pub app_slug: String,
    pub decoding_key: DecodingKey,
    /// The HMAC key stateless installation tokens are signed with (random per stand-in).
    token_key: [u8; 32],
    pub git_root: PathBuf,
    pub rate_limit_per_hour: u32,
    /// Known accounts (installation owners): lowercase login → (login, id).
    pub accounts: BTreeMap<String, (String, u64)>,
    /// Known repositories, in configuration order.
    pub repos: Vec<RepoInfo>,
    /// The ID of the App's webhook (`X-GitHub-Hook-ID`).
    pub hook_id: u64,
    /// The events the App subscribes to.
    pub webhook_events: Vec<String>,
    /// Deliveries waiting for the sender task.
    pub deliveries: Queue,
    inner: Mutex<Inner>,
}

/// A repository some installation can access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoInfo {
    pub id: u64,
    pub owner: String,
    pub name: String,
}

impl RepoInfo {
    /// Whether this is `owner/name` (GitHub logins and names are case-insensitive).
    pub fn is(&self, owner: &str, name: &str) -> bool {
        self.owner.eq_ignore_ascii_case(owner) && self.name.eq_ignore_ascii_case(name)
    }
}

/// An installation and its lifecycle.
#[derive(Debug, Clone)]
pub(crate) struct InstallationState {
    pub spec: InstallationSpec,
    pub suspended_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl InstallationState {
    /// Not suspended and not deleted.
    pub fn active(&self) -> bool {
        self.suspended_at.is_none() && !self.deleted
    }
}

/// An issued installation token.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub installation_id: u64,
    /// Repositories the token can see.
    pub repos: Vec<RepoInfo>,
    pub permissions: BTreeMap<String, String>,
    /// In the stand-in's (skewed) clock.
    pub expires_at: DateTime<Utc>,
    /// Real time from which the token works (replication lag).
    pub usable_from: Instant,
    pub revoked: bool,
}

/// A fixed one-hour rate-limit window.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    reset: i64,
    used: u32,
}

/// Rate-limit figures for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateSnapshot {
    pub limit: u32,
    pub used: u32,
    pub remaining: u32,
    pub reset: i64,
    /// The request that produced this snapshot went over the limit.
    pub exceeded: bool,
}

/// Mutable state.
pub(crate) struct Inner {
    pub token_ttl: Duration,
    pub replication_lag: Duration,
    pub clock_skew_secs: i64,
    /// The format of new tokens unless a mint request forces one.
    pub token_format: TokenFormat,
    pub down: bool,
    pub faults: VecDeque<Fault>,
    pub installations: Vec<InstallationState>,
    pub tokens: HashMap<String, TokenRecord>,
    /// Personal access tokens: token → the user's login.
    pub user_tokens: HashMap<String, String>,
    pub issued: Vec<String>,
    pub revoked: Vec<String>,
    pub mints: Vec<MintRecord>,
    pub jwt_rejections: usize,
    pub git_auth_failures: usize,
    pub git_pushes: usize,
    /// Repository contents, the call log and call faults of the bot routes.
    pub store: Store,
    /// The App's webhook and its delivery log.
    pub webhook: Hook,
    rate: HashMap<String, RateWindow>,
}

impl Inner {
    /// The installation with this ID, deleted or not.
    pub fn installation(&self, id: u64) -> Option<&InstallationState> {
        self.installations.iter().find(|i| i.spec.id == id)
    }

    /// Mutable access to the installation with this ID.
    pub fn installation_mut(&mut self, id: u64) -> Option<&mut InstallationState> {
        self.installations.iter_mut().find(|i| i.spec.id == id)
    }

    /// Issued, unexpired, unrevoked, installation active.
    pub fn token_live(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.tokens.get(token).is_some_and(|t| {
            !t.revoked
                && now < t.expires_at
                && self
                    .installation(t.installation_id)
                    .is_some_and(|i| i.active())
        })
    }
}

impl Shared {
    /// Builds the state from a configuration; fails on an unusable public key.
    pub fn new(config: StandInConfig) -> anyhow::Result<Shared> {
        let decoding_key = DecodingKey::from_rsa_pem(config.app_public_key_pem.as_bytes())
            .context("parsing the App public key PEM")?;
        let mut accounts = BTreeMap::new();
        let mut repos: Vec<RepoInfo> = Vec::new();
        for inst in &config.installations {
            let next_id = 7_000_001 + accounts.len() as u64;
            accounts
                .entry(inst.account.to_ascii_lowercase())
                .or_insert_with(|| (inst.account.clone(), next_id));
            for name in &inst.repositories {
                if !repos.iter().any(|r| r.is(&inst.account, name)) {
                    repos.push(RepoInfo {
                        id: 500_001 + repos.len() as u64,
                        owner: inst.account.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        let installations = config
            .installations
            .iter()
            .map(|spec| InstallationState {
                spec: spec.clone(),
                suspended_at: None,
                deleted: false,
            })
            .collect();
        Ok(Shared {
            app_id: config.app_id,
            client_id: config.client_id,
            app_slug: config.app_slug,
            decoding_key,
            token_key: rand::rng().random(),
            git_root: config.git_root,
            rate_limit_per_hour: config.rate_limit_per_hour,
            accounts,
            repos,
            hook_id: config.hook_id,
            webhook_events: config.webhook_events,
            deliveries: Queue::new(),
            inner: Mutex::new(Inner {
                token_ttl: config.token_ttl,
                replication_lag: config.replication_lag,
                clock_skew_secs: config.clock_skew_secs,
                token_format: config.token_format,
                down: false,
                faults: VecDeque::new(),
                installations,
                tokens: HashMap::new(),
                user_tokens: config
                    .user_tokens
                    .into_iter()
                    .map(|(login, token)| (token, login))
                    .collect(),
                issued: Vec::new(),
                revoked: Vec::new(),
                mints: Vec::new(),
                jwt_rejections: 0,
                git_auth_failures: 0,
                git_pushes: 0,
                store: Store::default(),
                webhook: Hook::new(
                    config.webhook_url,
                    config.webhook_secret,
                    config.webhook_timeout,
                ),
                rate: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that
        // matters to a test double; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the state locked. `f` must not block.
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.lock())
    }

    /// The stand-in's clock: real time plus the configured skew.
    pub fn now(&self) -> DateTime<Utc> {
        let skew = self.lock().clock_skew_secs;
        Utc::now() + TimeDelta::seconds(skew)
    }

    /// The bot user's login, `<slug>[bot]`.
    pub fn bot_login(&self) -> String {
        format!("{}[bot]", self.app_slug)
    }

    /// The bot user's ID.
    pub fn bot_id(&self) -> u64 {
        900_000 + self.app_id
    }

    /// The account (login, id) for a login, case-insensitively.
    pub fn account(&self, login: &str) -> Option<(String, u64)> {
        self.accounts.get(&login.to_ascii_lowercase()).cloned()
    }

    /// A repository by name: a known one, or a made-up one with a stable ID.
    pub fn repo_info(&self, owner: &str, name: &str) -> RepoInfo {
        self.repos
            .iter()
            .find(|r| r.is(owner, name))
            .cloned()
            .unwrap_or_else(|| RepoInfo {
                id: 700_000
                    + fnv(format!("{owner}/{name}").to_ascii_lowercase().as_bytes()) % 100_000,
                owner: owner.to_string(),
                name: name.to_string(),
            })
    }

    /// The repositories of an installation spec, as known repositories.
    pub fn repos_of(&self, spec: &InstallationSpec) -> Vec<RepoInfo> {
        self.repos
            .iter()
            .filter(|r| {
                r.owner.eq_ignore_ascii_case(&spec.account)
                    && spec
                        .repositories
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(&r.name))
            })
            .cloned()
            .collect()
    }

    /// The active (neither suspended nor deleted) installation that covers `owner/name`.
    pub fn installation_covering(&self, owner: &str, name: &str) -> Option<u64> {
        let installs = self.with(|s| s.installations.clone());
        installs
            .iter()
            .filter(|i| i.active())
            .find(|i| self.repos_of(&i.spec).iter().any(|r| r.is(owner, name)))
            .map(|i| i.spec.id)
    }

    /// Counts one request against `identity`'s hourly window.
    pub fn consume_rate(&self, identity: &str) -> RateSnapshot {
        let now = self.now().timestamp();
        let limit = self.rate_limit_per_hour;
        self.with(|s| {
            let w = s.rate.entry(identity.to_string()).or_insert(RateWindow {
                reset: now + 3600,
                used: 0,
            });
            if now >= w.reset {
                *w = RateWindow {
                    reset: now + 3600,
                    used: 0,
                };
            }
            let exceeded = w.used >= limit;
            if !exceeded {
                w.used += 1;
            }
            RateSnapshot {
                limit,
                used: w.used,
                remaining: limit - w.used,
                reset: w.reset,
                exceeded,
            }
        })
    }

    /// `identity`'s current window without counting a request.
    pub fn peek_rate(&self, identity: &str) -> RateSnapshot {
        let now = self.now().timestamp();
        let limit = self.rate_limit_per_hour;
        self.with(|s| {
            let (used, reset) = match s.rate.get(identity) {
                Some(w) if now < w.reset => (w.used, w.reset),
                _ => (0, now + 3600),
            };
            RateSnapshot {
                limit,
                used,
                remaining: limit.saturating_sub(used),
                reset,
                exceeded: false,
            }
        })
    }

    /// Issues a token for an installation, in `format` or, if `None`, the configured format.
    /// Returns the token and its expiry.
    pub fn issue_token(
        &self,
        installation_id: u64,
        repos: Vec<RepoInfo>,
        permissions: BTreeMap<String, String>,
        format: Option<TokenFormat>,
    ) -> (String, DateTime<Utc>) {
        let now = self.now();
        let (ttl, configured) = self.with(|s| (s.token_ttl, s.token_format));
        let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX / 2);
        let expires_at = ceil_to_second(now.checked_add_signed(ttl).unwrap_or(now));
        let token = match format.unwrap_or(configured) {
            TokenFormat::Classic => classic_token(),
            TokenFormat::Stateless => stateless_token(
                &self.token_key,
                &StatelessClaims {
                    app_id: self.app_id,
                    installation_id,
                    permissions: &permissions,
                    repositories: repos.len(),
                    issued_at: now.timestamp(),
                    expires_at: expires_at.timestamp(),
                },
            ),
        };
        self.with(|s| {
            s.tokens.insert(
                token.clone(),
                TokenRecord {
                    installation_id,
                    repos,
                    permissions,
                    expires_at,
                    usable_from: Instant::now() + s.replication_lag,
                    revoked: false,
                },
            );
            s.issued.push(token.clone());
            (token, expires_at)
        })
    }

    /// The login of the user a personal access token belongs to, if it is configured.
    pub fn user_of_token(&self, token: &str) -> Option<String> {
        self.with(|s| s.user_tokens.get(token).cloned())
    }

    /// Whether `login` has a personal access token (case-insensitively).
    pub fn has_user_token(&self, login: &str) -> bool {
        self.with(|s| {
            s.user_tokens
                .values()
                .any(|l| l.eq_ignore_ascii_case(login))
        })
    }

    /// The token's record if it authenticates right now (live and past its replication lag).
    pub fn usable_token(&self, token: &str) -> Option<TokenRecord> {
        let now = self.now();
        self.with(|s| {
            if !s.token_live(token, now) {
                return None;
            }
            let t = s.tokens.get(token)?;
            (Instant::now() >= t.usable_from).then(|| t.clone())
        })
    }
}

/// Rounds up to a whole second, so a token lives at least its TTL and `expires_at` (printed in
/// whole seconds) is exact.
fn ceil_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if whole < t {
        whole + TimeDelta::seconds(1)
    } else {
        whole
    }
}

/// `n` random alphanumerics.
fn alphanumerics(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A classic installation token: `ghs_` + 36 random alphanumerics.
pub(crate) fn classic_token() -> String {
    format!("ghs_{}", alphanumerics(36))
}

/// What a stateless installation token says about itself.
pub(crate) struct StatelessClaims<'a> {
    pub app_id: u64,
    pub installation_id: u64,
    pub permissions: &'a BTreeMap<String, String>,
    /// How many repositories the token can see.
    pub repositories: usize,
    /// Epoch seconds, in the stand-in's clock.
    pub issued_at: i64,
    /// Epoch seconds, in the stand-in's clock.
    pub expires_at: i64,
}

/// Where the first `-` of a stateless token's signature must be, at the latest: a redaction
/// pattern that stops at `-` then leaves at least 24 characters of the token visible.
const DASH_WITHIN: usize = 19;

/// A stateless installation token, as GitHub issues them since 2026: `ghs_<app id>_<JWT>`,
/// about 520 characters (varying with the scope and a random-length `jti`). The JWT is HS256
/// under `key`: nothing outside the stand-in verifies it, and the stand-in itself looks tokens
/// up by their whole text.
///
/// Base64url of JSON text hardly ever has a `-` (only a `>` or `~` in every third byte encodes
/// to one), so a token's `-` comes from its signature, and a 43-character HS256 signature has
/// one only about half the time. This one always does, among the signature's first
/// [`DASH_WITHIN`] characters: a fresh `jti` is drawn until it is so (a few tries), which keeps
/// the signature valid.
pub(crate) fn stateless_token(key: &[u8], claims: &StatelessClaims<'_>) -> String {
    let header = Header::new(Algorithm::HS256);
    let key = EncodingKey::from_secret(key);
    loop {
        let jti_len = rand::rng().random_range(16..=32);
        let payload = json!({
            "iss": claims.app_id.to_string(),
            "sub": format!("installation:{}", claims.installation_id),
            "aud": "github.com",
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "jti": alphanumerics(jti_len),
            "installation_id": claims.installation_id,
            "repository_selection": "selected",
            "repositories": claims.repositories,
            "permissions": claims.permissions,
        });
        let jwt = jsonwebtoken::encode(&header, &payload, &key).expect("HS256 signing cannot fail");
        let signature = jwt.rsplit('.').next().unwrap_or_default();
        if signature.find('-').is_some_and(|i| i < DASH_WITHIN) {
            return format!("ghs_{}_{jwt}", claims.app_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_tokens_look_like_github_tokens() {
        let t = classic_token();
        assert_eq!(t.len(), 40);
        assert!(t.starts_with("ghs_"));
        assert!(t[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(t, classic_token());
    }

    #[test]
    fn stateless_tokens_are_the_app_id_and_a_jwt_with_a_dash() {
        use base64::Engine as _;
        let permissions = [("contents", "write"), ("metadata", "read")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let claims = StatelessClaims {
            app_id: 4242,
            installation_id: 1001,
            permissions: &permissions,
            repositories: 2,
            issued_at: 1_700_000_000,
            expires_at: 1_700_003_600,
        };
        let key = [7u8; 32];
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let t = stateless_token(&key, &claims);
            let jwt = t.strip_prefix("ghs_4242_").expect("ghs_<app id>_ prefix");
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "{t}");
            assert!(parts[2].find('-').is_some_and(|i| i < DASH_WITHIN), "{t}");
            assert!(jwt
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
            assert!((350..=700).contains(&t.len()), "{} characters", t.len());
            lengths.insert(t.len());
            let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
            validation.validate_exp = false;
            validation.validate_aud = false;
            let decoded = jsonwebtoken::decode::<serde_json::Value>(
                jwt,
                &DecodingKey::from_secret(&key),
                &validation,
            )
            .expect("a valid HS256 JWT");
            assert_eq!(decoded.claims["iss"], "4242");
            assert_eq!(decoded.claims["installation_id"], 1001);
            assert_eq!(decoded.claims["exp"], 1_700_003_600);
            assert_eq!(decoded.claims["permissions"]["contents"], "write");
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap();
            assert!(serde_json::from_slice::<serde_json::Value>(&payload).is_ok());
        }
        assert!(lengths.len() > 1, "lengths vary: {lengths:?}");
    }

    #[test]
    fn ceil_rounds_up_only_fractions() {
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(ceil_to_second(whole), whole);
        let frac = DateTime::from_timestamp(1_700_000_000, 1).unwrap();
        assert_eq!(ceil_to_second(frac).timestamp(), 1_700_000_001);
    }
}
