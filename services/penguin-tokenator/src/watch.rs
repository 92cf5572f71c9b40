//! Noticing that a file changed: inotify (notify) on the file's directory,
//! so Kubernetes Secret updates (an atomic swap of the `..data` symlink) are
//! seen as well as in-place writes, deletions and renames; plus a slow poll
//! as a safety net for changes no event reports.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::sync::mpsc;

/// Coalesces bursts of events (an editor's save, a symlink swap).
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Re-check even without events: a symlink's target may live elsewhere.
const POLL: Duration = Duration::from_secs(10);

/// Watches one file; [`FileWatch::changed`] returns when it may have changed.
/// Consumers re-read and compare, so a spurious wake-up costs one read.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    path: PathBuf,
}

impl FileWatch {
    /// Starts watching `path`'s directory for events that concern `path`.
    pub fn new(path: &Path) -> notify::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name: OsString = path.file_name().map(Into::into).unwrap_or_default();
        let (tx, events) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else { return };
                let relevant = event.paths.iter().any(|p| {
                    p.file_name().is_some_and(|n| {
                        n == name.as_os_str() || n.to_string_lossy().starts_with("..")
                    })
                });
                if relevant {
                    // A full channel already holds a pending wake-up.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(FileWatch {
            _watcher: watcher,
            events,
            path: path.to_path_buf(),
        })
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for a relevant event (debounced) or the poll interval.
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.events.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while self.events.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
