//! Where callers' keys come from: a JWKS file (re-read when it changes) or a
//! URL (fetched at start and refreshed). A URL is fetched the way an
//! in-cluster client must: the Kubernetes API server's `/openid/v1/jwks` is
//! served under the cluster's own CA and may want a bearer token (bound to
//! the `system:service-account-issuer-discovery` ClusterRole). The token file
//! is re-read on every fetch, since projected tokens rotate.

use crate::{jwt::JwtVerifier, watch::on_change};
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// How often a JWKS URL is fetched again.
const URL_REFRESH: Duration = Duration::from_secs(300);

/// Where the JWKS comes from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// A file, re-read when it changes.
    File(PathBuf),
    /// A URL, fetched at start and refreshed.
    Url(JwksUrl),
}

/// Where and how to fetch a JWKS.
#[derive(Clone, Debug)]
pub struct JwksUrl {
    /// `https://…/openid/v1/jwks`.
    pub url: String,
    /// Bearer token file, re-read on every fetch (projected tokens rotate).
    pub token_file: Option<PathBuf>,
    /// CA bundle that replaces the public roots for this URL.
    pub ca_file: Option<PathBuf>,
}

/// A JWKS that cannot be used. A retry can help only for a URL (the server
/// may come back); a bad file stays bad until it is fixed.
#[derive(Debug, thiserror::Error)]
#[error("JWKS from {source_name} is unusable: {reason}")]
pub struct JwksError {
    /// File or URL.
    pub source_name: String,
    /// Why.
    pub reason: String,
}

/// Parses a JWKS document.
pub fn parse_jwks(source_name: &str, bytes: &[u8]) -> Result<JwkSet, JwksError> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| JwksError {
        source_name: source_name.into(),
        reason: e.to_string(),
    })?;
    if set.keys.is_empty() {
        return Err(JwksError {
            source_name: source_name.into(),
            reason: "it has no keys".into(),
        });
    }
    Ok(set)
}

/// Loads the JWKS once.
pub async fn load(source: &JwksSource, timeout: Duration) -> Result<JwkSet, JwksError> {
    match source {
        JwksSource::File(path) => {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| JwksError {
                source_name: name.clone(),
                reason: e.to_string(),
            })?;
            parse_jwks(&name, &bytes)
        }
        JwksSource::Url(url) => {
            let body = fetch(url, timeout).await.map_err(|reason| JwksError {
                source_name: url.url.clone(),
                reason,
            })?;
            parse_jwks(&url.url, &body)
        }
    }
}

/// Keeps `verifier`'s keys current: a file is re-read when it changes, a URL
/// every five minutes. A source that stops loading keeps the last good keys.
pub fn keep_fresh(source: &JwksSource, verifier: Arc<JwtVerifier>, timeout: Duration) {
    match source {
        JwksSource::File(path) => on_change(path.clone(), move |path| {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    parse_jwks(&path.display().to_string(), &b).map_err(|e| e.to_string())
                }) {
                Ok(keys) => {
                    tracing::info!(path = %path.display(), "JWKS reloaded");
                    verifier.set_keys(keys);
                }
                Err(err) => tracing::error!(%err, "keeping the previous JWKS"),
            }
        }),
        JwksSource::Url(url) => {
            let source = JwksSource::Url(url.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(URL_REFRESH).await;
                    match load(&source, timeout).await {
                        Ok(keys) => verifier.set_keys(keys),
                        Err(err) => tracing::warn!(%err, "keeping the previous JWKS"),
                    }
                }
            });
        }
    }
}

/// The body of `GET url`, with the configured token and CA.
async fn fetch(source: &JwksUrl, timeout: Duration) -> Result<Vec<u8>, String> {
    let client = client(source, timeout)?;
    let mut request = client.get(&source.url);
    if let Some(path) = &source.token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| format!("token file {}: {e}", path.display()))?;
        request = request.bearer_auth(token.trim());
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    Ok(response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?
        .to_vec())
}

fn client(source: &JwksUrl, timeout: Duration) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &source.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}
