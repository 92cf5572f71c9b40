use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FULL: &str = r#"
security:
  mode: workspace
  denied_paths: ["*.key"]
telemetry: { anything: goes }
github:
  webhook:
    secret_env: HOOK_SECRET
    previous_secret_env: HOOK_SECRET_OLD
    allowed_repos: ["octo-org/hello-world"]
    allowed_orgs: ["octo-org"]
  bot:
    mention_trigger: "@Pingu"
    enabled_commands: [review, Plan, fix_tests, review]
    require_label: true
    opt_in_label: "bot:ok"
    allowed_users: ["@alice", bob]
    allowed_teams: ["octo-org/core"]
    read_only_associations: [owner, MEMBER, Collaborator]
    commands_per_hour_per_repo: 10
    commands_per_hour_per_user: 2
    allow_fork_prs: true
  checks:
    enabled: false
    check_names: { review: "ci/review", tests: "ci/tests", plan: "ci/plan" }
  labels:
    enabled: false
    label_map: { needs_input: "needs", done: "done!" }
  review:
    max_files: 5
    max_diff_lines: 100
    max_prompt_tokens: 5000
    max_iterations: 3
    request_changes_on: [nit, HIGH, high]
    allow_approve: false
    ignore: ["**/*.lock", "gen/**"]
    path_instructions: { "src/db/**": "Check queries." }
  budget: { daily_tokens: 100000 }
  fix_tests: { test_command: "make test", max_rounds: 2, timeout_secs: 120, commit_via_api: true }
  retention_days: 30
hooks:
  pre:
    branch.create:
      - argv: ["/usr/bin/true"]
        env: { K: V, N: 1, B: true }
        timeout_secs: 5
    push: []
  post:
    pr.create:
      - { argv: ["/bin/echo", "", "done"] }
"#;

fn err(text: &str) -> (String, String) {
    match ServerConfig::from_yaml(text) {
        Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
        other => panic!("expected an error for {text:?}, got {other:?}"),
    }
}

fn repo_err(text: &str) -> (String, String) {
    match RepoConfig::from_yaml(text) {
        Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
        other => panic!("expected an error for {text:?}, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = ServerConfig::default();
    let g = &c.github;
    assert_eq!(g.webhook.secret_env, "GITHUB_WEBHOOK_SECRET");
    assert_eq!(
        g.webhook.previous_secret_env,
        "GITHUB_WEBHOOK_SECRET_PREVIOUS"
    );
    assert!(g.webhook.allowed_repos.is_empty() && g.webhook.allowed_orgs.is_empty());
    assert_eq!(g.bot.mention_trigger, "@Penguin");
    assert_eq!(
        g.bot.enabled_commands,
        [
            "review",
            "plan",
            "fix_tests",
            "fix",
            "summarize",
            "approve",
            "help",
            "question"
        ]
    );
    assert!(!g.bot.require_label);
    assert_eq!(g.bot.opt_in_label, "penguin:auto");
    assert!(g.bot.allowed_users.is_empty() && g.bot.allowed_teams.is_empty());
    assert!(g.bot.read_only_associations.is_empty());
    assert_eq!(
        (
            g.bot.commands_per_hour_per_repo,
            g.bot.commands_per_hour_per_user
        ),
        (60, 20)
    );
    assert!(!g.bot.allow_fork_prs);
    assert!(g.checks.enabled);
    assert_eq!(g.checks.check_names.review, "penguin/review");
    assert_eq!(g.checks.check_names.tests, "penguin/tests");
    assert_eq!(g.checks.check_names.plan, "penguin/plan");
    assert!(g.labels.enabled);
    assert_eq!(g.labels.label_map.needs_input, "penguin:needs-input");
    assert_eq!(g.labels.label_map.in_progress, "penguin:in-progress");
    assert_eq!(g.labels.label_map.done, "penguin:done");
    assert_eq!(g.labels.label_map.failed, "penguin:failed");
    assert_eq!((g.review.max_files, g.review.max_diff_lines), (50, 2000));
    assert!(g.review.request_changes_on.is_empty() && g.review.ignore.is_empty());
    assert_eq!(
        (g.review.max_prompt_tokens, g.review.max_iterations),
        (24_000, 8)
    );
    assert_eq!(g.budget.daily_tokens, 0);
    assert_eq!(g.fix_tests.test_command, "cargo test");
    assert_eq!((g.fix_tests.max_rounds, g.fix_tests.timeout_secs), (3, 600));
    assert!(!g.fix_tests.commit_via_api);
    assert_eq!(g.retention_days, 7);
    assert!(c.hooks.pre.is_empty() && c.hooks.post.is_empty());

    for text in [
        "",
        "# nothing\n",
        "github:\n",
        "github: {}\nhooks: {}",
        "github:\n  bot:\n  review: ~\n",
        "security: {mode: full}",
    ] {
        assert_eq!(ServerConfig::from_yaml(text).unwrap(), c, "{text:?}");
    }
}

#[test]
fn full_file() {
    let c = ServerConfig::from_yaml(FULL).unwrap();
    let g = &c.github;
    assert_eq!(g.webhook.secret_env, "HOOK_SECRET");
    assert_eq!(g.webhook.previous_secret_env, "HOOK_SECRET_OLD");
    assert_eq!(g.webhook.allowed_repos, ["octo-org/hello-world"]);
    assert_eq!(g.webhook.allowed_orgs, ["octo-org"]);
    assert_eq!(g.bot.mention_trigger, "@Pingu");
    assert_eq!(g.bot.enabled_commands, ["review", "plan", "fix_tests"]);
    assert!(g.bot.require_label);
    assert_eq!(g.bot.opt_in_label, "bot:ok");
    assert_eq!(g.bot.allowed_users, ["alice", "bob"]);
    assert_eq!(g.bot.allowed_teams, ["octo-org/core"]);
    assert_eq!(
        g.bot.read_only_associations,
        ["OWNER", "MEMBER", "COLLABORATOR"]
    );
    assert_eq!(
        (
            g.bot.commands_per_hour_per_repo,
            g.bot.commands_per_hour_per_user
        ),
        (10, 2)
    );
    assert!(g.bot.allow_fork_prs);
    assert!(!g.checks.enabled);
    assert_eq!(g.checks.check_names.review, "ci/review");
    assert_eq!(g.checks.check_names.tests, "ci/tests");
    assert_eq!(g.checks.check_names.plan, "ci/plan");
    assert!(!g.labels.enabled);
    assert_eq!(g.labels.label_map.needs_input, "needs");
    assert_eq!(g.labels.label_map.in_progress, "penguin:in-progress");
    assert_eq!(g.labels.label_map.done, "done!");
    assert_eq!(g.review.max_files, 5);
    assert_eq!(g.review.max_diff_lines, 100);
    assert_eq!(
        g.review.request_changes_on,
        [super::Severity::High, super::Severity::Nit]
    );
    assert_eq!(
        (g.review.max_prompt_tokens, g.review.max_iterations),
        (5000, 3)
    );
    assert_eq!(g.review.ignore, ["**/*.lock", "gen/**"]);
    assert_eq!(g.review.path_instructions["src/db/**"], "Check queries.");
    assert_eq!(g.budget.daily_tokens, 100_000);
    assert_eq!(g.fix_tests.test_command, "make test");
    assert_eq!((g.fix_tests.max_rounds, g.fix_tests.timeout_secs), (2, 120));
    assert!(g.fix_tests.commit_via_api);
    assert_eq!(g.retention_days, 30);

    let pre = c.hooks.pre(HookEvent::BranchCreate);
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].argv, ["/usr/bin/true"]);
    assert_eq!(pre[0].timeout_secs, 5);
    let env: Vec<_> = pre[0]
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("B", "true"), ("K", "V"), ("N", "1")]);
    assert!(c.hooks.pre(HookEvent::Push).is_empty());
    assert!(c.hooks.pre(HookEvent::ReviewRun).is_empty());
    let post = c.hooks.post(HookEvent::PrCreate);
    assert_eq!(post[0].argv, ["/bin/echo", "", "done"]);
    assert_eq!(post[0].timeout_secs, 30);
    assert!(post[0].env.is_empty());
    assert!(c.hooks.post(HookEvent::BranchCreate).is_empty());
}

#[test]
fn all_hook_events_parse() {
    let mut text = String::from("hooks:\n  pre:\n");
    for event in HookEvent::ALL {
        text.push_str(&format!("    {event}: [{{argv: [x]}}]\n"));
        assert_eq!(HookEvent::from_name(event.as_str()), Some(event));
    }
    let c = ServerConfig::from_yaml(&text).unwrap();
    for event in HookEvent::ALL {
        assert_eq!(c.hooks.pre(event).len(), 1, "{event}");
    }
    assert_eq!(HookEvent::from_name("branch.delete"), None);
}

#[test]
fn unknown_keys_name_the_full_path() {
    let cases = [
        (
            "github:\n  bot:\n    mention_triger: '@x'",
            "github.bot.mention_triger",
        ),
        ("github:\n  webhok: {}", "github.webhok"),
        ("github:\n  webhook: { secret: x }", "github.webhook.secret"),
        (
            "github:\n  checks: { check_names: { lint: x } }",
            "github.checks.check_names.lint",
        ),
        (
            "github:\n  labels: { label_map: { todo: x } }",
            "github.labels.label_map.todo",
        ),
        (
            "github:\n  review: { max_lines: 1 }",
            "github.review.max_lines",
        ),
        (
            "github:\n  fix_tests: { command: x }",
            "github.fix_tests.command",
        ),
        ("hooks:\n  during: {}", "hooks.during"),
        (
            "hooks:\n  pre:\n    branch.creat: []",
            "hooks.pre.\"branch.creat\"",
        ),
        (
            "hooks:\n  post:\n    push: [{argv: [x], timeout: 3}]",
            "hooks.post.push[0].timeout",
        ),
    ];
    for (text, key) in cases {
        let (k, reason) = err(text);
        assert_eq!(k, key, "{text:?}");
        assert!(reason.contains("unknown"), "{reason}");
    }
    let error = ServerConfig::from_yaml("github:\n  bot:\n    mention_triger: '@x'").unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("github.bot.mention_triger: unknown key"),
        "{shown}"
    );
    assert!(shown.contains("mention_trigger"), "{shown}");
    assert_eq!(error.key(), Some("github.bot.mention_triger"));
}

#[test]
fn invalid_values_name_the_key_and_reason() {
    let cases = [
        (
            "github:\n  bot: { mention_trigger: '' }",
            "github.bot.mention_trigger",
            "empty",
        ),
        (
            "github:\n  bot: { mention_trigger: Penguin }",
            "github.bot.mention_trigger",
            "`@`",
        ),
        (
            "github:\n  bot: { mention_trigger: '@' }",
            "github.bot.mention_trigger",
            "`@`",
        ),
        (
            "github:\n  bot: { mention_trigger: '@a b' }",
            "github.bot.mention_trigger",
            "one word",
        ),
        (
            "github:\n  bot: { enabled_commands: [review, deploy] }",
            "github.bot.enabled_commands[1]",
            "unknown command \"deploy\"",
        ),
        (
            "github:\n  bot: { enabled_commands: review }",
            "github.bot.enabled_commands",
            "expected a list, found a string",
        ),
        (
            "github:\n  review: { allow_approve: true }",
            "github.review.allow_approve",
            "never approves",
        ),
        (
            "github:\n  review: { request_changes_on: [high, urgent] }",
            "github.review.request_changes_on[1]",
            "not a severity",
        ),
        (
            "github:\n  review: { ignore: ['src/[a'] }",
            "github.review.ignore[0]",
            "not a glob",
        ),
        (
            "github:\n  review: { path_instructions: { 'src/**': '' } }",
            "github.review.path_instructions.\"src/**\"",
            "empty",
        ),
        (
            "github:\n  review: { max_prompt_tokens: 10 }",
            "github.review.max_prompt_tokens",
            "between 1000",
        ),
        (
            "github:\n  budget: { daily: 10 }",
            "github.budget.daily",
            "unknown key",
        ),
        (
            "github:\n  bot: { read_only_associations: [OWNERS] }",
            "github.bot.read_only_associations[0]",
            "unknown author association",
        ),
        (
            "github:\n  bot: { require_label: yes }",
            "github.bot.require_label",
            "expected true or false",
        ),
        (
            "github:\n  bot: { opt_in_label: ' ' }",
            "github.bot.opt_in_label",
            "empty",
        ),
        (
            "github:\n  bot: { allowed_users: [''] }",
            "github.bot.allowed_users[0]",
            "empty",
        ),
        (
            "github:\n  bot: { commands_per_hour_per_repo: 0 }",
            "github.bot.commands_per_hour_per_repo",
            "at least 1",
        ),
        (
            "github:\n  bot: { commands_per_hour_per_user: -1 }",
            "github.bot.commands_per_hour_per_user",
            "negative",
        ),
        (
            "github:\n  bot: { commands_per_hour_per_user: 1.5 }",
            "github.bot.commands_per_hour_per_user",
            "whole number",
        ),
        (
            "github:\n  webhook: { allowed_repos: [hello-world] }",
            "github.webhook.allowed_repos[0]",
            "owner/name",
        ),
        (
            "github:\n  webhook: { allowed_orgs: [a/b] }",
            "github.webhook.allowed_orgs[0]",
            "owner",
        ),
        (
            "github:\n  webhook: { secret_env: 'A B' }",
            "github.webhook.secret_env",
            "environment variable",
        ),
        (
            "github:\n  checks: { check_names: { review: '' } }",
            "github.checks.check_names.review",
            "empty",
        ),
        (
            "github:\n  labels: { label_map: { failed: '' } }",
            "github.labels.label_map.failed",
            "empty",
        ),
        (
            "github:\n  labels: { label_map: { done: [x] } }",
            "github.labels.label_map.done",
            "expected a string, found a list",
        ),
        (
            "github:\n  review: { max_files: 0 }",
            "github.review.max_files",
            "between 1 and",
        ),
        (
            "github:\n  fix_tests: { timeout_secs: 0 }",
            "github.fix_tests.timeout_secs",
            "between 1 and 3600",
        ),
        (
            "github:\n  fix_tests: { timeout_secs: 3601 }",
            "github.fix_tests.timeout_secs",
            "between 1 and 3600",
        ),
        (
            "github:\n  fix_tests: { test_command: '' }",
            "github.fix_tests.test_command",
            "empty",
        ),
        (
            "github:\n  fix_tests: { max_rounds: 0 }",
            "github.fix_tests.max_rounds",
            "between",
        ),
        (
            "github:\n  retention_days: 0",
            "github.retention_days",
            "between",
        ),
        ("github: [1]", "github", "expected a mapping, found a list"),
        (
            "hooks:\n  pre:\n    push: [{argv: []}]",
            "hooks.pre.push[0].argv",
            "empty",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: ['']}]",
            "hooks.pre.push[0].argv[0]",
            "program",
        ),
        (
            "hooks:\n  pre:\n    push: [{env: {A: b}}]",
            "hooks.pre.push[0].argv",
            "required",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: x}]",
            "hooks.pre.push[0].argv",
            "expected a list",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: [x], timeout_secs: 0}]",
            "hooks.pre.push[0].timeout_secs",
            "between 1 and 3600",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: [x], timeout_secs: 3601}]",
            "hooks.pre.push[0].timeout_secs",
            "between 1 and 3600",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: [x], env: {'A=B': c}}]",
            "hooks.pre.push[0].env.\"A=B\"",
            "environment variable",
        ),
        (
            "hooks:\n  pre:\n    push: [{argv: [x], env: {A: [c]}}]",
            "hooks.pre.push[0].env.A",
            "expected a string",
        ),
        (
            "hooks:\n  post:\n    push: {argv: [x]}",
            "hooks.post.push",
            "expected a list",
        ),
        ("- just\n- a list", "", "must be a mapping"),
        ("github: {bot: {", "", "invalid YAML"),
    ];
    for (text, key, reason) in cases {
        let (k, r) = err(text);
        assert_eq!(k, key, "{text:?}");
        assert!(
            r.contains(reason),
            "{text:?}: {r:?} should contain {reason:?}"
        );
    }
    // Boundaries are accepted.
    let ok = "github:\n  fix_tests: { timeout_secs: 3600 }\nhooks:\n  pre:\n    push: [{argv: [x], timeout_secs: 1}]";
    assert!(ServerConfig::from_yaml(ok).is_ok());
}

#[test]
fn load_missing_file_gives_defaults_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    assert_eq!(ServerConfig::load(&path).unwrap(), ServerConfig::default());
    std::fs::write(&path, FULL).unwrap();
    assert_eq!(
        ServerConfig::load(&path)
            .unwrap()
            .github
            .bot
            .mention_trigger,
        "@Pingu"
    );
    std::fs::write(&path, "github:\n  bot: { allow_forks: true }\n").unwrap();
    let error = ServerConfig::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("config.yml: github.bot.allow_forks: unknown key"),
        "{error}"
    );
    // A directory where the file should be is an I/O error.
    let error = ServerConfig::load(dir.path()).unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }), "{error:?}");
    assert_eq!(error.key(), None);
}

#[test]
fn secrets_current_then_previous() {
    let w = WebhookConfig::default();
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        w.secrets(env(&[
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old"),
            ("GITHUB_WEBHOOK_SECRET", "new")
        ])),
        [b"new".to_vec(), b"old".to_vec()]
    );
    assert_eq!(
        w.secrets(env(&[("GITHUB_WEBHOOK_SECRET", "new")])),
        [b"new".to_vec()]
    );
    assert_eq!(
        w.secrets(env(&[("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old")])),
        [b"old".to_vec()]
    );
    assert_eq!(
        w.secrets(env(&[
            ("GITHUB_WEBHOOK_SECRET", ""),
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "")
        ])),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        w.secrets(env(&[
            ("GITHUB_WEBHOOK_SECRET", "same"),
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "same")
        ])),
        [b"same".to_vec()]
    );
    assert!(w.secrets(|_| None).is_empty());
    let custom = ServerConfig::from_yaml(FULL).unwrap().github.webhook;
    assert_eq!(
        custom.secrets(env(&[("HOOK_SECRET", "s"), ("GITHUB_WEBHOOK_SECRET", "x")])),
        [b"s".to_vec()]
    );
}

#[test]
fn repo_allowlists() {
    let open = WebhookConfig::default();
    assert!(open.repo_allowed("anyone/anything", None));
    assert!(open.repo_allowed("anyone/anything", Some("")));
    assert!(open.repo_allowed("octo-org/hello-world", Some("octo-org/hello-world")));
    assert!(open.repo_allowed("OCTO-ORG/Hello-World", Some("octo-org/hello-world")));
    assert!(!open.repo_allowed("octo-org/other", Some("octo-org/hello-world")));
    assert!(!open.repo_allowed("garbage", Some("octo-org/hello-world")));

    let repos = WebhookConfig {
        allowed_repos: vec!["octo-org/hello-world".into()],
        ..WebhookConfig::default()
    };
    assert!(repos.repo_allowed("octo-org/hello-world", None));
    assert!(repos.repo_allowed("Octo-Org/HELLO-WORLD", None));
    assert!(!repos.repo_allowed("octo-org/hello-world2", None));
    assert!(!repos.repo_allowed("octo-org", None));
    assert!(!repos.repo_allowed("", None));
    assert!(repos.repo_allowed("me/mine", Some("me/mine")));

    let orgs = WebhookConfig {
        allowed_orgs: vec!["Octo-Org".into()],
        ..WebhookConfig::default()
    };
    assert!(orgs.repo_allowed("octo-org/anything", None));
    assert!(!orgs.repo_allowed("octo-orgx/anything", None));
    assert!(!orgs.repo_allowed("other/octo-org", None));
    assert!(!orgs.repo_allowed("octo-org/", None));
    assert!(!orgs.repo_allowed("/octo-org", None));
    assert!(orgs.repo_allowed("me/mine", Some("me/mine")));
    assert!(!orgs.repo_allowed("me/other", Some("me/mine")));
}

#[test]
fn repo_config_may_only_narrow() {
    let repo =
        RepoConfig::from_yaml("github:\n  bot:\n    enabled_commands: [review, fix, deploy_not]\n");
    let (key, reason) = match repo {
        Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(key, "github.bot.enabled_commands[2]");
    assert!(reason.contains("unknown command"));

    let repo = RepoConfig::from_yaml(
        "github:\n  bot:\n    enabled_commands: [review, fix, help]\n  fix_tests:\n    test_command: npm test\n  labels:\n    label_map: { done: shipped }\n",
    )
    .unwrap();
    assert_eq!(
        repo.enabled_commands.as_deref(),
        Some(&["review".to_string(), "fix".into(), "help".into()][..])
    );
    assert_eq!(repo.test_command.as_deref(), Some("npm test"));
    assert_eq!(repo.label_map.done.as_deref(), Some("shipped"));
    assert_eq!(repo.label_map.failed, None);

    let server =
        ServerConfig::from_yaml("github:\n  bot:\n    enabled_commands: [help, review, plan]\n")
            .unwrap();
    let narrowed = server.narrowed_by(&repo);
    assert_eq!(narrowed.github.bot.enabled_commands, ["help", "review"]);
    assert_eq!(narrowed.github.fix_tests.test_command, "npm test");
    assert_eq!(narrowed.github.labels.label_map.done, "shipped");
    assert_eq!(narrowed.github.labels.label_map.failed, "penguin:failed");
    // Everything else is the server's.
    let mut expected = server.clone();
    expected.github.bot.enabled_commands = vec!["help".into(), "review".into()];
    expected.github.fix_tests.test_command = "npm test".into();
    expected.github.labels.label_map.done = "shipped".into();
    assert_eq!(narrowed, expected);

    // A command the server disabled cannot come back.
    let wide =
        RepoConfig::from_yaml("github:\n  bot:\n    enabled_commands: [fix, approve, plan]\n")
            .unwrap();
    assert_eq!(
        server.narrowed_by(&wide).github.bot.enabled_commands,
        ["plan"]
    );
    let none = RepoConfig::from_yaml("github:\n  bot:\n    enabled_commands: []\n").unwrap();
    assert!(server
        .narrowed_by(&none)
        .github
        .bot
        .enabled_commands
        .is_empty());
    // An empty repository configuration changes nothing.
    for text in [
        "",
        "github:\n",
        "github:\n  bot:\n",
        "github:\n  bot:\n    enabled_commands:\n",
    ] {
        let empty = RepoConfig::from_yaml(text).unwrap();
        assert_eq!(empty, RepoConfig::default(), "{text:?}");
        assert_eq!(server.narrowed_by(&empty), server);
    }
}

#[test]
fn repo_config_rejects_everything_else() {
    let cases = [
        ("security:\n  mode: full\n", "security"),
        ("hooks:\n  pre: {}\n", "hooks"),
        (
            "github:\n  webhook:\n    allowed_repos: [a/b]\n",
            "github.webhook",
        ),
        (
            "github:\n  bot:\n    allowed_users: [mallory]\n",
            "github.bot.allowed_users",
        ),
        (
            "github:\n  bot:\n    allow_fork_prs: true\n",
            "github.bot.allow_fork_prs",
        ),
        (
            "github:\n  bot:\n    mention_trigger: '@x'\n",
            "github.bot.mention_trigger",
        ),
        (
            "github:\n  fix_tests:\n    timeout_secs: 3600\n",
            "github.fix_tests.timeout_secs",
        ),
        (
            "github:\n  labels:\n    enabled: false\n",
            "github.labels.enabled",
        ),
        (
            "github:\n  review:\n    max_files: 3\n",
            "github.review.max_files",
        ),
        ("github:\n  retention_days: 1\n", "github.retention_days"),
    ];
    for (text, key) in cases {
        let (k, reason) = repo_err(text);
        assert_eq!(k, key, "{text:?}");
        assert!(reason.contains("may only set"), "{reason}");
    }
    let (k, _) = repo_err("github:\n  labels:\n    label_map: { todo: x }\n");
    assert_eq!(k, "github.labels.label_map.todo");
    let (k, _) = repo_err("github:\n  fix_tests:\n    test_command: ''\n");
    assert_eq!(k, "github.fix_tests.test_command");
    let (k, _) = repo_err("[1, 2]");
    assert_eq!(k, "");
}

// ---- the watcher ------------------------------------------------------

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn with_commands(commands: &str) -> String {
    format!("security: {{}}\ngithub:\n  bot:\n    enabled_commands: [{commands}]\n")
}

#[test]
fn watcher_reloads_and_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, with_commands("review")).unwrap();
    let watcher = ConfigWatcher::start(&path).unwrap();
    assert_eq!(watcher.path(), path);
    assert_eq!(watcher.current().github.bot.enabled_commands, ["review"]);
    assert_eq!(watcher.generation(), 0);

    std::fs::write(&path, with_commands("review, plan")).unwrap();
    wait_for("the reload", || {
        watcher.current().github.bot.enabled_commands == ["review", "plan"]
    });
    assert_eq!(watcher.generation(), 1);
    assert_eq!(watcher.last_error(), None);

    // A broken edit is rejected; the last good configuration stays.
    std::fs::write(&path, "github:\n  bot:\n    mention_triger: '@x'\n").unwrap();
    wait_for("the rejection", || watcher.last_error().is_some());
    let error = watcher.last_error().unwrap();
    assert!(error.contains("github.bot.mention_triger"), "{error}");
    assert_eq!(
        watcher.current().github.bot.enabled_commands,
        ["review", "plan"]
    );
    std::fs::write(&path, "github: {bot: [").unwrap();
    wait_for("the syntax error", || {
        watcher
            .last_error()
            .is_some_and(|e| e.contains("invalid YAML"))
    });
    assert_eq!(
        watcher.current().github.bot.enabled_commands,
        ["review", "plan"]
    );

    // A value the server's validation refuses is rejected too.
    std::fs::write(&path, "github:\n  bot:\n    enabled_commands: [deploy]\n").unwrap();
    wait_for("the refused command", || {
        watcher
            .last_error()
            .is_some_and(|e| e.contains("github.bot.enabled_commands[0]"))
    });
    assert_eq!(
        watcher.current().github.bot.enabled_commands,
        ["review", "plan"]
    );

    // Fixed again: reloaded, error cleared.
    std::fs::write(&path, with_commands("help")).unwrap();
    wait_for("the fix", || {
        watcher.current().github.bot.enabled_commands == ["help"]
    });
    assert_eq!(watcher.last_error(), None);
    assert_eq!(watcher.generation(), 2);
    // Rename-over saves, removal and re-creation, unrelated files and
    // ConfigMap symlink swaps are penguin-reload's tests.
}

#[test]
fn watcher_start_errors_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    // Missing file: defaults, and a later file is picked up.
    let watcher = ConfigWatcher::start(&path).unwrap();
    assert_eq!(*watcher.current(), ServerConfig::default());
    std::fs::write(&path, with_commands("plan")).unwrap();
    wait_for("the new file", || {
        watcher.current().github.bot.enabled_commands == ["plan"]
    });
    drop(watcher);

    // An invalid file at start is an error naming the key and the file.
    std::fs::write(&path, "github:\n  bot: { require_label: maybe }\n").unwrap();
    let error = ConfigWatcher::start(&path).unwrap_err().to_string();
    assert!(
        error.contains("config.yml: github.bot.require_label"),
        "{error}"
    );

    // A directory that does not exist yet: the defaults, polled for later.
    let absent = ConfigWatcher::start(dir.path().join("nope/config.yml")).unwrap();
    assert_eq!(*absent.current(), ServerConfig::default());

    let fixed = ConfigWatcher::fixed(ServerConfig::default());
    assert_eq!(*fixed.current(), ServerConfig::default());
    assert_eq!(fixed.generation(), 0);
}

#[test]
fn current_is_cheap_and_shared() {
    let watcher = ConfigWatcher::fixed(ServerConfig::from_yaml(FULL).unwrap());
    let a = watcher.current();
    let b = watcher.current();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn automatic_reviews_are_configured_by_action_and_label() {
    let config = ServerConfig::from_yaml(
        "github:\n  bot:\n    auto_review_on: [opened, synchronize]\n    auto_review_label: penguin:review\n",
    )
    .unwrap();
    assert_eq!(config.github.bot.auto_review_on, ["opened", "synchronize"]);
    assert_eq!(
        config.github.bot.auto_review_label.as_deref(),
        Some("penguin:review")
    );
    assert!(ServerConfig::default().github.bot.auto_review_on.is_empty());
    let err =
        ServerConfig::from_yaml("github:\n  bot:\n    auto_review_on: [merged]\n").unwrap_err();
    assert!(
        err.to_string().contains("github.bot.auto_review_on"),
        "{err}"
    );
    assert!(err.to_string().contains("merged"), "{err}");
    assert!(ServerConfig::from_yaml("github:\n  bot:\n    auto_review_label: \"  \"\n").is_err());
}

#[test]
fn repo_review_settings_only_add() {
    let server = ServerConfig::from_yaml(
        "github:\n  review:\n    ignore: ['**/*.lock']\n    path_instructions: { 'src/**': 'Be strict.' }\n",
    )
    .unwrap();
    let repo = RepoConfig::from_yaml(
        "github:\n  review:\n    ignore: ['gen/**', '**/*.lock']\n    path_instructions: { 'src/**': 'Check errors.', 'docs/**': 'Spelling.' }\n",
    )
    .unwrap();
    let review = server.narrowed_by(&repo).github.review;
    assert_eq!(review.ignore, ["**/*.lock", "gen/**"]);
    // The server's instructions stay the server's; the repository's are kept apart.
    assert_eq!(review.path_instructions.len(), 1);
    assert_eq!(review.path_instructions["src/**"], "Be strict.");
    assert_eq!(review.repo_path_instructions["src/**"], "Check errors.");
    assert_eq!(review.repo_path_instructions["docs/**"], "Spelling.");
    // Nothing else of `review` can be set by a repository.
    for text in [
        "github:\n  review:\n    max_files: 500\n",
        "github:\n  review:\n    request_changes_on: [nit]\n",
        "github:\n  budget:\n    daily_tokens: 0\n",
    ] {
        assert!(RepoConfig::from_yaml(text).is_err(), "{text}");
    }
}
