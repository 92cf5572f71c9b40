//! Validating a TCP listener's caller-authentication settings. Each service
//! names its own variables ([`AuthVars`]), so an error names the one to fix.

use crate::{
    jwks::{JwksSource, JwksUrl},
    tls::TlsFiles,
};
use penguin_config::ConfigError;
use std::path::PathBuf;

/// The environment variables of one service's TCP caller authentication.
#[derive(Clone, Copy, Debug)]
pub struct AuthVars {
    /// JWKS file.
    pub jwks_file: &'static str,
    /// JWKS URL.
    pub jwks_url: &'static str,
    /// Required `iss`.
    pub issuer: &'static str,
    /// Required `aud`.
    pub audience: &'static str,
    /// TLS certificate.
    pub tls_cert: &'static str,
    /// TLS key.
    pub tls_key: &'static str,
    /// The plaintext opt-in, for services that offer one.
    pub plaintext: Option<&'static str>,
}

/// The raw values, as parsed from flags and environment.
#[derive(Clone, Debug, Default)]
pub struct RawAuth {
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// Bearer token file for the JWKS URL.
    pub jwks_token_file: Option<PathBuf>,
    /// CA bundle for the JWKS URL.
    pub jwks_ca_file: Option<PathBuf>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// TLS certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS key.
    pub tls_key: Option<PathBuf>,
    /// Plaintext opt-in.
    pub plaintext: bool,
}

/// Validated caller authentication of a TCP listener.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Keys that verify callers' JWTs.
    pub jwks: JwksSource,
    /// Required issuer.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// TLS files; `None` only with the plaintext opt-in.
    pub tls: Option<TlsFiles>,
}

impl RawAuth {
    /// True when no JWKS is given (callers could not be authenticated).
    pub fn has_no_jwks(&self) -> bool {
        self.jwks_file.is_none() && self.jwks_url.is_none()
    }

    /// Checks the settings; `Ok(None)` when no JWKS is given at all.
    pub fn validate(&self, vars: &AuthVars) -> Result<Option<AuthSettings>, ConfigError> {
        let jwks = match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict {
                    var: vars.jwks_file,
                    other: vars.jwks_url,
                    why: "give the JWKS one way".into(),
                })
            }
            (Some(file), None) => JwksSource::File(file.clone()),
            (None, Some(url)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::invalid(vars.jwks_url, "not an http(s) URL"));
                }
                JwksSource::Url(JwksUrl {
                    url: url.clone(),
                    token_file: self.jwks_token_file.clone(),
                    ca_file: self.jwks_ca_file.clone(),
                })
            }
            (None, None) => return Ok(None),
        };
        let issuer = self
            .issuer
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::missing(vars.issuer, "callers' JWTs are checked against it")
            })?;
        let audience = self
            .audience
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::missing(vars.audience, "callers' JWTs are checked against it")
            })?;
        let plaintext = self.plaintext && vars.plaintext.is_some();
        let tls = match (&self.tls_cert, &self.tls_key, plaintext) {
            (Some(cert), Some(key), false) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None, true) => None,
            (Some(_), Some(_), true) => {
                return Err(ConfigError::Conflict {
                    var: vars.plaintext.unwrap_or(vars.tls_cert),
                    other: vars.tls_cert,
                    why: "choose TLS or plaintext".into(),
                })
            }
            (Some(_), None, _) => {
                return Err(ConfigError::missing(
                    vars.tls_key,
                    format!("{} is set", vars.tls_cert),
                ))
            }
            (None, Some(_), _) => {
                return Err(ConfigError::missing(
                    vars.tls_cert,
                    format!("{} is set", vars.tls_key),
                ))
            }
            (None, None, false) => {
                let why = match vars.plaintext {
                    Some(opt_in) => format!(
                        "the TCP listener serves TLS; set {} and {}, or opt in to {opt_in}=true",
                        vars.tls_cert, vars.tls_key
                    ),
                    None => format!(
                        "the TCP listener serves TLS only; set {} and {}",
                        vars.tls_cert, vars.tls_key
                    ),
                };
                return Err(ConfigError::missing(vars.tls_cert, why));
            }
        };
        Ok(Some(AuthSettings {
            jwks,
            issuer,
            audience,
            tls,
        }))
    }
}
