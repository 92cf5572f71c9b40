//! The server configuration shipped in the Kubernetes manifests is one this
//! build accepts: a ConfigMap that fails validation would keep the api from
//! starting in every cluster that deploys it.

use std::path::PathBuf;

fn shipped_config() -> (PathBuf, String) {
    let path = penguin_test_support::workspace_root().join("deploy/k8s/base/penguin-config.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is required: {e}", path.display()));
    (path, text)
}

#[test]
fn the_shipped_server_config_enables_fix_tests_behind_approval() {
    let (path, text) = shipped_config();
    let config = penguin_bot::config::ServerConfig::load(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for command in ["fix", "fix_tests", "review"] {
        assert!(
            config.github.bot.command_enabled(command),
            "{command} is disabled"
        );
    }
    let policy = penguin_agent::SecurityPolicy::from_yaml(&text, &[])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // A maintainer approves each write and each shell command.
    for capability in [
        penguin_agent::Capability::Shell,
        penguin_agent::Capability::RepoWrite,
    ] {
        assert_eq!(
            policy.decide(capability),
            penguin_agent::Decision::Ask,
            "{capability:?}"
        );
    }
}

#[test]
fn the_shipped_api_runs_commands_in_penguin_runner_over_tls() {
    // The command runs in the runner's Deployment, never in the api's pod.
    let path = penguin_test_support::workspace_root().join("deploy/k8s/base/deployment.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let value_of = |name: &str| {
        let at = text
            .find(&format!("- name: {name}\n"))
            .unwrap_or_else(|| panic!("{name} is not set in {}", path.display()));
        text[at..]
            .lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(value_of("PENGUIN_RUNNER"), "value: remote");
    assert!(value_of("PENGUIN_RUNNER_TOKEN_FILE").contains("/var/run/secrets/penguin-runner/token"));
    assert!(!text.contains("PENGUIN_ALLOW_LOCAL_RUNNER"));
}
