//! Webhook deliveries as GitHub's hookshot makes them. Events are queued as they happen and a
//! background task posts them one at a time, in order, signed with the webhook secret; every
//! attempt lands in the delivery log ([`crate::deliveries`]). GitHub waits 10 s for a 2xx and
//! never retries on its own: only a redelivery (`POST /app/hook/deliveries/{id}/attempts`)
//! sends a delivery again, with the same GUID.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::deliveries::DeliveryRec;
use crate::state::Shared;

/// GitHub's delivery agent (`GitHub-Hookshot/<7 hex digits of its build>`).
pub(crate) const USER_AGENT: &str = "GitHub-Hookshot/9a3c5f1";
/// Larger payloads are not delivered at all (GitHub: 25 MB).
const MAX_PAYLOAD_BYTES: usize = 25 << 20;
/// How much of a receiver's answer is kept for the log.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// The first delivery attempt's ID.
const FIRST_DELIVERY_ID: u64 = 80_000_000_001;

/// The App's webhook configuration and its delivery log (mutable state).
#[derive(Debug)]
pub(crate) struct Hook {
    /// Where deliveries go; none: events are not delivered.
    pub url: Option<String>,
    /// The HMAC key of `X-Hub-Signature-256`; empty: deliveries are unsigned, as on GitHub.
    pub secret: String,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// Every attempt, oldest first.
    pub log: Vec<DeliveryRec>,
    next_id: u64,
}

impl Hook {
    /// A webhook with an empty log.
    pub fn new(url: Option<String>, secret: String, timeout: Duration) -> Hook {
        Hook {
            url,
            secret,
            timeout,
            log: Vec::new(),
            next_id: FIRST_DELIVERY_ID,
        }
    }

    /// The ID of the next attempt (IDs increase with every attempt).
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// One delivery to attempt: a first delivery or a redelivery.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    /// The raw JSON body, the same bytes on every attempt.
    pub body: Bytes,
    pub redelivery: bool,
    pub url: String,
    pub secret: String,
}

/// The queue to the sender task, and how many queued deliveries are not yet attempted.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    /// Taken by the sender task when the server starts.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    pending: watch::Sender<usize>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        Queue {
            tx,
            rx: Mutex::new(Some(rx)),
            pending: watch::Sender::new(0),
        }
    }

    /// Queues a delivery for the sender task.
    pub fn push(&self, job: Job) {
        self.pending.send_modify(|n| *n += 1);
        if self.tx.send(job).is_err() {
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    /// Queued deliveries not yet attempted (or under way).
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Waits until every queued delivery was attempted.
    pub async fn settled(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Queues `payload` as a delivery of `event` to the configured webhook URL with a fresh GUID,
/// which it returns; `None` (nothing sent) without a webhook URL or for an oversized payload.
pub(crate) fn enqueue(
    shared: &Shared,
    event: &str,
    action: Option<&str>,
    installation_id: Option<u64>,
    repository_id: Option<u64>,
    payload: &Value,
) -> Option<String> {
    let (url, secret) = shared.with(|s| (s.webhook.url.clone(), s.webhook.secret.clone()));
    let url = url?;
    let body = Bytes::from(serde_json::to_vec(payload).ok()?);
    if body.len() > MAX_PAYLOAD_BYTES {
        tracing::debug!(event, bytes = body.len(), "payload too large to deliver");
        return None;
    }
    let guid = uuid::Uuid::new_v4().to_string();
    shared.deliveries.push(Job {
        guid: guid.clone(),
        event: event.to_string(),
        action: action.map(str::to_string),
        installation_id,
        repository_id,
        body,
        redelivery: false,
        url,
        secret,
    });
    Some(guid)
}

/// Whether an event of `owner/name` is delivered at all, and for which installation: GitHub
/// sends an App's webhooks only for events it subscribes to, on repositories an active
/// installation covers. `None` also without a webhook URL (so callers skip rendering).
pub(crate) fn target(shared: &Shared, event: &str, owner: &str, name: &str) -> Option<u64> {
    if !shared.webhook_events.iter().any(|e| e == event) {
        return None;
    }
    shared.with(|s| s.webhook.url.is_some()).then_some(())?;
    shared.installation_covering(owner, name)
}

/// `sha256=` + the hex HMAC-SHA256 of `body` keyed with `secret`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The request headers of an attempt, in GitHub's spelling (the log shows them so).
fn headers(shared: &Shared, job: &Job) -> Vec<(String, String)> {
    let mut out = vec![
        ("Accept", "*/*".to_string()),
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", USER_AGENT.to_string()),
        ("X-GitHub-Delivery", job.guid.clone()),
        ("X-GitHub-Event", job.event.clone()),
        ("X-GitHub-Hook-ID", shared.hook_id.to_string()),
        (
            "X-GitHub-Hook-Installation-Target-ID",
            shared.app_id.to_string(),
        ),
        (
            "X-GitHub-Hook-Installation-Target-Type",
            "integration".to_string(),
        ),
    ];
    if !job.secret.is_empty() {
        out.push(("X-Hub-Signature-256", signature(&job.secret, &job.body)));
    }
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The sender task: attempts queued deliveries one at a time, in order, and logs each.
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(mut rx) = shared
        .deliveries
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    while let Some(job) = rx.recv().await {
        let timeout = shared.with(|s| s.webhook.timeout);
        let headers = headers(&shared, &job);
        let delivered_at = shared.now();
        let started = Instant::now();
        let answer = post(&job.url, &headers, job.body.clone(), timeout).await;
        let duration = started.elapsed().as_secs_f64();
        tracing::debug!(guid = %job.guid, event = %job.event, status = %answer.status, "webhook delivery");
        shared.with(|s| {
            let id = s.webhook.next_id();
            s.webhook.log.push(DeliveryRec {
                id,
                guid: job.guid,
                delivered_at,
                redelivery: job.redelivery,
                duration,
                status: answer.status,
                status_code: answer.status_code,
                event: job.event,
                action: job.action,
                installation_id: job.installation_id,
                repository_id: job.repository_id,
                url: job.url,
                request_headers: headers,
                body: job.body,
                response_headers: answer.headers,
                response_body: answer.body,
            });
        });
        shared
            .deliveries
            .pending
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What came of one attempt.
#[derive(Debug)]
struct Answer {
    /// `OK`, or GitHub's description of the failure.
    status: String,
    /// 0 when nothing was answered.
    status_code: u16,
    headers: Option<Vec<(String, String)>>,
    body: Option<String>,
}

impl Answer {
    fn failed(status: &str) -> Answer {
        Answer {
            status: status.to_string(),
            status_code: 0,
            headers: None,
            body: None,
        }
    }
}

/// How an exchange failed before a status arrived.
#[derive(Debug)]
enum Failure {
    Connect,
    Protocol,
}

/// Posts one delivery; anything but a 2xx within `timeout` is a failed attempt.
async fn post(url: &str, headers: &[(String, String)], body: Bytes, timeout: Duration) -> Answer {
    match tokio::time::timeout(timeout, exchange(url, headers, body)).await {
        Err(_) => Answer::failed("timed out"),
        Ok(Err(Failure::Connect)) => Answer::failed("failed to connect to host"),
        Ok(Err(Failure::Protocol)) => Answer::failed("Invalid HTTP Response"),
        Ok(Ok((code, headers, body))) => Answer {
            status: if (200..300).contains(&code) {
                "OK".to_string()
            } else {
                format!("Invalid HTTP Response: {code}")
            },
            status_code: code,
            headers: Some(headers),
            body,
        },
    }
}

/// Aborts the connection task when the exchange ends or is given up.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 POST to a plain `http://` URL: the status, headers and (text) body.
async fn exchange(
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<(u16, Vec<(String, String)>, Option<String>), Failure> {
    let uri: http::Uri = url.parse().map_err(|_| Failure::Connect)?;
    // The stand-in talks plain HTTP only; receivers in tests listen on loopback.
    if uri.scheme_str() != Some("http") {
        return Err(Failure::Connect);
    }
    let authority = uri.authority().ok_or(Failure::Connect)?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
        .await
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Protocol)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::post(path).header(http::header::HOST, authority.as_str());
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let req = req.body(Full::new(body)).map_err(|_| Failure::Protocol)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|_| Failure::Protocol)?;
    let code = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
    Ok((code, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_githubs_test_vector() {
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[tokio::test]
    async fn unreachable_and_odd_urls_fail_to_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let timeout = Duration::from_secs(5);
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            "https://127.0.0.1:1/hook".to_string(),
            "not a url".to_string(),
        ] {
            let answer = post(&url, &[], Bytes::new(), timeout).await;
            assert_eq!(answer.status, "failed to connect to host", "{url}");
            assert_eq!(answer.status_code, 0);
            assert!(answer.headers.is_none() && answer.body.is_none());
        }
    }
}
