//! The GitHub webhook route over a real socket: every public example payload
//! is accepted; the checks answer in order with the expected messages; a
//! stored delivery survives a crash right after its 200.

use penguin_api_store::{DeliveryState, Store};
use penguin_test_support::{
    api::{self, error_of, Api},
    deliveries,
};
use serde_json::Value;
use std::time::Duration;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

const SECRET: &str = "It's a Secret to Everybody";

async fn deliver(
    api: &Api,
    event: &str,
    delivery: Option<&str>,
    body: &[u8],
    secret: &str,
) -> (u16, Value) {
    let response = deliveries::signed(
        &api.http,
        &api.url(""),
        secret.as_bytes(),
        event,
        delivery,
        body,
    )
    .header("content-type", "application/json")
    .send()
    .await
    .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn webhook_env(dir: &std::path::Path) -> std::collections::HashMap<String, String> {
    let mut env = api::env(dir, None);
    env.insert("GITHUB_WEBHOOK_SECRET".into(), SECRET.into());
    env
}

#[tokio::test]
async fn every_public_example_payload_is_accepted() {
    let payloads = penguin_test_support::webhooks::all();
    assert!(payloads.len() >= 300, "only {} payloads", payloads.len());
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, webhook_env(dir.path())).await;
    for (i, (event, payload)) in payloads.iter().enumerate() {
        let body = serde_json::to_vec(payload).unwrap();
        let (status, answer) =
            deliver(&api, event, Some(&format!("fixture-{i}")), &body, SECRET).await;
        assert_eq!(status, 200, "{event} #{i}: {answer}");
        assert_eq!(answer, serde_json::json!({"status": "ok", "event": event}));
    }
    // The worker gets through all of them without an error (none needs GitHub: no mention commands by allowed users).
    let store = Store::open(&api.data).await.unwrap();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(60), || {
            futures::executor::block_on(store.pending_deliveries(10))
                .map(|p| p.is_empty())
                .unwrap_or(false)
        })
        .await,
        "deliveries still pending"
    );
    assert!(!api.process.logs().contains("panicked"));
    let (status, metrics) = {
        let r = api.http.get(api.url("/metrics")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(
        metrics.contains("penguin_webhook_deliveries_received_total{event=\"issue_comment\"}"),
        "{metrics}"
    );
    api.process.assert_no_leak(&[SECRET.to_string()]);
}

#[tokio::test]
async fn checks_answer_in_order_with_githubs_messages() {
    let payload = serde_json::to_vec(
        &penguin_test_support::webhooks::all()
            .iter()
            .find(|(e, _)| e == "issue_comment")
            .unwrap()
            .1,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1. No secret configured.
    let api = Api::start(BIN, api::env(dir.path(), None)).await;
    let (status, body) = deliver(&api, "issue_comment", Some("d-1"), &payload, SECRET).await;
    assert_eq!(status, 500);
    assert_eq!(error_of(&body)["message"], "Webhook secret not configured");
    drop(api);

    let mut env = webhook_env(dir.path());
    env.insert("GITHUB_REPOSITORY".into(), "someone/else".into());
    let api = Api::start(BIN, env.clone()).await;
    // 2. Signature missing or wrong (checked before anything is parsed).
    let (status, body) =
        deliver(&api, "issue_comment", Some("d-2"), &payload, "wrong secret").await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body)["message"], "Invalid signature");
    let r = api
        .http
        .post(api.url("/api/v1/integrations/github/webhook"))
        .header("X-GitHub-Delivery", "d-2b")
        .body("not even json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // 3. Not JSON.
    let (status, body) = deliver(&api, "issue_comment", Some("d-3"), b"{not json", SECRET).await;
    assert_eq!(
        (status, error_of(&body)["message"].as_str()),
        (400, Some("Invalid JSON payload"))
    );
    // 4. No delivery id.
    let (status, body) = deliver(&api, "issue_comment", None, &payload, SECRET).await;
    assert_eq!(
        (status, error_of(&body)["message"].as_str()),
        (400, Some("Missing delivery id"))
    );
    // 5. Repository not allowed (GITHUB_REPOSITORY is someone/else).
    let (status, body) = deliver(&api, "issue_comment", Some("d-5"), &payload, SECRET).await;
    assert_eq!(
        (status, error_of(&body)["message"].as_str()),
        (403, Some("Unauthorized repository"))
    );
    // Payloads without a repository are acknowledged.
    let (status, _) = deliver(
        &api,
        "ping",
        Some("d-ping"),
        br#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
        SECRET,
    )
    .await;
    assert_eq!(status, 200);
    // 6. A GUID already stored (a redelivery) is acknowledged with 2xx, so
    // GitHub's log shows it delivered, and not stored again.
    let (status, body) = deliver(&api, "ping", Some("d-ping"), br#"{"zen":"again"}"#, SECRET).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    // The signature is still checked first.
    let (status, _) = deliver(
        &api,
        "ping",
        Some("d-ping"),
        br#"{"zen":"again"}"#,
        "wrong-secret-0123",
    )
    .await;
    assert_eq!(status, 401);
    // Over GitHub's 25 MB.
    let mut big = b"{\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 26 * 1024 * 1024));
    big.extend(b"\"}");
    let (status, _) = deliver(&api, "ping", Some("d-big"), &big, SECRET).await;
    assert_eq!(status, 413);
    drop(api);

    // A previous secret is accepted during rotation.
    env.insert("GITHUB_WEBHOOK_SECRET".into(), "the-new-secret-0123".into());
    env.insert("GITHUB_WEBHOOK_SECRET_PREVIOUS".into(), SECRET.into());
    env.remove("GITHUB_REPOSITORY");
    let api = Api::start(BIN, env).await;
    let (status, _) = deliver(&api, "issue_comment", Some("d-rotated"), &payload, SECRET).await;
    assert_eq!(status, 200);
    let (status, _) = deliver(
        &api,
        "issue_comment",
        Some("d-new"),
        &payload,
        "the-new-secret-0123",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_delivery_acknowledged_before_a_crash_is_processed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = webhook_env(dir.path());
    let mut api = Api::start(BIN, env.clone()).await;
    let body = br#"{"zen":"Design for failure.","hook_id":7}"#;
    let (status, _) = deliver(&api, "ping", Some("crash-1"), body, SECRET).await;
    assert_eq!(status, 200);
    api.process.kill().await;
    // Committed before the 200: it is there after the crash.
    let store = Store::open(&api.data).await.unwrap();
    let stored = store.get_delivery("crash-1").await.unwrap();
    assert_eq!(stored.payload, body.to_vec());
    drop(store);
    let api = Api::start(BIN, env).await;
    let store = Store::open(&api.data).await.unwrap();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(10), || {
            futures::executor::block_on(store.get_delivery("crash-1"))
                .map(|d| d.state == DeliveryState::Ignored || d.state == DeliveryState::Done)
                .unwrap_or(false)
        })
        .await,
        "not processed after restart"
    );
    // Redelivery after processing is acknowledged as a duplicate, and the
    // stored payload is the first one.
    let (status, answer) =
        deliver(&api, "ping", Some("crash-1"), br#"{"zen":"other"}"#, SECRET).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );
    let store = Store::open(&api.data).await.unwrap();
    assert_eq!(
        store.get_delivery("crash-1").await.unwrap().payload,
        body.to_vec()
    );
}

#[tokio::test]
async fn secrets_can_come_from_files_instead_of_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("webhook"), "file-webhook-secret-0123\n").unwrap();
    std::fs::write(
        secrets.join("api-keys"),
        "file-key-0123456789abcdef\nsecond-key-0123456789abc\n",
    )
    .unwrap();
    let mut env = api::env(dir.path(), None);
    env.remove("PENGUIN_API_KEYS");
    env.insert(
        "PENGUIN_API_KEYS_FILE".into(),
        secrets.join("api-keys").display().to_string(),
    );
    env.insert(
        "GITHUB_WEBHOOK_SECRET_FILE".into(),
        secrets.join("webhook").display().to_string(),
    );
    let api = Api::start(BIN, env.clone()).await;
    // Both keys from the file work; the one in the environment is gone.
    for key in ["file-key-0123456789abcdef", "second-key-0123456789abc"] {
        let status = api
            .http
            .get(api.url("/api/v1/system/info"))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{key}");
    }
    let (status, _) = api.get("/api/v1/system/info").await;
    assert_eq!(status, 401);
    // Deliveries are verified with the file's secret.
    let body = br#"{"zen":"Files, not environment.","hook_id":3}"#;
    let (status, _) = deliver(&api, "ping", Some("f-1"), body, "file-webhook-secret-0123").await;
    assert_eq!(status, 200);
    let (status, _) = deliver(&api, "ping", Some("f-2"), body, SECRET).await;
    assert_eq!(status, 401);
    drop(api);

    // Both ways at once, or an unreadable file: exit 64 naming the variable.
    for (var, value) in [
        ("GITHUB_WEBHOOK_SECRET", "also-in-env-0123"),
        ("GITHUB_WEBHOOK_SECRET_FILE", "/nonexistent/webhook"),
    ] {
        let mut bad = env.clone();
        bad.insert(var.into(), value.into());
        let mut process = penguin_test_support::process::ServiceProcess::spawn(
            std::path::Path::new(BIN),
            &[],
            &bad,
        )
        .unwrap();
        let code = process.wait_exit(Duration::from_secs(20)).await;
        let logs = process.logs();
        assert_eq!(code, Some(64), "{var}: {logs}");
        assert!(logs.contains("GITHUB_WEBHOOK_SECRET_FILE"), "{logs}");
        assert!(
            !logs.contains("file-webhook-secret-0123"),
            "the secret was printed"
        );
    }
}
