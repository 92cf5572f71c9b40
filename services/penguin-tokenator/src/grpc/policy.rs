//! Which remote callers may ask for which tokens. Deny by default.
//!
//! ```yaml
//! rules:
//!   - subjects: ["system:serviceaccount:agents:runner-*"]
//!     installation: 1001          # optional; the default installation when absent
//!     repositories: [hello-world] # optional; all of the installation's when absent
//!     permissions:                # optional; all of the installation's when absent
//!       contents: write
//!       pull_requests: write
//! ```
//!
//! A request that leaves repositories or permissions empty gets the rule's
//! (the most the caller may have); anything it names must lie within the rule.

use globset::{Glob, GlobMatcher};
use penguin_github::TokenScope;
use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid policy YAML.
    #[error("policy file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    subjects: Vec<String>,
    #[serde(default)]
    installation: Option<u64>,
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
}

struct Rule {
    subjects: Vec<GlobMatcher>,
    installation: Option<u64>,
    repositories: Vec<String>,
    permissions: BTreeMap<String, String>,
}

impl Rule {
    fn scope(&self, default_installation: u64) -> TokenScope {
        TokenScope::parse(
            self.installation.unwrap_or(default_installation),
            self.repositories.iter().map(String::as_str),
            self.permissions
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .expect("validated at load")
    }
}

/// The loaded caller policy.
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text).map_err(|reason| PolicyError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses policy YAML.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for (i, rule) in file.rules.into_iter().enumerate() {
            if rule.subjects.is_empty() {
                return Err(format!("rule {i} has no subjects"));
            }
            let subjects = rule
                .subjects
                .iter()
                .map(|s| Glob::new(s).map(|g| g.compile_matcher()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("rule {i}: {e}"))?;
            // Validate names and levels now, so authorize never fails on them.
            TokenScope::parse(
                0,
                rule.repositories.iter().map(String::as_str),
                rule.permissions
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(|e| format!("rule {i}: {e}"))?;
            rules.push(Rule {
                subjects,
                installation: rule.installation,
                repositories: rule.repositories,
                permissions: rule.permissions,
            });
        }
        Ok(Policy { rules })
    }

    /// The scope `subject` receives for `requested`, or why not.
    pub fn authorize(
        &self,
        subject: &str,
        requested: &TokenScope,
        default_installation: u64,
    ) -> Result<TokenScope, String> {
        let mut matched = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.subjects.iter().any(|m| m.is_match(subject)))
        {
            let allowed = rule.scope(default_installation);
            if allowed.installation_id != requested.installation_id {
                matched.push(allowed);
                continue;
            }
            let mut effective = requested.clone();
            if effective.repositories.is_empty() {
                effective.repositories = allowed.repositories.clone();
            }
            if effective.permissions.is_empty() {
                effective.permissions = allowed.permissions.clone();
            }
            if effective.is_within(&allowed) {
                return Ok(effective);
            }
            matched.push(allowed);
        }
        if matched.is_empty() {
            return Err(format!("no policy rule allows caller {subject}"));
        }
        let allowed = matched
            .iter()
            .map(TokenScope::describe)
            .collect::<Vec<_>>()
            .join("; ");
        Err(format!(
            "caller {subject} asked for {} but the policy allows only: {allowed}",
            requested.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
rules:
  - subjects: ["system:serviceaccount:agents:runner-*"]
    repositories: [hello-world]
    permissions: {contents: write, pull_requests: write}
  - subjects: ["system:serviceaccount:ops:auditor"]
    installation: 2002
"#;

    fn scope(inst: u64, repos: &[&str], perms: &[(&str, &str)]) -> TokenScope {
        TokenScope::parse(inst, repos.iter().copied(), perms.iter().copied()).unwrap()
    }

    #[test]
    fn allows_within_and_fills_empties_from_the_rule() {
        let p = Policy::parse(POLICY).unwrap();
        let runner = "system:serviceaccount:agents:runner-7";
        let got = p.authorize(runner, &scope(1001, &[], &[]), 1001).unwrap();
        assert_eq!(
            got,
            scope(
                1001,
                &["hello-world"],
                &[("contents", "write"), ("pull_requests", "write")]
            )
        );
        let got = p
            .authorize(runner, &scope(1001, &[], &[("contents", "read")]), 1001)
            .unwrap();
        assert_eq!(got, scope(1001, &["hello-world"], &[("contents", "read")]));
        let got = p
            .authorize(
                "system:serviceaccount:ops:auditor",
                &scope(2002, &[], &[]),
                1001,
            )
            .unwrap();
        assert!(got.is_whole_installation());
    }

    #[test]
    fn denies_by_default_and_beyond_the_rule_with_reasons() {
        let p = Policy::parse(POLICY).unwrap();
        let err = p
            .authorize(
                "system:serviceaccount:other:x",
                &scope(1001, &[], &[]),
                1001,
            )
            .unwrap_err();
        assert!(err.contains("no policy rule"), "{err}");
        let runner = "system:serviceaccount:agents:runner-7";
        let err = p
            .authorize(runner, &scope(1001, &["other-repo"], &[]), 1001)
            .unwrap_err();
        assert!(
            err.contains("allows only") && err.contains("hello-world"),
            "{err}"
        );
        assert!(p
            .authorize(runner, &scope(1001, &[], &[("issues", "write")]), 1001)
            .is_err());
        assert!(p.authorize(runner, &scope(2002, &[], &[]), 1001).is_err());
        assert!(p
            .authorize(
                "system:serviceaccount:ops:auditor",
                &scope(1001, &[], &[]),
                1001
            )
            .is_err());
        assert!(Policy::parse("rules: []\n")
            .unwrap()
            .authorize(runner, &scope(1001, &[], &[]), 1001)
            .is_err());
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Policy::parse("rules: [{subjects: []}]").is_err());
        assert!(Policy::parse("rules: [{subjects: [a], permissions: {contents: own}}]").is_err());
        assert!(Policy::parse("rules: [{subjects: [a], bogus: 1}]").is_err());
        assert!(Policy::parse("- not a map").is_err());
    }
}
