//! `review`: findings on the lines they concern, posted as one review.
//!
//! - **What is reviewed.** The first review (and `review full`) covers the
//!   whole pull request; a later one only what changed since the head the
//!   last review covered (GitHub's compare), or everything again after a
//!   force-push. The review says which range it covered.
//! - **How.** The diff, with the line numbers comments are placed by
//!   ([`diff`]), goes to the model in chunks of files within
//!   `max_prompt_tokens` ([`scope`]), fenced as data, with the repository's
//!   guidelines from the *base* branch and per-path instructions. The model
//!   may read the head's files (read-only tools) and answers with findings
//!   as JSON through `finish` ([`findings`]).
//! - **Posting.** Findings on lines of the diff become inline comments
//!   (suggestions as ```` ```suggestion ```` blocks); the rest are listed in
//!   the body. One review per run, `COMMENT`, or `REQUEST_CHANGES` when a
//!   finding's severity is in `request_changes_on`; never `APPROVE`
//!   ([`publish`]).
//! - **Converging.** A finding is stored with a fingerprint; one already
//!   posted and still open is not posted again, and when the code it was
//!   anchored to changes or disappears, its thread is told it looks addressed.

pub mod diff;
pub mod findings;
pub mod publish;
pub mod scope;

use super::{fix_loop::fence, Target};
use crate::{
    config::{ReviewConfig, ServerConfig},
    event::Mention,
    git,
    github_api::{pulls::ChangedFile, RepoClient},
    BotContext, BotError, BotResult,
};
use diff::{Patch, Side};
use findings::{Finding, Submission};
use penguin_agent::{
    run_agent, strip_hidden, Decision, OutcomeStatus, SecurityPolicy, TaskSpec, ToolRegistry,
};
use penguin_api_store::{FindingState, NewReview, StoredFinding};
use penguin_llm::Usage;
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::Duration,
};

/// Where a repository's review guidelines live on its base branch, in order.
pub const GUIDELINE_FILES: [&str; 2] = [".penguin/review.md", "AGENTS.md"];
/// Guidelines longer than this are cut.
const MAX_GUIDELINES: usize = 8 * 1024;
/// One chunk's time limit.
const CHUNK_TIME_LIMIT: Duration = Duration::from_secs(600);
/// GitHub's compare lists at most this many files: more, and the range is
/// reviewed in full rather than partly.
const COMPARE_FILE_LIMIT: usize = 300;
/// Files larger than this are not read to anchor findings.
const MAX_ANCHOR_FILE: u64 = 2 * 1024 * 1024;

const FINISH: &str = "Submit the review: every finding on the diff's lines (an empty list when \
                      there is none), then the run ends.";

/// What a review covers.
enum Range {
    /// The whole pull request (`why` when it is not the first review).
    Full { why: Option<String> },
    /// From the head the last review covered.
    Since {
        from: String,
        files: Vec<ChangedFile>,
    },
}

/// Reviews pull request `m`; returns the report for the progress comment
/// and the check run.
pub async fn review(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    target: &Target<'_>,
    full: bool,
) -> BotResult<String> {
    let client = target.client;
    // One review of a pull request at a time (a command and an automatic
    // review may race): each starts from what the previous one recorded.
    let _turn = ctx
        .reviews_in_progress
        .lock(&format!("{}#{}", m.repository, m.number))
        .await;
    let pull = client.pull_info(m.number).await?;
    let head = target.head_sha.unwrap_or(&pull.head.sha).to_string();
    let last = ctx.store.last_review(&m.repository, m.number).await?;
    let range = match last.filter(|_| !full) {
        None => Range::Full { why: None },
        Some(last) if last.head_sha == head => {
            return Ok(format!(
                "Nothing new since the last review (`{}`). `{} review full` reviews everything again.",
                short(&head),
                config.github.bot.mention_trigger
            ));
        }
        Some(last) => match client.compare(&last.head_sha, &head).await? {
            Some(c) if c.status == "ahead" && c.files.len() < COMPARE_FILE_LIMIT => Range::Since {
                from: last.head_sha,
                files: c.files,
            },
            Some(c) if c.status == "ahead" => Range::Full {
                why: Some(format!(
                    "More than {COMPARE_FILE_LIMIT} files changed since `{}`, so everything was reviewed again.",
                    short(&last.head_sha)
                )),
            },
            Some(c) if c.status == "identical" => {
                return Ok(format!(
                    "Nothing new since the last review (`{}`).",
                    short(&last.head_sha)
                ))
            }
            _ => Range::Full {
                why: Some(format!(
                    "`{}`, the last reviewed head, is no longer in the branch's history (force-push), so everything was reviewed again.",
                    short(&last.head_sha)
                )),
            },
        },
    };
    let work = ctx.work_root.join(format!("{}-review", target.task_id));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let result = review_in(ctx, config, m, client, &head, &pull.base.sha, range, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}

/// A finding as this run placed it.
struct Placed {
    finding: Finding,
    side: Side,
    anchor: String,
    fingerprint: String,
    inline: bool,
}

#[allow(clippy::too_many_arguments)]
async fn review_in(
    ctx: &BotContext,
    config: &ServerConfig,
    m: &Mention,
    client: &RepoClient,
    head: &str,
    base_sha: &str,
    range: Range,
    work: &Path,
) -> BotResult<String> {
    let settings = &config.github.review;
    // Comments are placed on the pull request's diff, whatever the range.
    let pr_files = client.pull_files(m.number).await?;
    let pr_patches: HashMap<&str, Patch> = pr_files
        .iter()
        .filter_map(|f| Some((f.filename.as_str(), Patch::parse(f.patch.as_deref()?))))
        .collect();
    let (range_text, since, files) = match &range {
        Range::Full { .. } => (
            format!("the whole pull request at `{}`", short(head)),
            None,
            pr_files.clone(),
        ),
        Range::Since { from, files } => (
            format!(
                "`{}..{}` (new since the last review)",
                short(from),
                short(head)
            ),
            Some(from.as_str()),
            // Only the pull request's own changes: a merge of the base into
            // the branch brings others' changes into the comparison.
            files
                .iter()
                .filter(|f| pr_files.iter().any(|p| p.filename == f.filename))
                .cloned()
                .collect(),
        ),
    };
    let scope = scope::select(files, settings);

    // The head's code, for the model's tools and for anchoring findings.
    let url = ctx.git.clone_url(&m.repository);
    git::clone::clone(&ctx.git, &m.repository, &url, None, work).await?;
    git::clone::checkout_pull(&ctx.git, &m.repository, work, m.number, head).await?;
    let guidelines = guidelines(client, base_sha).await?;

    let (model, model_name) = ctx.model.chat()?;
    let tools = ToolRegistry::new(work.to_path_buf(), Arc::new(read_only(&ctx.policy)))
        .with_finish(FINISH, findings::schema());
    let mut usage = Usage::default();
    let mut submissions: Vec<Submission> = Vec::new();
    let mut unread = Vec::new();
    let chunks = scope.chunks.len();
    for (i, chunk) in scope.chunks.iter().enumerate() {
        let prompt = prompt(
            m,
            settings,
            &range_text,
            guidelines.as_ref(),
            chunk,
            (i, chunks),
        );
        let spec = TaskSpec {
            name: format!("review {}#{} ({}/{chunks})", m.repository, m.number, i + 1),
            description: prompt,
            model: model_name.clone(),
            max_iterations: settings.max_iterations,
            time_limit: CHUNK_TIME_LIMIT,
            context: Vec::new(),
        };
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let (_keep, cancel) = tokio::sync::watch::channel(false);
        let outcome = run_agent(model.as_ref(), &tools, spec, events, cancel).await;
        ctx.model.record_usage(Some(outcome.usage));
        usage.add(outcome.usage);
        let paths: HashSet<&str> = chunk.iter().map(|f| f.file.filename.as_str()).collect();
        match outcome.status {
            OutcomeStatus::Completed => match findings::parse_submission(&outcome.response) {
                Ok(mut s) => {
                    // Findings about files outside this chunk are not the model's to make.
                    s.findings.retain(|f| paths.contains(f.path.as_str()));
                    submissions.push(s);
                }
                Err(e) => unread.push(format!("chunk {}: {e}", i + 1)),
            },
            OutcomeStatus::Failed if submissions.is_empty() && i + 1 == chunks => {
                ctx.charge(&m.repository, usage.total_tokens.into()).await;
                return Err(BotError::Failed(format!(
                    "the model failed: {}",
                    outcome.error.unwrap_or_default()
                )));
            }
            _ => unread.push(format!(
                "chunk {} ({} files): {}",
                i + 1,
                chunk.len(),
                outcome.error.unwrap_or_else(|| "no answer".into())
            )),
        }
    }
    ctx.charge(&m.repository, usage.total_tokens.into()).await;

    // Place, fingerprint and deduplicate.
    let stored = ctx.store.findings(&m.repository, m.number).await?;
    let open: HashSet<&str> = stored
        .iter()
        .filter(|f| f.state == FindingState::Open)
        .map(|f| f.fingerprint.as_str())
        .collect();
    let mut seen = HashSet::new();
    let mut repeated = 0usize;
    let mut placed = Vec::new();
    for finding in submissions.iter().flat_map(|s| s.findings.iter().cloned()) {
        let p = place(finding, work, &pr_patches, since.is_some());
        if open.contains(p.fingerprint.as_str()) {
            repeated += 1;
        } else if seen.insert(p.fingerprint.clone()) {
            placed.push(p);
        }
    }
    placed.sort_by_key(|p| (p.finding.severity, p.finding.path.clone(), p.finding.line));

    // Findings whose code changed or went away.
    let mut addressed = Vec::new();
    for f in stored.iter().filter(|f| f.state == FindingState::Open) {
        if f.side != Side::Right.as_str() || !gone(work, f) {
            continue;
        }
        if !ctx
            .store
            .mark_addressed(&m.repository, m.number, &f.fingerprint, head)
            .await?
        {
            continue;
        }
        if let Some(comment_id) = f.comment_id {
            let reply = format!("✅ This looks addressed in {head}.");
            if let Err(e) = client
                .reply_to_review_comment(m.number, comment_id, &reply)
                .await
            {
                tracing::warn!(error = %e.redacted(), comment_id, "could not reply in the thread");
            }
        }
        addressed.push(f);
    }

    let inline: Vec<usize> = (0..placed.len()).filter(|i| placed[*i].inline).collect();
    let comments: Vec<publish::Inline> = inline
        .iter()
        .map(|i| {
            let p = &placed[*i];
            publish::Inline::new(
                &p.finding.path,
                p.finding.first_line(),
                p.finding.line,
                p.side.as_str(),
                findings::comment_body(&p.finding, p.side == Side::Right),
                findings::body_entry(&p.finding),
            )
        })
        .collect();
    let in_body: Vec<String> = placed
        .iter()
        .filter(|p| !p.inline)
        .map(|p| findings::body_entry(&p.finding))
        .collect();
    let event = if placed
        .iter()
        .any(|p| settings.request_changes_on.contains(&p.finding.severity))
    {
        "REQUEST_CHANGES"
    } else {
        "COMMENT"
    };
    let tokens_line = format!(
        "Model `{model_name}`: {} tokens (prompt {}, completion {}).",
        usage.total_tokens, usage.prompt_tokens, usage.completion_tokens
    );
    let report = Report {
        range: &range,
        range_text: &range_text,
        summaries: submissions
            .iter()
            .map(|s| s.summary.trim())
            .filter(|s| !s.is_empty())
            .collect(),
        new: placed.len(),
        in_body: &in_body,
        repeated,
        addressed: &addressed,
        scope: &scope,
        unread: &unread,
        tokens_line: &tokens_line,
    };
    let posted = publish::post(client, m.number, head, event, &comments, |moved| {
        report.body(moved)
    })
    .await?;

    // Which comment each inline finding became, for replies later.
    let mut comment_ids: HashMap<usize, u64> = HashMap::new();
    if !posted.inline.is_empty() {
        let mut listed = client.review_comments(m.number, posted.review_id).await?;
        for k in &posted.inline {
            let want = &comments[*k].comment;
            if let Some(at) = listed.iter().position(|c| {
                c.path == want["path"].as_str().unwrap_or_default()
                    && c.line == want["line"].as_u64()
            }) {
                comment_ids.insert(inline[*k], listed.remove(at).id);
            }
        }
    }
    let records = placed
        .iter()
        .enumerate()
        .map(|(i, p)| StoredFinding {
            fingerprint: p.fingerprint.clone(),
            path: p.finding.path.clone(),
            line: p.finding.line,
            side: p.side.as_str().into(),
            anchor: p.anchor.clone(),
            title: p.finding.title.clone(),
            comment_id: comment_ids.get(&i).copied(),
            state: FindingState::Open,
            sha: head.to_string(),
        })
        .collect();
    ctx.store
        .record_review(NewReview {
            repository: m.repository.clone(),
            number: m.number,
            head_sha: head.to_string(),
            from_sha: since.map(str::to_string),
            // A chunk the model did not answer is reviewed again next time.
            complete: unread.is_empty(),
            review_id: Some(posted.review_id),
            model: model_name.clone(),
            tokens: usage.total_tokens.into(),
            findings: records,
        })
        .await?;
    ctx.metrics.review_findings(placed.len() as u64);

    let inline_posted = posted.inline.len();
    let mut text = format!(
        "Reviewed {range_text}: {} files{}. {} new findings ({inline_posted} inline, {} in the review body), {repeated} already reported, {} addressed. Posted as `{}`.",
        scope.reviewed(),
        if scope.not_reviewed.is_empty() && scope.ignored.is_empty() {
            String::new()
        } else {
            format!(
                " ({} not reviewed, {} ignored)",
                scope.not_reviewed.len(),
                scope.ignored.len()
            )
        },
        placed.len(),
        placed.len() - inline_posted,
        addressed.len(),
        posted.event,
    );
    text.push_str(&format!("\n\n{tokens_line}"));
    Ok(text)
}

/// The review's body, given the findings GitHub would not place inline.
struct Report<'a> {
    range: &'a Range,
    range_text: &'a str,
    summaries: Vec<&'a str>,
    new: usize,
    in_body: &'a [String],
    repeated: usize,
    addressed: &'a [&'a StoredFinding],
    scope: &'a scope::Scope,
    unread: &'a [String],
    tokens_line: &'a str,
}

impl Report<'_> {
    fn body(&self, moved: &[&str]) -> String {
        let s = self.scope;
        let quiet = self.new == 0
            && self.unread.is_empty()
            && s.not_reviewed.is_empty()
            && matches!(self.range, Range::Since { .. });
        if quiet {
            // Nothing new is one line, not a new wall.
            let mut line = format!("🐧 Penguin reviewed {}: nothing new", self.range_text);
            if self.repeated > 0 {
                line.push_str(&format!("; {} earlier findings still apply", self.repeated));
            }
            if !self.addressed.is_empty() {
                line.push_str(&format!("; {} look addressed", self.addressed.len()));
            }
            line.push('.');
            return line;
        }
        let mut out = format!("## 🐧 Penguin review\n\nReviewed {}.", self.range_text);
        if let Range::Full { why: Some(why) } = self.range {
            out.push_str(&format!(" {why}"));
        }
        for summary in &self.summaries {
            out.push_str(&format!("\n\n{summary}"));
        }
        out.push_str(&format!(
            "\n\n**{} new findings**{}.",
            self.new,
            if self.repeated > 0 {
                format!(
                    " ({} reported earlier and still open are not repeated)",
                    self.repeated
                )
            } else {
                String::new()
            }
        ));
        let body_findings: Vec<&str> = self
            .in_body
            .iter()
            .map(String::as_str)
            .chain(moved.iter().copied())
            .collect();
        if !body_findings.is_empty() {
            out.push_str("\n\n### Not on a line of the diff\n");
            for entry in body_findings {
                out.push_str(&format!("\n{entry}"));
            }
        }
        if !self.addressed.is_empty() {
            out.push_str("\n\n### Looks addressed\n");
            for f in self.addressed {
                out.push_str(&format!("\n- {} (`{}`)", f.title, f.path.replace('`', "'")));
            }
        }
        if !s.not_reviewed.is_empty() || !self.unread.is_empty() {
            out.push_str("\n\n### Not reviewed\n");
            for (path, why) in &s.not_reviewed {
                out.push_str(&format!("\n- `{}`: {why}", path.replace('`', "'")));
            }
            for why in self.unread {
                out.push_str(&format!("\n- {why}"));
            }
        }
        if !s.ignored.is_empty() {
            out.push_str(&format!(
                "\n\nIgnored by `review.ignore`: {}.",
                s.ignored
                    .iter()
                    .map(|p| format!("`{}`", p.replace('`', "'")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push_str(&format!("\n\n<sub>{}</sub>", self.tokens_line));
        out
    }
}

/// Where `finding` goes: inline when its lines are in the pull request's
/// diff (on the new side only, for a review of new commits: the old side of
/// a compare is not the pull request's), with the code it is anchored to.
fn place(
    finding: Finding,
    work: &Path,
    pr_patches: &HashMap<&str, Patch>,
    incremental: bool,
) -> Placed {
    let side = finding
        .side
        .as_deref()
        .and_then(Side::parse)
        .unwrap_or(Side::Right);
    let (start, end) = (finding.first_line(), finding.line);
    let patch = pr_patches.get(finding.path.as_str());
    let lines = match side {
        Side::Right => head_lines(work, &finding.path).and_then(|text| {
            let all: Vec<&str> = text.lines().collect();
            let range = usize::try_from(start).ok()?.checked_sub(1)?..usize::try_from(end).ok()?;
            all.get(range)
                .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        }),
        // The old side of a comparison is not the pull request's base:
        // its line numbers cannot be looked up in the pull request's diff.
        Side::Left if incremental => None,
        Side::Left => patch.and_then(|p| p.old_text(start, end)),
    };
    let inline = lines.is_some()
        && patch.is_some_and(|p| p.places(side, start, end))
        && !(incremental && side == Side::Left);
    let anchor = findings::normalize(&lines.unwrap_or_default());
    let fingerprint = findings::fingerprint(&finding.path, &anchor, &finding.title);
    Placed {
        finding,
        side,
        anchor,
        fingerprint,
        inline,
    }
}

/// The head's text of `path`, if it is a plain relative path to a text file
/// inside the clone: a symbolic link the pull request points elsewhere (the
/// pod's credentials) is never followed out of it.
fn head_lines(work: &Path, path: &str) -> Option<String> {
    let safe = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path.split('/').next() != Some(".git");
    if !safe {
        return None;
    }
    let root = work.canonicalize().ok()?;
    let file = work.join(path).canonicalize().ok()?;
    let meta = file.metadata().ok()?;
    if !file.starts_with(&root) || !meta.is_file() || meta.len() > MAX_ANCHOR_FILE {
        return None;
    }
    std::fs::read_to_string(file).ok()
}

/// Whether the code `finding` was anchored to changed or disappeared: the
/// file is gone, or its text no longer holds the anchored lines. A file
/// that is there but cannot be read as text says nothing either way.
fn gone(work: &Path, finding: &StoredFinding) -> bool {
    match head_lines(work, &finding.path) {
        Some(text) => !findings::still_present(&finding.anchor, &text),
        None => std::fs::symlink_metadata(work.join(&finding.path)).is_err(),
    }
}

/// The repository's review guidelines from the base branch (never the head,
/// which the pull request's author controls).
async fn guidelines(client: &RepoClient, base_sha: &str) -> BotResult<Option<(String, String)>> {
    for path in GUIDELINE_FILES {
        if let Some(text) = client.file_text(path, base_sha).await? {
            let text = crate::feedback::truncate(&strip_hidden(&text), MAX_GUIDELINES);
            return Ok(Some((path.to_string(), text)));
        }
    }
    Ok(None)
}

/// The server's policy with every write and command denied: a review reads.
fn read_only(policy: &SecurityPolicy) -> SecurityPolicy {
    let mut policy = policy.clone();
    policy.capabilities.repo_write = Decision::Deny;
    policy.capabilities.shell = Decision::Deny;
    policy
}

/// The prompt for one chunk of files.
fn prompt(
    m: &Mention,
    settings: &ReviewConfig,
    range_text: &str,
    guidelines: Option<&(String, String)>,
    chunk: &[scope::ReviewFile],
    (index, chunks): (usize, usize),
) -> String {
    let mut out = format!(
        "Review the changes of {range_text} in pull request #{} of {}.\n\
         Report real problems only: bugs, security holes, data loss, races, wrong error handling, \
         missing tests for new behaviour; nits only when they are cheap to fix. Do not describe \
         what the code does.\n\
         Each line of the diff is labelled: R<n> is line n of the new file (side RIGHT), L<n> \
         line n of the old file (side LEFT, removed lines). A finding's `line` (and `start_line` \
         for a range within one hunk) are those numbers. Comment on lines shown in the diff. \
         A `suggestion` replaces lines start_line..line of the new file exactly; give one only \
         when the fix is certain.\n\
         You may read the pull request's files (read_file, search, list_files) for context. \
         Then call finish with your findings (an empty list when there are none).\n\n",
        m.number, m.repository
    );
    out.push_str(&fence(
        "The pull request's title and description",
        &super::answer::subject(m),
    ));
    // What the repository says (its guidelines, on a base branch anyone who
    // can push may have written, and its own path instructions) is fenced:
    // hints about what matters there, never rules that change these.
    let mut repo_notes = String::new();
    if let Some((path, text)) = guidelines {
        repo_notes.push_str(&format!("{path}:\n{text}\n"));
    }
    let notes = |map: &std::collections::BTreeMap<String, String>| {
        let mut notes = String::new();
        for f in chunk {
            for text in scope::instructions_for(&f.file.filename, map) {
                notes.push_str(&format!("- {}: {text}\n", one_line(&f.file.filename)));
            }
        }
        notes
    };
    repo_notes.push_str(&notes(&settings.repo_path_instructions));
    if !repo_notes.is_empty() {
        out.push_str("\n\n");
        out.push_str(&fence(
            "The repository's review guidelines (from its base commit and default branch; hints about what matters there)",
            &repo_notes,
        ));
    }
    let path_notes = notes(&settings.path_instructions);
    if !path_notes.is_empty() {
        out.push_str(&format!(
            "\n\nInstructions from the server's configuration for these files:\n{path_notes}"
        ));
    }
    let mut diff = String::new();
    for f in chunk {
        diff.push_str(&format!(
            "### {} ({}, +{} -{})\n",
            f.file.filename, f.file.status, f.file.additions, f.file.deletions
        ));
        for line in f.annotated.lines() {
            // Per line, so a hidden comment cannot swallow other lines' labels.
            diff.push_str(&strip_hidden(line));
            diff.push('\n');
        }
    }
    let label = if chunks > 1 {
        format!("The diff, part {} of {chunks}", index + 1)
    } else {
        "The diff".to_string()
    };
    out.push_str("\n\n");
    out.push_str(&fence(&label, &diff));
    out
}

/// The first 7 characters of a commit id.
fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A file name on one line, control characters shown as `?` (names come
/// from the pull request and may hold newlines).
fn one_line(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_read_only_inside_the_clone() {
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("git-credentials");
        std::fs::write(&secret, "https://x-access-token:ghs_secret@github.com\n").unwrap();
        std::fs::create_dir_all(work.path().join("src")).unwrap();
        std::fs::write(work.path().join("src/a.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink(&secret, work.path().join("src/link.py")).unwrap();
        std::os::unix::fs::symlink("a.py", work.path().join("src/inner.py")).unwrap();
        assert_eq!(
            head_lines(work.path(), "src/a.py").as_deref(),
            Some("x = 1\n")
        );
        assert_eq!(
            head_lines(work.path(), "src/inner.py").as_deref(),
            Some("x = 1\n")
        );
        for path in [
            "src/link.py",
            "../x",
            "/etc/passwd",
            "src/../src/a.py",
            ".git/config",
            "src",
            "",
        ] {
            assert_eq!(head_lines(work.path(), path), None, "{path}");
        }
    }
}
