//! penguin-api: the Penguin web API (and, in later work, the GitHub App bot).
//!
//! [`Api::build`] opens storage, loads the security policy and binds the
//! listener; [`Api::serve`] runs until shutdown, then drains requests and tasks.

pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod origin;
pub mod readings;
pub mod request_id;
pub mod routes;
pub mod selftest;
pub mod state;
pub mod stats;
pub mod tasks;
pub mod uploads;
pub mod webhook_body;

use auth::Auth;
use axum::{middleware, Router};
use chrono::Utc;
use config::Settings;
use penguin_agent::{config::SecurityPolicy, tools::ToolRegistry, RunnerFactory};
use penguin_api_store::Store;
use penguin_bot::{
    github_api::GitHubAccess, ingress::Ingress, BotContext, BotMetrics, CommandLimiter, ModelAccess,
};
use state::{AppState, TokenTotals, CURRENT_MODEL};
use stats::Stats;
use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    sync::{atomic::AtomicUsize, Arc, Mutex, RwLock},
    time::Instant,
};
use tasks::TaskManager;
use tokio::net::TcpListener;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Storage could not be opened.
    #[error("cannot open storage in PENGUIN_DATA_DIR: {0}")]
    Store(#[from] penguin_api_store::StoreError),
    /// The server's config file is invalid.
    #[error("PENGUIN_CONFIG_PATH: {0}")]
    Policy(#[from] penguin_agent::config::ConfigError),
    /// The server's config file's `github`/`hooks` sections are invalid.
    #[error("PENGUIN_CONFIG_PATH: {0}")]
    BotConfig(#[from] penguin_bot::config::ConfigError),
    /// A secret's variable or file could not be used.
    #[error("{0}")]
    Secret(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl BuildError {
    /// True when an operator-supplied setting is at fault (exit 64).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            BuildError::Policy(_) | BuildError::BotConfig(_) | BuildError::Secret(_)
        )
    }
}

/// A built API with its listener bound.
pub struct Api {
    state: AppState,
    listener: TcpListener,
}

impl Api {
    /// Opens storage (marking tasks a restart cut off as interrupted), loads
    /// the security policy and the model, and binds the listener.
    pub async fn build(settings: Settings) -> Result<Api, BuildError> {
        let store = Store::open(&settings.data_dir).await?;
        let interrupted = store.mark_interrupted_tasks().await?;
        if !interrupted.is_empty() {
            tracing::warn!(tasks = ?interrupted, "tasks cut off by the previous shutdown are marked interrupted");
        }
        let always_denied: Vec<_> = [&settings.tokenator_socket, &settings.git_credentials_path]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let policy = Arc::new(SecurityPolicy::load(&settings.config_path, &always_denied)?);
        let mut runners = RunnerFactory::new(
            settings.runner,
            settings.runner_image.clone(),
            policy.clone(),
        );
        if let Some(remote) = &settings.remote_runner {
            let client = penguin_runner_client::RunnerClient::new(
                &remote.addr,
                remote.token_file.clone(),
                remote.ca_file.as_deref(),
            )
            .map_err(|e| BuildError::Secret(format!("PENGUIN_RUNNER_CA_FILE: {e}")))?;
            runners = runners.with_remote(client);
        }
        let remote_runner = runners.remote_client().cloned();
        let runner = runners.runner(settings.workspace.clone());
        let tools = Arc::new(
            ToolRegistry::new(settings.workspace.clone(), policy.clone()).with_runner(runner),
        );
        let model = settings.llm.as_ref().map(penguin_llm::build);
        let current = match store.get_setting(CURRENT_MODEL).await? {
            Some(saved) => saved,
            None => settings
                .llm
                .as_ref()
                .map(|l| l.default_model.clone())
                .unwrap_or_default(),
        };
        let watcher = Arc::new(penguin_bot::config::ConfigWatcher::start(
            &settings.config_path,
        )?);
        let bot_config = watcher.current();
        // Each secret from its variable or from the file `<variable>_FILE` names.
        let webhook = &bot_config.github.webhook;
        let mut values = std::collections::HashMap::new();
        for name in [&webhook.secret_env, &webhook.previous_secret_env] {
            let value = penguin_config::secret_var(name).map_err(BuildError::Secret)?;
            values.insert(name.as_str(), value);
        }
        let secrets = webhook.secrets(|name| values.get(name).cloned().flatten());
        for secret in &secrets {
            penguin_telemetry::register_secret(&String::from_utf8_lossy(secret));
        }
        if secrets.is_empty() {
            tracing::warn!("no webhook secret configured: GitHub deliveries are refused");
        }
        let limiter = CommandLimiter::new(
            bot_config.github.bot.commands_per_hour_per_repo,
            bot_config.github.bot.commands_per_hour_per_user,
        );
        let metrics = Arc::new(BotMetrics::new());
        let wake = Arc::new(tokio::sync::Notify::new());
        let ingress = Arc::new(Ingress::new(
            secrets,
            settings.github_repository.clone(),
            watcher.clone(),
            store.clone(),
            metrics.clone(),
            wake.clone(),
        ));
        let current_model = Arc::new(RwLock::new(current));
        let usage = Arc::new(Mutex::new(TokenTotals::default()));
        let bot = Arc::new(BotContext {
            store: store.clone(),
            config: watcher,
            github: GitHubAccess::new(settings.tokenator_socket.clone(), &settings.github_api_url),
            access: Default::default(),
            // Fixes push with tokens scoped to one repository, never the file's.
            git: settings.git_auth().scoped_only(),
            model: ModelAccess::new(model.clone(), current_model.clone(), {
                let (usage, metrics) = (usage.clone(), metrics.clone());
                Arc::new(move |u| state::record_usage(&usage, &metrics, u))
            }),
            runners,
            policy: policy.clone(),
            metrics,
            limiter: Mutex::new(limiter),
            public_url: settings.public_url.clone(),
            work_root: settings.data_dir.join("work"),
            wake,
            reviews_in_progress: Default::default(),
        });
        let started = Instant::now();
        let stats = Stats::new();
        let tasks = TaskManager::new(
            store.clone(),
            model.clone(),
            tools,
            stats.clone(),
            settings.max_concurrent_tasks,
        );
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        // A quarter of the budget (at most 16 MiB) for small bodies.
        let small = (settings.webhook_body_budget_bytes / 4).min(16 * 1024 * 1024);
        let webhook_body = Arc::new(webhook_body::BodyBudget::new(
            small,
            settings.webhook_body_budget_bytes - small,
            webhook_body::SMALL_BODY,
            penguin_bot::ingress::MAX_BODY,
            settings.webhook_read_timeout,
        ));
        let state = AppState {
            auth: Arc::new(Auth::new(
                settings.auth_enabled,
                settings.api_keys.clone(),
                settings.auth_failures_per_minute,
            )),
            health: Arc::new(
                readings::HealthReadings::new(store.clone(), settings.tokenator_socket.clone())
                    .with_runner(remote_runner),
            ),
            settings: Arc::new(settings),
            store,
            model,
            current_model,
            stats,
            tasks,
            streams_active: Arc::new(AtomicUsize::new(0)),
            usage,
            started,
            started_at: Utc::now(),
            ingress,
            webhook_body,
            bot,
        };
        Ok(Api { state, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; then stops accepting new
    /// connections, gives running tasks the grace period (cancelling and
    /// marking the rest), and lets in-flight requests finish, for at most the
    /// grace period plus five seconds.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Api { state, listener } = self;
        let tasks = state.tasks.clone();
        let grace = state.settings.shutdown_grace;
        // Deliveries a restart cut off are resumed first, then new ones as they arrive.
        let worker = tokio::spawn(penguin_bot::worker::run(state.bot.clone()));
        let uploads = tokio::spawn(prune_uploads(uploads::UploadStore::new(
            state.settings.data_dir.join("uploads"),
            state.settings.upload_quota_bytes,
            state.settings.upload_retention,
        )));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let drain_tasks = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            // Running tasks finish or are cancelled; their HTTP callers then get answers.
            tasks.shutdown(grace).await;
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // The peer address is what failed key checks are throttled by.
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future();
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            () = stopped(stop_rx) => {
                match tokio::time::timeout(grace + std::time::Duration::from_secs(5), &mut server).await {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!("requests still open after the grace period; closing them"),
                }
            }
        }
        let _ = drain_tasks.await;
        worker.abort();
        uploads.abort();
        Ok(())
    }
}

/// Deletes expired uploads at start and every hour.
async fn prune_uploads(uploads: uploads::UploadStore) {
    loop {
        match uploads.prune().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired uploads deleted"),
            Err(err) => tracing::warn!(%err, "cannot prune uploads"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = routes::api(&state);
    api.merge(routes::docs(openapi))
        .fallback(error::not_found_route)
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_auth,
        ))
        .layer(middleware::from_fn(error::error_shape))
        // Outside auth: preflights carry no credentials.
        .layer(origin::cors_layer(&state.settings.cors_origins))
        .layer(middleware::from_fn_with_state(
            state.stats.clone(),
            stats::track,
        ))
        .layer(middleware::from_fn(request_id::request_span))
        .with_state(state)
}
