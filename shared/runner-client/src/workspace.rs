//! A job's workspace on the caller's side: packed as a `.tar.gz` (regular
//! files, directories and relative symbolic links; `.git` and whatever the
//! caller skips are left out), and the job's changes applied back.

use crate::ClientError;
use flate2::{write::GzEncoder, Compression};
use penguin_proto::runner::v1::{change, Change};
use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

/// Packs `root` as a `.tar.gz`. `skip` gets each entry's path relative to
/// `root` and leaves it out when it answers true; `.git` is always left out
/// (a job has no use for the repository's history or its remote's config).
pub fn pack(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Vec<u8>, ClientError> {
    let err = |e: std::io::Error| ClientError::Workspace(e.to_string());
    // Fast compression: the workspace crosses a socket or a cluster network,
    // and level 1 is several times quicker than the default for ~10 % more bytes.
    let gz = GzEncoder::new(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    append_dir(&mut tar, root, Path::new(""), skip).map_err(err)?;
    tar.into_inner().and_then(|gz| gz.finish()).map_err(err)
}

fn append_dir(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    root: &Path,
    rel: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let entry_rel = rel.join(&name);
        if (rel.as_os_str().is_empty() && name == ".git") || skip(&entry_rel) {
            continue;
        }
        let file_type = entry.file_type()?;
        let path = entry.path();
        if file_type.is_dir() {
            tar.append_dir(&entry_rel, &path)?;
            append_dir(tar, root, &entry_rel, skip)?;
        } else if file_type.is_file() {
            tar.append_path_with_name(&path, &entry_rel)?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path)?;
            // An absolute link would point at the caller's filesystem.
            if target.is_relative() {
                tar.append_path_with_name(&path, &entry_rel)?;
            }
        }
    }
    Ok(())
}

/// A relative, normal path inside the workspace, outside `.git`; anything
/// else is refused (the runner's answer is checked like any input).
fn safe_relative(path: &str) -> Result<PathBuf, ClientError> {
    let candidate = Path::new(path);
    let mut clean = PathBuf::new();
    for component in candidate.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            _ => {
                return Err(ClientError::Workspace(format!(
                    "refusing a change outside the workspace: {path:?}"
                )))
            }
        }
    }
    if clean.as_os_str().is_empty() || clean.starts_with(".git") {
        return Err(ClientError::Workspace(format!(
            "refusing a change to {path:?}"
        )));
    }
    Ok(clean)
}

/// Applies `changes` under `root`: writes added and modified files (and
/// links), removes deleted ones. Changes whose content was omitted are
/// skipped and returned, so the caller can say so.
pub fn apply(root: &Path, changes: &[Change]) -> Result<Vec<String>, ClientError> {
    let err = |e: std::io::Error| ClientError::Workspace(e.to_string());
    let mut skipped = Vec::new();
    for change in changes {
        let rel = safe_relative(&change.path)?;
        // Never write through a link the workspace already holds.
        let mut parent = root.to_path_buf();
        for part in rel.parent().into_iter().flat_map(|p| p.components()) {
            parent.push(part);
            if std::fs::symlink_metadata(&parent).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(ClientError::Workspace(format!(
                    "refusing a change under a symbolic link: {}",
                    change.path
                )));
            }
        }
        let path = root.join(&rel);
        match change::Kind::try_from(change.kind).unwrap_or(change::Kind::Unspecified) {
            change::Kind::Deleted => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            },
            change::Kind::Added | change::Kind::Modified => {
                if change.content_omitted {
                    skipped.push(change.path.clone());
                    continue;
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                if std::fs::symlink_metadata(&path).is_ok() {
                    std::fs::remove_file(&path).map_err(err)?;
                }
                if change.mode & 0o170000 == 0o120000 {
                    let target = String::from_utf8_lossy(&change.content).into_owned();
                    std::os::unix::fs::symlink(target, &path).map_err(err)?;
                } else {
                    let mut file = std::fs::File::create(&path).map_err(err)?;
                    file.write_all(&change.content).map_err(err)?;
                    let mode = if change.mode & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    };
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                        .map_err(err)?;
                }
            }
            change::Kind::Unspecified => {}
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: change::Kind, path: &str, content: &[u8]) -> Change {
        Change {
            kind: kind as i32,
            path: path.into(),
            mode: 0o100644,
            content: content.to_vec(),
            content_omitted: false,
            size: content.len() as u64,
        }
    }

    #[test]
    fn packs_files_links_and_leaves_out_git_and_skipped_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "secret remote").unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "fn main() {}").unwrap();
        std::fs::write(dir.path().join(".env"), "TOKEN=x").unwrap();
        std::os::unix::fs::symlink("src/lib.rs", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        let bytes = pack(dir.path(), &|p| p == Path::new(".env")).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["link", "src", "src/lib.rs"]);
    }

    #[test]
    fn applies_changes_and_refuses_paths_outside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.txt"), "old").unwrap();
        let skipped = apply(
            dir.path(),
            &[
                change(change::Kind::Added, "gen/new.txt", b"new"),
                change(change::Kind::Deleted, "old.txt", b""),
                Change {
                    content_omitted: true,
                    ..change(change::Kind::Modified, "big.bin", b"")
                },
            ],
        )
        .unwrap();
        assert_eq!(skipped, ["big.bin"]);
        assert_eq!(
            std::fs::read(dir.path().join("gen/new.txt")).unwrap(),
            b"new"
        );
        assert!(!dir.path().join("old.txt").exists());
        for bad in ["../escape", "/etc/passwd", ".git/config", "a/../../b", ""] {
            assert!(
                apply(dir.path(), &[change(change::Kind::Added, bad, b"x")]).is_err(),
                "{bad}"
            );
        }
        std::os::unix::fs::symlink("/tmp", dir.path().join("out")).unwrap();
        assert!(apply(dir.path(), &[change(change::Kind::Added, "out/x", b"x")]).is_err());
    }
}
