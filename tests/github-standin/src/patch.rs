//! A changed file's `patch` as GitHub shows it (the unified diff from the first `@@` line on):
//! which lines a review comment can sit on, diff positions and the `diff_hunk` of a comment.
//!
//! GitHub accepts a comment on any line of a hunk — changed or context, three lines around each
//! change — on the side it exists on: `RIGHT` (the new file: context and added lines) or `LEFT`
//! (the old file: context and removed lines). A legacy `position` counts lines below the first
//! `@@` header (1 = the line just below it), later headers included.

/// A side of the diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The old file (merge base).
    Left,
    /// The new file (the commented commit).
    Right,
}

impl Side {
    /// `LEFT` or `RIGHT`, as GitHub spells them.
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "LEFT" => Some(Side::Left),
            "RIGHT" => Some(Side::Right),
            _ => None,
        }
    }

    /// GitHub's name of the side.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        }
    }
}

/// What a patch line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An `@@ -a,b +c,d @@` hunk header.
    Header,
    Context,
    Added,
    Removed,
    /// `\ No newline at end of file` (or anything else that is not a file line).
    Note,
}

/// One line of a patch with its line numbers in the old and new file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    kind: Kind,
    old: Option<u64>,
    new: Option<u64>,
    /// Index of this line's hunk header.
    hunk: usize,
    text: String,
}

/// A line a comment can sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The diff position (index below the first hunk header).
    pub position: u64,
    /// The line number in the file of `side`.
    pub line: u64,
    pub side: Side,
    /// Index of the hunk header.
    hunk: usize,
}

/// A parsed patch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Patch {
    /// Lines from the first hunk header on; index = diff position.
    lines: Vec<Line>,
}

/// The old and new start lines of a hunk header, `@@ -a[,b] +c[,d] @@`.
fn parse_header(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let start = |r: &str| r.split(',').next()?.parse::<u64>().ok();
    Some((start(old)?, start(new)?))
}

impl Patch {
    /// Parses a patch; anything before the first hunk header is ignored.
    pub fn parse(text: &str) -> Patch {
        let mut lines = Vec::new();
        let (mut old, mut new, mut hunk) = (0u64, 0u64, 0usize);
        for text in text.lines() {
            if let Some((o, n)) = parse_header(text) {
                (old, new, hunk) = (o, n, lines.len());
                lines.push(Line {
                    kind: Kind::Header,
                    old: None,
                    new: None,
                    hunk,
                    text: text.to_string(),
                });
                continue;
            }
            if lines.is_empty() {
                continue;
            }
            // An empty line is a context line whose leading space was lost (hand-written
            // patches); git always writes the space.
            let kind = match text.as_bytes().first() {
                Some(b' ') | None => Kind::Context,
                Some(b'+') => Kind::Added,
                Some(b'-') => Kind::Removed,
                _ => Kind::Note,
            };
            let (o, n) = match kind {
                Kind::Context => (Some(old), Some(new)),
                Kind::Added => (None, Some(new)),
                Kind::Removed => (Some(old), None),
                _ => (None, None),
            };
            old += u64::from(o.is_some());
            new += u64::from(n.is_some());
            lines.push(Line {
                kind,
                old: o,
                new: n,
                hunk,
                text: text.to_string(),
            });
        }
        Patch { lines }
    }

    /// Added and removed lines.
    pub fn counts(&self) -> (u64, u64) {
        let count = |k: Kind| self.lines.iter().filter(|l| l.kind == k).count() as u64;
        (count(Kind::Added), count(Kind::Removed))
    }

    /// The anchor of the line at index `i`, seen from `side`.
    fn anchor_at(&self, i: usize, side: Side) -> Option<Anchor> {
        let l = self.lines.get(i)?;
        let line = match side {
            Side::Left => l.old?,
            Side::Right => l.new?,
        };
        Some(Anchor {
            position: i as u64,
            line,
            side,
            hunk: l.hunk,
        })
    }

    /// Where line `line` of the `side` file is in the patch, if a hunk shows it.
    pub fn anchor(&self, line: u64, side: Side) -> Option<Anchor> {
        (0..self.lines.len())
            .filter_map(|i| self.anchor_at(i, side))
            .find(|a| a.line == line)
    }

    /// The line at a diff position: a removed line is on the `LEFT`, others on the `RIGHT`.
    /// Hunk headers and notes are no line.
    pub fn at_position(&self, position: u64) -> Option<Anchor> {
        let i = usize::try_from(position).ok().filter(|i| *i > 0)?;
        let side = match self.lines.get(i)?.kind {
            Kind::Removed => Side::Left,
            Kind::Context | Kind::Added => Side::Right,
            Kind::Header | Kind::Note => return None,
        };
        self.anchor_at(i, side)
    }

    /// GitHub's `diff_hunk` of a comment: its hunk's header through the commented line.
    pub fn diff_hunk(&self, anchor: &Anchor) -> String {
        let end = usize::try_from(anchor.position).unwrap_or(usize::MAX);
        self.lines
            .iter()
            .enumerate()
            .skip(anchor.hunk)
            .take_while(|(i, _)| *i <= end)
            .map(|(_, l)| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "@@ -1,4 +1,5 @@ fn main() {\n a\n-b\n+B\n+C\n c\n d\n@@ -10,2 +11,2 @@\n x\n-y\n\\ No newline at end of file\n+z\n\\ No newline at end of file";

    #[test]
    fn lines_have_both_numbers_and_positions() {
        let p = Patch::parse(PATCH);
        assert_eq!(p.counts(), (3, 2));
        let a = p.anchor(3, Side::Right).unwrap();
        assert_eq!((a.position, a.line), (4, 3));
        assert_eq!(
            p.diff_hunk(&a),
            "@@ -1,4 +1,5 @@ fn main() {\n a\n-b\n+B\n+C"
        );
        let b = p.anchor(2, Side::Left).unwrap();
        assert_eq!(b.position, 2);
        // Context lines are on both sides; added lines only on the right.
        assert_eq!(p.anchor(4, Side::Right).unwrap().position, 5);
        assert_eq!(p.anchor(3, Side::Left).unwrap().position, 5);
        assert!(p.anchor(6, Side::Right).is_none());
        assert!(p.anchor(5, Side::Left).is_none());
        // The second hunk: its header is position 7.
        let y = p.anchor(11, Side::Left).unwrap();
        assert_eq!(y.position, 9);
        assert_eq!(p.diff_hunk(&y), "@@ -10,2 +11,2 @@\n x\n-y");
        assert_eq!(p.anchor(12, Side::Right).unwrap().position, 11);
    }

    #[test]
    fn positions_name_lines_but_not_headers_or_notes() {
        let p = Patch::parse(PATCH);
        let a = p.at_position(1).unwrap();
        assert_eq!((a.line, a.side), (1, Side::Right));
        let b = p.at_position(2).unwrap();
        assert_eq!((b.line, b.side), (2, Side::Left));
        assert!(p.at_position(0).is_none());
        assert!(p.at_position(7).is_none());
        assert!(p.at_position(10).is_none());
        assert!(p.at_position(13).is_none());
    }

    #[test]
    fn new_files_and_odd_input_parse() {
        let p = Patch::parse("@@ -0,0 +1,2 @@\n+one\n+two");
        assert_eq!(p.anchor(2, Side::Right).unwrap().position, 2);
        assert!(p.anchor(1, Side::Left).is_none());
        assert_eq!(Patch::parse("").counts(), (0, 0));
        assert!(Patch::parse("junk\n+x").anchor(1, Side::Right).is_none());
        assert_eq!(Side::parse("LEFT"), Some(Side::Left));
        assert_eq!(Side::parse("left"), None);
    }
}
