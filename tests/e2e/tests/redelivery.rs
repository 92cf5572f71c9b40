//! No delivery is lost: the GitHub stand-in delivers webhooks as GitHub
//! does (signed, logged, never retried on its own), the api is down while
//! comments are made, and the tokenator's sweep of the App's delivery log
//! has each failed delivery redelivered until it is answered — exactly once,
//! and never again after it succeeded. A delivery the api refuses for good
//! is not redelivered in a loop.

use penguin_test_support::{
    binaries::workspace_binary,
    pod::{Pod, WEBHOOK_SECRET},
    OWNER, REPO,
};
use serde_json::Value;
use std::{collections::BTreeMap, time::Duration};

/// A pod whose tokenator sweeps the delivery log every second, and whose
/// stand-in delivers to the api.
async fn redelivering_pod() -> Pod {
    let config = "github:\n  bot:\n    commands_per_hour_per_user: 500\n    commands_per_hour_per_repo: 500\n";
    let pod = Pod::for_bot_with(
        Some(config),
        Duration::from_secs(3600),
        Vec::new(),
        &[("PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS", "1")],
    )
    .await;
    let standin = &pod.github.standin;
    standin.add_issue(OWNER, REPO, 1, "Crash", "It crashes.", "octocat", &[]);
    standin.set_permission(OWNER, REPO, "octocat", "write");
    point_webhook(&pod, WEBHOOK_SECRET);
    pod
}

fn point_webhook(pod: &Pod, secret: &str) {
    let url = pod.api.url("/api/v1/integrations/github/webhook");
    pod.github.standin.set_webhook(Some(&url), secret);
}

/// Every attempt of the delivery log, by GUID, oldest first.
fn attempts_by_guid(pod: &Pod) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for attempt in pod.github.standin.deliveries() {
        let guid = attempt["guid"].as_str().unwrap().to_string();
        out.entry(guid).or_default().push(attempt);
    }
    out
}

fn ok(attempt: &Value) -> bool {
    (200..300).contains(&attempt["status_code"].as_u64().unwrap_or(0))
}

/// The bot's answers to `help` on issue 1.
fn help_answers(pod: &Pod) -> usize {
    pod.bot_comments(1)
        .iter()
        .filter(|b| b.contains("Commands:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_made_while_the_api_is_down_are_redelivered_and_answered_once() {
    let mut pod = redelivering_pod().await;
    let env = pod.api.env.clone();
    pod.api.process.kill().await;

    // 20 comments while nothing listens: 20 failed attempts.
    for _ in 0..20 {
        pod.github
            .standin
            .add_comment(OWNER, REPO, 1, "@Penguin help", "octocat")
            .expect("the comment is made");
    }
    pod.github.standin.deliveries_settled().await;
    let before = attempts_by_guid(&pod);
    let comment_guids: Vec<&String> = before
        .iter()
        .filter(|(_, a)| a[0]["event"] == "issue_comment")
        .map(|(g, _)| g)
        .collect();
    assert_eq!(comment_guids.len(), 20, "{before:#?}");
    for guid in &comment_guids {
        let attempts = &before[*guid];
        assert_eq!(attempts.len(), 1);
        assert!(!ok(&attempts[0]), "{:#?}", attempts[0]);
        assert_eq!(attempts[0]["status_code"], 0);
    }

    // The api comes back (GitHub's webhook URL follows it, as an Ingress would).
    pod.api = penguin_test_support::api::Api::start(workspace_binary("penguin-api"), env).await;
    point_webhook(&pod, WEBHOOK_SECRET);
    assert!(
        penguin_test_support::eventually(Duration::from_secs(60), || help_answers(&pod) >= 20)
            .await,
        "answers: {}; deliveries: {:#?}",
        help_answers(&pod),
        attempts_by_guid(&pod)
    );
    // A few more sweeps: nothing is redelivered once it succeeded, and each
    // comment was answered exactly once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    pod.github.standin.deliveries_settled().await;
    assert_eq!(help_answers(&pod), 20);
    let after = attempts_by_guid(&pod);
    for guid in comment_guids {
        let attempts = &after[guid];
        let first_ok = attempts
            .iter()
            .position(ok)
            .unwrap_or_else(|| panic!("{guid} never delivered: {attempts:#?}"));
        assert_eq!(
            first_ok,
            attempts.len() - 1,
            "redelivered after it succeeded: {attempts:#?}"
        );
        assert!(attempts[first_ok]["redelivery"].as_bool().unwrap());
    }
    let (_, metrics) = pod.tokenator.http_get("/metrics").await;
    let requested: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("penguin_tokenator_redeliveries_total{result=\"requested\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(requested >= 20.0, "{metrics}");
    assert!(
        metrics.contains("penguin_tokenator_oldest_failed_delivery_age_seconds 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_api_refuses_for_good_is_not_redelivered_in_a_loop() {
    let pod = redelivering_pod().await;
    // Signed with a secret the api does not know: 401, a refusal for good.
    point_webhook(&pod, "not-the-api-secret-0123");
    pod.github
        .standin
        .add_comment(OWNER, REPO, 1, "@Penguin help", "octocat")
        .unwrap();
    pod.github.standin.deliveries_settled().await;
    // Several sweeps later it is still the one attempt.
    tokio::time::sleep(Duration::from_secs(4)).await;
    pod.github.standin.deliveries_settled().await;
    let attempts: Vec<Value> = pod.github.standin.deliveries();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["status_code"], 401);
    let (_, metrics) = pod.tokenator.http_get("/metrics").await;
    assert!(
        metrics.contains("penguin_tokenator_redeliveries_total{result=\"permanent\"} 1"),
        "{metrics}"
    );
    assert_eq!(help_answers(&pod), 0);
    // With the right secret, the next comment is answered (the sweep never
    // touched the refused one).
    point_webhook(&pod, WEBHOOK_SECRET);
    pod.github
        .standin
        .add_comment(OWNER, REPO, 1, "@Penguin help", "octocat")
        .unwrap();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(20), || help_answers(&pod) == 1).await
    );
}
