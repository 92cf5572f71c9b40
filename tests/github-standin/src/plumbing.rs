//! Git plumbing on the bare repositories (`{git_root}/{owner}/{repo}.git`) behind the contents
//! and Git Data routes: object lookups, tree listings, writing blobs, trees and commits, and
//! compare-and-swap ref updates.
//!
//! Every value that reaches git is checked first — object names are hex, ref names follow git's
//! rules and start with `refs/`, paths only ever appear after a `<sha>:` — so nothing can be
//! taken as an option. git runs without the caller's git environment or global configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use http::StatusCode;
use rand::Rng as _;
use tokio::io::AsyncWriteExt as _;

use crate::api::ApiError;
use crate::state::{RepoInfo, Shared};

/// The all-zero object name: "must not exist" for `git update-ref`.
pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Environment variables of the caller's git that must not leak into ours.
const GIT_ENV: [&str; 16] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// Whether `s` is a full object name (SHA-1 or SHA-256, lowercase or uppercase hex).
pub(crate) fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` may be an abbreviated object name (4 to 64 hex digits).
pub(crate) fn is_hex(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `name` is a full ref name git accepts: `refs/` plus at least two more components,
/// none empty, starting with `.` or ending with `.lock`, and no `..`, `@{`, spaces, control
/// characters or `~^:?*[\`.
pub(crate) fn valid_ref_name(name: &str) -> bool {
    name.len() <= 255
        && name.starts_with("refs/")
        && name.split('/').count() >= 3
        && name
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && name
            .chars()
            .all(|c| !c.is_control() && !" ~^:?*[\\".contains(c))
}

/// Whether `path` is a repository path git can store: relative, `/`-separated, no empty, `.`,
/// `..` or `.git` component, no NUL or newline, not starting with `-`.
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.starts_with('-')
        && !path.contains(['\0', '\n', '\r'])
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.eq_ignore_ascii_case(".git"))
}

/// One entry of a tree listing (`git ls-tree -l`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    /// `100644`, `100755`, `120000`, `040000` or `160000`.
    pub mode: String,
    /// `blob`, `tree` or `commit`.
    pub kind: String,
    pub sha: String,
    /// Blob size; `None` for trees and submodules.
    pub size: Option<u64>,
    /// The name, or the path below the listed tree for recursive listings.
    pub path: String,
}

/// Parses `git ls-tree -z -l` output.
pub(crate) fn parse_ls_tree(out: &[u8]) -> Vec<TreeEntry> {
    out.split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let record = String::from_utf8_lossy(record);
            let (meta, path) = record.split_once('\t')?;
            let mut fields = meta.split_whitespace();
            let mode = fields.next()?.to_string();
            let kind = fields.next()?.to_string();
            let sha = fields.next()?.to_string();
            let size = fields.next().and_then(|s| s.parse().ok());
            Some(TreeEntry {
                mode,
                kind,
                sha,
                size,
                path: path.to_string(),
            })
        })
        .collect()
}

/// One ref (`git for-each-ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefEntry {
    /// The full name, e.g. `refs/heads/main`.
    pub name: String,
    pub sha: String,
    /// The type of the object it points at: `commit`, `tag`, `tree` or `blob`.
    pub kind: String,
}

/// An identity and time for `git commit-tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    pub name: String,
    pub email: String,
    /// git's internal date format, `<epoch seconds> <+hhmm>`.
    pub date: String,
}

/// What a git run produced.
struct Run {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

/// A temporary index file, removed (with its lock) when dropped.
struct TempIndex(PathBuf);

impl TempIndex {
    fn new() -> TempIndex {
        let n: u64 = rand::rng().random();
        TempIndex(std::env::temp_dir().join(format!(
            "github-standin-index-{}-{n:016x}",
            std::process::id()
        )))
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("lock"));
    }
}

/// The answer when git itself fails unexpectedly.
fn server_error(what: &str, detail: &str) -> ApiError {
    tracing::warn!(what, detail, "git failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")
}

/// A repository's bare git directory.
pub(crate) struct Bare {
    dir: PathBuf,
}

impl Bare {
    /// The bare repository of `repo`.
    pub fn of(shared: &Shared, repo: &RepoInfo) -> Bare {
        Bare {
            dir: shared
                .git_root
                .join(&repo.owner)
                .join(format!("{}.git", repo.name)),
        }
    }

    /// The bare repository's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether the bare repository was created.
    pub fn exists(&self) -> bool {
        self.dir.join("HEAD").is_file()
    }

    /// Runs `git --git-dir <dir> <args>` with `env` and `stdin`.
    async fn run(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        stdin: Option<Vec<u8>>,
    ) -> Result<Run, ApiError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("--git-dir").arg(&self.dir).args(args);
        for var in GIT_ENV {
            cmd.env_remove(var);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| server_error("spawning git", &e.to_string()))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written from its own task so a large input cannot deadlock against the output.
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            });
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| server_error("running git", &e.to_string()))?;
        Ok(Run {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs git and returns its output, or a 500 when it fails.
    async fn run_ok(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ApiError> {
        let run = self.run(args, env, stdin).await?;
        if run.ok {
            Ok(run.stdout)
        } else {
            Err(server_error(args.first().unwrap_or(&"git"), &run.stderr))
        }
    }

    /// Trimmed text output of a successful run.
    async fn text(&self, args: &[&str]) -> Result<String, ApiError> {
        let out = self.run_ok(args, &[], None).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Whether the repository has no refs at all (or was never created).
    pub async fn is_empty(&self) -> Result<bool, ApiError> {
        if !self.exists() {
            return Ok(true);
        }
        Ok(self.text(&["for-each-ref", "--count=1"]).await?.is_empty())
    }

    /// The object a revision expression names, if any (`git rev-parse --verify`). Callers
    /// build `rev` from checked names and shas only.
    pub async fn rev_parse(&self, rev: &str) -> Result<Option<String>, ApiError> {
        let run = self
            .run(
                &["rev-parse", "--verify", "--quiet", "--end-of-options", rev],
                &[],
                None,
            )
            .await?;
        let sha = String::from_utf8_lossy(&run.stdout).trim().to_string();
        Ok((run.ok && !sha.is_empty()).then_some(sha))
    }

    /// The type and size of each object (`None` when missing), in order.
    pub async fn object_infos(
        &self,
        shas: &[&str],
    ) -> Result<Vec<Option<(String, u64)>>, ApiError> {
        if shas.is_empty() {
            return Ok(Vec::new());
        }
        // Anything but hex would be read as a revision expression: ask about nothing instead.
        let input: String = shas
            .iter()
            .map(|s| format!("{}\n", if is_hex(s) { s } else { ZERO_SHA }))
            .collect();
        let out = self
            .run_ok(
                &[
                    "cat-file",
                    "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                ],
                &[],
                Some(input.into_bytes()),
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        let infos = text
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields.as_slice() {
                    [_, kind, size] => size.parse().ok().map(|n| (kind.to_string(), n)),
                    _ => None,
                }
            })
            .collect::<Vec<_>>();
        Ok(infos)
    }

    /// The type and size of one object, if it exists. `sha` must be hex.
    pub async fn object_info(&self, sha: &str) -> Result<Option<(String, u64)>, ApiError> {
        if !is_hex(sha) {
            return Ok(None);
        }
        Ok(self
            .object_infos(&[sha])
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    /// The raw content of an object of type `kind`, if it exists. `sha` must be hex.
    pub async fn read(&self, kind: &str, sha: &str) -> Result<Option<Vec<u8>>, ApiError> {
        if !is_hex(sha) || !matches!(kind, "blob" | "tree" | "commit" | "tag") {
            return Ok(None);
        }
        let run = self.run(&["cat-file", kind, sha], &[], None).await?;
        Ok(run.ok.then_some(run.stdout))
    }

    /// The entries of a tree (`treeish` is `<sha>` or `<sha>:<path>`), or `None` when it names
    /// no tree. Recursive listings include the subtrees themselves.
    pub async fn ls_tree(
        &self,
        treeish: &str,
        recursive: bool,
    ) -> Result<Option<Vec<TreeEntry>>, ApiError> {
        let mut args = vec!["ls-tree", "-z", "-l", "--full-tree"];
        if recursive {
            args.extend(["-r", "-t"]);
        }
        args.extend(["--end-of-options", treeish]);
        let run = self.run(&args, &[], None).await?;
        Ok(run.ok.then(|| parse_ls_tree(&run.stdout)))
    }

    /// Every file and submodule of a tree with its full path: path → (mode, sha).
    pub async fn tree_files(
        &self,
        tree: &str,
    ) -> Result<BTreeMap<String, (String, String)>, ApiError> {
        let out = self
            .run_ok(
                &[
                    "ls-tree",
                    "-z",
                    "-r",
                    "--full-tree",
                    "--end-of-options",
                    tree,
                ],
                &[],
                None,
            )
            .await?;
        Ok(parse_ls_tree(&out)
            .into_iter()
            .map(|e| (e.path, (e.mode, e.sha)))
            .collect())
    }

    /// Stores a blob and returns its sha.
    pub async fn write_blob(&self, data: Vec<u8>) -> Result<String, ApiError> {
        let out = self
            .run_ok(
                &["hash-object", "-t", "blob", "-w", "--no-filters", "--stdin"],
                &[],
                Some(data),
            )
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Writes the tree holding exactly `files` (path → (mode, sha)) through a temporary index
    /// and returns its sha.
    pub async fn write_tree(
        &self,
        files: &BTreeMap<String, (String, String)>,
    ) -> Result<String, ApiError> {
        let index = TempIndex::new();
        let env = [("GIT_INDEX_FILE", index.0.to_string_lossy().into_owned())];
        let mut info = Vec::new();
        for (path, (mode, sha)) in files {
            info.extend_from_slice(format!("{mode} {sha}\t{path}").as_bytes());
            info.push(0);
        }
        // `read-tree --empty` creates the index even when there are no files.
        self.run_ok(&["read-tree", "--empty"], &env, None).await?;
        self.run_ok(&["update-index", "-z", "--index-info"], &env, Some(info))
            .await?;
        let out = self.run_ok(&["write-tree"], &env, None).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Creates a commit of `tree` with `parents` (all checked to exist) and returns its sha.
    pub async fn commit_tree(
        &self,
        tree: &str,
        parents: &[String],
        message: &str,
        author: &Ident,
        committer: &Ident,
    ) -> Result<String, ApiError> {
        if !is_full_sha(tree) || !parents.iter().all(|p| is_full_sha(p)) {
            return Err(server_error("commit-tree", "unchecked object name"));
        }
        let mut args = vec!["commit-tree".to_string(), tree.to_string()];
        for p in parents {
            args.push("-p".to_string());
            args.push(p.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [
            ("GIT_AUTHOR_NAME", author.name.clone()),
            ("GIT_AUTHOR_EMAIL", author.email.clone()),
            ("GIT_AUTHOR_DATE", author.date.clone()),
            ("GIT_COMMITTER_NAME", committer.name.clone()),
            ("GIT_COMMITTER_EMAIL", committer.email.clone()),
            ("GIT_COMMITTER_DATE", committer.date.clone()),
        ];
        let out = self
            .run_ok(&args, &env, Some(message.as_bytes().to_vec()))
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Stores a raw commit object and returns its sha.
    pub async fn write_commit(&self, text: Vec<u8>) -> Result<String, ApiError> {
        let out = self
            .run_ok(
                &["hash-object", "-t", "commit", "-w", "--stdin"],
                &[],
                Some(text),
            )
            .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Every ref under `refs/`, sorted by name.
    pub async fn refs(&self) -> Result<Vec<RefEntry>, ApiError> {
        if !self.exists() {
            return Ok(Vec::new());
        }
        let out = self
            .run_ok(
                &[
                    "for-each-ref",
                    "--format=%(refname)%00%(objectname)%00%(objecttype)",
                    "refs/",
                ],
                &[],
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split('\0');
                Some(RefEntry {
                    name: parts.next()?.to_string(),
                    sha: parts.next()?.to_string(),
                    kind: parts.next()?.to_string(),
                })
            })
            .collect())
    }

    /// The ref with exactly this full name.
    pub async fn find_ref(&self, name: &str) -> Result<Option<RefEntry>, ApiError> {
        Ok(self.refs().await?.into_iter().find(|r| r.name == name))
    }

    /// Points `name` at `new` if it still points at `old` ([`ZERO_SHA`]: does not exist yet).
    /// `false` when git refused (the ref moved meanwhile, a name conflict, ...).
    pub async fn update_ref(&self, name: &str, new: &str, old: &str) -> Result<bool, ApiError> {
        if !valid_ref_name(name) || !is_full_sha(new) || !is_full_sha(old) {
            return Ok(false);
        }
        let run = self
            .run(&["update-ref", "--no-deref", name, new, old], &[], None)
            .await?;
        if !run.ok {
            tracing::debug!(stderr = %run.stderr.trim(), "update-ref refused");
        }
        Ok(run.ok)
    }

    /// Deletes `name` if it still points at `old`.
    pub async fn delete_ref(&self, name: &str, old: &str) -> Result<bool, ApiError> {
        if !valid_ref_name(name) || !is_full_sha(old) {
            return Ok(false);
        }
        let run = self
            .run(&["update-ref", "--no-deref", "-d", name, old], &[], None)
            .await?;
        Ok(run.ok)
    }

    /// The commit a branch name, tag name, full ref name or sha names.
    pub async fn resolve_commit(&self, name: &str) -> Result<Option<String>, ApiError> {
        if !crate::rest::valid_branch(name) {
            return Ok(None);
        }
        let mut candidates = Vec::new();
        if is_full_sha(name) {
            candidates.push(name.to_string());
        }
        if name.starts_with("refs/") {
            candidates.push(name.to_string());
        }
        candidates.push(format!("refs/heads/{name}"));
        candidates.push(format!("refs/tags/{name}"));
        if is_hex(name) && !is_full_sha(name) {
            candidates.push(name.to_string());
        }
        for c in candidates {
            if let Some(sha) = self.rev_parse(&format!("{c}^{{commit}}")).await? {
                return Ok(Some(sha));
            }
        }
        Ok(None)
    }

    /// The commit `sha` (full or abbreviated hex) names, if the repository has it.
    pub async fn commit(&self, sha: &str) -> Result<Option<String>, ApiError> {
        if !self.exists() || !is_hex(sha) {
            return Ok(None);
        }
        self.rev_parse(&format!("{sha}^{{commit}}")).await
    }

    /// The best common ancestor of two commits, if they share history.
    pub async fn merge_base(&self, a: &str, b: &str) -> Result<Option<String>, ApiError> {
        if !is_full_sha(a) || !is_full_sha(b) {
            return Ok(None);
        }
        let run = self.run(&["merge-base", a, b], &[], None).await?;
        let sha = String::from_utf8_lossy(&run.stdout).trim().to_string();
        Ok((run.ok && is_full_sha(&sha)).then_some(sha))
    }

    /// The commits reachable from `head` but not from `base`, oldest first.
    pub async fn commits_between(&self, base: &str, head: &str) -> Result<Vec<String>, ApiError> {
        if !is_full_sha(base) || !is_full_sha(head) {
            return Ok(Vec::new());
        }
        let range = format!("{base}..{head}");
        let text = self.text(&["rev-list", "--reverse", &range]).await?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// What changed from commit `base` to commit `head`, with rename detection: the raw listing
    /// (`git diff-tree --raw -z`) and the patch, both in git's order of files.
    pub async fn diff(&self, base: &str, head: &str) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
        if !is_full_sha(base) || !is_full_sha(head) {
            return Err(server_error("diff-tree", "unchecked object name"));
        }
        // No external diff drivers or text conversion: GitHub diffs the stored bytes.
        let common = ["diff-tree", "-r", "-M", "--no-ext-diff", "--no-textconv"];
        let mut raw_args = common.to_vec();
        raw_args.extend(["-z", "--raw", base, head]);
        let mut patch_args = common.to_vec();
        patch_args.extend(["--no-color", "-p", "-U3", base, head]);
        let raw = self.run_ok(&raw_args, &[], None).await?;
        let patch = self.run_ok(&patch_args, &[], None).await?;
        Ok((raw, patch))
    }

    /// Whether commit `ancestor` is reachable from commit `descendant`.
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, ApiError> {
        if !is_full_sha(ancestor) || !is_full_sha(descendant) {
            return Ok(false);
        }
        let run = self
            .run(
                &["merge-base", "--is-ancestor", ancestor, descendant],
                &[],
                None,
            )
            .await?;
        Ok(run.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(is_full_sha(&"a".repeat(40)));
        assert!(!is_full_sha(&"g".repeat(40)));
        assert!(!is_full_sha("abc"));
        assert!(is_hex("abcd") && !is_hex("abc") && !is_hex("-abc"));
        assert!(valid_ref_name("refs/heads/feature/x"));
        for bad in [
            "heads/main",
            "refs/main",
            "refs/heads/",
            "refs/heads//x",
            "refs/heads/.x",
            "refs/heads/x.lock",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/a@{1}",
            "refs/heads/x.",
        ] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
        assert!(valid_path("a/b c/d.txt"));
        for bad in [
            "",
            "-x",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            "./a",
            ".git/config",
            "a\0b",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn tree_listings_parse() {
        let sha = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
        let out =
            format!("100644 blob {sha}       0\tempty file\0040000 tree {sha}       -\tsrc\0");
        let entries = parse_ls_tree(out.as_bytes());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].path, "empty file");
        assert_eq!(entries[0].size, Some(0));
        assert_eq!(entries[1].kind, "tree");
        assert_eq!(entries[1].size, None);
    }
}
