//! The runner binary, over its Unix socket: output streaming, exit codes,
//! timeouts, caps, changes, rlimits, leftover processes, bad input.

use futures::StreamExt;
use penguin_proto::runner::v1::{change::Kind, Limits};
use penguin_runner_client::{workspace, ClientError, Job, JobEvent, JobOutcome};
use penguin_test_support::runner::TestRunner;
use std::{path::Path, time::Duration};
use tonic::Code;

fn job(script: &str) -> Job {
    Job {
        limits: Limits {
            wall_time_ms: 30_000,
            ..Limits::default()
        },
        ..Job::shell(script)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run(runner: &TestRunner, job: Job, workspace: Vec<u8>) -> JobOutcome {
    runner
        .client()
        .run(job, workspace, 1 << 20)
        .await
        .expect("the job runs")
}

fn pack(dir: &Path) -> Vec<u8> {
    workspace::pack(dir, &|_| false).unwrap()
}

/// Processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = text(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(cmdline)
        })
        .collect()
}

#[tokio::test]
async fn output_streams_as_it_comes_and_the_exit_code_is_returned() {
    let runner = TestRunner::start(&[]).await;
    // The job prints, then waits for a file only this test creates after
    // reading that first line: the line must arrive while the job runs.
    let events = runner
        .client()
        .start(
            job("echo first; echo warn >&2; while [ ! -e \"$HOME/go\" ]; do sleep 0.02; done; echo second; exit 3"),
            Vec::new(),
        )
        .await
        .unwrap();
    futures::pin_mut!(events);
    let mut job_id = String::new();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut released = false;
    let finished = loop {
        match events.next().await.expect("an event").unwrap() {
            JobEvent::Started(id) => job_id = id,
            JobEvent::Stdout(data) => {
                stdout.push_str(&text(&data));
                if stdout.contains("first") && !released {
                    assert!(!stdout.contains("second"));
                    let go = runner.work_dir.join(format!("job-{job_id}/home/go"));
                    std::fs::write(go, "").unwrap();
                    released = true;
                }
            }
            JobEvent::Stderr(data) => stderr.push_str(&text(&data)),
            JobEvent::Change(_) => {}
            JobEvent::Finished(finished) => break finished,
        }
    };
    assert!(released, "the first line never came before the end");
    assert_eq!(stdout, "first\nsecond\n");
    assert_eq!(stderr, "warn\n");
    assert_eq!(finished.exit_code, Some(3));
    assert!(!finished.timed_out);

    // The job's directory is gone afterwards.
    for _ in 0..100 {
        if std::fs::read_dir(&runner.work_dir)
            .unwrap()
            .next()
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job directory was not removed");
}

#[tokio::test]
async fn a_job_over_its_wall_clock_is_killed_with_everything_it_started() {
    let runner = TestRunner::start(&[]).await;
    let mut slow = job("sleep 987654 & echo started; sleep 987653");
    slow.limits.wall_time_ms = 500;
    let outcome = run(&runner, slow, Vec::new()).await;
    assert!(outcome.finished.timed_out);
    assert_eq!(outcome.finished.exit_code, None);
    assert_eq!(outcome.finished.signal, Some(9));
    assert_eq!(text(&outcome.stdout), "started\n");
    assert!(outcome.finished.duration_ms < 10_000);
    assert!(processes_matching("sleep 98765").is_empty());
}

#[tokio::test]
async fn processes_left_behind_and_double_forked_daemons_are_killed() {
    let runner = TestRunner::start(&[]).await;
    let outcome = run(
        &runner,
        job(concat!(
            "sleep 1000111 & ",
            // A daemon: fork, new session, fork again, parent exits.
            "sh -c 'setsid sh -c \"sleep 1000222 & exit 0\" & exit 0'; ",
            "sleep 0.3; echo done"
        )),
        Vec::new(),
    )
    .await;
    assert_eq!(
        outcome.finished.exit_code,
        Some(0),
        "{}",
        text(&outcome.stderr)
    );
    assert!(
        outcome.finished.leftover_processes_killed >= 2,
        "{:?}",
        outcome.finished
    );
    let left: Vec<String> = processes_matching("sleep 1000111")
        .into_iter()
        .chain(processes_matching("sleep 1000222"))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

#[tokio::test]
async fn output_over_the_cap_is_cut_and_flagged() {
    let runner = TestRunner::start(&[]).await;
    let mut chatty = job("head -c 1000000 /dev/zero | tr '\\0' x; echo tail >&2");
    chatty.limits.output_bytes = 1000;
    let outcome = run(&runner, chatty, Vec::new()).await;
    assert_eq!(outcome.finished.exit_code, Some(0));
    assert!(outcome.finished.output_truncated);
    assert_eq!(outcome.stdout.len() + outcome.stderr.len(), 1000);
}

#[tokio::test]
async fn the_workspace_arrives_and_its_changes_come_back() {
    let runner = TestRunner::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "beta\n").unwrap();
    std::fs::write(dir.path().join("same.txt"), "same\n").unwrap();
    std::fs::write(dir.path().join("test.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("test.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut format = job(
        "./test.sh && cat src/a.txt && echo ALPHA > src/a.txt && rm b.txt && mkdir -p gen && printf generated > gen/c.txt && pwd",
    );
    format.collect_changes = true;
    let outcome = run(&runner, format, pack(dir.path())).await;
    assert_eq!(
        outcome.finished.exit_code,
        Some(0),
        "{}",
        text(&outcome.stderr)
    );
    let stdout = text(&outcome.stdout);
    assert!(stdout.starts_with("ran\nalpha\n"), "{stdout}");
    // The job ran in its own directory under the work dir, not in ours.
    assert!(
        stdout.contains(&runner.work_dir.display().to_string()),
        "{stdout}"
    );
    let mut changes: Vec<(String, i32, Vec<u8>)> = outcome
        .changes
        .iter()
        .map(|c| (c.path.clone(), c.kind, c.content.clone()))
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("b.txt".into(), Kind::Deleted as i32, vec![]),
            (
                "gen/c.txt".into(),
                Kind::Added as i32,
                b"generated".to_vec()
            ),
            (
                "src/a.txt".into(),
                Kind::Modified as i32,
                b"ALPHA\n".to_vec()
            ),
        ]
    );
    // Applied back, the caller's tree matches what the job left.
    workspace::apply(dir.path(), &outcome.changes).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("src/a.txt")).unwrap(),
        "ALPHA\n"
    );
    assert!(!dir.path().join("b.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("gen/c.txt")).unwrap(),
        "generated"
    );
}

#[tokio::test]
async fn rlimits_are_in_force_and_hitting_them_ends_the_command() {
    let runner = TestRunner::start(&[]).await;
    let limits = Limits {
        wall_time_ms: 30_000,
        cpu_seconds: 1,
        memory_bytes: 512 * 1024 * 1024,
        max_processes: 20,
        file_size_bytes: 1024 * 1024,
        open_files: 64,
        ..Limits::default()
    };
    let with = |script: &str| Job {
        limits,
        ..Job::shell(script)
    };
    // The limits as the job's shell sees them.
    let outcome = run(
        &runner,
        with("ulimit -t; ulimit -v; ulimit -f; ulimit -n"),
        Vec::new(),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        format!("1\n{}\n{}\n64\n", 512 * 1024, 1024 * 1024 / 512),
        "{}",
        text(&outcome.stderr)
    );
    // File size: the writer is killed by SIGXFSZ (the shell reports 128+25).
    let outcome = run(
        &runner,
        with("head -c 2000000 /dev/zero > big.bin; echo status=$?"),
        Vec::new(),
    )
    .await;
    assert_eq!(
        text(&outcome.stdout),
        "status=153\n",
        "{}",
        text(&outcome.stderr)
    );
    // CPU: a busy loop gets SIGXCPU.
    let outcome = run(&runner, with("while :; do :; done"), Vec::new()).await;
    assert_eq!(
        outcome.finished.signal,
        Some(libc_sigxcpu()),
        "{:?}",
        outcome.finished
    );
    assert!(!outcome.finished.timed_out);
    // Processes: a fork storm is refused past the cap.
    let outcome = run(
        &runner,
        with("i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; echo all-forked"),
        Vec::new(),
    )
    .await;
    assert!(!text(&outcome.stdout).contains("all-forked"));
    assert!(
        text(&outcome.stderr).to_lowercase().contains("fork"),
        "{}",
        text(&outcome.stderr)
    );
    assert!(processes_matching("sleep 5").is_empty());
}

fn libc_sigxcpu() -> i32 {
    24
}

#[tokio::test]
async fn the_job_gets_an_empty_environment_plus_the_allowlist() {
    let runner = TestRunner::start(&[
        ("PENGUIN_RUNNER_ENV_ALLOWLIST", "PATH,LANG".into()),
        ("LANG", "C.UTF-8".into()),
        ("RUNNER_SECRET", "must-not-leak".into()),
    ])
    .await;
    let mut env_job = job("env | sort");
    env_job.env.insert("CI".into(), "true".into());
    let outcome = run(&runner, env_job, Vec::new()).await;
    let names: Vec<String> = text(&outcome.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(n, _)| n.to_string()))
        .filter(|n| n != "PWD" && n != "SHLVL" && n != "_" && n != "OLDPWD")
        .collect();
    assert_eq!(
        names,
        ["CI", "HOME", "LANG", "PATH", "TMPDIR"],
        "{}",
        text(&outcome.stdout)
    );
    assert!(!text(&outcome.stdout).contains("must-not-leak"));
}

#[tokio::test]
async fn bad_jobs_are_refused_with_a_reason_and_the_runner_goes_on() {
    let runner = TestRunner::start(&[]).await;
    let client = runner.client();
    let refused = |result: Result<JobOutcome, ClientError>| match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (code, message) = refused(client.run(Job::default(), Vec::new(), 1024).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("no command"), "{message}");

    let mut home = job("true");
    home.env.insert("HOME".into(), "/".into());
    let (code, message) = refused(client.run(home, Vec::new(), 1024).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("HOME"), "{message}");

    let mut escape = job("true");
    escape.workdir = "../..".into();
    assert_eq!(
        refused(client.run(escape, Vec::new(), 1024).await).0,
        Code::InvalidArgument
    );

    let (code, message) = refused(
        client
            .run(job("true"), b"not a tarball".to_vec(), 1024)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.contains("not a .tar.gz") || message.contains("corrupt"),
        "{message}"
    );

    let outcome = run(&runner, job("echo still here"), Vec::new()).await;
    assert_eq!(text(&outcome.stdout), "still here\n");
}

#[tokio::test]
async fn a_cancelled_call_kills_the_job() {
    let runner = TestRunner::start(&[]).await;
    let events = runner
        .client()
        .start(job("echo up; sleep 876543"), Vec::new())
        .await
        .unwrap();
    // Boxed, so dropping it really drops the call (pin_mut! would only
    // drop a reference).
    let mut events = Box::pin(events);
    loop {
        if let JobEvent::Stdout(_) = events.next().await.unwrap().unwrap() {
            break;
        }
    }
    drop(events);
    for _ in 0..100 {
        if processes_matching("sleep 876543").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the job outlived its cancelled call: {:?}",
        processes_matching("sleep 876543")
    );
}

#[tokio::test]
async fn a_job_writes_only_inside_its_own_directory_and_cannot_touch_the_runner() {
    let runner = TestRunner::start(&[]).await;
    let runner_pid = runner.process.pid().unwrap();
    let work = runner.work_dir.display().to_string();
    let script = format!(
        "touch \"$HOME/ok\" && echo inside-ok; \
         t=$(mktemp) && echo tmp-ok; \
         touch {work}/escape 2>/dev/null && echo ESCAPED-work-dir; \
         touch /tmp/penguin-job-escape-$$ 2>/dev/null && echo ESCAPED-tmp; \
         rm -f {socket} 2>/dev/null; test -S {socket} || echo REMOVED-socket; \
         kill -0 {runner_pid} 2>/dev/null && echo SIGNALLED-runner; \
         cat /proc/{runner_pid}/environ >/dev/null 2>&1 && echo READ-runner-environ; \
         echo done",
        socket = runner.socket.display(),
    );
    let outcome = run(&runner, job(&script), Vec::new()).await;
    let stdout = text(&outcome.stdout);
    assert!(
        stdout.contains("inside-ok") && stdout.contains("tmp-ok"),
        "{stdout}\n{}",
        text(&outcome.stderr)
    );
    assert!(stdout.ends_with("done\n"), "{stdout}");
    for escape in [
        "ESCAPED-work-dir",
        "ESCAPED-tmp",
        "REMOVED-socket",
        "SIGNALLED-runner",
        "READ-runner-environ",
    ] {
        assert!(!stdout.contains(escape), "{escape}: {stdout}");
    }
    assert!(!runner.work_dir.join("escape").exists());
    // The runner still serves.
    assert_eq!(
        text(&run(&runner, job("echo again"), Vec::new()).await.stdout),
        "again\n"
    );
}
