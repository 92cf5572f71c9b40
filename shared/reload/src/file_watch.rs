//! The async wake-up source.

use crate::{watch_dir, WatchError, DEBOUNCE, POLL};
use notify::RecommendedWatcher;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Watches one file; [`FileWatch::changed`] returns when it may have changed
/// (a relevant event, debounced, or the poll interval). Consumers re-read and
/// compare, so a spurious wake-up costs one read. Dropping it stops watching.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    path: PathBuf,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileWatch {
    /// Starts watching `path`'s directory for events that concern `path`.
    /// Needs no runtime to start; [`FileWatch::changed`] needs tokio's timer.
    pub fn new(path: impl AsRef<Path>) -> Result<FileWatch, WatchError> {
        let path = path.as_ref().to_path_buf();
        let (tx, events) = mpsc::channel(1);
        // A full channel already holds a pending wake-up.
        let watcher = watch_dir(&path, move || {
            let _ = tx.try_send(());
        })?;
        Ok(FileWatch {
            _watcher: watcher,
            events,
            path,
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
