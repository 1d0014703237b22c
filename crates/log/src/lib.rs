//! The Merkle log behind every member's feed, and its signed checkpoints.
//!
//! Sans-io: no disk, no socket, no clock (times are parameters). Storage is
//! behind [`HashStore`], in the layout of Go's `sumdb/tlog` ("stored hash
//! indexes"), so a key-value store can hold a log of any size and answer
//! proofs with O(log n) reads.
//!
//! Built on the `tlog_tiles` and `signed_note` crates, which implement
//! RFC 6962 hashing and proofs, C2SP tlog-checkpoint and C2SP signed-note;
//! this crate adds typed errors and the types the rest of the node uses:
//!
//! - [`leaf_hash`], [`hashes_to_store`], [`tree_root`]: appending and roots;
//! - [`inclusion_proof`]/[`verify_inclusion`],
//!   [`consistency_proof`]/[`verify_consistency`] (RFC 9162 §2.1.3–2.1.4);
//! - [`sign_checkpoint`]/[`verify_checkpoint`] and [`VerifiedCheckpoint`],
//!   which only verification can make;
//! - [`cosign`]/[`verify_cosignature`]: C2SP tlog-cosignature/v1.

mod checkpoint;
mod merkle;

pub use checkpoint::{
    CheckpointError, NoteSigner, TreeHead, VerifiedCheckpoint, cosign, cosignature_key_id, is_valid_key_name, parse_vkey, sign_checkpoint,
    verify_checkpoint, verify_checkpoint_with_key, verify_cosignature, vkey_string,
};
pub use merkle::{
    HashStore, LogError, MemoryHashStore, OverlayHashStore, ProofError, consistency_proof, hashes_to_store, inclusion_proof, leaf_hash, tree_root,
    verify_consistency, verify_inclusion,
};
pub use tlog_tiles::tlog::Hash;
