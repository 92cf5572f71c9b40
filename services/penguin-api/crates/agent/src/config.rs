//! The `security` section of the server's `.penguin/config.yml` and the
//! [`SecurityPolicy`] built from it.
//!
//! ```yaml
//! security:
//!   mode: workspace            # read_only | workspace | full   (default workspace)
//!   capabilities:              # allow | ask | deny
//!     repo_write: ask          # default ask
//!     shell: allow             # default ask
//!     network: deny            # default deny
//!   denied_paths: [".env", ".env.*", "*.pem", "*secret*"]
//! ```
//!
//! Other top-level sections belong to other features and are ignored here;
//! an unknown key inside `security` is an error that names the key.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Globs that are denied whatever the configuration says.
pub const ALWAYS_DENIED_GLOBS: [&str; 4] = [".env", ".env.*", "*.pem", "*secret*"];

/// How much the agent may change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Look, never touch: repository writes and shell commands are denied.
    ReadOnly,
    /// The capabilities apply as configured.
    #[default]
    Workspace,
    /// `ask` becomes `allow` for repository writes and shell commands
    /// (`deny` stays `deny`).
    Full,
}

/// What happens when the agent wants a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Only with a person's approval.
    Ask,
    /// Never.
    Deny,
}

impl Decision {
    /// `allow`, `ask` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the agent may want to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Change files of the repository.
    RepoWrite,
    /// Run shell commands.
    Shell,
    /// Reach the network.
    Network,
    /// Change CI workflows (`.github/workflows/**`), on top of `repo_write`.
    Workflows,
}

impl Capability {
    /// `repo_write`, `shell`, `network` or `workflows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::RepoWrite => "repo_write",
            Capability::Shell => "shell",
            Capability::Network => "network",
            Capability::Workflows => "workflows",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configured decision of each capability (before the mode applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Changing repository files (default `ask`).
    pub repo_write: Decision,
    /// Shell commands (default `ask`).
    pub shell: Decision,
    /// Network access (default `deny`).
    pub network: Decision,
    /// Changing `.github/workflows/**` (default `deny`): a workflow runs
    /// with the repository's secrets, so it needs its own say-so.
    pub workflows: Decision,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            repo_write: Decision::Ask,
            shell: Decision::Ask,
            network: Decision::Deny,
            workflows: Decision::Deny,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The configuration file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML or its `security` section is wrong
    /// (an unknown key is named in the message).
    #[error("invalid configuration {path}: {message}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `denied_paths` entry is not a valid glob.
    #[error("invalid denied_paths pattern {pattern:?}: {message}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
}

/// A path the policy refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("denied by the security policy: {reason}")]
pub struct PolicyDenied {
    /// Why, for people and for the model.
    pub reason: String,
}

impl PolicyDenied {
    fn new(reason: impl Into<String>) -> Self {
        PolicyDenied {
            reason: reason.into(),
        }
    }
}

/// The whole file: only `security` is read, other sections are ignored.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    security: Option<SecuritySection>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SecuritySection {
    mode: Mode,
    capabilities: Capabilities,
    denied_paths: Vec<String>,
}

/// The security policy every tool call goes through.
#[derive(Clone, Debug)]
pub struct SecurityPolicy {
    /// The mode.
    pub mode: Mode,
    /// The configured decisions (use [`SecurityPolicy::decide`], which
    /// applies the mode).
    pub capabilities: Capabilities,
    denied: GlobSet,
    denied_patterns: Vec<String>,
    always_denied: Vec<PathBuf>,
}

/// Whether a component of `path` is `.git` (any case).
fn in_git_dir(path: &Path) -> bool {
    path.components().any(|c| {
        matches!(c, Component::Normal(name) if name.to_string_lossy().eq_ignore_ascii_case(".git"))
    })
}

impl SecurityPolicy {
    /// Reads the `security` section of the configuration file at `path`.
    /// A missing file gives the defaults. `always_denied` are absolute paths
    /// (the tokenator socket, the git credentials file, …) denied whatever
    /// the file says.
    pub fn load(path: &Path, always_denied: &[PathBuf]) -> Result<SecurityPolicy, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no configuration file, using the default security policy");
                return Ok(SecurityPolicy::default_with(always_denied));
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        SecurityPolicy::from_yaml(&text, always_denied).map_err(|e| match e {
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses configuration text (the whole file, not only the section).
    /// Errors carry an empty path; [`SecurityPolicy::load`] fills it in.
    pub fn from_yaml(text: &str, always_denied: &[PathBuf]) -> Result<SecurityPolicy, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        };
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let file: ConfigFile = if value.is_null() {
            ConfigFile::default()
        } else {
            serde_yaml::from_value(value).map_err(|e| invalid(e.to_string()))?
        };
        let section = file.security.unwrap_or_default();
        SecurityPolicy::build(
            section.mode,
            section.capabilities,
            &section.denied_paths,
            always_denied,
        )
    }

    /// The defaults (mode `workspace`, capabilities `repo_write: ask`,
    /// `shell: ask`, `network: deny`, the always-denied globs) plus the
    /// always-denied paths.
    pub fn default_with(always_denied: &[PathBuf]) -> SecurityPolicy {
        SecurityPolicy::build(Mode::default(), Capabilities::default(), &[], always_denied)
            .expect("the built-in globs are valid")
    }

    /// A policy from its parts; `denied_paths` is added to
    /// [`ALWAYS_DENIED_GLOBS`].
    pub fn build(
        mode: Mode,
        capabilities: Capabilities,
        denied_paths: &[String],
        always_denied: &[PathBuf],
    ) -> Result<SecurityPolicy, ConfigError> {
        let mut patterns: Vec<String> = Vec::new();
        for raw in ALWAYS_DENIED_GLOBS
            .iter()
            .map(|s| s.to_string())
            .chain(denied_paths.iter().cloned())
        {
            let pattern = normalize_pattern(&raw);
            if pattern.is_empty() {
                return Err(ConfigError::Glob {
                    pattern: raw,
                    message: "empty pattern".into(),
                });
            }
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in &patterns {
            let glob = GlobBuilder::new(pattern)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| ConfigError::Glob {
                    pattern: pattern.clone(),
                    message: e.kind().to_string(),
                })?;
            builder.add(glob);
        }
        let denied = builder.build().map_err(|e| ConfigError::Glob {
            pattern: patterns.join(", "),
            message: e.to_string(),
        })?;
        Ok(SecurityPolicy {
            mode,
            capabilities,
            denied,
            denied_patterns: patterns,
            always_denied: always_denied.to_vec(),
        })
    }

    /// The denied globs in force (the always-denied ones first).
    pub fn denied_patterns(&self) -> &[String] {
        &self.denied_patterns
    }

    /// The always-denied absolute paths.
    pub fn always_denied(&self) -> &[PathBuf] {
        &self.always_denied
    }

    /// The decision for `cap`, after the mode: `read_only` denies repository
    /// writes and shell commands; `full` turns `ask` into `allow` for them;
    /// `deny` is never relaxed; network is never changed by the mode.
    pub fn decide(&self, cap: Capability) -> Decision {
        let configured = match cap {
            Capability::RepoWrite => self.capabilities.repo_write,
            Capability::Shell => self.capabilities.shell,
            Capability::Network => self.capabilities.network,
            Capability::Workflows => self.capabilities.workflows,
        };
        let decision = match (cap, self.mode, configured) {
            (Capability::Network, _, d) => d,
            // Only ever what is configured (a workflow edit is never implied).
            (Capability::Workflows, Mode::ReadOnly, _) => Decision::Deny,
            (Capability::Workflows, _, d) => d,
            (_, Mode::ReadOnly, _) => Decision::Deny,
            (_, Mode::Full, Decision::Ask) => Decision::Allow,
            (_, _, d) => d,
        };
        tracing::info!(capability = %cap, mode = ?self.mode, decision = %decision, "security decision");
        decision
    }

    /// Resolves `requested` (relative to the workspace, or absolute inside
    /// it) and returns the canonical path if the policy allows it. Refused:
    /// absolute paths outside the workspace, `..` escapes, symbolic links
    /// resolving outside the workspace (or dangling), paths matching a denied
    /// glob (the relative path or any component, case-insensitively) and the
    /// always-denied paths. The path need not exist (its missing part is
    /// appended to the canonical existing part).
    pub fn check_path(&self, workspace: &Path, requested: &str) -> Result<PathBuf, PolicyDenied> {
        let result = self.resolve(workspace, requested).and_then(|resolved| {
            // The repository's own metadata is never the agent's to read or
            // change (`.git/config` holds the remote the push goes to), by
            // name as asked or as resolved, in any case.
            let inside = std::fs::canonicalize(workspace)
                .ok()
                .and_then(|ws| resolved.strip_prefix(ws).ok().map(Path::to_path_buf))
                .unwrap_or_default();
            if in_git_dir(Path::new(requested)) || in_git_dir(&inside) {
                return Err(PolicyDenied::new(format!(
                    "{requested} is inside .git, which the agent may not read or change"
                )));
            }
            Ok(resolved)
        });
        match &result {
            Ok(_) => tracing::debug!(path = %requested, decision = "allow", "path check"),
            Err(denied) => {
                tracing::info!(path = %requested, decision = "deny", reason = %denied.reason, "path check")
            }
        }
        result
    }

    /// Like [`SecurityPolicy::check_path`] without logging, for bulk
    /// filtering (directory listings, copying a workspace).
    pub(crate) fn resolve(
        &self,
        workspace: &Path,
        requested: &str,
    ) -> Result<PathBuf, PolicyDenied> {
        if requested.contains('\0') {
            return Err(PolicyDenied::new("the path contains a NUL character"));
        }
        let ws = std::fs::canonicalize(workspace)
            .map_err(|e| PolicyDenied::new(format!("the workspace is not accessible: {e}")))?;
        let requested_path = Path::new(requested);
        let rel: &Path = if requested_path.is_absolute() {
            match requested_path
                .strip_prefix(&ws)
                .or_else(|_| requested_path.strip_prefix(workspace))
            {
                Ok(rel) => rel,
                Err(_) => {
                    return Err(PolicyDenied::new(format!(
                        "{requested} is outside the workspace"
                    )))
                }
            }
        } else {
            requested_path
        };

        // Lexical escape (`../x`, `a/../../x`).
        let mut depth: usize = 0;
        for component in rel.components() {
            match component {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => {
                    if depth == 0 {
                        return Err(PolicyDenied::new(format!(
                            "{requested} escapes the workspace (`..`)"
                        )));
                    }
                    depth -= 1;
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PolicyDenied::new(format!(
                        "{requested} is outside the workspace"
                    )))
                }
            }
        }
        // The name as asked (a link called `secret` is denied even if its
        // target is not).
        if let Some(pattern) = self.denied_glob(rel) {
            return Err(PolicyDenied::new(format!(
                "{requested} matches the denied pattern {pattern:?}"
            )));
        }

        let resolved = resolve_components(&ws, rel).map_err(|reason| {
            PolicyDenied::new(format!("{requested} cannot be resolved safely: {reason}"))
        })?;
        let inside = match resolved.strip_prefix(&ws) {
            Ok(inside) => inside,
            Err(_) => {
                return Err(PolicyDenied::new(format!(
                    "{requested} resolves outside the workspace (symbolic link)"
                )))
            }
        };
        if let Some(pattern) = self.denied_glob(inside) {
            return Err(PolicyDenied::new(format!(
                "{requested} resolves to {} which matches the denied pattern {pattern:?}",
                inside.display()
            )));
        }
        if self.is_always_denied(&resolved, inside) {
            return Err(PolicyDenied::new(format!(
                "{requested} is a protected path"
            )));
        }
        Ok(resolved)
    }

    /// The first denied glob matching the relative path or one of its
    /// components.
    fn denied_glob(&self, rel: &Path) -> Option<&str> {
        let joined: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let candidates = std::iter::once(joined.join("/")).chain(joined.iter().cloned());
        for candidate in candidates {
            if candidate.is_empty() {
                continue;
            }
            if let Some(index) = self.denied.matches(&candidate).first() {
                return Some(&self.denied_patterns[*index]);
            }
        }
        None
    }

    /// Whether `resolved` (canonical, absolute) is or lies under one of the
    /// always-denied paths. `inside` is the same path relative to the
    /// workspace (for relative entries).
    fn is_always_denied(&self, resolved: &Path, inside: &Path) -> bool {
        self.always_denied.iter().any(|denied| {
            if denied.is_relative() {
                return inside.starts_with(denied);
            }
            if resolved.starts_with(denied) {
                return true;
            }
            if let Ok(canonical) = std::fs::canonicalize(denied) {
                if resolved.starts_with(&canonical) {
                    return true;
                }
            }
            // The file may not exist yet (a socket created later): resolve
            // its directory.
            if let (Some(parent), Some(name)) = (denied.parent(), denied.file_name()) {
                if let Ok(parent) = std::fs::canonicalize(parent) {
                    if resolved.starts_with(parent.join(name)) {
                        return true;
                    }
                }
            }
            false
        })
    }

    /// Whether a workspace-relative path is denied by name (globs or
    /// always-denied paths) once resolved; used to filter listings and
    /// copies without logging each entry.
    pub(crate) fn is_denied_entry(&self, workspace: &Path, rel: &Path) -> bool {
        match rel.to_str() {
            Some(rel) => self.resolve(workspace, rel).is_err(),
            None => true,
        }
    }
}

/// `./x/` → `x`, `/x` → `x` (patterns match workspace-relative paths).
fn normalize_pattern(raw: &str) -> String {
    let mut pattern = raw.trim();
    while let Some(rest) = pattern.strip_prefix("./") {
        pattern = rest;
    }
    pattern = pattern.trim_start_matches('/').trim_end_matches('/');
    pattern.to_string()
}

/// Resolves `rel` under the canonical `ws` component by component, following
/// symbolic links with the kernel's rules; the part that does not exist is
/// appended as is. Dangling links are refused.
fn resolve_components(ws: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut current = ws.to_path_buf();
    let mut missing = false;
    for component in rel.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if missing {
                    return Err("`..` after a path that does not exist".into());
                }
                current.pop();
            }
            Component::Normal(name) => {
                let next = current.join(name);
                if missing {
                    current = next;
                    continue;
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(&next)
                    {
                        Ok(target) => current = target,
                        Err(e) => {
                            return Err(format!("symbolic link that cannot be followed: {e}"))
                        }
                    },
                    Ok(_) => current = next,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        missing = true;
                        current = next;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute component".into());
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_normalized() {
        assert_eq!(normalize_pattern("./secrets/"), "secrets");
        assert_eq!(normalize_pattern("/config/prod.yml"), "config/prod.yml");
        assert_eq!(normalize_pattern(" *.key "), "*.key");
    }

    #[test]
    fn empty_pattern_is_an_error() {
        let err = SecurityPolicy::build(
            Mode::Workspace,
            Capabilities::default(),
            &["./".to_string()],
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Glob { .. }), "{err}");
    }

    #[test]
    fn denied_glob_matches_components_and_whole_path() {
        let policy = SecurityPolicy::build(
            Mode::Workspace,
            Capabilities::default(),
            &["config/prod.yml".to_string()],
            &[],
        )
        .unwrap();
        assert_eq!(policy.denied_glob(Path::new("a/b/.env")), Some(".env"));
        assert_eq!(
            policy.denied_glob(Path::new("keys/ID_RSA.PEM")),
            Some("*.pem")
        );
        assert_eq!(
            policy.denied_glob(Path::new("config/prod.yml")),
            Some("config/prod.yml")
        );
        assert_eq!(policy.denied_glob(Path::new("src/config/prod.yml")), None);
        assert_eq!(policy.denied_glob(Path::new("src/main.rs")), None);
        assert_eq!(policy.denied_glob(Path::new(".environment")), None);
    }
}
