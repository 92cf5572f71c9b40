//! The gRPC side: the token service, caller authentication and policy, TLS.

pub mod auth;
pub mod policy;
pub mod service;
pub mod tls;
pub mod unix_authority;

pub use service::{Callers, TokenGrpc};
