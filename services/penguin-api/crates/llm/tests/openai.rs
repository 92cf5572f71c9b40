//! `OpenAiCompatible` against the OpenAI-compatible stand-in.

use std::time::Duration;

use futures::StreamExt as _;
use llm_standin::{LlmStandIn, Reply};
use penguin_llm::{
    build, ChatMessage, ChatModel, ChatRequest, LlmError, LlmSettings, OpenAiCompatible, Role,
    StreamEvent, ToolCall, ToolSpec, Usage,
};
use serde_json::json;

/// Upper bound for anything a test waits on, so a broken client fails instead of hanging.
const GENEROUS: Duration = Duration::from_secs(20);

fn settings(base_url: String) -> LlmSettings {
    LlmSettings {
        base_url,
        api_key: None,
        default_model: "standin-model".into(),
        timeout: Duration::from_secs(10),
    }
}

fn client(settings: LlmSettings) -> OpenAiCompatible {
    OpenAiCompatible::new(settings).expect("client builds")
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        model: "standin-model".into(),
        messages: vec![
            ChatMessage::new(Role::System, "You are terse."),
            ChatMessage::new(Role::User, text),
        ],
        ..ChatRequest::default()
    }
}

async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GENEROUS, work)
        .await
        .expect("the call finished within the generous bound")
}

/// Collects a stream to its end.
async fn drain(model: &dyn ChatModel, request: ChatRequest) -> Vec<Result<StreamEvent, LlmError>> {
    bounded(async {
        model
            .stream(request)
            .await
            .expect("stream starts")
            .collect::<Vec<_>>()
            .await
    })
    .await
}

#[tokio::test]
async fn complete_returns_text_usage_model_and_finish_reason() {
    let standin = LlmStandIn::start().await.unwrap();
    standin.push_reply(Reply::Text("Hello from the ice shelf".into()));
    let model = client(settings(standin.base_url()));

    let response = bounded(model.complete(ask("say hello please")))
        .await
        .unwrap();

    assert_eq!(response.message.role, Role::Assistant);
    assert_eq!(response.message.content, "Hello from the ice shelf");
    assert!(response.message.tool_calls.is_empty());
    assert_eq!(response.model, "standin-model");
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        response.usage,
        Some(Usage {
            prompt_tokens: 6,
            completion_tokens: 5,
            total_tokens: 11
        })
    );
    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0],
        json!({
            "model": "standin-model",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "say hello please"},
            ],
        })
    );
}

#[tokio::test]
async fn empty_model_uses_the_default_and_options_are_sent() {
    let standin = LlmStandIn::start().await.unwrap();
    let mut settings = settings(standin.base_url());
    settings.default_model = "my-default".into();
    let model = client(settings);
    let mut request = ask("what is a penguin");
    request.model = String::new();
    request.max_tokens = Some(42);
    request.temperature = Some(0.25);

    let response = bounded(model.complete(request)).await.unwrap();

    assert_eq!(
        response.message.content,
        "Penguin stand-in reply to: what is a penguin"
    );
    assert_eq!(response.model, "my-default");
    let sent = &standin.requests()[0];
    assert_eq!(sent["model"], "my-default");
    assert_eq!(sent["max_tokens"], 42);
    assert_eq!(sent["temperature"], 0.25);
    assert!(sent.get("tools").is_none(), "no empty tools array: {sent}");
}

#[tokio::test]
async fn stream_assembles_tokens_and_ends_with_usage() {
    let standin = LlmStandIn::start().await.unwrap();
    let text = "Streaming answers arrive in small pieces, one after another.";
    standin.push_reply(Reply::Text(text.into()));
    let model = client(settings(standin.base_url()));

    let events = drain(&model, ask("stream it")).await;

    let events: Vec<StreamEvent> = events.into_iter().collect::<Result<_, _>>().unwrap();
    let (last, tokens) = events.split_last().unwrap();
    assert!(
        tokens.len() > 3,
        "text arrives in several tokens: {tokens:?}"
    );
    let assembled: String = tokens
        .iter()
        .map(|e| match e {
            StreamEvent::Token(t) => t.as_str(),
            other => panic!("only tokens before the end: {other:?}"),
        })
        .collect();
    assert_eq!(assembled, text);
    assert_eq!(
        last,
        &StreamEvent::Done {
            usage: Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 9,
                total_tokens: 14
            }),
            finish_reason: Some("stop".into()),
        }
    );
    let sent = &standin.requests()[0];
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(standin.open_streams(), 0);
}

#[tokio::test]
async fn stream_via_build_works_with_default_reply() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = build(&settings(standin.base_url()));
    assert_eq!(model.provider(), "openai-compatible");

    let events = drain(model.as_ref(), ask("hi there")).await;

    let text: String = events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::Token(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Penguin stand-in reply to: hi there");
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))));
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let standin = LlmStandIn::start().await.unwrap();
    standin.push_reply(Reply::ToolCalls(vec![
        ("read_file".into(), json!({"path": "src/main.rs"})),
        ("run".into(), json!({"cmd": ["cargo", "test"]})),
    ]));
    let model = client(settings(standin.base_url()));
    let tools = vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a file from the workspace".into(),
        parameters: json!({
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        }),
    }];
    let mut request = ask("open main.rs");
    request.tools = tools.clone();

    // The model asks for tools.
    let response = bounded(model.complete(request.clone())).await.unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.message.content, "");
    let calls = &response.message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "read_file");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&calls[0].arguments).unwrap(),
        json!({"path": "src/main.rs"})
    );
    assert_eq!(calls[1].name, "run");
    assert!(!calls[0].id.is_empty() && calls[0].id != calls[1].id);

    // The tools' results go back.
    request.messages.push(response.message.clone());
    request.messages.push(ChatMessage::tool_result(
        calls[0].id.clone(),
        "fn main() {}",
    ));
    request
        .messages
        .push(ChatMessage::tool_result(calls[1].id.clone(), "ok"));
    let answer = bounded(model.complete(request)).await.unwrap();
    assert!(answer
        .message
        .content
        .starts_with("Penguin stand-in reply to:"));

    let sent = standin.requests();
    assert_eq!(
        sent[0]["tools"],
        json!([{"type": "function", "function": {
            "name": "read_file",
            "description": "Read a file from the workspace",
            "parameters": tools[0].parameters,
        }}])
    );
    let messages = sent[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(
        messages[2],
        json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [
                {"id": calls[0].id, "type": "function",
                 "function": {"name": "read_file", "arguments": calls[0].arguments}},
                {"id": calls[1].id, "type": "function",
                 "function": {"name": "run", "arguments": calls[1].arguments}},
            ],
        })
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "fn main() {}", "tool_call_id": calls[0].id})
    );
}

#[tokio::test]
async fn assistant_text_with_tool_calls_keeps_its_content() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));
    let mut request = ask("go");
    let mut assistant = ChatMessage::new(Role::Assistant, "Let me look.");
    assistant.tool_calls.push(ToolCall {
        id: "call_a".into(),
        name: "ls".into(),
        arguments: "{}".into(),
    });
    request.messages.push(assistant);
    request
        .messages
        .push(ChatMessage::tool_result("call_a", "a.rs"));

    bounded(model.complete(request)).await.unwrap();

    let sent = &standin.requests()[0]["messages"];
    assert_eq!(sent[2]["content"], "Let me look.");
    assert_eq!(sent[2]["tool_calls"][0]["function"]["name"], "ls");
}

#[tokio::test]
async fn upstream_errors_carry_status_and_message() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));

    standin.push_reply(Reply::Error {
        status: 429,
        message: "Rate limit reached for requests".into(),
    });
    match bounded(model.complete(ask("x"))).await {
        Err(LlmError::Upstream { status, message }) => {
            assert_eq!(status, 429);
            assert_eq!(message, "Rate limit reached for requests");
        }
        other => panic!("expected Upstream, got {other:?}"),
    }

    standin.push_reply(Reply::Error {
        status: 500,
        message: "The server had an error".into(),
    });
    match bounded(model.stream(ask("x"))).await {
        Err(LlmError::Upstream { status, message }) => {
            assert_eq!(status, 500);
            assert_eq!(message, "The server had an error");
        }
        Err(other) => panic!("expected Upstream, got {other:?}"),
        Ok(_) => panic!("expected Upstream, got a stream"),
    }
}

#[tokio::test]
async fn hang_times_out() {
    let standin = LlmStandIn::start().await.unwrap();
    let mut settings = settings(standin.base_url());
    settings.timeout = Duration::from_millis(300);
    let model = client(settings);

    standin.push_reply(Reply::Hang);
    let result = bounded(model.complete(ask("x"))).await;
    assert!(
        matches!(result, Err(LlmError::Timeout(d)) if d == Duration::from_millis(300)),
        "{result:?}"
    );

    standin.push_reply(Reply::Hang);
    let result = bounded(model.stream(ask("x"))).await;
    assert!(
        matches!(result, Err(LlmError::Timeout(_))),
        "error expected"
    );
}

#[tokio::test]
async fn silence_between_chunks_times_out() {
    let standin = LlmStandIn::start().await.unwrap();
    let mut settings = settings(standin.base_url());
    settings.timeout = Duration::from_millis(300);
    let model = client(settings);
    standin.push_reply(Reply::Text("one two three four five six".into()));
    standin.set_chunk_delay(Duration::from_secs(5));

    let events = drain(&model, ask("slow")).await;

    assert!(
        matches!(events.last(), Some(Err(LlmError::Timeout(_)))),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Ok(StreamEvent::Done { .. }))));
}

#[tokio::test]
async fn disconnect_mid_stream_is_an_error_not_a_short_answer() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));
    standin.push_reply(Reply::Disconnect {
        after_chunks: 3,
        text: "This answer will be cut off long before it is complete.".into(),
    });

    let events = drain(&model, ask("x")).await;

    let tokens = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Token(_))))
        .count();
    assert_eq!(tokens, 3, "{events:?}");
    assert!(
        matches!(
            events.last(),
            Some(Err(LlmError::Transport(_) | LlmError::Decode(_)))
        ),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Ok(StreamEvent::Done { .. }))));
}

#[tokio::test]
async fn disconnect_during_a_whole_answer_is_an_error() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));
    standin.push_reply(Reply::Disconnect {
        after_chunks: 0,
        text: "never complete".into(),
    });

    let result = bounded(model.complete(ask("x"))).await;

    assert!(
        matches!(result, Err(LlmError::Transport(_) | LlmError::Decode(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_request() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));
    // About 1500 chunks at 20 ms each: half a minute if nobody hangs up.
    standin.push_reply(Reply::Text("penguins waddle ".repeat(500)));
    standin.set_chunk_delay(Duration::from_millis(20));

    let mut stream = bounded(model.stream(ask("long"))).await.unwrap();
    for _ in 0..2 {
        let event = bounded(stream.next()).await;
        assert!(
            matches!(event, Some(Ok(StreamEvent::Token(_)))),
            "{event:?}"
        );
    }
    assert_eq!(standin.open_streams(), 1);
    drop(stream);

    bounded(async {
        while standin.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_future_mid_flight_leaves_nothing_open() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));
    standin.push_reply(Reply::Hang);

    // Give up on the call from outside; the request must not live on.
    let outcome = tokio::time::timeout(Duration::from_millis(200), model.stream(ask("x"))).await;
    assert!(outcome.is_err(), "the hanging call cannot have finished");

    // The next call is served normally.
    let events = drain(&model, ask("again")).await;
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))));
    assert_eq!(standin.open_streams(), 0);
}

#[tokio::test]
async fn models_are_listed() {
    let standin = LlmStandIn::start().await.unwrap();
    let model = client(settings(standin.base_url()));

    let models = bounded(model.models()).await.unwrap();

    let summary: Vec<(&str, &str, bool, Option<u32>)> = models
        .iter()
        .map(|m| {
            (
                m.id.as_str(),
                m.provider.as_str(),
                m.vision_enabled,
                m.max_output_tokens,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("standin-model", "openai-compatible", false, None),
            ("standin-vision", "openai-compatible", true, None),
        ]
    );
    assert_eq!(models[0].name, "standin-model");
}

#[tokio::test]
async fn models_without_a_models_endpoint_is_the_default_model() {
    let standin = LlmStandIn::start().await.unwrap();
    // The stand-in answers 404 for anything outside /v1.
    let base = standin.base_url().replace("/v1", "/no-such-api");
    let mut settings = settings(base);
    settings.default_model = "local-llama".into();
    let model = client(settings);

    let models = bounded(model.models()).await.unwrap();

    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id, "local-llama");
    assert_eq!(models[0].provider, "openai-compatible");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let model = client(settings(format!("http://127.0.0.1:{port}/v1")));

    let result = bounded(model.complete(ask("x"))).await;

    assert!(matches!(result, Err(LlmError::Transport(_))), "{result:?}");
}

const SECRET: &str = "sk-penguin-test-0123456789abcdef";

#[tokio::test]
async fn the_api_key_is_sent_and_never_shown() {
    let standin = LlmStandIn::start_with_key(SECRET).await.unwrap();

    // The right key is sent as a bearer token.
    let mut good = settings(standin.base_url());
    good.api_key = Some(SECRET.into());
    let model = client(good.clone());
    bounded(model.complete(ask("x"))).await.unwrap();
    bounded(model.models()).await.unwrap();
    for shown in [format!("{good:?}"), format!("{model:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    // No key: 401.
    let anonymous = client(settings(standin.base_url()));
    let result = bounded(anonymous.complete(ask("x"))).await;
    assert!(
        matches!(result, Err(LlmError::Upstream { status: 401, .. })),
        "{result:?}"
    );

    // A provider echoing the key back does not leak it through our errors.
    standin.push_reply(Reply::Error {
        status: 400,
        message: format!("Incorrect API key provided: {SECRET}"),
    });
    let error = bounded(model.complete(ask("x"))).await.unwrap_err();
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
    }

    // Nor do transport errors.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut unreachable = good;
    unreachable.base_url = format!("http://127.0.0.1:{port}/v1");
    let error = bounded(client(unreachable).stream(ask("x")))
        .await
        .err()
        .expect("cannot connect");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
