//! Versioned schema migrations, tracked with `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes the database from version `i` to `i + 1`.
//! Each runs in its own transaction together with the version bump, so a
//! crash mid-migration leaves the previous version intact. Never edit a
//! released migration: append a new one.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE conversations (
        id          TEXT PRIMARY KEY NOT NULL,
        title       TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL,
        last_active TEXT NOT NULL,
        metadata    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX conversations_last_active ON conversations (last_active);

    CREATE TABLE messages (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        role            TEXT NOT NULL,
        content         TEXT NOT NULL,
        timestamp       TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    );

    CREATE TABLE checkpoints (
        id              TEXT PRIMARY KEY NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        message_count   INTEGER NOT NULL
    );
    CREATE INDEX checkpoints_conversation ON checkpoints (conversation_id, created_at);
    CREATE INDEX checkpoints_created ON checkpoints (created_at);

    CREATE TABLE checkpoint_messages (
        checkpoint_id TEXT NOT NULL REFERENCES checkpoints (id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL,
        role          TEXT NOT NULL,
        content       TEXT NOT NULL,
        timestamp     TEXT NOT NULL,
        PRIMARY KEY (checkpoint_id, seq)
    );

    CREATE TABLE tasks (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        description TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        started_at  TEXT,
        finished_at TEXT,
        metadata    TEXT NOT NULL DEFAULT '{}',
        result      TEXT
    );
    CREATE INDEX tasks_created ON tasks (created_at);
    CREATE INDEX tasks_state ON tasks (state);

    CREATE TABLE task_logs (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id   TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        timestamp TEXT NOT NULL,
        message   TEXT NOT NULL
    );
    CREATE INDEX task_logs_task ON task_logs (task_id, id);

    CREATE TABLE settings (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE deliveries (
        delivery_id TEXT PRIMARY KEY NOT NULL,
        event       TEXT NOT NULL,
        action      TEXT,
        repository  TEXT,
        payload     BLOB NOT NULL,
        state       TEXT NOT NULL,
        received_at TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        note        TEXT
    );
    CREATE INDEX deliveries_state ON deliveries (state, received_at);

    CREATE TABLE claimed_comments (
        comment_id  INTEGER PRIMARY KEY NOT NULL,
        delivery_id TEXT NOT NULL REFERENCES deliveries (delivery_id) ON DELETE CASCADE,
        claimed_at  TEXT NOT NULL
    );
    "#,
    // 2: what a delivery already did on GitHub (task, check run, progress
    // comment), so a delivery resumed after a crash reuses them.
    r#"
    ALTER TABLE deliveries ADD COLUMN progress TEXT;
    "#,
    // 3: failed attempts and when the next one is due, so transient failures
    // are retried with backoff and a delivery that keeps failing ends `dead`.
    r#"
    ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
    "#,
    // 4: claims (a comment's id, an automatic review's pull request and head)
    // outlive the delivery payloads that are pruned: a captured body replayed
    // with a new GUID after the retention window must not run again.
    r#"
    CREATE TABLE claims (
        key         TEXT PRIMARY KEY NOT NULL,
        delivery_id TEXT NOT NULL,
        claimed_at  TEXT NOT NULL
    );
    INSERT INTO claims (key, delivery_id, claimed_at)
        SELECT 'comment:' || comment_id, delivery_id, claimed_at FROM claimed_comments;
    DROP TABLE claimed_comments;
    "#,
    // 5: pull request reviews (the head each covered, so the next one reviews
    // only what is new), the findings they posted (fingerprints, so a finding
    // is posted once and its thread told when it is addressed), and model
    // tokens spent per repository per day (the daily budget).
    r#"
    CREATE TABLE reviews (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        repository  TEXT NOT NULL,
        number      INTEGER NOT NULL,
        head_sha    TEXT NOT NULL,
        from_sha    TEXT,
        review_id   INTEGER,
        model       TEXT NOT NULL,
        tokens      INTEGER NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 1,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX reviews_pull ON reviews (repository, number, id);

    CREATE TABLE review_findings (
        repository  TEXT NOT NULL,
        number      INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        path        TEXT NOT NULL,
        line        INTEGER NOT NULL,
        side        TEXT NOT NULL,
        anchor      TEXT NOT NULL,
        title       TEXT NOT NULL,
        comment_id  INTEGER,
        state       TEXT NOT NULL,
        sha         TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (repository, number, fingerprint)
    );

    CREATE TABLE model_usage (
        repository  TEXT NOT NULL,
        day         TEXT NOT NULL,
        tokens      INTEGER NOT NULL,
        PRIMARY KEY (repository, day)
    );
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::Db(format!("bad schema version {v}")))
}

/// Brings the database up to [`SCHEMA_VERSION`]; a no-op when it is already
/// there. Refuses a database written by a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current = user_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Db(format!(
            "database schema version {current} is newer than this build supports ({SCHEMA_VERSION})"
        )));
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let target = idx + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        if user_version(&tx)? as usize >= target {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Db(format!("migration to version {target} failed: {e}")))?;
        tx.pragma_update(None, "user_version", target as i64)?;
        tx.commit()?;
        tracing::info!(version = target, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrates_fresh_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(user_version(&conn).unwrap(), 0);
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            table_names(&conn),
            [
                "checkpoint_messages",
                "checkpoints",
                "claims",
                "conversations",
                "deliveries",
                "messages",
                "model_usage",
                "review_findings",
                "reviews",
                "settings",
                "task_logs",
                "tasks"
            ]
        );
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 'now')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let v: String = conn
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v");
    }

    #[test]
    fn refuses_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", i64::from(SCHEMA_VERSION) + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Db(m) if m.contains("newer")));
    }

    #[test]
    fn failed_migration_leaves_version_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A conflicting table makes migration 1 fail part-way.
        conn.execute_batch("CREATE TABLE settings (x INTEGER);")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Db(m) if m.contains("version 1")));
        assert_eq!(user_version(&conn).unwrap(), 0);
        // Nothing of the failed migration survived.
        assert_eq!(table_names(&conn), ["settings"]);
    }
}
