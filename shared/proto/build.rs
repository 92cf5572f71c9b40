//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = proto_root.join("penguin/tokenator/v1/tokenator.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile([&file], [&proto_root])?;
    // Reflection serves this set, so stock tools (grpcurl) can list the service.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("tokenator_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
