//! `edit_file`, `create_file` and `delete_file`: exact changes to the
//! workspace. An edit replaces a snippet that must occur exactly once, so a
//! file is never rewritten from a model's (possibly truncated) copy of it.

use std::path::Path;

/// Largest file an edit reads and rewrites.
pub const MAX_EDIT_BYTES: u64 = 4 * 1024 * 1024;

/// True for `.github/workflows/…` (any case): CI that runs with the
/// repository's secrets.
pub fn is_workflow(rel: &str) -> bool {
    let lower = rel.trim_start_matches("./").to_ascii_lowercase();
    lower.starts_with(".github/workflows/") || lower == ".github/workflows"
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].bytes().filter(|b| *b == b'\n').count() + 1
}

fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_EDIT_BYTES {
        return Err(format!(
            "the file is larger than {} MiB; it cannot be edited here",
            MAX_EDIT_BYTES / (1024 * 1024)
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "binary file (not UTF-8 text)".to_string())
}

/// Replaces the one occurrence of `old` with `new` in the file at `path`
/// (shown to the model as `rel`).
pub fn edit(path: &Path, rel: &str, old: &str, new: &str) -> Result<String, String> {
    if old.is_empty() {
        return Err("old_text is empty; to make a new file use create_file".into());
    }
    let text = read_text(path)?;
    let found: Vec<usize> = text.match_indices(old).map(|(at, _)| at).collect();
    match found.len() {
        0 => Err(format!(
            "old_text was not found in {rel} ({} lines); read the lines again and copy them exactly, whitespace included",
            text.lines().count()
        )),
        1 => {
            let at = found[0];
            let first = line_of(&text, at);
            let mut updated = String::with_capacity(text.len() + new.len());
            updated.push_str(&text[..at]);
            updated.push_str(new);
            updated.push_str(&text[at + old.len()..]);
            // Writing in place keeps the file's mode (an executable stays one).
            std::fs::write(path, updated.as_bytes())
                .map_err(|e| format!("cannot write the file: {e}"))?;
            let old_lines = old.lines().count().max(1);
            let new_lines = new.lines().count();
            Ok(format!(
                "edited {rel}: replaced {old_lines} line(s) at line {first} with {new_lines} line(s)"
            ))
        }
        n => {
            let lines: Vec<String> = found
                .iter()
                .take(20)
                .map(|at| line_of(&text, *at).to_string())
                .collect();
            Err(format!(
                "old_text occurs {n} times in {rel} (at lines {}); include more of the surrounding lines so that it occurs exactly once",
                lines.join(", ")
            ))
        }
    }
}

/// Creates a new file with `content` (its directories too).
pub fn create(path: &Path, rel: &str, content: &str) -> Result<String, String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(format!("{rel} already exists; use edit_file to change it"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the directory: {e}"))?;
    }
    std::fs::write(path, content.as_bytes()).map_err(|e| format!("cannot write the file: {e}"))?;
    Ok(format!("created {rel} ({} lines)", content.lines().count()))
}

/// Deletes a file.
pub fn delete(path: &Path, rel: &str) -> Result<String, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot delete {rel}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{rel} is a directory; delete its files one by one"));
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot delete {rel}: {e}"))?;
    Ok(format!("deleted {rel}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_needs_exactly_one_occurrence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one\ntwo\none\nthree\n").unwrap();
        let err = edit(&path, "a.txt", "one", "1").unwrap_err();
        assert!(err.contains("occurs 2 times"), "{err}");
        assert!(err.contains("at lines 1, 3"), "{err}");
        let err = edit(&path, "a.txt", "four", "4").unwrap_err();
        assert!(err.contains("not found"), "{err}");
        let done = edit(&path, "a.txt", "one\nthree", "uno\ntres").unwrap();
        assert!(done.contains("at line 3"), "{done}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\ntwo\nuno\ntres\n"
        );
    }

    #[test]
    fn create_refuses_to_overwrite_and_delete_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src/new.rs");
        create(&path, "src/new.rs", "fn x() {}\n").unwrap();
        assert!(create(&path, "src/new.rs", "again")
            .unwrap_err()
            .contains("already exists"));
        delete(&path, "src/new.rs").unwrap();
        assert!(!path.exists());
        assert!(delete(&dir.path().join("src"), "src")
            .unwrap_err()
            .contains("directory"));
    }

    #[test]
    fn workflows_are_recognised_in_any_case() {
        assert!(is_workflow(".github/workflows/ci.yml"));
        assert!(is_workflow("./.GitHub/Workflows/x.yaml"));
        assert!(!is_workflow(".github/CODEOWNERS"));
        assert!(!is_workflow("docs/.github/workflows.md"));
    }
}
