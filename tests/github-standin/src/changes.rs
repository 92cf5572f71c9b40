//! The files a diff changes, as GitHub lists them (`GET /pulls/{n}/files`, compare's `files`):
//! computed from the bare repository with rename detection, or taken from the files a test
//! seeded ([`PullFileSpec`]).
//!
//! A pull request's diff is GitHub's three-dot diff: from the merge base of its base branch
//! (or, without one, its stored base commit) and the commit to its head commit.

use crate::api::ApiError;
use crate::patch::Patch;
use crate::plumbing::Bare;
use crate::state::{RepoInfo, Shared};
use crate::store::{pseudo_sha, PullRec};
use crate::PullFileSpec;

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileChange {
    pub filename: String,
    /// The old path of a renamed (or copied) file.
    pub previous_filename: Option<String>,
    /// `added`, `removed`, `modified`, `renamed`, `copied` or `changed`.
    pub status: String,
    /// The file's blob (the removed blob for removed files); `None` when only the mode changed,
    /// as GitHub answers `null` then.
    pub sha: Option<String>,
    pub additions: u64,
    pub deletions: u64,
    /// The hunks; `None` for binary files and files without any.
    pub patch: Option<String>,
}

impl FileChange {
    /// A seeded file, with a stable made-up blob sha.
    pub fn from_spec(spec: &PullFileSpec) -> FileChange {
        let sha = pseudo_sha(&format!(
            "{}\u{0}{}",
            spec.filename,
            spec.patch.as_deref().unwrap_or_default()
        ));
        FileChange {
            filename: spec.filename.clone(),
            previous_filename: None,
            status: spec.status.clone(),
            sha: Some(sha),
            additions: spec.additions,
            deletions: spec.deletions,
            patch: spec.patch.clone(),
        }
    }
}

/// A pull request's diff at one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PullDiff {
    pub files: Vec<FileChange>,
    /// Commits from the merge base to the commit (1 for seeded pull requests).
    pub commits: usize,
    /// Whether the files come from git rather than the test's seed.
    pub from_git: bool,
}

/// One entry of `git diff-tree --raw -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawEntry {
    old_mode: String,
    new_mode: String,
    old_sha: String,
    new_sha: String,
    /// `A`, `D`, `M`, `R`, `C`, `T` (`U`, `X` never occur between two commits).
    status: char,
    path: String,
    old_path: Option<String>,
}

/// Parses `git diff-tree --raw -z` output.
fn parse_raw(out: &[u8]) -> Vec<RawEntry> {
    let mut tokens = out
        .split(|b| *b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned());
    let mut entries = Vec::new();
    while let Some(meta) = tokens.next() {
        let Some(meta) = meta.strip_prefix(':') else {
            continue;
        };
        let fields: Vec<&str> = meta.split(' ').collect();
        let [old_mode, new_mode, old_sha, new_sha, status] = fields[..] else {
            continue;
        };
        let status = status.chars().next().unwrap_or('M');
        let Some(first) = tokens.next() else { break };
        let (path, old_path) = if matches!(status, 'R' | 'C') {
            match tokens.next() {
                Some(new_path) => (new_path, Some(first)),
                None => break,
            }
        } else {
            (first, None)
        };
        entries.push(RawEntry {
            old_mode: old_mode.to_string(),
            new_mode: new_mode.to_string(),
            old_sha: old_sha.to_string(),
            new_sha: new_sha.to_string(),
            status,
            path,
            old_path,
        });
    }
    entries
}

/// Splits patch output into per-file sections (each starting at its `diff --git` line).
fn split_patch(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    let mut sections: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        // Hunk lines start with ` `, `+`, `-` or `\`, so this is always a header.
        if line.starts_with("diff --git ") || sections.is_empty() {
            sections.push(String::new());
        }
        if let Some(s) = sections.last_mut() {
            s.push_str(line);
        }
    }
    sections
}

/// What a patch section shows: its hunks (GitHub's `patch`) or that the file is binary.
fn hunks(section: &str) -> (Option<String>, bool) {
    let binary = section
        .lines()
        .any(|l| l.starts_with("Binary files ") || l == "GIT binary patch");
    match section.find("\n@@ ") {
        Some(i) if !binary => {
            let text = section[i + 1..].trim_end_matches('\n');
            (Some(text.to_string()), false)
        }
        _ => (None, binary),
    }
}

/// Builds the changed files from the raw listing and the patch sections of the same diff.
fn assemble(raw: Vec<RawEntry>, sections: Vec<String>) -> Vec<FileChange> {
    // git splits a type change (file ↔ symlink) into a deletion and a creation in patches.
    let expected: usize = raw.iter().map(|e| 1 + usize::from(e.status == 'T')).sum();
    let usable = sections.len() == expected;
    if !usable {
        tracing::warn!(
            expected,
            got = sections.len(),
            "patch sections do not match the listing"
        );
    }
    let mut sections = sections.into_iter();
    raw.into_iter()
        .map(|e| {
            let parts: Vec<String> = if usable {
                let n = 1 + usize::from(e.status == 'T');
                sections.by_ref().take(n).collect()
            } else {
                Vec::new()
            };
            let mut texts = Vec::new();
            let mut binary = false;
            for part in &parts {
                let (text, bin) = hunks(part);
                binary |= bin;
                texts.extend(text);
            }
            let patch = (!binary && !texts.is_empty()).then(|| texts.join("\n"));
            let (additions, deletions) = patch
                .as_deref()
                .map_or((0, 0), |p| Patch::parse(p).counts());
            let status = match e.status {
                'A' => "added",
                'D' => "removed",
                'R' => "renamed",
                'C' => "copied",
                'M' if e.old_sha == e.new_sha => "changed",
                'M' => "modified",
                _ => "changed",
            };
            let sha = match e.status {
                'D' => Some(e.old_sha),
                _ if e.old_sha == e.new_sha && e.old_mode != e.new_mode => None,
                _ => Some(e.new_sha),
            };
            FileChange {
                filename: e.path,
                previous_filename: e.old_path,
                status: status.to_string(),
                sha,
                additions,
                deletions,
                patch,
            }
        })
        .collect()
}

/// The files changed from commit `base` to commit `head` (full shas).
pub(crate) async fn between(
    bare: &Bare,
    base: &str,
    head: &str,
) -> Result<Vec<FileChange>, ApiError> {
    let (raw, patch) = bare.diff(base, head).await?;
    Ok(assemble(parse_raw(&raw), split_patch(&patch)))
}

/// The merge base a pull request's diff at `commit` starts from: with its base branch's tip
/// or, if that branch is gone, its stored base commit.
pub(crate) async fn merge_base(
    bare: &Bare,
    pull: &PullRec,
    commit: &str,
) -> Result<Option<String>, ApiError> {
    let tip = match bare
        .resolve_commit(&format!("refs/heads/{}", pull.base_ref))
        .await?
    {
        Some(tip) => Some(tip),
        None => bare.commit(&pull.base_sha).await?,
    };
    match tip {
        Some(tip) => bare.merge_base(&tip, commit).await,
        None => Ok(None),
    }
}

/// A pull request's diff at `commit` (a full sha; its head when `None`): the seeded files if
/// the test gave any, else computed from git when the repository has the commit, else none.
pub(crate) async fn pull_diff(
    shared: &Shared,
    repo: &RepoInfo,
    pull: &PullRec,
    commit: Option<&str>,
) -> Result<PullDiff, ApiError> {
    if !pull.files.is_empty() {
        return Ok(PullDiff {
            files: pull.files.iter().map(FileChange::from_spec).collect(),
            commits: 1,
            from_git: false,
        });
    }
    let bare = Bare::of(shared, repo);
    let Some(commit) = bare.commit(commit.unwrap_or(&pull.head_sha)).await? else {
        return Ok(PullDiff {
            commits: 1,
            ..PullDiff::default()
        });
    };
    let Some(base) = merge_base(&bare, pull, &commit).await? else {
        return Ok(PullDiff {
            commits: 1,
            ..PullDiff::default()
        });
    };
    let key = (base.clone(), commit.clone());
    if let Some(hit) = shared.with(|s| s.store.diffs.get(&key).cloned()) {
        return Ok(hit);
    }
    let diff = PullDiff {
        files: between(&bare, &base, &commit).await?,
        commits: bare.commits_between(&base, &commit).await?.len(),
        from_git: true,
    };
    // Commits never change, so neither does their diff.
    shared.with(|s| s.store.diffs.insert(key, diff.clone()));
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn raw_listings_parse() {
        let out = format!(
            ":000000 100644 {Z} {A} A\0new file\0:100644 100644 {A} {B} R087\0old\0moved/to\0:100644 100755 {A} {A} M\0run.sh\0"
        );
        let e = parse_raw(out.as_bytes());
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].status, e[0].path.as_str()), ('A', "new file"));
        assert_eq!(e[1].path, "moved/to");
        assert_eq!(e[1].old_path.as_deref(), Some("old"));
        assert_eq!(e[2].new_mode, "100755");
    }

    #[test]
    fn patches_become_githubs_files() {
        let raw = format!(
            ":000000 100644 {Z} {A} A\0a.txt\0:100644 000000 {B} {Z} D\0b.bin\0:100644 100755 {A} {A} M\0run.sh\0"
        );
        let patch = "diff --git a/a.txt b/a.txt\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n\
                     diff --git a/b.bin b/b.bin\ndeleted file mode 100644\nindex 2222222..0000000\nBinary files a/b.bin and /dev/null differ\n\
                     diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n";
        let files = assemble(parse_raw(raw.as_bytes()), split_patch(patch.as_bytes()));
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].status, "added");
        assert_eq!(
            files[0].patch.as_deref(),
            Some("@@ -0,0 +1,2 @@\n+one\n+two")
        );
        assert_eq!((files[0].additions, files[0].deletions), (2, 0));
        assert_eq!(files[0].sha.as_deref(), Some(A));
        assert_eq!(files[1].status, "removed");
        assert_eq!(files[1].sha.as_deref(), Some(B));
        assert_eq!(files[1].patch, None);
        assert_eq!(files[2].status, "changed");
        assert_eq!(files[2].sha, None);
        assert_eq!(files[2].patch, None);
    }
}
