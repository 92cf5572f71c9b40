//! API-key authentication: `X-API-Key`, `Authorization: Bearer`, or a session
//! cookie from `POST /api/v1/auth/session` (browsers cannot set headers on
//! WebSockets; `DELETE` ends it). Checked before any handler runs, so
//! WebSockets are authenticated before the upgrade. Failed key checks are
//! throttled per client address: past the limit, every key from that address
//! gets 429 until the oldest failure is a minute old.

use crate::error::ApiError;
use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{header, request::Parts, Extensions, HeaderMap},
    middleware::Next,
    response::Response,
};
use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "penguin_session";
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Paths served without a key (the webhook has its own HMAC).
const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/auth/session",
    "/api/v1/integrations/github/webhook",
    "/api/openapi.json",
    "/metrics",
    "/healthz",
];

/// How long a failed key check counts against its client address.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Keys, sessions and the failed-check throttle.
pub struct Auth {
    enabled: bool,
    keys: Vec<Vec<u8>>,
    sessions: Mutex<HashMap<String, Instant>>,
    throttle: Throttle,
}

impl Auth {
    /// `keys` are the accepted API keys; `enabled` false lets everything
    /// through; `failures_per_minute` failed key checks per client address
    /// are allowed before it gets 429.
    pub fn new(enabled: bool, keys: Vec<String>, failures_per_minute: u32) -> Self {
        for key in &keys {
            penguin_telemetry::register_secret(key);
        }
        Auth {
            enabled,
            keys: keys.into_iter().map(String::into_bytes).collect(),
            sessions: Mutex::default(),
            throttle: Throttle::new(failures_per_minute, FAILURE_WINDOW),
        }
    }

    /// 429 while `ip` has used up its failed key checks.
    pub fn check_throttle(&self, ip: IpAddr) -> Result<(), ApiError> {
        match self.throttle.blocked(ip) {
            Some(retry_after) => Err(ApiError::rate_limited(retry_after)),
            None => Ok(()),
        }
    }

    /// Counts a failed key check from `ip`.
    pub fn key_failed(&self, ip: IpAddr) {
        self.throttle.record_failure(ip);
    }

    /// Ends a session server-side; false when there was no such session.
    pub fn close_session(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(id).is_some()
    }

    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Compares against every key in constant time (no early exit on a match).
    pub fn key_is_valid(&self, candidate: &str) -> bool {
        let candidate = candidate.as_bytes();
        self.keys.iter().fold(0u8, |found, key| {
            found | key.as_slice().ct_eq(candidate).unwrap_u8()
        }) == 1
    }

    /// Starts a browser session for a valid key; returns its id.
    pub fn open_session(&self, key: &str) -> Option<String> {
        if !self.key_is_valid(key) {
            return None;
        }
        let id: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, expires| *expires > Instant::now());
        sessions.insert(id.clone(), Instant::now() + SESSION_TTL);
        Some(id)
    }

    fn session_is_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(id)
            .is_some_and(|expires| *expires > Instant::now())
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return self.key_is_valid(key.trim());
        }
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "));
            return token.is_some_and(|t| self.key_is_valid(t.trim()));
        }
        cookie(headers, SESSION_COOKIE).is_some_and(|id| self.session_is_valid(&id))
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Middleware: 401 unless the path is public or the request carries a valid
/// key or session; 429 when it carries a key from an address that has used
/// up its failed key checks (checked before the key, so a locked-out
/// address learns nothing about its guesses).
pub async fn require_auth(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path();
    if !auth.enabled || PUBLIC.contains(&path) || path.starts_with("/api/docs") {
        return Ok(next.run(request).await);
    }
    let ip = client_ip(request.extensions());
    let has_key = request.headers().contains_key("x-api-key")
        || request.headers().contains_key(header::AUTHORIZATION);
    if has_key {
        auth.check_throttle(ip)?;
    }
    if auth.authenticated(request.headers()) {
        Ok(next.run(request).await)
    } else {
        let message = if has_key {
            auth.key_failed(ip);
            "the API key is not valid"
        } else {
            "an API key is required"
        };
        Err(ApiError::unauthenticated(message))
    }
}

/// The client's address (the TCP peer), or `0.0.0.0` when unknown.
pub fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Extractor of [`client_ip`].
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// Tracked addresses above which stale ones are swept on each failure.
const SWEEP_ABOVE: usize = 1024;

/// Failed key checks per client address within a sliding window, in memory.
/// IPv6 addresses count per /64 (one host usually holds the whole prefix).
pub struct Throttle {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    /// `max` failures per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Throttle {
            max: (max as usize).max(1),
            window,
            failures: Mutex::default(),
        }
    }

    /// How long `ip` must wait, when it has used up its failures.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let key = bucket(ip);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get_mut(&key)?;
        self.expire(times, now);
        let wait = (times.len() >= self.max)
            .then(|| times.front().map(|t| self.window.saturating_sub(now - *t)))
            .flatten();
        if times.is_empty() {
            failures.remove(&key);
        }
        wait
    }

    /// Counts one failure of `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let key = bucket(ip);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, times| times.back().is_some_and(|t| now - *t < self.window));
        }
        let times = failures.entry(key).or_default();
        self.expire(times, now);
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
        if times.len() == self.max {
            tracing::warn!(client = %key, failures = self.max, "too many failed key checks: keys from this address get 429 for a while");
        }
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
    }
}

/// The address a failure counts against: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sessions_and_cookies() {
        let auth = Auth::new(
            true,
            vec!["key-one-0123456789".into(), "key-two-0123456789".into()],
            10,
        );
        assert!(auth.key_is_valid("key-two-0123456789"));
        assert!(!auth.key_is_valid("key-two-012345678"));
        assert!(!auth.key_is_valid(""));
        let mut headers = HeaderMap::new();
        assert!(!auth.authenticated(&headers));
        headers.insert(
            "authorization",
            "Bearer key-one-0123456789".parse().unwrap(),
        );
        assert!(auth.authenticated(&headers));
        assert!(auth.open_session("wrong").is_none());
        let id = auth.open_session("key-one-0123456789").unwrap();
        let mut cookies = HeaderMap::new();
        cookies.insert(
            "cookie",
            format!("a=b; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        assert!(auth.authenticated(&cookies));
        cookies.insert(
            "cookie",
            format!("{SESSION_COOKIE}=forged").parse().unwrap(),
        );
        assert!(!auth.authenticated(&cookies));
        // A closed session no longer authenticates.
        cookies.insert("cookie", format!("{SESSION_COOKIE}={id}").parse().unwrap());
        assert!(auth.authenticated(&cookies));
        assert!(auth.close_session(&id));
        assert!(!auth.authenticated(&cookies));
        assert!(!auth.close_session(&id));
    }

    #[test]
    fn the_throttle_counts_failures_per_address_in_a_sliding_window() {
        let throttle = Throttle::new(3, Duration::from_millis(300));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            throttle.record_failure(one);
            assert!(throttle.blocked(one).is_none());
        }
        throttle.record_failure(one);
        let wait = throttle.blocked(one).expect("blocked after 3 failures");
        assert!(wait <= Duration::from_millis(300));
        assert!(throttle.blocked(other).is_none(), "per address");
        // One IPv6 host's /64 is one address.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..3 {
            throttle.record_failure(a);
        }
        assert!(throttle.blocked(b).is_some());
        std::thread::sleep(Duration::from_millis(350));
        assert!(throttle.blocked(one).is_none(), "failures expire");
    }
}
