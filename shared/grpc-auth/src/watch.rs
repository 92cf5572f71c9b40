//! Calling a reload function when a file's content changes.

use penguin_reload::FileWatch;
use std::path::{Path, PathBuf};

/// Calls `reload` whenever `path`'s content changes (a wake-up whose bytes
/// are unchanged is ignored).
pub fn on_change(path: PathBuf, reload: impl Fn(&Path) + Send + 'static) {
    let mut watch = match FileWatch::new(&path) {
        Ok(w) => w,
        Err(err) => {
            tracing::error!(path = %path.display(), %err, "cannot watch file; changes need a restart");
            return;
        }
    };
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        loop {
            watch.changed().await;
            let now = std::fs::read(&path).ok();
            if now.is_some() && now != last {
                reload(&path);
                last = now;
            }
        }
    });
}
