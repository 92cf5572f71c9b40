//! `penguin-tokenator git-credential <get|store|erase>`: git's credential
//! helper protocol, answered from the running tokenator over its Unix socket.
//! Nothing is stored, so nothing can be erased or go stale.

use crate::client::connect_unix;
use penguin_proto::tokenator::v1::{token_service_client::TokenServiceClient, GetTokenRequest};
use std::{
    collections::HashMap,
    io::{BufRead, Write},
    path::Path,
};

/// Why the helper could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Reading git's request or writing the answer failed.
    #[error("credential helper I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The tokenator could not be reached.
    #[error("cannot reach the tokenator at {socket}: {reason}")]
    Unreachable {
        /// Socket path.
        socket: String,
        /// Why.
        reason: String,
    },
    /// The tokenator refused.
    #[error("the tokenator has no token: {0}")]
    NoToken(String),
}

/// Reads git's `key=value` lines up to a blank line or end of input.
pub fn read_request(input: impl BufRead) -> std::io::Result<HashMap<String, String>> {
    let mut attrs = HashMap::new();
    for line in input.lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            attrs.insert(k.to_string(), v.to_string());
        }
    }
    Ok(attrs)
}

/// True when git asks about the configured server (scheme and host[:port]).
pub fn matches_server(attrs: &HashMap<String, String>, server_origin: &str) -> bool {
    let (scheme, rest) = server_origin
        .split_once("://")
        .unwrap_or(("https", server_origin));
    let host = rest.split('/').next().unwrap_or(rest);
    attrs.get("protocol").map(String::as_str) == Some(scheme)
        && attrs
            .get("host")
            .is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// Runs one helper operation. `get` for another host, `store` and `erase`
/// answer nothing, as git expects from a helper that has nothing to say.
pub async fn run(
    operation: &str,
    socket: &Path,
    server_origin: &str,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), HelperError> {
    let attrs = read_request(input)?;
    if operation != "get" || !matches_server(&attrs, server_origin) {
        return Ok(());
    }
    let unreachable = |reason: String| HelperError::Unreachable {
        socket: socket.display().to_string(),
        reason,
    };
    let channel = connect_unix(socket)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = TokenServiceClient::new(channel)
        .get_token(GetTokenRequest::default())
        .await
        .map_err(|status| HelperError::NoToken(status.message().to_string()))?
        .into_inner();
    let mut reply = format!("username=x-access-token\npassword={}\n", answer.token);
    if let Some(expiry) = answer.expires_at {
        // git ≥ 2.41 stops using the credential after this time.
        reply.push_str(&format!("password_expiry_utc={}\n", expiry.seconds));
    }
    output.write_all(reply.as_bytes())?;
    output.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_requests_and_matches_only_the_server() {
        let attrs =
            read_request("protocol=https\nhost=github.com\npath=o/r.git\n\nignored=1\n".as_bytes())
                .unwrap();
        assert_eq!(attrs.len(), 3);
        assert!(matches_server(&attrs, "https://github.com"));
        assert!(!matches_server(&attrs, "https://ghe.example.com"));
        assert!(!matches_server(&attrs, "http://github.com"));
        let local = read_request("protocol=http\nhost=127.0.0.1:8090\n".as_bytes()).unwrap();
        assert!(matches_server(&local, "http://127.0.0.1:8090/"));
    }

    #[tokio::test]
    async fn other_hosts_and_operations_answer_nothing() {
        let mut out = Vec::new();
        run(
            "get",
            Path::new("/nonexistent.sock"),
            "https://github.com",
            "protocol=https\nhost=gitlab.com\n\n".as_bytes(),
            &mut out,
        )
        .await
        .unwrap();
        run(
            "erase",
            Path::new("/nonexistent.sock"),
            "https://github.com",
            "protocol=https\nhost=github.com\n\n".as_bytes(),
            &mut out,
        )
        .await
        .unwrap();
        assert!(out.is_empty());
        let err = run(
            "get",
            Path::new("/nonexistent.sock"),
            "https://github.com",
            "protocol=https\nhost=github.com\n\n".as_bytes(),
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent.sock"), "{err}");
    }
}
