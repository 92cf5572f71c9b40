//! Requests to the GitHub stand-in the way an App's clients make them: App
//! JWTs, one HTTP/1.1 request per connection, installation tokens. The
//! stand-in's own tests import all of it (`use …::github_api::*`).

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::{GitHub, APP_ID};

/// The App's private key (`fixtures/app-key.pem`).
pub const APP_KEY: &str = include_str!("../fixtures/app-key.pem");
/// The App's public key, as the stand-in is configured with it.
pub const APP_PUB: &str = include_str!("../fixtures/app-key.pub.pem");
/// A key of no App (PKCS#8).
pub const OTHER_KEY: &str = include_str!("../fixtures/other-app-key.pkcs8.pem");

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs a JWT with arbitrary claims.
pub fn sign(key_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// A JWT like the libraries make: iat = now - 60, exp = now + 540, iss = the App ID string.
pub fn app_jwt() -> String {
    let now = now();
    sign(
        APP_KEY,
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string()}),
    )
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Resp {
    /// A header's value, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one HTTP/1.1 request to `base` + `path`.
pub async fn send(
    base: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> Resp {
    send_with_headers(base, method, path, authorization, &[], body).await
}

/// [`send`] with extra request headers.
pub async fn send_with_headers(
    base: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let uri: http::Uri = format!("{base}{path}").parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", &authority)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "standin-test");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        json,
    }
}

/// `GET base + path`.
pub async fn get(base: &str, path: &str, authorization: Option<&str>) -> Resp {
    send(base, Method::GET, path, authorization, None).await
}

/// The `Authorization` value for a JWT.
pub fn bearer(jwt: &str) -> String {
    format!("Bearer {jwt}")
}

/// The `Authorization` value for an installation token.
pub fn token_auth(token: &str) -> String {
    format!("token {token}")
}

/// Mints a token for installation 1001 with an optional body; panics unless 201.
pub async fn mint(base: &str, body: Option<&str>) -> Value {
    mint_with_headers(base, &[], body).await
}

/// [`mint`] with extra request headers (e.g. `X-GitHub-Stateless-S2S-Token`).
pub async fn mint_with_headers(base: &str, headers: &[(&str, &str)], body: Option<&str>) -> Value {
    let resp = send_with_headers(
        base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&bearer(&app_jwt())),
        headers,
        body,
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.json);
    resp.json
}

/// Mints and returns only the token string.
pub async fn mint_token(base: &str, body: Option<&str>) -> String {
    mint(base, body).await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends `body` as JSON with an installation token.
pub async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Resp {
    let body = body.map(|b| b.to_string());
    send(
        base,
        method,
        path,
        Some(&token_auth(token)),
        body.as_deref(),
    )
    .await
}

/// `value` as a `T` (an octocrab model), panicking with `type_name` and the
/// JSON when it does not parse. Use it through [`parse!`](crate::parse).
pub fn parse_as<T: DeserializeOwned>(type_name: &str, value: &Value) -> T {
    match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => t,
        Err(e) => panic!("{type_name} does not parse: {e}\n{value:#}"),
    }
}

/// Parses a JSON value with an octocrab model, showing the JSON on failure:
/// `parse!(Issue, &resp.json)`.
#[macro_export]
macro_rules! parse {
    ($t:ty, $v:expr) => {
        $crate::github_api::parse_as::<$t>(stringify!($t), $v)
    };
}
