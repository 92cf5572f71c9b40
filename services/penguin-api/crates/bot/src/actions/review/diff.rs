//! A file's unified diff hunks (`patch` of GitHub's changed files) with the
//! line numbers GitHub places review comments by: `RIGHT` lines are the new
//! file's (added and context lines), `LEFT` lines the old file's (removed and
//! context lines). A comment, or a range, must lie within one hunk.

/// Which file of the diff a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The old file (removed lines).
    Left,
    /// The new file (added lines); context lines are on both sides.
    Right,
}

impl Side {
    /// `LEFT` or `RIGHT`, as GitHub spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        }
    }

    /// `LEFT` or `RIGHT` (any case); anything else is `None`.
    pub fn parse(text: &str) -> Option<Side> {
        match text.trim().to_ascii_uppercase().as_str() {
            "LEFT" => Some(Side::Left),
            "RIGHT" => Some(Side::Right),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Context,
    Added,
    Removed,
}

#[derive(Clone, Debug)]
struct Line {
    kind: Kind,
    old: Option<u64>,
    new: Option<u64>,
    hunk: usize,
    text: String,
}

/// A parsed patch.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    headers: Vec<String>,
    lines: Vec<Line>,
}

/// `-a,b +c,d` of a hunk header: the first old and new line numbers.
fn hunk_starts(header: &str) -> Option<(u64, u64)> {
    let inner = header.strip_prefix("@@ ")?;
    let (ranges, _) = inner.split_once(" @@")?;
    let (old, new) = ranges.split_once(' ')?;
    let start = |r: &str, sign: char| -> Option<u64> {
        r.strip_prefix(sign)?.split(',').next()?.parse().ok()
    };
    Some((start(old, '-')?, start(new, '+')?))
}

impl Patch {
    /// Parses GitHub's `patch` text (hunks only, no file headers). Lines
    /// before the first hunk header and `\ No newline at end of file` are
    /// skipped.
    pub fn parse(text: &str) -> Patch {
        let mut patch = Patch::default();
        let (mut old, mut new) = (0u64, 0u64);
        for raw in text.lines() {
            if raw.starts_with("@@") {
                if let Some((o, n)) = hunk_starts(raw) {
                    patch.headers.push(raw.to_string());
                    (old, new) = (o, n);
                    continue;
                }
            }
            if patch.headers.is_empty() || raw.starts_with('\\') {
                continue;
            }
            let hunk = patch.headers.len() - 1;
            let (kind, text) = match raw.chars().next() {
                Some('+') => (Kind::Added, &raw[1..]),
                Some('-') => (Kind::Removed, &raw[1..]),
                Some(' ') => (Kind::Context, &raw[1..]),
                _ => (Kind::Context, raw),
            };
            let line = match kind {
                Kind::Added => {
                    new += 1;
                    Line {
                        kind,
                        old: None,
                        new: Some(new - 1),
                        hunk,
                        text: text.to_string(),
                    }
                }
                Kind::Removed => {
                    old += 1;
                    Line {
                        kind,
                        old: Some(old - 1),
                        new: None,
                        hunk,
                        text: text.to_string(),
                    }
                }
                Kind::Context => {
                    old += 1;
                    new += 1;
                    Line {
                        kind,
                        old: Some(old - 1),
                        new: Some(new - 1),
                        hunk,
                        text: text.to_string(),
                    }
                }
            };
            patch.lines.push(line);
        }
        patch
    }

    fn find(&self, side: Side, number: u64) -> Option<&Line> {
        self.lines.iter().find(|l| match side {
            Side::Right => l.new == Some(number),
            Side::Left => l.old == Some(number) && l.kind != Kind::Added,
        })
    }

    /// Whether a comment on lines `start..=end` of `side` can be placed:
    /// both ends in the diff, in the same hunk, in order.
    pub fn places(&self, side: Side, start: u64, end: u64) -> bool {
        if start > end {
            return false;
        }
        match (self.find(side, start), self.find(side, end)) {
            (Some(a), Some(b)) => a.hunk == b.hunk,
            _ => false,
        }
    }

    /// The text of `LEFT` lines `start..=end` (what a comment on removed
    /// code is anchored to), if they are all in the diff.
    pub fn old_text(&self, start: u64, end: u64) -> Option<Vec<String>> {
        (start..=end)
            .map(|n| self.find(Side::Left, n).map(|l| l.text.clone()))
            .collect()
    }

    /// The patch for a prompt: each line prefixed with where a comment on it
    /// goes (`R12` new line 12, `L9` old line 9), `+`/`-`/` ` and its text.
    pub fn annotate(&self) -> String {
        let mut out = String::new();
        let mut hunk = usize::MAX;
        for line in &self.lines {
            if line.hunk != hunk {
                hunk = line.hunk;
                out.push_str(&self.headers[hunk]);
                out.push('\n');
            }
            let (label, sign) = match line.kind {
                Kind::Added => (format!("R{}", line.new.unwrap_or(0)), '+'),
                Kind::Removed => (format!("L{}", line.old.unwrap_or(0)), '-'),
                Kind::Context => (format!("R{}", line.new.unwrap_or(0)), ' '),
            };
            out.push_str(&format!("{label:>6} {sign}{}\n", line.text));
        }
        out
    }

    /// Lines in the patch.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the patch has no lines.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "@@ -1,4 +1,5 @@ fn main\n a\n-b\n+B\n+C\n c\n d\n@@ -20,3 +21,3 @@\n x\n-y\n+Y\n z\n\\ No newline at end of file\n";

    #[test]
    fn lines_are_numbered_like_github() {
        let p = Patch::parse(PATCH);
        assert_eq!(p.len(), 10);
        // Added and context lines on the right, removed and context on the left.
        assert!(p.places(Side::Right, 1, 1));
        assert!(p.places(Side::Right, 2, 3));
        assert!(p.places(Side::Right, 5, 5));
        assert!(!p.places(Side::Right, 6, 6));
        assert!(p.places(Side::Left, 2, 2));
        assert!(p.places(Side::Left, 4, 4));
        assert!(p.places(Side::Right, 21, 23));
        assert!(p.places(Side::Left, 21, 21));
        assert!(!p.places(Side::Right, 20, 20));
        // A range crosses no hunk boundary and runs forwards.
        assert!(!p.places(Side::Right, 3, 21));
        assert!(!p.places(Side::Right, 3, 2));
        assert_eq!(p.old_text(2, 2), Some(vec!["b".to_string()]));
        assert_eq!(p.old_text(2, 9), None);
    }

    #[test]
    fn the_annotated_patch_names_sides_and_lines() {
        let text = Patch::parse(PATCH).annotate();
        let expected = "@@ -1,4 +1,5 @@ fn main\n    R1  a\n    L2 -b\n    R2 +B\n    R3 +C\n    R4  c\n    R5  d\n@@ -20,3 +21,3 @@\n   R21  x\n   L21 -y\n   R22 +Y\n   R23  z\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn garbage_is_not_a_hunk() {
        let p = Patch::parse("Binary files differ\n@@ nonsense\n+x\n");
        assert!(p.is_empty());
        assert!(!p.places(Side::Right, 1, 1));
        assert_eq!(Side::parse("left"), Some(Side::Left));
        assert_eq!(Side::parse("middle"), None);
    }
}
