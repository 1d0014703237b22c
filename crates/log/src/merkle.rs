//! RFC 6962 / RFC 9162 Merkle tree math over "stored hashes".
//!
//! The arithmetic is `tlog_tiles::tlog` (a port of Go's `sumdb/tlog`); this
//! module puts our storage trait and typed errors around it, and refuses the
//! inputs on which that code would overflow or panic.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use tlog_tiles::tlog::{self, Hash};

/// Largest tree size this crate computes over. `tlog_tiles` maps tree
/// coordinates to stored-hash indexes in a `u64` (index ≈ 2 × leaf number),
/// so sizes near `u64::MAX` would overflow; 2^62 leaves is far beyond any feed.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Longest proof a verifier looks at. An inclusion proof has at most 64
/// hashes and a consistency proof at most 65 for any `u64` size; anything
/// longer is garbage, refused before hashing.
pub const MAX_PROOF_HASHES: usize = 128;

/// Failure to compute over a log's stored hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A stored hash the computation needs is absent from the store.
    #[error(
        "stored hash {0} is missing: the hash store does not hold the whole tree \
         (were the hashes of every appended leaf persisted?)"
    )]
    MissingHash(u64),
    /// The backing store failed; the text says how.
    #[error("reading the log's stored hashes failed: {0}")]
    Storage(String),
    /// A leaf index outside the tree.
    #[error("leaf index {index} is not in a tree of size {size}: indexes run from 0 to size-1")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// Sizes between which no consistency proof exists.
    #[error(
        "there is no consistency proof from size {old} to size {new}: sizes must satisfy \
         0 < old ≤ new (every tree extends the empty tree, so nothing needs proving from size 0)"
    )]
    NoConsistencyProof {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
    /// A size beyond [`MAX_TREE_SIZE`].
    #[error("tree size {size} is beyond the supported maximum of 2^62 leaves")]
    TooLarge {
        /// The size asked for.
        size: u64,
    },
    /// `tlog_tiles` refused a request that our own checks let through.
    #[error(
        "tlog_tiles refused the request ({0}); this is a bug in lienthong-log, please report it"
    )]
    Unexpected(String),
}

/// A proof that does not check out, or that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The inclusion proof does not lead from the leaf to the root.
    #[error(
        "the inclusion proof does not lead to the expected root: the entry, its index, \
         the tree size or the root differs from what the log committed to"
    )]
    InclusionMismatch,
    /// The consistency proof does not connect the two roots.
    #[error(
        "the consistency proof does not connect the two tree heads: the newer tree does not \
         extend the older one as given (a forked or rewritten log, or a wrong root or size)"
    )]
    ConsistencyMismatch,
    /// A leaf index outside the tree.
    #[error("leaf index {index} is not in a tree of size {size}: indexes run from 0 to size-1")]
    IndexOutOfRange {
        /// The leaf index given.
        index: u64,
        /// The tree size given.
        size: u64,
    },
    /// Sizes between which no consistency proof exists.
    #[error(
        "there is no consistency proof from size {old} to size {new}: sizes must satisfy \
         0 < old ≤ new (every tree extends the empty tree, so nothing needs proving from size 0)"
    )]
    NoConsistencyProof {
        /// The older size given.
        old: u64,
        /// The newer size given.
        new: u64,
    },
    /// More hashes than any proof can have.
    #[error("the proof has {len} hashes, more than any proof can have ({max}); it is not a proof")]
    TooLong {
        /// Hashes in the proof.
        len: usize,
        /// [`MAX_PROOF_HASHES`].
        max: usize,
    },
}

/// Where a log's stored hashes live.
///
/// The layout is Go `sumdb/tlog`'s: every leaf hash and every hash of a
/// complete subtree has a dense index ([`tlog_tiles::tlog::stored_hash_index`]),
/// written once when the leaf that completes it is appended (see
/// [`hashes_to_store`]). A key-value store keyed by that index is enough to
/// answer roots and proofs with O(log n) reads.
pub trait HashStore {
    /// The hashes at these stored-hash indexes, in the same order.
    ///
    /// An absent index is [`LogError::MissingHash`]; a failing backend is
    /// [`LogError::Storage`].
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError>;
}

impl<S: HashStore + ?Sized> HashStore for &S {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        (**self).read_hashes(indexes)
    }
}

/// A [`HashStore`] that remembers every hash it has read from another.
///
/// Inclusion proofs of neighbouring leaves under one tree size share most
/// of their hashes (and the hashes of the tree's incomplete right edge):
/// proving 256 consecutive entries reads a few hundred distinct hashes, not
/// thousands. Stored hashes never change once written, so a cache can
/// never be stale; keep one for as long as one batch of proofs.
#[derive(Debug)]
pub struct CachedHashes<S> {
    inner: S,
    seen: RefCell<HashMap<u64, Hash>>,
}

impl<S: HashStore> CachedHashes<S> {
    /// Reads through to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            seen: RefCell::new(HashMap::new()),
        }
    }

    /// The store it reads through.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: HashStore> HashStore for CachedHashes<S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let missing: Vec<u64> = {
            let seen = self.seen.borrow();
            indexes
                .iter()
                .copied()
                .filter(|i| !seen.contains_key(i))
                .collect()
        };
        if !missing.is_empty() {
            let found = self.inner.read_hashes(&missing)?;
            if found.len() != missing.len() {
                return Err(LogError::Storage(format!(
                    "the hash store returned {} hashes for {} indexes",
                    found.len(),
                    missing.len()
                )));
            }
            self.seen
                .borrow_mut()
                .extend(missing.into_iter().zip(found));
        }
        let seen = self.seen.borrow();
        indexes
            .iter()
            .map(|i| seen.get(i).copied().ok_or(LogError::MissingHash(*i)))
            .collect()
    }
}

/// Presents a [`HashStore`] as the `HashReader` that `tlog_tiles` expects,
/// keeping our error: `tlog_tiles` can only carry its own error type through.
struct Reader<'a, S: ?Sized> {
    store: &'a S,
    failure: RefCell<Option<LogError>>,
}

impl<'a, S: HashStore + ?Sized> Reader<'a, S> {
    fn new(store: &'a S) -> Self {
        Self {
            store,
            failure: RefCell::new(None),
        }
    }

    /// Our error for a failed `tlog_tiles` call.
    fn error(&self, e: tlog::Error) -> LogError {
        self.failure
            .take()
            .unwrap_or_else(|| LogError::Unexpected(e.to_string()))
    }
}

impl<S: HashStore + ?Sized> tlog::HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        // tlog_tiles asks for nothing when appending an even-numbered leaf;
        // that must not touch the store.
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let result = match self.store.read_hashes(indexes) {
            // tlog_tiles asserts on the length; a short answer must be an error, not a panic.
            Ok(hashes) if hashes.len() == indexes.len() => return Ok(hashes),
            Ok(hashes) => LogError::Storage(format!(
                "the hash store returned {} hashes for {} indexes",
                hashes.len(),
                indexes.len()
            )),
            Err(e) => e,
        };
        *self.failure.borrow_mut() = Some(result);
        Err(tlog::Error::IndexesNotInTree)
    }
}

fn check_size(size: u64) -> Result<(), LogError> {
    if size > MAX_TREE_SIZE {
        return Err(LogError::TooLarge { size });
    }
    Ok(())
}

/// The leaf hash of an envelope, which is also the entry id:
/// SHA-256(0x00 ‖ envelope) (RFC 6962 §2.1).
pub fn leaf_hash(envelope: &[u8]) -> Hash {
    tlog::record_hash(envelope)
}

/// The stored hashes to persist when appending leaf number `n` (0-based)
/// whose leaf hash is `leaf`, given a store holding every stored hash of
/// leaves `0..n`. Returns `(stored hash index, hash)` pairs in index order:
/// the leaf hash first, then one hash per subtree this leaf completes.
pub fn hashes_to_store(
    n: u64,
    leaf: Hash,
    store: &impl HashStore,
) -> Result<Vec<(u64, Hash)>, LogError> {
    check_size(n.saturating_add(1))?;
    let reader = Reader::new(store);
    let hashes =
        tlog::stored_hashes_for_record_hash(n, leaf, &reader).map_err(|e| reader.error(e))?;
    let first = tlog::stored_hash_index(0, n);
    Ok((first..).zip(hashes).collect())
}

/// The compact range of the leaves `[0, size)`: the roots of the complete
/// subtrees in its left-to-right decomposition, largest first (one per bit
/// set in `size`). With them and the leaves from `size` on, anyone can
/// compute the root of every later tree size.
pub fn compact_range(size: u64, store: &impl HashStore) -> Result<Vec<Hash>, LogError> {
    check_size(size)?;
    let mut indexes = Vec::with_capacity(size.count_ones() as usize);
    let mut offset = 0u64;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            indexes.push(tlog::stored_hash_index(level, offset >> level));
            offset += width;
        }
    }
    let hashes = store.read_hashes(&indexes)?;
    if hashes.len() != indexes.len() {
        return Err(LogError::Storage(format!(
            "the hash store returned {} hashes for {} indexes",
            hashes.len(),
            indexes.len()
        )));
    }
    Ok(hashes)
}

/// Root hash of the tree made of the first `size` leaves (RFC 9162 §2.1.1;
/// the empty tree's root is SHA-256 of the empty string).
pub fn tree_root(size: u64, store: &impl HashStore) -> Result<Hash, LogError> {
    check_size(size)?;
    let reader = Reader::new(store);
    tlog::tree_hash(size, &reader).map_err(|e| reader.error(e))
}

/// Inclusion proof (audit path, leaf to root) of leaf `index` in the tree of
/// the first `tree_size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(
    index: u64,
    tree_size: u64,
    store: &impl HashStore,
) -> Result<Vec<Hash>, LogError> {
    check_size(tree_size)?;
    if index >= tree_size {
        return Err(LogError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let reader = Reader::new(store);
    tlog::prove_record(tree_size, index, &reader).map_err(|e| reader.error(e))
}

/// Checks that `proof` shows leaf hash `leaf` at `index` in the tree of
/// size `tree_size` whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: Hash,
    proof: &[Hash],
    root: Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong {
            len: proof.len(),
            max: MAX_PROOF_HASHES,
        });
    }
    tlog::check_record(&proof.to_vec(), tree_size, root, index, leaf)
        .map_err(|_| ProofError::InclusionMismatch)
}

/// Consistency proof that the tree of size `new_size` extends the tree of
/// size `old_size` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    store: &impl HashStore,
) -> Result<Vec<Hash>, LogError> {
    check_size(new_size)?;
    if old_size == 0 || old_size > new_size {
        return Err(LogError::NoConsistencyProof {
            old: old_size,
            new: new_size,
        });
    }
    let reader = Reader::new(store);
    tlog::prove_tree(new_size, old_size, &reader).map_err(|e| reader.error(e))
}

/// Checks that `proof` shows the tree (`new_size`, `new_root`) extends the
/// tree (`old_size`, `old_root`) (RFC 9162 §2.1.4.2). Equal sizes need an
/// empty proof and equal roots.
pub fn verify_consistency(
    old_size: u64,
    old_root: Hash,
    new_size: u64,
    new_root: Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::NoConsistencyProof {
            old: old_size,
            new: new_size,
        });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong {
            len: proof.len(),
            max: MAX_PROOF_HASHES,
        });
    }
    tlog::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root)
        .map_err(|_| ProofError::ConsistencyMismatch)
}

/// A whole log's stored hashes in memory: for verifiers that rebuild a tree
/// from its entries, for tools and for tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryHashStore {
    /// Indexed by stored-hash index, which is dense: appending leaf `n`
    /// writes exactly the indexes that follow the last one written.
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
        for (index, hash) in hashes_to_store(n, leaf, self)? {
            if index != self.hashes.len() as u64 {
                return Err(LogError::Unexpected(format!(
                    "stored hash {index} is not the next one"
                )));
            }
            self.hashes.push(hash);
        }
        self.size += 1;
        Ok(n)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Result<Hash, LogError> {
        tree_root(self.size, self)
    }
}

impl HashStore for MemoryHashStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(LogError::MissingHash(i))
            })
            .collect()
    }
}

/// Stored hashes not yet persisted, in front of a store.
///
/// A writer appending a batch computes each leaf's hashes against the overlay
/// (so leaf `n+1` sees the hashes of leaf `n`), inserts them, signs a
/// checkpoint over the overlay, then persists [`OverlayHashStore::into_pending`]
/// together with the entries in one atomic write.
pub struct OverlayHashStore<'a, S: HashStore> {
    base: &'a S,
    pending: HashMap<u64, Hash>,
}

impl<'a, S: HashStore> OverlayHashStore<'a, S> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a S) -> Self {
        Self {
            base,
            pending: HashMap::new(),
        }
    }

    /// Adds a hash that is not yet in the base store.
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.pending.insert(index, hash);
    }

    /// Number of pending hashes.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes the pending hashes, sorted by index, leaving the overlay empty.
    pub fn drain(&mut self) -> Vec<(u64, Hash)> {
        let mut v: Vec<_> = self.pending.drain().collect();
        v.sort_unstable_by_key(|(i, _)| *i);
        v
    }

    /// The pending hashes, sorted by index.
    pub fn into_pending(mut self) -> Vec<(u64, Hash)> {
        self.drain()
    }
}

impl<S: HashStore> fmt::Debug for OverlayHashStore<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayHashStore")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S: HashStore> HashStore for OverlayHashStore<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| !self.pending.contains_key(i))
            .collect();
        let from_base = if missing.is_empty() {
            Vec::new()
        } else {
            self.base.read_hashes(&missing)?
        };
        if from_base.len() != missing.len() {
            return Err(LogError::Storage(format!(
                "the hash store returned {} hashes for {} indexes",
                from_base.len(),
                missing.len()
            )));
        }
        let mut from_base = from_base.into_iter();
        indexes
            .iter()
            .map(|i| match self.pending.get(i) {
                Some(h) => Ok(*h),
                None => from_base.next().ok_or(LogError::MissingHash(*i)),
            })
            .collect()
    }
}
