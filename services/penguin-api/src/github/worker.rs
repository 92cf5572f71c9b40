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

/// Runs the worker until the process ends.
pub async fn run(state: AppState) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
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
