//! What the model reports (findings as JSON through its `finish` tool), how
//! a finding is identified across reviews (its fingerprint) and how it reads
//! on GitHub (an inline comment, with a suggestion GitHub can commit).

use crate::config::Severity;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One finding as the model reports it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub path: String,
    /// Its (last) line on `side`.
    pub line: u64,
    /// The first line of a range.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// `RIGHT` (new file, the default) or `LEFT` (removed lines).
    #[serde(default)]
    pub side: Option<String>,
    /// How much it matters.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Why, and what to do.
    #[serde(default)]
    pub body: String,
    /// Replacement text for the commented lines, when the fix is obvious.
    #[serde(default)]
    pub suggestion: Option<String>,
}

impl Finding {
    /// The first line of the range (the line itself for one line).
    pub fn first_line(&self) -> u64 {
        self.start_line
            .filter(|s| *s <= self.line)
            .unwrap_or(self.line)
    }
}

/// The model's answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Submission {
    /// What it found.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// One or two sentences about the change.
    #[serde(default)]
    pub summary: String,
}

/// The JSON schema of `finish`'s arguments.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string", "description": "One or two sentences on the change as a whole."},
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path as in the diff."},
                        "line": {"type": "integer", "minimum": 1, "description": "The (last) line the finding is about: the number after R (new file) or L (removed line) in the diff."},
                        "start_line": {"type": "integer", "minimum": 1, "description": "First line, for a range in the same hunk."},
                        "side": {"type": "string", "enum": ["RIGHT", "LEFT"], "description": "RIGHT for R lines (default), LEFT for L lines."},
                        "severity": {"type": "string", "enum": ["high", "medium", "low", "nit"]},
                        "title": {"type": "string", "description": "One line."},
                        "body": {"type": "string", "description": "Why it matters and what to do."},
                        "suggestion": {"type": "string", "description": "Only for RIGHT lines and an obvious fix: the exact replacement text for lines start_line..line."}
                    },
                    "required": ["path", "line", "severity", "title", "body"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["findings"],
        "additionalProperties": false
    })
}

/// Reads the model's answer: `finish`'s JSON, or JSON the model wrote as
/// text (bare, or in a fenced block).
pub fn parse_submission(text: &str) -> Result<Submission, String> {
    let trimmed = text.trim();
    let candidate = match trimmed.find("```") {
        Some(start) if !trimmed.starts_with('{') => {
            let after = &trimmed[start + 3..];
            let body = after.split_once('\n').map_or(after, |(_, rest)| rest);
            body.split("```").next().unwrap_or(body)
        }
        _ => trimmed,
    };
    serde_json::from_str::<Submission>(candidate.trim())
        .map_err(|e| format!("the model's findings are not valid JSON of the expected shape: {e}"))
}

/// Lines as compared across commits: whitespace runs collapsed, ends
/// trimmed, blank lines dropped.
pub fn normalize<S: AsRef<str>>(lines: &[S]) -> String {
    lines
        .iter()
        .map(|l| l.as_ref().split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What identifies a finding across reviews: its file, the normalised code
/// it is anchored to and its title (case and spacing ignored).
pub fn fingerprint(path: &str, anchor: &str, title: &str) -> String {
    let title = normalize(&[title.to_lowercase()]);
    let digest = Sha256::digest(format!("{path}\u{0}{anchor}\u{0}{title}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Whether the normalised `anchor` still occurs in `text` as consecutive
/// (non-blank) lines.
pub fn still_present(anchor: &str, text: &str) -> bool {
    if anchor.is_empty() {
        return true;
    }
    let wanted: Vec<&str> = anchor.lines().collect();
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .windows(wanted.len())
        .any(|w| w.iter().zip(&wanted).all(|(a, b)| a == b))
}

/// The severity's badge.
fn badge(severity: Severity) -> &'static str {
    match severity {
        Severity::High => "🔴 High",
        Severity::Medium => "🟠 Medium",
        Severity::Low => "🟡 Low",
        Severity::Nit => "⚪ Nit",
    }
}

/// The inline comment for `finding`; a suggestion becomes a ```` ```suggestion ````
/// block (only on the new side, where GitHub can commit it).
pub fn comment_body(finding: &Finding, right_side: bool) -> String {
    let mut out = format!(
        "**{}: {}**\n\n{}",
        badge(finding.severity),
        one_line(&finding.title),
        finding.body.trim()
    );
    if let (Some(suggestion), true) = (&finding.suggestion, right_side) {
        let fence = crate::actions::fix_loop::fence_ticks(suggestion);
        let text = suggestion.strip_suffix('\n').unwrap_or(suggestion);
        out.push_str(&format!("\n\n{fence}suggestion\n{text}\n{fence}"));
    }
    out
}

/// A finding listed in the review's body (it could not be placed inline).
pub fn body_entry(finding: &Finding) -> String {
    let lines = if finding.first_line() == finding.line {
        format!("{}", finding.line)
    } else {
        format!("{}-{}", finding.first_line(), finding.line)
    };
    let mut out = format!(
        "- **{}: {}** (`{}` line {lines})",
        badge(finding.severity),
        one_line(&finding.title),
        finding.path.replace('`', "'"),
    );
    let body = finding.body.trim();
    if !body.is_empty() {
        out.push_str(&format!(
            "\n  {}",
            body.lines().collect::<Vec<_>>().join("\n  ")
        ));
    }
    out
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            path: "src/a.rs".into(),
            line: 4,
            start_line: Some(3),
            side: None,
            severity: Severity::High,
            title: "Off by one".into(),
            body: "Use `<=`.".into(),
            suggestion: Some("for i in 0..=n {".into()),
        }
    }

    #[test]
    fn answers_parse_bare_or_fenced_and_bad_ones_say_why() {
        let json = r#"{"summary":"ok","findings":[{"path":"a","line":2,"severity":"nit","title":"t","body":"b"}]}"#;
        let bare = parse_submission(json).unwrap();
        assert_eq!(bare.findings[0].severity, Severity::Nit);
        let fenced = parse_submission(&format!("Here:\n```json\n{json}\n```\n")).unwrap();
        assert_eq!(fenced, bare);
        let err = parse_submission(
            r#"{"findings":[{"path":"a","line":2,"severity":"urgent","title":"t","body":"b"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        assert!(parse_submission("no findings").is_err());
    }

    #[test]
    fn fingerprints_ignore_spacing_and_case_but_not_code() {
        let a = fingerprint("p", &normalize(&["  let x = 1;", ""]), "Unused X");
        let b = fingerprint("p", &normalize(&["let  x = 1;  "]), "unused x");
        let c = fingerprint("p", &normalize(&["let x = 2;"]), "unused x");
        let d = fingerprint("q", &normalize(&["let x = 1;"]), "unused x");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn presence_is_checked_on_consecutive_lines() {
        let anchor = normalize(&["a(1);", "b(2);"]);
        assert!(still_present(&anchor, "x\n  a(1);\n\n   b(2);\ny"));
        assert!(!still_present(&anchor, "a(1);\nz\nb(2);"));
        assert!(!still_present(&anchor, "a(1);"));
    }

    #[test]
    fn comments_carry_suggestions_only_on_the_new_side() {
        let f = finding();
        let right = comment_body(&f, true);
        assert_eq!(
            right,
            "**🔴 High: Off by one**\n\nUse `<=`.\n\n```suggestion\nfor i in 0..=n {\n```"
        );
        assert!(!comment_body(&f, false).contains("suggestion"));
        // A suggestion holding a fence gets a longer one.
        let mut g = finding();
        g.suggestion = Some("```\ncode\n```".into());
        assert!(comment_body(&g, true).contains("````suggestion\n```\ncode\n```\n````"));
        assert_eq!(
            body_entry(&f),
            "- **🔴 High: Off by one** (`src/a.rs` line 3-4)\n  Use `<=`."
        );
    }
}
