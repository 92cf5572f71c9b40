//! Reading a webhook body before its signature can be checked, without
//! letting unauthenticated senders exhaust memory: each body has a read
//! deadline, and the bytes held by bodies not yet verified come out of a
//! budget. Small bodies (nearly all of GitHub's deliveries) have a pool of
//! their own, so stalled large senders never turn them away; a body that
//! does not fit its pool gets 503 with `Retry-After`.

use axum::body::Body;
use http_body_util::BodyExt;
use std::{sync::Arc, time::Duration};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bodies declared up to this size draw from the small pool by default.
pub const SMALL_BODY: usize = 1024 * 1024;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than GitHub ever sends.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The pool for bodies of its size is full.
    #[error("too many webhook bodies are being received; try again shortly")]
    Busy,
    /// The sender did not finish within the deadline.
    #[error("the body did not arrive within {0:?}")]
    TooSlow(Duration),
    /// The connection failed while reading.
    #[error("the body could not be read: {0}")]
    Read(String),
}

/// The byte pools and limits.
pub struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
    small_body: usize,
    max_body: usize,
    deadline: Duration,
}

/// Bytes a body holds; returned to its pool when dropped.
pub struct Held {
    _permits: Vec<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// `small` bytes for bodies declared up to `small_body` bytes, `large`
    /// for the rest; no body over `max_body`; each read within `deadline`.
    pub fn new(
        small: usize,
        large: usize,
        small_body: usize,
        max_body: usize,
        deadline: Duration,
    ) -> Self {
        let permits = |bytes: usize| Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)));
        BodyBudget {
            small: permits(small),
            large: permits(large),
            small_body,
            max_body,
            deadline,
        }
    }

    /// Reads `body`, whose `Content-Length` is `declared`, charging every
    /// chunk to its pool as it arrives. The bytes stay charged until the
    /// returned [`Held`] is dropped (after the signature check and the store).
    pub async fn read(
        &self,
        declared: Option<usize>,
        body: Body,
    ) -> Result<(Vec<u8>, Held), BodyError> {
        if declared.is_some_and(|n| n > self.max_body) {
            // Read and drop it (within the deadline, holding nothing), so a
            // client still sending gets the 413 instead of a broken pipe.
            let mut body = body;
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(self.deadline, drain).await;
            return Err(BodyError::TooLarge {
                limit: self.max_body,
            });
        }
        let pool = match declared {
            Some(n) if n <= self.small_body => &self.small,
            _ => &self.large,
        };
        let reading = async {
            let mut body = body;
            let mut data = Vec::with_capacity(declared.unwrap_or(0).min(self.small_body));
            let mut permits = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if data.len() + chunk.len() > self.max_body
                    || declared.is_some_and(|n| data.len() + chunk.len() > n)
                {
                    return Err(BodyError::TooLarge {
                        limit: declared.unwrap_or(self.max_body).min(self.max_body),
                    });
                }
                let bytes = u32::try_from(chunk.len()).map_err(|_| BodyError::Busy)?;
                if bytes > 0 {
                    permits.push(
                        pool.clone()
                            .try_acquire_many_owned(bytes)
                            .map_err(|_| BodyError::Busy)?,
                    );
                }
                data.extend_from_slice(&chunk);
            }
            Ok((data, Held { _permits: permits }))
        };
        tokio::time::timeout(self.deadline, reading)
            .await
            .map_err(|_| BodyError::TooSlow(self.deadline))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> BodyBudget {
        BodyBudget::new(100, 1000, 100, 5000, Duration::from_millis(200))
    }

    #[tokio::test]
    async fn bodies_are_charged_while_held_and_refused_when_their_pool_is_full() {
        let budget = budget();
        let (first, held) = budget
            .read(Some(800), Body::from(vec![1u8; 800]))
            .await
            .unwrap();
        assert_eq!(first.len(), 800);
        // The large pool has 200 bytes left: a second large body is turned away…
        assert!(matches!(
            budget.read(Some(2000), Body::from(vec![1u8; 2000])).await,
            Err(BodyError::Busy)
        ));
        // …but a small one still fits its own pool.
        let (small, _held_small) = budget
            .read(Some(90), Body::from(vec![2u8; 90]))
            .await
            .unwrap();
        assert_eq!(small.len(), 90);
        drop(held);
        assert!(budget
            .read(Some(900), Body::from(vec![1u8; 900]))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn oversized_lying_and_slow_bodies_are_refused() {
        let budget = budget();
        assert!(matches!(
            budget.read(Some(6000), Body::empty()).await,
            Err(BodyError::TooLarge { limit: 5000 })
        ));
        // More bytes than declared.
        assert!(matches!(
            budget.read(Some(10), Body::from(vec![0u8; 50])).await,
            Err(BodyError::TooLarge { .. })
        ));
        // A sender that never finishes.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
        let stalled = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        assert!(matches!(
            budget.read(Some(10), stalled).await,
            Err(BodyError::TooSlow(_))
        ));
    }
}
