//! The REST routes a GitHub App bot uses on a repository: issues, issue comments, reactions,
//! labels, check runs, pull requests, changed files, reviews and review comments (served by
//! [`crate::reviews`]), collaborator permissions, contents, comparisons and the Git Data API
//! (blobs, trees, commits, refs; served by [`crate::gitdata`]) — plus team memberships of the
//! installation's organization.
//!
//! Every call is recorded (see [`crate::StandIn::calls`]), needs an installation token that can
//! see the repository (anything else answers 404, as GitHub does for private repositories) and
//! has the permission the route needs (else 403 `Resource not accessible by integration`),
//! counts against the caller's rate limit and may be failed with an injected fault.
//!
//! A person's personal access token (a classic PAT with the `repo` scope) works too, on every
//! repository the stand-in serves: what it creates (comments, reactions, pull requests,
//! reviews, commits) is that user's, and the webhooks it causes name them as `sender`. Only
//! Apps may create and update check runs (403 `You must authenticate via a GitHub App.`), and
//! team memberships need `read:org`, which the token lacks (404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::{
    base_url, charge, finish, identify, json_response, query_number, Accept, ApiError, AppState,
    Authed, Who,
};
use crate::changes::pull_diff;
use crate::events;
use crate::gitdata::{GitCtx, GitOp};
use crate::objects::{self, level_rank};
use crate::shapes::{self, View};
use crate::state::{RepoInfo, Shared, TokenRecord};
use crate::store::{
    fnv, pseudo_sha, CheckRunRec, CommentRec, IssueRec, OutputRec, PullRec, ReactionRec, RepoData,
};

/// Longest comment or review body GitHub accepts.
const MAX_BODY_CHARS: usize = 65_536;
/// Longest check run `output.summary` / `output.text`.
const MAX_OUTPUT_CHARS: usize = 65_535;
/// Largest request body read.
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// GitHub's answer when a token lacks a permission.
const NOT_ACCESSIBLE: &str = "Resource not accessible by integration";
/// Check run conclusions an App may set.
const CONCLUSIONS: [&str; 7] = [
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
];
/// Check run statuses an App may set.
const STATUSES: [&str; 3] = ["queued", "in_progress", "completed"];

/// One operation on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    GetIssue(u64),
    ListComments(u64),
    CreateComment(u64),
    GetComment(u64),
    UpdateComment(u64),
    CreateReaction(u64),
    AddLabels(u64),
    RemoveLabel(u64, String),
    CreateCheckRun,
    GetCheckRun(u64),
    UpdateCheckRun(u64),
    ListPulls,
    CreatePull,
    GetPull(u64),
    UpdatePull(u64),
    ListFiles(u64),
    CreateReview(u64),
    ListReviews(u64),
    /// (pull request, review).
    GetReview(u64, u64),
    DeleteReview(u64, u64),
    ListReviewComments(u64, u64),
    /// Review comments of a pull request.
    ListPullComments(u64),
    GetPullComment(u64),
    /// (pull request, comment replied to).
    CreateReply(u64, u64),
    Permission(String),
    /// Contents and the Git Data API.
    Git(GitOp),
}

/// What a bot-route request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// An operation on `/repos/{owner}/{repo}/...`.
    Repo { owner: String, repo: String, op: Op },
    /// `GET /orgs/{org}/teams/{team}/memberships/{user}`.
    TeamMembership {
        org: String,
        team: String,
        user: String,
    },
}

impl Op {
    /// The token permissions (any one suffices) and the level the operation needs.
    fn needs(&self) -> (&'static [&'static str], &'static str) {
        const ISSUES: &[&str] = &["issues", "pull_requests"];
        const PULLS: &[&str] = &["pull_requests"];
        const CHECKS: &[&str] = &["checks"];
        const CONTENTS: &[&str] = &["contents"];
        match self {
            Op::GetIssue(_) | Op::ListComments(_) | Op::GetComment(_) => (ISSUES, "read"),
            Op::CreateComment(_)
            | Op::UpdateComment(_)
            | Op::CreateReaction(_)
            | Op::AddLabels(_)
            | Op::RemoveLabel(..) => (ISSUES, "write"),
            Op::GetCheckRun(_) => (CHECKS, "read"),
            Op::CreateCheckRun | Op::UpdateCheckRun(_) => (CHECKS, "write"),
            Op::ListPulls
            | Op::GetPull(_)
            | Op::ListFiles(_)
            | Op::ListReviews(_)
            | Op::GetReview(..)
            | Op::ListReviewComments(..)
            | Op::ListPullComments(_)
            | Op::GetPullComment(_) => (PULLS, "read"),
            Op::CreatePull
            | Op::UpdatePull(_)
            | Op::CreateReview(_)
            | Op::DeleteReview(..)
            | Op::CreateReply(..) => (PULLS, "write"),
            // Metadata `read`, which every installation token has.
            Op::Permission(_) => (&[], ""),
            Op::Git(op) if op.writes() => (CONTENTS, "write"),
            Op::Git(_) => (CONTENTS, "read"),
        }
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/repos/{owner}/{repo}/...` into the owner, the repository and the operation, or
/// `/orgs/{org}/teams/{team}/memberships/{user}`.
fn parse(method: &Method, path: &str) -> Option<Route> {
    if let Some(rest) = path.strip_prefix("/orgs/") {
        let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
        return match (method.as_str(), segs.as_slice()) {
            ("GET", [org, teams, team, memberships, user])
                if teams == "teams"
                    && memberships == "memberships"
                    && ![org, team, user].iter().any(|s| s.is_empty()) =>
            {
                Some(Route::TeamMembership {
                    org: org.clone(),
                    team: team.clone(),
                    user: user.clone(),
                })
            }
            _ => None,
        };
    }
    let rest = path.strip_prefix("/repos/")?;
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let (owner, repo) = (segs.first()?.clone(), segs.get(1)?.clone());
    if owner.is_empty() || repo.is_empty() {
        return None;
    }
    let tail: Vec<&str> = segs[2..].iter().map(String::as_str).collect();
    let num = |s: &str| s.parse::<u64>().ok();
    let m = method.as_str();
    let op = match (m, tail.as_slice()) {
        ("GET", ["issues", "comments", id]) => Op::GetComment(num(id)?),
        // GitHub also takes POST for PATCH endpoints (octocrab updates comments that way).
        ("PATCH" | "POST", ["issues", "comments", id]) => Op::UpdateComment(num(id)?),
        ("POST", ["issues", "comments", id, "reactions"]) => Op::CreateReaction(num(id)?),
        // Reactions on pull-request review (line) comments.
        ("POST", ["pulls", "comments", id, "reactions"]) => Op::CreateReaction(num(id)?),
        ("GET", ["issues", n]) => Op::GetIssue(num(n)?),
        ("GET", ["issues", n, "comments"]) => Op::ListComments(num(n)?),
        ("POST", ["issues", n, "comments"]) => Op::CreateComment(num(n)?),
        ("POST", ["issues", n, "labels"]) => Op::AddLabels(num(n)?),
        ("DELETE", ["issues", n, "labels", name]) if !name.is_empty() => {
            Op::RemoveLabel(num(n)?, name.to_string())
        }
        ("POST", ["check-runs"]) => Op::CreateCheckRun,
        ("GET", ["check-runs", id]) => Op::GetCheckRun(num(id)?),
        ("PATCH" | "POST", ["check-runs", id]) => Op::UpdateCheckRun(num(id)?),
        ("GET", ["pulls"]) => Op::ListPulls,
        ("POST", ["pulls"]) => Op::CreatePull,
        ("GET", ["pulls", n]) => Op::GetPull(num(n)?),
        ("PATCH" | "POST", ["pulls", n]) => Op::UpdatePull(num(n)?),
        ("GET", ["pulls", n, "files"]) => Op::ListFiles(num(n)?),
        ("POST", ["pulls", n, "reviews"]) => Op::CreateReview(num(n)?),
        ("GET", ["pulls", n, "reviews"]) => Op::ListReviews(num(n)?),
        ("GET", ["pulls", n, "reviews", id]) => Op::GetReview(num(n)?, num(id)?),
        ("DELETE", ["pulls", n, "reviews", id]) => Op::DeleteReview(num(n)?, num(id)?),
        ("GET", ["pulls", n, "reviews", id, "comments"]) => {
            Op::ListReviewComments(num(n)?, num(id)?)
        }
        ("GET", ["pulls", "comments", id]) => Op::GetPullComment(num(id)?),
        ("GET", ["pulls", n, "comments"]) => Op::ListPullComments(num(n)?),
        ("POST", ["pulls", n, "comments", id, "replies"]) => Op::CreateReply(num(n)?, num(id)?),
        ("GET", ["collaborators", user, "permission"]) if !user.is_empty() => {
            Op::Permission(user.to_string())
        }
        _ => Op::Git(GitOp::parse(m, &tail)?),
    };
    Some(Route::Repo { owner, repo, op })
}

/// A request body: parsed JSON (`Null` when empty), or the raw text when it is not JSON.
pub(crate) fn parse_body(bytes: Option<&Bytes>) -> (Value, bool) {
    let Some(bytes) = bytes else {
        return (Value::Null, false);
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return (Value::Null, true);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => (v, true),
        Err(_) => (
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
            false,
        ),
    }
}

/// The handler of every bot route: records the call, then authenticates and serves it.
pub(crate) async fn handle(State(shared): AppState, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(route) = parse(&method, &path) else {
        return ApiError::not_found().into_response();
    };
    // GitHub takes POST for PATCH endpoints; such calls are logged (and matched against
    // faults) as the PATCH they are.
    let method = match &route {
        Route::Repo {
            op:
                Op::UpdateComment(_)
                | Op::UpdateCheckRun(_)
                | Op::UpdatePull(_)
                | Op::Git(GitOp::UpdateRef(_)),
            ..
        } => Method::PATCH,
        _ => method,
    };
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES)
        .await
        .ok();
    let (body, body_ok) = parse_body(bytes.as_ref());
    let index = shared.with(|s| s.store.record_call(method.as_str(), &path, body.clone()));
    let call = Call {
        shared: &shared,
        base: base_url(&headers),
        method: method.as_str().to_string(),
        path,
        query,
        accept,
        body,
        body_ok,
    };
    let resp = match identify(&shared, &headers, Accept::Any) {
        Ok(Some(identified)) => match charge(&shared, identified, true) {
            Ok(authed) => {
                let result = serve(&call, &authed, route).await;
                finish(Some(&authed), result)
            }
            Err(e) => e.into_response(),
        },
        Ok(None) => ApiError::not_found().into_response(),
        Err(e) => e.into_response(),
    };
    shared.with(|s| s.store.answered(index, resp.status().as_u16()));
    resp
}

/// One call being served.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    base: String,
    method: String,
    path: String,
    query: Option<String>,
    /// The `Accept` header.
    accept: String,
    body: Value,
    body_ok: bool,
}

/// Checks that a token has one of `perms` at `level` or above.
fn require(token: &TokenRecord, perms: &[&str], level: &str) -> Result<(), ApiError> {
    if perms.is_empty() {
        return Ok(());
    }
    let need = level_rank(level);
    let ok = perms.iter().any(|p| {
        token
            .permissions
            .get(*p)
            .is_some_and(|have| level_rank(have) >= need)
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, NOT_ACCESSIBLE))
    }
}

/// Faults, visibility, permissions, body parsing, then the operation.
async fn serve(call: &Call<'_>, authed: &Authed, route: Route) -> Result<Response, ApiError> {
    let fault = call
        .shared
        .with(|s| s.store.take_fault(&call.method, &call.path));
    if let Some(err) = crate::mint::apply_fault(call.shared, fault).await {
        return Err(err);
    }
    let caller = match &authed.who {
        Who::Installation(token) => Caller::Bot(token),
        Who::User(login) => Caller::User(login),
        Who::App => return Err(ApiError::not_found()),
    };
    match (route, caller) {
        (Route::Repo { owner, repo, op }, _) => serve_repo(call, caller, &owner, &repo, op).await,
        (Route::TeamMembership { org, team, user }, Caller::Bot(token)) => {
            team_membership(call, token, &org, &team, &user)
        }
        // A classic PAT with the `repo` scope lacks `read:org`.
        (Route::TeamMembership { .. }, Caller::User(_)) => Err(ApiError::not_found()),
    }
}

/// Who calls a repository route.
#[derive(Debug, Clone, Copy)]
enum Caller<'a> {
    /// The App's bot, with an installation token.
    Bot(&'a TokenRecord),
    /// A person (the login), with a personal access token: a classic PAT with the `repo` scope.
    User(&'a str),
}

/// GitHub's answer when a person calls a route only Apps may use.
const APP_ONLY: &str = "You must authenticate via a GitHub App.";
/// Documentation of the create-check-run route, named by its refusal of people.
const CREATE_CHECK_RUN_DOCS: &str = "https://docs.github.com/rest/checks/runs#create-a-check-run";
/// Documentation of the update-check-run route, named by its refusal of people.
const UPDATE_CHECK_RUN_DOCS: &str = "https://docs.github.com/rest/checks/runs#update-a-check-run";

/// `GET /orgs/{org}/teams/{team}/memberships/{user}`: needs a token of an installation on
/// `org` (else 404) with members `read` (else 403); 404 unless `user` is in the team.
fn team_membership(
    call: &Call<'_>,
    token: &TokenRecord,
    org: &str,
    team: &str,
    user: &str,
) -> Result<Response, ApiError> {
    let account = call.shared.with(|s| {
        s.installation(token.installation_id)
            .map(|i| i.spec.account.clone())
    });
    if !account.is_some_and(|a| a.eq_ignore_ascii_case(org)) {
        return Err(ApiError::not_found());
    }
    require(token, &["members"], "read")?;
    let role = call
        .shared
        .with(|s| s.store.team_role(org, team, user).map(str::to_string))
        .ok_or_else(ApiError::not_found)?;
    let org_id = call.shared.account(org).map_or(0, |(_, id)| id);
    let team_id =
        1_000_000 + fnv(format!("{org}/{team}").to_ascii_lowercase().as_bytes()) % 1_000_000;
    let url = format!(
        "{}/organizations/{org_id}/team/{team_id}/memberships/{}",
        call.base,
        objects::url_login(user)
    );
    Ok(json_response(
        StatusCode::OK,
        &json!({"url": url, "role": role, "state": "active"}),
    ))
}

/// Visibility of the repository, permissions, body parsing, then the operation. The bot sees
/// its token's repositories with its token's permissions; a person every repository the
/// stand-in serves, with everything but what only Apps may do (check runs).
async fn serve_repo(
    call: &Call<'_>,
    caller: Caller<'_>,
    owner: &str,
    repo: &str,
    op: Op,
) -> Result<Response, ApiError> {
    let visible = match caller {
        Caller::Bot(token) => token.repos.as_slice(),
        Caller::User(_) => call.shared.repos.as_slice(),
    };
    let repo = visible
        .iter()
        .find(|r| r.is(owner, repo))
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let user = match caller {
        Caller::Bot(token) => {
            let (perms, level) = op.needs();
            require(token, perms, level)?;
            None
        }
        Caller::User(login) => {
            let app_only = |docs| Err(ApiError::new(StatusCode::FORBIDDEN, APP_ONLY).docs(docs));
            match op {
                Op::CreateCheckRun => return app_only(CREATE_CHECK_RUN_DOCS),
                Op::UpdateCheckRun(_) => return app_only(UPDATE_CHECK_RUN_DOCS),
                _ => Some(login),
            }
        }
    };
    if !call.body_ok {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
        ));
    }
    let ctx = Ctx {
        shared: call.shared,
        base: &call.base,
        repo: &repo,
        user,
        body: &call.body,
        query: call.query.as_deref(),
        path: &call.path,
    };
    match op {
        Op::GetIssue(n) => ctx.get_issue(n),
        Op::ListComments(n) => ctx.list_comments(n),
        Op::CreateComment(n) => ctx.create_comment(n),
        Op::GetComment(id) => ctx.get_comment(id),
        Op::UpdateComment(id) => ctx.update_comment(id),
        Op::CreateReaction(id) => ctx.create_reaction(id),
        Op::AddLabels(n) => ctx.add_labels(n).await,
        Op::RemoveLabel(n, name) => ctx.remove_label(n, &name).await,
        Op::CreateCheckRun => ctx.create_check_run(),
        Op::GetCheckRun(id) => ctx.get_check_run(id),
        Op::UpdateCheckRun(id) => ctx.update_check_run(id),
        Op::ListPulls => ctx.list_pulls().await,
        Op::CreatePull => ctx.create_pull().await,
        Op::GetPull(n) => ctx.get_pull(n).await,
        Op::UpdatePull(n) => ctx.update_pull(n).await,
        Op::ListFiles(n) => ctx.list_files(n).await,
        Op::CreateReview(n) => ctx.create_review(n).await,
        Op::ListReviews(n) => ctx.list_reviews(n),
        Op::GetReview(n, id) => ctx.get_review(n, id),
        Op::DeleteReview(n, id) => ctx.delete_review(n, id),
        Op::ListReviewComments(n, id) => ctx.list_review_comments(n, id),
        Op::ListPullComments(n) => ctx.list_pull_comments(n),
        Op::GetPullComment(id) => ctx.get_pull_comment(id),
        Op::CreateReply(n, id) => ctx.create_reply(n, id),
        Op::Permission(user) => ctx.permission(&user),
        Op::Git(op) => {
            let git = GitCtx {
                shared: call.shared,
                base: &call.base,
                repo: &repo,
                user,
                body: &call.body,
                query: call.query.as_deref(),
                accept: &call.accept,
            };
            crate::gitdata::serve(&git, op).await
        }
    }
}

/// `Invalid request.\n\n{detail}` (GitHub's schema-validation 422).
pub(crate) fn invalid(detail: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(format!("Invalid request.\n\n{detail}"))
}

/// The body as an object (`null` counts as an empty one).
pub(crate) fn object(body: &Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m.clone()),
        other => Err(invalid(format_args!("{other} is not an object."))),
    }
}

/// An optional string property (`null` counts as absent).
pub(crate) fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format_args!(
            "For 'properties/{key}', {other} is not a string."
        ))),
    }
}

/// A required string property.
pub(crate) fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    opt_str(m, key)?.ok_or_else(|| invalid(format_args!("\"{key}\" wasn't supplied.")))
}

/// `For 'properties/{key}', "v" is not one of [...]`.
pub(crate) fn not_one_of(key: &str, value: &str, allowed: &[&str]) -> ApiError {
    let list = allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    invalid(format_args!(
        "For 'properties/{key}', {value:?} is not one of [{list}]."
    ))
}

/// A comment or review body within GitHub's size limit.
pub(crate) fn check_body_length(resource: &str, body: &str) -> Result<(), ApiError> {
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::validation(json!([{
            "resource": resource,
            "code": "custom",
            "field": "body",
            "message": format!("body is too long (maximum is {MAX_BODY_CHARS} characters)"),
        }])));
    }
    Ok(())
}

/// A JSON response with a `Location` header.
pub(crate) fn created(body: &Value, location: &str) -> Response {
    let mut resp = json_response(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// The value of a query parameter, percent-decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
}

/// One page of `items` (`per_page` default 30, at most 100) with GitHub's `Link` header, whose
/// targets are `{base}{path}?...` (`base` is empty for path-only targets).
pub(crate) fn paginate(base: &str, path: &str, query: Option<&str>, items: Vec<Value>) -> Response {
    let per_page = query_number(query, "per_page").unwrap_or(30).clamp(1, 100);
    let page = query_number(query, "page").unwrap_or(1).max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let list: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let mut resp = json_response(StatusCode::OK, &Value::Array(list));
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or_default();
            !kv.is_empty() && key != "page" && key != "per_page"
        })
        .collect();
    let link = |p: usize| {
        let mut q = kept.clone();
        let pp = format!("per_page={per_page}");
        let pg = format!("page={p}");
        q.push(&pp);
        q.push(&pg);
        format!("<{base}{path}?{}>", q.join("&"))
    };
    let mut rels = Vec::new();
    if page > 1 {
        rels.push(format!("{}; rel=\"prev\"", link((page - 1).min(last))));
    }
    if page < last {
        rels.push(format!("{}; rel=\"next\"", link(page + 1)));
        rels.push(format!("{}; rel=\"last\"", link(last)));
    }
    if page > 1 {
        rels.push(format!("{}; rel=\"first\"", link(1)));
    }
    if !rels.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&rels.join(", ")) {
            resp.headers_mut().insert(http::header::LINK, v);
        }
    }
    resp
}

/// Whether `name` is a branch name git would accept (conservatively).
pub(crate) fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name
            .chars()
            .all(|c| !c.is_control() && !" ~^:?*[\\".contains(c))
}

/// The commit a branch of the bare repository points at.
async fn branch_sha(shared: &Shared, repo: &RepoInfo, branch: &str) -> Option<String> {
    if !valid_branch(branch) {
        return None;
    }
    crate::plumbing::Bare::of(shared, repo)
        .rev_parse(&format!("refs/heads/{branch}^{{commit}}"))
        .await
        .ok()
        .flatten()
}

/// Blocking variant of [`branch_sha`], for the test-setup API.
pub(crate) fn branch_sha_blocking(
    shared: &Shared,
    repo: &RepoInfo,
    branch: &str,
) -> Option<String> {
    if !valid_branch(branch) {
        return None;
    }
    let bare = crate::plumbing::Bare::of(shared, repo);
    if !bare.exists() {
        return None;
    }
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(bare.path())
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !sha.is_empty()).then_some(sha)
}

/// The sha used for a branch that does not exist in the bare repository.
pub(crate) fn fallback_sha(repo: &RepoInfo, branch: &str) -> String {
    pseudo_sha(&format!("{}/{}:{branch}", repo.owner, repo.name))
}

/// Whether a repository role (`admin`, `maintain`, `write`, ...) may write.
fn may_write(role: &str) -> bool {
    matches!(role, "admin" | "maintain" | "write")
}

/// An authorised call on one repository.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub base: &'a str,
    pub repo: &'a RepoInfo,
    /// The person calling with a personal access token; `None`: the App's bot.
    pub user: Option<&'a str>,
    pub body: &'a Value,
    pub query: Option<&'a str>,
    pub path: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// The caller's login: the person of a personal access token, else the App's bot.
    pub(crate) fn caller(&self) -> String {
        match self.user {
            Some(login) => login.to_string(),
            None => self.shared.bot_login(),
        }
    }

    /// A copy of the repository's data.
    pub(crate) fn snapshot(&self) -> RepoData {
        self.shared.with(|s| {
            s.store
                .repo(&self.repo.owner, &self.repo.name)
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Runs `f` on the repository's data (created if needed) with the state locked.
    pub(crate) fn mutate<R>(
        &self,
        f: impl FnOnce(&mut crate::store::Store, &mut RepoData) -> Result<R, ApiError>,
    ) -> Result<(R, RepoData), ApiError> {
        let (owner, name) = (&self.repo.owner, &self.repo.name);
        self.shared.with(|s| {
            let mut data = s.store.repo(owner, name).cloned().unwrap_or_default();
            let out = f(&mut s.store, &mut data)?;
            *s.store.repo_mut(owner, name) = data.clone();
            Ok((out, data))
        })
    }

    pub(crate) fn view<'b>(&'b self, data: &'b RepoData) -> View<'b> {
        View {
            shared: self.shared,
            base: self.base,
            repo: self.repo,
            data,
        }
    }

    fn app(&self) -> Value {
        objects::app(self.shared, self.base)
    }

    /// What pagination links start with: nothing (path-only targets, which octocrab follows
    /// with its credentials — it drops them for absolute URLs not on api.github.com), or the
    /// base URL when absolute links are on.
    pub(crate) fn link_base(&self) -> String {
        if self.shared.with(|s| s.store.absolute_links) {
            self.base.to_string()
        } else {
            String::new()
        }
    }

    pub(crate) fn api(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.repo.owner, self.repo.name)
    }

    // ----- issues -----

    fn get_issue(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let issue = data.issues.get(&n).ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::issue(&self.view(&data), issue),
        ))
    }

    fn list_comments(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        if !data.issues.contains_key(&n) {
            return Err(ApiError::not_found());
        }
        let app = self.app();
        let view = self.view(&data);
        let items: Vec<Value> = data
            .comments
            .iter()
            .filter(|c| c.issue_number == n)
            .map(|c| shapes::comment(&view, c, &app))
            .collect();
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    /// The `body` of a comment request.
    fn comment_body(&self) -> Result<String, ApiError> {
        let body = req_str(&object(self.body)?, "body")?;
        if body.trim().is_empty() {
            return Err(ApiError::validation(json!([{
                "resource": "IssueComment",
                "code": "missing_field",
                "field": "body",
            }])));
        }
        check_body_length("IssueComment", &body)?;
        Ok(body)
    }

    fn create_comment(&self, n: u64) -> Result<Response, ApiError> {
        let body = self.comment_body()?;
        let now = self.now();
        let caller = self.caller();
        let (rec, data) = self.mutate(|store, data| {
            let issue = data.issues.get_mut(&n).ok_or_else(ApiError::not_found)?;
            issue.updated_at = now;
            let rec = CommentRec {
                id: store.next_id(),
                issue_number: n,
                body,
                author: caller,
                created_at: now,
                updated_at: now,
            };
            data.comments.push(rec.clone());
            Ok(rec)
        })?;
        let out = shapes::comment(&self.view(&data), &rec, &self.app());
        let location = format!("{}/issues/comments/{}", self.api(), rec.id);
        let caller = self.caller();
        events::issue_comment(
            self.shared,
            self.base,
            self.repo,
            rec.id,
            "created",
            None,
            &caller,
        );
        Ok(created(&out, &location))
    }

    fn get_comment(&self, id: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let rec = data
            .comments
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::comment(&self.view(&data), rec, &self.app()),
        ))
    }

    fn update_comment(&self, id: u64) -> Result<Response, ApiError> {
        let now = self.now();
        let caller = self.caller();
        let exists = self.snapshot().comments.iter().any(|c| c.id == id);
        if !exists {
            return Err(ApiError::not_found());
        }
        let body = self.comment_body()?;
        let ((rec, old), data) = self.mutate(|_, data| {
            let role = data.permission(&caller).to_string();
            let rec = data
                .comments
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(ApiError::not_found)?;
            if !rec.author.eq_ignore_ascii_case(&caller) {
                // The bot edits only its own comments; a person also edits others' with write
                // access to the repository, as on GitHub (else 404, as for what they may not
                // touch).
                if self.user.is_none() {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, NOT_ACCESSIBLE));
                }
                if !may_write(&role) {
                    return Err(ApiError::not_found());
                }
            }
            let old = std::mem::replace(&mut rec.body, body);
            rec.updated_at = now;
            Ok((rec.clone(), old))
        })?;
        if old != rec.body {
            let changes = json!({"body": {"from": old}});
            events::issue_comment(
                self.shared,
                self.base,
                self.repo,
                id,
                "edited",
                Some(changes),
                &caller,
            );
        }
        Ok(json_response(
            StatusCode::OK,
            &shapes::comment(&self.view(&data), &rec, &self.app()),
        ))
    }

    fn create_reaction(&self, comment_id: u64) -> Result<Response, ApiError> {
        let m = object(self.body)?;
        let content = req_str(&m, "content")?;
        if !shapes::REACTIONS.contains(&content.as_str()) {
            return Err(ApiError::validation(json!([{
                "resource": "Reaction",
                "code": "custom",
                "field": "content",
                "message": "content is not a valid reaction",
            }])));
        }
        let now = self.now();
        let caller = self.caller();
        let ((rec, fresh), data) =
            self.mutate(|store, data| {
                if let Some(existing) = data.reactions.iter().find(|r| {
                    r.comment_id == comment_id && r.content == content && r.user == caller
                }) {
                    return Ok((existing.clone(), false));
                }
                let rec = ReactionRec {
                    id: store.next_id(),
                    comment_id,
                    content,
                    user: caller,
                    created_at: now,
                };
                data.reactions.push(rec.clone());
                Ok((rec, true))
            })?;
        let status = if fresh {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &shapes::reaction(&self.view(&data), &rec),
        ))
    }

    /// The label list of an issue.
    fn labels_of(&self, data: &RepoData, n: u64) -> Value {
        let view = self.view(data);
        let labels = data
            .issues
            .get(&n)
            .map(|i| {
                i.labels
                    .iter()
                    .map(|l| shapes::label(&view, l))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Value::Array(labels)
    }

    async fn add_labels(&self, n: u64) -> Result<Response, ApiError> {
        let list = match self.body {
            Value::Array(a) => a.clone(),
            Value::Object(m) => match m.get("labels") {
                Some(Value::Array(a)) => a.clone(),
                Some(other) => {
                    return Err(invalid(format_args!(
                        "For 'properties/labels', {other} is not an array."
                    )))
                }
                None => return Err(invalid("\"labels\" wasn't supplied.")),
            },
            other => return Err(invalid(format_args!("{other} is not an object."))),
        };
        let mut names = Vec::new();
        for item in &list {
            let name = match item {
                Value::String(s) => s.clone(),
                Value::Object(o) => match o.get("name") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(invalid(format_args!(
                            "For 'items', {item} is not a string."
                        )))
                    }
                },
                other => {
                    return Err(invalid(format_args!(
                        "For 'items', {other} is not a string."
                    )))
                }
            };
            if name.trim().is_empty() {
                return Err(ApiError::validation(json!([{
                    "resource": "Label",
                    "code": "invalid",
                    "field": "name",
                }])));
            }
            names.push(name);
        }
        let now = self.now();
        let (owner, name) = (self.repo.owner.clone(), self.repo.name.clone());
        if !self.snapshot().issues.contains_key(&n) {
            return Err(ApiError::not_found());
        }
        let canonical = self
            .shared
            .with(|s| s.store.ensure_labels(&owner, &name, &names));
        let (added, data) = self.mutate(|_, data| {
            let issue = data.issues.get_mut(&n).ok_or_else(ApiError::not_found)?;
            let mut added = Vec::new();
            for label in canonical {
                if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
                    issue.labels.push(label.clone());
                    added.push(label);
                }
            }
            issue.updated_at = now;
            Ok(added)
        })?;
        let caller = self.caller();
        for label in &added {
            let field = events::label_field(self.shared, self.base, self.repo, label);
            events::issue_or_pull(
                self.shared,
                self.base,
                self.repo,
                n,
                "labeled",
                field,
                &caller,
            )
            .await;
        }
        Ok(json_response(StatusCode::OK, &self.labels_of(&data, n)))
    }

    async fn remove_label(&self, n: u64, label: &str) -> Result<Response, ApiError> {
        let now = self.now();
        let (removed, data) = self.mutate(|_, data| {
            let issue = data.issues.get_mut(&n).ok_or_else(ApiError::not_found)?;
            let index = issue
                .labels
                .iter()
                .position(|l| l.eq_ignore_ascii_case(label))
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Label does not exist"))?;
            let removed = issue.labels.remove(index);
            issue.updated_at = now;
            Ok(removed)
        })?;
        let caller = self.caller();
        let field = events::label_field(self.shared, self.base, self.repo, &removed);
        events::issue_or_pull(
            self.shared,
            self.base,
            self.repo,
            n,
            "unlabeled",
            field,
            &caller,
        )
        .await;
        Ok(json_response(StatusCode::OK, &self.labels_of(&data, n)))
    }

    // ----- check runs -----

    /// Applies a create/update request to a check run.
    fn apply_check_run(
        &self,
        m: &Map<String, Value>,
        run: &mut CheckRunRec,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if let Some(name) = opt_str(m, "name")? {
            if name.trim().is_empty() {
                return Err(invalid("\"name\" wasn't supplied."));
            }
            run.name = name;
        }
        if let Some(url) = opt_str(m, "details_url")? {
            run.details_url = Some(url);
        }
        if let Some(id) = opt_str(m, "external_id")? {
            run.external_id = id;
        }
        let status = opt_str(m, "status")?;
        if let Some(s) = &status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(not_one_of("status", s, &STATUSES));
            }
        }
        let conclusion = opt_str(m, "conclusion")?;
        if let Some(c) = &conclusion {
            if !CONCLUSIONS.contains(&c.as_str()) {
                return Err(not_one_of("conclusion", c, &CONCLUSIONS));
            }
        }
        let time = |key: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            match opt_str(m, key)? {
                None => Ok(None),
                Some(t) => DateTime::parse_from_rfc3339(&t)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|_| {
                        invalid(format_args!(
                            "For 'properties/{key}', {t:?} is not a timestamp."
                        ))
                    }),
            }
        };
        if let Some(t) = time("started_at")? {
            run.started_at = t;
        }
        let completed_at = time("completed_at")?;
        match (status, conclusion) {
            // A conclusion completes the run.
            (_, Some(c)) => {
                run.status = "completed".to_string();
                run.conclusion = Some(c);
                run.completed_at = Some(completed_at.unwrap_or(now));
            }
            (Some(s), None) if s == "completed" => {
                // Re-stating `completed` on a concluded run is fine.
                if run.conclusion.is_none() {
                    return Err(invalid("\"conclusion\" wasn't supplied."));
                }
            }
            (Some(s), None) => {
                run.status = s;
                run.conclusion = None;
                run.completed_at = None;
            }
            (None, None) => {}
        }
        match m.get("output") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                let title =
                    req_str(o, "title").map_err(|_| invalid("\"title\" wasn't supplied."))?;
                let summary =
                    req_str(o, "summary").map_err(|_| invalid("\"summary\" wasn't supplied."))?;
                let text = opt_str(o, "text")?;
                let annotations = match o.get("annotations") {
                    None | Some(Value::Null) => 0,
                    Some(Value::Array(a)) if a.len() <= 50 => a.len(),
                    Some(Value::Array(_)) => {
                        return Err(invalid("Only 50 annotations are allowed per request."))
                    }
                    Some(other) => {
                        return Err(invalid(format_args!(
                            "For 'properties/annotations', {other} is not an array."
                        )))
                    }
                };
                run.annotations_count += annotations;
                for s in [Some(&summary), text.as_ref()].into_iter().flatten() {
                    let n = s.chars().count();
                    if n > MAX_OUTPUT_CHARS {
                        return Err(invalid(format_args!(
                            "Only {MAX_OUTPUT_CHARS} characters are allowed; {n} were supplied."
                        )));
                    }
                }
                run.output = OutputRec {
                    title: Some(title),
                    summary: Some(summary),
                    text,
                };
            }
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/output', {other} is not an object."
                )))
            }
        }
        Ok(())
    }

    fn create_check_run(&self) -> Result<Response, ApiError> {
        let m = object(self.body)?;
        let name = req_str(&m, "name")?;
        let head_sha = req_str(&m, "head_sha")?;
        if name.trim().is_empty() {
            return Err(invalid("\"name\" wasn't supplied."));
        }
        if head_sha.trim().is_empty() {
            return Err(invalid("\"head_sha\" wasn't supplied."));
        }
        let now = self.now();
        let mut run = CheckRunRec {
            id: 0,
            suite_id: 0,
            name,
            head_sha,
            status: "queued".to_string(),
            conclusion: None,
            started_at: now,
            completed_at: None,
            details_url: None,
            external_id: String::new(),
            output: OutputRec::default(),
            annotations_count: 0,
        };
        self.apply_check_run(&m, &mut run, now)?;
        let (run, data) = self.mutate(|store, data| {
            run.id = store.next_id();
            run.suite_id = match data.check_runs.iter().find(|r| r.head_sha == run.head_sha) {
                Some(r) => r.suite_id,
                None => store.next_id(),
            };
            data.check_runs.push(run.clone());
            Ok(run)
        })?;
        let out = shapes::check_run(&self.view(&data), &run, &self.app());
        let location = format!("{}/check-runs/{}", self.api(), run.id);
        Ok(created(&out, &location))
    }

    fn get_check_run(&self, id: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let run = data
            .check_runs
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(ApiError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::check_run(&self.view(&data), run, &self.app()),
        ))
    }

    fn update_check_run(&self, id: u64) -> Result<Response, ApiError> {
        let m = object(self.body)?;
        let now = self.now();
        let mut run = self
            .snapshot()
            .check_runs
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(ApiError::not_found)?;
        self.apply_check_run(&m, &mut run, now)?;
        let (run, data) = self.mutate(|_, data| {
            let slot = data
                .check_runs
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(ApiError::not_found)?;
            *slot = run.clone();
            Ok(run)
        })?;
        Ok(json_response(
            StatusCode::OK,
            &shapes::check_run(&self.view(&data), &run, &self.app()),
        ))
    }

    // ----- pull requests -----

    async fn list_pulls(&self) -> Result<Response, ApiError> {
        let state = query_param(self.query, "state").unwrap_or_else(|| "open".to_string());
        if !["open", "closed", "all"].contains(&state.as_str()) {
            return Err(ApiError::validation(json!([{
                "resource": "Search",
                "field": "state",
                "code": "invalid",
            }])));
        }
        let head = query_param(self.query, "head");
        let base = query_param(self.query, "base");
        let data = self.snapshot();
        let view = self.view(&data);
        let listed: Vec<(&IssueRec, &PullRec)> = data
            .pulls
            .iter()
            .rev()
            .filter_map(|(n, p)| Some((data.issues.get(n)?, p)))
            .filter(|(i, _)| state == "all" || i.state == state)
            .filter(|(i, p)| match &head {
                None => true,
                Some(h) => {
                    let head_owner = if p.from_fork {
                        &i.author
                    } else {
                        &self.repo.owner
                    };
                    match h.split_once(':') {
                        Some((o, r)) => o.eq_ignore_ascii_case(head_owner) && r == p.head_ref,
                        None => h == &p.head_ref,
                    }
                }
            })
            .filter(|(_, p)| base.as_ref().is_none_or(|b| *b == p.base_ref))
            .collect();
        let mut items = Vec::with_capacity(listed.len());
        for (i, p) in listed {
            let diff = pull_diff(self.shared, self.repo, p, None).await?;
            items.push(shapes::pull(&view, i, p, &diff));
        }
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    /// An open same-repository pull request from `head` into `base`, other than `except`.
    fn open_duplicate(data: &RepoData, head: &str, base: &str, except: u64) -> bool {
        data.pulls.iter().any(|(n, p)| {
            *n != except
                && !p.from_fork
                && p.head_ref == head
                && p.base_ref == base
                && data.issues.get(n).is_some_and(|i| i.state == "open")
        })
    }

    fn already_exists(&self, head: &str) -> ApiError {
        ApiError::validation(json!([{
            "resource": "PullRequest",
            "code": "custom",
            "message": format!("A pull request already exists for {}:{head}.", self.repo.owner),
        }]))
    }

    async fn create_pull(&self) -> Result<Response, ApiError> {
        let m = object(self.body)?;
        let missing = |field: &str| {
            ApiError::validation(json!([{
                "resource": "PullRequest",
                "code": "missing_field",
                "field": field,
            }]))
        };
        let title = opt_str(&m, "title")?
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| missing("title"))?;
        let head = opt_str(&m, "head")?.ok_or_else(|| missing("head"))?;
        let base = opt_str(&m, "base")?.ok_or_else(|| missing("base"))?;
        let body = opt_str(&m, "body")?.unwrap_or_default();
        check_body_length("PullRequest", &body)?;
        let draft = match m.get("draft") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format_args!(
                    "For 'properties/draft', {other} is not a boolean."
                )))
            }
        };
        let invalid_field = |field: &str, message: &str| {
            ApiError::validation(json!([{
                "resource": "PullRequest",
                "field": field,
                "code": "invalid",
                "message": message,
            }]))
        };
        let head_ref = match head.split_once(':') {
            Some((owner, branch)) if owner.eq_ignore_ascii_case(&self.repo.owner) => {
                branch.to_string()
            }
            Some(_) => return Err(invalid_field("head", "head branch does not exist")),
            None => head.clone(),
        };
        let head_sha = branch_sha(self.shared, self.repo, &head_ref)
            .await
            .ok_or_else(|| invalid_field("head", "head branch does not exist"))?;
        let base_sha = branch_sha(self.shared, self.repo, &base)
            .await
            .unwrap_or_else(|| fallback_sha(self.repo, &base));
        if head_ref == base || head_sha == base_sha {
            return Err(ApiError::validation(json!([{
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("No commits between {base} and {head_ref}"),
            }])));
        }
        let now = self.now();
        let caller = self.caller();
        let dup = self.already_exists(&head_ref);
        let (n, data) = self.mutate(|store, data| {
            if Self::open_duplicate(data, &head_ref, &base, 0) {
                return Err(dup);
            }
            let n = data.next_number();
            data.issues.insert(
                n,
                IssueRec {
                    id: store.next_id(),
                    number: n,
                    title,
                    body,
                    author: caller,
                    labels: Vec::new(),
                    state: "open".to_string(),
                    created_at: now,
                    updated_at: now,
                    closed_at: None,
                },
            );
            data.pulls.insert(
                n,
                PullRec {
                    id: store.next_id(),
                    head_ref,
                    head_sha,
                    base_ref: base,
                    base_sha,
                    from_fork: false,
                    draft,
                    files: Vec::new(),
                    past_heads: Vec::new(),
                },
            );
            Ok(n)
        })?;
        let out = self.render_pull(&data, n).await?;
        let caller = self.caller();
        events::issue_or_pull(
            self.shared,
            self.base,
            self.repo,
            n,
            "opened",
            Map::new(),
            &caller,
        )
        .await;
        Ok(created(&out, &format!("{}/pulls/{n}", self.api())))
    }

    async fn render_pull(&self, data: &RepoData, n: u64) -> Result<Value, ApiError> {
        let pull = data.pulls.get(&n).ok_or_else(ApiError::not_found)?;
        let issue = data.issues.get(&n).ok_or_else(ApiError::not_found)?;
        let diff = pull_diff(self.shared, self.repo, pull, None).await?;
        Ok(shapes::pull(&self.view(data), issue, pull, &diff))
    }

    async fn get_pull(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        Ok(json_response(
            StatusCode::OK,
            &self.render_pull(&data, n).await?,
        ))
    }

    async fn update_pull(&self, n: u64) -> Result<Response, ApiError> {
        let m = object(self.body)?;
        let title = opt_str(&m, "title")?;
        let body = opt_str(&m, "body")?;
        let state = opt_str(&m, "state")?;
        let base = opt_str(&m, "base")?;
        if let Some(s) = &state {
            if s != "open" && s != "closed" {
                return Err(not_one_of("state", s, &["open", "closed"]));
            }
        }
        if let Some(b) = &body {
            check_body_length("PullRequest", b)?;
        }
        if title.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ApiError::validation(json!([{
                "resource": "PullRequest",
                "code": "missing_field",
                "field": "title",
            }])));
        }
        let now = self.now();
        let (before, data) = self.mutate(|_, data| {
            let pull = data
                .pulls
                .get(&n)
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            let issue = data
                .issues
                .get(&n)
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            let new_base = base.clone().unwrap_or_else(|| pull.base_ref.clone());
            let new_state = state.clone().unwrap_or_else(|| issue.state.clone());
            if new_state == "open"
                && !pull.from_fork
                && Self::open_duplicate(data, &pull.head_ref, &new_base, n)
            {
                return Err(self.already_exists(&pull.head_ref));
            }
            if let Some(p) = data.pulls.get_mut(&n) {
                p.base_ref = new_base;
            }
            if let Some(i) = data.issues.get_mut(&n) {
                if let Some(t) = title {
                    i.title = t;
                }
                if let Some(b) = body {
                    i.body = b;
                }
                if new_state != i.state {
                    i.closed_at = (new_state == "closed").then_some(now);
                    i.state = new_state;
                }
                i.updated_at = now;
            }
            Ok(issue)
        })?;
        let out = self.render_pull(&data, n).await?;
        self.pull_updated(&before, &data, n).await;
        Ok(json_response(StatusCode::OK, &out))
    }

    /// The events of a pull request update: `edited` (title or body), then `closed` or
    /// `reopened`.
    async fn pull_updated(&self, before: &IssueRec, data: &RepoData, n: u64) {
        let Some(after) = data.issues.get(&n) else {
            return;
        };
        let caller = self.caller();
        let (shared, base, repo) = (self.shared, self.base, self.repo);
        if let Some(changes) =
            events::edit_changes(&before.title, &after.title, &before.body, &after.body)
        {
            events::issue_or_pull(shared, base, repo, n, "edited", changes, &caller).await;
        }
        if before.state != after.state {
            let action = if after.state == "closed" {
                "closed"
            } else {
                "reopened"
            };
            events::issue_or_pull(shared, base, repo, n, action, Map::new(), &caller).await;
        }
    }

    async fn list_files(&self, n: u64) -> Result<Response, ApiError> {
        let data = self.snapshot();
        let pull = data.pulls.get(&n).ok_or_else(ApiError::not_found)?;
        let diff = pull_diff(self.shared, self.repo, pull, None).await?;
        let view = self.view(&data);
        // GitHub lists at most 3000 files.
        let items: Vec<Value> = diff
            .files
            .iter()
            .take(3000)
            .map(|f| shapes::file(&view, &pull.head_sha, f))
            .collect();
        Ok(paginate(&self.link_base(), self.path, self.query, items))
    }

    // ----- collaborators -----

    fn permission(&self, user: &str) -> Result<Response, ApiError> {
        let data = self.snapshot();
        Ok(json_response(
            StatusCode::OK,
            &shapes::permission(&self.view(&data), user),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let p = |m: Method, path: &str| match parse(&m, path) {
            Some(Route::Repo { op, .. }) => Some(op),
            _ => None,
        };
        assert_eq!(
            p(Method::GET, "/repos/o/r/issues/comments/7"),
            Some(Op::GetComment(7))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/issues/7/comments"),
            Some(Op::ListComments(7))
        );
        assert_eq!(
            p(Method::DELETE, "/repos/o/r/issues/7/labels/needs%20review"),
            Some(Op::RemoveLabel(7, "needs review".into()))
        );
        assert_eq!(p(Method::GET, "/repos/o/r/issues/x"), None);
        assert_eq!(p(Method::PUT, "/repos/o/r/pulls/1"), None);
        assert_eq!(
            p(Method::POST, "/repos/o/r/issues/comments/3"),
            Some(Op::UpdateComment(3))
        );
        assert_eq!(
            p(
                Method::GET,
                "/repos/o/r/collaborators/a%5Bbot%5D/permission"
            ),
            Some(Op::Permission("a[bot]".into()))
        );
        let Some(Route::Repo { owner, repo, .. }) =
            parse(&Method::POST, "/repos/Octo/Hello/check-runs")
        else {
            panic!("not a repository route");
        };
        assert_eq!((owner.as_str(), repo.as_str()), ("Octo", "Hello"));
        assert_eq!(
            p(Method::GET, "/repos/o/r/contents/docs/a%20b.md"),
            Some(Op::Git(GitOp::Contents("docs/a b.md".into())))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/contents"),
            Some(Op::Git(GitOp::Contents(String::new())))
        );
        assert_eq!(
            p(Method::POST, "/repos/o/r/git/refs/heads/feature/x"),
            Some(Op::Git(GitOp::UpdateRef("heads/feature/x".into())))
        );
        assert_eq!(
            p(Method::POST, "/repos/o/r/git/commits"),
            Some(Op::Git(GitOp::CreateCommit))
        );
        assert_eq!(p(Method::PUT, "/repos/o/r/git/blobs"), None);
        assert_eq!(
            p(Method::GET, "/repos/o/r/compare/main...octo%3Afeature/x"),
            Some(Op::Git(GitOp::Compare("main...octo:feature/x".into())))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/pulls/4/reviews"),
            Some(Op::ListReviews(4))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/pulls/4/reviews/9"),
            Some(Op::GetReview(4, 9))
        );
        assert_eq!(
            p(Method::DELETE, "/repos/o/r/pulls/4/reviews/9"),
            Some(Op::DeleteReview(4, 9))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/pulls/4/reviews/9/comments"),
            Some(Op::ListReviewComments(4, 9))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/pulls/4/comments"),
            Some(Op::ListPullComments(4))
        );
        assert_eq!(
            p(Method::GET, "/repos/o/r/pulls/comments/9"),
            Some(Op::GetPullComment(9))
        );
        assert_eq!(
            p(Method::POST, "/repos/o/r/pulls/4/comments/9/replies"),
            Some(Op::CreateReply(4, 9))
        );
        assert_eq!(p(Method::PATCH, "/repos/o/r/pulls/4/reviews/9"), None);
        assert_eq!(p(Method::GET, "/repos/o/r/pulls/x/comments"), None);
        assert_eq!(
            Op::ListPullComments(4).needs(),
            (&["pull_requests"][..], "read")
        );
        assert_eq!(
            Op::CreateReply(4, 9).needs(),
            (&["pull_requests"][..], "write")
        );
        assert_eq!(
            Op::DeleteReview(4, 9).needs(),
            (&["pull_requests"][..], "write")
        );
        assert_eq!(
            Op::Git(GitOp::CreateBlob).needs(),
            (&["contents"][..], "write")
        );
        assert_eq!(
            Op::Git(GitOp::GetBlob("a".into())).needs(),
            (&["contents"][..], "read")
        );
    }

    #[test]
    fn team_membership_routes_parse() {
        assert_eq!(
            parse(
                &Method::GET,
                "/orgs/Octo-Org/teams/core/memberships/alice%5Bbot%5D"
            ),
            Some(Route::TeamMembership {
                org: "Octo-Org".into(),
                team: "core".into(),
                user: "alice[bot]".into(),
            })
        );
        assert_eq!(
            parse(&Method::PUT, "/orgs/o/teams/core/memberships/alice"),
            None
        );
        assert_eq!(
            parse(&Method::GET, "/orgs/o/teams/core/members/alice"),
            None
        );
        assert_eq!(
            parse(&Method::GET, "/orgs/o/teams//memberships/alice"),
            None
        );
    }

    #[test]
    fn percent_decoding_tolerates_garbage() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn branch_names_are_checked() {
        assert!(valid_branch("feature/x-1"));
        for bad in ["", "-x", "a..b", "a b", "a:b", "x.lock", "a/", "@{x"] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }

    #[test]
    fn bodies_parse() {
        assert_eq!(
            parse_body(Some(&Bytes::from_static(b" "))),
            (Value::Null, true)
        );
        assert_eq!(
            parse_body(Some(&Bytes::from_static(b"{\"a\":1}"))),
            (json!({"a": 1}), true)
        );
        assert_eq!(
            parse_body(Some(&Bytes::from_static(b"{x"))),
            (json!("{x"), false)
        );
    }
}
