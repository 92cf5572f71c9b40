//! What the bot works with, built once at start-up and handed to every
//! stage: storage, GitHub access, git credentials, the model, the runner,
//! the hot-reloaded configuration, the security policy and the metrics.
//! Nothing else of the api reaches the bot.

use crate::{
    config::ConfigWatcher,
    git::GitAuth,
    github_api::{AccessCache, GitHubAccess},
    limits::CommandLimiter,
    metrics::BotMetrics,
    BotError, BotResult,
};
use penguin_agent::{RunnerFactory, SecurityPolicy};
use penguin_api_store::Store;
use penguin_llm::{ChatMessage, ChatModel, ChatRequest, Role, Usage};
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock, Weak},
};
use tokio::sync::Notify;

/// Called with every model call's token usage (the api keeps totals).
pub type UsageSink = Arc<dyn Fn(Option<Usage>) + Send + Sync>;

/// The model the bot asks, with the current model name and where usage goes.
#[derive(Clone)]
pub struct ModelAccess {
    model: Option<Arc<dyn ChatModel>>,
    current: Arc<RwLock<String>>,
    on_usage: UsageSink,
}

impl ModelAccess {
    /// `model` (none when no provider is configured), asked for the model
    /// named in `current`; `on_usage` sees every call's usage.
    pub fn new(
        model: Option<Arc<dyn ChatModel>>,
        current: Arc<RwLock<String>>,
        on_usage: UsageSink,
    ) -> Self {
        ModelAccess {
            model,
            current,
            on_usage,
        }
    }

    /// The model and the name to ask it for, for an agent run.
    pub fn chat(&self) -> BotResult<(Arc<dyn ChatModel>, String)> {
        let model = self.model.clone().ok_or(BotError::NoModel)?;
        let name = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok((model, name))
    }

    /// Records the usage of calls made outside [`ModelAccess::ask`].
    pub fn record_usage(&self, usage: Option<penguin_llm::Usage>) {
        (self.on_usage)(usage);
    }

    /// One completion: `system` instructions, then `prompt` (untrusted text
    /// must already be stripped of hidden content); the answer and the
    /// tokens it used. Errors are redacted.
    pub async fn ask(&self, system: &str, prompt: &str) -> BotResult<(String, u64)> {
        let (model, name) = self.chat()?;
        let answer = model
            .complete(ChatRequest {
                model: name,
                messages: vec![
                    ChatMessage::new(Role::System, system),
                    ChatMessage::new(Role::User, prompt),
                ],
                ..Default::default()
            })
            .await?;
        (self.on_usage)(answer.usage);
        let tokens = answer.usage.map_or(0, |u| u64::from(u.total_tokens));
        Ok((answer.message.content, tokens))
    }
}

/// Locks by key (a pull request), made when first wanted and forgotten when
/// nobody holds or waits for them.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock; held until the guard is dropped.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, weak| weak.strong_count() > 0);
            match locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// Today's date (UTC), the budget's day.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// The bot's narrow view of the server.
pub struct BotContext {
    /// Deliveries, tasks, claims and pending approvals.
    pub store: Store,
    /// The server's `github` and `hooks` configuration, hot-reloaded.
    pub config: Arc<ConfigWatcher>,
    /// GitHub REST with tokens from the tokenator.
    pub github: GitHubAccess,
    /// Commenters' permissions and team memberships, reused for a minute.
    pub access: AccessCache,
    /// Credentials for git over https.
    pub git: GitAuth,
    /// The model.
    pub model: ModelAccess,
    /// Where repository commands run.
    pub runners: RunnerFactory,
    /// The server's security policy (what the bot may edit and run).
    pub policy: Arc<SecurityPolicy>,
    /// Metrics.
    pub metrics: Arc<BotMetrics>,
    /// Per-repository and per-user command caps.
    pub limiter: Mutex<CommandLimiter>,
    /// The api's public base URL (links to tasks in check runs and comments).
    pub public_url: String,
    /// Where fixes clone repositories (one directory per task).
    pub work_root: PathBuf,
    /// Wakes the worker when a delivery was stored.
    pub wake: Arc<Notify>,
    /// One review of a pull request at a time.
    pub reviews_in_progress: KeyedLocks,
}

impl BotContext {
    /// Adds `tokens` to what `repository` spent today (UTC), for the daily
    /// budget. Best effort: a failing store must not fail the command
    /// whose tokens are already spent.
    pub async fn charge(&self, repository: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        if let Err(e) = self
            .store
            .add_model_usage(repository, &today(), tokens)
            .await
        {
            tracing::warn!(error = %e, "could not record the repository's model usage");
        }
    }

    /// [`ModelAccess::ask`] on behalf of `repository`, whose budget pays.
    pub async fn ask(&self, repository: &str, system: &str, prompt: &str) -> BotResult<String> {
        let (text, tokens) = self.model.ask(system, prompt).await?;
        self.charge(repository, tokens).await;
        Ok(text)
    }

    /// The model tokens `repository` spent today (UTC).
    pub async fn tokens_spent_today(&self, repository: &str) -> BotResult<u64> {
        Ok(self.store.model_usage(repository, &today()).await?)
    }

    /// The link to a task in the api.
    pub fn task_url(&self, task_id: &str) -> String {
        format!(
            "{}/api/v1/tasks/{task_id}",
            self.public_url.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_key_is_locked_once_and_other_keys_are_free() {
        let locks = Arc::new(KeyedLocks::default());
        let held = locks.lock("o/r#1").await;
        // Another key does not wait.
        let _other = tokio::time::timeout(Duration::from_secs(1), locks.lock("o/r#2"))
            .await
            .expect("another key is free");
        // The same key waits until the first guard goes.
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("o/r#1").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released")
            .unwrap();
    }
}
