//! The gRPC side: the token service, caller authentication and policy (TLS
//! and JWT verification live in `penguin-grpc-auth`).

pub mod auth;
pub mod policy;
pub mod service;
pub mod unix_authority;

pub use service::{Callers, TokenGrpc};
