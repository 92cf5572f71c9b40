//! The GitHub App bot's logic, free of network I/O (only configuration files
//! are read):
//!
//! - [`signature`]: `X-Hub-Signature-256` verification (HMAC-SHA256, constant time,
//!   current and previous secret during rotation).
//! - [`command`]: what a comment asks for (`@Penguin review`, `/penguin fix tests`, …).
//! - [`config`]: the `github` and `hooks` sections of the server's `.penguin/config.yml`,
//!   a repository's narrowing `.penguin/config.yml`, and a hot-reloading [`config::ConfigWatcher`].
//! - [`gate`]: who may make the bot act (deny by default).
//! - [`limits`]: per-repository and per-user commands per rolling hour.

pub mod command;
pub mod config;
pub mod gate;
pub mod hooks;
pub mod limits;
pub mod signature;

pub use command::Command;
pub use config::{ConfigError, ConfigWatcher, RepoConfig, ServerConfig};
pub use gate::{Actor, Decision, Target};
pub use limits::CommandLimiter;
