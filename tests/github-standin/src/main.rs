//! `github-standin`: runs the GitHub stand-in from environment variables until SIGTERM or
//! Ctrl-C.
//!
//! - `STANDIN_ADDR` (default `127.0.0.1:8090`)
//! - `STANDIN_APP_ID` (required), `STANDIN_APP_PUBLIC_KEY_PATH` (required, SPKI PEM)
//! - `STANDIN_GIT_ROOT` (default `/tmp/github-standin/git`)
//! - `STANDIN_TOKEN_TTL_SECS` (default 3600)
//! - `STANDIN_REPOS`: `owner/repo,owner/repo`; creates those bare repositories and one
//!   installation per owner over them (IDs from 1001). Unset: the default installation 1001 on
//!   `octo-org` (`hello-world`, `other-repo`), whose repositories are created too.
//! - Optional: `STANDIN_APP_SLUG`, `STANDIN_CLIENT_ID`, `STANDIN_REPLICATION_LAG_SECS`,
//!   `STANDIN_CLOCK_SKEW_SECS`, `STANDIN_RATE_LIMIT_PER_HOUR`, `STANDIN_TOKEN_FORMAT`
//!   (`stateless`, the default: `ghs_<app id>_<JWT>`; or `classic`: `ghs_` + 36 alphanumerics).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use github_standin::{InstallationSpec, StandIn, StandInConfig, TokenFormat};

/// Command line / environment configuration.
#[derive(Debug, Parser)]
#[command(
    name = "github-standin",
    about = "A test stand-in for GitHub's API and git HTTP"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "STANDIN_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// The GitHub App ID.
    #[arg(long, env = "STANDIN_APP_ID")]
    app_id: u64,
    /// Path of the App's public key (SPKI PEM).
    #[arg(long, env = "STANDIN_APP_PUBLIC_KEY_PATH")]
    app_public_key_path: PathBuf,
    /// Where bare repositories live.
    #[arg(
        long,
        env = "STANDIN_GIT_ROOT",
        default_value = "/tmp/github-standin/git"
    )]
    git_root: PathBuf,
    /// Lifetime of minted tokens in seconds.
    #[arg(long, env = "STANDIN_TOKEN_TTL_SECS", default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Repositories as `owner/repo,owner/repo`.
    #[arg(long, env = "STANDIN_REPOS", value_delimiter = ',')]
    repos: Vec<String>,
    /// The App slug.
    #[arg(long, env = "STANDIN_APP_SLUG")]
    app_slug: Option<String>,
    /// The App client ID.
    #[arg(long, env = "STANDIN_CLIENT_ID")]
    client_id: Option<String>,
    /// Replication lag of new tokens in seconds.
    #[arg(long, env = "STANDIN_REPLICATION_LAG_SECS", default_value_t = 0)]
    replication_lag_secs: u64,
    /// Clock skew in seconds.
    #[arg(
        long,
        env = "STANDIN_CLOCK_SKEW_SECS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    clock_skew_secs: i64,
    /// Requests per hour per token and for the App.
    #[arg(long, env = "STANDIN_RATE_LIMIT_PER_HOUR", default_value_t = 5000)]
    rate_limit_per_hour: u32,
    /// Format of minted tokens: `stateless` or `classic`.
    #[arg(long, env = "STANDIN_TOKEN_FORMAT", default_value = "stateless")]
    token_format: TokenFormat,
}

/// Groups `owner/repo` entries into one installation per owner.
fn installations(
    repos: &[String],
    permissions: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<InstallationSpec>> {
    let mut out: Vec<InstallationSpec> = Vec::new();
    for entry in repos.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let (owner, repo) = entry
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .with_context(|| format!("STANDIN_REPOS entry {entry:?} is not owner/repo"))?;
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        match out.iter_mut().find(|i| i.account == owner) {
            Some(inst) => inst.repositories.push(repo.to_string()),
            None => out.push(InstallationSpec {
                id: 1001 + out.len() as u64,
                account: owner.to_string(),
                repositories: vec![repo.to_string()],
                permissions: permissions.clone(),
            }),
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let pem = std::fs::read_to_string(&args.app_public_key_path)
        .with_context(|| format!("reading {}", args.app_public_key_path.display()))?;
    let mut config = StandInConfig::new(args.app_id, pem, args.git_root.clone());
    if !args.repos.is_empty() {
        let permissions = config
            .installations
            .first()
            .map(|i| i.permissions.clone())
            .unwrap_or_default();
        config.installations = installations(&args.repos, &permissions)?;
    }
    if let Some(slug) = args.app_slug {
        config.app_slug = slug;
    }
    if let Some(client_id) = args.client_id {
        config.client_id = client_id;
    }
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.replication_lag = Duration::from_secs(args.replication_lag_secs);
    config.clock_skew_secs = args.clock_skew_secs;
    config.rate_limit_per_hour = args.rate_limit_per_hour;
    config.token_format = args.token_format;
    let installs = config.installations.clone();

    let standin = StandIn::start_on(config, args.addr).await?;
    for inst in &installs {
        for repo in &inst.repositories {
            let path = standin.create_repo(&inst.account, repo)?;
            tracing::info!(repo = %format!("{}/{repo}", inst.account), path = %path.display(), "repository ready");
        }
    }
    tracing::info!(url = %standin.url(), "GitHub stand-in listening");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    drop(standin);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_group_by_owner() {
        let perms = BTreeMap::from([("contents".to_string(), "write".to_string())]);
        let repos = vec![
            "octo-org/a".to_string(),
            "octo-org/b.git".to_string(),
            "other/c".to_string(),
        ];
        let got = installations(&repos, &perms).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 1001);
        assert_eq!(got[0].repositories, vec!["a", "b"]);
        assert_eq!(got[1].account, "other");
        assert!(installations(&["nope".to_string()], &perms).is_err());
    }
}
