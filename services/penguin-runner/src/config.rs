//! The runner's settings: every one an environment variable with a matching
//! flag (`--help` lists them), validated into [`Settings`].

use globset::{Glob, GlobSet, GlobSetBuilder};
use penguin_config::ConfigError;
use penguin_grpc_auth::{AuthSettings, AuthVars, RawAuth};
use penguin_telemetry::LogFormat;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Command line: an optional subcommand over the shared settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "penguin-runner",
    version,
    about = "Runs repository code in disposable jobs that hold no token, key or secret; serves them over gRPC."
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings.
    #[command(flatten)]
    pub args: Args,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve jobs (the default).
    Serve,
    /// Exit 0 when the runner on PENGUIN_RUNNER_SOCKET reports SERVING (container health checks).
    Healthcheck,
    /// Run one job on the runner at PENGUIN_RUNNER_SOCKET and stream its output (operators, tests).
    Exec(ExecArgs),
}

/// `penguin-runner exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Directory sent as the job's workspace (default: an empty one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Wall-clock limit of the job.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Extra environment for the job, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the workspace.
    #[arg(long, default_value = "")]
    pub workdir: String,
    /// Write the job's changes back into --dir.
    #[arg(long, requires = "dir")]
    pub apply: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// Every setting.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Unix socket for same-host callers (compose, development, the health check).
    #[arg(
        long,
        env = "PENGUIN_RUNNER_SOCKET",
        default_value = "/run/penguin-runner/runner.sock"
    )]
    pub socket: PathBuf,
    /// TCP listener (TLS and ServiceAccount JWTs only); off when unset.
    #[arg(long, env = "PENGUIN_RUNNER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// JWKS file that verifies callers' ServiceAccount JWTs on the TCP listener.
    #[arg(long, env = "PENGUIN_RUNNER_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (alternative to the file), fetched at start and refreshed.
    #[arg(long, env = "PENGUIN_RUNNER_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Bearer token file sent with each JWKS_URL fetch.
    #[arg(long, env = "PENGUIN_RUNNER_JWKS_TOKEN_FILE")]
    pub jwks_token_file: Option<PathBuf>,
    /// CA bundle that verifies JWKS_URL instead of the public roots.
    #[arg(long, env = "PENGUIN_RUNNER_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,
    /// Required `iss` of callers' JWTs.
    #[arg(long, env = "PENGUIN_RUNNER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of callers' JWTs.
    #[arg(
        long,
        env = "PENGUIN_RUNNER_JWT_AUDIENCE",
        default_value = "penguin-runner"
    )]
    pub jwt_audience: String,
    /// JWT subjects that may run jobs over TCP, comma-separated globs
    /// (`system:serviceaccount:penguin:penguin`). Empty: nobody.
    #[arg(long, env = "PENGUIN_RUNNER_ALLOWED_SUBJECTS", value_delimiter = ',')]
    pub allowed_subjects: Vec<String>,
    /// TLS certificate (PEM chain) for the TCP listener; reloaded when it changes.
    #[arg(long, env = "PENGUIN_RUNNER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the TCP listener; reloaded when it changes.
    #[arg(long, env = "PENGUIN_RUNNER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Where job directories are made (each job gets its own, removed after).
    #[arg(long, env = "PENGUIN_RUNNER_WORK_DIR", default_value = "/work")]
    pub work_dir: PathBuf,
    /// Jobs at once; further jobs wait for a slot.
    #[arg(long, env = "PENGUIN_RUNNER_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
    /// How long a job waits for a slot before RESOURCE_EXHAUSTED.
    #[arg(long, env = "PENGUIN_RUNNER_QUEUE_WAIT_SECS", default_value_t = 300)]
    pub queue_wait_secs: u64,
    /// Variables of the runner's own environment that jobs get (comma-separated).
    #[arg(
        long,
        env = "PENGUIN_RUNNER_ENV_ALLOWLIST",
        value_delimiter = ',',
        default_value = "PATH,LANG,LC_ALL,TZ"
    )]
    pub env_allowlist: Vec<String>,
    /// Most wall-clock time a job may take.
    #[arg(long, env = "PENGUIN_RUNNER_MAX_WALL_SECS", default_value_t = 1800)]
    pub max_wall_secs: u64,
    /// Most CPU time per process (RLIMIT_CPU).
    #[arg(long, env = "PENGUIN_RUNNER_MAX_CPU_SECS", default_value_t = 1800)]
    pub max_cpu_secs: u64,
    /// Most address space per process, MiB (RLIMIT_AS).
    #[arg(long, env = "PENGUIN_RUNNER_MAX_MEMORY_MB", default_value_t = 4096)]
    pub max_memory_mb: u64,
    /// Most processes and threads a job may have at once (RLIMIT_NPROC).
    #[arg(long, env = "PENGUIN_RUNNER_MAX_PROCESSES", default_value_t = 256)]
    pub max_processes: u64,
    /// Largest file a job may write, MiB (RLIMIT_FSIZE).
    #[arg(long, env = "PENGUIN_RUNNER_MAX_FILE_MB", default_value_t = 1024)]
    pub max_file_mb: u64,
    /// Most open files per process (RLIMIT_NOFILE).
    #[arg(long, env = "PENGUIN_RUNNER_MAX_OPEN_FILES", default_value_t = 1024)]
    pub max_open_files: u64,
    /// Most stdout and stderr a job returns, KiB; the rest is dropped.
    #[arg(long, env = "PENGUIN_RUNNER_MAX_OUTPUT_KB", default_value_t = 1024)]
    pub max_output_kb: u64,
    /// Largest workspace a job may bring, unpacked, MiB.
    #[arg(long, env = "PENGUIN_RUNNER_MAX_WORKSPACE_MB", default_value_t = 1024)]
    pub max_workspace_mb: u64,
    /// Most changed-file content a job returns, MiB.
    #[arg(long, env = "PENGUIN_RUNNER_MAX_CHANGES_MB", default_value_t = 16)]
    pub max_changes_mb: u64,
    /// Log format.
    #[arg(long, env = "PENGUIN_RUNNER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The most a job may use; a job's own limits are clamped to these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maxima {
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU seconds per process.
    pub cpu_secs: u64,
    /// Address space per process, bytes.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub processes: u64,
    /// File size, bytes.
    pub file_bytes: u64,
    /// Open files.
    pub open_files: u64,
    /// Output bytes.
    pub output_bytes: u64,
    /// Workspace bytes, unpacked.
    pub workspace_bytes: u64,
    /// Changed-file content bytes.
    pub changes_bytes: u64,
}

/// The TCP listener and who may call it.
#[derive(Clone, Debug)]
pub struct TcpSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// JWKS, issuer, audience, TLS.
    pub auth: AuthSettings,
    /// Subjects that may run jobs.
    pub allowed: GlobSet,
    /// The globs as given, for the log.
    pub allowed_patterns: Vec<String>,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Unix socket path.
    pub socket: PathBuf,
    /// TCP listener, when on.
    pub tcp: Option<TcpSettings>,
    /// Job directories' parent.
    pub work_dir: PathBuf,
    /// Jobs at once.
    pub concurrency: usize,
    /// Wait for a slot.
    pub queue_wait: Duration,
    /// Names passed from the runner's environment.
    pub env_allowlist: Vec<String>,
    /// Limits.
    pub maxima: Maxima,
    /// Log format.
    pub log_format: LogFormat,
}

const AUTH_VARS: AuthVars = AuthVars {
    jwks_file: "PENGUIN_RUNNER_JWKS_FILE",
    jwks_url: "PENGUIN_RUNNER_JWKS_URL",
    issuer: "PENGUIN_RUNNER_JWT_ISSUER",
    audience: "PENGUIN_RUNNER_JWT_AUDIENCE",
    tls_cert: "PENGUIN_RUNNER_TLS_CERT",
    tls_key: "PENGUIN_RUNNER_TLS_KEY",
    plaintext: None,
};

/// True for a name a shell and `env` accept.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Args {
    /// Validates the raw settings; errors name the variable to fix.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        if !self.work_dir.is_absolute() {
            return Err(ConfigError::invalid(
                "PENGUIN_RUNNER_WORK_DIR",
                "must be an absolute path",
            ));
        }
        if !self.socket.is_absolute() {
            return Err(ConfigError::invalid(
                "PENGUIN_RUNNER_SOCKET",
                "must be an absolute path",
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::invalid(
                "PENGUIN_RUNNER_CONCURRENCY",
                "must be between 1 and 256",
            ));
        }
        if let Some(bad) = self.env_allowlist.iter().find(|n| !is_env_name(n)) {
            return Err(ConfigError::invalid(
                "PENGUIN_RUNNER_ENV_ALLOWLIST",
                format!("{bad:?} is not a variable name"),
            ));
        }
        let positive = |var: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError::invalid(var, "must be greater than 0"))
            } else {
                Ok(value)
            }
        };
        let mib = 1024 * 1024;
        let maxima = Maxima {
            wall: Duration::from_secs(positive(
                "PENGUIN_RUNNER_MAX_WALL_SECS",
                self.max_wall_secs,
            )?),
            cpu_secs: positive("PENGUIN_RUNNER_MAX_CPU_SECS", self.max_cpu_secs)?,
            memory_bytes: positive("PENGUIN_RUNNER_MAX_MEMORY_MB", self.max_memory_mb)?
                .saturating_mul(mib),
            processes: positive("PENGUIN_RUNNER_MAX_PROCESSES", self.max_processes)?,
            file_bytes: positive("PENGUIN_RUNNER_MAX_FILE_MB", self.max_file_mb)?
                .saturating_mul(mib),
            open_files: positive("PENGUIN_RUNNER_MAX_OPEN_FILES", self.max_open_files)?,
            output_bytes: positive("PENGUIN_RUNNER_MAX_OUTPUT_KB", self.max_output_kb)?
                .saturating_mul(1024),
            workspace_bytes: positive("PENGUIN_RUNNER_MAX_WORKSPACE_MB", self.max_workspace_mb)?
                .saturating_mul(mib),
            changes_bytes: self.max_changes_mb.saturating_mul(mib),
        };
        Ok(Settings {
            socket: self.socket.clone(),
            tcp: self.tcp()?,
            work_dir: self.work_dir.clone(),
            concurrency: self.concurrency,
            queue_wait: Duration::from_secs(self.queue_wait_secs),
            env_allowlist: self.env_allowlist.clone(),
            maxima,
            log_format: self.log_format,
        })
    }

    fn tcp(&self) -> Result<Option<TcpSettings>, ConfigError> {
        let raw = RawAuth {
            jwks_file: self.jwks_file.clone(),
            jwks_url: self.jwks_url.clone(),
            jwks_token_file: self.jwks_token_file.clone(),
            jwks_ca_file: self.jwks_ca_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: Some(self.jwt_audience.clone()),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            plaintext: false,
        };
        let Some(addr) = self.grpc_addr else {
            return Ok(None);
        };
        let auth = raw.validate(&AUTH_VARS)?.ok_or_else(|| {
            ConfigError::missing(
                "PENGUIN_RUNNER_JWKS_FILE",
                "PENGUIN_RUNNER_GRPC_ADDR is set: TCP callers are authenticated with ServiceAccount JWTs (or set PENGUIN_RUNNER_JWKS_URL)",
            )
        })?;
        let patterns: Vec<String> = self
            .allowed_subjects
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if patterns.is_empty() {
            return Err(ConfigError::missing(
                "PENGUIN_RUNNER_ALLOWED_SUBJECTS",
                "TCP callers are denied unless their JWT subject is allowed",
            ));
        }
        let mut set = GlobSetBuilder::new();
        for pattern in &patterns {
            set.add(Glob::new(pattern).map_err(|e| {
                ConfigError::invalid("PENGUIN_RUNNER_ALLOWED_SUBJECTS", format!("{pattern}: {e}"))
            })?);
        }
        let allowed = set
            .build()
            .map_err(|e| ConfigError::invalid("PENGUIN_RUNNER_ALLOWED_SUBJECTS", e))?;
        Ok(Some(TcpSettings {
            addr,
            auth,
            allowed,
            allowed_patterns: patterns,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["penguin-runner"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().args.validate()
    }

    fn var_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Missing { var, .. }
            | ConfigError::Invalid { var, .. }
            | ConfigError::Conflict { var, .. } => var,
        }
    }

    #[test]
    fn defaults_are_one_job_at_a_time_and_no_tcp() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.concurrency, 1);
        assert!(settings.tcp.is_none());
        assert_eq!(settings.env_allowlist, ["PATH", "LANG", "LC_ALL", "TZ"]);
    }

    #[test]
    fn tcp_needs_jwks_issuer_tls_and_subjects() {
        let tcp = ["--grpc-addr", "127.0.0.1:0"];
        assert_eq!(var_of(parse(&tcp).unwrap_err()), "PENGUIN_RUNNER_JWKS_FILE");
        let mut args = tcp.to_vec();
        args.extend(["--jwks-file", "/j.json"]);
        assert_eq!(
            var_of(parse(&args).unwrap_err()),
            "PENGUIN_RUNNER_JWT_ISSUER"
        );
        args.extend(["--jwt-issuer", "https://k8s"]);
        assert_eq!(var_of(parse(&args).unwrap_err()), "PENGUIN_RUNNER_TLS_CERT");
        args.extend(["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]);
        assert_eq!(
            var_of(parse(&args).unwrap_err()),
            "PENGUIN_RUNNER_ALLOWED_SUBJECTS"
        );
        args.extend(["--allowed-subjects", "system:serviceaccount:penguin:*"]);
        let settings = parse(&args).unwrap();
        assert!(settings
            .tcp
            .unwrap()
            .allowed
            .is_match("system:serviceaccount:penguin:penguin"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (args, var) in [
            (vec!["--concurrency", "0"], "PENGUIN_RUNNER_CONCURRENCY"),
            (vec!["--work-dir", "work"], "PENGUIN_RUNNER_WORK_DIR"),
            (
                vec!["--env-allowlist", "PATH,A=B"],
                "PENGUIN_RUNNER_ENV_ALLOWLIST",
            ),
            (vec!["--max-wall-secs", "0"], "PENGUIN_RUNNER_MAX_WALL_SECS"),
        ] {
            assert_eq!(var_of(parse(&args).unwrap_err()), var, "{args:?}");
        }
    }
}
