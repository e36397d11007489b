//! Generates the gRPC code from proto/ (service.proto, chat.proto) with a pure-Rust
//! protobuf compiler, so building needs no `protoc` on the machine, and
//! keeps the encoded descriptors for server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/service.proto");
    println!("cargo:rerun-if-changed=proto/chat.proto");
    let descriptors = protox::compile(["service.proto", "chat.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("userservice_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
