//! penguin-api killed (SIGKILL) in the middle of a burst of signed
//! `@Penguin plan` deliveries, then started again on the same data: every
//! acknowledged delivery is answered, commands cut off mid-work resume with
//! their own task and progress comment, and nothing is done twice.

use llm_standin::Reply;
use penguin_api_store::{DeliveryState, Store};
use penguin_test_support::{
    api::Api,
    binaries::workspace_binary,
    deliveries,
    pod::{Pod, WEBHOOK_SECRET},
    GitHub, OWNER, REPO,
};
use std::time::Duration;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");
/// Deliveries in the burst.
const BURST: u64 = 24;
/// Commands the worker runs at once: these are cut off mid-work.
const IN_FLIGHT: usize = 4;

/// Signs and posts one delivery; `None` when the API was not there to answer.
/// Posts one delivery: its status and the answer's `status` field (`ok`,
/// or `duplicate` for a GUID stored before); `None` if nothing answered.
async fn deliver(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let response = deliveries::signed(
        http,
        base,
        WEBHOOK_SECRET.as_bytes(),
        "issue_comment",
        Some(id),
        body,
    )
    .send()
    .await
    .ok()?;
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    Some((
        status,
        answer["status"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The burst: one distinct comment per delivery, all on issue 1.
fn burst() -> Vec<(String, Vec<u8>)> {
    (0..BURST)
        .map(|i| {
            let payload =
                deliveries::comment(1, false, "@Penguin plan", "octocat", "User", 50_000 + i);
            (format!("burst-{i}"), serde_json::to_vec(&payload).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_a_burst_loses_nothing_and_does_nothing_twice() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let mut pod = Pod::start(
        workspace_binary("penguin-tokenator"),
        BIN,
        github,
        "run",
        |env, dir| {
            // More commands than the default per-user cap.
            let config = dir.join("server-config.yml");
            std::fs::write(
                &config,
                "github:\n  bot:\n    commands_per_hour_per_user: 100\n    commands_per_hour_per_repo: 100\n",
            )
            .unwrap();
            env.insert("PENGUIN_CONFIG_PATH".into(), config.display().to_string());
            env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "120".into());
        },
    )
    .await;
    let (github, llm) = (&pod.github, &pod.llm);
    github.standin.add_issue(
        OWNER,
        REPO,
        1,
        "Crash on empty input",
        "It crashes.",
        "octocat",
        &[],
    );
    github
        .standin
        .set_permission(OWNER, REPO, "octocat", "write");

    // The first commands to reach the model hang there until the kill.
    for _ in 0..IN_FLIGHT {
        llm.push_reply(Reply::Hang);
    }

    let base = pod.api.url("");
    let http = reqwest::Client::new();
    let deliveries = burst();
    let (first, second) = deliveries.split_at(deliveries.len() / 2);
    let mut acknowledged = Vec::new();
    for (id, body) in first {
        assert_eq!(
            deliver(&http, &base, id, body).await,
            Some((200, "ok".to_string())),
            "{id}"
        );
        acknowledged.push(id.clone());
    }
    assert!(
        penguin_test_support::eventually(Duration::from_secs(20), || llm.requests().len()
            >= IN_FLIGHT)
        .await,
        "commands never reached the model:\n{}",
        pod.api.process.logs()
    );
    // The second half arrives while the process is killed.
    let sending = {
        let (http, base, second) = (http.clone(), base.clone(), second.to_vec());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for (id, body) in second {
                answers.push((id.clone(), deliver(&http, &base, &id, &body).await));
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    pod.api.process.kill().await;
    let mut redeliver = Vec::new();
    for (id, status) in sending.await.unwrap() {
        match status {
            Some((200, _)) => acknowledged.push(id),
            // Not acknowledged: GitHub redelivers it.
            _ => redeliver.push(id),
        }
    }
    let before_restart = github
        .standin
        .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/issues/1/comments"))
        .len();
    assert!(
        before_restart >= IN_FLIGHT,
        "the cut-off commands had posted their progress comments"
    );

    let env = pod.api.env.clone();
    pod.api = Api::start(BIN, env).await;
    let base = pod.api.url("");
    for (id, body) in &deliveries {
        let answer = deliver(&http, &base, id, body).await;
        if redeliver.contains(id) {
            assert!(
                matches!(answer.as_ref(), Some((200, s)) if s == "ok" || s == "duplicate"),
                "{id}: {answer:?}"
            );
        } else {
            // Acknowledged before the kill: stored, so a redelivery is
            // acknowledged as a duplicate (2xx, or GitHub would count it failed).
            assert_eq!(answer, Some((200, "duplicate".to_string())), "{id}");
        }
    }

    // Every delivery is answered exactly once: one reply comment per command,
    // each edited from "working" to its plan.
    let bot = |g: &GitHub| {
        g.standin
            .comments(OWNER, REPO, 1)
            .into_iter()
            .filter(|(_, _, author)| author.ends_with("[bot]"))
            .collect::<Vec<_>>()
    };
    assert!(
        penguin_test_support::eventually(Duration::from_secs(60), || {
            let replies = bot(github);
            replies.len() >= BURST as usize
                && replies
                    .iter()
                    .all(|(_, body, _)| !body.contains("Working on"))
        })
        .await,
        "not every delivery was answered: {:#?}\n{}",
        bot(github),
        pod.api.process.logs()
    );
    let store = Store::open(&pod.api.data).await.unwrap();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(10), || {
            deliveries.iter().all(|(id, _)| {
                futures::executor::block_on(store.get_delivery(id))
                    .is_ok_and(|d| d.state == DeliveryState::Done)
            })
        })
        .await,
        "deliveries not all done"
    );
    let replies = bot(github);
    assert_eq!(replies.len(), BURST as usize, "{replies:#?}");
    let created = github
        .standin
        .calls_to("POST", &format!("/repos/{OWNER}/{REPO}/issues/1/comments"));
    assert_eq!(
        created.len(),
        BURST as usize,
        "a progress comment was created twice"
    );
    let resumed = replies
        .iter()
        .filter(|(id, _, _)| {
            github
                .standin
                .calls_to(
                    "PATCH",
                    &format!("/repos/{OWNER}/{REPO}/issues/comments/{id}"),
                )
                .iter()
                .any(|c| c.body.to_string().contains("resumed after a restart"))
        })
        .count();
    assert_eq!(resumed, IN_FLIGHT, "the cut-off commands resume in place");
    // One 👀 per comment, and one task per delivery.
    for i in 0..BURST {
        let reactions = github.standin.calls_to(
            "POST",
            &format!(
                "/repos/{OWNER}/{REPO}/issues/comments/{}/reactions",
                50_000 + i
            ),
        );
        assert_eq!(reactions.len(), 1, "comment {}", 50_000 + i);
    }
    let tasks = store.list_tasks(500).await.unwrap();
    assert_eq!(
        tasks.iter().filter(|t| t.name == "github:plan").count(),
        BURST as usize
    );
}
