//! Compiles proto/ with protox (a pure-Rust protobuf compiler), so building
//! needs no system `protoc`; writes the descriptor set used by gRPC server
//! reflection and the proto3 JSON (serde) implementations.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "lienthong/v1/entry.proto",
        "lienthong/v1/alerts.proto",
        "lienthong/v1/audit.proto",
        "lienthong/v1/federation.proto",
        "lienthong/v1/bundle.proto",
        "lienthong/v1/cases.proto",
        "lienthong/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("lienthong_descriptor.bin"), &descriptor)?;
    // Proto3 JSON mapping (camelCase names, enum names as strings), so
    // people can write alerts as JSON files for the CLI.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .btree_map(["."])
        .build(&[".lienthong.v1"])?;
    // Maps as BTreeMap: printed and serialised in a stable order.
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
