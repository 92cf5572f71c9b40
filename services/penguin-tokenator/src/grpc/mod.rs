//! The gRPC side: the token service, caller authentication and policy, TLS.

pub mod auth;
pub mod policy;
pub mod service;
pub mod tls;

pub use service::{Callers, TokenGrpc};
