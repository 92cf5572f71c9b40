//! penguin-runner's benchmark: the overhead of a job (an empty command),
//! a 10 MB workspace round trip (sent, unpacked, copied by the job, every
//! copied file returned and applied), and jobs per second with four runner
//! processes. Starts its own runners (as `nobody` when run as root) in a
//! temporary directory and prints the numbers.
//!
//! `cargo run --release -p penguin-runner --bin penguin-runner-bench`

use penguin_runner_client::{workspace, Job, RunnerAddr, RunnerClient};
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const UNPRIVILEGED: (u32, u32) = (65534, 65534);

struct Runner {
    child: Child,
    socket: PathBuf,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_runner(dir: &Path, name: &str) -> Runner {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe.with_file_name("penguin-runner");
    let root = dir.join(name);
    let socket = root.join("runner.sock");
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut command = Command::new(&binary);
    if as_root {
        for path in [dir, &root, &work] {
            std::os::unix::fs::chown(path, Some(UNPRIVILEGED.0), Some(UNPRIVILEGED.1)).unwrap();
        }
        command.uid(UNPRIVILEGED.0).gid(UNPRIVILEGED.1);
    }
    let child = command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PENGUIN_RUNNER_SOCKET", &socket)
        .env("PENGUIN_RUNNER_WORK_DIR", &work)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it: cargo build --release -p penguin-runner)",
                binary.display()
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the runner did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Runner { child, socket }
}

fn client(runner: &Runner) -> RunnerClient {
    RunnerClient::new(&RunnerAddr::Unix(runner.socket.clone()), None, None).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// 10 MB of files that do not compress away (a cheap xorshift stream).
fn make_workspace(dir: &Path) -> u64 {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut total = 0;
    for i in 0..100 {
        let mut bytes = Vec::with_capacity(100 * 1024);
        while bytes.len() < 100 * 1024 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        total += bytes.len() as u64;
        std::fs::write(src.join(format!("file-{i:03}.bin")), bytes).unwrap();
    }
    total
}

#[tokio::main]
async fn main() {
    let dir = tempfile::Builder::new()
        .prefix("penguin-runner-bench-")
        .tempdir()
        .unwrap();
    let runner = start_runner(dir.path(), "one");
    let one = client(&runner);
    // Warm up (page cache, first connection).
    for _ in 0..5 {
        one.run(Job::shell("true"), Vec::new(), 1024).await.unwrap();
    }

    let mut overhead = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let outcome = one.run(Job::shell("true"), Vec::new(), 1024).await.unwrap();
        assert_eq!(outcome.finished.exit_code, Some(0));
        overhead.push(started.elapsed());
    }
    overhead.sort();
    println!(
        "job overhead (empty command `true`, 200 jobs): p50 {}  p99 {}",
        ms(percentile(&overhead, 0.5)),
        ms(percentile(&overhead, 0.99))
    );

    let ws = tempfile::tempdir().unwrap();
    let size = make_workspace(ws.path());
    let mut round_trips = Vec::new();
    let mut archive_len = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let root = ws.path().to_path_buf();
        let archive = tokio::task::spawn_blocking(move || workspace::pack(&root, &|_| false))
            .await
            .unwrap()
            .unwrap();
        archive_len = archive.len();
        let mut job = Job::shell("cp -r src copy");
        job.collect_changes = true;
        let outcome = one.run(job, archive, 1024).await.unwrap();
        assert_eq!(outcome.finished.exit_code, Some(0));
        assert_eq!(outcome.changes.len(), 100);
        let root = ws.path().to_path_buf();
        tokio::task::spawn_blocking(move || workspace::apply(&root, &outcome.changes))
            .await
            .unwrap()
            .unwrap();
        round_trips.push(started.elapsed());
        std::fs::remove_dir_all(ws.path().join("copy")).unwrap();
    }
    round_trips.sort();
    println!(
        "10 MB workspace round trip ({} MB in 100 files, {:.1} MB compressed; sent, unpacked, copied by the job, 10 MB of changes returned and applied; 10 runs): p50 {}  max {}",
        size / 1_000_000,
        archive_len as f64 / 1e6,
        ms(percentile(&round_trips, 0.5)),
        ms(*round_trips.last().unwrap())
    );
    drop(runner);

    let runners: Vec<Runner> = (0..4)
        .map(|i| start_runner(dir.path(), &format!("pool-{i}")))
        .collect();
    let clients: Vec<RunnerClient> = runners.iter().map(client).collect();
    for c in &clients {
        c.run(Job::shell("true"), Vec::new(), 1024).await.unwrap();
    }
    let window = Duration::from_secs(5);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < window {
                c.run(Job::shell("true"), Vec::new(), 1024).await.unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "4 runner processes, 4 callers, empty jobs for {:.1} s: {} jobs, {:.0} jobs/s",
        elapsed,
        total,
        total as f64 / elapsed
    );
    drop(runners);
}
