//! The same-host listener: a Unix socket whose file mode decides who may
//! connect.

use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
};
use tokio::net::UnixListener;

/// Binds `path` with `mode` (0660: owner and group), making its directory
/// and replacing a stale socket file a previous run left; refuses to
/// replace anything that is not a socket.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
