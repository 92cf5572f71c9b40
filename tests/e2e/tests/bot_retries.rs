//! A delivery that meets a transient failure (GitHub 5xx) is tried again
//! with backoff and completes once; a permanent one (403) ends at once; one
//! that keeps failing ends `dead` after its attempts, with its task failed.

use github_standin::Fault;
use llm_standin::Reply;
use penguin_api_store::{DeliveryState, Store, TaskState};
use penguin_test_support::{deliveries, pod::Pod, OWNER, REPO};
use std::time::Duration;

/// Three attempts, 100 ms apart at first.
const RETRIES: &str = "github:\n  delivery_retries: { max_attempts: 3, backoff_ms: 100 }\n";

async fn pod() -> Pod {
    let pod = Pod::for_bot(Some(RETRIES), Duration::from_secs(3600)).await;
    pod.github.standin.add_issue(
        OWNER,
        REPO,
        1,
        "Crash on empty input",
        "It crashes.",
        "octocat",
        &[],
    );
    pod.github
        .standin
        .set_permission(OWNER, REPO, "octocat", "write");
    pod
}

fn comments_path() -> String {
    format!("/repos/{OWNER}/{REPO}/issues/1/comments")
}

/// Statuses of the bot's attempts to post on issue 1.
fn comment_posts(pod: &Pod) -> Vec<u16> {
    pod.github
        .standin
        .calls_to("POST", &comments_path())
        .iter()
        .map(|c| c.status)
        .collect()
}

fn series(result: &str) -> String {
    format!(
        "penguin_webhook_deliveries_processed_total{{event=\"issue_comment\",result=\"{result}\"}}"
    )
}

async fn plan(pod: &Pod, delivery: &str, comment_id: u64) {
    let payload = deliveries::comment(1, false, "@Penguin plan", "octocat", "User", comment_id);
    assert_eq!(pod.deliver(delivery, &payload).await, 200);
}

/// The stored delivery, read from the api's own database.
async fn stored(pod: &Pod, delivery: &str) -> penguin_api_store::Delivery {
    let store = Store::open(&pod.api.data).await.unwrap();
    store.get_delivery(delivery).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_github_502_is_retried_and_the_command_completes_once() {
    let pod = pod().await;
    pod.github
        .standin
        .fail_next_calls(1, "POST", &comments_path(), Fault::Status(502));
    pod.llm.push_reply(Reply::Text("- [ ] Add a guard".into()));
    plan(&pod, "retry-1", 9701).await;
    pod.wait_for_metric(&series("done"), |n| n >= 1.0).await;
    assert_eq!(pod.wait_for_metric(&series("retry"), |_| true).await, 1.0);
    // The 502 then one comment, edited into the plan: nothing posted twice.
    assert_eq!(comment_posts(&pod), vec![502, 201]);
    let bot = pod.bot_comments(1);
    assert_eq!(bot.len(), 1, "{bot:#?}");
    assert!(bot[0].contains("- [ ] Add a guard"), "{}", bot[0]);
    let reactions = pod.github.standin.calls_to(
        "POST",
        &format!("/repos/{OWNER}/{REPO}/issues/comments/9701/reactions"),
    );
    assert_eq!(reactions.len(), 1, "one 👀, on the first attempt only");
    assert_eq!(pod.llm.requests().len(), 1, "the model was asked once");
    let delivery = stored(&pod, "retry-1").await;
    assert_eq!(
        (delivery.state, delivery.attempts),
        (DeliveryState::Done, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_ends_the_delivery_without_retries() {
    let pod = pod().await;
    pod.github
        .standin
        .fail_next_calls(5, "POST", &comments_path(), Fault::Status(403));
    plan(&pod, "forbidden-1", 9702).await;
    pod.wait_for_metric(&series("failed"), |n| n >= 1.0).await;
    let delivery = stored(&pod, "forbidden-1").await;
    assert_eq!(
        (delivery.state, delivery.attempts),
        (DeliveryState::Failed, 0)
    );
    assert!(
        delivery.note.as_deref().unwrap_or_default().contains("403"),
        "{:?}",
        delivery.note
    );
    // Three backoffs' worth of time later, still the one attempt.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(comment_posts(&pod), vec![403]);
    assert!(!pod.api.metrics().await.contains(&series("retry")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_ends_dead_after_its_attempts() {
    let pod = pod().await;
    pod.github
        .standin
        .fail_next_calls(20, "POST", &comments_path(), Fault::Status(502));
    plan(&pod, "dead-1", 9703).await;
    pod.wait_for_metric(&series("dead"), |n| n >= 1.0).await;
    assert_eq!(pod.wait_for_metric(&series("retry"), |_| true).await, 2.0);
    assert_eq!(comment_posts(&pod), vec![502, 502, 502], "three attempts");
    let store = Store::open(&pod.api.data).await.unwrap();
    let delivery = store.get_delivery("dead-1").await.unwrap();
    assert_eq!(delivery.state, DeliveryState::Dead);
    let note = delivery.note.unwrap_or_default();
    assert!(
        note.contains("gave up after 3 attempt(s)") && note.contains("502"),
        "{note}"
    );
    // The task it made says so too.
    let progress: serde_json::Value =
        serde_json::from_str(&store.delivery_progress("dead-1").await.unwrap().unwrap()).unwrap();
    let task = store
        .get_task(progress["task_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(task.state, TaskState::Failed);
    // Nothing more happens to it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(comment_posts(&pod).len(), 3);
    assert!(pod
        .api
        .process
        .logs()
        .contains("delivery failed on every attempt; giving up (dead)"));
}
