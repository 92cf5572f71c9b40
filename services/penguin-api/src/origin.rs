//! Browser origins: the `PENGUIN_CORS_ORIGINS` allowlist, the CORS layer
//! built from it, and the `Origin` check on WebSocket upgrades.
//!
//! Browsers send the session cookie with a WebSocket handshake from any page,
//! and `SameSite=Strict` does not stop a sibling subdomain (it is the same
//! site). So an upgrade that carries an `Origin` must come from the API's own
//! origin (the request's `Host`) or a listed one. Requests without an `Origin`
//! (non-browser clients with a key) are not affected.

use crate::error::ApiError;
use axum::{
    extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade},
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
};
use serde_json::json;
use std::{sync::Arc, time::Duration};
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

/// Parses one configured origin into its normal form `scheme://host[:port]`
/// (lower case, default port dropped). The reason names what is wrong.
pub fn parse_allowed(origin: &str) -> Result<String, String> {
    if origin.contains('*') {
        return Err("wildcards cannot be used with credentials; list each origin".to_string());
    }
    normalise(origin)
}

/// `scheme://host[:port]` in lower case without the scheme's default port.
fn normalise(origin: &str) -> Result<String, String> {
    let (scheme, authority) = origin
        .split_once("://")
        .ok_or("not an origin: expected scheme://host[:port], like https://penguin.example")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err("the scheme must be http or https".to_string()),
    };
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment (not even a trailing /)".to_string());
    }
    if authority.contains('@') {
        return Err("an origin has no user information".to_string());
    }
    let (host, port) = split_host_port(authority)?;
    let host = host.to_ascii_lowercase();
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if !host_ok {
        return Err("the host is not a valid name or address".to_string());
    }
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Err("the host is not a valid name or address".to_string()),
                }
            }
            None => return Err("the host is not a valid name or address".to_string()),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => Some(p),
            _ => return Err("the port must be a number from 1 to 65535".to_string()),
        },
    };
    Ok((host, port))
}

/// Whether a request's `Origin` is in the (normalised) allowlist.
pub fn listed(origin: &HeaderValue, allowed: &[String]) -> bool {
    origin
        .to_str()
        .ok()
        .and_then(|o| normalise(o).ok())
        .is_some_and(|o| allowed.contains(&o))
}

/// CORS for the listed origins only: `Access-Control-Allow-Origin` (the
/// origin itself) and `Access-Control-Allow-Credentials: true` are sent for
/// them and for no one else, so other pages' scripts cannot read answers.
pub fn cors_layer(allowed: &[String]) -> CorsLayer {
    let origins = Arc::new(allowed.to_vec());
    let credentials = origins.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            listed(origin, &origins)
        }))
        .allow_credentials(AllowCredentials::predicate(move |origin, _| {
            listed(origin, &credentials)
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// Refuses (403) a request whose `Origin` is neither the API's own (same
/// host as the `Host` header) nor listed. No `Origin`, no check.
pub fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(origin.as_bytes());
    if let Ok(normal) = normalise(&text) {
        if allowed.contains(&normal) || same_host(&normal, headers) {
            return Ok(());
        }
    }
    let shown: String = text.chars().take(200).collect();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "ORIGIN_NOT_ALLOWED",
        format!("WebSocket connections from the origin {shown:?} are not allowed"),
    )
    .suggest(
        "Open the WebSocket from the API's own origin, or add the page's origin to PENGUIN_CORS_ORIGINS.",
    )
    .with_details(json!({ "origin": shown })))
}

/// Whether `origin` (normalised) names the host the request was sent to.
fn same_host(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = origin.split_once("://").map_or("http", |(s, _)| s);
    normalise(&format!("{scheme}://{host}")).is_ok_and(|own| own == origin)
}

/// A WebSocket upgrade after the origin check; a request that is not a
/// WebSocket handshake gets the common error shape.
pub fn websocket(
    headers: &HeaderMap,
    allowed: &[String],
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    check(headers, allowed)?;
    upgrade.map_err(|rejection| {
        let status = rejection.status();
        let message = rejection.body_text();
        ApiError::new(status, "WEBSOCKET_REQUIRED", message)
            .suggest("Open this path with a WebSocket client.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_origins_are_normalised_or_refused_with_a_reason() {
        assert_eq!(
            parse_allowed("https://Penguin.Example").unwrap(),
            "https://penguin.example"
        );
        assert_eq!(
            parse_allowed("https://penguin.example:443").unwrap(),
            "https://penguin.example"
        );
        assert_eq!(
            parse_allowed("http://127.0.0.1:5173").unwrap(),
            "http://127.0.0.1:5173"
        );
        assert_eq!(
            parse_allowed("http://[::1]:8080").unwrap(),
            "http://[::1]:8080"
        );
        for bad in [
            "*",
            "https://*.penguin.example",
            "penguin.example",
            "ftp://penguin.example",
            "https://penguin.example/",
            "https://penguin.example/app",
            "https://user@penguin.example",
            "https://penguin.example:0",
            "https://penguin.example:http",
            "https://",
            "https://bad host",
            "https://a..b",
        ] {
            assert!(parse_allowed(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn websocket_origins_must_be_the_apis_own_or_listed() {
        let allowed = vec!["https://penguin.example".to_string()];
        let headers = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        assert!(check(&headers(None, "api.penguin.example"), &allowed).is_ok());
        assert!(check(
            &headers(Some("https://penguin.example"), "api.penguin.example"),
            &allowed
        )
        .is_ok());
        assert!(check(
            &headers(Some("https://api.penguin.example"), "api.penguin.example"),
            &allowed
        )
        .is_ok());
        assert!(check(
            &headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000"),
            &allowed
        )
        .is_ok());
        for foreign in [
            "https://evil.penguin.example",
            "https://penguin.example.evil",
            "http://127.0.0.1:8001",
            "null",
        ] {
            let err = check(&headers(Some(foreign), "127.0.0.1:8000"), &allowed).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{foreign}");
            assert_eq!(err.code, "ORIGIN_NOT_ALLOWED");
        }
    }
}
