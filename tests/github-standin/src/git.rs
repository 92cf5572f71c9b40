//! Git smart HTTP at `/{owner}/{repo}.git/...`, authenticated with installation tokens (user
//! `x-access-token`) or personal access tokens (any user name, as on GitHub) and served by the
//! real `git http-backend` CGI.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{ChildStdout, Command};

use crate::api::ConnInfo;
use crate::auth::{self, Basic};
use crate::objects::level_rank;
use crate::state::Shared;

/// The user name git must present with an installation token.
const GIT_USER: &str = "x-access-token";

/// Which side of the protocol a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// `git-upload-pack`: clone and fetch (needs contents `read`).
    Fetch,
    /// `git-receive-pack`: push (needs contents `write`).
    Push,
}

/// A parsed git request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitPath {
    pub owner: String,
    /// Repository name without `.git`.
    pub repo: String,
    /// `info/refs`, `git-upload-pack` or `git-receive-pack`.
    pub rest: String,
}

/// A GitHub-acceptable owner or repository name, safe to use as a path component.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Recognises `/{owner}/{repo}[.git]/(info/refs|git-upload-pack|git-receive-pack)`.
pub(crate) fn parse_path(path: &str) -> Option<GitPath> {
    let mut parts = path.strip_prefix('/')?.splitn(3, '/');
    let owner = parts.next()?;
    let repo = parts.next()?;
    let rest = parts.next()?;
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    if !valid_name(owner) || !valid_name(repo) {
        return None;
    }
    matches!(rest, "info/refs" | "git-upload-pack" | "git-receive-pack").then(|| GitPath {
        owner: owner.to_string(),
        repo: repo.to_string(),
        rest: rest.to_string(),
    })
}

/// The service a request asks for, or `None` for requests git never makes.
fn service(method: &Method, rest: &str, query: Option<&str>) -> Option<Service> {
    match (method, rest) {
        (&Method::GET, "info/refs") => {
            let wants_push = query
                .unwrap_or_default()
                .split('&')
                .any(|kv| kv == "service=git-receive-pack");
            Some(if wants_push {
                Service::Push
            } else {
                Service::Fetch
            })
        }
        (&Method::POST, "git-upload-pack") => Some(Service::Fetch),
        (&Method::POST, "git-receive-pack") => Some(Service::Push),
        _ => None,
    }
}

/// A plain-text git error response.
fn text(status: StatusCode, body: &str) -> Response {
    let mut resp = (status, format!("{body}\n")).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 401 with GitHub's Basic challenge.
fn challenge() -> Response {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "Invalid username or token. Password authentication is not supported for Git operations.",
    );
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitHub\""),
    );
    resp
}

/// Handles one git smart-HTTP request.
pub(crate) async fn handle(shared: Arc<Shared>, path: GitPath, req: Request) -> Response {
    let Some(service) = service(req.method(), &path.rest, req.uri().query()) else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    // Who, the repositories they see, and their `contents` level.
    let access = match auth::basic(req.headers()) {
        Basic::Missing => return challenge(),
        Basic::Credentials(user, pass) => match shared.user_of_token(&pass) {
            // A person with a classic PAT (`repo` scope): every repository served, read-write.
            Some(login) if !user.is_empty() => {
                Some((login, shared.repos.clone(), level_rank("write")))
            }
            Some(_) => None,
            None if user == GIT_USER => shared.usable_token(&pass).map(|token| {
                let contents = token
                    .permissions
                    .get("contents")
                    .map_or(0, |l| level_rank(l));
                (shared.bot_login(), token.repos, contents)
            }),
            None => None,
        },
        Basic::Malformed => None,
    };
    let Some((login, repos, contents)) = access else {
        shared.with(|s| s.git_auth_failures += 1);
        return challenge();
    };
    if !repos.iter().any(|r| r.is(&path.owner, &path.repo)) {
        return text(StatusCode::NOT_FOUND, "Repository not found.");
    }
    let needed = match service {
        Service::Fetch => level_rank("read"),
        Service::Push => level_rank("write"),
    };
    if contents < needed {
        return text(
            StatusCode::FORBIDDEN,
            &format!(
                "Permission to {}/{}.git denied to {login}.",
                path.owner, path.repo
            ),
        );
    }
    let repo_dir = format!("{}/{}.git", path.owner, path.repo);
    if !shared.git_root.join(&repo_dir).join("HEAD").is_file() {
        return text(StatusCode::NOT_FOUND, "Repository not found.");
    }
    // git probes with a body of just a flush packet ("0000") before streaming a large push;
    // that request carries no ref updates and is not counted as a push.
    let is_probe = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"4");
    let is_push_post = req.method() == Method::POST && service == Service::Push && !is_probe;
    match run_backend(&shared, &format!("/{repo_dir}/{}", path.rest), req).await {
        Ok(resp) => {
            if is_push_post && resp.status() == StatusCode::OK {
                shared.with(|s| s.git_pushes += 1);
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "git http-backend failed");
            text(StatusCode::BAD_GATEWAY, "git http-backend failed")
        }
    }
}

/// `$(git --exec-path)/git-http-backend`, resolved once.
fn backend_path() -> anyhow::Result<PathBuf> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .map_err(|e| format!("running git --exec-path: {e}"))?;
        if !out.status.success() {
            return Err("git --exec-path failed".to_string());
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(PathBuf::from(dir).join("git-http-backend"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Runs `git http-backend` for one request and streams its response.
async fn run_backend(shared: &Shared, path_info: &str, req: Request) -> anyhow::Result<Response> {
    let backend = backend_path()?;
    let headers = req.headers().clone();
    let header = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let remote = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.remote.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let mut cmd = Command::new(backend);
    cmd.env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_PROJECT_ROOT", &shared.git_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "github-standin")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", req.uri().query().unwrap_or_default())
        .env("REQUEST_METHOD", req.method().as_str())
        .env("REMOTE_USER", GIT_USER)
        .env("REMOTE_ADDR", remote)
        .env(
            "CONTENT_TYPE",
            header(http::header::CONTENT_TYPE).unwrap_or_default(),
        );
    if let Some(len) = header(http::header::CONTENT_LENGTH) {
        cmd.env("CONTENT_LENGTH", len);
    }
    if let Some(enc) = header(http::header::CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = header(HeaderName::from_static("git-protocol")) {
        cmd.env("HTTP_GIT_PROTOCOL", proto);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        anyhow::bail!("git http-backend pipes missing");
    };

    // Feed the request body in its own task so a backend that answers before reading all of it
    // (or a large response) cannot deadlock us.
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        if !err.trim().is_empty() {
            tracing::debug!(stderr = %err.trim(), "git http-backend");
        }
    });

    let (head, leftover) = read_cgi_head(&mut stdout).await?;
    let cgi = parse_cgi_head(&head)?;
    let mut resp = Response::new(Body::from_stream(body_stream(leftover, stdout, child)));
    *resp.status_mut() = cgi.status;
    for (name, value) in cgi.headers {
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

/// Reads stdout up to the blank line ending the CGI headers; returns the header block and the
/// body bytes already read.
async fn read_cgi_head(stdout: &mut ChildStdout) -> anyhow::Result<(Vec<u8>, Bytes)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((end, sep)) = find_head_end(&buf) {
            let body = Bytes::copy_from_slice(&buf[end + sep..]);
            buf.truncate(end);
            return Ok((buf, body));
        }
        anyhow::ensure!(buf.len() < 64 * 1024, "CGI headers too long");
        let n = stdout.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "git http-backend ended before its headers");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Position and length of the first `\r\n\r\n` or `\n\n`.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Status and headers of a CGI response.
#[derive(Debug)]
struct CgiHead {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Parses a CGI header block (`Status:` plus ordinary headers).
fn parse_cgi_head(head: &[u8]) -> anyhow::Result<CgiHead> {
    let text = String::from_utf8_lossy(head);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            anyhow::bail!("malformed CGI header line {line:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| anyhow::anyhow!("bad CGI status {value:?}"))?;
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.push((n, v));
        }
    }
    Ok(CgiHead { status, headers })
}

/// The rest of the backend's stdout as a body stream; reaps the child at the end.
fn body_stream(
    leftover: Bytes,
    stdout: ChildStdout,
    child: tokio::process::Child,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    let first = futures::stream::iter((!leftover.is_empty()).then(|| Ok(leftover)));
    let rest = futures::stream::unfold(
        Some((stdout, child)),
        |state: Option<(ChildStdout, tokio::process::Child)>| async move {
            let (mut stdout, mut child) = state?;
            let mut buf = vec![0u8; 32 * 1024];
            match stdout.read(&mut buf).await {
                Ok(0) => {
                    let _ = child.wait().await;
                    None
                }
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some((stdout, child))))
                }
                Err(e) => Some((Err(e), None)),
            }
        },
    );
    first.chain(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_are_recognised() {
        assert_eq!(
            parse_path("/octo-org/hello-world.git/info/refs"),
            Some(GitPath {
                owner: "octo-org".into(),
                repo: "hello-world".into(),
                rest: "info/refs".into()
            })
        );
        assert!(parse_path("/octo-org/hello-world/git-receive-pack").is_some());
        assert!(parse_path("/octo-org/hello-world.git/objects/info/packs").is_none());
        assert!(parse_path("/../etc.git/info/refs").is_none());
        assert!(parse_path("/app/installations").is_none());
        assert!(parse_path("/a/..git/info/refs").is_none());
        assert!(parse_path("/a/.git/info/refs").is_none());
    }

    #[test]
    fn services_are_detected() {
        let push = service(&Method::GET, "info/refs", Some("service=git-receive-pack"));
        assert_eq!(push, Some(Service::Push));
        let fetch = service(&Method::GET, "info/refs", Some("service=git-upload-pack"));
        assert_eq!(fetch, Some(Service::Fetch));
        assert_eq!(
            service(&Method::POST, "git-receive-pack", None),
            Some(Service::Push)
        );
        assert_eq!(service(&Method::PUT, "git-receive-pack", None), None);
    }

    #[test]
    fn cgi_heads_parse() {
        let head = b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT";
        let parsed = parse_cgi_head(head).unwrap();
        assert_eq!(parsed.status, StatusCode::FORBIDDEN);
        assert_eq!(parsed.headers.len(), 2);
        assert!(parse_cgi_head(b"garbage").is_err());
        assert_eq!(find_head_end(b"A: b\r\n\r\nbody"), Some((4, 4)));
        assert_eq!(find_head_end(b"A: b\n\nbody"), Some((4, 2)));
        assert_eq!(find_head_end(b"A: b\r\n"), None);
    }
}
