//! Where another workspace package's binary is.
//!
//! `env!("CARGO_BIN_EXE_<name>")` exists only in the package that owns the
//! binary, so the helpers that start a service take the binary's path: the
//! owning package passes `env!(…)`, and any other test crate asks
//! [`workspace_binary`], which looks where cargo puts binaries: beside the
//! `deps/` directory holding the running test executable
//! (`target/<profile>/<name>`). `cargo nextest run --workspace` (and
//! `cargo test --workspace`) build every workspace binary before any test
//! runs, and nextest's archives keep that layout when they move the target
//! directory, which a path compiled in with `env!` would not survive.

use std::path::PathBuf;

/// The workspace binary `name` built with the running test executable's
/// profile. Panics, saying how to build it, when it is not there (a run of
/// one package with `-p` builds only that package's binaries).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.pop();
    }
    let binary = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is not built: run the tests with --workspace, or `cargo build --bin {name}` first",
        binary.display()
    );
    binary
}
