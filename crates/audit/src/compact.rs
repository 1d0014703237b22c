//! Merkle math a streaming verifier needs and `lienthong_log` does not
//! offer: the compact range (RFC 6962 roots of a growing tree in O(log n)
//! memory) and the root an inclusion proof leads to.
//!
//! Hashing is RFC 6962 / RFC 9162: leaf = SHA-256(0x00 ‖ data), interior =
//! SHA-256(0x01 ‖ left ‖ right).
//!
//! ```text
//! leaves 0..6 (size 6 = 0b110):   [ h(0..4) , h(4..6) ]      one hash per set bit, largest first
//! append leaf 6              →    [ h(0..4) , h(4..6) , h(6) ]
//! append leaf 7              →    [ h(0..8) ]                 h(6..8) = node(h6, h7), then node(h(4..6), h(6..8)), …
//! root = node(s1, node(s2, … node(s_{k-1}, s_k)))             folded from the right
//! ```

use lienthong_log::Hash;
use sha2::{Digest, Sha256};

/// `SHA-256(0x01 ‖ left ‖ right)`, an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The hashes of the complete subtrees that make up the leaves `[0, size)`,
/// largest (leftmost) first, as the tree grows leaf by leaf.
///
/// This is all a verifier needs to compute the root of every tree size it
/// passes, so a segment of a feed that starts at index `a` can be checked
/// from `a`'s compact range without the earlier leaves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

/// A compact range whose hash count does not match its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a compact range of size {size} has exactly {expected} hashes (one per bit set in the size), not {found}"
)]
pub struct CompactRangeError {
    /// The size given.
    pub size: u64,
    /// Hashes it must have.
    pub expected: usize,
    /// Hashes given.
    pub found: usize,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of `size` leaves described by `hashes` (largest subtree
    /// first). The hashes are taken on trust: a verifier authenticates them
    /// by comparing a later [`CompactRange::root`] with a signed root.
    pub fn from_prefix(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(CompactRangeError {
                size,
                expected,
                found: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree hashes, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash (the entry id of the next entry).
    pub fn append(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut n = self.size;
        // Each trailing 1 bit of the old size is a subtree of the same
        // height as the one being carried: merge them, as in binary addition.
        while n & 1 == 1 {
            match self.hashes.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                // Unreachable: one hash per set bit is an invariant.
                None => break,
            }
            n >>= 1;
        }
        self.hashes.push(hash);
        self.size = self.size.saturating_add(1);
    }

    /// The RFC 6962 root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The root that an RFC 9162 §2.1.3.2 inclusion proof leads to, from leaf
/// hash `leaf` at `index` in a tree of `size` leaves; `None` if the proof
/// cannot be one for that position (wrong length, index outside the tree).
///
/// Comparing the result with a signed root is exactly the RFC's check; it
/// is split this way so the hashing can run before the root is known.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: Hash,
    proof: &[Hash],
) -> Option<Hash> {
    if index >= size || proof.len() > lienthong_log::MAX_PROOF_HASHES {
        return None;
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = leaf;
    for p in proof {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// The compact range of the leaves `[0, size)` of a log whose stored hashes
/// are in `store`: what an exporter writes in a segment's `prefix` (the
/// one implementation lives in `lienthong_log`).
pub fn compact_prefix(
    size: u64,
    store: &impl lienthong_log::HashStore,
) -> Result<Vec<Hash>, lienthong_log::LogError> {
    lienthong_log::compact_range(size, store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_log::{MemoryHashStore, inclusion_proof, leaf_hash, tree_root};
    use proptest::prelude::*;

    fn store(n: u64) -> MemoryHashStore {
        let mut s = MemoryHashStore::new();
        for i in 0..n {
            s.append(leaf_hash(format!("leaf {i}").as_bytes())).unwrap();
        }
        s
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        // RFC 9162 §2.1.1: MTH({}) = SHA-256().
        assert_eq!(
            hex::encode(CompactRange::new().root().0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn roots_match_the_log_crate_at_every_size() {
        let s = store(70);
        let mut r = CompactRange::new();
        for i in 0..70u64 {
            assert_eq!(r.root(), tree_root(i, &s).unwrap(), "size {i}");
            r.append(leaf_hash(format!("leaf {i}").as_bytes()));
        }
        assert_eq!(r.root(), tree_root(70, &s).unwrap());
    }

    #[test]
    fn a_wrong_number_of_prefix_hashes_is_refused() {
        let e = CompactRange::from_prefix(6, vec![Hash([0; 32])]).unwrap_err();
        assert_eq!((e.expected, e.found), (2, 1));
    }

    proptest! {
        /// Starting from the stored prefix at any `a` and appending the rest
        /// gives the same roots as the whole tree.
        #[test]
        fn prefix_then_append_equals_whole_tree(a in 0u64..90, extra in 0u64..40) {
            let n = a + extra;
            let s = store(n);
            let prefix = compact_prefix(a, &s).unwrap();
            let mut r = CompactRange::from_prefix(a, prefix).unwrap();
            prop_assert_eq!(r.root(), tree_root(a, &s).unwrap());
            for i in a..n {
                r.append(leaf_hash(format!("leaf {i}").as_bytes()));
                prop_assert_eq!(r.root(), tree_root(i + 1, &s).unwrap());
            }
        }

        /// The root an inclusion proof leads to is the tree's root, exactly
        /// when lienthong_log's RFC 9162 check accepts it.
        #[test]
        fn inclusion_root_agrees_with_the_log_crate(
            size in 1u64..80, index in any::<prop::sample::Index>(), flip in any::<Option<(prop::sample::Index, u8)>>()
        ) {
            let s = store(size);
            let i = index.index(size as usize) as u64;
            let mut proof = inclusion_proof(i, size, &s).unwrap();
            let flipped = flip.is_some() && !proof.is_empty();
            if let (Some((at, bit)), true) = (flip, flipped) {
                let k = at.index(proof.len());
                proof[k].0[usize::from(bit % 32)] ^= 1;
            }
            let leaf = leaf_hash(format!("leaf {i}").as_bytes());
            let root = tree_root(size, &s).unwrap();
            let ours = root_from_inclusion_proof(i, size, leaf, &proof) == Some(root);
            let theirs = lienthong_log::verify_inclusion(i, size, leaf, &proof, root).is_ok();
            prop_assert_eq!(ours, theirs);
            prop_assert_eq!(ours, !flipped);
        }
    }
}
