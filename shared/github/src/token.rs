//! Installation tokens and the scopes they are minted for.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    str::FromStr,
    time::{Duration, SystemTime},
};

/// A GitHub token. Debug and Display never show it; [`Token::expose`] does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Wraps a token string.
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The token itself, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 12 hex digits of the token's SHA-256: identifies a token in
    /// audit logs without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..6])
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(sha256:{})", self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[token sha256:{}]", self.fingerprint())
    }
}

/// How much a permission grants; ordered so `Read < Write < Admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    /// Read access.
    Read,
    /// Read and write access.
    Write,
    /// Administration.
    Admin,
}

impl PermissionLevel {
    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionLevel::Read => "read",
            PermissionLevel::Write => "write",
            PermissionLevel::Admin => "admin",
        }
    }
}

impl FromStr for PermissionLevel {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(PermissionLevel::Read),
            "write" => Ok(PermissionLevel::Write),
            "admin" => Ok(PermissionLevel::Admin),
            other => Err(ScopeError(format!(
                "permission level {other:?} is not one of read, write, admin"
            ))),
        }
    }
}

/// Permission name (`contents`, `pull_requests`, …) to level.
pub type Permissions = BTreeMap<String, PermissionLevel>;

/// A scope request that cannot be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScopeError(pub String);

/// What a token is for: an installation, and optionally a subset of its
/// repositories and permissions (empty = everything the installation has).
/// Ordered collections make equal scopes compare and hash equal, so this is
/// the cache key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenScope {
    /// The installation the token belongs to.
    pub installation_id: u64,
    /// Repository names without the owner; empty = all.
    pub repositories: BTreeSet<String>,
    /// Requested permissions; empty = all the installation has.
    pub permissions: Permissions,
}

impl TokenScope {
    /// The whole installation.
    pub fn installation(installation_id: u64) -> Self {
        TokenScope {
            installation_id,
            ..Default::default()
        }
    }

    /// Builds a scope from wire values, validating names and levels.
    pub fn parse<'a>(
        installation_id: u64,
        repositories: impl IntoIterator<Item = &'a str>,
        permissions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ScopeError> {
        let mut scope = TokenScope::installation(installation_id);
        for repo in repositories {
            // Accept `owner/repo` too, as long as only the name reaches GitHub.
            let name = repo.rsplit('/').next().unwrap_or(repo);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ScopeError(format!("{repo:?} is not a repository name")));
            }
            scope.repositories.insert(name.to_string());
        }
        for (name, level) in permissions {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(ScopeError(format!("{name:?} is not a permission name")));
            }
            scope.permissions.insert(name.to_string(), level.parse()?);
        }
        Ok(scope)
    }

    /// True when this is the whole installation (no narrowing).
    pub fn is_whole_installation(&self) -> bool {
        self.repositories.is_empty() && self.permissions.is_empty()
    }

    /// True when every repository and permission asked for here is also
    /// granted by `outer` (an empty set in `outer` grants everything).
    /// An empty set here asks for everything, so `outer` must grant everything too.
    pub fn is_within(&self, outer: &TokenScope) -> bool {
        if self.installation_id != outer.installation_id {
            return false;
        }
        let repos_ok = outer.repositories.is_empty()
            || (!self.repositories.is_empty() && self.repositories.is_subset(&outer.repositories));
        let perms_ok = outer.permissions.is_empty()
            || (!self.permissions.is_empty()
                && self.permissions.iter().all(|(name, level)| {
                    outer.permissions.get(name).is_some_and(|max| level <= max)
                }));
        repos_ok && perms_ok
    }

    /// A short human description for logs and audit lines.
    pub fn describe(&self) -> String {
        let repos = if self.repositories.is_empty() {
            "*".to_string()
        } else {
            self.repositories
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        };
        let perms = if self.permissions.is_empty() {
            "*".to_string()
        } else {
            self.permissions
                .iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str()))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "installation={} repos={repos} perms={perms}",
            self.installation_id
        )
    }
}

/// A minted installation token with what GitHub granted.
#[derive(Clone, Debug)]
pub struct InstallationToken {
    /// The token.
    pub token: Token,
    /// The installation it belongs to.
    pub installation_id: u64,
    /// When it was minted, on our clock.
    pub issued_at: SystemTime,
    /// When it expires, converted to our clock.
    pub expires_at: SystemTime,
    /// Granted permissions as GitHub returned them.
    pub permissions: BTreeMap<String, String>,
    /// Granted repositories; empty when all are covered.
    pub repositories: Vec<String>,
    /// `all` or `selected`.
    pub repository_selection: String,
}

impl InstallationToken {
    /// How long the token lives in total, as GitHub set it.
    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default()
    }

    /// Time left until expiry (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(repos: &[&str], perms: &[(&str, &str)]) -> TokenScope {
        TokenScope::parse(7, repos.iter().copied(), perms.iter().copied()).unwrap()
    }

    #[test]
    fn narrower_scopes_are_within_wider_ones() {
        let all = TokenScope::installation(7);
        let policy = scope(&["a", "b"], &[("contents", "write"), ("issues", "read")]);
        assert!(scope(&["a"], &[("contents", "read")]).is_within(&policy));
        assert!(scope(&["a", "b"], &[("contents", "write")]).is_within(&policy));
        assert!(policy.is_within(&all));
        assert!(!scope(&["c"], &[("contents", "read")]).is_within(&policy));
        assert!(!scope(&["a"], &[("issues", "write")]).is_within(&policy));
        assert!(!scope(&["a"], &[("pull_requests", "read")]).is_within(&policy));
        // Asking for "everything" is not within a limited policy.
        assert!(!all.is_within(&policy));
        assert!(!scope(&[], &[("contents", "read")]).is_within(&policy));
        assert!(!TokenScope::installation(8).is_within(&all));
    }

    #[test]
    fn parse_normalises_and_rejects() {
        let s = scope(&["octo-org/hello-world", "hello-world"], &[]);
        assert_eq!(s.repositories.len(), 1);
        assert!(TokenScope::parse(1, ["a b"], []).is_err());
        assert!(TokenScope::parse(1, [], [("contents", "own")]).is_err());
        assert!(TokenScope::parse(1, [], [("Contents", "read")]).is_err());
    }

    #[test]
    fn token_never_prints_itself() {
        // Built at run time: no token-shaped literal in the source.
        let t = Token::new(format!(
            "{}_{}",
            "ghs", "16C7e42F292c6912E7710c838347Ae178B4a"
        ));
        for shown in [format!("{t}"), format!("{t:?}")] {
            assert!(!shown.contains("ghs_"), "{shown}");
            assert!(shown.contains(&t.fingerprint()));
        }
        assert_eq!(t.fingerprint().len(), 12);
    }
}
