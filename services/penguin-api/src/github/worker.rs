//! Drains stored deliveries: at start (work a restart cut off) and whenever
//! the webhook route stores one. A few at a time; never the same one twice at once.

use super::commands::{self, Outcome};
use crate::state::AppState;
use penguin_api_store::{Delivery, DeliveryState};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
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

/// Runs the worker until the process ends.
pub async fn run(state: AppState) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            prune(&state).await;
            last_prune = Some(std::time::Instant::now());
        }
        let pending = match state.store.pending_deliveries(64).await {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%err, "cannot read queued deliveries");
                Vec::new()
            }
        };
        state.bot_metrics.queue_depth(pending.len());
        for delivery in pending {
            if !in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(delivery.delivery_id.clone())
            {
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (state, in_flight) = (state.clone(), in_flight.clone());
            tokio::spawn(async move {
                let id = delivery.delivery_id.clone();
                process(&state, delivery).await;
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                drop(permit);
            });
        }
        tokio::select! {
            _ = state.github.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Deletes finished deliveries older than the configured retention.
async fn prune(state: &AppState) {
    let days =
        i64::from(state.github.config.current().github.retention_days).max(MIN_RETENTION_DAYS);
    let before = chrono::Utc::now() - chrono::Duration::days(days);
    match state.store.prune_deliveries(before).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, retention_days = days, "old deliveries pruned"),
        Err(err) => tracing::warn!(%err, "cannot prune old deliveries"),
    }
}

async fn process(state: &AppState, delivery: Delivery) {
    let span = tracing::info_span!("delivery", delivery_id = %delivery.delivery_id, event = %delivery.event);
    let store = &state.store;
    let _ = store
        .set_delivery_state(&delivery.delivery_id, DeliveryState::Processing, None)
        .await;
    let lag = (chrono::Utc::now() - delivery.received_at)
        .to_std()
        .unwrap_or_default();
    state.bot_metrics.start_lag(lag);
    let outcome = commands::handle(state, &delivery)
        .instrument(span.clone())
        .await;
    let (next, note, result) = match outcome {
        Ok(Outcome::Done(note)) => (DeliveryState::Done, note, "done"),
        Ok(Outcome::Ignored(note)) => (DeliveryState::Ignored, note, "ignored"),
        Err(err) => (
            DeliveryState::Failed,
            penguin_telemetry::redact(&err).into_owned(),
            "failed",
        ),
    };
    span.in_scope(|| tracing::info!(result, %note, "delivery processed"));
    state.bot_metrics.processed(&delivery.event, result);
    if let Err(err) = store
        .set_delivery_state(&delivery.delivery_id, next, Some(note))
        .await
    {
        span.in_scope(|| tracing::error!(%err, "cannot record the delivery's outcome"));
    }
}
