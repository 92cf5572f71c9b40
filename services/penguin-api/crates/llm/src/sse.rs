//! Streamed answers: server-sent events of `chat.completion.chunk`s, ended by `data: [DONE]`.
//!
//! The stream is a plain state machine over the response body, polled by the consumer: nothing
//! is spawned, so dropping the stream drops the response and closes the connection. Each read
//! from the body has its own deadline (keep-alive comments count as data, so a provider that is
//! still thinking but sends `: PROCESSING` lines is not cut off).

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource as _};
use futures::{Stream, StreamExt as _};

use crate::http::{self, Redactor};
use crate::types::{EventStream, LlmError, StreamEvent, Usage};
use crate::wire::{Completion, Content};

/// Why reading the body failed.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// No bytes arrived within the deadline.
    Timeout,
    /// The connection broke.
    Http(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Timeout => f.write_str("timed out"),
            BodyError::Http(e) => f.write_str(&http::chain(e)),
        }
    }
}

/// The body of `response` as byte chunks, each read within `timeout`. Ends after the first error.
pub(crate) fn body_chunks(
    response: reqwest::Response,
    timeout: Duration,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
    futures::stream::unfold(Some(response), move |response| async move {
        let mut response = response?;
        match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_elapsed) => Some((Err(BodyError::Timeout), None)),
            Ok(Err(e)) => Some((Err(BodyError::Http(e)), None)),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(bytes))) => Some((Ok(bytes), Some(response))),
        }
    })
}

type SseStream = Pin<
    Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<BodyError>>> + Send>,
>;

/// Decoding state of one streamed answer.
struct Decoder {
    events: SseStream,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    finished: bool,
    timeout: Duration,
    redactor: Redactor,
}

/// Turns a byte stream of server-sent events into [`StreamEvent`]s: a `Token` per non-empty
/// `delta.content`, then one `Done` at `data: [DONE]`. A body that ends without `[DONE]` is a
/// [`LlmError::Decode`] unless a finish reason was already received; a broken connection is a
/// [`LlmError::Transport`]; a silent body a [`LlmError::Timeout`]. The stream ends after `Done`
/// or the first error.
pub(crate) fn decode<S>(chunks: S, timeout: Duration, redactor: Redactor) -> EventStream
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
{
    let decoder = Decoder {
        events: Box::pin(chunks.eventsource()),
        usage: None,
        finish_reason: None,
        finished: false,
        timeout,
        redactor,
    };
    futures::stream::unfold(decoder, |mut decoder| async move {
        if decoder.finished {
            return None;
        }
        let item = decoder.next_item().await;
        decoder.finished = !matches!(item, Ok(StreamEvent::Token(_)));
        let item = item.map_err(|e| decoder.redactor.error(e));
        Some((item, decoder))
    })
    .boxed()
}

impl Decoder {
    /// The next token, `Done`, or the error that ends the stream.
    async fn next_item(&mut self) -> Result<StreamEvent, LlmError> {
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(error)) => return Err(self.map_error(error)),
                None if self.finish_reason.is_some() => return Ok(self.done()),
                None => {
                    return Err(LlmError::Decode(
                        "the stream ended before the answer was complete (no [DONE])".into(),
                    ))
                }
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return Ok(self.done());
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Completion = serde_json::from_str(data)
                .map_err(|e| LlmError::Decode(format!("bad stream chunk: {e}")))?;
            if let Some(error) = chunk.error {
                return Err(LlmError::Upstream {
                    status: error
                        .get("code")
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok())
                        .filter(|c| (400..600).contains(c))
                        .unwrap_or(502),
                    message: http::json_error_message(&serde_json::json!({ "error": error }))
                        .unwrap_or_else(|| "error in the middle of the stream".into()),
                });
            }
            if let Some(usage) = chunk.usage {
                self.usage = Some(usage.into());
            }
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue;
            };
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            let text = choice
                .delta
                .and_then(|delta| delta.content)
                .map(Content::into_text)
                .unwrap_or_default();
            if !text.is_empty() {
                return Ok(StreamEvent::Token(text));
            }
        }
    }

    fn done(&mut self) -> StreamEvent {
        StreamEvent::Done {
            usage: self.usage.take(),
            finish_reason: self.finish_reason.take(),
        }
    }

    fn map_error(&self, error: EventStreamError<BodyError>) -> LlmError {
        match error {
            EventStreamError::Transport(BodyError::Timeout) => LlmError::Timeout(self.timeout),
            EventStreamError::Transport(BodyError::Http(e)) if e.is_timeout() => {
                LlmError::Timeout(self.timeout)
            }
            EventStreamError::Transport(BodyError::Http(e)) => LlmError::Transport(format!(
                "the connection broke during the answer: {}",
                http::chain(&e)
            )),
            EventStreamError::Utf8(e) => LlmError::Decode(format!("the stream is not UTF-8: {e}")),
            EventStreamError::Parser(e) => {
                LlmError::Decode(format!("the stream is not server-sent events: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt as _;

    async fn run(parts: &[&str]) -> Vec<Result<StreamEvent, LlmError>> {
        let chunks: Vec<Result<Bytes, BodyError>> = parts
            .iter()
            .map(|p| Ok(Bytes::from(p.to_string())))
            .collect();
        decode(
            futures::stream::iter(chunks),
            Duration::from_secs(1),
            Redactor::default(),
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn tokens_usage_and_done_across_split_chunks() {
        let events = run(&[
            ": keep-alive comment\n\n",
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choi",
            "ces\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\r\n\r\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n",
        ])
        .await;
        let events: Vec<StreamEvent> = events.into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Token("Hel".into()),
                StreamEvent::Token("lo".into()),
                StreamEvent::Done {
                    usage: Some(Usage {
                        prompt_tokens: 3,
                        completion_tokens: 1,
                        total_tokens: 4
                    }),
                    finish_reason: Some("stop".into()),
                },
            ]
        );
    }

    #[tokio::test]
    async fn end_without_done_is_an_error_unless_finished() {
        let events = run(&["data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"]).await;
        assert!(matches!(events.last(), Some(Err(LlmError::Decode(_)))));

        let events = run(&[
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        ])
        .await;
        assert!(matches!(
            events.last(),
            Some(Ok(StreamEvent::Done { usage: None, .. }))
        ));
    }

    #[tokio::test]
    async fn bad_json_and_in_stream_errors() {
        let events = run(&["data: {not json\n\n"]).await;
        assert!(matches!(events[..], [Err(LlmError::Decode(_))]));

        let events = run(&[
            "data: {\"error\":{\"message\":\"provider overloaded\",\"code\":503}}\n\n",
            "data: [DONE]\n\n",
        ])
        .await;
        match &events[..] {
            [Err(LlmError::Upstream { status, message })] => {
                assert_eq!(*status, 503);
                assert_eq!(message, "provider overloaded");
            }
            other => panic!("unexpected: {other:?}"),
        }
    }

    #[tokio::test]
    async fn body_timeout_is_a_timeout() {
        let chunks = futures::stream::iter(vec![Err(BodyError::Timeout)]);
        let result: Result<Vec<_>, _> =
            decode(chunks, Duration::from_millis(7), Redactor::default())
                .try_collect()
                .await;
        assert!(matches!(result, Err(LlmError::Timeout(d)) if d == Duration::from_millis(7)));
    }
}
