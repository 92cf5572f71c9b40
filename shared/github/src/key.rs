//! Loading the App's RSA private key.

use jsonwebtoken::EncodingKey;
use rsa::{pkcs1::DecodeRsaPrivateKey, pkcs8::DecodePrivateKey, RsaPrivateKey};
use std::path::{Path, PathBuf};

/// Why a private key file could not be used. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read private key {path}: {source}")]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an RSA private key in PEM form.
    #[error("{path} is not an RSA private key in PEM form (expected PKCS#1 or PKCS#8 PEM)")]
    NotRsaPem {
        /// The key file.
        path: PathBuf,
    },
}

/// The App's private key, ready to sign RS256 JWTs. Debug output hides it.
#[derive(Clone)]
pub struct AppKey {
    encoding: EncodingKey,
    path: PathBuf,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AppKey {
    /// Reads a PKCS#1 PEM file (the `RSA PRIVATE KEY` kind GitHub hands out)
    /// or a PKCS#8 one (`PRIVATE KEY`).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref().to_path_buf();
        let pem = std::fs::read(&path).map_err(|source| KeyError::Unreadable {
            path: path.clone(),
            source,
        })?;
        Self::from_pem(&pem, path)
    }

    /// Parses PEM bytes; `path` only names the source in errors.
    pub fn from_pem(pem: &[u8], path: PathBuf) -> Result<Self, KeyError> {
        let not_rsa = || KeyError::NotRsaPem { path: path.clone() };
        let text = std::str::from_utf8(pem).map_err(|_| not_rsa())?;
        // Validate fully with `rsa` first: jsonwebtoken accepts some keys
        // lazily and would only fail at signing time.
        RsaPrivateKey::from_pkcs1_pem(text)
            .or_else(|_| RsaPrivateKey::from_pkcs8_pem(text))
            .map_err(|_| not_rsa())?;
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(|_| not_rsa())?;
        Ok(AppKey { encoding, path })
    }

    /// The file the key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS1: &str = include_str!("../../../tests/support/fixtures/app-key.pem");
    const PKCS8: &str = include_str!("../../../tests/support/fixtures/other-app-key.pkcs8.pem");
    const PUBLIC: &str = include_str!("../../../tests/support/fixtures/app-key.pub.pem");

    #[test]
    fn accepts_pkcs1_and_pkcs8() {
        AppKey::from_pem(PKCS1.as_bytes(), "a.pem".into()).unwrap();
        AppKey::from_pem(PKCS8.as_bytes(), "b.pem".into()).unwrap();
    }

    #[test]
    fn rejects_other_content_naming_the_path_without_quoting_it() {
        for bad in [
            PUBLIC,
            "hello",
            "",
            &format!(
                "-----BEGIN RSA {k}-----\nAAAA\n-----END RSA {k}-----\n",
                k = "PRIVATE KEY"
            ),
        ] {
            let err = AppKey::from_pem(bad.as_bytes(), "/secrets/app.pem".into()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("/secrets/app.pem"), "{msg}");
            assert!(!msg.contains("AAAA") && !msg.contains("MII"), "{msg}");
        }
        let err = AppKey::from_pem_file("/nonexistent/key.pem").unwrap_err();
        assert!(err
            .to_string()
            .contains("cannot read private key /nonexistent/key.pem"));
    }
}
