//! The pod as it runs: penguin-tokenator and penguin-api side by side as
//! processes, sharing the socket and the credentials file, against the
//! GitHub and model stand-ins.

use llm_standin::Reply;
use penguin_test_support::{
    api::KEY,
    binaries::workspace_binary,
    pod::Pod,
    runner::{runner_user, TestRunner},
    GitHub,
};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_sees_the_tokenator_and_the_agent_never_reads_its_secrets() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    // The shared volume sits inside the workspace: the policy must still keep the agent out.
    let pod = Pod::start(
        workspace_binary("penguin-tokenator"),
        workspace_binary("penguin-api"),
        github,
        "workspace/run",
        |_, _| {},
    )
    .await;
    let credentials = &pod.tokenator.credentials;
    let token = std::fs::read_to_string(credentials).unwrap();
    let token = token
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let (llm, http, base) = (&pod.llm, &pod.api.http, pod.api.url(""));

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_run_command_runs_in_penguin_runner_away_from_the_pods_secrets() {
    let runner = TestRunner::start(&[]).await;
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let addr = runner.addr();
    let pod = Pod::start(
        workspace_binary("penguin-tokenator"),
        workspace_binary("penguin-api"),
        github,
        "run",
        move |env, _| {
            env.insert("PENGUIN_RUNNER".into(), "remote".into());
            env.insert("PENGUIN_RUNNER_ADDR".into(), addr);
            env.insert("PENGUIN_API_SECRET_CANARY".into(), "canary-3f9a".into());
            let config = std::path::Path::new(&env["PENGUIN_WORKSPACE"]).join(".penguin");
            std::fs::create_dir_all(&config).unwrap();
            std::fs::write(
                config.join("config.yml"),
                "security:\n  capabilities: { shell: allow }\n",
            )
            .unwrap();
        },
    )
    .await;
    let health: Value = pod
        .api
        .http
        .get(pod.api.url("/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["components"]["runner"],
        json!({"kind": "remote", "status": "serving"}),
        "{health}"
    );
    let credentials = pod.tokenator.credentials.display().to_string();
    let socket = pod.run.join("tokenator.sock").display().to_string();
    std::fs::write(
        pod.api.env["PENGUIN_WORKSPACE"].clone() + "/hello.txt",
        "from the workspace\n",
    )
    .unwrap();
    let script = format!(
        "echo pwd=$PWD; cat hello.txt; cat {credentials} || echo creds-refused; \
         test -S {socket} && test -w {socket} && echo socket-open || echo socket-refused; \
         cat /proc/{api_pid}/environ 2>/dev/null | tr '\\0' '\\n' | grep -c CANARY || echo environ-refused; echo made > out.txt",
        api_pid = pod.api.process.pid().unwrap()
    );
    pod.llm.push_reply(Reply::ToolCalls(vec![(
        "run_command".into(),
        json!({ "command": script }),
    )]));
    pod.llm.push_reply(Reply::Text("done".into()));
    let answer: Value = pod
        .api
        .http
        .post(pod.api.url("/api/v1/tasks/execute-sync"))
        .bearer_auth(KEY)
        .json(&json!({"name": "probe", "description": "look around"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = answer["action_results"][0]["result"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let work = runner.work_dir.display().to_string();
    assert!(result.contains(&format!("pwd={work}/job-")), "{answer}");
    assert!(result.contains("from the workspace"), "{answer}");
    // Processes on one host are kept apart by user: the runner runs as
    // another user than the pod only when the tests run as root (as on CI);
    // the container tests check the same from inside the runner container.
    if runner_user().is_some() {
        assert!(result.contains("creds-refused"), "{answer}");
        assert!(result.contains("socket-refused"), "{answer}");
        assert!(result.contains("environ-refused"), "{answer}");
    }
    assert!(!result.contains("canary-3f9a"), "{answer}");
    // The command's file came back to the task's scratch copy, not the real workspace.
    assert!(
        !std::path::Path::new(&(pod.api.env["PENGUIN_WORKSPACE"].clone() + "/out.txt")).exists()
    );
}
