//! Who the commenter is to GitHub: their permission on the repository and
//! which of the configured `allowed_teams` they belong to. Answers are cached
//! briefly per repository/team and user, so a burst of commands costs one
//! lookup each.

use super::client::{GitHubAccess, RepoClient};
use serde_json::Value;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a permission or membership answer is reused.
const ACCESS_TTL: Duration = Duration::from_secs(60);

/// (repository or `team:org/slug`, login).
type Key = (String, String);

/// Permission and membership answers by [`Key`], reused for a minute.
#[derive(Default)]
pub struct AccessCache {
    answers: Mutex<HashMap<Key, (Option<String>, Instant)>>,
}

impl AccessCache {
    /// A cached answer for `(scope, login)`, or `None` when absent or stale.
    fn cached(&self, key: &(String, String)) -> Option<Option<String>> {
        let cache = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < ACCESS_TTL)
            .map(|(answer, _)| answer.clone())
    }

    fn remember(&self, key: (String, String), answer: Option<String>) {
        let mut cache = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < ACCESS_TTL);
        cache.insert(key, (answer, Instant::now()));
    }
}

/// The commenter's permission on the repository (`admin`, `write`, …), from
/// GitHub's collaborator API.
pub async fn collaborator_permission(
    cache: &AccessCache,
    client: &RepoClient,
    login: &str,
) -> Option<String> {
    let key = (
        format!("{}/{}", client.owner, client.repo),
        login.to_ascii_lowercase(),
    );
    if let Some(answer) = cache.cached(&key) {
        return answer;
    }
    let permission = client
        .crab()
        .await
        .ok()?
        .get::<Value, _, ()>(
            format!(
                "/repos/{}/{}/collaborators/{login}/permission",
                client.owner, client.repo
            ),
            None,
        )
        .await
        .ok()
        .and_then(|v| v["permission"].as_str().map(str::to_string));
    cache.remember(key, permission.clone());
    permission
}

/// The `allowed_teams` (`org/team-slug`) `login` is an active member of.
/// Only teams of the repository's own organization can be checked (the
/// installation token sees no other organization); the others are logged
/// and skipped. A lookup that fails counts as "not a member" (deny by default).
pub async fn team_memberships(
    cache: &AccessCache,
    github: &GitHubAccess,
    repository: &str,
    allowed_teams: &[String],
    login: &str,
) -> Vec<String> {
    let owner = repository.split('/').next().unwrap_or_default();
    let mut teams = Vec::new();
    let mut client = None;
    for team in allowed_teams {
        let Some((org, slug)) = team.split_once('/') else {
            continue;
        };
        if !org.eq_ignore_ascii_case(owner) {
            tracing::info!(team = %team, "allowed team is not in this repository's organization; not checked");
            continue;
        }
        let key = (
            format!("team:{}", team.to_ascii_lowercase()),
            login.to_ascii_lowercase(),
        );
        let state_answer = match cache.cached(&key) {
            Some(answer) => answer,
            None => {
                if client.is_none() {
                    // Organization members: read is the only permission this needs.
                    client = github
                        .repo(repository, &[("members", "read")])
                        .await
                        .map_err(|e| tracing::warn!(error = %e, "no token for team lookups"))
                        .ok();
                }
                let Some(client) = client.as_ref() else {
                    break;
                };
                let answer = membership(client, org, slug, login).await;
                cache.remember(key, answer.clone());
                answer
            }
        };
        if state_answer.as_deref() == Some("active") {
            teams.push(team.clone());
        }
    }
    if let Some(client) = client {
        client.finish().await;
    }
    teams
}

/// The membership `state` (`active`, `pending`) of `login` in `org/slug`, or
/// `None` when not a member or the lookup failed.
async fn membership(client: &RepoClient, org: &str, slug: &str, login: &str) -> Option<String> {
    let crab = client.crab().await.ok()?;
    match crab
        .get::<Value, _, ()>(
            format!("/orgs/{org}/teams/{slug}/memberships/{login}"),
            None,
        )
        .await
    {
        Ok(v) => v["state"].as_str().map(str::to_string),
        Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => None,
        Err(e) => {
            tracing::warn!(error = %e, team = %format!("{org}/{slug}"), "team membership lookup failed");
            None
        }
    }
}
