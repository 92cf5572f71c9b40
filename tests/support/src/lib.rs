//! Helpers for the Penguin pod's tests: fixture keys, a running GitHub
//! stand-in, service processes with captured logs, ServiceAccount JWTs and
//! their JWKS, and an isolated `git`.

pub mod git;
pub mod keys;
pub mod process;
pub mod webhooks;

use github_standin::{StandIn, StandInConfig};
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

/// A running stand-in with its own git root and `octo-org/hello-world` created.
pub struct GitHub {
    /// The stand-in.
    pub standin: StandIn,
    /// Temporary directory that holds the bare repositories.
    pub dir: tempfile::TempDir,
}

impl GitHub {
    /// Starts a stand-in whose tokens live `token_ttl`.
    pub async fn start(token_ttl: Duration) -> anyhow::Result<GitHub> {
        Self::start_with(|c| c.token_ttl = token_ttl).await
    }

    /// Starts a stand-in after `configure` adjusted its config.
    pub async fn start_with(configure: impl FnOnce(&mut StandInConfig)) -> anyhow::Result<GitHub> {
        let dir = tempfile::tempdir()?;
        let public = std::fs::read_to_string(fixture("app-key.pub.pem"))?;
        let mut config = StandInConfig::new(APP_ID, public, dir.path().join("git"));
        configure(&mut config);
        let standin = StandIn::start(config).await?;
        standin.create_repo(OWNER, REPO)?;
        Ok(GitHub { standin, dir })
    }

    /// The stand-in's base URL (API and git).
    pub fn url(&self) -> String {
        self.standin.url()
    }

    /// The clone URL of `octo-org/hello-world` (no credentials).
    pub fn repo_url(&self) -> String {
        format!("{}/{OWNER}/{REPO}.git", self.url())
    }
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
