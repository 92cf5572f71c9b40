//! What every handler shares.

use crate::{
    auth::Auth, config::Settings, github::GitHubIntegration, metrics::BotMetrics, stats::Stats,
    tasks::TaskManager,
};
use chrono::{DateTime, Utc};
use penguin_api_store::Store;
use penguin_bot::limits::CommandLimiter;
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

/// Collaborator permission answers: (repository, login) → (permission, fetched at).
pub type PermissionCache = std::collections::HashMap<(String, String), (Option<String>, Instant)>;

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
    /// CPU sample for `cpu_percent`: (wall instant, CPU seconds).
    pub cpu_sample: Arc<Mutex<Option<(Instant, f64)>>>,
    /// Health readings reused for a second.
    pub health_cache: Arc<Mutex<Option<crate::routes::health::Readings>>>,
    /// The GitHub bot's webhook state.
    pub github: Arc<GitHubIntegration>,
    /// The bot's metrics.
    pub bot_metrics: Arc<BotMetrics>,
    /// Live GitHub clients per repository (shared scoped tokens).
    pub token_users: Arc<crate::github::client::TokenUsers>,
    /// The server's security policy (tools, runners, the bot's edits).
    pub policy: Arc<penguin_agent::SecurityPolicy>,
    /// Collaborator permissions by (repository, login), reused for a minute.
    pub permission_cache: Arc<Mutex<PermissionCache>>,
    /// Per-repository and per-user command caps.
    pub bot_limiter: Arc<Mutex<CommandLimiter>>,
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
        let mut totals = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        totals.requests += 1;
        if let Some(u) = usage {
            self.bot_metrics.model_tokens(u64::from(u.total_tokens));
            totals.prompt_tokens += u64::from(u.prompt_tokens);
            totals.completion_tokens += u64::from(u.completion_tokens);
            totals.total_tokens += u64::from(u.total_tokens);
        }
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
