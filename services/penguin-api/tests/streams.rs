//! Tasks and WebSocket streams end to end: the agent loop with real tools
//! against the LLM stand-in, the chat and task streams with a real client,
//! cancellation on disconnect, and tasks cut off by a crash.

use futures::{SinkExt, StreamExt};
use llm_standin::{LlmStandIn, Reply};
use penguin_test_support::api::{self, error_of, Api};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame (skipping pings), or the close frame's code.
async fn next_frame(socket: &mut Socket) -> Result<Value, Option<CloseCode>> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("a frame within 15 s");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| f.code)),
            Some(Ok(_)) => continue,
            _ => return Err(None),
        }
    }
}

#[tokio::test]
async fn execute_sync_runs_the_agent_with_tools_inside_the_policy() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    llm.push_reply(Reply::ToolCalls(vec![("list_files".into(), json!({}))]));
    llm.push_reply(Reply::ToolCalls(vec![
        ("read_file".into(), json!({"path": "README.md"})),
        ("read_file".into(), json!({"path": ".env"})),
        ("read_file".into(), json!({"path": "../../etc/passwd"})),
    ]));
    llm.push_reply(Reply::Text("The repository is a demo.".into()));
    let (status, body) = api
        .post(
            "/api/v1/tasks/execute-sync",
            json!({"name": "describe", "description": "Describe the repository"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["response"], "The repository is a demo.");
    assert_eq!(body["iterations"], 3);
    assert!(body["execution_time"].as_f64().unwrap() >= 0.0);
    let results = body["action_results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "completed");
    assert!(results[0]["result"].as_str().unwrap().contains("README.md"));
    assert!(
        !results[0]["result"].as_str().unwrap().contains(".env"),
        "denied files are not even listed"
    );
    assert!(results[1]["result"]
        .as_str()
        .unwrap()
        .contains("A demo repository"));
    assert_eq!(results[2]["status"], "denied");
    assert!(!results[2]["result"]
        .as_str()
        .unwrap()
        .contains("do-not-read"));
    assert_eq!(results[3]["status"], "denied");
    // The model saw the tool results, never the secret.
    let third = llm.requests()[2].to_string();
    assert!(third.contains("A demo repository") && !third.contains("do-not-read"));

    let task_id = body["task_metadata"]["task_id"].as_str().unwrap();
    let (status, task) = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(task["state"], "completed");
    assert!(task["log"].as_array().unwrap().len() >= 3);
    assert!(task["started_at"].is_string() && task["finished_at"].is_string());

    let (status, body) = api
        .post("/api/v1/tasks/execute-sync", json!({"name": ""}))
        .await;
    assert_eq!(status, 422);
    assert!(error_of(&body)["message"]
        .as_str()
        .unwrap()
        .contains("Task name is required."));
    let (status, _) = api.get("/api/v1/tasks/task_missing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn background_tasks_report_their_state_and_iteration_caps_hold() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    for _ in 0..10 {
        llm.push_reply(Reply::ToolCalls(vec![("list_files".into(), json!({}))]));
    }
    let (status, started) = api
        .post(
            "/api/v1/tasks/execute",
            json!({"name": "loop", "max_iterations": 2}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(started["status"], "started");
    let task_id = started["task_id"].as_str().unwrap().to_string();
    let mut state = Value::Null;
    for _ in 0..200 {
        state = api.get(&format!("/api/v1/tasks/{task_id}")).await.1;
        if state["finished_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "failed", "{state}");
    assert_eq!(state["result"]["iterations"], 2);
    assert_eq!(state["result"]["status"], "iteration_limit");
}

#[tokio::test]
async fn the_task_stream_sends_every_event_and_refuses_a_nameless_task() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;

    let mut socket = api.websocket("/api/v1/tasks/stream").await;
    socket
        .send(Message::Text(
            json!({"description": "no name"}).to_string().into(),
        ))
        .await
        .unwrap();
    let error = next_frame(&mut socket).await.unwrap();
    assert_eq!(
        error,
        json!({"event": "error", "data": {"message": "Task name is required."}})
    );
    assert_eq!(
        next_frame(&mut socket).await.unwrap_err(),
        Some(CloseCode::Policy)
    );

    llm.push_reply(Reply::ToolCalls(vec![(
        "read_file".into(),
        json!({"path": "src/main.rs"}),
    )]));
    llm.push_reply(Reply::Text("Done reading.".into()));
    let mut socket = api.websocket("/api/v1/tasks/stream").await;
    socket
        .send(Message::Text(
            json!({"name": "read", "description": "read main"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        match next_frame(&mut socket).await {
            Ok(frame) => events.push(frame),
            Err(code) => {
                assert_eq!(code, Some(CloseCode::Normal));
                break;
            }
        }
    }
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"task_started"));
    assert_eq!(names.last(), Some(&"task_completed"));
    assert!(names.contains(&"task_progress"), "{names:?}");
    assert!(
        names.contains(&"message") || names.contains(&"tool"),
        "{names:?}"
    );
    let done = &events.last().unwrap()["data"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["response"], "Done reading.");
    assert_eq!(done["action_results"][0]["status"], "completed");
}

#[tokio::test]
async fn the_chat_stream_serves_many_requests_per_connection() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    let mut socket = api.websocket("/api/v1/chat/stream").await;
    let long = "word ".repeat(200);
    llm.push_reply(Reply::Text(long.clone()));
    let mut conversation = None;
    for text in ["first question", "second question"] {
        let mut request = json!({"text": text});
        if let Some(id) = &conversation {
            request["conversation_id"] = json!(id);
        }
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        let start = next_frame(&mut socket).await.unwrap();
        assert_eq!(start["event"], "start");
        conversation = Some(
            start["data"]["conversation_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let mut tokens = String::new();
        let mut token_frames = 0;
        let complete = loop {
            let frame = next_frame(&mut socket).await.unwrap();
            match frame["event"].as_str().unwrap() {
                "token" => {
                    tokens.push_str(frame["data"]["token"].as_str().unwrap());
                    token_frames += 1;
                }
                "complete" => break frame,
                other => panic!("unexpected {other}: {frame}"),
            }
        };
        assert_eq!(complete["data"]["response"].as_str().unwrap(), tokens);
        assert_eq!(complete["data"]["aborted"], false);
        if text == "first question" {
            assert_eq!(tokens, long);
            // ~3-8 byte upstream chunks are coalesced into far fewer frames.
            assert!(
                token_frames < 100,
                "{token_frames} token frames for 1000 bytes"
            );
        } else {
            assert_eq!(tokens, "Penguin stand-in reply to: second question");
        }
    }
    let (_, got) = api
        .get(&format!("/api/v1/conversations/{}", conversation.unwrap()))
        .await;
    assert_eq!(got["messages"].as_array().unwrap().len(), 4);

    // A bad request gets an error frame and the connection stays usable.
    socket
        .send(Message::Text("{bad json".into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await.unwrap()["event"], "error");
    socket
        .send(Message::Text(
            json!({"text": "still here"}).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await.unwrap()["event"], "start");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let llm = LlmStandIn::start().await.unwrap();
    llm.set_chunk_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    llm.push_reply(Reply::Text("slow ".repeat(100)));
    let mut socket = api.websocket("/api/v1/chat/stream").await;
    socket
        .send(Message::Text(json!({"text": "go"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await.unwrap()["event"], "start");
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || llm.open_streams() == 1).await
    );
    drop(socket);
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || llm.open_streams() == 0).await,
        "the upstream stream was not cancelled"
    );
    // WebSockets are authenticated before the upgrade.
    let request = format!("ws://{}/api/v1/chat/stream", api.addr);
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_task_cut_off_by_a_crash_is_marked_interrupted() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "60".into());
    let mut api = Api::start(BIN, env.clone()).await;
    llm.push_reply(Reply::Hang);
    let (_, started) = api
        .post("/api/v1/tasks/execute", json!({"name": "stuck"}))
        .await;
    let task_id = started["task_id"].as_str().unwrap().to_string();
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || !llm.requests().is_empty())
            .await,
        "the task never called the model"
    );
    api.process.kill().await;
    let api = Api::start(BIN, env).await;
    let (_, task) = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(task["state"], "interrupted", "{task}");
    assert!(task["log"].to_string().contains("interrupted"));
}

#[tokio::test]
async fn sigterm_gives_running_tasks_the_grace_period_then_marks_them() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "60".into());
    env.insert("PENGUIN_SHUTDOWN_GRACE_SECS".into(), "1".into());
    let mut api = Api::start(BIN, env.clone()).await;
    llm.push_reply(Reply::Hang);
    // A synchronous caller is waiting on the task when SIGTERM arrives.
    let url = api.url("/api/v1/tasks/execute-sync");
    let waiting = api
        .http
        .post(url)
        .bearer_auth(api::KEY)
        .json(&json!({"name": "slow"}))
        .send();
    let waiting = tokio::spawn(waiting);
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || !llm.requests().is_empty())
            .await
    );
    let started = std::time::Instant::now();
    assert_eq!(
        api.process.terminate(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        api.process.logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The caller got an answer, not a dropped connection.
    let answer = waiting.await.unwrap().expect("answered before exit");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "interrupted", "{body}");

    let api = Api::start(BIN, env).await;
    let task_id = body["task_metadata"]["task_id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/tasks/{task_id}")).await.1["state"],
        "interrupted"
    );
}

#[tokio::test]
async fn an_agentic_chat_turn_streams_progress_and_tool_frames() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    llm.push_reply(Reply::ToolCalls(vec![(
        "read_file".into(),
        json!({"path": "README.md"}),
    )]));
    llm.push_reply(Reply::Text("It is a demo repository.".into()));
    let mut socket = api.websocket("/api/v1/chat/stream").await;
    socket
        .send(Message::Text(
            json!({"text": "What is this repo?", "max_iterations": 4})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut names = Vec::new();
    let complete = loop {
        let frame = next_frame(&mut socket).await.unwrap();
        names.push(frame["event"].as_str().unwrap().to_string());
        if frame["event"] == "complete" {
            break frame;
        }
    };
    assert_eq!(names.first().map(String::as_str), Some("start"));
    assert!(names.iter().any(|n| n == "progress"), "{names:?}");
    assert!(names.iter().any(|n| n == "tool"), "{names:?}");
    assert_eq!(complete["data"]["response"], "It is a demo repository.");
    assert_eq!(complete["data"]["action_results"][0]["status"], "completed");
    assert!(complete["data"]["action_results"][0]["result"]
        .as_str()
        .unwrap()
        .contains("A demo repository"));

    // The same over POST: tool results come back as action_results.
    llm.push_reply(Reply::ToolCalls(vec![(
        "read_file".into(),
        json!({"path": ".env"}),
    )]));
    llm.push_reply(Reply::Text("I may not read it.".into()));
    let (status, body) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "show .env", "max_iterations": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_results"][0]["status"], "denied");
    assert_eq!(body["response"], "I may not read it.");
    assert!(!body.to_string().contains("do-not-read"));
}

/// A WebSocket handshake to `path` with extra `headers`: the socket, or the
/// refusal's status.
async fn handshake(api: &Api, path: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error};
    let mut request = format!("ws://{}{}", api.addr, path)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("{path}: {err}"),
    }
}

#[tokio::test]
async fn websocket_upgrades_from_a_foreign_origin_are_refused() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert(
        "PENGUIN_CORS_ORIGINS".into(),
        "https://penguin.example".into(),
    );
    let api = Api::start(BIN, env).await;
    // The victim's browser session.
    let r = api
        .http
        .post(api.url("/api/v1/auth/session"))
        .json(&json!({"token": api::KEY}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let own = format!("http://{}", api.addr);
    for path in ["/api/v1/chat/stream", "/api/v1/tasks/stream"] {
        // A page on a sibling subdomain (or anywhere else) riding the cookie.
        for foreign in [
            "https://evil.penguin.example",
            "https://penguin.example.evil",
            "http://127.0.0.1:1",
            "null",
        ] {
            assert_eq!(
                handshake(&api, path, &[("cookie", &cookie), ("origin", foreign)])
                    .await
                    .err(),
                Some(403),
                "{path} from {foreign}"
            );
        }
        let r = api
            .http
            .get(api.url(path))
            .header("cookie", &cookie)
            .header("origin", "https://evil.penguin.example")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_of(&body)["code"], "ORIGIN_NOT_ALLOWED");
        // A listed origin, the API's own, and clients sending no Origin are served.
        for headers in [
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "https://penguin.example"),
            ],
            vec![("cookie", cookie.as_str()), ("origin", own.as_str())],
            vec![("cookie", cookie.as_str())],
            vec![("x-api-key", api::KEY)],
            vec![("authorization", &*format!("Bearer {}", api::KEY))],
        ] {
            assert!(
                handshake(&api, path, &headers).await.is_ok(),
                "{path} with {headers:?}"
            );
        }
    }
    // Not a handshake: the common error shape, not a bare text rejection.
    let (status, body) = api.get("/api/v1/chat/stream").await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body)["code"], "WEBSOCKET_REQUIRED");
    // The allowed socket works.
    let mut socket = handshake(
        &api,
        "/api/v1/chat/stream",
        &[("cookie", &cookie), ("origin", "https://penguin.example")],
    )
    .await
    .unwrap();
    socket
        .send(Message::Text(json!({"text": "hi"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await.unwrap()["event"], "start");
}

#[tokio::test]
async fn an_agentic_chat_turn_is_refused_while_the_task_pool_is_full() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("PENGUIN_MAX_CONCURRENT_TASKS".into(), "1".into());
    env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "60".into());
    let api = Api::start(BIN, env).await;
    // The one worker is busy with a task.
    llm.push_reply(Reply::Hang);
    let (status, _) = api
        .post("/api/v1/tasks/execute", json!({"name": "busy"}))
        .await;
    assert_eq!(status, 200);
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || llm.requests().len() == 1)
            .await
    );
    // An agentic turn (it would run tools) is refused, over POST…
    let (status, body) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "read the repository", "max_iterations": 3}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let error = error_of(&body);
    assert_eq!(error["code"], "AT_CAPACITY");
    assert_eq!(error["recoverable"], true);
    // …and over the WebSocket, which stays usable.
    let mut socket = api.websocket("/api/v1/chat/stream").await;
    socket
        .send(Message::Text(
            json!({"text": "read the repository", "max_iterations": 2})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let frame = next_frame(&mut socket).await.unwrap();
    assert_eq!(frame["event"], "error", "{frame}");
    assert_eq!(frame["data"]["code"], "AT_CAPACITY");
    assert_eq!(frame["data"]["recoverable"], true);
    // A plain turn uses no tools and no worker.
    socket
        .send(Message::Text(json!({"text": "hello"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await.unwrap()["event"], "start");
    // The refused turns never reached the model.
    assert!(
        penguin_test_support::eventually(Duration::from_secs(5), || llm.requests().len() == 2)
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(llm.requests().len(), 2);
    let (_, info) = api.get("/api/v1/system/info").await;
    assert_eq!(info["task_manager"]["active"], 1, "{info}");
}
