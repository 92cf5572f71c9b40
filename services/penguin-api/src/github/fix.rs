//! `@Penguin fix tests` / `fix <text>`: clone with a token down-scoped to
//! the one repository, branch `penguin/<task>-<slug>`, run the repository's
//! test command through the runner, let the model propose edits, apply them
//! under the security policy, rerun (up to `max_rounds`), commit as the App's
//! bot with a `Task-ID:` trailer, push, and open or update the pull request.
//!
//! Every git network operation asks the tokenator for a fresh token, so a
//! rotation between two pushes is invisible; tokens never touch the disk.

use super::{client::bot_identity, git_auth::GitAuth};
use crate::state::AppState;
use penguin_agent::{runner::CommandRunner, Capability, Decision, DockerRunner, LocalRunner};
use penguin_bot::config::{HookEvent, ServerConfig};
use penguin_llm::{ChatMessage, ChatRequest, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// Test output shown to the model at most.
const OUTPUT_LIMIT: usize = 12_000;
/// Files listed for the model at most.
const FILE_LIST_LIMIT: usize = 300;

/// What is being fixed.
pub struct FixRequest<'a> {
    /// `owner/repo`.
    pub repository: &'a str,
    /// Issue or pull request number.
    pub number: u64,
    /// Title of the issue or pull request.
    pub title: &'a str,
    /// The branch to start from (a PR's head, or the default branch).
    pub base_ref: &'a str,
    /// The task id (branch name, commit trailer).
    pub task_id: &'a str,
    /// Extra instructions (`fix <text>`).
    pub instructions: Option<&'a str>,
    /// A maintainer approved it (`@Penguin approve`): "ask" capabilities may proceed.
    pub approved: bool,
    /// Who asked for it (hook context).
    pub actor: &'a str,
}

/// Runs the pre-hooks of `event`; a failure stops the fix with the hook's stderr.
async fn pre_hooks(config: &ServerConfig, event: HookEvent, context: &Value) -> Result<(), String> {
    let mut context = context.clone();
    context["event"] = json!(event.as_str());
    penguin_bot::hooks::run_hooks(config.hooks.pre(event), &context)
        .await
        .map_err(|failure| format!("the {} pre-hook stopped the fix: {failure}", event.as_str()))
}

/// Runs the post-hooks of `event`; a failure is reported, not fatal.
async fn post_hooks(
    config: &ServerConfig,
    event: HookEvent,
    context: &Value,
    warnings: &mut Vec<String>,
) {
    let mut context = context.clone();
    context["event"] = json!(event.as_str());
    if let Err(failure) = penguin_bot::hooks::run_hooks(config.hooks.post(event), &context).await {
        warnings.push(format!("⚠️ {} post-hook: {failure}", event.as_str()));
    }
}

/// What the policy says about a fix: `Ok(true)` proceed, `Ok(false)` ask
/// first, `Err` refused.
pub fn policy_allows_fix(policy: &penguin_agent::SecurityPolicy) -> Result<bool, String> {
    let mut ask = false;
    for capability in [Capability::RepoWrite, Capability::Shell] {
        match policy.decide(capability) {
            Decision::Allow => {}
            Decision::Ask => ask = true,
            Decision::Deny => {
                return Err(format!(
                    "the server's security policy denies {capability:?} (security.capabilities in .penguin/config.yml)"
                ))
            }
        }
    }
    Ok(!ask)
}

#[derive(Deserialize)]
struct Edits {
    edits: Vec<Edit>,
}

#[derive(Deserialize)]
struct Edit {
    path: String,
    content: String,
}

fn slug(text: &str) -> String {
    let slug: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.chars()
        .take(40)
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// Runs the whole fix; returns the markdown report.
pub async fn fix_tests(
    state: &AppState,
    config: &ServerConfig,
    request: FixRequest<'_>,
) -> Result<String, String> {
    let policy = state.policy.clone();
    if !policy_allows_fix(&policy)? && !request.approved {
        return Err("this needs a maintainer's approval first (`@Penguin approve`)".into());
    }
    let fix = &config.github.fix_tests;
    let work = work_dir(&state.settings.data_dir, request.task_id);
    let _ = tokio::fs::remove_dir_all(&work).await;
    let branch = format!(
        "penguin/{}-{}",
        request
            .task_id
            .trim_start_matches("task_")
            .chars()
            .take(8)
            .collect::<String>(),
        slug(request.instructions.unwrap_or("fix tests"))
    );
    let url = format!(
        "{}/{}.git",
        state.settings.github_server_url.trim_end_matches('/'),
        request.repository
    );
    let mut warnings = Vec::new();
    let mut hook_context = json!({
        "repository": request.repository,
        "issue": request.number,
        "branch": branch,
        "base": request.base_ref,
        "sha": Value::Null,
        "task_id": request.task_id,
        "actor": request.actor,
    });
    pre_hooks(config, HookEvent::BranchCreate, &hook_context).await?;
    // Clone the base branch and create the work branch.
    let (auth, repo_name, base, dir, new_branch) = (
        GitAuth::from_settings(&state.settings),
        request.repository.to_string(),
        request.base_ref.to_string(),
        work.clone(),
        branch.clone(),
    );
    let clone_handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(auth.callbacks(&repo_name, clone_handle));
        let repo = git2::build::RepoBuilder::new()
            .branch(&base)
            .fetch_options(fetch)
            .clone(&url, &dir)
            .map_err(|e| format!("clone failed: {}", e.message()))?;
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| e.message().to_string())?;
        repo.branch(&new_branch, &head, true)
            .map_err(|e| e.message().to_string())?;
        repo.set_head(&format!("refs/heads/{new_branch}"))
            .map_err(|e| e.message().to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    post_hooks(
        config,
        HookEvent::BranchCreate,
        &hook_context,
        &mut warnings,
    )
    .await;

    let mut log = Vec::new();
    let mut edited = Vec::new();
    let mut passed = false;
    for round in 1..=fix.max_rounds {
        let output = run_tests(
            state,
            &work,
            &fix.test_command,
            Duration::from_secs(fix.timeout_secs),
        )
        .await?;
        if output.0 {
            passed = true;
            log.push(format!("round {round}: tests pass"));
            break;
        }
        log.push(format!("round {round}: tests fail"));
        if round == fix.max_rounds {
            break;
        }
        let edits = propose_edits(state, &request, &work, &fix.test_command, &output.1).await?;
        if edits.is_empty() {
            return Err("the model proposed no edits".into());
        }
        for edit in edits {
            let path = policy
                .check_path(&work, &edit.path)
                .map_err(|denied| format!("edit of {} refused: {denied}", edit.path))?;
            if path.starts_with(work.join(".git")) {
                return Err(format!("edit of {} refused: inside .git", edit.path));
            }
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tokio::fs::write(&path, edit.content)
                .await
                .map_err(|e| e.to_string())?;
            edited.push(edit.path);
        }
    }
    if !passed {
        return Err(format!(
            "tests still fail after {} round(s): {}",
            fix.max_rounds,
            log.join("; ")
        ));
    }
    if edited.is_empty() {
        return Ok("The tests already pass: nothing to fix.".into());
    }

    let message = format!(
        "Fix failing tests\n\nEdited by Penguin for #{}: {}\n\nTask-ID: {}\n",
        request.number,
        edited.join(", "),
        request.task_id
    );
    let sha = if fix.commit_via_api {
        commit_via_api(
            state,
            config,
            &request,
            &work,
            &branch,
            &edited,
            &message,
            &mut hook_context,
            &mut warnings,
        )
        .await?
    } else {
        commit_and_push(
            state,
            config,
            &request,
            &work,
            &branch,
            &message,
            &mut hook_context,
            &mut warnings,
        )
        .await?
    };
    let _ = tokio::fs::remove_dir_all(&work).await;

    pre_hooks(config, HookEvent::PrCreate, &hook_context).await?;
    let pr = open_or_update_pr(state, &request, &branch, &sha, &log).await?;
    post_hooks(config, HookEvent::PrCreate, &hook_context, &mut warnings).await;
    let mut report = format!(
        "Tests pass after my changes ({}). Pushed `{}` to `{branch}` — {pr}.\n\n{}",
        edited.join(", "),
        &sha[..sha.len().min(12)],
        log.iter()
            .map(|l| format!("- {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for warning in warnings {
        report.push_str("\n\n");
        report.push_str(&warning);
    }
    Ok(report)
}

/// Commits locally as the App's bot and pushes with a fresh token.
#[allow(clippy::too_many_arguments)]
async fn commit_and_push(
    state: &AppState,
    config: &ServerConfig,
    request: &FixRequest<'_>,
    work: &Path,
    branch: &str,
    message: &str,
    hook_context: &mut Value,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let socket = state
        .settings
        .tokenator_socket
        .clone()
        .ok_or("PENGUIN_TOKENATOR_SOCKET is not set")?;
    let bot = bot_identity(&socket).await.map_err(|e| e.to_string())?;
    pre_hooks(config, HookEvent::CommitCreate, hook_context).await?;
    let (dir, message) = (work.to_path_buf(), message.to_string());
    let sha = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let repo = git2::Repository::open(&dir).map_err(|e| e.message().to_string())?;
        let mut index = repo.index().map_err(|e| e.message().to_string())?;
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .map_err(|e| e.message().to_string())?;
        super::git_commit::commit_staged(&repo, &mut index, &bot.login, &bot.email, &message)
    })
    .await
    .map_err(|e| e.to_string())??;
    hook_context["sha"] = json!(sha);
    post_hooks(config, HookEvent::CommitCreate, hook_context, warnings).await;

    pre_hooks(config, HookEvent::Push, hook_context).await?;
    let (auth, repo_name, dir, push_branch) = (
        GitAuth::from_settings(&state.settings),
        request.repository.to_string(),
        work.to_path_buf(),
        branch.to_string(),
    );
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let repo = git2::Repository::open(&dir).map_err(|e| e.message().to_string())?;
        let mut push = git2::PushOptions::new();
        push.remote_callbacks(auth.callbacks(&repo_name, handle));
        let mut remote = repo
            .find_remote("origin")
            .map_err(|e| e.message().to_string())?;
        remote
            .push(
                &[format!(
                    "+refs/heads/{push_branch}:refs/heads/{push_branch}"
                )],
                Some(&mut push),
            )
            .map_err(|e| format!("push failed: {}", e.message()))
    })
    .await
    .map_err(|e| e.to_string())??;
    post_hooks(config, HookEvent::Push, hook_context, warnings).await;
    Ok(sha)
}

/// Commits through the Git Data API (GitHub signs it as the App) and points
/// the branch at the commit; the same hooks run around both steps.
#[allow(clippy::too_many_arguments)]
async fn commit_via_api(
    state: &AppState,
    config: &ServerConfig,
    request: &FixRequest<'_>,
    work: &Path,
    branch: &str,
    edited: &[String],
    message: &str,
    hook_context: &mut Value,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let (dir, paths) = (work.to_path_buf(), edited.to_vec());
    let (parent, base_tree, changes) = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open(&dir).map_err(|e| e.message().to_string())?;
        let parent = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| e.message().to_string())?;
        let mut changes: Vec<super::git_data::FileChange> = Vec::new();
        for path in paths {
            if changes.iter().any(|c| c.path == path) {
                continue;
            }
            let full = dir.join(&path);
            let content = std::fs::read(&full).map_err(|e| format!("{path}: {e}"))?;
            let executable = {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(&full).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
            };
            changes.push(super::git_data::FileChange {
                path,
                content,
                executable,
            });
        }
        Ok::<_, String>((
            parent.id().to_string(),
            parent.tree_id().to_string(),
            changes,
        ))
    })
    .await
    .map_err(|e| e.to_string())??;
    let client = super::client::RepoClient::connect(
        state.settings.tokenator_socket.as_deref(),
        &state.settings.github_api_url,
        request.repository,
        &[("contents", "write")],
        &state.token_users,
    )
    .await
    .map_err(|e| e.to_string())?;
    let result = async {
        pre_hooks(config, HookEvent::CommitCreate, hook_context).await?;
        let sha =
            super::git_data::create_commit(&client, &parent, &base_tree, &changes, message).await?;
        hook_context["sha"] = json!(sha);
        post_hooks(config, HookEvent::CommitCreate, hook_context, warnings).await;
        pre_hooks(config, HookEvent::Push, hook_context).await?;
        super::git_data::point_branch(&client, branch, &sha).await?;
        post_hooks(config, HookEvent::Push, hook_context, warnings).await;
        Ok(sha)
    }
    .await;
    client.finish().await;
    result
}

/// (passed, combined output).
async fn run_tests(
    state: &AppState,
    work: &Path,
    command: &str,
    timeout: Duration,
) -> Result<(bool, String), String> {
    // A fresh runner per round: the local runner copies the working tree once.
    let runner: Arc<dyn CommandRunner> = match state.settings.runner {
        crate::config::RunnerKind::Local => Arc::new(LocalRunner::with_policy(
            work.to_path_buf(),
            state.policy.clone(),
        )),
        crate::config::RunnerKind::Docker => Arc::new(DockerRunner::new(
            state.settings.runner_image.clone().unwrap_or_default(),
            work.to_path_buf(),
        )),
    };
    let output = runner
        .run(command, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let combined = format!("{}\n{}", output.stdout, output.stderr);
    Ok((output.exit_code == Some(0) && !output.timed_out, combined))
}

fn list_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".git") || out.len() >= FILE_LIST_LIMIT {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

async fn propose_edits(
    state: &AppState,
    request: &FixRequest<'_>,
    work: &Path,
    command: &str,
    output: &str,
) -> Result<Vec<Edit>, String> {
    let model = state
        .model
        .as_ref()
        .ok_or("no model provider is configured (MODEL_NOT_CONFIGURED)")?;
    let files = list_files(work);
    // Show the model the small text files the output mentions.
    let mut shown = String::new();
    for file in files.iter().filter(|f| output.contains(f.as_str())).take(5) {
        if let Ok(path) = state.policy.check_path(work, file) {
            if let Ok(text) = tokio::fs::read_to_string(&path).await {
                shown.push_str(&format!(
                    "--- {file}\n{}\n",
                    text.chars().take(8000).collect::<String>()
                ));
            }
        }
    }
    let output: String = penguin_agent::strip_hidden(output)
        .chars()
        .take(OUTPUT_LIMIT)
        .collect();
    let prompt = format!(
        "Repository {} — #{}: {}\nTest command: {command}\nExtra instructions: {}\n\nFailing output:\n{output}\n\nFiles:\n{}\n\n{shown}",
        request.repository,
        request.number,
        penguin_agent::strip_hidden(request.title),
        request.instructions.map(penguin_agent::strip_hidden).unwrap_or_default(),
        files.join("\n"),
    );
    let answer = model
        .complete(ChatRequest {
            model: state.model_for(None),
            messages: vec![
                ChatMessage::new(
                    Role::System,
                    "You fix failing tests. Answer only with JSON: {\"edits\":[{\"path\":\"relative/path\",\"content\":\"the whole new file\"}]}.",
                ),
                ChatMessage::new(Role::User, prompt),
            ],
            ..Default::default()
        })
        .await
        .map_err(|e| penguin_telemetry::redact(&e.to_string()).into_owned())?;
    state.add_usage(answer.usage);
    let text = answer.message.content;
    let json = text
        .find('{')
        .zip(text.rfind('}'))
        .map(|(start, end)| &text[start..=end])
        .ok_or("the model's answer holds no JSON edits")?;
    let edits: Edits = serde_json::from_str(json)
        .map_err(|e| format!("the model's edits are not valid JSON: {e}"))?;
    Ok(edits.edits)
}

async fn open_or_update_pr(
    state: &AppState,
    request: &FixRequest<'_>,
    branch: &str,
    sha: &str,
    log: &[String],
) -> Result<String, String> {
    let client = super::client::RepoClient::connect(
        state.settings.tokenator_socket.as_deref(),
        &state.settings.github_api_url,
        request.repository,
        &[("pull_requests", "write"), ("contents", "read")],
        &state.token_users,
    )
    .await
    .map_err(|e| e.to_string())?;
    let (owner, repo) = (client.owner.clone(), client.repo.clone());
    let crab = client.crab().await.map_err(|e| e.to_string())?;
    let body = format!(
        "Penguin fixed the failing tests for #{}.\n\n{}\n\nTask-ID: {}\nCommit: {sha}",
        request.number,
        log.iter()
            .map(|l| format!("- {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        request.task_id
    );
    let existing: Vec<Value> = crab
        .get(
            format!("/repos/{owner}/{repo}/pulls"),
            Some(&json!({ "head": format!("{owner}:{branch}"), "state": "open" })),
        )
        .await
        .map_err(|e| e.to_string())?;
    let result = match existing.first().and_then(|p| p["number"].as_u64()) {
        // Idempotent by branch: a rerun adds to the same pull request.
        Some(number) => crab
            .patch::<Value, _, _>(
                format!("/repos/{owner}/{repo}/pulls/{number}"),
                Some(&json!({ "body": body })),
            )
            .await
            .map(|_| format!("updated pull request #{number}")),
        None => crab
            .post::<_, Value>(
                format!("/repos/{owner}/{repo}/pulls"),
                Some(&json!({
                    "title": format!("Fix tests for #{}", request.number),
                    "head": branch,
                    "base": request.base_ref,
                    "body": body,
                })),
            )
            .await
            .map(|pr| format!("opened pull request #{}", pr["number"])),
    }
    .map_err(|e| e.to_string());
    client.finish().await;
    result
}

/// Where a task's clone lives while it works.
fn work_dir(data_dir: &Path, task_id: &str) -> PathBuf {
    data_dir.join("work").join(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git2_speaks_https_for_github() {
        // GitHub serves git only over https: without it every clone fails.
        assert!(git2::Version::get().https(), "git2 built without https");
    }

    #[test]
    fn branch_slugs_are_short_and_safe() {
        assert_eq!(
            slug("Fix the flaky `parse()` test!"),
            "fix-the-flaky-parse-test"
        );
        assert!(slug(&"a".repeat(100)).len() <= 40);
        assert_eq!(slug("../../etc"), "etc");
    }
}
