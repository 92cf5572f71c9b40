//! The GitHub App bot: signed webhooks in, commands out.
//!
//! - [`webhook`]: `POST /api/v1/integrations/github/webhook` — verify, store
//!   durably, acknowledge fast; never work inline.
//! - [`worker`]: drains stored deliveries (also after a restart), exactly once.
//! - [`client`]: GitHub REST through octocrab with tokens from the tokenator
//!   (the API never holds the App key).
//! - [`access`]: the commenter's permission and team memberships.
//! - [`repo_config`]: a repository's own (narrowing) `.penguin/config.yml`.
//! - [`commands`]: what `@Penguin review|plan|summarize|help|…` do.

pub mod access;
pub mod client;
pub mod commands;
pub mod fix;
pub mod git_auth;
pub mod git_commit;
pub mod git_data;
pub mod repo_config;
pub mod webhook;
pub mod worker;

use penguin_api_store::Store;
use penguin_bot::config::ConfigWatcher;
use std::sync::Arc;
use tokio::sync::Notify;

/// What the webhook route and the worker share.
pub struct GitHubIntegration {
    /// Current webhook secret first, then the previous one (rotation).
    pub secrets: Vec<Vec<u8>>,
    /// `GITHUB_REPOSITORY`, which also counts as an allowlist entry.
    pub default_repository: Option<String>,
    /// The server's `.penguin/config.yml`, hot-reloaded.
    pub config: Arc<ConfigWatcher>,
    /// Stored deliveries.
    pub store: Store,
    /// Wakes the worker when a delivery was stored.
    pub wake: Arc<Notify>,
}
