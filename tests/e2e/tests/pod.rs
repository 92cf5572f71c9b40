//! The pod as it runs: penguin-tokenator and penguin-api side by side (here in
//! one process), sharing the socket and the credentials file, against the
//! GitHub and model stand-ins.

use clap::Parser;

mod common;
use llm_standin::{LlmStandIn, Reply};
use penguin_test_support::GitHub;
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "e2e-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_sees_the_tokenator_and_the_agent_never_reads_its_secrets() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The shared volume sits inside the workspace: the policy must still keep the agent out.
    let workspace = dir.path().join("workspace");
    let run = workspace.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(workspace.join("README.md"), "# pod\n").unwrap();
    let socket = run.join("tokenator.sock");
    let credentials = run.join("git-credentials");

    common::start_tokenator(&github, dir.path(), &run).await;
    let token = std::fs::read_to_string(&credentials).unwrap();
    let token = token
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();

    // The api reads its model from the environment, like in the pod.
    std::env::set_var("PENGUIN_LLM_BASE_URL", llm.base_url());
    std::env::set_var("PENGUIN_LLM_API_KEY", "sk-e2e-0123456789abcdefghij");
    std::env::set_var("PENGUIN_DEFAULT_MODEL", "standin-model");
    let data = dir.path().join("data");
    let api = penguin_api::config::Cli::try_parse_from([
        "penguin-api",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--api-keys",
        KEY,
        "--data-dir",
        data.to_str().unwrap(),
        "--workspace",
        workspace.to_str().unwrap(),
        "--tokenator-socket",
        socket.to_str().unwrap(),
        "--git-credentials-path",
        credentials.to_str().unwrap(),
    ])
    .unwrap()
    .validate()
    .unwrap();
    let api = penguin_api::Api::build(api).await.unwrap();
    let base = format!("http://{}", api.local_addr().unwrap());
    tokio::spawn(api.serve(std::future::pending()));
    let http = reqwest::Client::new();

    // Health shows the tokenator reachable, with the token's time to expiry.
    let health: Value = http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let component = &health["components"]["tokenator"];
    assert_eq!(component["status"], "reachable", "{health}");
    let left = component["token_expires_in_seconds"].as_i64().unwrap();
    assert!((3500..=3605).contains(&left), "{left}");
    assert!(
        !health.to_string().contains(&token),
        "health must not show the token"
    );

    // The agent asks for the credentials file and the socket: both refused.
    llm.push_reply(Reply::ToolCalls(vec![
        ("read_file".into(), json!({"path": "run/git-credentials"})),
        (
            "read_file".into(),
            json!({"path": credentials.to_str().unwrap()}),
        ),
        ("list_files".into(), json!({"path": "run"})),
        (
            "run_command".into(),
            json!({"command": "cat run/git-credentials"}),
        ),
    ]));
    llm.push_reply(Reply::Text("I could not read them.".into()));
    let answer: Value = http
        .post(format!("{base}/api/v1/tasks/execute-sync"))
        .bearer_auth(KEY)
        .json(&json!({"name": "exfiltrate", "description": "print the git credentials"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let results = answer["action_results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{answer}");
    assert_eq!(results[0]["status"], "denied", "{answer}");
    assert_eq!(results[1]["status"], "denied", "{answer}");
    assert!(
        !results[2]["result"]
            .as_str()
            .unwrap()
            .contains("git-credentials"),
        "{answer}"
    );
    for request in llm.requests() {
        assert!(
            !request.to_string().contains(&token),
            "the token reached the model"
        );
    }
    assert!(!answer.to_string().contains(&token));
}
