//! TLS for the TCP listener, with the certificate and key reloaded from their
//! files whenever they change (cert-manager renews them in place).

use crate::watch::on_change;
use futures::Stream;
use rustls::{
    crypto::ring::default_provider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use std::{
    io,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::wrappers::ReceiverStream;

/// The certificate and key files of a TLS listener.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// A TLS certificate or key that cannot be used (fix the files; a retry
/// without a change cannot help).
#[derive(Debug, thiserror::Error)]
#[error("TLS files {cert} / {key} are unusable: {reason}")]
pub struct TlsError {
    cert: String,
    key: String,
    reason: String,
}

/// Reads a certificate chain and its private key.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let err = |reason: String| TlsError {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err(format!("certificate: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| err(format!("key: {e}")))?;
    CertifiedKey::from_der(certs, key, &default_provider()).map_err(|e| err(e.to_string()))
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Self {
        ReloadingCert {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// Swaps in a renewed certificate; new handshakes use it.
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A rustls server config (h2 only) over the reloading certificate.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted, handshaken TLS connections. Handshakes run concurrently so a
/// slow or silent client cannot hold up the accept loop.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            // Small request/response pairs: Nagle would add ~40 ms stalls.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Reloads `cert` whenever the certificate or key file changes; a pair that
/// does not load keeps the previous certificate in force.
pub fn keep_fresh(files: &TlsFiles, cert: Arc<ReloadingCert>) {
    for path in [files.cert.clone(), files.key.clone()] {
        let (files, cert) = (files.clone(), cert.clone());
        on_change(path, move |_| match load_certified_key(&files) {
            Ok(key) => {
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                cert.replace(key);
            }
            Err(err) => tracing::warn!(%err, "keeping the previous TLS certificate"),
        });
    }
}
