//! Unpacking a job's `.tar.gz` into its directory, safely: only regular
//! files, directories and symbolic links; no entry outside the directory
//! (`tar`'s `unpack_in` refuses `..`, absolute paths and writes through
//! links); and a cap on the unpacked size and entry count (a small archive
//! can expand enormously).

use flate2::read::GzDecoder;
use std::{io::Read, path::Path};

/// Most entries one workspace may hold.
const MAX_ENTRIES: u64 = 200_000;

/// Why a workspace was refused (the caller's input is at fault).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkspaceError(pub String);

/// Unpacks `archive` into `dir`; returns the unpacked size in bytes.
pub fn unpack(archive: impl Read, dir: &Path, max_bytes: u64) -> Result<u64, WorkspaceError> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    tar.set_preserve_permissions(false);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    tar.set_unpack_xattrs(false);
    let mut total = 0u64;
    let mut count = 0u64;
    let entries = tar
        .entries()
        .map_err(|e| WorkspaceError(format!("the workspace is not a .tar.gz: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| WorkspaceError(format!("the workspace archive is corrupt: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(WorkspaceError(format!(
                "the workspace has more than {MAX_ENTRIES} entries"
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(WorkspaceError(format!(
                "the workspace holds {path:?}, which is neither a file, a directory nor a symbolic link"
            )));
        }
        total = total.saturating_add(entry.size());
        if total > max_bytes {
            return Err(WorkspaceError(format!(
                "the workspace is larger than the runner's limit of {} MiB unpacked",
                max_bytes / (1024 * 1024)
            )));
        }
        let unpacked = entry
            .unpack_in(dir)
            .map_err(|e| WorkspaceError(format!("cannot unpack the workspace: {e}")))?;
        if !unpacked {
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(WorkspaceError(format!(
                "the workspace entry {path:?} points outside the workspace"
            )));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};

    fn archive(build: impl FnOnce(&mut tar::Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        build(&mut tar);
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn file(tar: &mut tar::Builder<GzEncoder<Vec<u8>>>, path: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..", so write the name bytes directly.
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, body).unwrap();
    }

    #[test]
    fn unpacks_files_keeping_the_executable_bit() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(|t| file(t, "bin/test.sh", b"#!/bin/sh\n"));
        assert_eq!(unpack(&bytes[..], dir.path(), 1 << 20).unwrap(), 10);
        let meta = std::fs::metadata(dir.path().join("bin/test.sh")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o111, 0o111);
    }

    #[test]
    fn refuses_escapes_special_files_bombs_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let escape = archive(|t| file(t, "../escape.txt", b"x"));
        assert!(unpack(&escape[..], dir.path(), 1 << 20).is_err());
        assert!(!dir.path().parent().unwrap().join("escape.txt").exists());

        let fifo = archive(|t| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_path("pipe").unwrap();
            header.set_size(0);
            header.set_cksum();
            t.append(&header, &b""[..]).unwrap();
        });
        let err = unpack(&fifo[..], dir.path(), 1 << 20).unwrap_err();
        assert!(err.0.contains("neither a file"), "{err}");

        let big = archive(|t| file(t, "big.bin", &vec![0u8; 4096]));
        let err = unpack(&big[..], dir.path(), 1024).unwrap_err();
        assert!(err.0.contains("larger than"), "{err}");

        assert!(unpack(&b"not gzip"[..], dir.path(), 1024).is_err());
    }
}
