//! Reloading the server's configuration when its file changes, with
//! [`penguin_reload::Reloadable`] (which watches the file's directory, so
//! in-place writes, rename-over saves and Kubernetes ConfigMap `..data`
//! symlink swaps are all seen, and polls as a safety net).

use super::{ConfigError, ServerConfig};
use penguin_reload::{Reloadable, StartError, WatchError};
use std::path::Path;
use std::sync::Arc;

/// The server's configuration, reloaded when its file changes.
///
/// A change that does not parse or validate is rejected: the last good
/// configuration stays in force and the reason is logged
/// (`tracing::error!`) and kept in [`ConfigWatcher::last_error`]. A file
/// that disappears while watched also keeps the last configuration (a warning
/// is logged); it is read again when it reappears. Dropping the watcher stops
/// watching.
pub struct ConfigWatcher {
    inner: Reloadable<ServerConfig>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Loads `path` (a missing file gives the defaults; an invalid one is an
    /// error) and starts watching it. Needs no async runtime: a thread
    /// named `penguin-bot-config` does the reloading.
    pub fn start(path: impl AsRef<Path>) -> Result<ConfigWatcher, ConfigError> {
        let inner = Reloadable::start(path, "penguin-bot-config", parse).map_err(|e| match e {
            StartError::Load(e) => e,
            StartError::Read { path, source } => ConfigError::Io { path, source },
            StartError::Watch(WatchError::Notify { path, source }) => ConfigError::Watch {
                path,
                reason: source.to_string(),
            },
            StartError::Watch(WatchError::Thread { path, source }) => ConfigError::Watch {
                path,
                reason: format!("cannot start the reload thread: {source}"),
            },
        })?;
        Ok(ConfigWatcher { inner })
    }

    /// A watcher that never reloads, holding `config` (for tests and for
    /// servers without a configuration file).
    pub fn fixed(config: ServerConfig) -> ConfigWatcher {
        ConfigWatcher {
            inner: Reloadable::fixed(config),
        }
    }

    /// The configuration in force (cheap: one read lock and an `Arc` clone).
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.current()
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// How many times a changed configuration was put in force.
    pub fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// Why the file's latest content was rejected, while it is (cleared by
    /// the next good one).
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error()
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
