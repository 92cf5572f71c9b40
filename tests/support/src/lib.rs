//! Helpers for the Penguin pod's tests, one job a module:
//!
//! - [`github`]: a running GitHub stand-in; [`github_api`]: requests to it the
//!   way an App's clients make them (the stand-in's own tests);
//! - [`tokenator`]: the tokenator as a process, the one way tests start one;
//! - [`api`]: the api as a process, with its client;
//! - [`pod`]: the whole pod (both stand-ins, the tokenator and the api);
//! - [`deliveries`]: signed webhook deliveries; [`webhooks`]: GitHub's examples;
//! - [`process`]: service processes with captured logs; [`binaries`]: where
//!   another package's binary is;
//! - [`keys`]: ServiceAccount JWTs and their JWKS; [`git`]: an isolated `git`;
//!   [`load`]: closed-loop load for the benches.

pub mod api;
pub mod binaries;
pub mod deliveries;
pub mod git;
pub mod github;
pub mod github_api;
pub mod keys;
pub mod load;
pub mod pod;
pub mod process;
pub mod runner;
pub mod tokenator;
pub mod webhooks;

pub use github::GitHub;

use std::{path::PathBuf, time::Duration};

/// The App id the stand-in and the services agree on.
pub const APP_ID: u64 = 4242;
/// The default installation of the stand-in.
pub const INSTALLATION_ID: u64 = 1001;
/// The repository owner of the stand-in's installation.
pub const OWNER: &str = "octo-org";
/// The repository the tests push to.
pub const REPO: &str = "hello-world";

/// A file under `tests/support/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
