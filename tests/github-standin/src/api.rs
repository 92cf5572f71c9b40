//! The HTTP server: routing, common headers, authentication and the REST handlers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::auth::{self, Credential};
use crate::git;
use crate::objects;
use crate::state::{RateSnapshot, Shared, TokenRecord};

/// The router state extractor.
pub(crate) type AppState = State<Arc<Shared>>;

/// Addresses of the connection a request arrived on (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The client.
    pub remote: SocketAddr,
}

/// Accepts connections until the task is aborted; aborting also ends open connections.
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let info = ConnInfo { remote };
                    let router = router.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(
                            move |mut req: hyper::Request<hyper::body::Incoming>| {
                                req.extensions_mut().insert(info);
                                router.clone().oneshot(req.map(Body::new))
                            },
                        );
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// The stand-in's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/app", get(get_app))
        .route("/app/installations", get(list_installations))
        .route("/app/installations/{id}", get(get_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(crate::mint::mint),
        )
        .route("/app/hook/deliveries", any(crate::deliveries::handle))
        .route(
            "/app/hook/deliveries/{*rest}",
            any(crate::deliveries::handle),
        )
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route("/users/{login}", get(get_user))
        .route("/user", get(get_authenticated_user))
        .route("/installation/repositories", get(installation_repositories))
        .route("/installation/token", delete(revoke))
        .route("/rate_limit", get(rate_limit))
        .route(
            "/repos/{owner}/{repo}/issues/{*rest}",
            any(crate::rest::handle),
        )
        .route("/repos/{owner}/{repo}/pulls", any(crate::rest::handle))
        .route(
            "/repos/{owner}/{repo}/pulls/{*rest}",
            any(crate::rest::handle),
        )
        .route("/repos/{owner}/{repo}/check-runs", any(crate::rest::handle))
        .route(
            "/repos/{owner}/{repo}/check-runs/{*rest}",
            any(crate::rest::handle),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{*rest}",
            any(crate::rest::handle),
        )
        .route("/repos/{owner}/{repo}/contents", any(crate::rest::handle))
        .route("/repos/{owner}/{repo}/contents/", any(crate::rest::handle))
        .route(
            "/repos/{owner}/{repo}/contents/{*rest}",
            any(crate::rest::handle),
        )
        .route(
            "/repos/{owner}/{repo}/git/{*rest}",
            any(crate::rest::handle),
        )
        .route(
            "/repos/{owner}/{repo}/compare/{*rest}",
            any(crate::rest::handle),
        )
        .route(
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
            any(crate::rest::handle),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), common))
        .with_state(shared)
}

/// Headers on every response, and the "down" switch for API routes.
async fn common(State(shared): AppState, req: Request, next: Next) -> Response {
    let is_git = git::parse_path(req.uri().path()).is_some();
    let mut resp = if !is_git && shared.with(|s| s.down) {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    } else {
        next.run(req).await
    };
    let secs = u64::try_from(shared.now().timestamp()).unwrap_or(0);
    let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&date) {
        headers.insert(http::header::DATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        headers.insert(HeaderName::from_static("x-github-request-id"), v);
    }
    headers
        .entry(http::header::SERVER)
        .or_insert(HeaderValue::from_static("github.com"));
    if !is_git {
        headers.insert(
            HeaderName::from_static("x-github-media-type"),
            HeaderValue::from_static("github.v3; format=json"),
        );
    }
    resp
}

/// A request ID in GitHub's style, e.g. `C0DE:1A2B:3C4D5E:6F7A8B:65A1B2C3`.
fn request_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{:04X}:{:04X}:{:06X}:{:06X}:{:08X}",
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random_range(0..0x100_0000u32),
        rng.random_range(0..0x100_0000u32),
        rng.random::<u32>()
    )
}

/// A GitHub-shaped error.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// GitHub's `errors` array (validation failures), if any.
    pub(crate) errors: Option<Value>,
    /// The `documentation_url`, when GitHub names the route's own page rather than the REST root.
    docs: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
            errors: None,
            docs: None,
        }
    }

    /// The same error with this `documentation_url`.
    pub(crate) fn docs(mut self, url: &str) -> Self {
        self.docs = Some(url.to_string());
        self
    }

    /// A 422 `Validation Failed` with GitHub's `errors` array.
    pub(crate) fn validation(errors: Value) -> Self {
        let mut err = Self::unprocessable("Validation Failed");
        err.errors = Some(errors);
        err
    }

    /// A 422 with a message and an `errors` array.
    pub(crate) fn unprocessable_with(message: impl Into<String>, errors: Value) -> Self {
        let mut err = Self::unprocessable(message);
        err.errors = Some(errors);
        err
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    pub(crate) fn bad_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Bad credentials")
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = objects::error(self.status.as_u16(), &self.message);
        if let Value::Object(m) = &mut body {
            if let Some(errors) = self.errors {
                m.insert("errors".to_string(), errors);
            }
            if let Some(docs) = self.docs {
                m.insert("documentation_url".to_string(), Value::String(docs));
            }
        }
        let mut resp = json_response(self.status, &body);
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// A JSON response with GitHub's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// `http://<Host>` as the client addressed us, for URLs in bodies.
pub(crate) fn base_url(req_headers: &HeaderMap) -> String {
    let host = req_headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => "http://127.0.0.1".to_string(),
    }
}

/// Who authenticated a request.
pub(crate) enum Who {
    /// The App, with a valid JWT.
    App,
    /// An installation token.
    Installation(TokenRecord),
    /// A person's personal access token: the user's login.
    User(String),
}

/// An authenticated caller and its rate-limit window.
pub(crate) struct Authed {
    pub(crate) who: Who,
    rate: RateSnapshot,
}

/// Which credentials a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// App JWT only.
    Jwt,
    /// Installation token only.
    Token,
    /// Either, or none.
    Any,
}

/// Rate-limit identity of the App.
const APP_IDENTITY: &str = "app";

fn token_identity(token: &str) -> String {
    format!("token:{token}")
}

/// Rate-limit identity of a user: every token of a user shares one window, as on GitHub.
fn user_identity(login: &str) -> String {
    format!("user:{}", login.to_ascii_lowercase())
}

/// An identified caller before rate limiting: who, the rate-limit identity, and the message
/// for an exhausted limit.
pub(crate) struct Identified {
    who: Who,
    identity: String,
    rate_message: String,
}

/// Authenticates a request. `Ok(None)` is an anonymous request on an [`Accept::Any`] route.
/// With `consume`, the request counts against the caller's rate limit.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    accept: Accept,
    consume: bool,
) -> Result<Option<Authed>, ApiError> {
    match identify(shared, headers, accept)? {
        Some(id) => charge(shared, id, consume).map(Some),
        None => Ok(None),
    }
}

/// Checks the credentials. `Ok(None)` is an anonymous request on an [`Accept::Any`] route.
pub(crate) fn identify(
    shared: &Shared,
    headers: &HeaderMap,
    accept: Accept,
) -> Result<Option<Identified>, ApiError> {
    let reject_jwt = |message: &str| {
        shared.with(|s| s.jwt_rejections += 1);
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    };
    let credential = auth::credential(headers, |t| shared.user_of_token(t));
    let (who, identity, rate_message) = match credential {
        Credential::None => {
            return match accept {
                Accept::Any => Ok(None),
                Accept::Jwt => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    auth::JWT_UNDECODABLE,
                )),
                Accept::Token => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Requires authentication",
                )),
            };
        }
        Credential::Invalid if accept == Accept::Jwt => {
            return Err(reject_jwt(auth::JWT_UNDECODABLE))
        }
        Credential::Invalid => return Err(ApiError::bad_credentials()),
        Credential::Token(_) | Credential::User(_) if accept == Accept::Jwt => {
            return Err(reject_jwt(auth::JWT_UNDECODABLE))
        }
        // Users pass on every route but the App's; the installation routes (`/installation/...`)
        // refuse them in their own words.
        Credential::User(login) => {
            let message = format!(
                "API rate limit exceeded for user ID {}.",
                crate::shapes::user_id(&login)
            );
            let identity = user_identity(&login);
            (Who::User(login), identity, message)
        }
        Credential::Token(token) => {
            let record = shared
                .usable_token(&token)
                .ok_or_else(ApiError::bad_credentials)?;
            let message = format!(
                "API rate limit exceeded for installation ID {}.",
                record.installation_id
            );
            (Who::Installation(record), token_identity(&token), message)
        }
        Credential::Jwt(jwt) => {
            auth::verify_app_jwt(shared, &jwt, shared.now().timestamp()).map_err(reject_jwt)?;
            if accept == Accept::Token {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "This endpoint requires an installation access token.",
                ));
            }
            let message = format!("API rate limit exceeded for app ID {}.", shared.app_id);
            (Who::App, APP_IDENTITY.to_string(), message)
        }
    };
    Ok(Some(Identified {
        who,
        identity,
        rate_message,
    }))
}

/// Applies the rate limit to an identified caller (counting the request with `consume`).
pub(crate) fn charge(shared: &Shared, id: Identified, consume: bool) -> Result<Authed, ApiError> {
    let rate = if consume {
        shared.consume_rate(&id.identity)
    } else {
        shared.peek_rate(&id.identity)
    };
    if rate.exceeded {
        let err = ApiError::new(StatusCode::FORBIDDEN, id.rate_message);
        return Err(with_rate_headers(err, &rate));
    }
    Ok(Authed { who: id.who, rate })
}

/// Adds the `x-ratelimit-*` headers to an [`ApiError`].
fn with_rate_headers(err: ApiError, rate: &RateSnapshot) -> ApiError {
    err.header("x-ratelimit-limit", rate.limit)
        .header("x-ratelimit-remaining", rate.remaining)
        .header("x-ratelimit-reset", rate.reset)
        .header("x-ratelimit-used", rate.used)
        .header("x-ratelimit-resource", "core")
}

fn add_rate_headers(headers: &mut HeaderMap, rate: &RateSnapshot) {
    let values = [
        ("x-ratelimit-limit", rate.limit.to_string()),
        ("x-ratelimit-remaining", rate.remaining.to_string()),
        ("x-ratelimit-reset", rate.reset.to_string()),
        ("x-ratelimit-used", rate.used.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
    ];
    for (name, value) in values {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.entry(HeaderName::from_static(name)).or_insert(v);
        }
    }
}

/// Turns a handler result into a response carrying the caller's rate-limit headers.
pub(crate) fn finish(authed: Option<&Authed>, result: Result<Response, ApiError>) -> Response {
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(a) = authed {
        add_rate_headers(resp.headers_mut(), &a.rate);
    }
    resp
}

/// Runs `f` for a request authenticated per `accept`; authentication failures answer directly.
fn authed_call(
    shared: &Shared,
    headers: &HeaderMap,
    accept: Accept,
    f: impl FnOnce(Option<&Authed>) -> Result<Response, ApiError>,
) -> Response {
    match authenticate(shared, headers, accept, true) {
        Ok(authed) => {
            let result = f(authed.as_ref());
            finish(authed.as_ref(), result)
        }
        Err(e) => e.into_response(),
    }
}

async fn root(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    json_response(
        StatusCode::OK,
        &json!({
            "current_user_url": format!("{base}/user"),
            "installation_repositories_url": format!("{base}/installation/repositories"),
            "rate_limit_url": format!("{base}/rate_limit"),
            "user_url": format!("{base}/users/{{user}}"),
        }),
    )
}

async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// Git smart HTTP, or 404.
async fn fallback(State(shared): AppState, req: Request) -> Response {
    match git::parse_path(req.uri().path()) {
        Some(path) => git::handle(shared, path, req).await,
        None => ApiError::not_found().into_response(),
    }
}

/// `GET /app`.
async fn get_app(State(shared): AppState, headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Jwt, |_| {
        Ok(json_response(StatusCode::OK, &objects::app(&shared, &base)))
    })
}

/// `GET /app/installations`.
async fn list_installations(State(shared): AppState, headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Jwt, |_| {
        let installs = shared.with(|s| {
            s.installations
                .iter()
                .filter(|i| !i.deleted)
                .cloned()
                .collect::<Vec<_>>()
        });
        let list: Vec<Value> = installs
            .iter()
            .map(|i| objects::installation(&shared, &base, i))
            .collect();
        Ok(json_response(StatusCode::OK, &Value::Array(list)))
    })
}

/// The installation with this (textual) ID unless deleted.
fn find_installation(
    shared: &Shared,
    id: &str,
) -> Result<crate::state::InstallationState, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    shared
        .with(|s| s.installation(id).filter(|i| !i.deleted).cloned())
        .ok_or_else(ApiError::not_found)
}

/// `GET /app/installations/{id}`.
async fn get_installation(
    State(shared): AppState,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Jwt, |_| {
        let Path(id) = id.map_err(|_| ApiError::not_found())?;
        let inst = find_installation(&shared, &id)?;
        Ok(json_response(
            StatusCode::OK,
            &objects::installation(&shared, &base, &inst),
        ))
    })
}

/// `GET /repos/{owner}/{repo}/installation`.
async fn repo_installation(
    State(shared): AppState,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Jwt, |_| {
        let Path((owner, repo)) = path.map_err(|_| ApiError::not_found())?;
        let installs = shared.with(|s| s.installations.clone());
        let inst = installs
            .iter()
            .filter(|i| !i.deleted)
            .find(|i| shared.repos_of(&i.spec).iter().any(|r| r.is(&owner, &repo)))
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &objects::installation(&shared, &base, inst),
        ))
    })
}

/// `GET /repos/{owner}/{repo}`: visible to installation tokens that cover the repository, and
/// to users (personal access tokens) for every repository the stand-in serves.
async fn get_repo(
    State(shared): AppState,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Any, |authed| {
        let Path((owner, repo)) = path.map_err(|_| ApiError::not_found())?;
        let visible = match authed.map(|a| &a.who) {
            Some(Who::Installation(token)) => token.repos.as_slice(),
            Some(Who::User(_)) => shared.repos.as_slice(),
            Some(Who::App) | None => &[],
        };
        let repo = visible
            .iter()
            .find(|r| r.is(&owner, &repo))
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &objects::repository(&shared, &base, repo),
        ))
    })
}

/// `GET /users/{login}`: the App's bot user, installation accounts and the users with personal
/// access tokens.
async fn get_user(
    State(shared): AppState,
    headers: HeaderMap,
    login: Result<Path<String>, PathRejection>,
) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Any, |_| {
        let Path(login) = login.map_err(|_| ApiError::not_found())?;
        let user = if login.eq_ignore_ascii_case(&shared.bot_login()) {
            objects::profile(objects::bot_user(&shared, &base), None)
        } else if let Some((name, _)) = shared.account(&login) {
            objects::profile(objects::account(&shared, &base, &login), Some(&name))
        } else if shared.has_user_token(&login) {
            user_profile(&shared, &base, &login)
        } else {
            return Err(ApiError::not_found());
        };
        Ok(json_response(StatusCode::OK, &user))
    })
}

/// The public profile of a user with a personal access token, under the login as configured.
fn user_profile(shared: &Shared, base: &str, login: &str) -> Value {
    let login = shared.with(|s| {
        s.user_tokens
            .values()
            .find(|l| l.eq_ignore_ascii_case(login))
            .cloned()
            .unwrap_or_else(|| login.to_string())
    });
    objects::profile(crate::shapes::user_for(shared, base, &login), None)
}

/// `GET /user`: the user a personal access token belongs to; installation tokens and the App
/// are refused (403), anonymous requests need authentication (401).
async fn get_authenticated_user(State(shared): AppState, headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Any, |authed| {
        match authed.map(|a| &a.who) {
            Some(Who::User(login)) => Ok(json_response(
                StatusCode::OK,
                &user_profile(&shared, &base, login),
            )),
            Some(Who::Installation(_) | Who::App) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Requires authentication",
            )),
        }
    })
}

/// A query parameter as a number.
pub(crate) fn query_number(query: Option<&str>, name: &str) -> Option<usize> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// `GET /installation/repositories`: the token's repositories, paginated.
async fn installation_repositories(
    State(shared): AppState,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let base = base_url(&headers);
    authed_call(&shared, &headers, Accept::Token, |authed| {
        let token = match authed.map(|a| &a.who) {
            Some(Who::Installation(token)) => token,
            Some(Who::User(_)) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "You must authenticate with an installation access token in order to list \
                     repositories for an installation.",
                ))
            }
            Some(Who::App) | None => return Err(ApiError::bad_credentials()),
        };
        let per_page = query_number(query.as_deref(), "per_page")
            .unwrap_or(30)
            .clamp(1, 100);
        let page = query_number(query.as_deref(), "page").unwrap_or(1).max(1);
        let total = token.repos.len();
        let repos: Vec<Value> = token
            .repos
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|r| objects::repository(&shared, &base, r))
            .collect();
        let mut resp = json_response(
            StatusCode::OK,
            &json!({
                "total_count": total,
                "repository_selection": "selected",
                "repositories": repos,
            }),
        );
        let last = total.div_ceil(per_page).max(1);
        if page < last {
            let link = |p: usize| {
                format!("<{base}/installation/repositories?per_page={per_page}&page={p}>")
            };
            let value = format!(
                "{}; rel=\"next\", {}; rel=\"last\"",
                link(page + 1),
                link(last)
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(http::header::LINK, v);
            }
        }
        Ok(resp)
    })
}

/// `DELETE /installation/token`: revokes the presented token (users' tokens are refused).
async fn revoke(State(shared): AppState, headers: HeaderMap) -> Response {
    authed_call(&shared, &headers, Accept::Token, |authed| {
        if let Some(Who::User(_)) = authed.map(|a| &a.who) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "You must authenticate with an installation access token in order to revoke it",
            ));
        }
        if let Credential::Token(token) = auth::credential(&headers, |_| None) {
            shared.with(|s| {
                if let Some(t) = s.tokens.get_mut(&token) {
                    if !t.revoked {
                        t.revoked = true;
                        s.revoked.push(token.clone());
                    }
                }
            });
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// `GET /rate_limit`: does not count against the limit.
async fn rate_limit(State(shared): AppState, headers: HeaderMap) -> Response {
    match authenticate(&shared, &headers, Accept::Any, false) {
        Ok(Some(authed)) => finish(
            Some(&authed),
            Ok(json_response(
                StatusCode::OK,
                &objects::rate_limit(&authed.rate),
            )),
        ),
        Ok(None) => {
            let reset = shared.now().timestamp() + 3600;
            let anonymous = RateSnapshot {
                limit: 60,
                used: 0,
                remaining: 60,
                reset,
                exceeded: false,
            };
            let mut resp = json_response(StatusCode::OK, &objects::rate_limit(&anonymous));
            add_rate_headers(resp.headers_mut(), &anonymous);
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_numbers_parse() {
        assert_eq!(query_number(Some("per_page=5&page=2"), "page"), Some(2));
        assert_eq!(query_number(Some("per_page=x"), "per_page"), None);
        assert_eq!(query_number(None, "page"), None);
    }
}
