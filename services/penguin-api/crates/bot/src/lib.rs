//! The GitHub App bot, in the order a delivery meets it:
//!
//! - [`ingress`]: where a webhook is verified (`X-Hub-Signature-256` over the
//!   raw bytes) and stored durably before GitHub gets its 200.
//! - [`worker`]: drains stored deliveries, retries transient failures with
//!   backoff, and ends the hopeless ones `dead`.
//! - [`stages`]: one delivery, stage by stage: [`event`] → mention
//!   ([`command`]) → [`gate`] and [`limits`] → [`approval`] → [`actions`] →
//!   [`feedback`].
//! - [`github_api`]: GitHub REST for one repository with tokens from the
//!   tokenator, who a commenter is, a repository's own configuration.
//! - [`git`]: clone, commit, push and Git Data API commits.
//! - [`config`]: the `github` and `hooks` sections of the server's
//!   `.penguin/config.yml` (hot-reloaded) and a repository's narrowing one;
//!   [`hooks`] runs the operator's hooks.
//! - [`context`]: what the bot is handed at start-up ([`BotContext`]);
//!   [`error`]: [`BotError`], which knows whether a retry can help;
//!   [`metrics`]: the bot's Prometheus metrics.

pub mod actions;
pub mod approval;
pub mod command;
pub mod config;
pub mod context;
pub mod error;
pub mod event;
pub mod feedback;
pub mod gate;
pub mod git;
pub mod github_api;
pub mod hooks;
pub mod ingress;
pub mod limits;
pub mod metrics;
pub mod stages;
pub mod worker;

pub use command::Command;
pub use config::{ConfigError, ConfigWatcher, RepoConfig, ServerConfig};
pub use context::{BotContext, KeyedLocks, ModelAccess, UsageSink};
pub use error::{BotError, BotResult};
pub use gate::{Actor, Decision, Target};
pub use limits::CommandLimiter;
pub use metrics::BotMetrics;
