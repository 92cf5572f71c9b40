//! A value loaded from a file and kept current by a thread.

use crate::{watch_dir, StartError, WatchError, DEBOUNCE, POLL};
use notify::RecommendedWatcher;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};

struct Shared<T> {
    current: RwLock<Arc<T>>,
    last_error: Mutex<Option<String>>,
    generation: AtomicU64,
}

impl<T> Shared<T> {
    fn new(value: T) -> Arc<Shared<T>> {
        Arc::new(Shared {
            current: RwLock::new(Arc::new(value)),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// A value loaded from a file, reloaded when the file changes.
///
/// A change the loader rejects is not put in force: the last good value stays
/// and the reason is logged (`tracing::error!`) and kept in
/// [`Reloadable::last_error`] until the next good content. A file that
/// cannot be read also keeps the last value (the reason is reported the same
/// way). A file that disappears while watched keeps the last value (a warning
/// is logged); it is read again when it reappears. Dropping the
/// `Reloadable` stops watching.
pub struct Reloadable<T> {
    path: PathBuf,
    shared: Arc<Shared<T>>,
    _watcher: Option<RecommendedWatcher>,
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl<T: Default + PartialEq + Send + Sync + 'static> Reloadable<T> {
    /// Loads `path` with `load` and starts watching it. A missing file gives
    /// `T::default()` (and is picked up when it appears, even in a directory
    /// that does not exist yet); a file that cannot be read or that `load`
    /// rejects is an error. Needs no async runtime: a thread named `name`
    /// does the reloading (`name` also labels its log lines). The directory
    /// is watched before the file is read, so no change falls between the
    /// two.
    pub fn start<E, F>(
        path: impl AsRef<Path>,
        name: &str,
        mut load: F,
    ) -> Result<Reloadable<T>, StartError<E>>
    where
        E: Display,
        F: FnMut(&Path, &[u8]) -> Result<T, E> + Send + 'static,
    {
        let path = path.as_ref().to_path_buf();
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        // A full channel already holds a pending wake-up.
        let watcher = watch_dir(&path, move || {
            let _ = tx.try_send(());
        })?;

        let (value, last_seen) = match std::fs::read(&path) {
            Ok(bytes) => (load(&path, &bytes).map_err(StartError::Load)?, Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (T::default(), None),
            Err(source) => {
                return Err(StartError::Read {
                    path: path.clone(),
                    source,
                })
            }
        };
        let shared = Shared::new(value);
        let mut reloader = Reloader {
            path: path.clone(),
            name: name.to_string(),
            shared: shared.clone(),
            last_seen,
            last_read_error: None,
        };
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || reloader.run(rx, &mut load))
            .map_err(|source| WatchError::Thread {
                path: path.clone(),
                source,
            })?;
        tracing::info!(path = %path.display(), watcher = name, "watching the file");
        Ok(Reloadable {
            path,
            shared,
            _watcher: Some(watcher),
        })
    }
}

impl<T> Reloadable<T> {
    /// A `Reloadable` that never reloads, holding `value` (for tests and for
    /// servers without a file). Its path is empty.
    pub fn fixed(value: T) -> Reloadable<T> {
        Reloadable {
            path: PathBuf::new(),
            shared: Shared::new(value),
            _watcher: None,
        }
    }

    /// The value in force (cheap: one read lock and an `Arc` clone).
    pub fn current(&self) -> Arc<T> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times a changed value was put in force.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Why the file's latest content was rejected or could not be read,
    /// while it is (cleared by the next good read).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Reloader<T> {
    path: PathBuf,
    name: String,
    shared: Arc<Shared<T>>,
    /// The bytes last read (`None`: the file was missing).
    last_seen: Option<Vec<u8>>,
    last_read_error: Option<String>,
}

impl<T: PartialEq> Reloader<T> {
    fn run<E: Display>(
        &mut self,
        events: Receiver<()>,
        load: &mut impl FnMut(&Path, &[u8]) -> Result<T, E>,
    ) {
        loop {
            match events.recv_timeout(POLL) {
                Ok(()) => {
                    std::thread::sleep(DEBOUNCE);
                    while events.try_recv().is_ok() {}
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The `Reloadable` (and so the notify watcher) was dropped.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.check(load);
        }
    }

    fn check<E: Display>(&mut self, load: &mut impl FnMut(&Path, &[u8]) -> Result<T, E>) {
        let path = self.path.display().to_string();
        let watcher = self.name.as_str();
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let error = e.to_string();
                if self.last_read_error.as_ref() != Some(&error) {
                    tracing::error!(%path, watcher, %error, "cannot read the file; keeping the last good value");
                    self.last_read_error = Some(error.clone());
                }
                self.shared
                    .set_error(Some(format!("cannot read {path}: {error}")));
                return;
            }
        };
        // After a read error, judge the content again even if it is the same
        // as before, so the error it left is replaced.
        let recovered = self.last_read_error.take().is_some();
        if bytes == self.last_seen && !recovered {
            return;
        }
        self.last_seen = bytes.clone();
        let Some(bytes) = bytes else {
            tracing::warn!(%path, watcher, "the file is gone; keeping the last value");
            return;
        };
        match load(&self.path, &bytes) {
            Ok(value) => {
                self.shared.set_error(None);
                let mut current = self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                if **current != value {
                    *current = Arc::new(value);
                    drop(current);
                    self.shared.generation.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(%path, watcher, "file reloaded");
                }
            }
            Err(error) => {
                tracing::error!(%path, watcher, %error, "change rejected; keeping the last good value");
                self.shared.set_error(Some(error.to_string()));
            }
        }
    }
}
