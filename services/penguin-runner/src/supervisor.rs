//! The job supervisor: a small process between the runner and the job's
//! command (`penguin-runner __supervise …`, synchronous, no async runtime).
//!
//! It makes itself a child subreaper, so every process the job leaves behind
//! (backgrounded, double-forked, `setsid`-ed daemons) is re-parented to it
//! rather than to init. It confines itself and so the job with Landlock:
//! the filesystem is readable and executable, but writable only inside the
//! job's own directory (and `/dev/null`); signals and abstract Unix sockets
//! do not reach outside the job (the runner, other jobs). It starts the
//! command in a new session with the job's rlimits and `no_new_privs`,
//! waits for it, then kills and reaps every remaining descendant, looping
//! until it has no children at all.
//! SIGTERM (the runner's timeout or a cancelled call) kills the command's
//! process group first. The outcome goes to fd 3, one line:
//! `exit <code> leftovers <n>` or `signal <n> leftovers <n>`.

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use std::{
    io::Write,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "__supervise";
/// The status pipe's descriptor in the supervisor.
pub const STATUS_FD: i32 = 3;

/// rlimits applied to the job's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobRlimits {
    /// RLIMIT_CPU seconds.
    pub cpu_secs: u64,
    /// RLIMIT_AS bytes.
    pub memory_bytes: u64,
    /// RLIMIT_NPROC.
    pub processes: u64,
    /// RLIMIT_FSIZE bytes.
    pub file_bytes: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

impl JobRlimits {
    /// The limits as the supervisor's arguments (the job's directory follows).
    pub fn to_args(self) -> [String; 5] {
        [
            self.cpu_secs.to_string(),
            self.memory_bytes.to_string(),
            self.processes.to_string(),
            self.file_bytes.to_string(),
            self.open_files.to_string(),
        ]
    }

    fn parse(args: &[String]) -> Option<Self> {
        let n = |i: usize| args.get(i)?.parse::<u64>().ok();
        Some(JobRlimits {
            cpu_secs: n(0)?,
            memory_bytes: n(1)?,
            processes: n(2)?,
            file_bytes: n(3)?,
            open_files: n(4)?,
        })
    }
}

/// How the command ended, as the supervisor reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal, when it was killed.
    pub signal: Option<i32>,
    /// Descendants killed afterwards.
    pub leftovers: u32,
}

impl Outcome {
    /// Parses the status line.
    pub fn parse(line: &str) -> Option<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, value, leftovers) = match words.as_slice() {
            [kind, value, "leftovers", n] => (*kind, value.parse().ok()?, n.parse().ok()?),
            _ => return None,
        };
        match kind {
            "exit" => Some(Outcome {
                exit_code: Some(value),
                signal: None,
                leftovers,
            }),
            "signal" => Some(Outcome {
                exit_code: None,
                signal: Some(value),
                leftovers,
            }),
            _ => None,
        }
    }
}

static TERMINATE: AtomicBool = AtomicBool::new(false);
static GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
    let group = GROUP.load(Ordering::SeqCst);
    if group > 1 {
        // SAFETY: killpg is async-signal-safe.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a valid struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the supervisor with `args` (after the subcommand name) and returns
/// the process exit code: 0 when the outcome was reported, 70 otherwise.
pub fn main(args: &[String]) -> i32 {
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("penguin-runner supervisor: usage: {SUBCOMMAND} <limits> <job dir> -- argv");
        return 64;
    };
    let (Some(limits), Some(job_dir), argv) = (
        JobRlimits::parse(&args[..split]),
        args[..split].get(5),
        &args[split + 1..],
    ) else {
        eprintln!("penguin-runner supervisor: bad limits");
        return 64;
    };
    // The status pipe must not reach the job.
    // SAFETY: fcntl on a descriptor number; a closed one only fails.
    let status_open = unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
    // SAFETY: prctl with constant arguments; signal handler installation with
    // a handler that only touches atomics and calls async-signal-safe killpg.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_terminate as extern "C" fn(libc::c_int) as *const () as usize;
        // No SA_RESTART: waitpid returns EINTR so the loop sees the flag.
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
    let outcome = match confine(Path::new(job_dir)) {
        Err(err) => Err(format!("cannot confine the job: {err}")),
        Ok(status) => {
            if status != RulesetStatus::FullyEnforced {
                // Said where the caller reads it: this kernel leaves a gap.
                eprintln!(
                    "penguin-runner: warning: Landlock is {} on this kernel; writes outside the job directory are not fully blocked",
                    if status == RulesetStatus::NotEnforced { "unavailable" } else { "partly available" }
                );
            }
            match argv.split_first() {
                None => Err("no command".to_string()),
                Some((program, rest)) => run(program, rest, limits),
            }
        }
    };
    let leftovers = sweep();
    let line = match outcome {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code} leftovers {leftovers}\n"),
            (None, Some(signal)) => format!("signal {signal} leftovers {leftovers}\n"),
            (None, None) => format!("signal 0 leftovers {leftovers}\n"),
        },
        Err(err) => {
            // The job's stderr: the caller sees why nothing ran.
            eprintln!("penguin-runner: cannot start the command: {err}");
            format!("exit 127 leftovers {leftovers}\n")
        }
    };
    if status_open {
        // SAFETY: STATUS_FD is open (fcntl succeeded) and owned by us from here.
        let mut pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(STATUS_FD) };
        if pipe.write_all(line.as_bytes()).is_ok() {
            return 0;
        }
    }
    70
}

/// The newest Landlock ABI this code asks for; older kernels get what they
/// support (best effort), and the status says how much that was.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Confines this process and everything it starts: read and execute
/// anywhere, write only beneath `job_dir` and to `/dev/null`; no signals or
/// abstract Unix sockets beyond this domain.
pub fn confine(job_dir: &Path) -> Result<RulesetStatus, String> {
    confine_inner(job_dir).map_err(|e| e.to_string())
}

fn confine_inner(job_dir: &Path) -> Result<RulesetStatus, Box<dyn std::error::Error>> {
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rule(landlock::PathBeneath::new(
            landlock::PathFd::new("/")?,
            read,
        ))?
        .add_rule(landlock::PathBeneath::new(
            landlock::PathFd::new(job_dir)?,
            all,
        ))?;
    if let Ok(null) = landlock::PathFd::new("/dev/null") {
        ruleset = ruleset.add_rule(landlock::PathBeneath::new(
            null,
            AccessFs::from_file(LANDLOCK_ABI),
        ))?;
    }
    Ok(ruleset.restrict_self()?.ruleset)
}

/// Starts the command and waits for it.
fn run(
    program: &str,
    args: &[String],
    limits: JobRlimits,
) -> Result<std::process::ExitStatus, String> {
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: only async-signal-safe calls (setsid, setrlimit, prctl) in the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            set_rlimit(libc::RLIMIT_CPU, limits.cpu_secs, limits.cpu_secs + 1)?;
            set_rlimit(libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)?;
            set_rlimit(libc::RLIMIT_NPROC, limits.processes, limits.processes)?;
            set_rlimit(libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)?;
            set_rlimit(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
            set_rlimit(libc::RLIMIT_CORE, 0, 0)?;
            // setuid binaries cannot raise the job's privileges.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if TERMINATE.load(Ordering::SeqCst) {
        return Err("cancelled before it started".into());
    }
    let child = command.spawn().map_err(|e| e.to_string())?;
    let pid = child.id() as libc::pid_t;
    // The command leads its own session and process group.
    GROUP.store(pid, Ordering::SeqCst);
    if TERMINATE.load(Ordering::SeqCst) {
        // SAFETY: killpg on the group we just made.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status of our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        if waited == pid {
            std::mem::forget(child);
            return Ok(std::process::ExitStatus::from_raw(status));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err.to_string());
        }
    }
}

/// Kills and reaps every descendant until none is left; returns how many
/// processes were reaped.
fn sweep() -> u32 {
    let me = std::process::id() as libc::pid_t;
    let group = GROUP.load(Ordering::SeqCst);
    let mut reaped = 0u32;
    loop {
        if group > 1 {
            // SAFETY: killpg on the job's group; ESRCH when it is gone.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        for pid in children_of(me) {
            // SAFETY: kill on a child of ours (re-parented descendants included).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: reaps any child of ours.
        let waited = unsafe { libc::waitpid(-1, &mut status, 0) };
        if waited > 0 {
            reaped += 1;
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // ECHILD: no children remain. Because we are a subreaper, orphans
            // are re-parented to us before their parent is reaped, so none
            // can be missed.
            _ => return reaped,
        }
    }
}

/// Pids whose parent is `parent` (from /proc/<pid>/stat).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: libc::pid_t = name.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields follow the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let ppid: libc::pid_t = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_round_trip() {
        assert_eq!(
            Outcome::parse("exit 3 leftovers 2\n"),
            Some(Outcome {
                exit_code: Some(3),
                signal: None,
                leftovers: 2
            })
        );
        assert_eq!(
            Outcome::parse("signal 9 leftovers 0"),
            Some(Outcome {
                exit_code: None,
                signal: Some(9),
                leftovers: 0
            })
        );
        assert_eq!(Outcome::parse("garbage"), None);
        let limits = JobRlimits {
            cpu_secs: 1,
            memory_bytes: 2,
            processes: 3,
            file_bytes: 4,
            open_files: 5,
        };
        assert_eq!(JobRlimits::parse(&limits.to_args()), Some(limits));
    }
}
