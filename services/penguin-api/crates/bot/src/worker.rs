//! Drains stored deliveries: at start (work a restart cut off) and whenever
//! the ingress stores one. A few at a time; never the same one twice at once.
//!
//! A delivery that fails transiently is tried again with backoff
//! (`github.delivery_retries`), resuming with what it already made on
//! GitHub; one that runs out of attempts ends `dead` (metric, error log,
//! failed task). The schedule is kept in the store and in memory, so retries
//! stay bounded even when the store cannot record them.

use crate::{
    config::DeliveryRetries,
    feedback::DeliveryProgress,
    stages::{self, Outcome},
    BotContext, BotError,
};
use penguin_api_store::{Delivery, DeliveryState, TaskState};
use penguin_github::RetryPolicy;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Deliveries processed at once.
const CONCURRENCY: usize = 4;
/// Look again this often even without a wake-up.
const POLL: Duration = Duration::from_secs(2);
/// How often old deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// GitHub lets deliveries be redelivered for three days: their GUIDs are
/// kept at least that long whatever `retention_days` says.
const MIN_RETENTION_DAYS: i64 = 3;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Failed attempts the worker knows of, by delivery: how many, and when the
/// next one is due. Mirrors the store, and stands in for it when the store
/// cannot record an outcome.
#[derive(Default)]
struct Schedule {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Schedule {
    /// Whether `id` may run now.
    fn due(&self, id: &str) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(id).is_none_or(|(_, at)| *at <= Instant::now())
    }

    /// Failed attempts of `delivery` so far (the larger of both records).
    fn attempts(&self, delivery: &Delivery) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&delivery.delivery_id)
            .map_or(delivery.attempts, |(n, _)| (*n).max(delivery.attempts))
    }

    fn set(&self, id: &str, attempts: u32, due: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.insert(id.to_string(), (attempts, due));
    }

    /// Holds back `delivery`, whose outcome the store could not record: it
    /// runs again after a backoff and counts as an attempt; out of attempts,
    /// it is held until the process restarts. Returns the attempts so far.
    fn hold_unrecorded(&self, delivery: &Delivery, retries: &DeliveryRetries) -> u32 {
        let attempts = self.attempts(delivery) + 1;
        let wait = if attempts >= retries.max_attempts {
            MAX_BACKOFF * 24
        } else {
            Duration::from_millis(retries.backoff_ms)
                .saturating_mul(1 << attempts.min(16))
                .min(MAX_BACKOFF)
        };
        self.set(&delivery.delivery_id, attempts, Instant::now() + wait);
        attempts
    }

    fn clear(&self, id: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(id);
    }
}

/// Runs the worker until the process ends.
pub async fn run(ctx: Arc<BotContext>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let schedule: Arc<Schedule> = Arc::default();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut last_prune: Option<Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            prune(&ctx).await;
            last_prune = Some(Instant::now());
        }
        let pending = match ctx.store.pending_deliveries(64).await {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%err, "cannot read queued deliveries");
                Vec::new()
            }
        };
        ctx.metrics.queue_depth(pending.len());
        for delivery in pending {
            if !schedule.due(&delivery.delivery_id)
                || !in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(delivery.delivery_id.clone())
            {
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (ctx, in_flight, schedule) = (ctx.clone(), in_flight.clone(), schedule.clone());
            tokio::spawn(async move {
                let id = delivery.delivery_id.clone();
                process(&ctx, &schedule, delivery).await;
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                drop(permit);
            });
        }
        tokio::select! {
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Deletes finished deliveries older than the configured retention.
async fn prune(ctx: &BotContext) {
    let days = i64::from(ctx.config.current().github.retention_days).max(MIN_RETENTION_DAYS);
    let before = chrono::Utc::now() - chrono::Duration::days(days);
    match ctx.store.prune_deliveries(before).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, retention_days = days, "old deliveries pruned"),
        Err(err) => tracing::warn!(%err, "cannot prune old deliveries"),
    }
}

async fn process(ctx: &BotContext, schedule: &Schedule, delivery: Delivery) {
    let span = tracing::info_span!("delivery", delivery_id = %delivery.delivery_id, event = %delivery.event);
    let _ = ctx
        .store
        .set_delivery_state(&delivery.delivery_id, DeliveryState::Processing, None)
        .await;
    let lag = (chrono::Utc::now() - delivery.received_at)
        .to_std()
        .unwrap_or_default();
    ctx.metrics.start_lag(lag);
    let outcome = stages::handle(ctx, &delivery)
        .instrument(span.clone())
        .await;
    let (next, note, result) = match outcome {
        Ok(Outcome::Done(note)) => (DeliveryState::Done, note, "done"),
        Ok(Outcome::Ignored(note)) => (DeliveryState::Ignored, note, "ignored"),
        Err(err) if err.is_transient() => {
            retry_later(ctx, schedule, &delivery, &err)
                .instrument(span)
                .await;
            return;
        }
        Err(err) => (DeliveryState::Failed, err.redacted(), "failed"),
    };
    span.in_scope(|| tracing::info!(result, %note, "delivery processed"));
    // Recorded before it is counted: whoever sees the count sees the state.
    record(ctx, schedule, &delivery, next, note)
        .instrument(span)
        .await;
    ctx.metrics.processed(&delivery.event, result);
}

/// Schedules another attempt of `delivery` after a transient failure, or
/// gives up on it when its attempts are spent.
async fn retry_later(ctx: &BotContext, schedule: &Schedule, delivery: &Delivery, err: &BotError) {
    let retries = ctx.config.current().github.delivery_retries.clone();
    let attempts = schedule.attempts(delivery) + 1;
    let note = err.redacted();
    if attempts >= retries.max_attempts {
        tracing::error!(attempts, error = %note, "delivery failed on every attempt; giving up (dead)");
        let note = format!("gave up after {attempts} attempt(s): {note}");
        fail_task(ctx, delivery, &note).await;
        record(ctx, schedule, delivery, DeliveryState::Dead, note).await;
        ctx.metrics.processed(&delivery.event, "dead");
        return;
    }
    let policy = RetryPolicy {
        initial_backoff: Duration::from_millis(retries.backoff_ms),
        max_backoff: MAX_BACKOFF,
        ..RetryPolicy::default()
    };
    let wait = policy.backoff(attempts - 1);
    tracing::warn!(attempts, wait_ms = wait.as_millis() as u64, error = %note, "delivery failed transiently; trying again later");
    schedule.set(&delivery.delivery_id, attempts, Instant::now() + wait);
    let due = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    if let Err(store) = ctx
        .store
        .record_failed_attempt(&delivery.delivery_id, note, due)
        .await
    {
        tracing::error!(%store, "cannot record the failed attempt; retrying from memory");
    }
    ctx.metrics.processed(&delivery.event, "retry");
    let wake = ctx.wake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        wake.notify_one();
    });
}

/// Records the final state. When the store cannot, the delivery is held in
/// memory and tried (and counted) again later, so it never loops unbounded.
async fn record(
    ctx: &BotContext,
    schedule: &Schedule,
    delivery: &Delivery,
    state: DeliveryState,
    note: String,
) {
    match ctx
        .store
        .set_delivery_state(&delivery.delivery_id, state, Some(note))
        .await
    {
        Ok(()) => schedule.clear(&delivery.delivery_id),
        Err(err) => {
            let retries = ctx.config.current().github.delivery_retries.clone();
            let attempts = schedule.hold_unrecorded(delivery, &retries);
            tracing::error!(%err, attempts, "cannot record the delivery's outcome; holding it");
        }
    }
}

/// Marks the delivery's task (if it made one) failed with `note`.
async fn fail_task(ctx: &BotContext, delivery: &Delivery, note: &str) {
    let progress = DeliveryProgress::load(ctx, &delivery.delivery_id).await;
    if let Some(task_id) = progress.task_id {
        let _ = ctx
            .store
            .finish_task(
                &task_id,
                TaskState::Failed,
                serde_json::json!({ "ok": false, "dead": true, "summary": note }),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            delivery_id: id.into(),
            event: "issue_comment".into(),
            action: None,
            repository: None,
            payload: Vec::new(),
            state: DeliveryState::Processing,
            received_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            note: None,
            attempts: 0,
            next_attempt_at: None,
        }
    }

    /// When the store cannot record an outcome, the delivery is not rerun
    /// every poll (posting each time): it waits, counts, and stops.
    #[test]
    fn an_unrecordable_delivery_is_held_back_and_runs_a_bounded_number_of_times() {
        let schedule = Schedule::default();
        let retries = DeliveryRetries {
            max_attempts: 3,
            backoff_ms: 60_000,
        };
        let d = delivery("d1");
        assert!(schedule.due("d1"));
        assert_eq!(schedule.hold_unrecorded(&d, &retries), 1);
        assert!(!schedule.due("d1"), "held for a backoff");
        assert!(schedule.due("d2"), "others are not held");
        assert_eq!(schedule.hold_unrecorded(&d, &retries), 2);
        assert_eq!(schedule.hold_unrecorded(&d, &retries), 3);
        let held_until = schedule.failures.lock().unwrap()["d1"].1;
        assert!(
            held_until > Instant::now() + Duration::from_secs(23 * 3600),
            "out of attempts"
        );
        // What the store remembers counts too.
        let mut stored = delivery("d3");
        stored.attempts = 2;
        assert_eq!(schedule.hold_unrecorded(&stored, &retries), 3);
        schedule.clear("d1");
        assert!(schedule.due("d1"));
    }
}
