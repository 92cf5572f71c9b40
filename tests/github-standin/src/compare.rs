//! `GET /repos/{owner}/{repo}/compare/{base}...{head}`: how two commits of the bare repository
//! relate — `identical`, `ahead`, `behind` or `diverged` from their merge base — with the commits
//! from the merge base to `head` and the files of the three-dot diff, as GitHub answers it.
//!
//! `base` and `head` are branch names, tag names or (abbreviated) shas, optionally prefixed with
//! the repository owner (`owner:branch`). A name that resolves to nothing answers 404.

use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use crate::api::{json_response, ApiError};
use crate::changes;
use crate::gitdata::{git_commit, GitCtx};
use crate::plumbing::Bare;
use crate::shapes::{self, encode_path, View};

/// Commits listed at most (GitHub's limit).
const MAX_COMMITS: usize = 250;
/// Files listed at most (GitHub's limit).
const MAX_FILES: usize = 300;

/// The GitHub user of a commit e-mail: `<id>+<login>@users.noreply.github.com` or
/// `<login>@users.noreply.github.com` names one; other addresses name nobody (`null`).
fn user_of_email(ctx: &GitCtx<'_>, email: &str) -> Value {
    let Some(local) = email.strip_suffix("@users.noreply.github.com") else {
        return Value::Null;
    };
    let login = local.split_once('+').map_or(local, |(_, login)| login);
    if login.is_empty() {
        return Value::Null;
    }
    shapes::user_for(ctx.shared, ctx.base, login)
}

/// A commit as `GET /repos/{owner}/{repo}/commits/{sha}` shows it (without stats and files).
pub(crate) async fn repo_commit(
    ctx: &GitCtx<'_>,
    bare: &Bare,
    sha: &str,
) -> Result<Value, ApiError> {
    let git = git_commit(ctx, bare, sha).await?;
    let api = format!("{}/repos/{}/{}", ctx.base, ctx.repo.owner, ctx.repo.name);
    let html = format!("{}/{}/{}", ctx.base, ctx.repo.owner, ctx.repo.name);
    let parents: Vec<Value> = git["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["sha"].as_str())
        .map(|p| {
            json!({
                "sha": p,
                "url": format!("{api}/commits/{p}"),
                "html_url": format!("{html}/commit/{p}"),
            })
        })
        .collect();
    let email = |who: &str| git[who]["email"].as_str().unwrap_or_default().to_string();
    // GitHub shows the message without git's trailing newline.
    let message = git["message"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('\n');
    Ok(json!({
        "sha": sha,
        "node_id": git["node_id"],
        "commit": {
            "author": git["author"],
            "committer": git["committer"],
            "message": message,
            "tree": git["tree"],
            "url": git["url"],
            "comment_count": 0,
            "verification": git["verification"],
        },
        "url": format!("{api}/commits/{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "comments_url": format!("{api}/commits/{sha}/comments"),
        "author": user_of_email(ctx, &email("author")),
        "committer": user_of_email(ctx, &email("committer")),
        "parents": parents,
    }))
}

/// The commit one side of a comparison names; `owner:` must be the repository's owner.
async fn resolve(ctx: &GitCtx<'_>, bare: &Bare, name: &str) -> Result<String, ApiError> {
    let name = match name.split_once(':') {
        Some((owner, rest)) if owner.eq_ignore_ascii_case(&ctx.repo.owner) => rest,
        Some(_) => return Err(ApiError::not_found()),
        None => name,
    };
    bare.resolve_commit(name)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `identical`, `ahead`, `behind` or `diverged`: where `head` stands against `base`.
fn status(base: &str, head: &str, merge_base: &str) -> &'static str {
    match (merge_base == base, merge_base == head) {
        (true, true) => "identical",
        (true, false) => "ahead",
        (false, true) => "behind",
        (false, false) => "diverged",
    }
}

/// Serves a comparison; `spec` is `{base}...{head}`.
pub(crate) async fn compare(
    ctx: &GitCtx<'_>,
    bare: &Bare,
    spec: &str,
) -> Result<Response, ApiError> {
    let (base_name, head_name) = spec.split_once("...").ok_or_else(ApiError::not_found)?;
    let base = resolve(ctx, bare, base_name).await?;
    let head = resolve(ctx, bare, head_name).await?;
    let merge_base = bare.merge_base(&base, &head).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No common ancestor between {base_name} and {head_name}."),
        )
    })?;
    let ahead = bare.commits_between(&merge_base, &head).await?;
    let behind = bare.commits_between(&merge_base, &base).await?.len();
    let mut commits = Vec::new();
    for sha in ahead.iter().take(MAX_COMMITS) {
        commits.push(repo_commit(ctx, bare, sha).await?);
    }
    let files = changes::between(bare, &merge_base, &head).await?;
    let data = ctx.shared.with(|s| {
        s.store
            .repo(&ctx.repo.owner, &ctx.repo.name)
            .cloned()
            .unwrap_or_default()
    });
    let view = View {
        shared: ctx.shared,
        base: ctx.base,
        repo: ctx.repo,
        data: &data,
    };
    let files: Vec<Value> = files
        .iter()
        .take(MAX_FILES)
        .map(|f| shapes::file(&view, &head, f))
        .collect();
    let api = format!("{}/repos/{}/{}", ctx.base, ctx.repo.owner, ctx.repo.name);
    let html = format!("{}/{}/{}", ctx.base, ctx.repo.owner, ctx.repo.name);
    let spec = format!(
        "{}...{}",
        encode_path(base_name, true),
        encode_path(head_name, true)
    );
    let owner = &ctx.repo.owner;
    let out = json!({
        "url": format!("{api}/compare/{spec}"),
        "html_url": format!("{html}/compare/{spec}"),
        "permalink_url": format!("{html}/compare/{owner}:{}...{owner}:{}", &base[..7], &head[..7]),
        "diff_url": format!("{html}/compare/{spec}.diff"),
        "patch_url": format!("{html}/compare/{spec}.patch"),
        "base_commit": repo_commit(ctx, bare, &base).await?,
        "merge_base_commit": repo_commit(ctx, bare, &merge_base).await?,
        "status": status(&base, &head, &merge_base),
        "ahead_by": ahead.len(),
        "behind_by": behind,
        "total_commits": ahead.len(),
        "commits": commits,
        "files": files,
    });
    Ok(json_response(StatusCode::OK, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_merge_base() {
        assert_eq!(status("a", "a", "a"), "identical");
        assert_eq!(status("a", "b", "a"), "ahead");
        assert_eq!(status("a", "b", "b"), "behind");
        assert_eq!(status("a", "b", "c"), "diverged");
    }
}
