//! Credentials for git over https, asked for fresh on every authentication:
//! a token down-scoped to the repository from the tokenator (gRPC over its
//! Unix socket), or, when the tokenator cannot answer (restarting, say), the
//! token it last wrote to the shared credentials file. A rotation between two
//! pushes is invisible, and a tokenator restart does not stop pushes while
//! the last token is still valid. Tokens never touch the clone's disk.

use std::path::PathBuf;

/// Permissions a git token carries: contents and pull requests only.
const GIT_PERMISSIONS: [(&str, &str); 2] = [("contents", "write"), ("pull_requests", "write")];

/// Where a token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The tokenator, scoped to the repository.
    Tokenator,
    /// The shared credentials file (the tokenator did not answer).
    CredentialsFile,
}

impl TokenSource {
    /// `tokenator` or `credentials-file`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Tokenator => "tokenator",
            TokenSource::CredentialsFile => "credentials-file",
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[error("no git token: tokenator: {tokenator}; credentials file: {file}")]
pub struct NoToken {
    tokenator: String,
    file: String,
}

/// Where git tokens come from.
#[derive(Clone, Debug)]
pub struct GitAuth {
    socket: Option<PathBuf>,
    credentials_file: Option<PathBuf>,
    server_url: String,
}

impl GitAuth {
    /// Tokens from the tokenator at `socket`, else from `credentials_file`,
    /// for git on `server_url` (e.g. `https://github.com`).
    pub fn new(
        socket: Option<PathBuf>,
        credentials_file: Option<PathBuf>,
        server_url: &str,
    ) -> GitAuth {
        GitAuth {
            socket,
            credentials_file,
            server_url: server_url.trim_end_matches('/').to_string(),
        }
    }

    /// The same, without the credentials file: for the bot's pushes, whose
    /// token is scoped to one repository and must never fall back to the
    /// installation-wide token the file holds.
    pub fn scoped_only(mut self) -> GitAuth {
        self.credentials_file = None;
        self
    }

    /// Whether git may be given a token for `url`: only for the configured
    /// server's scheme, host and port, whatever a clone's `.git/config`
    /// says its remote is.
    pub fn serves(&self, url: &str) -> bool {
        fn origin(url: &str) -> Option<(String, String)> {
            let (scheme, rest) = url.split_once("://")?;
            let authority = rest.split(['/', '?', '#']).next()?;
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
        }
        matches!((origin(url), origin(&self.server_url)), (Some(a), Some(b)) if a == b)
    }

    /// The https URL git clones `repository` (`owner/name`) from.
    pub fn clone_url(&self, repository: &str) -> String {
        format!("{}/{repository}.git", self.server_url)
    }

    /// A token for pushing to `repository` (`owner/name`), and its source.
    pub async fn token(&self, repository: &str) -> Result<(String, TokenSource), NoToken> {
        let tokenator = match &self.socket {
            Some(socket) => {
                let permissions = GIT_PERMISSIONS.map(|(k, v)| (k.to_string(), v.to_string()));
                match crate::github_api::tokens::scoped_token(socket, repository, &permissions)
                    .await
                {
                    Ok(answer) => return Ok((answer.token, TokenSource::Tokenator)),
                    Err(e) => penguin_telemetry::redact(&e.to_string()).into_owned(),
                }
            }
            None => "PENGUIN_TOKENATOR_SOCKET is not set".to_string(),
        };
        if self.credentials_file.is_none() {
            return Err(NoToken {
                tokenator,
                file: "not used: the token must be scoped to the repository".into(),
            });
        }
        match self.token_in_file() {
            Ok(token) => {
                tracing::warn!(reason = %tokenator, "tokenator unavailable; using the credentials file's token");
                Ok((token, TokenSource::CredentialsFile))
            }
            Err(file) => Err(NoToken { tokenator, file }),
        }
    }

    /// The token the credentials file holds for this server.
    fn token_in_file(&self) -> Result<String, String> {
        let path = self
            .credentials_file
            .as_deref()
            .ok_or("PENGUIN_GIT_CREDENTIALS_PATH is not set")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        token_for(&text, &self.server_url)
            .ok_or_else(|| format!("{} has no token for {}", path.display(), self.server_url))
    }

    /// git2 callbacks that ask for a fresh token on every authentication.
    /// Blocking: use them from `spawn_blocking` with a runtime `handle`.
    pub fn callbacks(
        &self,
        repository: &str,
        handle: tokio::runtime::Handle,
    ) -> git2::RemoteCallbacks<'static> {
        let (auth, repository) = (self.clone(), repository.to_string());
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(move |url, _, _| {
            if !auth.serves(url) {
                tracing::warn!(%url, "git asked for credentials for another server; refused");
                return Err(git2::Error::from_str(&format!(
                    "no credentials for {url}: only {} is served",
                    auth.server_url
                )));
            }
            let (token, _) = handle
                .block_on(auth.token(&repository))
                .map_err(|e| git2::Error::from_str(&e.to_string()))?;
            git2::Cred::userpass_plaintext("x-access-token", &token)
        });
        callbacks
    }
}

/// The password of the `git-credentials` line (`scheme://user:password@host[:port]`)
/// for `server_url`'s scheme and host.
fn token_for(text: &str, server_url: &str) -> Option<String> {
    let (scheme, host) = server_url.split_once("://")?;
    let host = host.split('/').next()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(scheme)?.strip_prefix("://")?;
        let (userinfo, line_host) = rest.rsplit_once('@')?;
        let line_host = line_host.trim_end_matches('/');
        if !line_host.eq_ignore_ascii_case(host) {
            return None;
        }
        let (_, password) = userinfo.split_once(':')?;
        (!password.is_empty()).then(|| percent_decode(password))
    })
}

/// git-credentials lines are URL-encoded; tokens are plain ASCII, but decode anyway.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_for_the_server_is_found() {
        let text = "https://x-access-token:ghs_other@example.com\n\
                    http://x-access-token:ghs_local%2B1@127.0.0.1:8090\n\
                    https://x-access-token:ghs_github@github.com\n";
        assert_eq!(
            token_for(text, "https://github.com").as_deref(),
            Some("ghs_github")
        );
        assert_eq!(
            token_for(text, "http://127.0.0.1:8090/").as_deref(),
            Some("ghs_local+1")
        );
        assert_eq!(token_for(text, "https://127.0.0.1:8090"), None);
        assert_eq!(token_for(text, "https://gitlab.com"), None);
        assert_eq!(token_for("garbage\n\n", "https://github.com"), None);
    }

    #[test]
    fn credentials_go_only_to_the_configured_server() {
        let auth = GitAuth::new(None, None, "https://github.com/");
        assert!(auth.serves("https://github.com/octo-org/hello-world.git"));
        assert!(auth.serves("https://GitHub.com/o/r"));
        assert!(auth.serves("https://user@github.com/o/r"));
        for other in [
            "https://evil.example/o/r.git",
            "http://github.com/o/r.git",
            "https://github.com.evil.example/o/r",
            "https://github.com:8443/o/r",
            "ssh://github.com/o/r",
            "github.com/o/r",
        ] {
            assert!(!auth.serves(other), "{other}");
        }
        let local = GitAuth::new(None, None, "http://127.0.0.1:8090");
        assert!(local.serves("http://127.0.0.1:8090/o/r.git"));
        assert!(!local.serves("http://127.0.0.1:8091/o/r.git"));
    }

    #[tokio::test]
    async fn a_scoped_push_never_falls_back_to_the_files_broader_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("git-credentials");
        let broad = format!("ghs_{}", "b".repeat(36));
        std::fs::write(
            &file,
            format!("https://x-access-token:{broad}@github.com\n"),
        )
        .unwrap();
        let auth = GitAuth::new(
            Some(dir.path().join("no.sock")),
            Some(file),
            "https://github.com",
        )
        .scoped_only();
        let err = auth.token("o/r").await.unwrap_err().to_string();
        assert!(err.contains("must be scoped"), "{err}");
        assert!(!err.contains(&broad));
    }

    #[tokio::test]
    async fn without_the_tokenator_the_file_answers_and_without_both_the_error_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("git-credentials");
        std::fs::write(&file, "https://x-access-token:ghs_fromfile@github.com\n").unwrap();
        let auth = GitAuth::new(
            Some(dir.path().join("no.sock")),
            Some(file.clone()),
            "https://github.com",
        );
        let (token, source) = auth.token("o/r").await.unwrap();
        assert_eq!(
            (token.as_str(), source),
            ("ghs_fromfile", TokenSource::CredentialsFile)
        );
        std::fs::remove_file(&file).unwrap();
        let err = auth.token("o/r").await.unwrap_err().to_string();
        assert!(
            err.contains("tokenator") && err.contains("git-credentials"),
            "{err}"
        );
    }
}
