//! The real `git` CLI, isolated from the machine's and user's configuration.

use std::{path::Path, process::Output};

/// Runs `git args` in `cwd` with `home` as HOME, no system config and no
/// prompts; returns the output whatever the exit status.
pub fn git(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Penguin Test")
        .env("GIT_AUTHOR_EMAIL", "test@penguin.invalid")
        .env("GIT_COMMITTER_NAME", "Penguin Test")
        .env("GIT_COMMITTER_EMAIL", "test@penguin.invalid")
        .output()
        .expect("git runs")
}

/// Like [`git`], panicking with git's stderr when it fails.
pub fn git_ok(cwd: &Path, home: &Path, args: &[&str]) -> String {
    let out = git(cwd, home, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
