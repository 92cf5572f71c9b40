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
fn the_shipped_server_config_validates_and_keeps_the_shell_away_from_the_pod() {
    let (path, text) = shipped_config();
    let config = penguin_bot::config::ServerConfig::load(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Commands that run repository code are off: the local runner shares the pod.
    for writer in ["fix", "fix_tests"] {
        assert!(
            !config.github.bot.command_enabled(writer),
            "{writer} is enabled"
        );
    }
    assert!(config.github.bot.command_enabled("review"));
    let policy = penguin_agent::SecurityPolicy::from_yaml(&text, &[])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        policy.decide(penguin_agent::Capability::Shell),
        penguin_agent::Decision::Deny
    );
}
