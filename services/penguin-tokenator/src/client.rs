//! Reaching a running tokenator: gRPC over its Unix socket, and its HTTP
//! readiness endpoint (for the `healthcheck` subcommand, which has no curl).

use std::net::SocketAddr;

pub use penguin_proto::connect_unix;

/// True when `GET /readyz` on `addr` answers 200 within two seconds.
pub async fn ready(addr: SocketAddr) -> bool {
    penguin_signal::probe::http_ok(addr, "/readyz").await
}

/// The address to probe for a listen address (`0.0.0.0` → loopback).
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    penguin_signal::probe::local(listen)
}
