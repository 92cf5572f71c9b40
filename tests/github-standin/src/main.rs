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
//!   (`stateless`, the default: `ghs_<app id>_<JWT>`; or `classic`: `ghs_` + 36 alphanumerics),
//!   `STANDIN_WEBHOOK_URL` (where the App's webhooks go; unset: none are sent) and
//!   `STANDIN_WEBHOOK_SECRET` (their signing secret).
//! - `STANDIN_USER_TOKENS`: people's personal access tokens as `login:token,login:token`
//!   (unset or empty: none); a REST call with one acts as that user.

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
    /// Requests per hour per token, for the App and per user.
    #[arg(long, env = "STANDIN_RATE_LIMIT_PER_HOUR", default_value_t = 5000)]
    rate_limit_per_hour: u32,
    /// Format of minted tokens: `stateless` or `classic`.
    #[arg(long, env = "STANDIN_TOKEN_FORMAT", default_value = "stateless")]
    token_format: TokenFormat,
    /// Where the App's webhook deliveries go.
    #[arg(long, env = "STANDIN_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The webhook secret deliveries are signed with.
    #[arg(long, env = "STANDIN_WEBHOOK_SECRET", default_value = "")]
    webhook_secret: String,
    /// People's personal access tokens as `login:token,login:token`.
    #[arg(
        long,
        env = "STANDIN_USER_TOKENS",
        default_value = "",
        hide_env_values = true
    )]
    user_tokens: String,
}

/// Parses `login:token,login:token` (blank entries are skipped) into (login, token) pairs. A
/// login is a GitHub login (letters, digits and `-`, at most 39 characters); a token has no
/// whitespace.
fn user_tokens(spec: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (login, token) = entry
            .split_once(':')
            .map(|(l, t)| (l.trim(), t.trim()))
            .filter(|(l, t)| {
                !l.is_empty()
                    && l.len() <= 39
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !t.is_empty()
                    && !t.contains(char::is_whitespace)
            })
            .with_context(|| {
                // The entry may hold a secret: name it by its position and login only.
                let which = match entry.split_once(':') {
                    Some((login, _)) => format!("(login {:?})", login.trim()),
                    None => "(without a ':')".to_string(),
                };
                format!(
                    "STANDIN_USER_TOKENS entry {} {which} is not login:token",
                    out.len() + 1
                )
            })?;
        out.push((login.to_string(), token.to_string()));
    }
    Ok(out)
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
    let user_tokens = user_tokens(&args.user_tokens)?;
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
    config.webhook_url = args.webhook_url;
    config.webhook_secret = args.webhook_secret;
    config.user_tokens = user_tokens;
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

    #[test]
    fn user_tokens_parse() {
        assert_eq!(user_tokens("").unwrap(), vec![]);
        assert_eq!(user_tokens(" , ").unwrap(), vec![]);
        assert_eq!(
            user_tokens("octocat:ghp_abc, mona-lisa:github_pat_x:y,").unwrap(),
            vec![
                ("octocat".to_string(), "ghp_abc".to_string()),
                ("mona-lisa".to_string(), "github_pat_x:y".to_string()),
            ]
        );
        for bad in [
            "octocat",
            "octocat:",
            ":ghp_abc",
            "octo cat:ghp_abc",
            "octocat[bot]:ghp_abc",
            "octocat:ghp abc",
            "ok:t,broken",
        ] {
            let err = user_tokens(bad).expect_err(bad).to_string();
            assert!(err.contains("STANDIN_USER_TOKENS"), "{bad}: {err}");
        }
        let err = user_tokens("a:1,octocat").unwrap_err().to_string();
        assert!(err.contains("entry 2"), "{err}");
        for leaky in ["octocat:ghp secret", "ghp_secret"] {
            let err = user_tokens(leaky).unwrap_err().to_string();
            assert!(!err.contains("secret"), "the token stays out: {err}");
        }
    }
}
