//! The `github` and `hooks` sections of the server's `.penguin/config.yml`,
//! a repository's own (narrowing) `.penguin/config.yml`, and a watcher that
//! reloads the server's file when it changes.
//!
//! ```yaml
//! github:
//!   webhook:
//!     secret_env: GITHUB_WEBHOOK_SECRET                    # default
//!     previous_secret_env: GITHUB_WEBHOOK_SECRET_PREVIOUS  # default
//!     allowed_repos: ["octo-org/hello-world"]              # default [] (no allowlist)
//!     allowed_orgs: ["octo-org"]                           # default []
//!   bot:
//!     mention_trigger: "@Penguin"
//!     enabled_commands: [review, plan, fix_tests, fix, summarize, approve, help, question]
//!     require_label: false
//!     opt_in_label: "penguin:auto"
//!     allowed_users: []
//!     allowed_teams: []
//!     read_only_associations: []        # e.g. [OWNER, MEMBER, COLLABORATOR]
//!     commands_per_hour_per_repo: 60
//!     commands_per_hour_per_user: 20
//!     allow_fork_prs: false
//!     approver_must_differ: true          # `approve` is a second person's decision
//!   checks:
//!     enabled: true
//!     check_names: { review: penguin/review, tests: penguin/tests, plan: penguin/plan }
//!   labels:
//!     enabled: true
//!     label_map: { needs_input: "penguin:needs-input", in_progress: "penguin:in-progress",
//!                  done: "penguin:done", failed: "penguin:failed" }
//!   review:
//!     max_files: 50                      # files reviewed at most; the rest are listed
//!     max_diff_lines: 2000               # a file with a longer patch is listed, not reviewed
//!     max_prompt_tokens: 24000           # larger diffs are reviewed in chunks of files
//!     max_iterations: 8                  # model calls per chunk (read-only tools)
//!     request_changes_on: []             # e.g. [high]; otherwise reviews only COMMENT
//!     ignore: ["**/*.lock", "**/package-lock.json"]   # globs never reviewed
//!     path_instructions: { "src/db/**": "Check every query for injection." }
//!   budget: { daily_tokens: 0 }          # per repository per UTC day; 0 = no budget
//!   fix_tests: { test_command: "cargo test", max_rounds: 3, timeout_secs: 600, commit_via_api: false,
//!                max_iterations: 25, time_limit_secs: 1800, token_budget: 400000,
//!                on_failure: fail,            # or draft: a draft PR says what still fails
//!                max_changed_files: 25, max_changed_lines: 1000 }
//!   retention_days: 7
//!   delivery_retries: { max_attempts: 5, backoff_ms: 30000 }
//! hooks:
//!   pre:                                 # branch.create, commit.create, push, pr.create, review.run
//!     branch.create:
//!       - { argv: ["/usr/bin/true"], env: { K: V }, timeout_secs: 30 }
//!   post: {}
//! ```
//!
//! Every field is optional (a null value means the default). Other top-level
//! sections (`security`, read by `penguin-agent`, and any others) are
//! ignored; an unknown key inside `github` or `hooks` is an error that names
//! the full key path (`github.bot.mention_triger: unknown key …`).

mod watch;
mod yaml;

pub use watch::ConfigWatcher;

use crate::command::COMMAND_NAMES;
use serde::Serialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use yaml::Node;

/// The `author_association` values GitHub sends.
pub const ASSOCIATIONS: [&str; 8] = [
    "OWNER",
    "MEMBER",
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIME_CONTRIBUTOR",
    "FIRST_TIMER",
    "MANNEQUIN",
    "NONE",
];

/// The longest timeout a hook or a test run may have, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value is wrong. Displays as
    /// `[file: ]key.path: reason`.
    #[error("{}", display_invalid(file.as_deref(), key, reason))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// The full key path (`github.bot.mention_trigger`,
        /// `hooks.pre."push"[0].argv`); empty for YAML syntax errors.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The file's directory cannot be watched.
    #[error("cannot watch {}: {reason}", path.display())]
    Watch {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
}

fn display_invalid(file: Option<&Path>, key: &str, reason: &str) -> String {
    let mut out = String::new();
    if let Some(file) = file {
        out.push_str(&format!("{}: ", file.display()));
    }
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(reason);
    out
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Invalid { key, reason, .. } => ConfigError::Invalid {
                file: Some(path.to_path_buf()),
                key,
                reason,
            },
            other => other,
        }
    }

    /// The key path of an invalid value (`None` for I/O and watch errors,
    /// `Some("")` for YAML syntax errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The parts of the server's `.penguin/config.yml` this crate reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerConfig {
    /// The `github` section.
    pub github: GitHubConfig,
    /// The `hooks` section.
    pub hooks: HooksConfig,
}

/// The `github` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GitHubConfig {
    /// `github.webhook`.
    pub webhook: WebhookConfig,
    /// `github.bot`.
    pub bot: BotConfig,
    /// `github.checks`.
    pub checks: ChecksConfig,
    /// `github.labels`.
    pub labels: LabelsConfig,
    /// `github.review`.
    pub review: ReviewConfig,
    /// `github.fix_tests`.
    pub fix_tests: FixTestsConfig,
    /// `github.budget`.
    pub budget: BudgetConfig,
    /// How long deliveries and task records are kept (default 7, at least 1).
    pub retention_days: u32,
    /// `github.delivery_retries`.
    pub delivery_retries: DeliveryRetries,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            webhook: WebhookConfig::default(),
            bot: BotConfig::default(),
            checks: ChecksConfig::default(),
            labels: LabelsConfig::default(),
            review: ReviewConfig::default(),
            fix_tests: FixTestsConfig::default(),
            budget: BudgetConfig::default(),
            retention_days: 7,
            delivery_retries: DeliveryRetries::default(),
        }
    }
}

/// `github.delivery_retries`: how a delivery that failed transiently (GitHub
/// 5xx or rate limits, an unreachable tokenator, a failing model provider)
/// is tried again before it ends `dead`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRetries {
    /// Attempts in total, the first included (default 5, 1..=20).
    pub max_attempts: u32,
    /// Wait before the second attempt, doubling after each (with jitter, at
    /// most an hour), in milliseconds (default 30000, 10..=3600000).
    pub backoff_ms: u64,
}

impl Default for DeliveryRetries {
    fn default() -> Self {
        DeliveryRetries {
            max_attempts: 5,
            backoff_ms: 30_000,
        }
    }
}

/// `github.webhook`: where the secrets are and which repositories may send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    /// The environment variable holding the webhook secret.
    pub secret_env: String,
    /// The environment variable holding the previous secret (rotation).
    pub previous_secret_env: String,
    /// `owner/name` of repositories the bot serves (empty: no allowlist).
    pub allowed_repos: Vec<String>,
    /// Owners whose repositories the bot serves (empty: no allowlist).
    pub allowed_orgs: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret_env: "GITHUB_WEBHOOK_SECRET".into(),
            previous_secret_env: "GITHUB_WEBHOOK_SECRET_PREVIOUS".into(),
            allowed_repos: Vec::new(),
            allowed_orgs: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// The secrets to verify signatures with: the current one, then the
    /// previous one. Unset and empty variables are skipped, and so is a
    /// previous secret equal to the current one.
    pub fn secrets(&self, env: impl Fn(&str) -> Option<String>) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for name in [&self.secret_env, &self.previous_secret_env] {
            if let Some(value) = env(name).filter(|v| !v.is_empty()) {
                let value = value.into_bytes();
                if !out.contains(&value) {
                    out.push(value);
                }
            }
        }
        out
    }

    /// Whether deliveries for `full_name` (`owner/name`) are served.
    ///
    /// With no `allowed_repos`, no `allowed_orgs` and no
    /// `default_repository` (the server's `GITHUB_REPOSITORY`), every
    /// repository is. Otherwise the repository must be listed (the default
    /// repository counts as listed) or its owner must be in `allowed_orgs`.
    /// Comparisons ignore case; a name without an owner never matches an
    /// allowlist.
    pub fn repo_allowed(&self, full_name: &str, default_repository: Option<&str>) -> bool {
        let default_repository = default_repository.map(str::trim).filter(|d| !d.is_empty());
        if self.allowed_repos.is_empty()
            && self.allowed_orgs.is_empty()
            && default_repository.is_none()
        {
            return true;
        }
        let full_name = full_name.trim();
        let Some((owner, name)) = full_name.split_once('/') else {
            return false;
        };
        if owner.is_empty() || name.is_empty() {
            return false;
        }
        self.allowed_repos
            .iter()
            .map(String::as_str)
            .chain(default_repository)
            .any(|r| r.eq_ignore_ascii_case(full_name))
            || self
                .allowed_orgs
                .iter()
                .any(|o| o.eq_ignore_ascii_case(owner))
    }
}

/// `github.bot`: how the bot is addressed and who may address it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BotConfig {
    /// The mention that addresses the bot (starts with `@`).
    pub mention_trigger: String,
    /// [`crate::Command::name`]s the bot acts on (lower case, no duplicates).
    pub enabled_commands: Vec<String>,
    /// Whether write commands need `opt_in_label` on organisation-wide installations.
    pub require_label: bool,
    /// The opt-in label.
    pub opt_in_label: String,
    /// Logins allowed whatever their permission.
    pub allowed_users: Vec<String>,
    /// Teams whose members are allowed whatever their permission (compared
    /// with [`crate::gate::Actor::teams`] as written, ignoring case).
    pub allowed_teams: Vec<String>,
    /// `author_association`s allowed to use read-only commands (upper case).
    pub read_only_associations: Vec<String>,
    /// Commands per repository per rolling hour (at least 1).
    pub commands_per_hour_per_repo: u32,
    /// Commands per user per rolling hour (at least 1).
    pub commands_per_hour_per_user: u32,
    /// Whether write commands may run on pull requests from forks.
    pub allow_fork_prs: bool,
    /// `pull_request` actions that start an automatic review (`opened`,
    /// `synchronize`, `reopened`, `labeled`, `ready_for_review`); empty = none.
    pub auto_review_on: Vec<String>,
    /// When set, automatic reviews only for pull requests carrying this label.
    pub auto_review_label: Option<String>,
    /// Whether `approve` must come from someone other than the requester
    /// (default true: an approval is a second person's decision).
    pub approver_must_differ: bool,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            mention_trigger: crate::command::DEFAULT_TRIGGER.into(),
            enabled_commands: COMMAND_NAMES.iter().map(|s| s.to_string()).collect(),
            require_label: false,
            opt_in_label: "penguin:auto".into(),
            allowed_users: Vec::new(),
            allowed_teams: Vec::new(),
            read_only_associations: Vec::new(),
            commands_per_hour_per_repo: 60,
            commands_per_hour_per_user: 20,
            allow_fork_prs: false,
            auto_review_on: Vec::new(),
            auto_review_label: None,
            approver_must_differ: true,
        }
    }
}

impl BotConfig {
    /// Whether the command named `name` is enabled.
    pub fn command_enabled(&self, name: &str) -> bool {
        self.enabled_commands.iter().any(|c| c == name)
    }
}

/// `github.checks`: check runs on pull requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChecksConfig {
    /// Whether check runs are created.
    pub enabled: bool,
    /// Their names.
    pub check_names: CheckNames,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            enabled: true,
            check_names: CheckNames::default(),
        }
    }
}

/// `github.checks.check_names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckNames {
    /// For reviews (default `penguin/review`).
    pub review: String,
    /// For test fixing (default `penguin/tests`).
    pub tests: String,
    /// For plans (default `penguin/plan`).
    pub plan: String,
}

impl Default for CheckNames {
    fn default() -> Self {
        CheckNames {
            review: "penguin/review".into(),
            tests: "penguin/tests".into(),
            plan: "penguin/plan".into(),
        }
    }
}

/// `github.labels`: labels that show a task's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelsConfig {
    /// Whether labels are set.
    pub enabled: bool,
    /// Their names.
    pub label_map: LabelMap,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            enabled: true,
            label_map: LabelMap::default(),
        }
    }
}

/// `github.labels.label_map`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelMap {
    /// Waiting for a person (default `penguin:needs-input`).
    pub needs_input: String,
    /// Working (default `penguin:in-progress`).
    pub in_progress: String,
    /// Finished (default `penguin:done`).
    pub done: String,
    /// Failed (default `penguin:failed`).
    pub failed: String,
}

impl Default for LabelMap {
    fn default() -> Self {
        LabelMap {
            needs_input: "penguin:needs-input".into(),
            in_progress: "penguin:in-progress".into(),
            done: "penguin:done".into(),
            failed: "penguin:failed".into(),
        }
    }
}

/// `github.review`: what pull request reviews look at and may do. A
/// review never approves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReviewConfig {
    /// Files reviewed at most (default 50, at least 1); the rest are listed.
    pub max_files: usize,
    /// A file whose patch is longer is listed, not reviewed (default 2000).
    pub max_diff_lines: usize,
    /// The diff part of one prompt, in estimated tokens (default 24000,
    /// 1000..=1000000); larger diffs are reviewed in chunks of files.
    pub max_prompt_tokens: usize,
    /// Model calls per chunk, tool calls included (default 8, 1..=50).
    pub max_iterations: u32,
    /// Severities that make the review `REQUEST_CHANGES` (default none:
    /// `COMMENT` only). `allow_request_changes: true` means `[high]`.
    pub request_changes_on: Vec<Severity>,
    /// Globs of paths never reviewed (lock files, generated code).
    pub ignore: Vec<String>,
    /// Glob → extra instructions for the files it matches.
    pub path_instructions: BTreeMap<String, String>,
    /// The repository's own `path_instructions` (its `.penguin/config.yml`):
    /// kept apart, as the repository's text reaches the model fenced as data.
    pub repo_path_instructions: BTreeMap<String, String>,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            max_files: 50,
            max_diff_lines: 2000,
            max_prompt_tokens: 24_000,
            max_iterations: 8,
            request_changes_on: Vec::new(),
            ignore: Vec::new(),
            path_instructions: BTreeMap::new(),
            repo_path_instructions: BTreeMap::new(),
        }
    }
}

/// How much a review finding matters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A bug, a security hole or data loss.
    High,
    /// Likely wrong or risky.
    Medium,
    /// Worth a look.
    Low,
    /// Style and naming.
    Nit,
}

impl Severity {
    /// Every severity, most serious first.
    pub const ALL: [Severity; 4] = [
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Nit,
    ];

    /// `high`, `medium`, `low` or `nit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Nit => "nit",
        }
    }

    /// The severity named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// `github.budget`: how many model tokens the bot may spend per repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetConfig {
    /// Tokens per repository per UTC day (0: no budget). Once spent,
    /// automatic reviews stop and commands wait for a maintainer's
    /// `approve`.
    pub daily_tokens: u64,
}

/// `github.fix_tests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FixTestsConfig {
    /// The command that runs the tests (default `cargo test`).
    pub test_command: String,
    /// Fix-and-rerun rounds (default 3, 1..=100).
    pub max_rounds: u32,
    /// Per test run, in seconds (default 600, 1..=3600).
    pub timeout_secs: u64,
    /// Whether commits go through the Git Data API (verified, signed by the App).
    pub commit_via_api: bool,
    /// Model turns per agent round (default 25, 1..=50).
    pub max_iterations: u32,
    /// The whole fix's time budget, in seconds (default 1800, 1..=3600).
    pub time_limit_secs: u64,
    /// Tokens the fix may use in all (default 400000; 0: no cap).
    pub token_budget: u64,
    /// What happens when the tests still fail (default `fail`: nothing is
    /// pushed; `draft`: a draft pull request says what still fails).
    pub on_failure: OnFailure,
    /// Files a fix may change at most (default 25).
    pub max_changed_files: usize,
    /// Lines added plus removed at most (default 1000).
    pub max_changed_lines: usize,
}

/// `github.fix_tests.on_failure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Nothing is pushed; the comment says what failed.
    Fail,
    /// The change is pushed as a draft pull request that says what fails.
    Draft,
}

impl Default for FixTestsConfig {
    fn default() -> Self {
        FixTestsConfig {
            test_command: "cargo test".into(),
            max_rounds: 3,
            timeout_secs: 600,
            commit_via_api: false,
            max_iterations: 25,
            time_limit_secs: 1800,
            token_budget: 400_000,
            on_failure: OnFailure::Fail,
            max_changed_files: 25,
            max_changed_lines: 1000,
        }
    }
}

/// The moments hooks run around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum HookEvent {
    /// `branch.create`
    #[serde(rename = "branch.create")]
    BranchCreate,
    /// `commit.create`
    #[serde(rename = "commit.create")]
    CommitCreate,
    /// `push`
    #[serde(rename = "push")]
    Push,
    /// `pr.create`
    #[serde(rename = "pr.create")]
    PrCreate,
    /// `review.run`
    #[serde(rename = "review.run")]
    ReviewRun,
}

impl HookEvent {
    /// Every event.
    pub const ALL: [HookEvent; 5] = [
        HookEvent::BranchCreate,
        HookEvent::CommitCreate,
        HookEvent::Push,
        HookEvent::PrCreate,
        HookEvent::ReviewRun,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::BranchCreate => "branch.create",
            HookEvent::CommitCreate => "commit.create",
            HookEvent::Push => "push",
            HookEvent::PrCreate => "pr.create",
            HookEvent::ReviewRun => "review.run",
        }
    }

    /// The event called `name`.
    pub fn from_name(name: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook: a program run without a shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookCommand {
    /// The program and its arguments (not empty; the program not empty).
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Seconds before it is killed (default 30, 1..=3600).
    pub timeout_secs: u64,
}

/// The `hooks` section: commands run before and after each event, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HooksConfig {
    /// Before the event.
    pub pre: BTreeMap<HookEvent, Vec<HookCommand>>,
    /// After the event.
    pub post: BTreeMap<HookEvent, Vec<HookCommand>>,
}

impl HooksConfig {
    /// The hooks run before `event` (possibly none).
    pub fn pre(&self, event: HookEvent) -> &[HookCommand] {
        self.pre.get(&event).map_or(&[], Vec::as_slice)
    }

    /// The hooks run after `event` (possibly none).
    pub fn post(&self, event: HookEvent) -> &[HookCommand] {
        self.post.get(&event).map_or(&[], Vec::as_slice)
    }
}

impl ServerConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: impl AsRef<Path>) -> Result<ServerConfig, ConfigError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => ServerConfig::from_yaml(&text).map_err(|e| e.in_file(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServerConfig::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses a whole configuration file's text (an empty document gives the
    /// defaults).
    pub fn from_yaml(text: &str) -> Result<ServerConfig, ConfigError> {
        let document = parse_document(text)?;
        let mut config = ServerConfig::default();
        let Value::Mapping(top) = &document else {
            if document.is_null() {
                return Ok(config);
            }
            return Err(ConfigError::invalid(
                "",
                format!(
                    "the configuration must be a mapping, found {}",
                    yaml::kind(&document)
                ),
            ));
        };
        for (key, value) in top {
            if value.is_null() {
                continue;
            }
            match key.as_str() {
                Some("github") => config.github = parse_github(Node::new(value, "github"))?,
                Some("hooks") => config.hooks = parse_hooks(Node::new(value, "hooks"))?,
                _ => {} // other features' sections
            }
        }
        Ok(config)
    }

    /// This configuration as narrowed by a repository's own: enabled commands
    /// are the intersection (the server's order), the test command and the
    /// labels the repository names replace the server's. Nothing else changes,
    /// so a repository can never widen what the server allows.
    pub fn narrowed_by(&self, repo: &RepoConfig) -> ServerConfig {
        let mut out = self.clone();
        if let Some(commands) = &repo.enabled_commands {
            out.github
                .bot
                .enabled_commands
                .retain(|c| commands.iter().any(|r| r == c));
        }
        if let Some(test_command) = &repo.test_command {
            out.github.fix_tests.test_command = test_command.clone();
        }
        let labels = &repo.label_map;
        let map = &mut out.github.labels.label_map;
        for (target, source) in [
            (&mut map.needs_input, &labels.needs_input),
            (&mut map.in_progress, &labels.in_progress),
            (&mut map.done, &labels.done),
            (&mut map.failed, &labels.failed),
        ] {
            if let Some(name) = source {
                *target = name.clone();
            }
        }
        // Additive only: more paths left out, more instructions.
        let review = &mut out.github.review;
        for glob in &repo.review_ignore {
            if !review.ignore.contains(glob) {
                review.ignore.push(glob.clone());
            }
        }
        review
            .repo_path_instructions
            .extend(repo.review_path_instructions.clone());
        out
    }
}

fn parse_document(text: &str) -> Result<Value, ConfigError> {
    serde_yaml::from_str::<Value>(text)
        .map_err(|e| ConfigError::invalid("", format!("invalid YAML: {e}")))
}

const GITHUB_KEYS: &[&str] = &[
    "webhook",
    "bot",
    "checks",
    "labels",
    "review",
    "fix_tests",
    "budget",
    "retention_days",
    "delivery_retries",
];

fn parse_github(node: Node<'_>) -> Result<GitHubConfig, ConfigError> {
    let map = node.map(GITHUB_KEYS)?;
    let mut c = GitHubConfig::default();
    if let Some(n) = map.get("webhook") {
        c.webhook = parse_webhook(n)?;
    }
    if let Some(n) = map.get("bot") {
        c.bot = parse_bot(n)?;
    }
    if let Some(n) = map.get("checks") {
        c.checks = parse_checks(n)?;
    }
    if let Some(n) = map.get("labels") {
        c.labels = parse_labels(n)?;
    }
    if let Some(n) = map.get("review") {
        c.review = parse_review(n)?;
    }
    if let Some(n) = map.get("fix_tests") {
        c.fix_tests = parse_fix_tests(n)?;
    }
    if let Some(n) = map.get("budget") {
        let budget = n.map(&["daily_tokens"])?;
        if let Some(n) = budget.get("daily_tokens") {
            c.budget.daily_tokens = n.u64_in(0, 10_000_000_000)?;
        }
    }
    if let Some(n) = map.get("retention_days") {
        c.retention_days = n.u64_in(1, 3650)? as u32;
    }
    if let Some(n) = map.get("delivery_retries") {
        let retries = n.map(&["max_attempts", "backoff_ms"])?;
        if let Some(n) = retries.get("max_attempts") {
            c.delivery_retries.max_attempts = n.u64_in(1, 20)? as u32;
        }
        if let Some(n) = retries.get("backoff_ms") {
            c.delivery_retries.backoff_ms = n.u64_in(10, 3_600_000)?;
        }
    }
    Ok(c)
}

fn env_name(node: Node<'_>) -> Result<String, ConfigError> {
    let name = node.non_empty_string()?;
    if name.contains(['=', '\0']) || name.chars().any(char::is_whitespace) {
        return Err(node.error(format!("{name:?} is not an environment variable name")));
    }
    Ok(name)
}

fn parse_webhook(node: Node<'_>) -> Result<WebhookConfig, ConfigError> {
    let map = node.map(&[
        "secret_env",
        "previous_secret_env",
        "allowed_repos",
        "allowed_orgs",
    ])?;
    let mut c = WebhookConfig::default();
    if let Some(n) = map.get("secret_env") {
        c.secret_env = env_name(n)?;
    }
    if let Some(n) = map.get("previous_secret_env") {
        c.previous_secret_env = env_name(n)?;
    }
    if let Some(n) = map.get("allowed_repos") {
        c.allowed_repos = n.string_list(|path, repo| match repo.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(repo)
            }
            _ => Err(ConfigError::invalid(
                path,
                format!("{repo:?} is not of the form owner/name"),
            )),
        })?;
    }
    if let Some(n) = map.get("allowed_orgs") {
        c.allowed_orgs = n.string_list(|path, org| {
            if org.contains('/') {
                Err(ConfigError::invalid(
                    path,
                    format!("{org:?} is not an owner name (no `/`)"),
                ))
            } else {
                Ok(org)
            }
        })?;
    }
    Ok(c)
}

const BOT_KEYS: &[&str] = &[
    "mention_trigger",
    "enabled_commands",
    "require_label",
    "opt_in_label",
    "allowed_users",
    "allowed_teams",
    "read_only_associations",
    "commands_per_hour_per_repo",
    "commands_per_hour_per_user",
    "allow_fork_prs",
    "auto_review_on",
    "auto_review_label",
    "approver_must_differ",
];

/// `pull_request` actions an automatic review may follow.
pub const AUTO_REVIEW_ACTIONS: &[&str] = &[
    "opened",
    "synchronize",
    "reopened",
    "labeled",
    "ready_for_review",
];

/// A list of command names, validated, lower-cased and without duplicates.
fn command_names(node: Node<'_>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for name in node.string_list(|path, name| {
        let lower = name.to_ascii_lowercase();
        if COMMAND_NAMES.contains(&lower.as_str()) {
            Ok(lower)
        } else {
            Err(ConfigError::invalid(
                path,
                format!(
                    "unknown command {name:?} (expected one of: {})",
                    COMMAND_NAMES.join(", ")
                ),
            ))
        }
    })? {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn per_hour(node: Node<'_>) -> Result<u32, ConfigError> {
    let n = node.u64()?;
    if n == 0 {
        return Err(node.error(
            "must be at least 1 (to turn commands off, use github.bot.enabled_commands: [])",
        ));
    }
    Ok(n.min(u64::from(u32::MAX)) as u32)
}

fn parse_bot(node: Node<'_>) -> Result<BotConfig, ConfigError> {
    let map = node.map(BOT_KEYS)?;
    let mut c = BotConfig::default();
    if let Some(n) = map.get("mention_trigger") {
        let trigger = n.string()?;
        if trigger.is_empty() {
            return Err(n.error("must not be empty"));
        }
        if !trigger.starts_with('@') || trigger.len() < 2 {
            return Err(n.error(format!(
                "must start with `@` and name the bot, found {trigger:?}"
            )));
        }
        if trigger.chars().any(char::is_whitespace) {
            return Err(n.error(format!("must be one word, found {trigger:?}")));
        }
        c.mention_trigger = trigger;
    }
    if let Some(n) = map.get("enabled_commands") {
        c.enabled_commands = command_names(n)?;
    }
    if let Some(n) = map.get("require_label") {
        c.require_label = n.bool()?;
    }
    if let Some(n) = map.get("opt_in_label") {
        c.opt_in_label = n.non_empty_string()?;
    }
    if let Some(n) = map.get("allowed_users") {
        c.allowed_users = n.string_list(|_, s| Ok(s.trim_start_matches('@').to_string()))?;
    }
    if let Some(n) = map.get("allowed_teams") {
        c.allowed_teams = n.string_list(|_, s| Ok(s.trim_start_matches('@').to_string()))?;
    }
    if let Some(n) = map.get("read_only_associations") {
        c.read_only_associations = n.string_list(|path, s| {
            let upper = s.to_ascii_uppercase();
            if ASSOCIATIONS.contains(&upper.as_str()) {
                Ok(upper)
            } else {
                Err(ConfigError::invalid(
                    path,
                    format!(
                        "unknown author association {s:?} (expected one of: {})",
                        ASSOCIATIONS.join(", ")
                    ),
                ))
            }
        })?;
    }
    if let Some(n) = map.get("commands_per_hour_per_repo") {
        c.commands_per_hour_per_repo = per_hour(n)?;
    }
    if let Some(n) = map.get("commands_per_hour_per_user") {
        c.commands_per_hour_per_user = per_hour(n)?;
    }
    if let Some(n) = map.get("allow_fork_prs") {
        c.allow_fork_prs = n.bool()?;
    }
    if let Some(n) = map.get("approver_must_differ") {
        c.approver_must_differ = n.bool()?;
    }
    if let Some(n) = map.get("auto_review_on") {
        c.auto_review_on = n.string_list(|path, action| {
            if AUTO_REVIEW_ACTIONS.contains(&action.as_str()) {
                Ok(action)
            } else {
                Err(ConfigError::invalid(
                    path,
                    format!(
                        "unknown pull_request action {action:?} (expected one of: {})",
                        AUTO_REVIEW_ACTIONS.join(", ")
                    ),
                ))
            }
        })?;
    }
    if let Some(n) = map.get("auto_review_label") {
        c.auto_review_label = Some(n.non_empty_string()?);
    }
    Ok(c)
}

fn parse_checks(node: Node<'_>) -> Result<ChecksConfig, ConfigError> {
    let map = node.map(&["enabled", "check_names"])?;
    let mut c = ChecksConfig::default();
    if let Some(n) = map.get("enabled") {
        c.enabled = n.bool()?;
    }
    if let Some(n) = map.get("check_names") {
        let names = n.map(&["review", "tests", "plan"])?;
        let target = &mut c.check_names;
        for (key, field) in [
            ("review", &mut target.review),
            ("tests", &mut target.tests),
            ("plan", &mut target.plan),
        ] {
            if let Some(n) = names.get(key) {
                *field = n.non_empty_string()?;
            }
        }
    }
    Ok(c)
}

const LABEL_KEYS: &[&str] = &["needs_input", "in_progress", "done", "failed"];

/// The labels a `label_map` names (each optional).
fn parse_label_map(map: &yaml::Map<'_>) -> Result<RepoLabelMap, ConfigError> {
    let get = |key: &str| map.get(key).map(|n| n.non_empty_string()).transpose();
    Ok(RepoLabelMap {
        needs_input: get("needs_input")?,
        in_progress: get("in_progress")?,
        done: get("done")?,
        failed: get("failed")?,
    })
}

fn parse_labels(node: Node<'_>) -> Result<LabelsConfig, ConfigError> {
    let map = node.map(&["enabled", "label_map"])?;
    let mut c = LabelsConfig::default();
    if let Some(n) = map.get("enabled") {
        c.enabled = n.bool()?;
    }
    if let Some(n) = map.get("label_map") {
        let labels = parse_label_map(&n.map(LABEL_KEYS)?)?;
        let narrowed = ServerConfig::default().narrowed_by(&RepoConfig {
            label_map: labels,
            ..RepoConfig::default()
        });
        c.label_map = narrowed.github.labels.label_map;
    }
    Ok(c)
}

fn parse_review(node: Node<'_>) -> Result<ReviewConfig, ConfigError> {
    let map = node.map(&[
        "max_files",
        "max_diff_lines",
        "max_prompt_tokens",
        "max_iterations",
        "request_changes_on",
        "allow_request_changes",
        "allow_approve",
        "ignore",
        "path_instructions",
    ])?;
    let mut c = ReviewConfig::default();
    if let Some(n) = map.get("max_files") {
        c.max_files = n.u64_in(1, 100_000)? as usize;
    }
    if let Some(n) = map.get("max_diff_lines") {
        c.max_diff_lines = n.u64_in(1, 10_000_000)? as usize;
    }
    if let Some(n) = map.get("max_prompt_tokens") {
        c.max_prompt_tokens = n.u64_in(1000, 1_000_000)? as usize;
    }
    if let Some(n) = map.get("max_iterations") {
        c.max_iterations = n.u64_in(1, 50)? as u32;
    }
    if let Some(n) = map.get("allow_request_changes") {
        if n.bool()? {
            c.request_changes_on = vec![Severity::High];
        }
    }
    if let Some(n) = map.get("request_changes_on") {
        c.request_changes_on = severities(n)?;
    }
    if let Some(n) = map.get("allow_approve") {
        if n.bool()? {
            return Err(n.error("a review never approves: a model's word is not an approval"));
        }
    }
    if let Some(n) = map.get("ignore") {
        c.ignore = globs(n)?;
    }
    if let Some(n) = map.get("path_instructions") {
        c.path_instructions = path_instructions(n)?;
    }
    Ok(c)
}

/// A list of severity names.
fn severities(node: Node<'_>) -> Result<Vec<Severity>, ConfigError> {
    let names = node.string_list(|path, name| match Severity::parse(&name) {
        Some(_) => Ok(name),
        None => Err(ConfigError::invalid(
            path,
            format!("{name:?} is not a severity (high, medium, low, nit)"),
        )),
    })?;
    let mut out: Vec<Severity> = names.iter().filter_map(|n| Severity::parse(n)).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A list of valid globs.
fn globs(node: Node<'_>) -> Result<Vec<String>, ConfigError> {
    node.string_list(|path, glob| match globset::Glob::new(&glob) {
        Ok(_) => Ok(glob),
        Err(e) => Err(ConfigError::invalid(
            path,
            format!("{glob:?} is not a glob: {e}"),
        )),
    })
}

/// A mapping of glob → instructions.
fn path_instructions(node: Node<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (glob, path, value) in node.entries()? {
        if let Err(e) = globset::Glob::new(&glob) {
            return Err(ConfigError::invalid(
                path,
                format!("{glob:?} is not a glob: {e}"),
            ));
        }
        let text = Node::new(value, &path).non_empty_string()?;
        out.insert(glob, text);
    }
    Ok(out)
}

fn parse_fix_tests(node: Node<'_>) -> Result<FixTestsConfig, ConfigError> {
    let map = node.map(&[
        "test_command",
        "max_rounds",
        "timeout_secs",
        "commit_via_api",
        "max_iterations",
        "time_limit_secs",
        "token_budget",
        "on_failure",
        "max_changed_files",
        "max_changed_lines",
    ])?;
    let mut c = FixTestsConfig::default();
    if let Some(n) = map.get("test_command") {
        c.test_command = n.non_empty_string()?;
    }
    if let Some(n) = map.get("max_rounds") {
        c.max_rounds = n.u64_in(1, 100)? as u32;
    }
    if let Some(n) = map.get("timeout_secs") {
        c.timeout_secs = n.u64_in(1, MAX_TIMEOUT_SECS)?;
    }
    if let Some(n) = map.get("commit_via_api") {
        c.commit_via_api = n.bool()?;
    }
    if let Some(n) = map.get("max_iterations") {
        c.max_iterations = n.u64_in(1, 50)? as u32;
    }
    if let Some(n) = map.get("time_limit_secs") {
        c.time_limit_secs = n.u64_in(1, MAX_TIMEOUT_SECS)?;
    }
    if let Some(n) = map.get("token_budget") {
        c.token_budget = n.u64_in(0, 100_000_000)?;
    }
    if let Some(n) = map.get("on_failure") {
        c.on_failure = match n.non_empty_string()?.as_str() {
            "fail" => OnFailure::Fail,
            "draft" => OnFailure::Draft,
            other => {
                return Err(ConfigError::invalid(
                    "github.fix_tests.on_failure",
                    format!("{other:?} is not one of fail, draft"),
                ))
            }
        };
    }
    if let Some(n) = map.get("max_changed_files") {
        c.max_changed_files = n.u64_in(1, 10_000)? as usize;
    }
    if let Some(n) = map.get("max_changed_lines") {
        c.max_changed_lines = n.u64_in(1, 1_000_000)? as usize;
    }
    Ok(c)
}

fn parse_hooks(node: Node<'_>) -> Result<HooksConfig, ConfigError> {
    let map = node.map(&["pre", "post"])?;
    let mut c = HooksConfig::default();
    if let Some(n) = map.get("pre") {
        c.pre = parse_hook_events(n)?;
    }
    if let Some(n) = map.get("post") {
        c.post = parse_hook_events(n)?;
    }
    Ok(c)
}

fn parse_hook_events(node: Node<'_>) -> Result<BTreeMap<HookEvent, Vec<HookCommand>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, path, value) in node.entries()? {
        let Some(event) = HookEvent::from_name(&name) else {
            let names: Vec<_> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
            return Err(ConfigError::invalid(
                path,
                format!("unknown hook event (expected one of: {})", names.join(", ")),
            ));
        };
        let mut commands = Vec::new();
        if !value.is_null() {
            for (item_path, item) in Node::new(value, &path).items()? {
                commands.push(parse_hook_command(Node::new(item, &item_path))?);
            }
        }
        out.insert(event, commands);
    }
    Ok(out)
}

fn parse_hook_command(node: Node<'_>) -> Result<HookCommand, ConfigError> {
    let map = node.map(&["argv", "env", "timeout_secs"])?;
    let Some(argv_node) = map.get("argv") else {
        return Err(ConfigError::invalid(
            yaml::join(node.path, "argv"),
            "is required (the program and its arguments)",
        ));
    };
    let mut argv = Vec::new();
    for (path, item) in argv_node.items()? {
        argv.push(Node::new(item, &path).string()?);
    }
    if argv.is_empty() {
        return Err(argv_node.error("must not be empty"));
    }
    if argv[0].trim().is_empty() {
        return Err(ConfigError::invalid(
            yaml::index(argv_node.path, 0),
            "the program must not be empty",
        ));
    }
    let mut env = BTreeMap::new();
    if let Some(env_node) = map.get("env") {
        for (key, path, value) in env_node.entries()? {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(ConfigError::invalid(
                    path,
                    "is not an environment variable name",
                ));
            }
            let value = if value.is_null() {
                String::new()
            } else {
                Node::new(value, &path).any_scalar()?
            };
            env.insert(key, value);
        }
    }
    let mut timeout_secs = 30;
    if let Some(n) = map.get("timeout_secs") {
        timeout_secs = n.u64_in(1, MAX_TIMEOUT_SECS)?;
    }
    Ok(HookCommand {
        argv,
        env,
        timeout_secs,
    })
}

/// A repository's own `.penguin/config.yml` (read from its default branch):
/// it may only narrow the server's configuration, so only
/// `github.bot.enabled_commands`, `github.fix_tests.test_command` and
/// `github.labels.label_map` are accepted; any other key, at any level, is an
/// error naming it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepoConfig {
    /// `github.bot.enabled_commands`: intersected with the server's.
    pub enabled_commands: Option<Vec<String>>,
    /// `github.fix_tests.test_command`: replaces the server's.
    pub test_command: Option<String>,
    /// `github.labels.label_map`: the labels named replace the server's.
    pub label_map: RepoLabelMap,
    /// `github.review.ignore`: added to the server's.
    pub review_ignore: Vec<String>,
    /// `github.review.path_instructions`: added beside the server's (and
    /// shown to the model as the repository's text, fenced).
    pub review_path_instructions: BTreeMap<String, String>,
}

/// The labels a repository renames.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepoLabelMap {
    /// `needs_input`.
    pub needs_input: Option<String>,
    /// `in_progress`.
    pub in_progress: Option<String>,
    /// `done`.
    pub done: Option<String>,
    /// `failed`.
    pub failed: Option<String>,
}

const REPO_ALLOWED: &str = "a repository's configuration may only set \
    github.bot.enabled_commands, github.fix_tests.test_command, github.labels.label_map, \
    github.review.ignore and github.review.path_instructions";

impl RepoConfig {
    /// Parses a repository's `.penguin/config.yml` (an empty document narrows nothing).
    pub fn from_yaml(text: &str) -> Result<RepoConfig, ConfigError> {
        let document = parse_document(text)?;
        let mut config = RepoConfig::default();
        if document.is_null() {
            return Ok(config);
        }
        let reject = |_: &str| format!("not allowed: {REPO_ALLOWED}");
        let top = Node::new(&document, "").map_with(&["github"], reject)?;
        let Some(github) = top.get("github") else {
            return Ok(config);
        };
        let github = github.map_with(&["bot", "fix_tests", "labels", "review"], reject)?;
        if let Some(review) = github.get("review") {
            let review = review.map_with(&["ignore", "path_instructions"], reject)?;
            if let Some(n) = review.get("ignore") {
                config.review_ignore = globs(n)?;
            }
            if let Some(n) = review.get("path_instructions") {
                config.review_path_instructions = path_instructions(n)?;
            }
        }
        if let Some(bot) = github.get("bot") {
            let bot = bot.map_with(&["enabled_commands"], reject)?;
            if let Some(n) = bot.get("enabled_commands") {
                config.enabled_commands = Some(command_names(n)?);
            }
        }
        if let Some(fix_tests) = github.get("fix_tests") {
            let fix_tests = fix_tests.map_with(&["test_command"], reject)?;
            if let Some(n) = fix_tests.get("test_command") {
                config.test_command = Some(n.non_empty_string()?);
            }
        }
        if let Some(labels) = github.get("labels") {
            let labels = labels.map_with(&["label_map"], reject)?;
            if let Some(n) = labels.get("label_map") {
                config.label_map = parse_label_map(&n.map(LABEL_KEYS)?)?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
