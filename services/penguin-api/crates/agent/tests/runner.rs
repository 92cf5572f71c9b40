//! Command runners: the local runner for real, the docker runner's argv and
//! (with a fake `docker` client) its timeout handling.

use penguin_agent::{
    docker_run_args, CommandRunner, DockerRunner, LocalRunner, RunnerError, SecurityPolicy,
    MAX_OUTPUT_BYTES,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(root.join("README.md"), "original\n").unwrap();
    std::fs::write(root.join(".env"), "GITHUB_TOKEN=ghp_fromfile\n").unwrap();
    std::fs::write(root.join("server.pem"), "KEY").unwrap();
    std::fs::write(root.join("my-secret.txt"), "s").unwrap();
    dir
}

#[tokio::test]
async fn echo_works() {
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    assert_eq!(runner.name(), "local");
    let out = runner
        .run("echo hello; echo oops >&2; exit 3", T)
        .await
        .unwrap();
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.timed_out);
    let out = runner.run("cat README.md", T).await.unwrap();
    assert_eq!(out.stdout, "original\n");
    assert_eq!(out.exit_code, Some(0));
}

#[tokio::test]
async fn environment_is_clean() {
    // Secrets in the server's environment must not reach the command.
    std::env::set_var("GITHUB_TOKEN", "ghp_leaked_if_you_see_this");
    std::env::set_var("GIT_ASKPASS", "/bin/echo");
    std::env::set_var("SSH_AUTH_SOCK", "/tmp/agent.sock");
    std::env::set_var("PENGUIN_SECRET", "hunter2");
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    let out = runner.run("env", T).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let mut names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    names.sort();
    // `sh` itself may add PWD/SHLVL/_ ; nothing else.
    let allowed = ["HOME", "LANG", "PATH", "PWD", "SHLVL", "TERM", "_"];
    for name in &names {
        assert!(
            allowed.contains(name),
            "unexpected variable {name}: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("ghp_leaked"));
    assert!(!out.stdout.contains("hunter2"));
    assert!(out.stdout.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"));
    assert!(out.stdout.contains("LANG=C.UTF-8\n"));
    assert!(out.stdout.contains("TERM=dumb\n"));
    let home = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("HOME="))
        .unwrap();
    assert!(home.ends_with("/.home"), "{home}");
    assert!(Path::new(home).is_dir());
    assert!(!Path::new(home).starts_with(ws.path()));
    // stdin is closed.
    let out = runner.run("cat; echo done", T).await.unwrap();
    assert_eq!(out.stdout, "done\n");
}

#[tokio::test]
async fn writes_do_not_touch_the_real_workspace() {
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    let out = runner
        .run(
            "echo changed > README.md && rm src/main.rs && echo new > new.txt && pwd",
            T,
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let scratch = runner.scratch_dir().await.unwrap();
    assert_eq!(out.stdout.trim(), scratch.to_str().unwrap());
    assert!(!scratch.starts_with(ws.path().canonicalize().unwrap()));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("README.md")).unwrap(),
        "original\n"
    );
    assert!(ws.path().join("src/main.rs").exists());
    assert!(!ws.path().join("new.txt").exists());
    // The copy is made once per runner: later commands see earlier changes.
    let out = runner.run("cat new.txt README.md", T).await.unwrap();
    assert_eq!(out.stdout, "new\nchanged\n");
}

#[tokio::test]
async fn denied_paths_are_not_copied() {
    let ws = workspace();
    let root = ws.path().canonicalize().unwrap();
    std::fs::write(root.join("credentials"), "x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(root.join("README.md"), root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("README.md", root.join("rel-link")).unwrap();
    let policy = SecurityPolicy::default_with(&[root.join("credentials")]);
    let runner = LocalRunner::with_policy(root.clone(), Arc::new(policy));
    let out = runner.run("ls -A1; cat rel-link", T).await.unwrap();
    assert_eq!(
        out.stdout, "README.md\nrel-link\nsrc\noriginal\n",
        "{out:?}"
    );
}

/// Waits up to two seconds for `pid` to be gone (or a zombie).
async fn process_gone(pid: u32) -> bool {
    for _ in 0..40 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn first_pid(stdout: &str) -> u32 {
    stdout.lines().next().unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn timeout_kills_the_process_group_quickly() {
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    let start = Instant::now();
    // A background child holding the output pipe too.
    let out = runner
        .run("sleep 30 & echo $!; sleep 30", Duration::from_millis(300))
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let background = first_pid(&out.stdout);
    assert!(
        process_gone(background).await,
        "sleep {background} survived"
    );
}

#[tokio::test]
async fn background_stragglers_are_killed_after_exit() {
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    let start = Instant::now();
    let out = runner.run("sleep 30 & echo $!; echo bye", T).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(out.stdout.ends_with("\nbye\n"), "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let background = first_pid(&out.stdout);
    assert!(
        process_gone(background).await,
        "sleep {background} survived"
    );
}

#[tokio::test]
async fn dropping_the_run_kills_the_command() {
    let ws = workspace();
    let marker = ws.path().join("marker");
    let runner = LocalRunner::new(ws.path().to_path_buf());
    // A subshell in the background: only killing the group stops it.
    let command = format!("(sleep 1; touch {}) & wait", marker.display());
    let _ = tokio::time::timeout(Duration::from_millis(300), runner.run(&command, T)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the abandoned command kept running");
}

#[tokio::test]
async fn output_is_capped() {
    let ws = workspace();
    let runner = LocalRunner::new(ws.path().to_path_buf());
    let out = runner
        .run("head -c 200000 /dev/zero | tr '\\0' a", T)
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout.len(), MAX_OUTPUT_BYTES + "\n[truncated]".len());
    assert!(out.stdout.ends_with("\n[truncated]"));
}

#[tokio::test]
async fn missing_workspace_is_an_error() {
    let runner = LocalRunner::new(PathBuf::from("/nonexistent/penguin/ws"));
    let err = runner.run("true", T).await.unwrap_err();
    assert!(matches!(err, RunnerError::Workspace(_)), "{err:?}");
}

#[test]
fn docker_argv() {
    let args = docker_run_args(
        "ghcr.io/penguin/sandbox:1",
        Path::new("/srv/ws/repo"),
        "penguin-agent-abc",
        "cargo test; echo $HOME",
    )
    .unwrap();
    let expected: Vec<String> = [
        "run",
        "--rm",
        "--name",
        "penguin-agent-abc",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "10001:10001",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "256",
        "--memory",
        "2g",
        "-v",
        "/srv/ws/repo:/workspace:ro",
        "-w",
        "/workspace",
        "ghcr.io/penguin/sandbox:1",
        "sh",
        "-c",
        "cargo test; echo $HOME",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(args, expected);
    // Nothing that would pass secrets or privileges in.
    for forbidden in [
        "-e",
        "--env",
        "--env-file",
        "--privileged",
        "--mount",
        "--volume",
    ] {
        assert!(!args.iter().any(|a| a == forbidden), "{forbidden}");
    }
    assert_eq!(args.iter().filter(|a| *a == "-v").count(), 1);
}

#[test]
fn docker_argv_rejects_bad_input() {
    let ok_ws = Path::new("/srv/ws");
    for image in ["", "--privileged", "a b"] {
        assert!(
            docker_run_args(image, ok_ws, "n", "true").is_err(),
            "{image:?}"
        );
    }
    for ws in ["relative/ws", "/srv/a:/etc", "/srv/a,b"] {
        assert!(
            docker_run_args("img", Path::new(ws), "n", "true").is_err(),
            "{ws:?}"
        );
    }
    assert!(docker_run_args("img", ok_ws, "bad name", "true").is_err());
    assert!(docker_run_args("img", ok_ws, "", "true").is_err());
}

/// A fake `docker` client: logs its arguments, `run` hangs (exec, so the
/// process is the one killed), `kill` returns.
fn fake_docker(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("docker.log");
    let script = dir.join("docker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\nfor last; do :; done\nif [ \"$1\" = run ]; then\n  if [ \"$last\" = hang ]; then exec sleep 30; fi\n  echo ran; env | grep -c GITHUB_TOKEN; exit 0\nfi\nexit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

#[tokio::test]
async fn docker_runner_runs_the_built_argv_and_kills_on_timeout() {
    std::env::set_var("GITHUB_TOKEN", "ghp_docker_client_must_not_see");
    let ws = workspace();
    let bin = tempfile::tempdir().unwrap();
    let (docker, log) = fake_docker(bin.path());
    let runner =
        DockerRunner::new("sandbox:1".into(), ws.path().to_path_buf()).with_docker_binary(docker);
    assert_eq!(runner.name(), "docker");

    let out = runner.run("echo hi", T).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    // The client does not get GITHUB_TOKEN either.
    assert_eq!(out.stdout, "ran\n0\n");

    let start = Instant::now();
    let out = runner
        .run("hang", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(out.timed_out);
    assert!(start.elapsed() < Duration::from_secs(5));

    let log = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let canonical = ws.path().canonicalize().unwrap();
    assert!(
        lines[0].starts_with("run --rm --name penguin-agent-"),
        "{log}"
    );
    assert!(lines[0].contains(&format!("-v {}:/workspace:ro", canonical.display())));
    assert!(lines[0].ends_with("sandbox:1 sh -c echo hi"));
    // The container of the timed-out run is killed by its name.
    let name = lines[1].split_whitespace().nth(3).unwrap();
    assert!(name.starts_with("penguin-agent-"));
    assert_eq!(lines[2], format!("kill {name}"));
}
