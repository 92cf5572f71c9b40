//! Authenticating gRPC callers that come over TCP, shared by the tokenator
//! and the runner: TLS whose certificate reloads when cert-manager renews it,
//! and Kubernetes projected ServiceAccount JWTs verified against a JWKS
//! (issuer, audience, expiry, asymmetric algorithms only). Deny by default:
//! what an authenticated subject may do is each service's own policy.
//!
//! - [`settings`]: the variables and their validation.
//! - [`jwks`]: loading and refreshing the keys.
//! - [`jwt`]: verifying a caller's bearer token.
//! - [`tls`]: the TLS listener.
//! - [`unix`]: the same-host Unix socket listener.

pub mod jwks;
pub mod jwt;
pub mod settings;
pub mod tls;
pub mod unix;
mod watch;

pub use jwks::{JwksError, JwksSource, JwksUrl};
pub use jwt::JwtVerifier;
pub use settings::{AuthSettings, AuthVars, RawAuth};
pub use tls::{ReloadingCert, TlsError, TlsFiles};
pub use watch::on_change;
