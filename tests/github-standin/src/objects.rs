//! GitHub's JSON shapes: users, repositories, installations, the App, rate limits, errors.
//!
//! Shapes follow real API payloads; URLs point at the stand-in (`base`).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::state::{InstallationState, RateSnapshot, RepoInfo, Shared};
use crate::InstallationSpec;

/// When every object was "created".
pub(crate) const CREATED_AT: &str = "2024-01-15T10:00:00Z";
/// When every object was last "updated".
pub(crate) const UPDATED_AT: &str = "2024-06-01T12:00:00Z";
/// The `documentation_url` of error bodies.
pub(crate) const DOCS_URL: &str = "https://docs.github.com/rest";
/// Every repository's default branch (`default_branch` of the repository object).
pub(crate) const DEFAULT_BRANCH: &str = "main";
/// Events the App subscribes to unless configured otherwise
/// ([`crate::StandInConfig::webhook_events`]).
pub(crate) const EVENTS: [&str; 5] = [
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
];

/// RFC 3339 with a `Z` suffix and whole seconds, as GitHub prints times.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// GitHub's legacy global node ID, e.g. `MDQ6VXNlcjE=` for `04:User1`.
pub(crate) fn node_id(kind: &str, id: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// The legacy node ID of an object named by a string, e.g. a commit (`06:Commit<sha>`) or a
/// ref (`03:Refrefs/heads/main`).
pub(crate) fn node_id_of(kind: &str, name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("0{}:{kind}{name}", kind.len()))
}

/// A login as it appears in API URLs (`[bot]` percent-encoded).
pub(crate) fn url_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// A user object (`type` is `User`, `Organization` or `Bot`).
pub(crate) fn user(base: &str, login: &str, id: u64, kind: &str) -> Value {
    let api = format!("{base}/users/{}", url_login(login));
    let (html_url, avatar_url) = match kind {
        "Bot" => (
            format!("{base}/apps/{}", login.trim_end_matches("[bot]")),
            format!("https://avatars.githubusercontent.com/in/{id}?v=4"),
        ),
        _ => (
            format!("{base}/{login}"),
            format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        ),
    };
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(kind, id),
        "avatar_url": avatar_url,
        "gravatar_id": "",
        "url": api,
        "html_url": html_url,
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// A full public profile (`GET /users/{login}`): a user object plus profile fields.
pub(crate) fn profile(mut user: Value, name: Option<&str>) -> Value {
    if let Value::Object(m) = &mut user {
        let fields = [
            ("name", json!(name)),
            ("company", Value::Null),
            ("blog", json!("")),
            ("location", Value::Null),
            ("email", Value::Null),
            ("hireable", Value::Null),
            ("bio", Value::Null),
            ("twitter_username", Value::Null),
            ("public_repos", json!(0)),
            ("public_gists", json!(0)),
            ("followers", json!(0)),
            ("following", json!(0)),
            ("created_at", json!(CREATED_AT)),
            ("updated_at", json!(UPDATED_AT)),
        ];
        for (k, v) in fields {
            m.insert(k.to_string(), v);
        }
    }
    user
}

/// The user object of an installation account (an organization).
pub(crate) fn account(shared: &Shared, base: &str, login: &str) -> Value {
    let (login, id) = shared
        .account(login)
        .unwrap_or_else(|| (login.to_string(), 7_000_000));
    user(base, &login, id, "Organization")
}

/// The organization object of webhook payloads, for installation accounts (all organizations).
pub(crate) fn organization(shared: &Shared, base: &str, login: &str) -> Option<Value> {
    let (login, id) = shared.account(login)?;
    let api = format!("{base}/orgs/{login}");
    Some(json!({
        "login": login,
        "id": id,
        "node_id": node_id("Organization", id),
        "url": api,
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events"),
        "hooks_url": format!("{api}/hooks"),
        "issues_url": format!("{api}/issues"),
        "members_url": format!("{api}/members{{/member}}"),
        "public_members_url": format!("{api}/public_members{{/member}}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "description": "",
    }))
}

/// The `installation` of an App's webhook payloads: just the ID and node ID.
pub(crate) fn installation_ref(id: u64) -> Value {
    json!({"id": id, "node_id": node_id("IntegrationInstallation", id)})
}

/// The App's bot user.
pub(crate) fn bot_user(shared: &Shared, base: &str) -> Value {
    user(base, &shared.bot_login(), shared.bot_id(), "Bot")
}

/// URL templates of a repository object, relative to its API URL.
const REPO_URLS: [(&str, &str); 36] = [
    ("forks_url", "/forks"),
    ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("teams_url", "/teams"),
    ("hooks_url", "/hooks"),
    ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"),
    ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"),
    ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"),
    ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"),
    ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"),
    ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"),
    ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("labels_url", "/labels{/name}"),
    ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
];

/// A full repository object.
pub(crate) fn repository(shared: &Shared, base: &str, repo: &RepoInfo) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{base}/repos/{full_name}");
    let host = base
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("id", json!(repo.id));
    put("node_id", json!(node_id("Repository", repo.id)));
    put("name", json!(repo.name));
    put("full_name", json!(full_name));
    put("private", json!(true));
    put("owner", account(shared, base, &repo.owner));
    put("html_url", json!(format!("{base}/{full_name}")));
    put("description", Value::Null);
    put("fork", json!(false));
    put("url", json!(api));
    for (key, suffix) in REPO_URLS {
        put(key, json!(format!("{api}{suffix}")));
    }
    put("created_at", json!(CREATED_AT));
    put("updated_at", json!(UPDATED_AT));
    put("pushed_at", json!(UPDATED_AT));
    put("git_url", json!(format!("git://{host}/{full_name}.git")));
    put("ssh_url", json!(format!("git@{host}:{full_name}.git")));
    put("clone_url", json!(format!("{base}/{full_name}.git")));
    put("svn_url", json!(format!("{base}/{full_name}")));
    put("homepage", Value::Null);
    put("size", json!(0));
    put("stargazers_count", json!(0));
    put("watchers_count", json!(0));
    put("language", Value::Null);
    for flag in [
        "has_issues",
        "has_projects",
        "has_downloads",
        "has_wiki",
        "has_discussions",
    ] {
        put(flag, json!(true));
    }
    put("has_pages", json!(false));
    put("forks_count", json!(0));
    put("mirror_url", Value::Null);
    put("archived", json!(false));
    put("disabled", json!(false));
    put("open_issues_count", json!(0));
    put("license", Value::Null);
    put("allow_forking", json!(false));
    put("is_template", json!(false));
    put("web_commit_signoff_required", json!(false));
    put("topics", json!([]));
    put("visibility", json!("private"));
    put("forks", json!(0));
    put("open_issues", json!(0));
    put("watchers", json!(0));
    put("default_branch", json!(DEFAULT_BRANCH));
    Value::Object(m)
}

/// An installation object.
pub(crate) fn installation(shared: &Shared, base: &str, inst: &InstallationState) -> Value {
    let spec = &inst.spec;
    let account = account(shared, base, &spec.account);
    let target_id = account["id"].clone();
    let account_login = account["login"].as_str().unwrap_or_default().to_string();
    json!({
        "id": spec.id,
        "client_id": shared.client_id,
        "account": account,
        "repository_selection": "selected",
        "access_tokens_url": format!("{base}/app/installations/{}/access_tokens", spec.id),
        "repositories_url": format!("{base}/installation/repositories"),
        "html_url": format!("{base}/organizations/{account_login}/settings/installations/{}", spec.id),
        "app_id": shared.app_id,
        "app_slug": shared.app_slug,
        "target_id": target_id,
        "target_type": "Organization",
        "permissions": spec.permissions,
        "events": shared.webhook_events,
        "created_at": CREATED_AT,
        "updated_at": UPDATED_AT,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": inst.suspended_at.map(|_| account.clone()),
        "suspended_at": inst.suspended_at.map(timestamp),
    })
}

/// The App's permissions: the highest level any installation has for each permission.
fn app_permissions<'a>(
    installations: impl Iterator<Item = &'a InstallationSpec>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for spec in installations {
        for (name, level) in &spec.permissions {
            let entry = out.entry(name.clone()).or_insert_with(|| level.clone());
            if level_rank(level) > level_rank(entry) {
                *entry = level.clone();
            }
        }
    }
    out
}

/// `read` < `write` < `admin`; anything else ranks 0.
pub(crate) fn level_rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

/// The App object (`GET /app`).
pub(crate) fn app(shared: &Shared, base: &str) -> Value {
    let (all, installations_count, owner_login) = shared.with(|s| {
        let all: Vec<InstallationSpec> = s.installations.iter().map(|i| i.spec.clone()).collect();
        let live = s.installations.iter().filter(|i| !i.deleted).count();
        let owner = all
            .first()
            .map(|spec| spec.account.clone())
            .unwrap_or_else(|| "octo-org".to_string());
        (all, live, owner)
    });
    json!({
        "id": shared.app_id,
        "client_id": shared.client_id,
        "slug": shared.app_slug,
        "node_id": node_id("Integration", shared.app_id),
        "owner": account(shared, base, &owner_login),
        "name": "Penguin Agent",
        "description": "Penguin pod's coding agent (GitHub stand-in)",
        "external_url": format!("{base}/penguin-pod"),
        "html_url": format!("{base}/apps/{}", shared.app_slug),
        "created_at": CREATED_AT,
        "updated_at": UPDATED_AT,
        "permissions": app_permissions(all.iter()),
        "events": shared.webhook_events,
        "installations_count": installations_count,
    })
}

/// One rate object of `GET /rate_limit`.
fn rate(r: &RateSnapshot, resource: &str) -> Value {
    json!({
        "limit": r.limit,
        "used": r.used,
        "remaining": r.remaining,
        "reset": r.reset,
        "resource": resource,
    })
}

/// The `GET /rate_limit` body for the caller's core window.
pub(crate) fn rate_limit(core: &RateSnapshot) -> Value {
    let fresh = |limit: u32| RateSnapshot {
        limit,
        used: 0,
        remaining: limit,
        reset: core.reset,
        exceeded: false,
    };
    json!({
        "resources": {
            "core": rate(core, "core"),
            "search": rate(&fresh(30), "search"),
            "graphql": rate(&fresh(5000), "graphql"),
            "integration_manifest": rate(&fresh(5000), "integration_manifest"),
            "code_search": rate(&fresh(10), "code_search"),
        },
        "rate": rate(core, "core"),
    })
}

/// A GitHub error body.
pub(crate) fn error(status: u16, message: &str) -> Value {
    json!({
        "message": message,
        "documentation_url": DOCS_URL,
        "status": status.to_string(),
    })
}
