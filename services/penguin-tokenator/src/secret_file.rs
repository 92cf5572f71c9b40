//! Files that hold secrets: written atomically with mode 0600, and kept equal
//! to the current default token even when someone else edits or deletes them
//! (git's `credential reject` erases the line it thinks is bad).

use crate::metrics::Metrics;
use penguin_github::InstallationToken;
use penguin_reload::FileWatch;
use std::{
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::sync::watch;

/// Writes `contents` to `path` so a reader sees the old or the new file,
/// never a partial one: temp file in the same directory, fsync, rename,
/// fsync of the directory. Mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".penguin-tmp-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// What a kept file contains for a token.
#[derive(Clone, Debug)]
pub enum FileFormat {
    /// One git credential-store line for the server origin.
    GitCredentials {
        /// `scheme://host[:port]` of the git server.
        origin: String,
    },
    /// The bare token and a newline.
    BareToken,
}

impl FileFormat {
    /// The file's full contents for `token`.
    pub fn render(&self, token: &str) -> String {
        match self {
            FileFormat::GitCredentials { origin } => {
                let (scheme, rest) = origin.split_once("://").unwrap_or(("https", origin));
                let host = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://x-access-token:{token}@{host}\n")
            }
            FileFormat::BareToken => format!("{token}\n"),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            FileFormat::GitCredentials { .. } => "git_credentials",
            FileFormat::BareToken => "token",
        }
    }
}

/// Keeps `path` equal to `format.render(current default token)` until the
/// token channel closes. Runs as a task.
pub async fn keep_file(
    path: PathBuf,
    format: FileFormat,
    mut tokens: watch::Receiver<Option<Arc<InstallationToken>>>,
    metrics: Arc<Metrics>,
) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(err) = fs::create_dir_all(dir) {
            tracing::error!(path = %path.display(), %err, "cannot create the directory for a secret file");
        }
    }
    let mut file_watch = match FileWatch::new(&path) {
        Ok(w) => Some(w),
        Err(err) => {
            tracing::error!(path = %path.display(), %err, "cannot watch secret file; it is still rewritten on rotation");
            None
        }
    };
    let mut reason = "rotation";
    loop {
        let desired = tokens
            .borrow_and_update()
            .as_ref()
            .map(|t| format.render(t.token.expose()));
        if let Some(desired) = desired {
            let current = fs::read(&path).ok();
            if current.as_deref() != Some(desired.as_bytes()) {
                match write_atomic(&path, desired.as_bytes()) {
                    Ok(()) => {
                        metrics.file_write(format.label(), reason);
                        tracing::info!(path = %path.display(), reason, "secret file written");
                    }
                    Err(err) => {
                        tracing::error!(path = %path.display(), %err, "cannot write secret file")
                    }
                }
            }
        }
        tokio::select! {
            changed = tokens.changed() => {
                if changed.is_err() {
                    return;
                }
                reason = "rotation";
            }
            _ = async {
                match file_watch.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                reason = "restored";
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_lines_use_the_server_origin() {
        let f = FileFormat::GitCredentials {
            origin: "https://github.com".into(),
        };
        assert_eq!(f.render("T"), "https://x-access-token:T@github.com\n");
        let f = FileFormat::GitCredentials {
            origin: "http://127.0.0.1:8090/some/path".into(),
        };
        assert_eq!(f.render("T"), "http://x-access-token:T@127.0.0.1:8090\n");
        assert_eq!(FileFormat::BareToken.render("T"), "T\n");
    }

    #[test]
    fn atomic_write_replaces_with_mode_0600_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
