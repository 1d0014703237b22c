//! RFC 6962 Merkle tree over stored hashes.

use std::collections::HashMap;

use tlog_tiles::tlog::{self, Hash};

/// Failure to compute over the stored hashes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// A stored hash that must exist is absent.
    #[error("stored hash {0} is missing: the log store is incomplete")]
    MissingHash(u64),
    /// The backing store failed.
    #[error("reading stored hashes: {0}")]
    Storage(String),
    /// Arguments out of range (e.g. index ≥ size).
    #[error("invalid log request: {0}")]
    Invalid(String),
}

/// A proof did not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The proof does not lead to the expected root.
    #[error("proof does not verify: the entry or the tree differs from what was signed")]
    Mismatch,
    /// Sizes or indexes that no proof can relate.
    #[error("invalid proof request: {0}")]
    Invalid(String),
}

/// Where a log's stored hashes live (see `tlog_tiles::tlog::stored_hash_index`).
pub trait HashStore {
    /// The hashes at these stored-hash indexes, in order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError>;
}

/// Adapter from our trait to the one `tlog_tiles` expects.
struct Reader<'a, S: ?Sized>(&'a S);

impl<S: HashStore + ?Sized> tlog::HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let v = self.0.read_hashes(indexes).map_err(|_| tlog::Error::IndexesNotInTree)?;
        if v.len() != indexes.len() {
            return Err(tlog::Error::IndexesNotInTree);
        }
        Ok(v)
    }
}

fn from_tlog(e: tlog::Error) -> LogError {
    LogError::Invalid(e.to_string())
}

/// The leaf hash (and entry id) of an envelope: SHA-256(0x00 ‖ data).
pub fn leaf_hash(envelope: &[u8]) -> Hash {
    tlog::record_hash(envelope)
}

/// The stored hashes to add when appending leaf number `n` with hash
/// `leaf`, given a store holding every hash of leaves below `n`.
pub fn hashes_to_store(n: u64, leaf: Hash, store: &impl HashStore) -> Result<Vec<(u64, Hash)>, LogError> {
    let hashes = tlog::stored_hashes_for_record_hash(n, leaf, &Reader(store)).map_err(|e| reader_error(store, n, e))?;
    let first = tlog::stored_hash_index(0, n);
    Ok(hashes.into_iter().enumerate().map(|(k, h)| (first + k as u64, h)).collect())
}

/// Distinguishes "store failed" from "bad arguments" after a tlog error.
fn reader_error(_store: &impl HashStore, _n: u64, e: tlog::Error) -> LogError {
    match e {
        tlog::Error::IndexesNotInTree => LogError::Storage("a needed hash could not be read".into()),
        other => from_tlog(other),
    }
}

/// Root hash of the tree of the first `size` leaves.
pub fn tree_root(size: u64, store: &impl HashStore) -> Result<Hash, LogError> {
    tlog::tree_hash(size, &Reader(store)).map_err(|e| reader_error(store, size, e))
}

/// Inclusion proof of leaf `index` in the tree of `tree_size` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(index: u64, tree_size: u64, store: &impl HashStore) -> Result<Vec<Hash>, LogError> {
    if index >= tree_size {
        return Err(LogError::Invalid(format!("index {index} is not below tree size {tree_size}")));
    }
    tlog::prove_record(tree_size, index, &Reader(store)).map_err(|e| reader_error(store, index, e))
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, tree_size: u64, leaf: Hash, proof: &[Hash], root: Hash) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::Invalid(format!("index {index} is not below tree size {tree_size}")));
    }
    tlog::check_record(&proof.to_vec(), tree_size, root, index, leaf).map_err(|_| ProofError::Mismatch)
}

/// Consistency proof from `old_size` to `new_size` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(old_size: u64, new_size: u64, store: &impl HashStore) -> Result<Vec<Hash>, LogError> {
    if old_size == 0 || old_size > new_size {
        return Err(LogError::Invalid(format!("no consistency proof from {old_size} to {new_size}: need 0 < old ≤ new")));
    }
    tlog::prove_tree(new_size, old_size, &Reader(store)).map_err(|e| reader_error(store, old_size, e))
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old_size: u64, old_root: Hash, new_size: u64, new_root: Hash, proof: &[Hash]) -> Result<(), ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::Invalid(format!("no consistency between sizes {old_size} and {new_size}")));
    }
    tlog::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root).map_err(|_| ProofError::Mismatch)
}

/// A log held in memory: for verifiers, tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemoryHashStore {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryHashStore {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a leaf hash; returns its index.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, LogError> {
        let n = self.size;
        for (i, h) in hashes_to_store(n, leaf, self)? {
            debug_assert_eq!(i, self.hashes.len() as u64);
            self.hashes.push(h);
        }
        self.size += 1;
        Ok(n)
    }
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Current root.
    pub fn root(&self) -> Result<Hash, LogError> {
        tree_root(self.size, self)
    }
}

impl HashStore for MemoryHashStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes.iter().map(|&i| usize::try_from(i).ok().and_then(|i| self.hashes.get(i)).copied().ok_or(LogError::MissingHash(i))).collect()
    }
}

/// Hashes not yet persisted, in front of a store: a writer appends a whole
/// batch here, then persists [`OverlayHashStore::into_pending`] at once.
pub struct OverlayHashStore<'a, S: HashStore> {
    base: &'a S,
    pending: HashMap<u64, Hash>,
}

impl<'a, S: HashStore> OverlayHashStore<'a, S> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a S) -> Self {
        Self { base, pending: HashMap::new() }
    }
    /// Adds a hash that is not yet in the base store.
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.pending.insert(index, hash);
    }
    /// The pending hashes, sorted by index.
    pub fn into_pending(self) -> Vec<(u64, Hash)> {
        let mut v: Vec<_> = self.pending.into_iter().collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }
}

impl<S: HashStore> HashStore for OverlayHashStore<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let missing: Vec<u64> = indexes.iter().copied().filter(|i| !self.pending.contains_key(i)).collect();
        let mut from_base = if missing.is_empty() { Vec::new() } else { self.base.read_hashes(&missing)? }.into_iter();
        indexes
            .iter()
            .map(|i| match self.pending.get(i) {
                Some(h) => Ok(*h),
                None => from_base.next().ok_or(LogError::MissingHash(*i)),
            })
            .collect()
    }
}
