//! Repository contents a GitHub App bot works with: issues, pull requests, comments, labels,
//! reactions, check runs, reviews and their line comments, collaborator permissions, plus team
//! memberships, the commits the stand-in signed, computed pull request diffs, the call log and
//! the call-fault queue of those routes. (Git contents live in the bare repositories, see
//! [`crate::plumbing`].)

use std::collections::{BTreeMap, HashMap};

use crate::changes::PullDiff;
use crate::{Fault, PullFileSpec};
use chrono::{DateTime, Utc};

/// An issue (every pull request is also one, with the same number).
#[derive(Debug, Clone)]
pub(crate) struct IssueRec {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    /// Label names, in the order they were added.
    pub labels: Vec<String>,
    /// `open` or `closed`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// The pull-request part of an issue.
#[derive(Debug, Clone)]
pub(crate) struct PullRec {
    pub id: u64,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub from_fork: bool,
    pub draft: bool,
    pub files: Vec<PullFileSpec>,
    /// Earlier head commits, oldest first (reviews may still name them).
    pub past_heads: Vec<String>,
}

/// An issue comment.
#[derive(Debug, Clone)]
pub(crate) struct CommentRec {
    pub id: u64,
    pub issue_number: u64,
    pub body: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A repository label.
#[derive(Debug, Clone)]
pub(crate) struct LabelRec {
    pub id: u64,
    pub name: String,
    pub color: String,
}

/// A reaction to an issue comment.
#[derive(Debug, Clone)]
pub(crate) struct ReactionRec {
    pub id: u64,
    pub comment_id: u64,
    pub content: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
}

/// A check run's output.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputRec {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

/// A check run.
#[derive(Debug, Clone)]
pub(crate) struct CheckRunRec {
    pub id: u64,
    pub suite_id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub details_url: Option<String>,
    pub external_id: String,
    pub output: OutputRec,
    /// Annotations sent so far (GitHub adds them up across updates).
    pub annotations_count: usize,
}

/// A pull request review.
#[derive(Debug, Clone)]
pub(crate) struct ReviewRec {
    pub id: u64,
    pub number: u64,
    pub body: String,
    /// `COMMENTED`, `APPROVED`, `CHANGES_REQUESTED` or `PENDING`.
    pub state: String,
    pub commit_id: String,
    pub submitted_at: Option<DateTime<Utc>>,
    pub author: String,
}

/// A review (line) comment on a pull request; its inline comments are in
/// [`RepoData::review_comments`].
#[derive(Debug, Clone)]
pub(crate) struct ReviewCommentRec {
    pub id: u64,
    pub review_id: u64,
    /// The pull request number.
    pub number: u64,
    pub path: String,
    pub line: u64,
    /// `LEFT` or `RIGHT`.
    pub side: String,
    pub start_line: Option<u64>,
    pub start_side: Option<String>,
    /// The diff position of `line` in the diff of `commit_id`.
    pub position: u64,
    pub commit_id: String,
    /// The hunk header through the commented line.
    pub diff_hunk: String,
    /// The thread's first comment, for replies.
    pub in_reply_to_id: Option<u64>,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything stored for one repository.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepoData {
    pub issues: BTreeMap<u64, IssueRec>,
    pub pulls: BTreeMap<u64, PullRec>,
    pub comments: Vec<CommentRec>,
    pub labels: Vec<LabelRec>,
    pub reactions: Vec<ReactionRec>,
    pub check_runs: Vec<CheckRunRec>,
    pub reviews: Vec<ReviewRec>,
    /// Review comments of every pull request, oldest first.
    pub review_comments: Vec<ReviewCommentRec>,
    /// Lowercase login → `admin`, `maintain`, `write`, `triage` or `read`.
    pub permissions: HashMap<String, String>,
}

impl RepoData {
    /// The label with this name, case-insensitively.
    pub fn label(&self, name: &str) -> Option<&LabelRec> {
        self.labels
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name))
    }

    /// How many comments an issue has.
    pub fn comment_count(&self, number: u64) -> usize {
        self.comments
            .iter()
            .filter(|c| c.issue_number == number)
            .count()
    }

    /// The collaborator permission of a login (`none` when unset).
    pub fn permission(&self, login: &str) -> &str {
        self.permissions
            .get(&login.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("none")
    }

    /// The next free issue/pull request number.
    pub fn next_number(&self) -> u64 {
        self.issues.keys().next_back().map_or(1, |n| n + 1)
    }
}

/// Store key of a repository: lowercase owner and name.
pub(crate) fn repo_key(owner: &str, repo: &str) -> (String, String) {
    (owner.to_ascii_lowercase(), repo.to_ascii_lowercase())
}

/// A pending injected fault for the bot routes.
#[derive(Debug, Clone)]
pub(crate) struct CallFault {
    pub method: String,
    pub path_prefix: String,
    pub fault: Fault,
}

/// Bot-route state inside the stand-in's mutable state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub repos: HashMap<(String, String), RepoData>,
    pub calls: Vec<crate::RecordedCall>,
    pub faults: Vec<CallFault>,
    /// Pagination `Link` targets are absolute URLs (GitHub's form) rather than paths.
    pub absolute_links: bool,
    /// Commits the stand-in created and signed as the App's bot, in creation order, with the
    /// time they were signed.
    pub signed_commits: Vec<(String, DateTime<Utc>)>,
    /// Team members: (lowercase organization, lowercase team slug) → lowercase login → role
    /// (`member` or `maintainer`).
    pub teams: HashMap<(String, String), BTreeMap<String, String>>,
    /// Computed pull request diffs by (merge base, commit).
    pub diffs: HashMap<(String, String), PullDiff>,
    next_id: u64,
}

impl Store {
    /// Logs a call as still unanswered (499); its index, for [`Store::answered`].
    pub fn record_call(&mut self, method: &str, path: &str, body: serde_json::Value) -> usize {
        self.calls.push(crate::RecordedCall {
            method: method.to_string(),
            path: path.to_string(),
            body,
            status: 499,
        });
        self.calls.len() - 1
    }

    /// Sets the status logged call `index` was answered with.
    pub fn answered(&mut self, index: usize, status: u16) {
        if let Some(call) = self.calls.get_mut(index) {
            call.status = status;
        }
    }

    /// A fresh object ID (unique across object kinds).
    pub fn next_id(&mut self) -> u64 {
        if self.next_id == 0 {
            self.next_id = 10_000_001;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The repository's data, created empty if needed.
    pub fn repo_mut(&mut self, owner: &str, repo: &str) -> &mut RepoData {
        self.repos.entry(repo_key(owner, repo)).or_default()
    }

    /// The repository's data, if any was stored.
    pub fn repo(&self, owner: &str, repo: &str) -> Option<&RepoData> {
        self.repos.get(&repo_key(owner, repo))
    }

    /// When the stand-in signed this commit, if it did.
    pub fn signed_at(&self, sha: &str) -> Option<DateTime<Utc>> {
        self.signed_commits
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(sha))
            .map(|(_, at)| *at)
    }

    /// The role of `login` in `org`'s team `slug`, if a member (all case-insensitive).
    pub fn team_role(&self, org: &str, slug: &str, login: &str) -> Option<&str> {
        self.teams
            .get(&repo_key(org, slug))?
            .get(&login.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Takes the first queued fault matching a call.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self.faults.iter().position(|f| {
            f.method.eq_ignore_ascii_case(method) && path.starts_with(f.path_prefix.as_str())
        })?;
        Some(self.faults.remove(index).fault)
    }

    /// Makes sure the repository has labels with these names (new ones get a default colour),
    /// returning their canonical names.
    pub fn ensure_labels(&mut self, owner: &str, repo: &str, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let existing = self.repo(owner, repo).and_then(|d| d.label(name).cloned());
            let canonical = match existing {
                Some(l) => l.name,
                None => {
                    let id = self.next_id();
                    self.repo_mut(owner, repo).labels.push(LabelRec {
                        id,
                        name: name.clone(),
                        color: default_color(name).to_string(),
                    });
                    name.clone()
                }
            };
            out.push(canonical);
        }
        out
    }
}

/// GitHub's default label colours, `ededed` for others.
fn default_color(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "bug" => "d73a4a",
        "documentation" => "0075ca",
        "duplicate" => "cfd3d7",
        "enhancement" => "a2eeef",
        "good first issue" => "7057ff",
        "help wanted" => "008672",
        "invalid" => "e4e669",
        "question" => "d876e3",
        "wontfix" => "ffffff",
        _ => "ededed",
    }
}

/// A deterministic 64-bit FNV-1a hash.
pub(crate) fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic 40-hex-digit pseudo SHA for `seed`.
pub(crate) fn pseudo_sha(seed: &str) -> String {
    let a = fnv(seed.as_bytes());
    let b = fnv(format!("{seed}\u{1}").as_bytes());
    let c = fnv(format!("{seed}\u{2}").as_bytes());
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_method_and_prefix_in_order() {
        let mut s = Store::default();
        s.faults.push(CallFault {
            method: "POST".into(),
            path_prefix: "/repos/o/r/issues".into(),
            fault: Fault::Status(500),
        });
        s.faults.push(CallFault {
            method: "GET".into(),
            path_prefix: "/repos/o/r".into(),
            fault: Fault::Status(502),
        });
        assert_eq!(
            s.take_fault("GET", "/repos/o/r/pulls/1"),
            Some(Fault::Status(502))
        );
        assert_eq!(s.take_fault("GET", "/repos/o/r/pulls/1"), None);
        assert_eq!(s.take_fault("post", "/repos/o/r/pulls"), None);
        assert_eq!(
            s.take_fault("post", "/repos/o/r/issues/1/comments"),
            Some(Fault::Status(500))
        );
    }

    #[test]
    fn pseudo_shas_are_stable_hex() {
        let a = pseudo_sha("x");
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, pseudo_sha("x"));
        assert_ne!(a, pseudo_sha("y"));
    }

    #[test]
    fn labels_are_created_once_case_insensitively() {
        let mut s = Store::default();
        let names = s.ensure_labels("o", "r", &["Bug".into(), "bug".into(), "new".into()]);
        assert_eq!(names, ["Bug", "Bug", "new"]);
        let data = s.repo("O", "R").unwrap();
        assert_eq!(data.labels.len(), 2);
        assert_eq!(data.label("BUG").unwrap().color, "d73a4a");
        assert_eq!(data.next_number(), 1);
    }
}
