use std::path::PathBuf;

/// What can go wrong in the store. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store does not belong to the configured member, or was written
    /// by an incompatible version.
    #[error("the store in {dir} {problem}")]
    Mismatch {
        /// Store directory.
        dir: PathBuf,
        /// What does not match and what to do.
        problem: String,
    },
    /// The feed on disk does not match what this node already signed.
    #[error("store integrity check failed: {0}")]
    Integrity(String),
    /// A record could not be decoded.
    #[error(
        "corrupt record {key}: {detail}; restore the store from a backup, then check it with `lienthong feed verify`"
    )]
    Corrupt {
        /// Which key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An earlier write failed; the store refuses further writes.
    #[error(
        "the store refuses writes: {0}. Fix that cause, then restart the node (a failed write, e.g. a full disk or wrong permissions, also stops it until restart)"
    )]
    Failed(String),
    /// An own entry would be larger, signed, than any reader accepts
    /// ([`lienthong_core::entry::MAX_ENVELOPE_BYTES`]). Nothing was stored.
    #[error(
        "the entry would be {bytes} bytes once signed, over the {limit}-byte limit of an entry, so nothing was stored: make its text, subjects or attachments smaller (a case event also carries the case's earlier events when it brings in new members: invite several provinces in one invitation rather than one by one)"
    )]
    TooLarge {
        /// Size the signed envelope would have, at most.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The writer thread is gone (the node is shutting down).
    #[error("the node is shutting down")]
    Closed,
    /// A proof or range was asked for outside what is checkpointed.
    #[error("{0}")]
    OutOfRange(String),
    /// Merkle computation failed (missing hashes).
    #[error("merkle log: {0}")]
    Log(#[from] lienthong_log::LogError),
    /// Signing a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] lienthong_log::CheckpointError),
}

impl StoreError {
    /// Whether sled could not take the database's file lock: another
    /// handle, in this process or another, has the store open.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
    }
}
