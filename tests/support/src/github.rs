//! A running GitHub stand-in with its own git root.

use crate::{fixture, APP_ID, OWNER, REPO};
use github_standin::{StandIn, StandInConfig};
use std::{path::PathBuf, time::Duration};

/// A running stand-in and the temporary directory holding its bare repositories.
pub struct GitHub {
    /// The stand-in.
    pub standin: StandIn,
    /// Temporary directory that holds the bare repositories (under `git/`).
    pub dir: tempfile::TempDir,
}

impl GitHub {
    /// Starts a stand-in whose tokens live `token_ttl`, with
    /// `octo-org/hello-world` created.
    pub async fn start(token_ttl: Duration) -> anyhow::Result<GitHub> {
        Self::start_with(|c| c.token_ttl = token_ttl).await
    }

    /// Starts a stand-in after `configure` adjusted its config, with
    /// `octo-org/hello-world` created.
    pub async fn start_with(configure: impl FnOnce(&mut StandInConfig)) -> anyhow::Result<GitHub> {
        let github = Self::empty(configure).await?;
        github.standin.create_repo(OWNER, REPO)?;
        Ok(github)
    }

    /// Starts a stand-in without any repository, after `configure` adjusted
    /// its config (the App is [`APP_ID`] with `fixtures/app-key.pub.pem`).
    pub async fn empty(configure: impl FnOnce(&mut StandInConfig)) -> anyhow::Result<GitHub> {
        let dir = tempfile::tempdir()?;
        let public = std::fs::read_to_string(fixture("app-key.pub.pem"))?;
        let mut config = StandInConfig::new(APP_ID, public, dir.path().join("git"));
        configure(&mut config);
        let standin = StandIn::start(config).await?;
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

    /// The bare repository behind `octo-org/hello-world`.
    pub fn bare_repo(&self) -> PathBuf {
        self.dir
            .path()
            .join("git")
            .join(OWNER)
            .join(format!("{REPO}.git"))
    }

    /// Runs `git` with `args` in [`GitHub::bare_repo`]; its trimmed stdout.
    /// Panics with git's stderr when git fails.
    pub fn bare_git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(self.bare_repo())
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
