//! GitHub App authentication for the Penguin pod: the App's private key, App
//! JWTs signed against GitHub's clock, installation tokens and the REST calls
//! that mint, probe, revoke and describe them, and the App's webhook delivery
//! log (to redeliver what failed).
//!
//! octocrab carries the HTTP (TLS, timeouts, its models for apps, users and
//! installations); this crate adds what it lacks for a token vault:
//! down-scoping by permission, clock-skew correction from `Date` headers,
//! retries that honour GitHub's rate-limit headers, and a probe that waits out
//! replication lag before a new token is handed to anyone.

mod answer;
mod app;
mod clock;
mod error;
mod hook_deliveries;
mod http;
mod key;
mod mint;
mod retry;
mod token;

pub use app::{AppClient, AppInfo};
pub use clock::ServerClock;
pub use error::GitHubError;
pub use hook_deliveries::{DeliveryPage, HookDelivery};
pub use http::{Auth, GitHubHttp, HttpSettings};
pub use key::{AppKey, KeyError};
pub use retry::{Repeat, RetryPolicy};
pub use token::{InstallationToken, PermissionLevel, Permissions, ScopeError, Token, TokenScope};
