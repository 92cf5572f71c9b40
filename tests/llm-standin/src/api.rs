//! HTTP routes: `POST /v1/chat/completions` and `GET /v1/models`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Value};

use crate::bodies;
use crate::state::{Shared, StreamGuard};
use crate::Reply;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .fallback(not_found)
        .with_state(shared)
}

fn error_response(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(bodies::error(status, message))).into_response()
}

async fn not_found() -> Response {
    error_response(404, "Unknown request URL.")
}

/// `None` when the request may pass, else the 401 answer.
fn check_auth(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = shared.api_key.as_deref()?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if !token.is_empty() && token == key => None,
        Some(token) if !token.is_empty() => {
            Some(error_response(401, "Incorrect API key provided."))
        }
        _ => Some(error_response(
            401,
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
        )),
    }
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(denied) = check_auth(&shared, &headers) {
        return denied;
    }
    Json(json!({
        "object": "list",
        "data": [
            {"id": "standin-model", "object": "model", "created": 0, "owned_by": "penguin"},
            {"id": "standin-vision", "object": "model", "created": 0, "owned_by": "penguin"},
        ],
    }))
    .into_response()
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    shared.requests.lock().unwrap().push(match &parsed {
        Ok(value) => value.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    });
    if let Some(denied) = check_auth(&shared, &headers) {
        return denied;
    }
    let request = match parsed {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return error_response(400, "The request body must be a JSON object."),
        Err(e) => return error_response(400, &format!("Invalid JSON body: {e}")),
    };
    if !request.get("messages").is_some_and(Value::is_array) {
        return error_response(400, "'messages' is a required property");
    }

    let reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::Text(bodies::default_answer(&request)));
    let answer = Answer {
        id: shared.next_id(),
        model: request
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or("standin-model")
            .to_string(),
        prompt_tokens: bodies::prompt_tokens(&request),
        include_usage: request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);

    match reply {
        Reply::Error { status, message } => error_response(status, &message),
        Reply::Hang => std::future::pending().await,
        reply if streaming => answer.stream(shared, reply),
        reply => answer.whole(reply),
    }
}

/// What an answer needs to know about its request.
struct Answer {
    id: u64,
    model: String,
    prompt_tokens: u32,
    include_usage: bool,
}

impl Answer {
    /// A plain JSON answer.
    fn whole(self, reply: Reply) -> Response {
        let (message, finish_reason, completion_tokens) = match &reply {
            Reply::Text(text) | Reply::Disconnect { text, .. } => (
                json!({"role": "assistant", "content": text, "refusal": null}),
                "stop",
                bodies::count_words(text),
            ),
            Reply::ToolCalls(calls) => (
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": bodies::tool_calls(self.id, calls),
                }),
                "tool_calls",
                calls
                    .iter()
                    .map(|(_, args)| bodies::count_words(&args.to_string()))
                    .sum(),
            ),
            Reply::Error { .. } | Reply::Hang => unreachable!("handled by the caller"),
        };
        let body = bodies::completion(
            self.id,
            &self.model,
            message,
            finish_reason,
            bodies::usage(self.prompt_tokens, completion_tokens),
        );
        if let Reply::Disconnect { .. } = reply {
            // Status and headers, half the body, then a broken connection.
            let text = body.to_string();
            let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
            let parts = async_stream::stream! {
                yield Ok(half);
                yield Err(flushed_disconnect().await);
            };
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(parts))
                .expect("static response parts are valid");
        }
        Json(body).into_response()
    }

    /// A server-sent-events answer.
    fn stream(self, shared: Arc<Shared>, reply: Reply) -> Response {
        let guard = StreamGuard::new(shared.clone());
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(self.events(shared, guard, reply)))
            .expect("static response parts are valid")
    }

    fn events(
        self,
        shared: Arc<Shared>,
        guard: StreamGuard,
        reply: Reply,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let planned = self.plan(reply);
        async_stream::stream! {
            let _guard = guard;
            for (i, event) in planned.into_iter().enumerate() {
                if i > 0 {
                    let delay = shared.chunk_delay();
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                match event {
                    Planned::Data(data) => yield Ok(Bytes::from(format!("data: {data}\n\n"))),
                    Planned::Break => {
                        yield Err(flushed_disconnect().await);
                        return;
                    }
                }
            }
        }
    }

    /// The `data:` payloads of a streamed answer, in order.
    fn plan(&self, reply: Reply) -> Vec<Planned> {
        let chunk = |delta: Value, finish: Option<&str>| {
            Planned::Data(
                bodies::chunk(
                    self.id,
                    &self.model,
                    Some((delta, finish)),
                    None,
                    self.include_usage,
                )
                .to_string(),
            )
        };
        let mut planned = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        let (finish, completion_tokens) = match reply {
            Reply::Text(text) => {
                for piece in bodies::chunk_text(&text) {
                    planned.push(chunk(json!({"content": piece}), None));
                }
                ("stop", bodies::count_words(&text))
            }
            Reply::ToolCalls(calls) => {
                let mut tokens = 0;
                for (index, call) in bodies::tool_calls(self.id, &calls).into_iter().enumerate() {
                    let arguments = call["function"]["arguments"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    tokens += bodies::count_words(&arguments);
                    planned.push(chunk(
                        json!({"tool_calls": [{
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }]}),
                        None,
                    ));
                    planned.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                        None,
                    ));
                }
                ("tool_calls", tokens)
            }
            Reply::Disconnect { after_chunks, text } => {
                for piece in bodies::chunk_text(&text).into_iter().take(after_chunks) {
                    planned.push(chunk(json!({"content": piece}), None));
                }
                planned.push(Planned::Break);
                return planned;
            }
            Reply::Error { .. } | Reply::Hang => unreachable!("handled by the caller"),
        };
        planned.push(chunk(json!({}), Some(finish)));
        if self.include_usage {
            let usage = bodies::usage(self.prompt_tokens, completion_tokens);
            planned.push(Planned::Data(
                bodies::chunk(self.id, &self.model, None, Some(usage), true).to_string(),
            ));
        }
        planned.push(Planned::Data("[DONE]".into()));
        planned
    }
}

/// The body error that makes hyper drop the connection, returned after a pause: hyper flushes
/// what it has buffered when the body is pending, so the chunks "sent" before the disconnect
/// really reach the client instead of being discarded with the connection.
async fn flushed_disconnect() -> std::io::Error {
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::io::Error::other("scripted disconnect")
}

/// One step of a streamed answer.
enum Planned {
    /// Send `data: <payload>`.
    Data(String),
    /// Break the connection.
    Break,
}
