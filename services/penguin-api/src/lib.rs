//! penguin-api: the Penguin web API. This crate starts with health; the chat,
//! conversation, task and GitHub bot routes build on the same router.

pub mod config;
mod health;

use axum::{routing::get, Router};
use std::time::{Instant, SystemTime};

/// State shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    started: Instant,
    started_at: SystemTime,
}

impl AppState {
    /// State for a server starting now.
    pub fn new() -> Self {
        AppState {
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health::health))
        .with_state(state)
}
