//! The task pool: a bounded number of agent runs at once, each stored, its
//! events fanned out to WebSocket watchers, and cut off cleanly at shutdown.

use crate::{error::ApiError, stats::Stats};
use axum::http::StatusCode;
use penguin_agent::{
    agent::{run_agent, AgentEvent, AgentOutcome, OutcomeStatus, TaskSpec},
    tools::ToolRegistry,
};
use penguin_api_store::{NewTask, Store, TaskState};
use penguin_llm::ChatModel;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::{broadcast, watch, Semaphore};

/// How many tasks may wait for a worker, per worker.
const QUEUE_PER_WORKER: usize = 10;

/// What a caller asks to run.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// Short name.
    pub name: String,
    /// What to do.
    pub description: String,
    /// Model id.
    pub model: String,
    /// Iteration cap.
    pub max_iterations: u32,
    /// Time limit.
    pub time_limit: Duration,
    /// Extra metadata stored with the task.
    pub metadata: Value,
}

/// An event of a running task, as sent to watchers.
#[derive(Clone, Debug)]
pub struct TaskEvent {
    /// `task_started`, `task_progress`, `message`, `tool`, `task_completed`, `error`.
    pub event: &'static str,
    /// Event data.
    pub data: Value,
}

/// A finished task's summary (the `execute-sync` answer).
#[derive(Clone, Debug)]
pub struct TaskResult {
    /// Task id.
    pub task_id: String,
    /// Stored state.
    pub state: TaskState,
    /// The agent's outcome.
    pub outcome: AgentOutcome,
    /// Wall time.
    pub execution_time: Duration,
}

struct Inner {
    store: Store,
    model: Option<Arc<dyn ChatModel>>,
    tools: Arc<ToolRegistry>,
    stats: Stats,
    workers: Arc<Semaphore>,
    max: usize,
    active: AtomicUsize,
    queued: AtomicUsize,
    watchers: Mutex<HashMap<String, broadcast::Sender<TaskEvent>>>,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    cancel: watch::Sender<bool>,
}

/// A worker of the pool held by an agentic chat turn; freed when dropped.
pub struct PoolSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

impl TaskManager {
    /// A pool of `max` workers.
    pub fn new(
        store: Store,
        model: Option<Arc<dyn ChatModel>>,
        tools: Arc<ToolRegistry>,
        stats: Stats,
        max: usize,
    ) -> Self {
        TaskManager {
            inner: Arc::new(Inner {
                store,
                model,
                tools,
                stats,
                workers: Arc::new(Semaphore::new(max)),
                max,
                active: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                watchers: Mutex::default(),
                running: Mutex::default(),
                cancel: watch::Sender::new(false),
            }),
        }
    }

    /// The tools agent runs may use.
    pub fn tools(&self) -> &Arc<ToolRegistry> {
        &self.inner.tools
    }

    /// Pool size.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Tasks running now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Tasks waiting for a worker.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Takes a worker for work outside the stored tasks (an agentic chat
    /// turn) while the slot lives, or 503 `AT_CAPACITY` (recoverable) when
    /// every worker is busy: such work never waits behind the queue.
    pub fn try_reserve(&self) -> Result<PoolSlot, ApiError> {
        let permit = self
            .inner
            .workers
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "AT_CAPACITY",
                    format!(
                        "all {} task workers (PENGUIN_MAX_CONCURRENT_TASKS) are busy",
                        self.inner.max
                    ),
                )
                .suggest("Retry when running tasks have finished, or send the turn without max_iterations (no tools).")
            })?;
        self.inner.active.fetch_add(1, Ordering::Relaxed);
        Ok(PoolSlot {
            _permit: permit,
            inner: self.inner.clone(),
        })
    }

    /// Stores and starts a task; returns its id and a receiver of its events.
    pub async fn submit(
        &self,
        request: TaskRequest,
    ) -> Result<(String, broadcast::Receiver<TaskEvent>), ApiError> {
        let model = self
            .inner
            .model
            .clone()
            .ok_or_else(ApiError::model_not_configured)?;
        if self.queued() >= self.inner.max * QUEUE_PER_WORKER {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "AT_CAPACITY",
                format!("{} tasks are already waiting for a worker", self.queued()),
            )
            .suggest("Retry when running tasks have finished."));
        }
        let record = self
            .inner
            .store
            .create_task(NewTask {
                name: request.name.clone(),
                description: request.description.clone(),
                metadata: json!({
                    "model": request.model,
                    "max_iterations": request.max_iterations,
                    "time_limit_secs": request.time_limit.as_secs(),
                    "extra": request.metadata,
                }),
            })
            .await?;
        let task_id = record.id.clone();
        let (events, receiver) = broadcast::channel(256);
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.clone(), events.clone());
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let id = task_id.clone();
        let handle = tokio::spawn(async move {
            run_one(inner.clone(), model, id.clone(), request, events).await;
            inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            inner
                .watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.clone(), handle);
        Ok((task_id, receiver))
    }

    /// Runs a task and waits for it.
    pub async fn run_to_end(&self, request: TaskRequest) -> Result<TaskResult, ApiError> {
        let (task_id, mut events) = self.submit(request).await?;
        loop {
            match events.recv().await {
                Ok(event) if event.event == "task_completed" || event.event == "error" => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        let handle = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task_id);
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        let record = self.inner.store.get_task(&task_id).await?;
        let result = record.result.clone().unwrap_or(Value::Null);
        let outcome: AgentOutcome =
            serde_json::from_value(result.get("outcome").cloned().unwrap_or(Value::Null))
                .map_err(|_| ApiError::internal("reading the task result"))?;
        let execution_time = Duration::from_secs_f64(
            result
                .get("execution_time")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        );
        Ok(TaskResult {
            task_id,
            state: record.state,
            outcome,
            execution_time,
        })
    }

    /// Shutdown: lets running tasks finish within `grace`, then cancels the
    /// rest; the store marks anything still open as interrupted.
    pub async fn shutdown(&self, grace: Duration) {
        let handles: Vec<_> = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        if handles.is_empty() {
            return;
        }
        tracing::info!(
            tasks = handles.len(),
            grace_secs = grace.as_secs(),
            "waiting for running tasks"
        );
        let all = futures::future::join_all(handles);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!("grace period over: cancelling the remaining tasks");
            let _ = self.inner.cancel.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        }
        if let Ok(ids) = self.inner.store.mark_interrupted_tasks().await {
            if !ids.is_empty() {
                tracing::warn!(?ids, "tasks marked interrupted");
            }
        }
    }
}

async fn run_one(
    inner: Arc<Inner>,
    model: Arc<dyn ChatModel>,
    task_id: String,
    request: TaskRequest,
    events: broadcast::Sender<TaskEvent>,
) {
    let span = tracing::info_span!("task", task_id = %task_id);
    let _permit = inner.workers.clone().acquire_owned().await;
    inner.queued.fetch_sub(1, Ordering::Relaxed);
    inner.active.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let store = inner.store.clone();
    let _ = store.set_task_state(&task_id, TaskState::Running).await;
    let send = |event: &'static str, data: Value| {
        let _ = events.send(TaskEvent { event, data });
    };
    send(
        "task_started",
        json!({ "task_id": task_id, "name": request.name }),
    );
    span.in_scope(|| tracing::info!(name = %request.name, "task started"));

    let (agent_tx, mut agent_rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = TaskSpec {
        name: request.name.clone(),
        description: request.description.clone(),
        model: request.model.clone(),
        max_iterations: request.max_iterations,
        time_limit: request.time_limit,
        context: Vec::new(),
    };
    let tools = inner.tools.clone();
    let cancel = inner.cancel.subscribe();
    let agent = async { run_agent(model.as_ref(), &tools, spec, agent_tx, cancel).await };
    let forward = async {
        while let Some(event) = agent_rx.recv().await {
            let (name, data, log) = match event {
                AgentEvent::Started => continue,
                AgentEvent::Progress {
                    iteration,
                    max_iterations,
                    message,
                } => (
                    "task_progress",
                    json!({ "task_id": task_id, "iteration": iteration, "max_iterations": max_iterations, "message": message }),
                    format!("iteration {iteration}/{max_iterations}: {message}"),
                ),
                AgentEvent::Tool(result) => (
                    "tool",
                    json!({ "task_id": task_id, "action": result.action, "result": result.result, "status": result.status }),
                    format!("tool {} → {:?}", result.action, result.status),
                ),
                AgentEvent::Message(text) => (
                    "message",
                    json!({ "task_id": task_id, "content": text }),
                    "assistant message".to_string(),
                ),
                AgentEvent::Token(_) => continue,
            };
            let _ = store.append_task_log(&task_id, &log).await;
            send(name, data);
        }
    };
    let (outcome, ()) = tokio::join!(agent, forward);
    let execution_time = started.elapsed();
    let state = match outcome.status {
        OutcomeStatus::Completed => TaskState::Completed,
        OutcomeStatus::TimedOut => TaskState::TimedOut,
        OutcomeStatus::Cancelled => TaskState::Interrupted,
        OutcomeStatus::Failed | OutcomeStatus::IterationLimit => TaskState::Failed,
    };
    let result = json!({
        "outcome": outcome,
        "execution_time": execution_time.as_secs_f64(),
    });
    if let Err(err) = store.finish_task(&task_id, state, result).await {
        tracing::error!(parent: &span, error = %err, "cannot store the task result");
    }
    inner.stats.record_task(execution_time);
    inner.active.fetch_sub(1, Ordering::Relaxed);
    span.in_scope(|| {
        tracing::info!(
            state = state.as_str(),
            iterations = outcome.iterations,
            "task finished"
        )
    });
    if let Some(error) = outcome
        .error
        .clone()
        .filter(|_| state != TaskState::Completed)
    {
        send("error", json!({ "task_id": task_id, "message": error }));
    }
    send(
        "task_completed",
        json!({
            "task_id": task_id,
            "status": state.as_str(),
            "response": outcome.response,
            "iterations": outcome.iterations,
            "execution_time": execution_time.as_secs_f64(),
            "action_results": outcome.action_results,
        }),
    );
}
