//! Penguin's own clients against penguin-api over real sockets: the web UI's
//! chat stream with a conversation id it chose, every failing turn ending
//! with an `error` frame, conversation history with filters and cursor
//! pages, the agents routes, and `/health` under a full task pool.

use futures::{SinkExt, StreamExt};
use llm_standin::{LlmStandIn, Reply};
use penguin_test_support::api::{self, error_of, Api};
use serde_json::{json, Value};
use std::{collections::HashSet, time::Duration};
use tokio_tungstenite::tungstenite::Message;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame, skipping pings.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("a frame within 15 s: the turn never ended");
        match message {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("the socket closed: {other:?}"),
        }
    }
}

/// Sends `request` and reads the turn's frames up to and including the one
/// that ends it (`complete` or `error`), as a client waiting to stop does.
async fn turn(socket: &mut Socket, request: &str) -> Vec<Value> {
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        let end = matches!(frame["event"].as_str(), Some("complete" | "error"));
        frames.push(frame);
        if end {
            return frames;
        }
    }
}

fn events(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["event"].as_str().unwrap())
        .collect()
}

/// Asserts the error frame carries the common error object and returns it.
fn error_data(frame: &Value) -> &Value {
    assert_eq!(frame["event"], "error", "{frame}");
    let data = &frame["data"];
    for field in ["code", "message", "recoverable", "suggested_action"] {
        assert!(!data[field].is_null(), "{field} missing: {frame}");
    }
    data
}

#[tokio::test]
async fn the_web_uis_stream_flow_creates_its_conversation_and_ends_with_complete() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    let mut socket = api.websocket("/api/v1/chat/stream").await;

    // Exactly what Penguin's web UI sends: an id it chose, reasoning asked for.
    let frames = turn(
        &mut socket,
        r#"{"text": "Hello from the UI", "conversation_id": "test-1764650000", "include_reasoning": true}"#,
    )
    .await;
    let names = events(&frames);
    assert_eq!(names.first(), Some(&"start"), "{frames:?}");
    assert_eq!(names.last(), Some(&"complete"), "{frames:?}");
    assert!(names[1..names.len() - 1].iter().all(|e| *e == "token"));
    assert_eq!(frames[0]["data"]["conversation_id"], "test-1764650000");
    let complete = &frames.last().unwrap()["data"];
    assert_eq!(
        complete["response"],
        "Penguin stand-in reply to: Hello from the UI"
    );
    assert_eq!(complete["conversation_id"], "test-1764650000");
    assert_eq!(complete["aborted"], false);
    assert_eq!(complete["reasoning"], "");
    let tokens: String = frames
        .iter()
        .filter(|f| f["event"] == "token")
        .map(|f| f["data"]["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, complete["response"].as_str().unwrap());

    // The conversation exists under that id, with both messages.
    let (status, conversation) = api.get("/api/v1/conversations/test-1764650000").await;
    assert_eq!(status, 200, "{conversation}");
    let messages = conversation["messages"].as_array().unwrap();
    let roles: Vec<_> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant"]);
    assert_eq!(messages[0]["content"], "Hello from the UI");
    assert_eq!(conversation["title"], "Hello from the UI");
    let (_, list) = api.get("/api/v1/conversations").await;
    assert_eq!(list["conversations"][0]["id"], "test-1764650000");

    // The next message continues it, history and all; without
    // include_reasoning the answer carries no reasoning.
    let frames = turn(
        &mut socket,
        r#"{"text": "And a follow-up", "conversation_id": "test-1764650000"}"#,
    )
    .await;
    assert_eq!(events(&frames).last(), Some(&"complete"));
    assert!(frames.last().unwrap()["data"].get("reasoning").is_none());
    let sent = llm.requests().last().unwrap().clone();
    let contents: Vec<_> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents[0], "Hello from the UI");
    assert_eq!(contents.last().unwrap(), "And a follow-up");
    let (_, conversation) = api.get("/api/v1/conversations/test-1764650000").await;
    assert_eq!(conversation["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn every_failing_stream_turn_ends_with_an_error_frame_and_the_socket_stays_usable() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    let mut socket = api.websocket("/api/v1/chat/stream").await;

    // A refused conversation id: only the error frame, which says why.
    for (id, why) in [
        ("has space", "' '"),
        ("../etc/passwd", "'/'"),
        (&"x".repeat(129) as &str, "at most 128"),
    ] {
        let request = json!({"text": "hi", "conversation_id": id}).to_string();
        let frames = turn(&mut socket, &request).await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        let error = error_data(&frames[0]);
        assert_eq!(error["code"], "INVALID_CONVERSATION_ID");
        assert_eq!(error["recoverable"], false);
        assert!(
            error["message"].as_str().unwrap().contains(why),
            "{id:?}: {error}"
        );
    }
    // Penguin's session_id is checked the same way.
    let frames = turn(&mut socket, r#"{"text": "hi", "session_id": "a b"}"#).await;
    assert_eq!(error_data(&frames[0])["code"], "INVALID_CONVERSATION_ID");
    // Malformed JSON, the wrong shape, an unknown agent.
    let frames = turn(&mut socket, "{not json").await;
    assert_eq!(error_data(&frames[0])["code"], "BAD_REQUEST");
    let frames = turn(&mut socket, r#"{"txt": "typo"}"#).await;
    assert_eq!(error_data(&frames[0])["code"], "VALIDATION_ERROR");
    let frames = turn(&mut socket, r#"{"text": "hi", "agent_id": "helper"}"#).await;
    let error = error_data(&frames[0]);
    assert_eq!(error["code"], "AGENT_NOT_FOUND");
    assert_eq!(error["details"]["agent_id"], "helper");
    // None of these reached the model or created anything.
    assert!(llm.requests().is_empty());
    let (_, list) = api.get("/api/v1/conversations").await;
    assert!(list["conversations"].as_array().unwrap().is_empty());

    // The socket still answers a valid message.
    let frames = turn(
        &mut socket,
        r#"{"text": "still here", "conversation_id": "ok-1"}"#,
    )
    .await;
    assert_eq!(events(&frames).last(), Some(&"complete"), "{frames:?}");

    // A failing model ends the turn with an error frame, after `start`.
    llm.push_reply(Reply::Error {
        status: 500,
        message: "model overloaded".into(),
    });
    let frames = turn(
        &mut socket,
        r#"{"text": "fail please", "conversation_id": "ok-1"}"#,
    )
    .await;
    assert_eq!(events(&frames), ["start", "error"], "{frames:?}");
    let error = error_data(&frames[1]);
    assert_eq!(error["code"], "UPSTREAM_ERROR");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("model overloaded"));
    // A stream cut off half-way too.
    llm.push_reply(Reply::Disconnect {
        after_chunks: 2,
        text: "a partial answer that never finishes".into(),
    });
    let frames = turn(
        &mut socket,
        r#"{"text": "and again", "conversation_id": "ok-1"}"#,
    )
    .await;
    assert_eq!(events(&frames).first(), Some(&"start"));
    assert_eq!(events(&frames).last(), Some(&"error"), "{frames:?}");
    error_data(frames.last().unwrap());

    // Failed turns stored nothing; the socket still works and the
    // conversation continues.
    let frames = turn(
        &mut socket,
        r#"{"text": "recovered?", "conversation_id": "ok-1"}"#,
    )
    .await;
    assert_eq!(events(&frames).last(), Some(&"complete"), "{frames:?}");
    let (_, conversation) = api.get("/api/v1/conversations/ok-1").await;
    let contents: Vec<_> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "still here",
            "Penguin stand-in reply to: still here",
            "recovered?",
            "Penguin stand-in reply to: recovered?"
        ]
    );
}

#[tokio::test]
async fn http_turns_and_creates_take_client_chosen_ids() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;

    let (status, body) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "first", "conversation_id": "ui:chat.42", "include_reasoning": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation_id"], "ui:chat.42");
    assert_eq!(body["reasoning"], "");
    let (status, body) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "second", "conversation_id": "ui:chat.42", "agent_id": "default"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("reasoning").is_none());
    let (_, conversation) = api.get("/api/v1/conversations/ui:chat.42").await;
    assert_eq!(conversation["messages"].as_array().unwrap().len(), 4);

    // Refused ids: 400 with the reason, nothing created, the model not called.
    let calls = llm.requests().len();
    for (id, why) in [
        ("a b", "' '"),
        ("ünï", "'ü'"),
        (&"y".repeat(200) as &str, "at most 128"),
    ] {
        let (status, body) = api
            .post(
                "/api/v1/chat/message",
                json!({"text": "x", "conversation_id": id}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let error = error_of(&body);
        assert_eq!(error["code"], "INVALID_CONVERSATION_ID");
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
        assert!(error["suggested_action"]
            .as_str()
            .unwrap()
            .contains("1-128"));
    }
    let (status, body) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "x", "agent_id": "helper"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_of(&body)["code"], "AGENT_NOT_FOUND");
    assert_eq!(llm.requests().len(), calls);
    let (_, list) = api.get("/api/v1/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);

    // conversations/create with an id: created once, then 409.
    let (status, body) = api
        .post(
            "/api/v1/conversations/create",
            json!({"id": "made-by-client", "name": "Mine"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation_id"], "made-by-client");
    let (_, got) = api.get("/api/v1/conversations/made-by-client").await;
    assert_eq!(got["title"], "Mine");
    let (status, body) = api
        .post(
            "/api/v1/conversations/create",
            json!({"id": "made-by-client"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_of(&body)["code"], "CONFLICT");
    let (status, body) = api
        .post("/api/v1/conversations/create", json!({"id": "no/slash"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body)["code"], "INVALID_CONVERSATION_ID");
    // …and chat continues the one created.
    let (status, _) = api
        .post(
            "/api/v1/chat/message",
            json!({"text": "hello", "conversation_id": "made-by-client"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, got) = api.get("/api/v1/conversations/made-by-client").await;
    assert_eq!(got["messages"].as_array().unwrap().len(), 2);

    // Two first uses of one new id at once: neither fails, nothing is lost.
    let texts: Vec<String> = (0..6).map(|n| format!("racer {n}")).collect();
    let answers = futures::future::join_all(texts.iter().map(|text| {
        api.post(
            "/api/v1/chat/message",
            json!({"text": text, "conversation_id": "raced-new-id"}),
        )
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["conversation_id"], "raced-new-id");
    }
    let (_, got) = api.get("/api/v1/conversations/raced-new-id").await;
    let stored: HashSet<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(stored, texts.iter().map(String::as_str).collect());
    assert_eq!(got["messages"].as_array().unwrap().len(), 12);
}

/// Walks the history with `query` page by page and returns every message,
/// oldest first, checking each page on the way.
async fn walk(api: &Api, id: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/conversations/{id}/history?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["conversation_id"], id);
        let messages = page["messages"].as_array().unwrap().clone();
        assert!(
            messages.len() <= limit,
            "{path}: {} messages",
            messages.len()
        );
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{path}: {seqs:?}");
        // Pages go back in time: this one ends before the previous began.
        if let (Some(last), Some(first)) = (messages.last(), all.first()) {
            assert!(last["seq"].as_u64() < first["seq"].as_u64());
        }
        let mut older = messages;
        older.extend(all);
        all = older;
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["has_more"], true);
                assert_eq!(page["messages"].as_array().unwrap().len(), limit);
                cursor = Some(next.to_string());
            }
            None => {
                assert_eq!(page["has_more"], false);
                return all;
            }
        }
    }
    panic!("more than 100 pages");
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn history_filters_and_cursor_pages_miss_nothing_and_repeat_nothing() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), Some(&llm))).await;
    const ID: &str = "history-test";
    // 11 turns; every third brings context, stored as a system message.
    let mut expected = Vec::new();
    for n in 0..11 {
        let mut request = json!({"text": format!("question {n}"), "conversation_id": ID});
        if n % 3 == 0 {
            request["context"] = json!({"turn": n});
            expected.push(format!("Context: {{\"turn\":{n}}}"));
        }
        expected.push(format!("question {n}"));
        expected.push(format!("Penguin stand-in reply to: question {n}"));
        let (status, body) = api.post("/api/v1/chat/message", request).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(expected.len(), 26);
    let without_system: Vec<String> = expected
        .iter()
        .filter(|c| !c.starts_with("Context:"))
        .cloned()
        .collect();

    // Penguin's shape; system messages included by default, as in Penguin.
    let (status, all) = api
        .get(&format!("/api/v1/conversations/{ID}/history"))
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["conversation_id"], ID);
    assert_eq!(all["has_more"], false);
    assert!(all["next_cursor"].is_null());
    let messages = all["messages"].as_array().unwrap();
    assert_eq!(contents(messages), expected);
    let context = &messages[0];
    assert_eq!(context["role"], "system");
    assert_eq!(context["category"], "CONTEXT");
    let user = &messages[1];
    for (field, want) in [
        ("role", json!("user")),
        ("category", json!("DIALOG")),
        ("agent_id", json!("default")),
        ("message_type", json!("message")),
        ("recipient_id", Value::Null),
    ] {
        assert_eq!(user[field], want, "{field}: {user}");
    }
    assert!(
        user["id"].is_string() && user["timestamp"].is_string() && user["metadata"].is_object()
    );
    // The context reached the model in its turn, as a system message.
    let first_request = &llm.requests()[0];
    assert_eq!(first_request["messages"][0]["role"], "system");

    // include_system toggles the system messages.
    let (_, page) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?include_system=false"
        ))
        .await;
    assert_eq!(
        contents(page["messages"].as_array().unwrap()),
        without_system
    );
    let (_, page) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?include_system=true"
        ))
        .await;
    assert_eq!(contents(page["messages"].as_array().unwrap()), expected);

    // Every page walk returns everything once, in order, limits respected.
    for limit in [1, 4, 5, 26, 1000] {
        let got = walk(&api, ID, "include_system=true", limit).await;
        assert_eq!(contents(&got), expected, "limit {limit}");
        let ids: HashSet<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), got.len(), "duplicates at limit {limit}");
    }
    for limit in [3, 7] {
        let got = walk(&api, ID, "include_system=false", limit).await;
        assert_eq!(contents(&got), without_system, "limit {limit}");
    }
    // The first page is the most recent messages, like Penguin's `limit`.
    let (_, page) = api
        .get(&format!("/api/v1/conversations/{ID}/history?limit=2"))
        .await;
    assert_eq!(
        contents(page["messages"].as_array().unwrap()),
        expected[24..]
    );

    // A turn added mid-walk does not shift the older pages.
    let (_, first) = api
        .get(&format!("/api/v1/conversations/{ID}/history?limit=6"))
        .await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    api.post(
        "/api/v1/chat/message",
        json!({"text": "late arrival", "conversation_id": ID}),
    )
    .await;
    let (_, second) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?limit=6&cursor={cursor}"
        ))
        .await;
    assert_eq!(
        contents(second["messages"].as_array().unwrap()),
        expected[14..20]
    );

    // message_type and agent_id filters.
    let (_, page) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?message_type=message&limit=1000"
        ))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 28);
    for kind in ["action", "status"] {
        let (status, page) = api
            .get(&format!(
                "/api/v1/conversations/{ID}/history?message_type={kind}"
            ))
            .await;
        assert_eq!(status, 200);
        assert!(
            page["messages"].as_array().unwrap().is_empty(),
            "{kind}: {page}"
        );
    }
    let (_, page) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?agent_id=default&include_system=false"
        ))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 24);
    let (status, page) = api
        .get(&format!(
            "/api/v1/conversations/{ID}/history?agent_id=helper"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(page["messages"].as_array().unwrap().is_empty());

    // Bad parameters: 400 naming them.
    for (query, code, parameter) in [
        ("limit=0", "BAD_REQUEST", Some("limit")),
        ("limit=1001", "BAD_REQUEST", Some("limit")),
        ("limit=ten", "BAD_REQUEST", Some("limit")),
        (
            "include_system=maybe",
            "BAD_REQUEST",
            Some("include_system"),
        ),
        ("message_type=shout", "BAD_REQUEST", Some("message_type")),
        ("cursor=not-a-cursor", "INVALID_CURSOR", Some("cursor")),
        ("agent_id=Not%20An%20Id", "INVALID_AGENT_ID", None),
    ] {
        let (status, body) = api
            .get(&format!("/api/v1/conversations/{ID}/history?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = error_of(&body);
        assert_eq!(error["code"], code, "{query}");
        if let Some(parameter) = parameter {
            assert_eq!(error["details"]["parameter"], parameter, "{query}");
        }
    }
    let (status, body) = api.get("/api/v1/conversations/never-made/history").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_of(&body)["code"], "NOT_FOUND");
    let (status, body) = api.get("/api/v1/conversations/bad%20id/history").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body)["code"], "INVALID_CONVERSATION_ID");
}

#[tokio::test]
async fn agents_describe_the_running_agent_and_other_ids_are_agent_not_found() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    // A policy of its own, to see the profile follows the configuration.
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "security:\n  mode: workspace\n  capabilities:\n    shell: deny\n    repo_write: allow\n  denied_paths: [\"*.key\"]\n",
    )
    .unwrap();
    env.insert("PENGUIN_CONFIG_PATH".into(), config.display().to_string());
    let api = Api::start(BIN, env).await;

    let (status, roster) = api.get("/api/v1/agents").await;
    assert_eq!(status, 200, "{roster}");
    let roster = roster.as_array().expect("Penguin's roster is a JSON array");
    assert_eq!(roster.len(), 1);
    let agent = &roster[0];
    assert_eq!(agent["id"], "default");
    assert_eq!(agent["active"], true);
    assert_eq!(agent["paused"], false);
    assert_eq!(agent["is_sub_agent"], false);
    assert_eq!(agent["model"]["model"], "standin-model");
    assert!(agent["model"]["provider"].is_string());
    let tools: Vec<&str> = agent["default_tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tool in ["list_files", "read_file", "search", "edit_file", "finish"] {
        assert!(tools.contains(&tool), "{tool} missing: {tools:?}");
    }
    // The shell is denied, so its tool is not offered.
    assert!(!tools.contains(&"run_command"), "{tools:?}");
    assert_eq!(agent["tools"].as_array().unwrap().len(), tools.len());
    let policy = &agent["policy"];
    assert_eq!(policy["mode"], "workspace");
    assert_eq!(policy["capabilities"]["shell"], "deny");
    assert_eq!(policy["capabilities"]["repo_write"], "allow");
    assert_eq!(policy["capabilities"]["network"], "deny");
    assert!(policy["denied_paths"]
        .as_array()
        .unwrap()
        .contains(&json!("*.key")));
    assert!(agent["permission"]
        .as_array()
        .unwrap()
        .contains(&json!({"permission": "shell", "pattern": "*", "action": "deny"})));
    assert_eq!(agent["options"]["security_mode"], "workspace");

    // One agent by id; it follows a model switch.
    let (status, one) = api.get("/api/v1/agents/default").await;
    assert_eq!(status, 200);
    assert_eq!(&one, agent);
    let (status, _) = api
        .post(
            "/api/v1/models/switch",
            json!({"model_id": "standin-vision"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, one) = api.get("/api/v1/agents/default").await;
    assert_eq!(one["model"]["model"], "standin-vision");

    // Penguin's simple shape.
    let (_, simple) = api.get("/api/v1/agents?simple=true").await;
    assert_eq!(
        simple,
        json!({"agents": [{"agent_id": "default", "conversation_id": null}]})
    );
    api.post(
        "/api/v1/chat/message",
        json!({"text": "hi", "conversation_id": "latest-one"}),
    )
    .await;
    let (_, simple) = api.get("/api/v1/agents?simple=1").await;
    assert_eq!(simple["agents"][0]["conversation_id"], "latest-one");
    let (status, body) = api.get("/api/v1/agents?simple=perhaps").await;
    assert_eq!(status, 400, "{body}");

    // Another agent: 404 AGENT_NOT_FOUND in Penguin's error shape.
    let (status, body) = api.get("/api/v1/agents/helper").await;
    assert_eq!(status, 404, "{body}");
    let error = error_of(&body);
    assert_eq!(error["code"], "AGENT_NOT_FOUND");
    assert_eq!(error["message"], "Agent 'helper' not found");
    assert_eq!(error["recoverable"], false);
    assert_eq!(error["details"]["agent_id"], "helper");
    // Not an agent id at all: 400.
    let (status, body) = api.get("/api/v1/agents/Not%20An%20Id").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body)["code"], "INVALID_AGENT_ID");
}

#[tokio::test]
async fn health_is_at_capacity_while_the_task_pool_is_full_and_healthy_after() {
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("PENGUIN_MAX_CONCURRENT_TASKS".into(), "1".into());
    env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "4".into());
    let api = Api::start(BIN, env).await;
    let (status, health) = api.get("/api/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["status_reasons"], json!([]));
    for field in ["cpu_percent", "memory_percent", "memory_limit_mb"] {
        assert!(
            health["resource_usage"][field].is_number(),
            "{field}: {health}"
        );
    }

    // The one worker hangs on the model.
    llm.push_reply(Reply::Hang);
    let (status, _) = api
        .post("/api/v1/tasks/execute", json!({"name": "busy"}))
        .await;
    assert_eq!(status, 200);
    let mut full = Value::Null;
    for _ in 0..40 {
        let (status, health) = api.get("/api/v1/health").await;
        assert_eq!(status, 200, "still 200 when full");
        if health["status"] == "at_capacity" {
            full = health;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(full["status"], "at_capacity", "never at capacity");
    assert_eq!(full["agent_capacity"]["available"], 0);
    assert!(full["status_reasons"][0]
        .as_str()
        .unwrap()
        .contains("task workers"));

    // The model times out, the worker is free again.
    let mut status_now = Value::Null;
    for _ in 0..100 {
        let (_, health) = api.get("/api/v1/health").await;
        status_now = health["status"].clone();
        if status_now == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_now, "healthy");
}
