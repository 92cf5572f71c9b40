//! penguin-api settings, from flags or environment.

use penguin_telemetry::LogFormat;
use std::net::{IpAddr, SocketAddr};

/// Command line and environment.
#[derive(Debug, clap::Parser)]
#[command(
    name = "penguin-api",
    version,
    about = "The Penguin web API and GitHub App bot."
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Log format.
    #[arg(long, env = "PENGUIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Cli {
    /// The listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}
