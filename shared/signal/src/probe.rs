//! `GET <path>` on a local HTTP port, answered 200 within two seconds: the
//! container HEALTHCHECK of images that have no shell, curl or wget.

use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// True when `GET path` on `addr` answers 200 within two seconds.
pub async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}

/// The address to probe for a listen address (`0.0.0.0` → loopback).
pub fn local(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn unspecified_addresses_probe_loopback() {
        assert_eq!(
            local("0.0.0.0:8000".parse().unwrap()),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            local("[::]:81".parse().unwrap()),
            "[::1]:81".parse().unwrap()
        );
        assert_eq!(
            local("10.0.0.1:80".parse().unwrap()),
            "10.0.0.1:80".parse().unwrap()
        );
    }

    async fn server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn only_a_200_is_healthy() {
        let ok = server(b"HTTP/1.1 200 OK\r\n\r\nok").await;
        let bad = server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(http_ok(ok, "/healthz").await);
        assert!(!http_ok(bad, "/readyz").await);
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(!http_ok(closed, "/").await);
    }
}
