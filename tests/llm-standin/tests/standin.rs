//! The stand-in's wire behaviour, checked with raw HTTP/1.1 over TCP.

use std::time::Duration;

use llm_standin::{LlmStandIn, Reply};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const GENEROUS: Duration = Duration::from_secs(20);

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    /// The `data:` payloads of an SSE body.
    fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn call(
    standin: &LlmStandIn,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> Answer {
    let mut socket = TcpStream::connect(standin.addr()).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = auth {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(GENEROUS, socket.read_to_end(&mut raw))
        .await
        .expect("answer within the bound")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
    let status = head[9..12].parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers: head.to_string(),
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn chat(stream: bool, include_usage: bool, text: &str) -> String {
    let mut body = json!({
        "model": "standin-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text},
        ],
    });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

#[tokio::test]
async fn models_list_and_key_check() {
    let open = LlmStandIn::start().await.unwrap();
    let answer = call(&open, "GET", "/v1/models", None, "").await;
    assert_eq!(answer.status, 200);
    let ids: Vec<Value> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["id"], m["object"], m["owned_by"]]))
        .collect();
    assert_eq!(
        ids,
        vec![
            json!(["standin-model", "model", "penguin"]),
            json!(["standin-vision", "model", "penguin"]),
        ]
    );
    assert_eq!(answer.json()["object"], "list");

    let guarded = LlmStandIn::start_with_key("sk-standin").await.unwrap();
    for auth in [None, Some("sk-wrong")] {
        let answer = call(&guarded, "GET", "/v1/models", auth, "").await;
        assert_eq!(answer.status, 401, "{auth:?}");
        assert_eq!(answer.json()["error"]["code"], "invalid_api_key");
        let answer = call(
            &guarded,
            "POST",
            "/v1/chat/completions",
            auth,
            &chat(false, false, "hi"),
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    let answer = call(&guarded, "GET", "/v1/models", Some("sk-standin"), "").await;
    assert_eq!(answer.status, 200);
    let answer = call(
        &guarded,
        "POST",
        "/v1/chat/completions",
        Some("sk-standin"),
        &chat(false, false, "hi"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(LlmStandIn::start_with_key("").await.is_err());
}

#[tokio::test]
async fn whole_answer_has_the_openai_shape() {
    let standin = LlmStandIn::start().await.unwrap();
    let body = chat(false, false, "how cold is it");

    let answer = call(&standin, "POST", "/v1/chat/completions", None, &body).await;

    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "standin-model");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "Penguin stand-in reply to: how cold is it"
    );
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        json["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14})
    );
    assert_eq!(
        standin.requests(),
        vec![serde_json::from_str::<Value>(&body).unwrap()]
    );
}

#[tokio::test]
async fn stream_sends_chunks_usage_and_done() {
    let standin = LlmStandIn::start().await.unwrap();
    standin.push_reply(Reply::Text("Chilly, but fine.".into()));

    let answer = call(
        &standin,
        "POST",
        "/v1/chat/completions",
        None,
        &chat(true, true, "weather?"),
    )
    .await;

    assert_eq!(answer.status, 200);
    assert!(answer
        .headers
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    let events = answer.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Chilly, but fine.");
    let pieces = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces >= 3, "streamed in small pieces");
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(rest.iter().all(|c| c["usage"].is_null()));
    assert_eq!(standin.open_streams(), 0);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let standin = LlmStandIn::start().await.unwrap();

    let answer = call(
        &standin,
        "POST",
        "/v1/chat/completions",
        None,
        &chat(true, false, "hi"),
    )
    .await;

    let events = answer.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn tool_calls_whole_and_streamed() {
    let standin = LlmStandIn::start().await.unwrap();
    let calls = vec![("grep".to_string(), json!({"pattern": "fn main"}))];
    standin.push_reply(Reply::ToolCalls(calls.clone()));
    standin.push_reply(Reply::ToolCalls(calls));

    let whole = call(
        &standin,
        "POST",
        "/v1/chat/completions",
        None,
        &chat(false, false, "x"),
    )
    .await
    .json();
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
    let call0 = &whole["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call0["type"], "function");
    assert_eq!(call0["function"]["name"], "grep");
    assert_eq!(
        serde_json::from_str::<Value>(call0["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"pattern": "fn main"})
    );
    assert!(whole["choices"][0]["message"]["content"].is_null());

    let streamed = call(
        &standin,
        "POST",
        "/v1/chat/completions",
        None,
        &chat(true, false, "x"),
    )
    .await;
    let chunks: Vec<Value> = streamed
        .events()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"pattern": "fn main"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn errors_and_bad_requests() {
    let standin = LlmStandIn::start().await.unwrap();
    standin.push_reply(Reply::Error {
        status: 503,
        message: "overloaded".into(),
    });

    let answer = call(
        &standin,
        "POST",
        "/v1/chat/completions",
        None,
        &chat(true, true, "x"),
    )
    .await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"]["message"], "overloaded");
    assert_eq!(answer.json()["error"]["type"], "server_error");

    let answer = call(&standin, "POST", "/v1/chat/completions", None, "{not json").await;
    assert_eq!(answer.status, 400);
    assert_eq!(standin.requests()[1], json!("{not json"));

    let answer = call(&standin, "GET", "/v2/elsewhere", None, "").await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn dropping_the_standin_closes_open_connections() {
    let standin = LlmStandIn::start().await.unwrap();
    standin.push_reply(Reply::Hang);
    let addr = standin.addr();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let body = chat(false, false, "x");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // Wait until the request is in, so the connection is really hanging.
    tokio::time::timeout(GENEROUS, async {
        while standin.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();

    drop(standin);

    let mut buf = Vec::new();
    let read = tokio::time::timeout(GENEROUS, socket.read_to_end(&mut buf))
        .await
        .expect("the connection is closed");
    assert!(read.is_err() || buf.is_empty(), "no answer, just a close");
    tokio::time::timeout(GENEROUS, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener is closed");
}
