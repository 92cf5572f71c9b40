//! Fetching a JWKS the way an in-cluster client must: the Kubernetes API
//! server's `/openid/v1/jwks` is served under the cluster's own CA and wants
//! a bearer token (the pod's ServiceAccount token, bound to the
//! `system:service-account-issuer-discovery` ClusterRole). The token file is
//! re-read on every fetch, since projected tokens rotate.

use crate::config::JwksUrl;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::{sync::Arc, time::Duration};

/// The body of `GET url`, with the configured token and CA.
pub(crate) async fn fetch(source: &JwksUrl, timeout: Duration) -> Result<Vec<u8>, String> {
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
