//! penguin-pause: what Kubernetes' `pause` container is to a pod. Under
//! docker compose it owns the pod's network namespace and published ports;
//! the tokenator and the api join it (`network_mode: service:pause`), so
//! either can die and restart without taking the other's network with it.
//!
//! It does nothing but wait: SIGTERM or SIGINT end it (exit 0), and as PID 1
//! it reaps any zombie re-parented to it on SIGCHLD.

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "--version" | "-V" => {
                println!("penguin-pause {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("usage: penguin-pause [--version]");
                ExitCode::from(64)
            }
        };
    }
    wait_for_termination();
    ExitCode::SUCCESS
}

/// Blocks the signals it cares about and takes them synchronously with
/// `sigwait`: as PID 1 a process gets no default signal handling, and this
/// needs no handler at all.
fn wait_for_termination() {
    // SAFETY: plain libc calls on a zeroed, then initialised, signal set owned
    // by this stack frame; no Rust state is shared with signal context.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut signal = 0;
            if libc::sigwait(&set, &mut signal) != 0 {
                continue;
            }
            if signal == libc::SIGCHLD {
                while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            } else {
                return;
            }
        }
    }
}
