//! The security section of the configuration, decisions and path checks.

use penguin_agent::{
    Capabilities, Capability, ConfigError, Decision, Mode, SecurityPolicy, ALWAYS_DENIED_GLOBS,
};
use std::path::{Path, PathBuf};

fn load(yaml: &str) -> Result<SecurityPolicy, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    SecurityPolicy::load(&path, &[])
}

fn policy(mode: Mode, repo_write: Decision, shell: Decision, network: Decision) -> SecurityPolicy {
    SecurityPolicy::build(
        mode,
        Capabilities {
            repo_write,
            shell,
            network,
            workflows: Decision::Deny,
        },
        &[],
        &[],
    )
    .unwrap()
}

#[test]
fn missing_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let policy = SecurityPolicy::load(&dir.path().join("nope.yml"), &[]).unwrap();
    assert_eq!(policy.mode, Mode::Workspace);
    assert_eq!(policy.capabilities.repo_write, Decision::Ask);
    assert_eq!(policy.capabilities.shell, Decision::Ask);
    assert_eq!(policy.capabilities.network, Decision::Deny);
    assert_eq!(policy.denied_patterns(), ALWAYS_DENIED_GLOBS);
}

#[test]
fn empty_file_and_missing_section_give_defaults() {
    for yaml in [
        "",
        "# nothing\n",
        "other: {a: 1}\n",
        "security:\n",
        "security: {}\n",
    ] {
        let policy = load(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e}"));
        assert_eq!(policy.mode, Mode::Workspace, "{yaml:?}");
        assert_eq!(policy.capabilities, Capabilities::default(), "{yaml:?}");
    }
}

#[test]
fn each_mode_parses() {
    for (text, mode) in [
        ("read_only", Mode::ReadOnly),
        ("workspace", Mode::Workspace),
        ("full", Mode::Full),
    ] {
        let policy = load(&format!("security:\n  mode: {text}\n")).unwrap();
        assert_eq!(policy.mode, mode);
    }
    let err = load("security:\n  mode: yolo\n").unwrap_err();
    assert!(err.to_string().contains("yolo"), "{err}");
}

#[test]
fn full_example_parses() {
    let policy = load(
        "version: 3\nmodels: [a, b]\nsecurity:\n  mode: full\n  capabilities:\n    repo_write: deny\n    shell: allow\n    network: ask\n  denied_paths: [\"*.key\", \"private/\"]\n",
    )
    .unwrap();
    assert_eq!(policy.mode, Mode::Full);
    assert_eq!(
        policy.capabilities,
        Capabilities {
            repo_write: Decision::Deny,
            shell: Decision::Allow,
            network: Decision::Ask,
            workflows: Decision::Deny,
        }
    );
    assert_eq!(
        policy.denied_patterns(),
        [".env", ".env.*", "*.pem", "*secret*", "*.key", "private"]
    );
}

#[test]
fn partial_capabilities_keep_defaults() {
    let policy = load("security:\n  capabilities:\n    shell: allow\n").unwrap();
    assert_eq!(policy.capabilities.shell, Decision::Allow);
    assert_eq!(policy.capabilities.repo_write, Decision::Ask);
    assert_eq!(policy.capabilities.network, Decision::Deny);
}

#[test]
fn unknown_key_in_security_is_an_error_naming_it() {
    let err = load("security:\n  mode: full\n  allow_everything: true\n").unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("allow_everything"), "{err}");

    let err = load("security:\n  capabilities:\n    teleport: allow\n").unwrap_err();
    assert!(err.to_string().contains("teleport"), "{err}");
}

#[test]
fn invalid_yaml_and_values_are_errors() {
    assert!(load("security: [\n").is_err());
    let err = load("security:\n  capabilities:\n    shell: sure\n").unwrap_err();
    assert!(err.to_string().contains("sure"), "{err}");
    let err = load("security:\n  denied_paths: [\"a[\"]\n").unwrap_err();
    assert!(matches!(err, ConfigError::Glob { .. }), "{err:?}");
}

#[test]
fn always_denied_globs_are_kept_when_the_file_lists_others() {
    let policy = load("security:\n  denied_paths: [\"*.key\"]\n").unwrap();
    for pattern in ALWAYS_DENIED_GLOBS {
        assert!(policy.denied_patterns().iter().any(|p| p == pattern));
    }
    let ws = workspace();
    assert!(policy.check_path(ws.path(), ".env").is_err());
    assert!(policy.check_path(ws.path(), "keys/id_rsa.pem").is_err());
    assert!(policy.check_path(ws.path(), "my-secret.txt").is_err());
    assert!(policy.check_path(ws.path(), "deploy.key").is_err());
    assert!(policy.check_path(ws.path(), "src/lib.rs").is_ok());
    // And an empty list does not remove them either.
    let policy = load("security:\n  denied_paths: []\n").unwrap();
    assert!(policy.check_path(ws.path(), ".env").is_err());
}

#[test]
fn decide_matrix() {
    use Decision::*;
    let all = [Allow, Ask, Deny];
    for repo_write in all {
        for shell in all {
            for network in all {
                let p = policy(Mode::Workspace, repo_write, shell, network);
                assert_eq!(p.decide(Capability::RepoWrite), repo_write);
                assert_eq!(p.decide(Capability::Shell), shell);
                assert_eq!(p.decide(Capability::Network), network);

                let p = policy(Mode::ReadOnly, repo_write, shell, network);
                assert_eq!(p.decide(Capability::RepoWrite), Deny);
                assert_eq!(p.decide(Capability::Shell), Deny);
                assert_eq!(p.decide(Capability::Network), network);

                let p = policy(Mode::Full, repo_write, shell, network);
                let relaxed = |d| if d == Ask { Allow } else { d };
                assert_eq!(p.decide(Capability::RepoWrite), relaxed(repo_write));
                assert_eq!(p.decide(Capability::Shell), relaxed(shell));
                assert_eq!(p.decide(Capability::Network), network);
            }
        }
    }
}

#[test]
fn default_decisions() {
    let p = SecurityPolicy::default_with(&[]);
    assert_eq!(p.decide(Capability::RepoWrite), Decision::Ask);
    assert_eq!(p.decide(Capability::Shell), Decision::Ask);
    assert_eq!(p.decide(Capability::Network), Decision::Deny);
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/nested/deeper")).unwrap();
    std::fs::write(root.join("src/nested/deeper/mod.rs"), "fn x() {}").unwrap();
    std::fs::write(root.join("README.md"), "hello").unwrap();
    std::fs::write(root.join(".env"), "TOKEN=1").unwrap();
    std::fs::write(root.join("my-secret.txt"), "s").unwrap();
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::write(root.join("keys/id_rsa.pem"), "k").unwrap();
    dir
}

fn denied(policy: &SecurityPolicy, ws: &Path, path: &str) -> String {
    match policy.check_path(ws, path) {
        Ok(p) => panic!("{path} was allowed as {}", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn normal_nested_file_is_allowed_and_canonical() {
    let ws = workspace();
    let policy = SecurityPolicy::default_with(&[]);
    let canonical_ws = ws.path().canonicalize().unwrap();
    let got = policy
        .check_path(ws.path(), "src/nested/deeper/mod.rs")
        .unwrap();
    assert_eq!(got, canonical_ws.join("src/nested/deeper/mod.rs"));
    assert_eq!(
        policy.check_path(ws.path(), "./src/../README.md").unwrap(),
        canonical_ws.join("README.md")
    );
    assert_eq!(policy.check_path(ws.path(), ".").unwrap(), canonical_ws);
    // Absolute but inside.
    let abs = canonical_ws.join("README.md");
    assert_eq!(
        policy.check_path(ws.path(), abs.to_str().unwrap()).unwrap(),
        abs
    );
    // Not existing yet (a future write) is resolved, not refused.
    assert_eq!(
        policy.check_path(ws.path(), "src/new/file.rs").unwrap(),
        canonical_ws.join("src/new/file.rs")
    );
}

#[test]
fn traversal_is_denied() {
    let ws = workspace();
    let policy = SecurityPolicy::default_with(&[]);
    for path in [
        "../etc/passwd",
        "src/../../x",
        "src/nested/../../../x",
        "..",
    ] {
        let reason = denied(&policy, ws.path(), path);
        assert!(reason.contains("escapes the workspace"), "{path}: {reason}");
    }
}

#[test]
fn absolute_outside_is_denied() {
    let ws = workspace();
    let policy = SecurityPolicy::default_with(&[]);
    let reason = denied(&policy, ws.path(), "/etc/passwd");
    assert!(reason.contains("outside the workspace"), "{reason}");
    let sibling = format!("{}-other/file", ws.path().display());
    denied(&policy, ws.path(), &sibling);
}

#[test]
fn symlink_escape_is_denied() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("loot.txt"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("loot.txt"), ws.path().join("file-link"))
        .unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", ws.path().join("dangling")).unwrap();
    let policy = SecurityPolicy::default_with(&[]);
    for path in ["link/loot.txt", "link", "file-link", "link/new-file"] {
        let reason = denied(&policy, ws.path(), path);
        assert!(reason.contains("outside the workspace"), "{path}: {reason}");
    }
    denied(&policy, ws.path(), "dangling");
    // A link inside the workspace to a denied file is denied by its target.
    std::os::unix::fs::symlink(ws.path().join(".env"), ws.path().join("innocent")).unwrap();
    denied(&policy, ws.path(), "innocent");
    // A link inside the workspace to an ordinary file is fine.
    std::os::unix::fs::symlink("README.md", ws.path().join("readme-link")).unwrap();
    assert!(policy.check_path(ws.path(), "readme-link").is_ok());
}

#[test]
fn denied_globs() {
    let ws = workspace();
    let policy = SecurityPolicy::default_with(&[]);
    for path in [
        ".env",
        "src/.env",
        "keys/id_rsa.pem",
        "id_rsa.pem",
        "KEYS/ID_RSA.PEM",
        "my-secret.txt",
        "config/secrets/db.yml",
        "src/../.env",
    ] {
        let reason = denied(&policy, ws.path(), path);
        assert!(reason.contains("denied pattern"), "{path}: {reason}");
    }
    assert!(policy.check_path(ws.path(), "keys").is_ok());
    assert!(policy.check_path(ws.path(), ".envrc").is_ok());
}

#[test]
fn always_denied_absolute_paths() {
    let ws = workspace();
    let root = ws.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    std::fs::write(root.join("run/tokenator.sock"), "").unwrap();
    std::fs::write(root.join("git-credentials"), "https://x:y@github.com").unwrap();
    let always: Vec<PathBuf> = vec![
        root.join("run/tokenator.sock"),
        root.join("git-credentials"),
        root.join("not-created-yet.sock"),
    ];
    // The configuration cannot undo them.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "security:\n  mode: full\n  denied_paths: []\n").unwrap();
    let policy = SecurityPolicy::load(&config, &always).unwrap();
    assert_eq!(policy.always_denied(), always.as_slice());
    for path in [
        "run/tokenator.sock",
        "git-credentials",
        "./run/../git-credentials",
        "not-created-yet.sock",
    ] {
        let reason = denied(&policy, ws.path(), path);
        assert!(reason.contains("protected path"), "{path}: {reason}");
    }
    let abs = root.join("git-credentials");
    denied(&policy, ws.path(), abs.to_str().unwrap());
    // Reaching it through a link is denied too.
    std::os::unix::fs::symlink("git-credentials", root.join("creds")).unwrap();
    denied(&policy, ws.path(), "creds");
    // The directory around it is not.
    assert!(policy.check_path(ws.path(), "run").is_ok());
}

#[test]
fn nul_and_odd_input_never_panics() {
    let ws = workspace();
    let policy = SecurityPolicy::default_with(&[]);
    denied(&policy, ws.path(), "a\0b");
    assert!(policy.check_path(ws.path(), "").is_ok());
    let long = "a/".repeat(5000);
    let _ = policy.check_path(ws.path(), &long);
    // A missing workspace is a denial, not a panic.
    denied(&policy, Path::new("/nonexistent/workspace"), "x");
}

/// A model edit or read of `.git` (the remote the bot pushes to lives in
/// `.git/config`) is refused whatever the spelling, and even through a
/// symbolic link or a symlinked workspace (the canonical/non-canonical
/// comparison the fix used to make let `.git/config` through).
#[test]
fn git_metadata_is_never_reachable() {
    let real = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(real.path().join(".git/hooks")).unwrap();
    std::fs::create_dir_all(real.path().join("sub/.GIT")).unwrap();
    std::fs::write(real.path().join(".git/config"), "[remote]\n").unwrap();
    std::os::unix::fs::symlink(".git", real.path().join("gitlink")).unwrap();
    // The workspace as a symbolic link to the real directory, and relative.
    let holder = tempfile::tempdir().unwrap();
    let linked = holder.path().join("ws");
    std::os::unix::fs::symlink(real.path(), &linked).unwrap();
    let policy = load("security:\n  mode: full\n").unwrap();
    for ws in [real.path(), linked.as_path()] {
        for path in [
            ".git/config",
            ".git",
            "./.git/hooks/pre-push",
            ".GIT/config",
            ".Git/HEAD",
            "sub/.GIT/x",
            "src/../.git/config",
            "gitlink/config",
        ] {
            let err = policy
                .check_path(ws, path)
                .expect_err(&format!("{path} in {}", ws.display()));
            assert!(err.to_string().contains(".git"), "{path}: {err}");
        }
        let absolute = format!("{}/.git/config", ws.display());
        assert!(policy.check_path(ws, &absolute).is_err(), "{absolute}");
        assert!(policy.check_path(ws, ".gitignore").is_ok());
        assert!(policy.check_path(ws, "src/git/mod.rs").is_ok());
        assert!(policy.check_path(ws, ".github/workflows/ci.yml").is_ok());
    }
}
