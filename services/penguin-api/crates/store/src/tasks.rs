//! Tasks (agent runs) and their logs.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    util::{
        clamp_limit, col_enum, col_json, col_json_opt, col_time, col_time_opt, fmt_time,
        metadata_or_empty, new_id, now,
    },
    NewTask, Store, StoreError, TaskLogEntry, TaskRecord, TaskState,
};

/// The log line [`Store::mark_interrupted_tasks`] writes.
pub const INTERRUPTED_LOG_LINE: &str = "interrupted by a restart";

const TASK_COLUMNS: &str =
    "id, name, description, state, created_at, started_at, finished_at, metadata, result";

fn row_to_task(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        state: col_enum(r, 3)?,
        created_at: col_time(r, 4)?,
        started_at: col_time_opt(r, 5)?,
        finished_at: col_time_opt(r, 6)?,
        metadata: col_json(r, 7)?,
        result: col_json_opt(r, 8)?,
        log: Vec::new(),
    })
}

fn insert_log(conn: &Connection, id: &str, at: &str, message: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO task_logs (task_id, timestamp, message) VALUES (?1, ?2, ?3)",
        params![id, at, message],
    )?;
    Ok(())
}

fn task_exists(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.query_row("SELECT 1 FROM tasks WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .ok_or_else(|| StoreError::not_found("task", id))
}

/// Applies a state change and the timestamps that go with it; `NotFound` if
/// the task does not exist.
fn update_state(conn: &Connection, id: &str, state: TaskState, at: &str) -> Result<(), StoreError> {
    let sql = match state {
        TaskState::Queued => "UPDATE tasks SET state = ?1, finished_at = NULL WHERE id = ?2",
        TaskState::Running => {
            "UPDATE tasks SET state = ?1, started_at = COALESCE(started_at, ?3), finished_at = NULL
             WHERE id = ?2"
        }
        _ => "UPDATE tasks SET state = ?1, finished_at = ?3 WHERE id = ?2",
    };
    let mut stmt = conn.prepare_cached(sql)?;
    // Positional parameters: bind only what the statement uses.
    let changed = if stmt.parameter_count() == 3 {
        stmt.execute(params![state.as_str(), id, at])?
    } else {
        stmt.execute(params![state.as_str(), id])?
    };
    if changed == 0 {
        return Err(StoreError::not_found("task", id));
    }
    Ok(())
}

impl Store {
    /// Creates a task in state `Queued` (`null` metadata is stored as `{}`).
    pub async fn create_task(&self, new: NewTask) -> Result<TaskRecord, StoreError> {
        self.with_conn(move |conn| {
            let task = TaskRecord {
                id: new_id("task_"),
                name: new.name,
                description: new.description,
                state: TaskState::Queued,
                created_at: now(),
                started_at: None,
                finished_at: None,
                metadata: metadata_or_empty(new.metadata),
                result: None,
                log: Vec::new(),
            };
            conn.execute(
                "INSERT INTO tasks (id, name, description, state, created_at, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    task.id,
                    task.name,
                    task.description,
                    task.state.as_str(),
                    fmt_time(task.created_at),
                    serde_json::to_string(&task.metadata)?,
                ],
            )?;
            Ok(task)
        })
        .await
    }

    /// Sets the state. `Running` sets `started_at` (the first time only) and
    /// clears `finished_at`; a terminal state sets `finished_at` to now;
    /// `Queued` clears `finished_at`. Any transition is allowed.
    pub async fn set_task_state(&self, id: &str, state: TaskState) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| update_state(conn, &id, state, &fmt_time(now())))
            .await
    }

    /// Appends a line to the task's log.
    pub async fn append_task_log(&self, id: &str, message: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        let message = message.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            task_exists(&tx, &id)?;
            insert_log(&tx, &id, &fmt_time(now()), &message)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records the outcome: `state` (which must be terminal, else `Invalid`),
    /// `result` and `finished_at`.
    pub async fn finish_task(
        &self,
        id: &str,
        state: TaskState,
        result: serde_json::Value,
    ) -> Result<(), StoreError> {
        if !state.is_terminal() {
            return Err(StoreError::Invalid(format!(
                "finish_task needs a terminal state, not {state}"
            )));
        }
        let id = id.to_owned();
        let result = serde_json::to_string(&result)
            .map_err(|e| StoreError::Invalid(format!("task result: {e}")))?;
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE tasks SET state = ?1, result = ?2, finished_at = ?3 WHERE id = ?4",
                params![state.as_str(), result, fmt_time(now()), id],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found("task", id));
            }
            Ok(())
        })
        .await
    }

    /// The task with its whole log, oldest line first.
    pub async fn get_task(&self, id: &str) -> Result<TaskRecord, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let mut task = conn
                .query_row(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
                    [&id],
                    row_to_task,
                )
                .optional()?
                .ok_or_else(|| StoreError::not_found("task", id.as_str()))?;
            let mut stmt = conn.prepare_cached(
                "SELECT timestamp, message FROM task_logs WHERE task_id = ?1 ORDER BY id",
            )?;
            task.log = stmt
                .query_map([&id], |r| {
                    Ok(TaskLogEntry {
                        timestamp: col_time(r, 0)?,
                        message: r.get(1)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(task)
        })
        .await
    }

    /// Up to `limit` (clamped to 1..=1000) tasks, newest first, without logs.
    pub async fn list_tasks(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let limit = clamp_limit(limit);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT ?1"
            ))?;
            let rows = stmt
                .query_map([limit], row_to_task)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// For start-up: every `Queued` or `Running` task becomes `Interrupted`,
    /// with `finished_at` set and the log line "interrupted by a restart", in
    /// one transaction. Returns their ids, oldest first.
    pub async fn mark_interrupted_tasks(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ids: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM tasks WHERE state IN ('queued', 'running')
                     ORDER BY created_at, rowid",
                )?;
                let ids = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                ids
            };
            let at = fmt_time(now());
            for id in &ids {
                update_state(&tx, id, TaskState::Interrupted, &at)?;
                insert_log(&tx, id, &at, INTERRUPTED_LOG_LINE)?;
            }
            tx.commit()?;
            if !ids.is_empty() {
                tracing::warn!(count = ids.len(), "tasks interrupted by a restart");
            }
            Ok(ids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_task(name: &str) -> NewTask {
        NewTask {
            name: name.into(),
            description: format!("{name} description"),
            metadata: json!({"n": name}),
        }
    }

    #[tokio::test]
    async fn create_and_get() {
        let s = Store::open_in_memory().await.unwrap();
        let t = s.create_task(new_task("a")).await.unwrap();
        assert!(t.id.starts_with("task_"));
        assert_eq!(t.state, TaskState::Queued);
        assert_eq!(t.started_at, None);
        assert_eq!(t.finished_at, None);
        assert_eq!(t.result, None);
        assert_eq!(t.metadata, json!({"n": "a"}));
        assert_eq!(s.get_task(&t.id).await.unwrap(), t);

        let n = s
            .create_task(NewTask {
                name: String::new(),
                description: String::new(),
                metadata: serde_json::Value::Null,
            })
            .await
            .unwrap();
        assert_eq!(s.get_task(&n.id).await.unwrap().metadata, json!({}));
    }

    #[tokio::test]
    async fn lifecycle_sets_timestamps_and_log() {
        let s = Store::open_in_memory().await.unwrap();
        let t = s.create_task(new_task("a")).await.unwrap();
        s.set_task_state(&t.id, TaskState::Running).await.unwrap();
        let running = s.get_task(&t.id).await.unwrap();
        assert_eq!(running.state, TaskState::Running);
        let started = running.started_at.expect("started_at");
        assert!(started >= t.created_at);
        assert_eq!(running.finished_at, None);

        s.append_task_log(&t.id, "step 1").await.unwrap();
        s.append_task_log(&t.id, "").await.unwrap();
        s.append_task_log(&t.id, "step 3").await.unwrap();
        // Running again keeps the first start time.
        s.set_task_state(&t.id, TaskState::Running).await.unwrap();
        assert_eq!(s.get_task(&t.id).await.unwrap().started_at, Some(started));

        s.finish_task(&t.id, TaskState::Completed, json!({"ok": true}))
            .await
            .unwrap();
        let done = s.get_task(&t.id).await.unwrap();
        assert_eq!(done.state, TaskState::Completed);
        assert_eq!(done.result, Some(json!({"ok": true})));
        assert_eq!(done.started_at, Some(started));
        assert!(done.finished_at.unwrap() >= started);
        let lines: Vec<_> = done.log.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(lines, ["step 1", "", "step 3"]);
        assert!(done
            .log
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp));
    }

    #[tokio::test]
    async fn terminal_state_via_set_task_state() {
        let s = Store::open_in_memory().await.unwrap();
        let t = s.create_task(new_task("a")).await.unwrap();
        s.set_task_state(&t.id, TaskState::Cancelled).await.unwrap();
        let got = s.get_task(&t.id).await.unwrap();
        assert_eq!(got.state, TaskState::Cancelled);
        assert!(got.finished_at.is_some());
        assert_eq!(got.started_at, None);
        assert_eq!(got.result, None);
        // Re-queueing clears finished_at.
        s.set_task_state(&t.id, TaskState::Queued).await.unwrap();
        assert_eq!(s.get_task(&t.id).await.unwrap().finished_at, None);
    }

    #[tokio::test]
    async fn finish_needs_terminal_state() {
        let s = Store::open_in_memory().await.unwrap();
        let t = s.create_task(new_task("a")).await.unwrap();
        for st in [TaskState::Queued, TaskState::Running] {
            let err = s.finish_task(&t.id, st, json!(null)).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        }
        assert_eq!(s.get_task(&t.id).await.unwrap().state, TaskState::Queued);
        s.finish_task(&t.id, TaskState::TimedOut, json!(null))
            .await
            .unwrap();
        let got = s.get_task(&t.id).await.unwrap();
        assert_eq!(got.state, TaskState::TimedOut);
        assert_eq!(got.result, Some(json!(null)));
    }

    #[tokio::test]
    async fn not_found_cases() {
        let s = Store::open_in_memory().await.unwrap();
        let nf = StoreError::not_found("task", "task_x");
        assert_eq!(s.get_task("task_x").await.unwrap_err(), nf);
        assert_eq!(
            s.set_task_state("task_x", TaskState::Running)
                .await
                .unwrap_err(),
            nf
        );
        assert_eq!(
            s.set_task_state("task_x", TaskState::Queued)
                .await
                .unwrap_err(),
            nf
        );
        assert_eq!(
            s.set_task_state("task_x", TaskState::Failed)
                .await
                .unwrap_err(),
            nf
        );
        assert_eq!(s.append_task_log("task_x", "m").await.unwrap_err(), nf);
        assert_eq!(
            s.finish_task("task_x", TaskState::Failed, json!({}))
                .await
                .unwrap_err(),
            nf
        );
    }

    #[tokio::test]
    async fn list_newest_first_without_logs() {
        let s = Store::open_in_memory().await.unwrap();
        let a = s.create_task(new_task("a")).await.unwrap();
        let b = s.create_task(new_task("b")).await.unwrap();
        let c = s.create_task(new_task("c")).await.unwrap();
        s.append_task_log(&a.id, "line").await.unwrap();
        let list = s.list_tasks(10).await.unwrap();
        let ids: Vec<_> = list.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [c.id.as_str(), b.id.as_str(), a.id.as_str()]);
        assert!(list.iter().all(|t| t.log.is_empty()));
        assert_eq!(s.list_tasks(0).await.unwrap().len(), 1);
        assert_eq!(s.list_tasks(2).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn mark_interrupted() {
        let s = Store::open_in_memory().await.unwrap();
        let queued = s.create_task(new_task("q")).await.unwrap();
        let running = s.create_task(new_task("r")).await.unwrap();
        let done = s.create_task(new_task("d")).await.unwrap();
        let failed = s.create_task(new_task("f")).await.unwrap();
        s.set_task_state(&running.id, TaskState::Running)
            .await
            .unwrap();
        s.finish_task(&done.id, TaskState::Completed, json!(1))
            .await
            .unwrap();
        s.set_task_state(&failed.id, TaskState::Failed)
            .await
            .unwrap();
        let before_done = s.get_task(&done.id).await.unwrap();

        let ids = s.mark_interrupted_tasks().await.unwrap();
        assert_eq!(ids, [queued.id.clone(), running.id.clone()]);
        for id in &ids {
            let t = s.get_task(id).await.unwrap();
            assert_eq!(t.state, TaskState::Interrupted);
            assert!(t.finished_at.is_some());
            assert_eq!(t.log.last().unwrap().message, INTERRUPTED_LOG_LINE);
        }
        assert!(s.get_task(&running.id).await.unwrap().started_at.is_some());
        assert_eq!(s.get_task(&done.id).await.unwrap(), before_done);
        assert_eq!(
            s.get_task(&failed.id).await.unwrap().state,
            TaskState::Failed
        );
        // A second call finds nothing.
        assert!(s.mark_interrupted_tasks().await.unwrap().is_empty());
    }
}
