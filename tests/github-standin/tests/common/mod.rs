//! Shared helpers for the stand-in's integration tests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use github_standin::{StandIn, StandInConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const APP_ID: u64 = 4242;
pub const APP_KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../support/fixtures/app-key.pem"
));
pub const APP_PUB: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../support/fixtures/app-key.pub.pem"
));
pub const OTHER_KEY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../support/fixtures/other-app-key.pkcs8.pem"
));

/// A started stand-in and the temporary git root it owns.
pub struct Env {
    pub standin: StandIn,
    pub dir: TempDir,
}

/// Starts a stand-in with the default configuration, adjusted by `tweak`.
pub async fn start_with(tweak: impl FnOnce(&mut StandInConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandInConfig::new(APP_ID, APP_PUB, dir.path().join("git"));
    tweak(&mut config);
    let standin = StandIn::start(config).await.unwrap();
    Env { standin, dir }
}

/// Starts a stand-in with the default configuration.
pub async fn start() -> Env {
    start_with(|_| {}).await
}

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
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

impl Resp {
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

pub async fn get(base: &str, path: &str, authorization: Option<&str>) -> Resp {
    send(base, Method::GET, path, authorization, None).await
}

pub fn bearer(jwt: &str) -> String {
    format!("Bearer {jwt}")
}

pub fn token_auth(token: &str) -> String {
    format!("token {token}")
}

/// Mints a token for installation 1001 with an optional body; panics unless 201.
pub async fn mint(base: &str, body: Option<&str>) -> Value {
    let resp = send(
        base,
        Method::POST,
        "/app/installations/1001/access_tokens",
        Some(&bearer(&app_jwt())),
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

/// Parses a JSON value with an octocrab model, showing the JSON on failure.
#[allow(unused_macros)]
macro_rules! parse {
    ($t:ty, $v:expr) => {{
        let v: &Value = $v;
        match serde_json::from_value::<$t>(v.clone()) {
            Ok(t) => t,
            Err(e) => panic!("{} does not parse: {e}\n{v:#}", stringify!($t)),
        }
    }};
}
