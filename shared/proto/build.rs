//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let out = PathBuf::from(env::var("OUT_DIR")?);
    for (name, file) in [
        ("tokenator", "penguin/tokenator/v1/tokenator.proto"),
        ("runner", "penguin/runner/v1/runner.proto"),
    ] {
        let fds = protox::compile([proto_root.join(file)], [&proto_root])?;
        // Reflection serves this set, so stock tools (grpcurl) can list the service.
        fs::write(
            out.join(format!("{name}_descriptor.bin")),
            fds.encode_to_vec(),
        )?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
