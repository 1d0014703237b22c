//! The audit bundle of Liên Thông: one file holding a member's feed (and
//! what it received from others) with every signature and proof an
//! auditor needs, and the verifier that checks it without trusting any
//! node.
//!
//! This crate never trusts a bundle: every entry, checkpoint and manifest
//! version carries its own signature, and every hash the bundle provides
//! (compact-range prefixes, inclusion and consistency proofs) is checked
//! against a signed root. It never touches the network or the clock; the
//! only I/O is reading and writing the byte streams it is given.
//!
//! - [`BundleWriter`]: writes a bundle (the node's `lienthong audit export`).
//! - [`BundleReader`]: reads one record at a time (for tools).
//! - [`verify()`]: checks one or more bundles against [`TrustAnchor`]s and
//!   returns a [`Report`] (JSON via serde), calling back with [`Progress`].
//! - [`compact`]: the Merkle math a streaming verifier needs.
//!
//! The format is specified in `docs/audit-format.md` and, field by field,
//! in `proto/lienthong/v1/bundle.proto`:
//!
//! ```text
//! header · manifest v1 · manifest v2 · …
//! segment_start(author, a, prefix) · entry a · entry a+1 · checkpoint(size a+2) · … · segment_end(b)
//! checkpoint (of another feed) · received_entry · received_entry · …
//! consistency_proof · evidence · …
//! end(records, bytes, SHA-256 of all before, exporter's signature)
//! ```

pub mod compact;
mod framing;
mod keys;
pub mod read;
pub mod report;
pub mod verify;
pub mod write;

pub use compact::{CompactRange, compact_prefix, root_from_inclusion_proof};
pub use framing::FrameError;
pub use keys::{AnchorError, TrustAnchor};
pub use read::{BundleReader, ReadError, Record};
pub use report::{
    AnchorSummary, BundleSummary, Check, CheckCount, Deliveries, Failure, FeedSummary, KeyUse,
    Location, Progress, REPORT_FORMAT, Report, SegmentSummary, Verdict, Warning,
};
pub use verify::{BundleInput, VerifyOptions, verify};
pub use write::{BundleWriter, ExportInfo, WriteError};

/// The header's format string for the bundles this crate reads and writes.
pub const FORMAT: &str = "lienthong-audit-bundle/v1";

/// Domain separation tag of the exporter's signature in the end record.
pub const BUNDLE_SIGNING_DOMAIN: &[u8] = b"lienthong:audit-bundle:v1\n";

/// Largest record, bytes (without its length prefix). An envelope is at
/// most 1 MiB; this leaves room for the largest manifest and evidence.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// What the exporter signs: the domain tag, then the SHA-256 of every byte
/// of the bundle before the end record.
pub fn bundle_signing_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(BUNDLE_SIGNING_DOMAIN.len() + 32);
    m.extend_from_slice(BUNDLE_SIGNING_DOMAIN);
    m.extend_from_slice(digest);
    m
}
