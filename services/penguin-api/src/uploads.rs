//! Stored uploads under `PENGUIN_DATA_DIR/uploads`: written atomically, kept
//! for `PENGUIN_UPLOAD_RETENTION_HOURS`, and together never more than
//! `PENGUIN_UPLOAD_QUOTA_BYTES`, so uploads cannot fill the disk the store
//! and the bot's clones share.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};
use tokio::io::AsyncWriteExt;

/// Serializes the quota check and the write: two uploads cannot both fit
/// into the last free bytes. One uploads directory per process.
static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Storing it would pass the quota.
    #[error("stored uploads use {used} of {quota} bytes; this one ({size} bytes) does not fit")]
    QuotaExceeded {
        /// Bytes in use.
        used: u64,
        /// The quota.
        quota: u64,
        /// The upload's size.
        size: u64,
    },
    /// The disk refused.
    #[error("storing the upload: {0}")]
    Io(#[from] io::Error),
}

/// The uploads directory and its limits.
pub struct UploadStore {
    dir: PathBuf,
    quota: u64,
    retention: Duration,
}

impl UploadStore {
    /// Uploads in `dir`, at most `quota` bytes together, each kept `retention`.
    pub fn new(dir: PathBuf, quota: u64, retention: Duration) -> Self {
        UploadStore {
            dir,
            quota,
            retention,
        }
    }

    /// Deletes uploads older than the retention; returns how many.
    pub async fn prune(&self) -> io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(self.retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for (path, _, modified) in entries(&self.dir).await? {
            if modified < cutoff && tokio::fs::remove_file(&path).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Stores `data` as a new file with `extension`, after pruning expired
    /// uploads, if it fits the quota; returns its path.
    pub async fn store(&self, data: &[u8], extension: &str) -> Result<PathBuf, UploadError> {
        let _writing = WRITING.lock().await;
        tokio::fs::create_dir_all(&self.dir).await?;
        self.prune().await?;
        let used: u64 = entries(&self.dir)
            .await?
            .iter()
            .map(|(_, size, _)| size)
            .sum();
        let size = data.len() as u64;
        if used.saturating_add(size) > self.quota {
            return Err(UploadError::QuotaExceeded {
                used,
                quota: self.quota,
                size,
            });
        }
        let name = format!("{}.{extension}", uuid::Uuid::new_v4().simple());
        // Written beside its final name and renamed: a crash leaves no half file.
        let partial = self.dir.join(format!(".{name}.partial"));
        let path = self.dir.join(name);
        let written = async {
            let mut file = tokio::fs::File::create(&partial).await?;
            file.write_all(data).await?;
            file.sync_all().await?;
            tokio::fs::rename(&partial, &path).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e.into());
        }
        Ok(path)
    }
}

/// The regular files in `dir`: (path, size, modified); none if it is missing.
async fn entries(dir: &Path) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    let mut read = match tokio::fs::read_dir(dir).await {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(entry) = read.next_entry().await? {
        let meta = entry.metadata().await?;
        if meta.is_file() {
            out.push((entry.path(), meta.len(), meta.modified()?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_kept_within_the_quota_and_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = UploadStore::new(dir.path().join("uploads"), 10, Duration::from_secs(3600));
        let first = store.store(b"123456", "png").await.unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), b"123456");
        let err = store.store(b"12345", "png").await.unwrap_err();
        assert!(
            matches!(
                err,
                UploadError::QuotaExceeded {
                    used: 6,
                    quota: 10,
                    size: 5
                }
            ),
            "{err}"
        );
        assert!(
            store.store(b"1234", "png").await.is_ok(),
            "exactly full fits"
        );
        // An expired upload is pruned and frees its bytes.
        let old = std::fs::File::options().write(true).open(&first).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert!(store.store(b"12345", "png").await.is_ok());
        assert!(!first.exists());
        assert_eq!(store.prune().await.unwrap(), 0);
        // Nothing half-written is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
    }
}
