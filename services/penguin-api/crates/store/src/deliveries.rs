//! GitHub webhook deliveries, stored before the receiver answers 200 so that
//! each is processed exactly once across restarts, and claimed comment ids so
//! that redelivered or duplicated comments are processed once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    util::{clamp_limit, col_enum, col_time, fmt_time, now},
    Delivery, DeliveryState, NewDelivery, Store, StoreError,
};

const DELIVERY_COLUMNS: &str = "delivery_id, event, action, repository, payload, state, \
     received_at, updated_at, note, attempts, next_attempt_at";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        delivery_id: r.get(0)?,
        event: r.get(1)?,
        action: r.get(2)?,
        repository: r.get(3)?,
        payload: r.get(4)?,
        state: col_enum(r, 5)?,
        received_at: col_time(r, 6)?,
        updated_at: col_time(r, 7)?,
        note: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: match r.get::<_, Option<String>>(10)? {
            Some(_) => Some(col_time(r, 10)?),
            None => None,
        },
    })
}

fn delivery_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM deliveries WHERE delivery_id = ?1",
            [id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// A queued delivery insert and where its result goes.
pub(crate) type PendingDelivery = (
    NewDelivery,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

/// Inserts `batch` in one transaction and answers each caller: `Conflict`
/// for a GUID already stored (or twice in the batch), and for everyone the
/// commit's error if it fails.
fn commit_deliveries(conn: &mut Connection, batch: Vec<PendingDelivery>) {
    if batch.is_empty() {
        return;
    }
    let outcome = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut seen = std::collections::HashSet::new();
        let at = fmt_time(now());
        for (d, _) in &batch {
            if !seen.insert(d.delivery_id.as_str()) || delivery_exists(&tx, &d.delivery_id)? {
                results.push(Err(StoreError::Conflict {
                    what: "delivery",
                    id: d.delivery_id.clone(),
                }));
                continue;
            }
            tx.execute(
                "INSERT INTO deliveries
                   (delivery_id, event, action, repository, payload, state, received_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    d.delivery_id,
                    d.event,
                    d.action,
                    d.repository,
                    d.payload,
                    DeliveryState::Queued.as_str(),
                    at,
                ],
            )?;
            results.push(Ok(()));
        }
        tx.commit()?;
        Ok::<_, StoreError>(results)
    })();
    match outcome {
        Ok(results) => {
            for ((_, done), result) in batch.into_iter().zip(results) {
                let _ = done.send(result);
            }
        }
        Err(err) => {
            for (_, done) in batch {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}

/// SQLite integers are signed; GitHub ids fit, and the bit-preserving cast
/// keeps even out-of-range ids distinct.
fn comment_key(comment_id: u64) -> i64 {
    i64::from_ne_bytes(comment_id.to_ne_bytes())
}

impl Store {
    /// Stores a new delivery in state `Queued` (durably: on disk when this
    /// returns). `Conflict` if a delivery with this GUID already exists;
    /// `Invalid` if the GUID or event is empty.
    pub async fn insert_delivery(&self, d: NewDelivery) -> Result<(), StoreError> {
        if d.delivery_id.trim().is_empty() {
            return Err(StoreError::Invalid("delivery id must not be empty".into()));
        }
        if d.event.trim().is_empty() {
            return Err(StoreError::Invalid(
                "delivery event must not be empty".into(),
            ));
        }
        // Group commit: queue the insert, then whoever holds the connection
        // next commits every queued insert in one transaction (one fsync for
        // many deliveries). Each caller still returns only after its commit.
        let (done, result) = tokio::sync::oneshot::channel();
        self.inner
            .pending_deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((d, done));
        let inner = std::sync::Arc::clone(&self.inner);
        self.with_conn(move |conn| {
            let batch = std::mem::take(
                &mut *inner
                    .pending_deliveries
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            commit_deliveries(conn, batch);
            Ok(())
        })
        .await?;
        result
            .await
            .map_err(|_| StoreError::Db("the delivery batch was dropped".into()))?
    }

    /// Claims comment `comment_id` for `delivery_id`: `true` if it was free
    /// or already this delivery's (reprocessing after a restart), `false` if
    /// another delivery claimed it. `NotFound` if the delivery does not exist.
    /// Claims are never pruned with their deliveries.
    pub async fn claim_comment(
        &self,
        comment_id: u64,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        self.claim(&format!("comment:{}", comment_key(comment_id)), delivery_id)
            .await
    }

    /// Claims `key` (what a delivery acts on: a comment, or an automatic
    /// review's `repository#pull@head_sha:action`) for `delivery_id`, with the
    /// same answers as [`Store::claim_comment`].
    pub async fn claim(&self, key: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let (key, delivery_id) = (key.to_owned(), delivery_id.to_owned());
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !delivery_exists(&tx, &delivery_id)? {
                return Err(StoreError::not_found("delivery", delivery_id));
            }
            let owner: Option<String> = tx
                .query_row(
                    "SELECT delivery_id FROM claims WHERE key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .optional()?;
            let claimed = match owner {
                Some(owner) => owner == delivery_id,
                None => {
                    tx.execute(
                        "INSERT INTO claims (key, delivery_id, claimed_at) VALUES (?1, ?2, ?3)",
                        params![key, delivery_id, fmt_time(now())],
                    )?;
                    true
                }
            };
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Up to `limit` (clamped to 1..=1000) deliveries still to process —
    /// `Queued` and due (no retry scheduled, or its time has come), or
    /// `Processing` (cut off by a restart) — oldest first.
    pub async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = clamp_limit(limit);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE state IN ('queued', 'processing')
                   AND (state = 'processing' OR next_attempt_at IS NULL OR next_attempt_at <= ?2)
                 ORDER BY received_at, rowid LIMIT ?1"
            ))?;
            let rows = stmt
                .query_map(params![limit, fmt_time(now())], row_to_delivery)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deliveries waiting for a scheduled retry (queued, not yet due).
    pub async fn scheduled_retries(&self) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM deliveries
                 WHERE state = 'queued' AND next_attempt_at > ?1",
                [fmt_time(now())],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// Records a failed attempt: the delivery goes back to `Queued`, due at
    /// `retry_at`, with `note`. Returns the number of failed attempts so far.
    pub async fn record_failed_attempt(
        &self,
        delivery_id: &str,
        note: String,
        retry_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<u32, StoreError> {
        let delivery_id = delivery_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "UPDATE deliveries SET state = 'queued', attempts = attempts + 1,
                        next_attempt_at = ?1, updated_at = ?2, note = ?3
                 WHERE delivery_id = ?4 RETURNING attempts",
                params![fmt_time(retry_at), fmt_time(now()), note, delivery_id],
                |r| r.get::<_, u32>(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::not_found("delivery", delivery_id))
        })
        .await
    }

    /// Sets the state and `updated_at`. `Some(note)` replaces the note;
    /// `None` keeps the previous one.
    pub async fn set_delivery_state(
        &self,
        delivery_id: &str,
        state: DeliveryState,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        let delivery_id = delivery_id.to_owned();
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE deliveries SET state = ?1, updated_at = ?2, note = COALESCE(?3, note)
                 WHERE delivery_id = ?4",
                params![state.as_str(), fmt_time(now()), note, delivery_id],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found("delivery", delivery_id));
            }
            Ok(())
        })
        .await
    }

    /// The delivery with this GUID, or `NotFound`.
    pub async fn get_delivery(&self, delivery_id: &str) -> Result<Delivery, StoreError> {
        let delivery_id = delivery_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE delivery_id = ?1"),
                [&delivery_id],
                row_to_delivery,
            )
            .optional()?
            .ok_or_else(|| StoreError::not_found("delivery", delivery_id))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_delivery(id: &str) -> NewDelivery {
        NewDelivery {
            delivery_id: id.into(),
            event: "issue_comment".into(),
            action: Some("created".into()),
            repository: Some("octo/repo".into()),
            payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn insert_and_get() {
        let s = Store::open_in_memory().await.unwrap();
        let mut nd = new_delivery("d1");
        nd.payload = (0..=255u8).collect();
        s.insert_delivery(nd.clone()).await.unwrap();
        let d = s.get_delivery("d1").await.unwrap();
        assert_eq!(d.delivery_id, "d1");
        assert_eq!(d.event, "issue_comment");
        assert_eq!(d.action.as_deref(), Some("created"));
        assert_eq!(d.repository.as_deref(), Some("octo/repo"));
        assert_eq!(d.payload, nd.payload);
        assert_eq!(d.state, DeliveryState::Queued);
        assert_eq!(d.received_at, d.updated_at);
        assert_eq!(d.note, None);

        let bare = NewDelivery {
            delivery_id: "d2".into(),
            event: "ping".into(),
            action: None,
            repository: None,
            payload: Vec::new(),
        };
        s.insert_delivery(bare).await.unwrap();
        let d2 = s.get_delivery("d2").await.unwrap();
        assert_eq!(d2.action, None);
        assert_eq!(d2.repository, None);
        assert!(d2.payload.is_empty());
    }

    #[tokio::test]
    async fn duplicate_guid_conflicts_and_keeps_original() {
        let s = Store::open_in_memory().await.unwrap();
        s.insert_delivery(new_delivery("d1")).await.unwrap();
        s.set_delivery_state("d1", DeliveryState::Done, None)
            .await
            .unwrap();
        let mut dup = new_delivery("d1");
        dup.payload = b"other".to_vec();
        let err = s.insert_delivery(dup).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                what: "delivery",
                id: "d1".into()
            }
        );
        let d = s.get_delivery("d1").await.unwrap();
        assert_eq!(d.state, DeliveryState::Done);
        assert_eq!(d.payload, new_delivery("d1").payload);
    }

    #[tokio::test]
    async fn invalid_inputs() {
        let s = Store::open_in_memory().await.unwrap();
        assert!(matches!(
            s.insert_delivery(new_delivery("")).await,
            Err(StoreError::Invalid(_))
        ));
        let mut nd = new_delivery("d1");
        nd.event = String::new();
        assert!(matches!(
            s.insert_delivery(nd).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(s.pending_deliveries(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn claim_comment_dedupes() {
        let s = Store::open_in_memory().await.unwrap();
        s.insert_delivery(new_delivery("d1")).await.unwrap();
        s.insert_delivery(new_delivery("d2")).await.unwrap();
        assert!(s.claim_comment(42, "d1").await.unwrap());
        // Re-claiming by the same delivery (e.g. reprocessing after a
        // restart) still succeeds; another delivery is refused.
        assert!(s.claim_comment(42, "d1").await.unwrap());
        assert!(!s.claim_comment(42, "d2").await.unwrap());
        assert!(s.claim_comment(43, "d2").await.unwrap());
        // Extreme ids are kept distinct.
        assert!(s.claim_comment(u64::MAX, "d1").await.unwrap());
        assert!(!s.claim_comment(u64::MAX, "d2").await.unwrap());
        assert!(s.claim_comment(0, "d2").await.unwrap());
        assert!(s.claim_comment(i64::MAX as u64 + 1, "d2").await.unwrap());
        assert!(!s.claim_comment(i64::MAX as u64 + 1, "d1").await.unwrap());
        assert_eq!(
            s.claim_comment(44, "nope").await.unwrap_err(),
            StoreError::not_found("delivery", "nope")
        );
    }

    #[tokio::test]
    async fn failed_attempts_are_counted_and_wait_until_due() {
        let s = Store::open_in_memory().await.unwrap();
        s.insert_delivery(new_delivery("d1")).await.unwrap();
        s.insert_delivery(new_delivery("d2")).await.unwrap();
        let later = now() + chrono::Duration::seconds(60);
        assert_eq!(
            s.record_failed_attempt("d1", "GitHub 502".into(), later)
                .await
                .unwrap(),
            1
        );
        // Not due yet: only d2 is pending, d1 is a scheduled retry.
        let pending = s.pending_deliveries(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].delivery_id, "d2");
        assert_eq!(s.scheduled_retries().await.unwrap(), 1);
        let d1 = s.get_delivery("d1").await.unwrap();
        assert_eq!(
            (d1.state, d1.attempts, d1.note.as_deref()),
            (DeliveryState::Queued, 1, Some("GitHub 502"))
        );
        assert_eq!(d1.next_attempt_at, Some(later));
        // Due: pending again, and the count goes on.
        let earlier = now() - chrono::Duration::seconds(1);
        assert_eq!(
            s.record_failed_attempt("d1", "again".into(), earlier)
                .await
                .unwrap(),
            2
        );
        assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 2);
        s.set_delivery_state("d1", DeliveryState::Dead, Some("gave up".into()))
            .await
            .unwrap();
        assert!(DeliveryState::Dead.is_terminal());
        assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1);
        assert_eq!(
            s.record_failed_attempt("nope", String::new(), now())
                .await
                .unwrap_err(),
            StoreError::not_found("delivery", "nope")
        );
    }

    #[tokio::test]
    async fn pending_and_states() {
        let s = Store::open_in_memory().await.unwrap();
        for id in ["a", "b", "c", "d"] {
            s.insert_delivery(new_delivery(id)).await.unwrap();
        }
        let ids = |v: Vec<Delivery>| v.into_iter().map(|d| d.delivery_id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.pending_deliveries(10).await.unwrap()),
            ["a", "b", "c", "d"]
        );

        s.set_delivery_state("a", DeliveryState::Processing, None)
            .await
            .unwrap();
        s.set_delivery_state("b", DeliveryState::Done, Some("ok".into()))
            .await
            .unwrap();
        s.set_delivery_state("c", DeliveryState::Ignored, Some("bot".into()))
            .await
            .unwrap();
        // Processing (cut off) stays pending, oldest first.
        assert_eq!(ids(s.pending_deliveries(10).await.unwrap()), ["a", "d"]);
        assert_eq!(ids(s.pending_deliveries(0).await.unwrap()), ["a"]);

        let b = s.get_delivery("b").await.unwrap();
        assert_eq!(b.state, DeliveryState::Done);
        assert_eq!(b.note.as_deref(), Some("ok"));
        assert!(b.updated_at >= b.received_at);

        // None keeps the note; Some replaces it.
        s.set_delivery_state("c", DeliveryState::Failed, None)
            .await
            .unwrap();
        let c = s.get_delivery("c").await.unwrap();
        assert_eq!(c.state, DeliveryState::Failed);
        assert_eq!(c.note.as_deref(), Some("bot"));
        s.set_delivery_state("c", DeliveryState::Failed, Some("boom".into()))
            .await
            .unwrap();
        assert_eq!(
            s.get_delivery("c").await.unwrap().note.as_deref(),
            Some("boom")
        );
    }

    #[tokio::test]
    async fn not_found_cases() {
        let s = Store::open_in_memory().await.unwrap();
        let nf = StoreError::not_found("delivery", "x");
        assert_eq!(s.get_delivery("x").await.unwrap_err(), nf);
        assert_eq!(
            s.set_delivery_state("x", DeliveryState::Done, None)
                .await
                .unwrap_err(),
            nf
        );
    }
}

impl Store {
    /// What the delivery recorded of its progress (see
    /// [`Store::set_delivery_progress`]); `None` when nothing yet.
    /// `NotFound` if the delivery does not exist.
    pub async fn delivery_progress(&self, delivery_id: &str) -> Result<Option<String>, StoreError> {
        let delivery_id = delivery_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT progress FROM deliveries WHERE delivery_id = ?1",
                [&delivery_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::not_found("delivery", delivery_id))
        })
        .await
    }

    /// Records a delivery's progress (opaque text, e.g. JSON), committed
    /// before the call returns, so a restart after a crash can resume from
    /// it. `NotFound` if the delivery does not exist.
    pub async fn set_delivery_progress(
        &self,
        delivery_id: &str,
        progress: &str,
    ) -> Result<(), StoreError> {
        let (delivery_id, progress) = (delivery_id.to_owned(), progress.to_owned());
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE deliveries SET progress = ?2 WHERE delivery_id = ?1",
                params![delivery_id, progress],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found("delivery", delivery_id));
            }
            Ok(())
        })
        .await
    }

    /// Deletes finished deliveries (done, failed, ignored, dead) received before
    /// `before`, with their payloads (their claims stay); returns how many.
    /// Queued and processing deliveries are never pruned.
    pub async fn prune_deliveries(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let cutoff = fmt_time(before);
        self.with_conn(move |conn| {
            let removed = conn.execute(
                "DELETE FROM deliveries WHERE received_at < ?1 AND state IN (?2, ?3, ?4, ?5)",
                params![
                    cutoff,
                    DeliveryState::Done.as_str(),
                    DeliveryState::Failed.as_str(),
                    DeliveryState::Ignored.as_str(),
                    DeliveryState::Dead.as_str(),
                ],
            )?;
            Ok(removed as u64)
        })
        .await
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[tokio::test]
    async fn prunes_only_old_finished_deliveries_and_keeps_their_claims() {
        let store = Store::open_in_memory().await.unwrap();
        for (id, state) in [
            ("old-done", DeliveryState::Done),
            ("old-queued", DeliveryState::Queued),
        ] {
            store
                .insert_delivery(NewDelivery {
                    delivery_id: id.into(),
                    event: "issue_comment".into(),
                    action: None,
                    repository: None,
                    payload: b"{}".to_vec(),
                })
                .await
                .unwrap();
            store.set_delivery_state(id, state, None).await.unwrap();
        }
        assert!(store.claim_comment(42, "old-done").await.unwrap());
        // Nothing is older than an hour ago.
        let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        assert_eq!(store.prune_deliveries(hour_ago).await.unwrap(), 0);
        let later = chrono::Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(store.prune_deliveries(later).await.unwrap(), 1);
        assert!(store
            .get_delivery("old-done")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(
            store.get_delivery("old-queued").await.unwrap().state,
            DeliveryState::Queued
        );
        // The claim outlives its delivery: a replay of the comment under
        // another GUID, after the payload was pruned, is still refused.
        assert!(!store.claim_comment(42, "old-queued").await.unwrap());
    }
}
