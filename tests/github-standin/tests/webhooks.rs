//! Webhook deliveries: what the stand-in posts when state changes (headers, signature, GitHub's
//! payloads), failed attempts, and the App's delivery log (`/app/hook/deliveries`): listing
//! with cursor pagination, single deliveries, redelivery and the 3-day window.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use github_standin::{Fault, PullFileSpec, PullSpec};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode};
use penguin_test_support::github_api::*;
use serde_json::{json, Value};
use sha2::Sha256;

const OWNER: &str = "octo-org";
const REPO: &str = "hello-world";
const SECRET: &str = "It's a Secret to Everybody";
const BOT: &str = "penguin-agent[bot]";
/// `node_id` of installation 1001: base64 of `023:IntegrationInstallation1001`.
const INSTALLATION_NODE_ID: &str = "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMTAwMQ==";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// `event.action`, e.g. `issue_comment.created`.
    fn event(&self) -> String {
        let payload = self.json();
        let action = payload["action"].as_str().unwrap_or("-");
        format!("{}.{action}", self.header("x-github-event"))
    }
}

/// What the receiver answers and what it got.
struct Inbox {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// A webhook receiver recording every request; it answers `status` with the body `ok`, after
/// `delay_ms`.
struct Receiver {
    url: String,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let inbox = Arc::new(Inbox {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().fallback(record).with_state(inbox.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, inbox, task }
    }

    fn answer(&self, status: u16) {
        self.inbox.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Received> {
        self.inbox.requests.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.requests().iter().map(Received::event).collect()
    }
}

async fn record(State(inbox): State<Arc<Inbox>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    inbox.requests.lock().unwrap().push(Received {
        path,
        headers,
        body,
    });
    let delay = inbox.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(inbox.status.load(Ordering::SeqCst)).unwrap();
    (status, [("x-receiver", "yes")], "ok").into_response()
}

/// A stand-in whose webhook points at `url`, signed with [`SECRET`].
async fn standin(url: &str, configure: impl FnOnce(&mut github_standin::StandInConfig)) -> GitHub {
    GitHub::start_with(|c| {
        c.webhook_url = Some(url.to_string());
        c.webhook_secret = SECRET.to_string();
        configure(c);
    })
    .await
    .unwrap()
}

/// The hex HMAC-SHA256 signature GitHub puts in `X-Hub-Signature-256`.
fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn pull_spec(number: u64, head_sha: &str) -> PullSpec {
    PullSpec {
        number,
        title: "Fix the parser".into(),
        body: "It was broken.".into(),
        author: "alice".into(),
        head_ref: "fix-parser".into(),
        head_sha: head_sha.into(),
        base_ref: "main".into(),
        labels: vec!["bug".into()],
        from_fork: false,
        files: vec![PullFileSpec {
            filename: "src/parser.rs".into(),
            status: "modified".into(),
            additions: 2,
            deletions: 1,
            patch: Some("@@ -1 +1,2 @@\n-old\n+new\n+more".into()),
        }],
    }
}

/// The `rel` → target pairs of a `Link` header.
fn links(resp: &Resp) -> Vec<(String, String)> {
    resp.header("link")
        .unwrap_or_default()
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (url, rel) = part.split_once("; ").unwrap();
            let url = url.trim_start_matches('<').trim_end_matches('>');
            let rel = rel.trim_start_matches("rel=\"").trim_end_matches('"');
            (rel.to_string(), url.to_string())
        })
        .collect()
}

fn ids(resp: &Resp) -> Vec<u64> {
    resp.json
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", resp.json))
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

async fn app_get(base: &str, path: &str) -> Resp {
    get(base, path, Some(&bearer(&app_jwt()))).await
}

async fn redeliver(base: &str, id: u64) -> Resp {
    let path = format!("/app/hook/deliveries/{id}/attempts");
    send(base, Method::POST, &path, Some(&bearer(&app_jwt())), None).await
}

#[tokio::test]
async fn a_comment_is_delivered_signed_with_githubs_headers_and_payload() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    s.add_issue(
        OWNER,
        REPO,
        1,
        "Crash on start",
        "It crashes.",
        "alice",
        &[],
    );
    assert_eq!(s.pending_deliveries(), 0, "seeding an issue sends nothing");
    let id = s.add_comment(OWNER, REPO, 1, "please fix", "bob").unwrap();
    s.deliveries_settled().await;
    assert_eq!(s.pending_deliveries(), 0);

    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("x-github-event"), "issue_comment");
    assert_eq!(r.header("x-github-hook-id"), "424242");
    assert_eq!(r.header("x-github-hook-installation-target-id"), "4242");
    assert_eq!(
        r.header("x-github-hook-installation-target-type"),
        "integration"
    );
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("accept"), "*/*");
    let agent = r.header("user-agent");
    let build = agent.strip_prefix("GitHub-Hookshot/").unwrap();
    assert_eq!(build.len(), 7, "{agent}");
    assert!(build.chars().all(|c| c.is_ascii_hexdigit()), "{agent}");
    let guid = r.header("x-github-delivery").to_string();
    let parts: Vec<usize> = guid.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "{guid}");
    assert_eq!(&guid[14..15], "4", "a version 4 GUID: {guid}");
    assert_eq!(r.header("x-hub-signature-256"), signature(&r.body));
    assert!(r.headers.get("x-hub-signature").is_none());

    let payload = r.json();
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["comment"]["id"], id);
    assert_eq!(payload["comment"]["body"], "please fix");
    assert_eq!(payload["comment"]["user"]["login"], "bob");
    assert_eq!(payload["issue"]["number"], 1);
    assert_eq!(payload["issue"]["title"], "Crash on start");
    assert_eq!(payload["issue"]["comments"], 1);
    assert!(payload["issue"].get("pull_request").is_none());
    assert_eq!(payload["repository"]["full_name"], "octo-org/hello-world");
    assert_eq!(payload["repository"]["id"], 500_001);
    assert_eq!(payload["organization"]["login"], "octo-org");
    assert_eq!(
        payload["installation"],
        json!({"id": 1001, "node_id": INSTALLATION_NODE_ID})
    );
    assert_eq!(payload["sender"]["login"], "bob");
    assert_eq!(payload["sender"]["type"], "User");

    // The payload's objects are the REST ones.
    let base = env.url();
    let token = mint_token(&base, None).await;
    let path = format!("/repos/{OWNER}/{REPO}/issues/comments/{id}");
    let rest = call(&base, Method::GET, &path, &token, None).await;
    assert_eq!(rest.status, StatusCode::OK);
    assert_eq!(payload["comment"], rest.json);
    let path = format!("/repos/{OWNER}/{REPO}/issues/1");
    let rest = call(&base, Method::GET, &path, &token, None).await;
    assert_eq!(payload["issue"], rest.json);

    let log = s.deliveries();
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(d["guid"], guid);
    assert_eq!(d["redelivery"], false);
    assert_eq!(d["status"], "OK");
    assert_eq!(d["status_code"], 200);
    assert_eq!(d["event"], "issue_comment");
    assert_eq!(d["action"], "created");
    assert_eq!(d["installation_id"], 1001);
    assert_eq!(d["repository_id"], 500_001);
    assert_eq!(d["url"], receiver.url);
    assert_eq!(d["throttled_at"], Value::Null);
    assert!(d["duration"].as_f64().unwrap() >= 0.0);
    assert!(d["delivered_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["request"]["payload"], payload);
    assert_eq!(
        d["request"]["headers"]["X-Hub-Signature-256"],
        signature(&r.body)
    );
    assert_eq!(d["request"]["headers"]["X-GitHub-Delivery"], guid);
    assert_eq!(d["response"]["payload"], "ok");
    assert_eq!(d["response"]["headers"]["x-receiver"], "yes");
}

#[tokio::test]
async fn api_changes_are_delivered_in_order_as_the_bot() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    let base = env.url();
    let token = mint_token(&base, None).await;
    let api = format!("/repos/{OWNER}/{REPO}");

    let comment = call(
        &base,
        Method::POST,
        &format!("{api}/issues/1/comments"),
        &token,
        Some(json!({"body": "on it"})),
    )
    .await;
    assert_eq!(comment.status, StatusCode::CREATED);
    let comment_id = comment.json["id"].as_u64().unwrap();
    for _ in 0..2 {
        let labels = call(
            &base,
            Method::POST,
            &format!("{api}/issues/1/labels"),
            &token,
            Some(json!({"labels": ["bug"]})),
        )
        .await;
        assert_eq!(labels.status, StatusCode::OK);
    }
    let removed = call(
        &base,
        Method::DELETE,
        &format!("{api}/issues/1/labels/bug"),
        &token,
        None,
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK);
    let edited = call(
        &base,
        Method::PATCH,
        &format!("{api}/issues/comments/{comment_id}"),
        &token,
        Some(json!({"body": "done"})),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK);
    s.deliveries_settled().await;

    assert_eq!(
        receiver.events(),
        [
            "issue_comment.created",
            "issues.labeled",
            "issues.unlabeled",
            "issue_comment.edited",
        ],
        "a label the issue already had is not labeled again"
    );
    let got = receiver.requests();
    for r in &got {
        let p = r.json();
        assert_eq!(p["sender"]["login"], BOT);
        assert_eq!(p["sender"]["type"], "Bot");
        assert_eq!(p["installation"]["id"], 1001);
        assert_eq!(r.header("x-hub-signature-256"), signature(&r.body));
    }
    let created = got[0].json();
    assert_eq!(created["comment"], comment.json);
    assert_eq!(created["comment"]["performed_via_github_app"]["id"], 4242);
    let labeled = got[1].json();
    assert_eq!(labeled["label"]["name"], "bug");
    assert_eq!(labeled["label"]["color"], "d73a4a");
    assert_eq!(labeled["issue"]["labels"][0]["name"], "bug");
    assert_eq!(got[2].json()["issue"]["labels"], json!([]));
    let edit = got[3].json();
    assert_eq!(edit["changes"], json!({"body": {"from": "on it"}}));
    assert_eq!(edit["comment"]["body"], "done");

    let log = s.deliveries();
    let log_ids: Vec<u64> = log.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert!(log_ids.windows(2).all(|w| w[0] < w[1]), "{log_ids:?}");
    let guids: Vec<&str> = got.iter().map(|r| r.header("x-github-delivery")).collect();
    let log_guids: Vec<&str> = log.iter().map(|d| d["guid"].as_str().unwrap()).collect();
    assert_eq!(guids, log_guids);
    let unique: std::collections::BTreeSet<&str> = guids.iter().copied().collect();
    assert_eq!(unique.len(), 4, "a new GUID per delivery");
}

#[tokio::test]
async fn pull_requests_are_delivered_opened_synchronized_labeled_and_edited() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let first = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let second = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
    s.add_pull(OWNER, REPO, pull_spec(7, first));
    s.add_pull(OWNER, REPO, pull_spec(7, first));
    s.push_to_pull(OWNER, REPO, 7, second);
    s.push_to_pull(OWNER, REPO, 7, second);
    s.add_labels(OWNER, REPO, 7, &["penguin", "bug"], "carol");
    s.add_issue(OWNER, REPO, 3, "Question", "How?", "dave", &[]);
    s.add_labels(OWNER, REPO, 3, &["question"], "carol");
    s.edit_body(OWNER, REPO, 7, "It was really broken.");
    s.edit_body(OWNER, REPO, 7, "It was really broken.");
    s.deliveries_settled().await;

    assert_eq!(
        receiver.events(),
        [
            "pull_request.opened",
            "pull_request.synchronize",
            "pull_request.labeled",
            "issues.labeled",
            "pull_request.edited",
        ]
    );
    let got: Vec<Value> = receiver.requests().iter().map(Received::json).collect();
    let opened = &got[0];
    assert_eq!(opened["number"], 7);
    assert_eq!(opened["pull_request"]["number"], 7);
    assert_eq!(opened["pull_request"]["head"]["sha"], first);
    assert_eq!(opened["pull_request"]["changed_files"], 1);
    assert_eq!(opened["sender"]["login"], "alice");
    assert_eq!(opened["installation"]["id"], 1001);
    let sync = &got[1];
    assert_eq!(sync["before"], first);
    assert_eq!(sync["after"], second);
    assert_eq!(sync["pull_request"]["head"]["sha"], second);
    assert_eq!(sync["sender"]["login"], "alice");
    let labeled = &got[2];
    assert_eq!(labeled["label"]["name"], "penguin");
    assert_eq!(labeled["sender"]["login"], "carol");
    let names: Vec<&str> = labeled["pull_request"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bug", "penguin"]);
    let issue_labeled = &got[3];
    assert_eq!(issue_labeled["issue"]["number"], 3);
    assert_eq!(issue_labeled["label"]["name"], "question");
    assert!(issue_labeled.get("pull_request").is_none());
    let edited = &got[4];
    assert_eq!(
        edited["changes"],
        json!({"body": {"from": "It was broken."}})
    );
    assert_eq!(edited["pull_request"]["body"], "It was really broken.");
    assert_eq!(edited["sender"]["login"], "alice");
}

#[tokio::test]
async fn only_subscribed_events_on_covered_repositories_are_delivered() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |c| {
        c.webhook_events = vec!["issue_comment".to_string()];
    })
    .await;
    let s = &env.standin;
    let app = app_get(&env.url(), "/app").await;
    assert_eq!(app.json["events"], json!(["issue_comment"]));
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    s.add_labels(OWNER, REPO, 1, &["bug"], "alice");
    s.add_comment(OWNER, REPO, 1, "first", "bob").unwrap();
    // No installation covers this repository.
    s.add_issue("someone", "else", 1, "Elsewhere", "", "alice", &[]);
    s.add_comment("someone", "else", 1, "not for the App", "bob")
        .unwrap();
    s.deliveries_settled().await;
    assert_eq!(receiver.events(), ["issue_comment.created"]);

    // A suspended installation gets nothing.
    s.suspend_installation(1001);
    s.add_comment(OWNER, REPO, 1, "second", "bob").unwrap();
    // Without a webhook URL nothing is delivered, not even custom events.
    s.set_webhook(None, SECRET);
    assert_eq!(
        s.deliver_event("ping", None, json!({"zen": "hi"}), OWNER, REPO),
        None
    );
    s.deliveries_settled().await;
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(s.deliveries().len(), 1);
}

#[tokio::test]
async fn the_webhook_can_be_changed_at_runtime_and_deliveries_left_unsigned() {
    let one = Receiver::start().await;
    let two = Receiver::start().await;
    let env = GitHub::start_with(|_| {}).await.unwrap();
    let s = &env.standin;
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    s.add_comment(OWNER, REPO, 1, "unheard", "bob").unwrap();
    s.set_webhook(Some(&one.url), SECRET);
    s.add_comment(OWNER, REPO, 1, "signed", "bob").unwrap();
    s.set_webhook(Some(&two.url), "");
    s.add_comment(OWNER, REPO, 1, "unsigned", "bob").unwrap();
    s.deliveries_settled().await;
    let (one, two) = (one.requests(), two.requests());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].json()["comment"]["body"], "signed");
    assert_eq!(
        one[0].header("x-hub-signature-256"),
        signature(&one[0].body)
    );
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].json()["comment"]["body"], "unsigned");
    assert!(two[0].headers.get("x-hub-signature-256").is_none());
}

#[tokio::test]
async fn failed_attempts_are_logged_with_githubs_status_and_never_retried() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let guid = s
        .deliver_event("ping", None, json!({"zen": "Keep it simple."}), OWNER, REPO)
        .unwrap();

    // A closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    s.deliveries_settled().await;
    s.set_webhook(Some(&closed_url), SECRET);
    s.deliver_event("ping", None, json!({"zen": "again"}), OWNER, REPO)
        .unwrap();

    // A receiver slower than the timeout.
    s.deliveries_settled().await;
    s.set_webhook(Some(&receiver.url), SECRET);
    s.set_webhook_timeout(Duration::from_millis(300));
    receiver.answer(200);
    receiver.inbox.delay_ms.store(3000, Ordering::SeqCst);
    s.deliver_event("ping", None, json!({"zen": "slow"}), OWNER, REPO)
        .unwrap();
    s.deliveries_settled().await;

    let log = s.deliveries();
    let got: Vec<(&str, u64)> = log
        .iter()
        .map(|d| {
            (
                d["status"].as_str().unwrap(),
                d["status_code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Invalid HTTP Response: 503", 503),
            ("failed to connect to host", 0),
            ("timed out", 0),
        ]
    );
    assert_eq!(log[0]["guid"], guid);
    assert_eq!(log[0]["action"], Value::Null);
    assert_eq!(log[0]["installation_id"], 1001);
    assert_eq!(log[0]["response"]["payload"], "ok");
    assert_eq!(log[1]["url"], closed_url);
    assert_eq!(
        log[1]["response"],
        json!({"headers": null, "payload": null})
    );
    assert_eq!(
        log[2]["response"],
        json!({"headers": null, "payload": null})
    );
    let waited = log[2]["duration"].as_f64().unwrap();
    assert!((0.3..2.5).contains(&waited), "{waited}");
    // GitHub never redelivers by itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests().len(), 2);
    assert_eq!(s.deliveries().len(), 3);
}

#[tokio::test]
async fn the_log_lists_newest_first_with_cursor_pagination_and_a_status_filter() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let base = env.url();
    for i in 0..5 {
        receiver.answer(if i % 2 == 0 { 200 } else { 500 });
        s.deliver_event("ping", None, json!({"n": i}), OWNER, REPO)
            .unwrap();
        s.deliveries_settled().await;
    }
    let all: Vec<u64> = s
        .deliveries()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let newest_first: Vec<u64> = all.iter().rev().copied().collect();

    let everything = app_get(&base, "/app/hook/deliveries").await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.json);
    assert_eq!(ids(&everything), newest_first);
    assert!(everything.header("link").is_none());
    let item = &everything.json[0];
    let mut keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "delivered_at",
            "duration",
            "event",
            "guid",
            "id",
            "installation_id",
            "redelivery",
            "repository_id",
            "status",
            "status_code",
            "throttled_at",
        ]
    );

    let first = app_get(&base, "/app/hook/deliveries?per_page=2").await;
    assert_eq!(ids(&first), newest_first[..2]);
    let next = format!(
        "/app/hook/deliveries?per_page=2&cursor=v1_{}",
        newest_first[2]
    );
    assert_eq!(links(&first), [("next".to_string(), next.clone())]);
    let second = app_get(&base, &next).await;
    assert_eq!(ids(&second), newest_first[2..4]);
    let last_page = format!(
        "/app/hook/deliveries?per_page=2&cursor=v1_{}",
        newest_first[4]
    );
    let back = format!(
        "/app/hook/deliveries?per_page=2&cursor=v1_{}",
        newest_first[0]
    );
    assert_eq!(
        links(&second),
        [
            ("next".to_string(), last_page.clone()),
            ("prev".to_string(), back),
        ]
    );
    let third = app_get(&base, &last_page).await;
    assert_eq!(ids(&third), newest_first[4..]);
    assert!(!links(&third).iter().any(|(rel, _)| rel == "next"));

    let failures = app_get(&base, "/app/hook/deliveries?status=failure").await;
    assert_eq!(ids(&failures), [newest_first[1], newest_first[3]]);
    let successes = app_get(&base, "/app/hook/deliveries?status=success&per_page=1").await;
    assert_eq!(ids(&successes), [newest_first[0]]);
    assert_eq!(
        links(&successes),
        [(
            "next".to_string(),
            format!(
                "/app/hook/deliveries?per_page=1&cursor=v1_{}&status=success",
                newest_first[2]
            )
        )]
    );

    let bad_status = app_get(&base, "/app/hook/deliveries?status=broken").await;
    assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_cursor = app_get(&base, "/app/hook/deliveries?cursor=garbage").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_cursor.json["message"], "Invalid cursor");

    s.set_absolute_links(true);
    let absolute = app_get(&base, "/app/hook/deliveries?per_page=4").await;
    assert_eq!(
        links(&absolute),
        [(
            "next".to_string(),
            format!(
                "{base}/app/hook/deliveries?per_page=4&cursor=v1_{}",
                newest_first[4]
            )
        )]
    );
}

#[tokio::test]
async fn a_single_delivery_shows_its_request_and_response() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let base = env.url();
    s.deliver_event(
        "issues",
        Some("opened"),
        json!({"action": "opened"}),
        OWNER,
        REPO,
    )
    .unwrap();
    s.deliveries_settled().await;
    let logged = s.deliveries().remove(0);
    let id = logged["id"].as_u64().unwrap();
    let one = app_get(&base, &format!("/app/hook/deliveries/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json, logged);
    assert_eq!(one.json["event"], "issues");
    assert_eq!(one.json["action"], "opened");
    assert_eq!(one.json["request"]["payload"], json!({"action": "opened"}));
    assert_eq!(one.json["request"]["headers"]["X-GitHub-Event"], "issues");
    assert_eq!(one.json["response"]["payload"], "ok");

    let missing = app_get(&base, &format!("/app/hook/deliveries/{}", id + 1000)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["message"], "Not Found");
    let garbage = app_get(&base, "/app/hook/deliveries/abc").await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn redelivery_resends_the_same_guid_as_a_new_attempt_within_three_days() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let base = env.url();
    s.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "alice", &[]);
    s.add_comment(OWNER, REPO, 1, "please fix", "bob").unwrap();
    s.deliveries_settled().await;
    let failed = s.deliveries().remove(0);
    assert_eq!(failed["status_code"], 503);
    let failed_id = failed["id"].as_u64().unwrap();

    receiver.answer(200);
    let resp = redeliver(&base, failed_id).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.json, json!({}));
    s.deliveries_settled().await;

    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("x-github-delivery"),
        got[1].header("x-github-delivery")
    );
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(
        got[1].header("x-hub-signature-256"),
        signature(&got[1].body)
    );
    let log = s.deliveries();
    assert_eq!(log.len(), 2);
    let again = &log[1];
    assert!(again["id"].as_u64().unwrap() > failed_id);
    assert_eq!(again["guid"], failed["guid"]);
    assert_eq!(again["redelivery"], true);
    assert_eq!(again["status"], "OK");
    assert_eq!(again["status_code"], 200);
    assert_eq!(again["event"], "issue_comment");
    assert_eq!(again["action"], "created");
    assert_eq!(again["request"]["payload"], failed["request"]["payload"]);
    let listed = app_get(&base, "/app/hook/deliveries").await;
    assert_eq!(listed.json[0]["redelivery"], true);
    assert_eq!(listed.json[1]["redelivery"], false);

    let unknown = redeliver(&base, failed_id + 1000).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Two days old: still redeliverable. Over three: refused.
    s.age_deliveries(Duration::from_secs(2 * 86_400));
    assert_eq!(
        redeliver(&base, failed_id).await.status,
        StatusCode::ACCEPTED
    );
    s.deliveries_settled().await;
    s.age_deliveries(Duration::from_secs(86_400 + 60));
    let too_old = redeliver(&base, failed_id).await;
    assert_eq!(too_old.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        too_old.json["message"],
        "Only deliveries from the past 3 days can be redelivered."
    );
    s.deliveries_settled().await;
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(s.deliveries().len(), 3);
}

#[tokio::test]
async fn the_log_takes_only_the_app_jwt_and_its_calls_are_recorded_and_faultable() {
    let receiver = Receiver::start().await;
    let env = standin(&receiver.url, |_| {}).await;
    let s = &env.standin;
    let base = env.url();
    s.deliver_event("ping", None, json!({}), OWNER, REPO)
        .unwrap();
    s.deliveries_settled().await;
    let id = s.deliveries()[0]["id"].as_u64().unwrap();
    let token = mint_token(&base, None).await;
    let get_one = format!("/app/hook/deliveries/{id}");
    let attempts = format!("/app/hook/deliveries/{id}/attempts");
    let routes = [
        (Method::GET, "/app/hook/deliveries"),
        (Method::GET, get_one.as_str()),
        (Method::POST, attempts.as_str()),
    ];
    for (method, path) in &routes {
        for auth in [None, Some(token_auth(&token))] {
            let resp = send(&base, method.clone(), path, auth.as_deref(), None).await;
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                resp.json["message"],
                "A JSON web token could not be decoded"
            );
        }
    }
    assert_eq!(
        s.jwt_rejections(),
        3,
        "installation tokens count as bad JWTs"
    );

    s.fail_next_calls(1, "GET", "/app/hook/deliveries", Fault::Status(502));
    let faulted = app_get(&base, "/app/hook/deliveries").await;
    assert_eq!(faulted.status, StatusCode::BAD_GATEWAY);
    let ok = app_get(&base, "/app/hook/deliveries").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-ratelimit-resource"), Some("core"));
    let remaining: u32 = ok.header("x-ratelimit-remaining").unwrap().parse().unwrap();
    let before: u32 = faulted
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining + 1, before);

    let calls: Vec<(String, String, u16)> = s
        .calls()
        .into_iter()
        .map(|c| (c.method, c.path, c.status))
        .collect();
    let expected: Vec<(String, String, u16)> = routes
        .iter()
        .flat_map(|(m, p)| std::iter::repeat_n((m.to_string(), p.to_string(), 401), 2))
        .chain([
            ("GET".to_string(), "/app/hook/deliveries".to_string(), 502),
            ("GET".to_string(), "/app/hook/deliveries".to_string(), 200),
        ])
        .collect();
    assert_eq!(calls, expected);
    // Nothing was redelivered by the refused requests.
    s.deliveries_settled().await;
    assert_eq!(receiver.requests().len(), 1);
}
