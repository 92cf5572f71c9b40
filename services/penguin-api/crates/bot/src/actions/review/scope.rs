//! Which files a review looks at and how they are split into prompts: the
//! ignore globs leave files out, files without a patch or with a patch over
//! `max_diff_lines` (and those over `max_files`) are listed as not reviewed,
//! and the rest are packed into chunks within `max_prompt_tokens`. Nothing is
//! dropped silently: every file left out is named with the reason.

use super::diff::Patch;
use crate::{config::ReviewConfig, github_api::pulls::ChangedFile};
use globset::{Glob, GlobSet, GlobSetBuilder};

/// A file to review, with its parsed patch.
pub struct ReviewFile {
    /// The changed file.
    pub file: ChangedFile,
    /// Its hunks.
    pub patch: Patch,
    /// The annotated hunks for the prompt.
    pub annotated: String,
}

/// The files of one review.
#[derive(Default)]
pub struct Scope {
    /// Chunks of files, each reviewed in one prompt.
    pub chunks: Vec<Vec<ReviewFile>>,
    /// Paths the ignore globs left out.
    pub ignored: Vec<String>,
    /// Paths not reviewed, with why.
    pub not_reviewed: Vec<(String, String)>,
}

impl Scope {
    /// Files reviewed.
    pub fn reviewed(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

/// Rough tokens of `text` (about four bytes each), for packing prompts.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// A matcher for `globs` (invalid ones were refused with the configuration).
pub fn glob_set(globs: &[String]) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        if let Ok(glob) = Glob::new(glob) {
            builder.add(glob);
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Splits `files` by `config` (see the module documentation).
pub fn select(files: Vec<ChangedFile>, config: &ReviewConfig) -> Scope {
    let ignore = glob_set(&config.ignore);
    let mut scope = Scope::default();
    let mut current: Vec<ReviewFile> = Vec::new();
    let mut current_tokens = 0usize;
    let mut taken = 0usize;
    for file in files {
        if ignore.is_match(&file.filename) {
            scope.ignored.push(file.filename);
            continue;
        }
        let Some(text) = file.patch.as_deref().filter(|p| !p.trim().is_empty()) else {
            let why = if file.status == "removed" {
                "deleted"
            } else {
                "no diff from GitHub (binary or too large)"
            };
            scope.not_reviewed.push((file.filename, why.into()));
            continue;
        };
        if taken >= config.max_files {
            scope.not_reviewed.push((
                file.filename,
                format!("over max_files ({})", config.max_files),
            ));
            continue;
        }
        let patch = Patch::parse(text);
        if patch.len() > config.max_diff_lines {
            let why = format!(
                "{} diff lines, over max_diff_lines ({})",
                patch.len(),
                config.max_diff_lines
            );
            scope.not_reviewed.push((file.filename, why));
            continue;
        }
        let annotated = patch.annotate();
        let tokens = estimate_tokens(&annotated) + estimate_tokens(&file.filename) + 16;
        if tokens > config.max_prompt_tokens {
            let why = format!(
                "its diff alone (~{tokens} tokens) is over max_prompt_tokens ({})",
                config.max_prompt_tokens
            );
            scope.not_reviewed.push((file.filename, why));
            continue;
        }
        if current_tokens + tokens > config.max_prompt_tokens && !current.is_empty() {
            scope.chunks.push(std::mem::take(&mut current));
            current_tokens = 0;
        }
        current_tokens += tokens;
        taken += 1;
        current.push(ReviewFile {
            file,
            patch,
            annotated,
        });
    }
    if !current.is_empty() {
        scope.chunks.push(current);
    }
    scope
}

/// The instructions of every `path_instructions` glob matching `path`.
pub fn instructions_for<'a>(
    path: &str,
    path_instructions: &'a std::collections::BTreeMap<String, String>,
) -> Vec<&'a str> {
    path_instructions
        .iter()
        .filter(|(glob, _)| Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(path)))
        .map(|(_, text)| text.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, lines: usize) -> ChangedFile {
        let mut patch = format!("@@ -0,0 +1,{lines} @@\n");
        for i in 0..lines {
            patch.push_str(&format!("+line {i} of {name}\n"));
        }
        ChangedFile {
            filename: name.into(),
            status: "added".into(),
            additions: lines as u64,
            deletions: 0,
            patch: Some(patch),
        }
    }

    #[test]
    fn ignored_binary_and_oversized_files_are_listed_and_the_rest_chunked() {
        let config = ReviewConfig {
            max_files: 4,
            max_diff_lines: 300,
            max_prompt_tokens: 1000,
            ignore: vec!["**/*.lock".into(), "Cargo.lock".into()],
            ..ReviewConfig::default()
        };
        let mut binary = file("logo.png", 0);
        binary.patch = None;
        let files = vec![
            file("Cargo.lock", 10),
            file("web/yarn.lock", 10),
            binary,
            file("a.rs", 100),
            file("b.rs", 100),
            file("huge.rs", 400),
            file("c.rs", 10),
            file("d.rs", 10),
            file("e.rs", 10),
        ];
        let scope = select(files, &config);
        assert_eq!(scope.ignored, ["Cargo.lock", "web/yarn.lock"]);
        let names: Vec<Vec<&str>> = scope
            .chunks
            .iter()
            .map(|c| c.iter().map(|f| f.file.filename.as_str()).collect())
            .collect();
        // Each a.rs / b.rs is ~600 tokens: one per chunk.
        assert_eq!(names, [vec!["a.rs"], vec!["b.rs", "c.rs", "d.rs"]]);
        let skipped: Vec<&str> = scope.not_reviewed.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(skipped, ["logo.png", "huge.rs", "e.rs"]);
        assert!(scope.not_reviewed[1].1.contains("max_diff_lines"));
        assert!(scope.not_reviewed[2].1.contains("max_files"));
        assert_eq!(scope.reviewed(), 4);
    }

    #[test]
    fn path_instructions_match_by_glob() {
        let map = [
            ("src/db/**".to_string(), "queries".to_string()),
            ("**/*.rs".to_string(), "rust".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(instructions_for("src/db/q.rs", &map), ["rust", "queries"]);
        assert!(instructions_for("README.md", &map).is_empty());
    }
}
