//! `llm-standin`: serves the model stand-in on an address until SIGTERM or Ctrl-C, for the
//! container tests (the compose dev profile's `model` service). Test-only.
//!
//! - `LLM_STANDIN_ADDR` (default `127.0.0.1:8080`): where OpenAI-compatible clients connect
//!   (`http://<addr>/v1`).
//! - `LLM_STANDIN_REPLIES` (a JSON file) and/or `LLM_STANDIN_REPLIES_JSON` (the JSON itself):
//!   a list of scripted replies, answered in order (the file's first). Each is a string (the
//!   answer's text) or one of `{"text": "…"}`, `{"tool_calls": [{"name": "…", "arguments":
//!   {…}}]}`, `{"error": {"status": 429, "message": "…"}}`, `{"hang": true}`,
//!   `{"disconnect": {"after_chunks": 2, "text": "…"}}`. Past the list, the answer is
//!   `Penguin stand-in reply to: <last user message>`.
//! - `LLM_STANDIN_API_KEY`: when set, requests must carry `Authorization: Bearer <key>`.
//!
//! Every `chat/completions` request body is printed to stdout as one JSON line
//! (`{"llm_standin_request": n, "body": {…}}`), so a test can read what the client sent from
//! the container's log.
//!
//! The stand-in library listens on `127.0.0.1` at a free port; this binary relays connections
//! from `LLM_STANDIN_ADDR` to it byte for byte.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use llm_standin::{LlmStandIn, Reply};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// Command line / environment configuration.
#[derive(Debug, Parser)]
#[command(
    name = "llm-standin",
    about = "A test stand-in for an OpenAI-compatible chat-completions API, with scripted replies"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "LLM_STANDIN_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A JSON file holding a list of scripted replies.
    #[arg(long, env = "LLM_STANDIN_REPLIES")]
    replies: Option<PathBuf>,
    /// A list of scripted replies as JSON (after the file's).
    #[arg(long, env = "LLM_STANDIN_REPLIES_JSON")]
    replies_json: Option<String>,
    /// Require `Authorization: Bearer <key>`.
    #[arg(long, env = "LLM_STANDIN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// One scripted reply from its JSON form.
fn reply(value: &Value) -> anyhow::Result<Reply> {
    if let Some(text) = value.as_str() {
        return Ok(Reply::Text(text.to_string()));
    }
    let object = value
        .as_object()
        .with_context(|| format!("a reply is a string or an object, not {value}"))?;
    anyhow::ensure!(
        object.len() == 1,
        "a reply object has exactly one key (text, tool_calls, error, hang or disconnect): {value}"
    );
    let (kind, body) = object.iter().next().expect("one key");
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_string)
            .with_context(|| format!("{what} must be a string: {value}"))
    };
    Ok(match kind.as_str() {
        "text" => Reply::Text(text(body, "text")?),
        "tool_calls" => Reply::ToolCalls(
            body.as_array()
                .with_context(|| format!("tool_calls must be a list: {value}"))?
                .iter()
                .map(|call| {
                    Ok((
                        text(&call["name"], "a tool call's name")?,
                        call.get("arguments").cloned().unwrap_or_else(|| json!({})),
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        "error" => Reply::Error {
            status: body["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..600).contains(s))
                .with_context(|| format!("error.status must be an HTTP status: {value}"))?,
            message: text(&body["message"], "error.message")?,
        },
        "hang" => Reply::Hang,
        "disconnect" => Reply::Disconnect {
            after_chunks: body["after_chunks"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .with_context(|| format!("disconnect.after_chunks must be a count: {value}"))?,
            text: text(&body["text"], "disconnect.text")?,
        },
        other => anyhow::bail!("unknown reply kind {other:?}: {value}"),
    })
}

/// A JSON list of replies.
fn replies(text: &str, source: &str) -> anyhow::Result<Vec<Reply>> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{source} is not JSON"))?;
    value
        .as_array()
        .with_context(|| format!("{source} must be a JSON list of replies"))?
        .iter()
        .map(reply)
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("in {source}"))
}

/// Relays one connection to the stand-in.
async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// Prints every request the stand-in received since the last call.
fn print_requests(standin: &LlmStandIn, seen: &mut usize) {
    let requests = standin.requests();
    let mut out = std::io::stdout().lock();
    for (i, body) in requests.iter().enumerate().skip(*seen) {
        let _ = writeln!(
            out,
            "{}",
            json!({"llm_standin_request": i + 1, "body": body})
        );
    }
    let _ = out.flush();
    *seen = requests.len();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scripted = Vec::new();
    if let Some(path) = &args.replies {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        scripted.extend(replies(&text, &path.display().to_string())?);
    }
    if let Some(text) = args
        .replies_json
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        scripted.extend(replies(text, "LLM_STANDIN_REPLIES_JSON")?);
    }
    let standin = match args.api_key.filter(|k| !k.is_empty()) {
        Some(key) => LlmStandIn::start_with_key(key).await?,
        None => LlmStandIn::start().await?,
    };
    let count = scripted.len();
    for reply in scripted {
        standin.push_reply(reply);
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let upstream = standin.addr();
    eprintln!(
        "llm-standin listening on http://{}/v1 with {count} scripted replies",
        listener.local_addr()?
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut seen = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    tokio::spawn(relay(socket, upstream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = tick.tick() => print_requests(&standin, &mut seen),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    print_requests(&standin, &mut seen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_from_json() {
        let got = replies(
            r#"["plain", {"text": "t"}, {"tool_calls": [{"name": "read_file", "arguments": {"path": "a"}}]},
                {"error": {"status": 429, "message": "slow down"}}, {"hang": true},
                {"disconnect": {"after_chunks": 2, "text": "cut"}}]"#,
            "test",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Reply::Text("plain".into()),
                Reply::Text("t".into()),
                Reply::ToolCalls(vec![("read_file".into(), json!({"path": "a"}))]),
                Reply::Error {
                    status: 429,
                    message: "slow down".into()
                },
                Reply::Hang,
                Reply::Disconnect {
                    after_chunks: 2,
                    text: "cut".into()
                },
            ]
        );
        assert!(replies(r#"{"text": "x"}"#, "test").is_err());
        assert!(replies(r#"[{"nope": 1}]"#, "test").is_err());
        assert!(replies(r#"[{"error": {"status": 9, "message": "x"}}]"#, "test").is_err());
    }
}
