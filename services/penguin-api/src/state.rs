//! What every handler shares.

use crate::{
    auth::Auth, config::Settings, readings::HealthReadings, stats::Stats, tasks::TaskManager,
};
use chrono::{DateTime, Utc};
use penguin_api_store::Store;
use penguin_bot::{ingress::Ingress, BotContext};
use penguin_llm::{ChatModel, Usage};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Instant,
};

/// Key of the stored current-model setting.
pub const CURRENT_MODEL: &str = "current_model";

/// Token usage since start.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct TokenTotals {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Model calls.
    pub requests: u64,
}

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Storage.
    pub store: Store,
    /// The model, when a provider is configured.
    pub model: Option<Arc<dyn ChatModel>>,
    /// The model used when a request names none.
    pub current_model: Arc<RwLock<String>>,
    /// Request statistics.
    pub stats: Stats,
    /// Keys and sessions.
    pub auth: Arc<Auth>,
    /// The task pool.
    pub tasks: TaskManager,
    /// WebSocket chat streams in progress.
    pub streams_active: Arc<AtomicUsize>,
    /// Token usage since start.
    pub usage: Arc<Mutex<TokenTotals>>,
    /// Process start.
    pub started: Instant,
    /// Process start, wall clock.
    pub started_at: DateTime<Utc>,
    /// Health readings, reused for a second.
    pub health: Arc<HealthReadings>,
    /// The GitHub webhook's receiving end.
    pub ingress: Arc<Ingress>,
    /// What unverified webhook bodies may hold, and how long they may take.
    pub webhook_body: Arc<crate::webhook_body::BodyBudget>,
    /// The GitHub App bot (its worker runs beside the server).
    pub bot: Arc<BotContext>,
}

impl AppState {
    /// The configured model or `MODEL_NOT_CONFIGURED`.
    pub fn model(&self) -> Result<&Arc<dyn ChatModel>, crate::error::ApiError> {
        self.model
            .as_ref()
            .ok_or_else(crate::error::ApiError::model_not_configured)
    }

    /// The model id to use for a request.
    pub fn model_for(&self, requested: Option<&str>) -> String {
        match requested.map(str::trim).filter(|m| !m.is_empty()) {
            Some(model) => model.to_string(),
            None => self
                .current_model
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Adds one model call's usage to the totals.
    pub fn add_usage(&self, usage: Option<Usage>) {
        record_usage(&self.usage, &self.bot.metrics, usage);
    }

    /// Counts a WebSocket chat stream while the guard lives.
    pub fn stream_guard(&self) -> StreamGuard {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.streams_active.clone())
    }
}

/// Decrements the active-stream count when dropped.
pub struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds one model call's usage to `totals` and the tokens metric (the api's
/// own calls and the bot's alike).
pub fn record_usage(
    totals: &Mutex<TokenTotals>,
    metrics: &penguin_bot::BotMetrics,
    usage: Option<Usage>,
) {
    let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
    totals.requests += 1;
    if let Some(u) = usage {
        metrics.model_tokens(u64::from(u.total_tokens));
        totals.prompt_tokens += u64::from(u.prompt_tokens);
        totals.completion_tokens += u64::from(u.completion_tokens);
        totals.total_tokens += u64::from(u.total_tokens);
    }
}
