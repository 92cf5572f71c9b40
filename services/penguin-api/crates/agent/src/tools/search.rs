//! `search` and the recursive form of `list_files`: walks of the workspace
//! with ripgrep's crates (`ignore` honours `.gitignore`, `.ignore` and
//! hidden files; `grep-regex` + `grep-searcher` match with context lines),
//! leaving out whatever the security policy denies and `.git`.

use crate::config::SecurityPolicy;
use grep_regex::RegexMatcherBuilder;
use grep_searcher::{Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use std::path::Path;

/// At most this many bytes of search output.
pub const MAX_SEARCH_BYTES: usize = 48 * 1024;
/// At most this many matching lines.
pub const MAX_SEARCH_MATCHES: usize = 200;

/// Files under `root` (relative to `workspace`, '/'-separated) that the
/// policy allows and `glob` (when given) matches, sorted.
pub fn walk_files(
    workspace: &Path,
    policy: &SecurityPolicy,
    root: &Path,
    glob: Option<&globset::GlobMatcher>,
) -> Vec<String> {
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker.flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(workspace) else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        if policy.is_denied_entry(workspace, Path::new(rel)) {
            continue;
        }
        if glob.is_some_and(|g| !g.is_match(rel)) {
            continue;
        }
        files.push(rel.to_string());
    }
    files.sort();
    files
}

/// Collects matches and context lines as `path:line: text` (a match) and
/// `path-line- text` (context), ripgrep's layout.
struct Collect<'a> {
    path: &'a str,
    out: &'a mut String,
    matches: &'a mut usize,
    full: &'a mut bool,
}

impl Collect<'_> {
    fn line(&mut self, sep: char, number: Option<u64>, bytes: &[u8]) -> bool {
        if *self.full {
            return false;
        }
        let text = String::from_utf8_lossy(bytes);
        let line = format!(
            "{}{sep}{}{sep} {}\n",
            self.path,
            number.unwrap_or(0),
            text.trim_end_matches(['\n', '\r'])
        );
        if self.out.len() + line.len() > MAX_SEARCH_BYTES {
            *self.full = true;
            return false;
        }
        self.out.push_str(&line);
        true
    }
}

impl Sink for Collect<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, m: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        if *self.matches >= MAX_SEARCH_MATCHES {
            *self.full = true;
            return Ok(false);
        }
        *self.matches += 1;
        Ok(self.line(':', m.line_number(), m.bytes()))
    }

    fn context(&mut self, _: &Searcher, c: &SinkContext<'_>) -> Result<bool, Self::Error> {
        Ok(self.line('-', c.line_number(), c.bytes()))
    }

    fn context_break(&mut self, _: &Searcher) -> Result<bool, Self::Error> {
        if !*self.full {
            self.out.push_str("--\n");
        }
        Ok(!*self.full)
    }
}

/// What to search for.
pub struct SearchRequest<'a> {
    /// A regular expression (Rust `regex` syntax).
    pub pattern: &'a str,
    /// Case-insensitive.
    pub ignore_case: bool,
    /// Lines of context before and after each match.
    pub context: usize,
    /// Only files this glob matches.
    pub glob: Option<&'a globset::GlobMatcher>,
}

/// Searches the allowed files under `root`; the text for the model.
pub fn search(
    workspace: &Path,
    policy: &SecurityPolicy,
    root: &Path,
    request: &SearchRequest<'_>,
) -> Result<String, String> {
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(request.ignore_case)
        .line_terminator(Some(b'\n'))
        .build(request.pattern)
        .map_err(|e| format!("invalid regular expression: {e}"))?;
    let mut searcher = SearcherBuilder::new()
        .line_number(true)
        .before_context(request.context)
        .after_context(request.context)
        .binary_detection(grep_searcher::BinaryDetection::quit(0))
        .build();
    let mut out = String::new();
    let mut matches = 0usize;
    let mut full = false;
    let files = walk_files(workspace, policy, root, request.glob);
    let mut files_with_matches = 0usize;
    for rel in &files {
        if full {
            break;
        }
        let before = matches;
        let sink = Collect {
            path: rel,
            out: &mut out,
            matches: &mut matches,
            full: &mut full,
        };
        // An unreadable file is skipped, not fatal.
        let _ = searcher.search_path(&matcher, workspace.join(rel), sink);
        if matches > before {
            files_with_matches += 1;
        }
    }
    if matches == 0 {
        return Ok(format!(
            "no matches for /{}/ in {} files",
            request.pattern,
            files.len()
        ));
    }
    if full {
        out.push_str(&format!(
            "[truncated: stopped after {matches} matches or {} KiB; narrow the pattern, path or glob]\n",
            MAX_SEARCH_BYTES / 1024
        ));
    } else {
        out.push_str(&format!(
            "[{matches} matches in {files_with_matches} files]\n"
        ));
    }
    Ok(out)
}
