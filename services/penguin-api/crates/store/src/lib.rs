//! Durable storage for penguin-api: conversations and their checkpoints,
//! agent tasks, key/value settings, GitHub webhook deliveries, pull request
//! reviews and their findings, and model usage per repository, in one
//! SQLite database (`{data_dir}/penguin.db`) that survives restarts.
//!
//! The database runs in WAL mode with foreign keys on, a busy timeout and
//! `synchronous = FULL` (a committed write is on disk before the method
//! returns, which the webhook receiver relies on before answering 200). The
//! schema is migrated at open time (see `PRAGMA user_version`).
//!
//! A [`Store`] is cheap to clone; all clones share one connection behind a
//! mutex. Every method is `async` and does its SQLite work on tokio's blocking
//! pool, so callers on the runtime never block. Methods that write several
//! rows do so in one transaction.

#![warn(missing_docs)]

mod checkpoints;
mod conversations;
mod deliveries;
mod error;
mod reviews;
mod schema;
mod settings;
mod tasks;
mod types;
mod util;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::Connection;

pub use conversations::{HistoryMessage, HistoryPage, HistoryQuery};
pub use error::StoreError;
pub use reviews::{FindingState, NewReview, ReviewRecord, StoredFinding};
pub use schema::SCHEMA_VERSION;
pub use tasks::INTERRUPTED_LOG_LINE;
pub use types::{
    Checkpoint, Conversation, ConversationSummary, Delivery, DeliveryState, Message, NewDelivery,
    NewMessage, NewTask, TaskLogEntry, TaskRecord, TaskState, MESSAGE_ROLES,
};
pub use util::MAX_LIMIT;

/// The database file name inside the data directory.
pub const DB_FILE_NAME: &str = "penguin.db";

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to the database. Clones share the same connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
    /// Delivery inserts waiting for the next group commit.
    pending_deliveries: Mutex<Vec<deliveries::PendingDelivery>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `{data_dir}/penguin.db` and migrates it.
    ///
    /// A missing `data_dir` is created with mode 0700 (an existing one is left
    /// as it is); a new database file is created with mode 0600.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir = data_dir.to_path_buf();
        let (conn, path) = run_blocking(move || open_file(&dir)).await?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store::from_conn(conn, Some(path)))
    }

    /// Opens a private in-memory database (for tests); it vanishes on drop.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        let conn = run_blocking(|| {
            let mut conn = Connection::open_in_memory()?;
            configure(&conn, false)?;
            schema::migrate(&mut conn)?;
            Ok(conn)
        })
        .await?;
        Ok(Store::from_conn(conn, None))
    }

    fn from_conn(conn: Connection, path: Option<PathBuf>) -> Store {
        Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                pending_deliveries: Mutex::default(),
            }),
        }
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `SELECT 1`, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0))?;
            if one == 1 {
                Ok(())
            } else {
                Err(StoreError::Db(format!("SELECT 1 returned {one}")))
            }
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            // A panic while holding the lock cannot leave a half-done write
            // behind (an open transaction rolls back when dropped), so a
            // poisoned lock is safe to reuse.
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
    }
}

async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
}

fn open_file(dir: &Path) -> Result<(Connection, PathBuf), StoreError> {
    create_private_dir(dir)?;
    let path = dir.join(DB_FILE_NAME);
    create_private_file(&path)?;
    let mut conn = Connection::open(&path)
        .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
    configure(&conn, true)?;
    schema::migrate(&mut conn)?;
    Ok((conn, path))
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        StoreError::Io(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Creates the database file, empty, with mode 0600 if it does not exist (an
/// empty file is a valid empty SQLite database; SQLite gives the WAL and
/// shared-memory files the same mode).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map(drop)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))
}

fn configure(conn: &Connection, on_disk: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    let fk: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if !fk {
        return Err(StoreError::Db("cannot enable foreign keys".into()));
    }
    if on_disk {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Db(format!(
                "cannot enable WAL mode (journal_mode is {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ping_in_memory() {
        let store = Store::open_in_memory().await.unwrap();
        store.ping().await.unwrap();
        assert!(store.path().is_none());
        assert!(format!("{store:?}").contains("Store"));
    }

    #[tokio::test]
    async fn open_creates_private_dir_and_wal_db() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("data");
        let store = Store::open(&dir).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(store.path().unwrap(), dir.join(DB_FILE_NAME));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            let mode = std::fs::metadata(dir.join(DB_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (mode, fk, version) = store
            .with_conn(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let fk: bool = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                Ok((mode, fk, schema::user_version(c)?))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(fk);
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn open_on_a_file_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).await.unwrap_err();
        assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    }

    #[tokio::test]
    async fn open_on_garbage_db_is_a_db_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DB_FILE_NAME), vec![0x42u8; 8192]).unwrap();
        let err = Store::open(tmp.path()).await.unwrap_err();
        assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_poisoned_lock_is_recovered() {
        let store = Store::open_in_memory().await.unwrap();
        let inner = Arc::clone(&store.inner);
        let _ = std::thread::spawn(move || {
            let _guard = inner.conn.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(store.inner.conn.is_poisoned());
        store.ping().await.unwrap();
    }
}
