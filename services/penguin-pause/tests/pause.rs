//! The pause process waits until told to stop, and stops at once when told.

use std::{
    process::Command,
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_penguin-pause");

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn it_waits_until_sigterm_or_sigint_and_then_exits_zero() {
    for name in ["TERM", "INT"] {
        let mut child = Command::new(BIN).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "exited on its own");
        // A child's exit (SIGCHLD) does not end it.
        signal(child.id(), "CHLD");
        std::thread::sleep(Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "SIGCHLD ended it");
        let sent = Instant::now();
        signal(child.id(), name);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "SIG{name}");
        assert!(sent.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn it_has_a_version_and_refuses_anything_else() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("penguin-pause "));
    let out = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}
