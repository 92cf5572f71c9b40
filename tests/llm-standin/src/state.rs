//! State shared between the handle and the server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Reply;

/// Everything the handlers read and the [`crate::LlmStandIn`] handle steers.
pub(crate) struct Shared {
    /// Required bearer token, if any.
    pub(crate) api_key: Option<String>,
    /// Scripted replies, consumed front first.
    pub(crate) replies: Mutex<VecDeque<Reply>>,
    /// Every chat/completions body received.
    pub(crate) requests: Mutex<Vec<serde_json::Value>>,
    /// Delay between streamed chunks.
    pub(crate) chunk_delay: Mutex<Duration>,
    /// Streams currently being served.
    pub(crate) open_streams: AtomicUsize,
    /// Source of completion ids.
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(api_key: Option<String>) -> Self {
        Shared {
            api_key,
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            chunk_delay: Mutex::new(Duration::ZERO),
            open_streams: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh number for ids.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn chunk_delay(&self) -> Duration {
        *self.chunk_delay.lock().unwrap()
    }
}

/// Counts one open stream for as long as it lives.
pub(crate) struct StreamGuard(Arc<Shared>);

impl StreamGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(shared)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}
