//! What a job changed in its workspace: a snapshot (SHA-256 of every regular
//! file, every link's target) before the command and one after, compared.
//! Directories are implied by their files; special files a job makes are
//! ignored.

use penguin_proto::runner::v1::{change::Kind, Change};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// Most changed files listed; the rest are counted as truncated.
pub const MAX_LISTED: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    digest: [u8; 32],
}

/// The state of a workspace at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// Walks `root` (symbolic links are not followed).
    pub fn take(root: &Path) -> Snapshot {
        let mut snapshot = Snapshot::default();
        walk(root, Path::new(""), &mut snapshot.entries);
        snapshot
    }
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, Entry>) {
    let Ok(dir) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in dir.flatten() {
        let entry_rel = rel.join(entry.file_name());
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let Some(key) = entry_rel.to_str().map(str::to_string) else {
            continue;
        };
        if file_type.is_dir() {
            walk(root, &entry_rel, out);
        } else if file_type.is_symlink() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                out.insert(
                    key,
                    Entry {
                        mode: 0o120000,
                        digest: Sha256::digest(target.as_os_str().as_encoded_bytes()).into(),
                    },
                );
            }
        } else if file_type.is_file() {
            if let Some(digest) = hash_file(&entry.path()) {
                let mode = entry
                    .metadata()
                    .map(|m| m.permissions().mode())
                    .unwrap_or(0o100644);
                let mode = 0o100000 | if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                out.insert(key, Entry { mode, digest });
            }
        }
    }
}

fn hash_file(path: &Path) -> Option<[u8; 32]> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(hasher.finalize().into()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The changes from `before` to the workspace at `root` now, with content
/// up to `max_content` bytes in all; returns them and whether the list was
/// cut at [`MAX_LISTED`].
pub fn diff(before: &Snapshot, root: &Path, max_content: u64) -> (Vec<Change>, bool) {
    let after = Snapshot::take(root);
    let mut changes = Vec::new();
    let mut budget = max_content;
    let mut truncated = false;
    let mut push = |change: Change| {
        if changes.len() >= MAX_LISTED {
            truncated = true;
        } else {
            changes.push(change);
        }
    };
    for (path, entry) in &after.entries {
        let kind = match before.entries.get(path) {
            None => Kind::Added,
            Some(old) if old != entry => Kind::Modified,
            Some(_) => continue,
        };
        let full: PathBuf = root.join(path);
        let (content, size) = if entry.mode == 0o120000 {
            let target = std::fs::read_link(&full)
                .map(|t| t.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default();
            let size = target.len() as u64;
            (Some(target), size)
        } else {
            let size = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
            let content = (size <= budget)
                .then(|| std::fs::read(&full).ok())
                .flatten();
            (content, size)
        };
        let omitted = content.is_none() || size > budget;
        if !omitted {
            budget -= size;
        }
        push(Change {
            kind: kind as i32,
            path: path.clone(),
            mode: entry.mode,
            content: if omitted {
                Vec::new()
            } else {
                content.unwrap_or_default()
            },
            content_omitted: omitted,
            size,
        });
    }
    for (path, entry) in &before.entries {
        if !after.entries.contains_key(path) {
            push(Change {
                kind: Kind::Deleted as i32,
                path: path.clone(),
                mode: entry.mode,
                content: Vec::new(),
                content_omitted: false,
                size: 0,
            });
        }
    }
    (changes, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_added_modified_deleted_and_caps_content() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("same.txt"), "same").unwrap();
        std::fs::write(root.join("edit.txt"), "old").unwrap();
        std::fs::write(root.join("gone.txt"), "bye").unwrap();
        let before = Snapshot::take(root);
        std::fs::write(root.join("edit.txt"), "new!").unwrap();
        std::fs::remove_file(root.join("gone.txt")).unwrap();
        std::fs::create_dir(root.join("gen")).unwrap();
        std::fs::write(root.join("gen/out.txt"), "generated").unwrap();
        std::fs::write(root.join("gen/big.bin"), vec![1u8; 100]).unwrap();
        let (changes, truncated) = diff(&before, root, 20);
        assert!(!truncated);
        let summary: Vec<(String, i32, bool)> = changes
            .iter()
            .map(|c| (c.path.clone(), c.kind, c.content_omitted))
            .collect();
        assert_eq!(
            summary,
            [
                ("edit.txt".into(), Kind::Modified as i32, false),
                ("gen/big.bin".into(), Kind::Added as i32, true),
                ("gen/out.txt".into(), Kind::Added as i32, false),
                ("gone.txt".into(), Kind::Deleted as i32, false),
            ]
        );
        assert_eq!(changes[0].content, b"new!");
        assert_eq!(changes[2].content, b"generated");
        assert_eq!(changes[1].size, 100);
    }
}
