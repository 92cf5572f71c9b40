//! Property tests generated from the OpenAPI document by schemathesis: with
//! the model stand-in configured, no input gets a 5xx.
//!
//! schemathesis comes from PyPI; `scripts/test` installs it into `.venv`.
//! This test fails (it does not skip) when it cannot find it.

use llm_standin::LlmStandIn;
use penguin_test_support::api::{self, Api, KEY};
use std::path::PathBuf;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("PENGUIN_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let venv = penguin_test_support::workspace_root().join(".venv/bin/st");
    assert!(
        venv.exists(),
        "schemathesis not found: run scripts/test (it installs it into .venv) or set PENGUIN_SCHEMATHESIS"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_request_gets_a_server_error() {
    let st = schemathesis();
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("RUST_LOG".into(), "info".into());
    // Generated logins with wrong keys would soon lock this address out
    // (429 for every request) and leave nothing fuzzed.
    env.insert("PENGUIN_AUTH_FAILURES_PER_MINUTE".into(), "1000000".into());
    env.insert(
        "GITHUB_WEBHOOK_SECRET".into(),
        "It's a Secret to Everybody".into(),
    );
    let api = Api::start(BIN, env).await;
    let report = dir.path().join("schemathesis");
    let output = tokio::process::Command::new(st)
        .arg("run")
        .arg(api.url("/api/openapi.json"))
        .args(["--checks", "not_a_server_error"])
        .args(["--header", &format!("X-API-Key: {KEY}")])
        .args(["--max-examples", "30", "--seed", "1", "--workers", "2"])
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
        ])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}\n--- server logs ---\n{}",
        api.process
            .logs()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("panic"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // It really exercised the API: every operation was tested with many cases.
    println!("{stdout}");
    // Schemathesis prints e.g. "  1120 generated, 1120 passed" under "Test cases:".
    let summary = stdout
        .lines()
        .find(|l| l.contains(" generated,"))
        .unwrap_or_default()
        .to_string();
    let cases: u64 = summary
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(
        cases >= 300,
        "too few generated cases: {summary:?}\n{stdout}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!api.process.logs().contains("panicked"));
}
