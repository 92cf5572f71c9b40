//! A repository's own `.penguin/config.yml`, read from its default branch
//! (never from a pull request's head, which anyone who can open a PR
//! controls). It can only narrow the server's configuration.

use super::client::RepoClient;
use crate::config::{RepoConfig, ServerConfig};

/// Where a repository keeps its configuration.
const REPO_CONFIG_PATH: &str = ".penguin/config.yml";

/// Why a repository's configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RepoConfigError {
    /// GitHub could not be asked (fail closed: the file may narrow).
    #[error("could not read {REPO_CONFIG_PATH} from the default branch: {0}")]
    Unreadable(String),
    /// The file is there but invalid.
    #[error("this repository's {REPO_CONFIG_PATH} (default branch) is invalid: {0}")]
    Invalid(String),
}

/// `server` narrowed by the repository's `.penguin/config.yml`; the server's
/// own when the repository has none.
pub async fn narrowed(
    client: &RepoClient,
    server: &ServerConfig,
) -> Result<ServerConfig, RepoConfigError> {
    let crab = client
        .crab()
        .await
        .map_err(|e| RepoConfigError::Unreadable(e.to_string()))?;
    // No `ref`: GitHub answers from the default branch.
    let answer = crab
        .repos(&client.owner, &client.repo)
        .get_content()
        .path(REPO_CONFIG_PATH)
        .send()
        .await;
    let items = match answer {
        Ok(items) => items,
        Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => {
            return Ok(server.clone())
        }
        Err(e) => return Err(RepoConfigError::Unreadable(e.to_string())),
    };
    let Some(text) = items.items.first().and_then(|c| c.decoded_content()) else {
        // A directory by that name, or an empty answer: nothing to narrow with.
        return Ok(server.clone());
    };
    let repo = RepoConfig::from_yaml(&text).map_err(|e| RepoConfigError::Invalid(e.to_string()))?;
    Ok(server.narrowed_by(&repo))
}
