//! The bot's GitHub: a REST [`client`] per repository with tokens from the
//! tokenator ([`tokens`]), who a commenter is to GitHub ([`access`]), and a
//! repository's own narrowing configuration ([`repo_config`]), a pull
//! request's diff and reviews ([`pulls`]), and writing on a thread, redacted
//! ([`thread`]).

pub mod access;
pub mod client;
pub mod pulls;
pub mod repo_config;
pub mod thread;
pub mod tokens;

pub use access::AccessCache;
pub use client::{GitHubAccess, RepoClient};
pub use tokens::BotIdentity;
