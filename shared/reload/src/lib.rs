//! Reloadable files, shared by the tokenator (App key, token and JWKS files,
//! caller policy, TLS certificate, kept credential files) and the api (the
//! server's hot-reloaded `.penguin/config.yml`).
//!
//! A file's directory is watched with `notify`, not recursively, so in-place
//! writes, editors' rename-over saves, deletion and re-creation, and
//! Kubernetes Secret/ConfigMap updates (the `..data` symlink swapped to a new
//! `..<timestamp>` directory) are all seen: events on the file's name or on
//! names starting with `..` count. Bursts of events are debounced, and a slow
//! poll catches changes no event reports (a symlink whose target lives in
//! another directory, a directory that did not exist yet). A wake-up only
//! means "may have changed": consumers compare the bytes.
//!
//! - [`FileWatch`]: the async wake-up source (tokio).
//! - [`Reloadable`]: a value loaded from a file and kept current by a thread
//!   (no async runtime needed): a change that does not load is rejected, the
//!   last good value stays in force and the reason is reported.

mod file_watch;
mod reloadable;
#[cfg(test)]
mod tests;

pub use file_watch::FileWatch;
pub use reloadable::Reloadable;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};

/// Coalesces bursts of events (an editor's save, a symlink swap).
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Re-check even without events.
const POLL: Duration = Duration::from_secs(10);

/// Why a file cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `notify` cannot watch the file's directory.
    #[error("cannot watch {}: {source}", path.display())]
    Notify {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: notify::Error,
    },
    /// The thread that reloads a [`Reloadable`] cannot be started.
    #[error("cannot start the reload thread for {}: {source}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why [`Reloadable::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E> {
    /// The file cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file's content was rejected by the loader.
    #[error("{0}")]
    Load(E),
}

/// Starts `notify` on `path`'s directory; `wake` runs on every event that may
/// concern `path`. An absent directory is not watched (the poll picks the file
/// up if it appears).
fn watch_dir(
    path: &Path,
    wake: impl Fn() + Send + 'static,
) -> Result<RecommendedWatcher, WatchError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name: OsString = path.file_name().map(Into::into).unwrap_or_default();
    let error = |source| WatchError::Notify {
        path: path.to_path_buf(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with(".."))
        });
        if relevant {
            wake();
        }
    })
    .map_err(error)?;
    if dir.is_dir() {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(error)?;
    } else {
        tracing::info!(dir = %dir.display(), "directory absent; polling for it");
    }
    Ok(watcher)
}
