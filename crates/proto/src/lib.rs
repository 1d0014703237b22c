//! Generated code for the public contract in `proto/` (package `lienthong.v1`).
//!
//! This crate holds nothing hand-written but the module wiring: the `.proto`
//! files are the source of truth and their comments are the documentation.
//! Code is generated at build time by protox + tonic-prost-build, so no
//! system `protoc` is needed.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Messages and services of `lienthong.v1`.
pub mod v1 {
    tonic::include_proto!("lienthong.v1");
    include!(concat!(env!("OUT_DIR"), "/lienthong.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of every file in `proto/`, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lienthong_descriptor");
