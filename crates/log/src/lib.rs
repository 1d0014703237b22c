//! The Merkle log behind every member's feed: RFC 6962 hashes, roots and
//! proofs over stored hashes, C2SP checkpoints signed as C2SP signed notes,
//! and C2SP tlog-cosignature witness signatures.
//!
//! **Sans-io.** This crate never touches a disk, a socket or the clock:
//! storage is behind the [`HashStore`] trait (Go `sumdb/tlog` "stored hash"
//! layout, so a key-value store holds a log of any size and answers a proof
//! with O(log n) reads), and times are parameters. It never panics on input
//! and has no `unsafe`.
//!
//! It is a thin, typed layer over the `tlog_tiles` and `signed_note` crates,
//! which implement the math and the formats; the point of this layer is
//! errors that say what is wrong, and types that prove a check happened.
//!
//! - Appending: [`leaf_hash`] (the entry id), [`hashes_to_store`],
//!   [`tree_root`]; [`MemoryHashStore`] and [`OverlayHashStore`] (a batch not
//!   yet persisted).
//! - Proofs (RFC 9162 §2.1.3–2.1.4): [`inclusion_proof`] / [`verify_inclusion`],
//!   [`consistency_proof`] / [`verify_consistency`].
//! - Checkpoints: [`NoteSigner`], [`sign_checkpoint`], and
//!   [`verify_checkpoint`] / [`verify_checkpoint_with_key`], the only ways to
//!   get a [`VerifiedCheckpoint`] ([`SeenCheckpoints`] remembers what the
//!   latter verified, to answer the same question again without the
//!   signature check); keys as vkeys with [`vkey_string`] / [`parse_vkey`].
//! - Witnesses: [`cosign`] and [`verify_cosignature`] /
//!   [`verify_cosignature_in_note`] (cosignature/v1, key type 0x04).

mod checkpoint;
mod cosignature;
mod merkle;
mod seen;

pub use checkpoint::{
    CheckpointError, NoteSigner, TreeHead, VerifiedCheckpoint, is_valid_key_name, parse_vkey,
    sign_checkpoint, verify_checkpoint, verify_checkpoint_with_key, verify_note, vkey_string,
};
pub use cosignature::{
    CosignatureError, CosignatureLine, MAX_COSIGNATURE_TIME, SIG_TYPE_COSIGNATURE_V1,
    VerifiedCosignature, cosign, cosignature_key_id, cosignature_message, cosigner_vkey_string,
    verify_cosignature, verify_cosignature_in_note,
};
pub use merkle::{
    CachedHashes, HashStore, LogError, MAX_PROOF_HASHES, MAX_TREE_SIZE, MemoryHashStore,
    OverlayHashStore, ProofError, compact_range, consistency_proof, hashes_to_store,
    inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
};
pub use seen::{GENERATION_BYTES, MAX_REMEMBERED_NOTE, SeenCheckpoints};
pub use tlog_tiles::tlog::Hash;
