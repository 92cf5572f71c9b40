//! The App's delivery log as GitHub serves it: `GET /app/hook/deliveries` (newest first, cursor
//! pagination, `status` filter), `GET /app/hook/deliveries/{id}` (with the request and response)
//! and `POST /app/hook/deliveries/{id}/attempts` (a redelivery with the same GUID, for
//! deliveries of the last 3 days). App JWT only; calls are recorded and may be failed like the
//! bot routes' (see [`crate::StandIn::calls`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::{
    base_url, charge, finish, identify, json_response, query_number, Accept, ApiError, AppState,
};
use crate::objects::timestamp;
use crate::rest::{not_one_of, query_param};
use crate::state::Shared;
use crate::webhook::Job;

/// How old a delivery may be and still be redelivered.
const REDELIVERY_WINDOW_DAYS: i64 = 3;
/// The answer to a redelivery of an older delivery. GitHub's exact text is not documented.
pub(crate) const TOO_OLD: &str = "Only deliveries from the past 3 days can be redelivered.";
/// Cursors are `v1_<id of the page's first delivery>`.
const CURSOR_PREFIX: &str = "v1_";

/// One delivery attempt.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRec {
    pub id: u64,
    pub guid: String,
    /// When the attempt started, in the stand-in's clock.
    pub delivered_at: DateTime<Utc>,
    pub redelivery: bool,
    /// Seconds.
    pub duration: f64,
    /// `OK` or the failure (`Invalid HTTP Response: 503`, `failed to connect to host`, ...).
    pub status: String,
    /// 0 when nothing was answered.
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    /// The raw JSON body sent.
    pub body: Bytes,
    /// `None` when nothing was answered.
    pub response_headers: Option<Vec<(String, String)>>,
    pub response_body: Option<String>,
}

/// A list item (`GET /app/hook/deliveries`).
pub(crate) fn simple(rec: &DeliveryRec) -> Value {
    json!({
        "id": rec.id,
        "guid": rec.guid,
        "delivered_at": timestamp(rec.delivered_at),
        "redelivery": rec.redelivery,
        "duration": rec.duration,
        "status": rec.status,
        "status_code": rec.status_code,
        "event": rec.event,
        "action": rec.action,
        "installation_id": rec.installation_id,
        "repository_id": rec.repository_id,
        "throttled_at": null,
    })
}

/// A full delivery (`GET /app/hook/deliveries/{id}`): a list item plus `url`, `request` and
/// `response`.
pub(crate) fn full(rec: &DeliveryRec) -> Value {
    let object = |pairs: &[(String, String)]| {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>(),
        )
    };
    let mut out = simple(rec);
    out["url"] = json!(rec.url);
    out["request"] = json!({
        "headers": object(&rec.request_headers),
        "payload": serde_json::from_slice::<Value>(&rec.body).unwrap_or(Value::Null),
    });
    out["response"] = json!({
        "headers": rec.response_headers.as_deref().map(object),
        "payload": rec.response_body,
    });
    out
}

/// What a request to the delivery log asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    List,
    Get(u64),
    Redeliver(u64),
}

/// Parses `/app/hook/deliveries[/{id}[/attempts]]`; unknown shapes (and non-numeric IDs) are
/// `None` (404).
fn parse(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/app/hook/deliveries")?;
    let segs: Vec<&str> = match rest {
        "" => Vec::new(),
        r => r.strip_prefix('/')?.split('/').collect(),
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) => Some(Route::List),
        ("GET", [id]) => Some(Route::Get(id.parse().ok()?)),
        ("POST", [id, "attempts"]) => Some(Route::Redeliver(id.parse().ok()?)),
        _ => None,
    }
}

/// The handler of the delivery log's routes: records the call, authenticates the App, applies
/// the rate limit and any injected fault, then serves it.
pub(crate) async fn handle(State(shared): AppState, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.ok();
    let (body, _) = crate::rest::parse_body(bytes.as_ref());
    let index = shared.with(|s| s.store.record_call(method.as_str(), &path, body));
    let resp = match identify(&shared, &headers, Accept::Jwt) {
        Ok(Some(identified)) => match charge(&shared, identified, true) {
            Ok(authed) => {
                let fault = shared.with(|s| s.store.take_fault(method.as_str(), &path));
                let result = match crate::mint::apply_fault(&shared, fault).await {
                    Some(err) => Err(err),
                    None => {
                        let link_base = if shared.with(|s| s.store.absolute_links) {
                            base_url(&headers)
                        } else {
                            String::new()
                        };
                        serve(&shared, &method, &path, query.as_deref(), &link_base)
                    }
                };
                finish(Some(&authed), result)
            }
            Err(e) => e.into_response(),
        },
        // `Accept::Jwt` never lets an anonymous request through.
        Ok(None) => ApiError::bad_credentials().into_response(),
        Err(e) => e.into_response(),
    };
    shared.with(|s| s.store.answered(index, resp.status().as_u16()));
    resp
}

/// Serves an authenticated, unfaulted call.
fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    link_base: &str,
) -> Result<Response, ApiError> {
    match parse(method, path).ok_or_else(ApiError::not_found)? {
        Route::List => list(shared, query, link_base),
        Route::Get(id) => {
            let rec = find(shared, id)?;
            Ok(json_response(StatusCode::OK, &full(&rec)))
        }
        Route::Redeliver(id) => redeliver(shared, id),
    }
}

/// The attempt with this ID.
fn find(shared: &Shared, id: u64) -> Result<DeliveryRec, ApiError> {
    shared
        .with(|s| s.webhook.log.iter().find(|d| d.id == id).cloned())
        .ok_or_else(ApiError::not_found)
}

/// Whether an attempt passes the `status` filter: `success` is a status code of 200-399,
/// `failure` one of 400-599 (so attempts nothing answered match neither), as GitHub documents.
fn matches(rec: &DeliveryRec, status: Option<&str>) -> bool {
    match status {
        Some("success") => (200..400).contains(&rec.status_code),
        Some("failure") => (400..600).contains(&rec.status_code),
        _ => true,
    }
}

/// `GET /app/hook/deliveries`: newest first; `cursor` names the page's first delivery and the
/// `Link` header the next (and previous) page's.
fn list(shared: &Shared, query: Option<&str>, link_base: &str) -> Result<Response, ApiError> {
    let per_page = query_number(query, "per_page").unwrap_or(30).clamp(1, 100);
    let status = query_param(query, "status");
    if let Some(s) = &status {
        if s != "success" && s != "failure" {
            return Err(not_one_of("status", s, &["success", "failure"]));
        }
    }
    let cursor = match query_param(query, "cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.strip_prefix(CURSOR_PREFIX)
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Invalid cursor"))?,
        ),
    };
    let listed: Vec<DeliveryRec> = shared.with(|s| {
        s.webhook
            .log
            .iter()
            .rev()
            .filter(|d| matches(d, status.as_deref()))
            .cloned()
            .collect()
    });
    let start = cursor.map_or(0, |c| {
        listed
            .iter()
            .position(|d| d.id <= c)
            .unwrap_or(listed.len())
    });
    let page: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(per_page)
        .map(simple)
        .collect();
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
    let link = |id: u64| {
        let filter = status
            .as_deref()
            .map(|s| format!("&status={s}"))
            .unwrap_or_default();
        format!(
            "<{link_base}/app/hook/deliveries?per_page={per_page}&cursor={CURSOR_PREFIX}{id}{filter}>"
        )
    };
    let mut rels = Vec::new();
    if let Some(next) = listed.get(start + per_page) {
        rels.push(format!("{}; rel=\"next\"", link(next.id)));
    }
    if start > 0 {
        let prev = &listed[start.saturating_sub(per_page)];
        rels.push(format!("{}; rel=\"prev\"", link(prev.id)));
    }
    if !rels.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&rels.join(", ")) {
            resp.headers_mut().insert(http::header::LINK, v);
        }
    }
    Ok(resp)
}

/// `POST /app/hook/deliveries/{id}/attempts`: 202 `{}`, then the same payload goes out again
/// with the same GUID (to the webhook URL configured now, else the attempt's).
fn redeliver(shared: &Shared, id: u64) -> Result<Response, ApiError> {
    let rec = find(shared, id)?;
    if shared.now() - rec.delivered_at > TimeDelta::days(REDELIVERY_WINDOW_DAYS) {
        return Err(ApiError::unprocessable(TOO_OLD));
    }
    let (url, secret) = shared.with(|s| (s.webhook.url.clone(), s.webhook.secret.clone()));
    shared.deliveries.push(Job {
        guid: rec.guid,
        event: rec.event,
        action: rec.action,
        installation_id: rec.installation_id,
        repository_id: rec.repository_id,
        body: rec.body,
        redelivery: true,
        url: url.unwrap_or(rec.url),
        secret,
    });
    Ok(json_response(StatusCode::ACCEPTED, &json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(
            parse(&Method::GET, "/app/hook/deliveries"),
            Some(Route::List)
        );
        assert_eq!(
            parse(&Method::GET, "/app/hook/deliveries/42"),
            Some(Route::Get(42))
        );
        assert_eq!(
            parse(&Method::POST, "/app/hook/deliveries/42/attempts"),
            Some(Route::Redeliver(42))
        );
        assert_eq!(parse(&Method::GET, "/app/hook/deliveries/x"), None);
        assert_eq!(parse(&Method::POST, "/app/hook/deliveries"), None);
        assert_eq!(parse(&Method::GET, "/app/hook/deliveries/1/attempts"), None);
        assert_eq!(parse(&Method::GET, "/app/hook/deliveriesx"), None);
    }

    fn rec(status_code: u16) -> DeliveryRec {
        DeliveryRec {
            id: 1,
            guid: "g".into(),
            delivered_at: Utc::now(),
            redelivery: false,
            duration: 0.5,
            status: "OK".into(),
            status_code,
            event: "ping".into(),
            action: None,
            installation_id: None,
            repository_id: None,
            url: "http://x".into(),
            request_headers: vec![("X-GitHub-Event".into(), "ping".into())],
            body: Bytes::from_static(b"{\"zen\":\"hi\"}"),
            response_headers: None,
            response_body: None,
        }
    }

    #[test]
    fn status_filter_classifies_status_codes() {
        for (code, success, failure) in [
            (200, true, false),
            (302, true, false),
            (404, false, true),
            (503, false, true),
            (0, false, false),
        ] {
            assert_eq!(matches(&rec(code), Some("success")), success, "{code}");
            assert_eq!(matches(&rec(code), Some("failure")), failure, "{code}");
            assert!(matches(&rec(code), None));
        }
    }

    #[test]
    fn full_deliveries_carry_request_and_response() {
        let v = full(&rec(0));
        assert_eq!(v["request"]["headers"]["X-GitHub-Event"], "ping");
        assert_eq!(v["request"]["payload"], json!({"zen": "hi"}));
        assert_eq!(v["response"], json!({"headers": null, "payload": null}));
        assert_eq!(v["url"], "http://x");
        assert!(simple(&rec(0)).get("url").is_none());
    }
}
