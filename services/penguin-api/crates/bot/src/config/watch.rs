//! Reloading the server's configuration when its file changes.
//!
//! The file's directory is watched (not recursively) so that in-place
//! writes, editors' rename-over saves and Kubernetes ConfigMap updates (the
//! `..data` symlink swapped to a new `..<timestamp>` directory) are all seen:
//! events on the file's name or on names starting with `..` trigger a
//! re-read. A slow poll catches changes no event reports (a symlink whose
//! target lives in another directory). The file's bytes are compared with the
//! last ones seen, so spurious wake-ups cost one read and nothing else.

use super::{ConfigError, ServerConfig};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Coalesces bursts of events (an editor's save, a symlink swap).
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Re-check even without events.
const POLL: Duration = Duration::from_secs(10);

struct Shared {
    current: RwLock<Arc<ServerConfig>>,
    last_error: Mutex<Option<String>>,
    generation: AtomicU64,
}

/// The server's configuration, reloaded when its file changes.
///
/// A change that does not parse or validate is rejected: the last good
/// configuration stays in force and the reason is logged
/// (`tracing::error!`) and kept in [`ConfigWatcher::last_error`]. A file
/// that disappears while watched also keeps the last configuration (a warning
/// is logged); it is read again when it reappears. Dropping the watcher stops
/// watching.
pub struct ConfigWatcher {
    path: PathBuf,
    shared: Arc<Shared>,
    _watcher: Option<RecommendedWatcher>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Loads `path` (a missing file gives the defaults; an invalid one is an
    /// error) and starts watching it. Needs no async runtime: a thread
    /// named `penguin-bot-config` does the reloading.
    pub fn start(path: impl AsRef<Path>) -> Result<ConfigWatcher, ConfigError> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name: OsString = path.file_name().map(Into::into).unwrap_or_default();
        let watch_error = |e: notify::Error| ConfigError::Watch {
            path: path.clone(),
            reason: e.to_string(),
        };

        // Watch first, then read, so no change falls between the two.
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let relevant = event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with(".."))
            });
            if relevant {
                // A full channel already holds a pending wake-up.
                let _ = tx.try_send(());
            }
        })
        .map_err(watch_error)?;
        if dir.is_dir() {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(watch_error)?;
        } else {
            // No config directory (a server run with the defaults): nothing to
            // watch yet; the poll picks the file up if it appears.
            tracing::info!(dir = %dir.display(), "configuration directory absent; polling for it");
        }

        let (config, last_seen) = match std::fs::read(&path) {
            Ok(bytes) => (parse(&path, &bytes)?, Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (ServerConfig::default(), None),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.clone(),
                    source,
                })
            }
        };
        let shared = Arc::new(Shared {
            current: RwLock::new(Arc::new(config)),
            last_error: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let mut reloader = Reloader {
            path: path.clone(),
            shared: shared.clone(),
            last_seen,
            last_read_error: None,
        };
        std::thread::Builder::new()
            .name("penguin-bot-config".into())
            .spawn(move || reloader.run(rx))
            .map_err(|e| ConfigError::Watch {
                path: path.clone(),
                reason: format!("cannot start the reload thread: {e}"),
            })?;
        tracing::info!(path = %path.display(), "watching the configuration");
        Ok(ConfigWatcher {
            path,
            shared,
            _watcher: Some(watcher),
        })
    }

    /// A watcher that never reloads, holding `config` (for tests and for
    /// servers without a configuration file).
    pub fn fixed(config: ServerConfig) -> ConfigWatcher {
        ConfigWatcher {
            path: PathBuf::new(),
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(config)),
                last_error: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
            _watcher: None,
        }
    }

    /// The configuration in force (cheap: one read lock and an `Arc` clone).
    pub fn current(&self) -> Arc<ServerConfig> {
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

    /// How many times a changed configuration was put in force.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Why the file's latest content was rejected, while it is (cleared by
    /// the next good one).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<ServerConfig, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
        file: Some(path.to_path_buf()),
        key: String::new(),
        reason: format!("not UTF-8: {e}"),
    })?;
    ServerConfig::from_yaml(text).map_err(|e| e.in_file(path))
}

struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    /// The bytes last read (`None`: the file was missing).
    last_seen: Option<Vec<u8>>,
    last_read_error: Option<String>,
}

impl Reloader {
    fn run(&mut self, events: Receiver<()>) {
        loop {
            match events.recv_timeout(POLL) {
                Ok(()) => {
                    std::thread::sleep(DEBOUNCE);
                    while events.try_recv().is_ok() {}
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The watcher was dropped.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.check();
        }
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn check(&mut self) {
        let path = self.path.display().to_string();
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let error = e.to_string();
                if self.last_read_error.as_ref() != Some(&error) {
                    tracing::error!(%path, %error, "cannot read the configuration; keeping the last good one");
                    self.last_read_error = Some(error.clone());
                }
                self.set_error(Some(format!("cannot read {path}: {error}")));
                return;
            }
        };
        self.last_read_error = None;
        if bytes == self.last_seen {
            return;
        }
        self.last_seen = bytes.clone();
        let Some(bytes) = bytes else {
            tracing::warn!(%path, "the configuration file is gone; keeping the last configuration");
            return;
        };
        match parse(&self.path, &bytes) {
            Ok(config) => {
                self.set_error(None);
                let mut current = self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                if **current != config {
                    *current = Arc::new(config);
                    drop(current);
                    self.shared.generation.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(%path, "configuration reloaded");
                }
            }
            Err(error) => {
                tracing::error!(%path, %error, "configuration change rejected; keeping the last good configuration");
                self.set_error(Some(error.to_string()));
            }
        }
    }
}
