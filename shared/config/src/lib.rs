//! Configuration pieces both Penguin services share: the GitHub endpoints, a
//! typed error that names the offending variable, and the exit-64 convention
//! for bad configuration (`EX_USAGE` from sysexits.h).

use std::{fmt::Display, process::ExitCode};

/// `EX_USAGE`: the process was started with bad configuration.
pub const EXIT_CONFIG: u8 = 64;

/// A setting that is missing, malformed or contradicts another one. Every
/// variant names the environment variable so the operator knows what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("{var} is required: {why}")]
    Missing {
        /// The environment variable.
        var: &'static str,
        /// Why it is needed in this configuration.
        why: String,
    },
    /// A setting has a value that cannot be used.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// Two settings cannot be used together.
    #[error("{var} conflicts with {other}: {why}")]
    Conflict {
        /// The first environment variable.
        var: &'static str,
        /// The variable it conflicts with.
        other: &'static str,
        /// How to resolve it.
        why: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(var: &'static str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            var,
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`ConfigError::Missing`].
    pub fn missing(var: &'static str, why: impl Display) -> Self {
        ConfigError::Missing {
            var,
            why: why.to_string(),
        }
    }
}

/// Where GitHub is: github.com by default, or GitHub Enterprise Server, or the
/// test stand-in.
#[derive(Clone, Debug, clap::Args)]
pub struct GitHubEndpoints {
    /// REST API base URL.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,

    /// Web and git server URL; its scheme and host go into git credentials.
    #[arg(long, env = "GITHUB_SERVER_URL", default_value = "https://github.com")]
    pub github_server_url: String,

    /// The repository this pod serves, as `owner/repo`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub github_repository: Option<String>,
}

impl GitHubEndpoints {
    /// Checks the URLs and the repository shape.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("GITHUB_API_URL", &self.github_api_url)?;
        check_http_url("GITHUB_SERVER_URL", &self.github_server_url)?;
        if let Some(repo) = &self.github_repository {
            parse_repository(repo).map_err(|e| ConfigError::invalid("GITHUB_REPOSITORY", e))?;
        }
        Ok(())
    }

    /// `scheme://host[:port]` of the git server, the form git credential lines use.
    pub fn server_origin(&self) -> String {
        self.github_server_url.trim_end_matches('/').to_string()
    }
}

/// Splits `owner/repo`, rejecting anything else.
pub fn parse_repository(value: &str) -> Result<(&str, &str), String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match value.split_once('/') {
        Some((owner, repo)) if valid(owner) && valid(repo) => Ok((owner, repo)),
        _ => Err(format!("expected owner/repo, got {value:?}")),
    }
}

fn check_http_url(var: &'static str, value: &str) -> Result<(), ConfigError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| ConfigError::invalid(var, format!("{value:?} is not an http(s) URL")))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains('@') {
        return Err(ConfigError::invalid(
            var,
            format!("{value:?} has no host (or has credentials in it)"),
        ));
    }
    Ok(())
}

/// Parses the command line and environment into `T`; on a usage error prints
/// clap's message, first naming the environment variable of the argument it
/// is about (clap names only the flag), and exits 64. `--help` and
/// `--version` exit 0 as usual.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_CONFIG } else { 0 };
            if let Some(var) = env_var_of::<T>(&err) {
                eprintln!("configuration error in {var}:");
            }
            let _ = err.print();
            std::process::exit(code.into());
        }
    }
}

/// The environment variable behind the argument a clap error is about.
fn env_var_of<T: clap::CommandFactory>(err: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(shown) = err.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    // `--flag <VALUE>`: the long name.
    let long = shown.split_whitespace().next()?.strip_prefix("--")?;
    let command = T::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    arg.get_env().map(|v| v.to_string_lossy().into_owned())
}

/// Prints a configuration error and returns the exit code to end with.
pub fn config_failure(err: &ConfigError) -> ExitCode {
    eprintln!("configuration error: {err}");
    ExitCode::from(EXIT_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Demo {
        #[arg(long, env = "DEMO_INTERVAL_SECS", default_value_t = 60)]
        interval_secs: u64,
    }

    #[test]
    fn a_bad_value_names_its_environment_variable() {
        use clap::Parser;
        let err = Demo::try_parse_from(["demo", "--interval-secs", "soon"]).unwrap_err();
        assert_eq!(
            env_var_of::<Demo>(&err).as_deref(),
            Some("DEMO_INTERVAL_SECS")
        );
        let err = Demo::try_parse_from(["demo", "--nope"]).unwrap_err();
        assert_eq!(env_var_of::<Demo>(&err), None);
    }

    #[test]
    fn repository_must_be_owner_slash_repo() {
        assert_eq!(
            parse_repository("octo-org/hello-world"),
            Ok(("octo-org", "hello-world"))
        );
        for bad in ["", "octo", "/repo", "owner/", "a/b/c", "a b/c"] {
            assert!(parse_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_checked_and_named() {
        let mut endpoints = GitHubEndpoints {
            github_api_url: "ftp://example".into(),
            github_server_url: "https://github.com/".into(),
            github_repository: None,
        };
        let err = endpoints.validate().unwrap_err();
        assert!(
            err.to_string().starts_with("GITHUB_API_URL is invalid"),
            "{err}"
        );
        endpoints.github_api_url = "http://127.0.0.1:9000".into();
        endpoints.validate().unwrap();
        assert_eq!(endpoints.server_origin(), "https://github.com");
        endpoints.github_repository = Some("nope".into());
        assert!(endpoints
            .validate()
            .unwrap_err()
            .to_string()
            .contains("GITHUB_REPOSITORY"));
    }
}

/// The value of the secret variable `name`, or the content of the file that
/// `<name>_FILE` names. Kubernetes and compose mount secrets as files, and
/// a file, unlike the environment, is not inherited by child processes or
/// readable from `/proc/<pid>/environ`. Setting both is an error, and so is
/// an unreadable file; the message names the variable and the path, never
/// the content. Trailing newlines are dropped. `None` when neither is set.
pub fn secret_var(name: &str) -> Result<Option<String>, String> {
    secret_var_with(name, |var| std::env::var(var).ok())
}

/// [`secret_var`] with the environment given as a lookup (for tests).
pub fn secret_var_with(
    name: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let file_var = format!("{name}_FILE");
    match (env(name).filter(|v| !v.is_empty()), env(&file_var)) {
        (Some(_), Some(_)) => Err(format!(
            "{name} and {file_var} are both set: give the secret one way"
        )),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some(text.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("{file_var}: cannot read {path}: {e}")),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_secret_comes_from_the_variable_or_its_file_never_both() {
        let dir = std::env::temp_dir().join(format!("penguin-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| map.get(k).cloned()
        };
        let path = file.display().to_string();
        assert_eq!(
            secret_var_with("S", env(&[("S", "plain")])).unwrap(),
            Some("plain".into())
        );
        assert_eq!(
            secret_var_with("S", env(&[("S_FILE", &path)])).unwrap(),
            Some("s3cret-from-file".into())
        );
        assert_eq!(secret_var_with("S", env(&[])).unwrap(), None);
        let both = secret_var_with("S", env(&[("S", "x"), ("S_FILE", &path)])).unwrap_err();
        assert!(both.contains("S_FILE"), "{both}");
        let missing = secret_var_with("S", env(&[("S_FILE", "/nonexistent/secret")])).unwrap_err();
        assert!(missing.contains("/nonexistent/secret") && missing.contains("S_FILE"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
