//! Compiles `proto/push.proto` with protox, a pure-Rust protobuf parser, so
//! building needs no `protoc` binary.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let push_proto = proto_dir.join("push.proto");
    println!("cargo:rerun-if-changed={}", push_proto.display());

    let descriptors = protox::compile([&push_proto], [&proto_dir])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
