//! The HTTP client and the mapping of HTTP failures to [`LlmError`].
//!
//! TLS is rustls with the *ring* provider (no OpenSSL, no aws-lc). Certificates are checked
//! against the system's trust store (rustls-platform-verifier), or against the Mozilla roots
//! compiled in (webpki-roots) when the system has none, as in slim container images.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::types::LlmError;

/// Longest provider body quoted in an [`LlmError::Upstream`] message.
const BODY_PREFIX_CHARS: usize = 300;

/// Builds the HTTP client: rustls on ring, HTTP/1.1, `connect_timeout` for the TCP and TLS
/// handshake. Deadlines for whole requests are applied by the callers.
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let tls = match rustls_platform_verifier::Verifier::new(provider) {
        Ok(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
        Err(_) => {
            // No system trust store: fall back to the compiled-in Mozilla roots.
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("penguin-llm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

/// Removes the API key from text that goes into errors and logs.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secret: Option<String>,
}

impl Redactor {
    /// Scrubs `secret` (when set and non-empty) from every message.
    pub(crate) fn new(secret: Option<&str>) -> Self {
        Redactor {
            secret: secret.filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// `text` with every occurrence of the secret replaced by `[redacted]`.
    pub(crate) fn clean(&self, text: String) -> String {
        match &self.secret {
            Some(secret) if text.contains(secret.as_str()) => text.replace(secret, "[redacted]"),
            _ => text,
        }
    }

    /// The error with its message scrubbed.
    pub(crate) fn error(&self, error: LlmError) -> LlmError {
        match error {
            LlmError::Upstream { status, message } => LlmError::Upstream {
                status,
                message: self.clean(message),
            },
            LlmError::Transport(m) => LlmError::Transport(self.clean(m)),
            LlmError::Decode(m) => LlmError::Decode(self.clean(m)),
            timeout @ LlmError::Timeout(_) => timeout,
        }
    }
}

/// An error and its sources, joined with `: ` (reqwest's own message is often just
/// "error sending request"). The URL is left out.
pub(crate) fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// Maps a reqwest failure: timeouts to [`LlmError::Timeout`], bad bodies to
/// [`LlmError::Decode`], everything else (connect, reset, broken body) to
/// [`LlmError::Transport`].
pub(crate) fn map_error(error: &reqwest::Error, timeout: Duration) -> LlmError {
    if error.is_timeout() {
        LlmError::Timeout(timeout)
    } else if error.is_decode() {
        LlmError::Decode(chain(error))
    } else if error.is_connect() {
        LlmError::Transport(format!("cannot connect: {}", chain(error)))
    } else {
        LlmError::Transport(chain(error))
    }
}

/// The [`LlmError::Upstream`] for a non-2xx answer: the provider's error message when the body
/// is JSON with one (`error.message`, `error`, `message` or `detail`), else a short prefix of
/// the body, else the status's reason.
pub(crate) fn upstream_error(status: StatusCode, body: &[u8]) -> LlmError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| json_error_message(&json))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                prefix(text, BODY_PREFIX_CHARS)
            }
        });
    LlmError::Upstream {
        status: status.as_u16(),
        message,
    }
}

/// The message of an OpenAI-, Ollama- or vLLM-shaped error body.
pub(crate) fn json_error_message(json: &Value) -> Option<String> {
    let candidates = [
        json.pointer("/error/message"),
        json.get("error"),
        json.get("message"),
        json.get("detail"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str())
        .filter(|m| !m.trim().is_empty())
        .map(|m| prefix(m.trim(), BODY_PREFIX_CHARS * 4))
}

/// At most `max` characters of `text`, with `…` when cut.
fn prefix(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(error: LlmError) -> (u16, String) {
        match error {
            LlmError::Upstream { status, message } => (status, message),
            other => panic!("not upstream: {other:?}"),
        }
    }

    #[test]
    fn upstream_messages_come_from_known_shapes() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        assert_eq!(
            message(upstream_error(StatusCode::TOO_MANY_REQUESTS, openai)),
            (429, "Rate limit reached".into())
        );
        let ollama = br#"{"error":"model 'x' not found"}"#;
        assert_eq!(
            message(upstream_error(StatusCode::NOT_FOUND, ollama)).1,
            "model 'x' not found"
        );
        let vllm = br#"{"object":"error","message":"bad temperature","code":400}"#;
        assert_eq!(
            message(upstream_error(StatusCode::BAD_REQUEST, vllm)).1,
            "bad temperature"
        );
    }

    #[test]
    fn other_bodies_are_quoted_briefly() {
        let html = format!("<html>{}</html>", "x".repeat(5000));
        let (status, text) = message(upstream_error(StatusCode::BAD_GATEWAY, html.as_bytes()));
        assert_eq!(status, 502);
        assert!(text.starts_with("<html>xxx"));
        assert!(text.chars().count() <= BODY_PREFIX_CHARS + 1);
        assert_eq!(
            message(upstream_error(StatusCode::SERVICE_UNAVAILABLE, b"")).1,
            "Service Unavailable"
        );
    }

    #[test]
    fn redactor_scrubs_the_key() {
        let redactor = Redactor::new(Some("sk-secret-123"));
        let cleaned = redactor.error(LlmError::Upstream {
            status: 401,
            message: "Incorrect API key provided: sk-secret-123".into(),
        });
        assert!(!cleaned.to_string().contains("sk-secret-123"));
        assert!(cleaned.to_string().contains("[redacted]"));
    }

    #[test]
    fn client_builds_without_a_global_crypto_provider() {
        client(Duration::from_secs(5)).unwrap();
    }
}
