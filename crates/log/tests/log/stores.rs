//! How the Merkle functions behave with incomplete or failing stores, and
//! with arguments outside the tree: typed errors, never a panic.

use std::cell::Cell;

use lienthong_log::{
    CachedHashes, Hash, HashStore, LogError, MAX_TREE_SIZE, MemoryHashStore, OverlayHashStore,
    ProofError, consistency_proof, hashes_to_store, inclusion_proof, leaf_hash, tree_root,
    verify_inclusion,
};

fn log_of(n: u64) -> MemoryHashStore {
    let mut log = MemoryHashStore::new();
    for i in 0..n {
        log.append(leaf_hash(&i.to_be_bytes())).unwrap();
    }
    log
}

/// Answers with one hash too few.
struct ShortStore(MemoryHashStore);

impl HashStore for ShortStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let mut v = self.0.read_hashes(indexes)?;
        v.pop();
        Ok(v)
    }
}

/// Fails like a broken disk, and counts calls.
struct BrokenStore(Cell<u32>);

impl HashStore for BrokenStore {
    fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.0.set(self.0.get() + 1);
        Err(LogError::Storage("disk on fire".into()))
    }
}

#[test]
fn missing_hashes_are_reported_by_index() {
    let log = log_of(4);
    // Stored hashes of 4 leaves: 0,1,2(level 1),3,4,5(level 1),6(level 2).
    assert_eq!(tree_root(5, &log), Err(LogError::MissingHash(7)));
    assert!(matches!(
        inclusion_proof(0, 9, &log),
        Err(LogError::MissingHash(_))
    ));
    assert!(matches!(
        consistency_proof(2, 9, &log),
        Err(LogError::MissingHash(_))
    ));
    assert_eq!(
        hashes_to_store(5, leaf_hash(b"x"), &log).unwrap_err(),
        LogError::MissingHash(7)
    );
    let text = LogError::MissingHash(7).to_string();
    assert!(text.contains("stored hash 7 is missing"), "{text}");
}

#[test]
fn a_store_that_answers_short_is_an_error_not_a_panic() {
    let store = ShortStore(log_of(8));
    assert!(matches!(tree_root(7, &store), Err(LogError::Storage(_))));
    assert!(matches!(
        inclusion_proof(3, 8, &store),
        Err(LogError::Storage(_))
    ));
    assert!(matches!(
        consistency_proof(3, 8, &store),
        Err(LogError::Storage(_))
    ));
    assert!(matches!(
        hashes_to_store(7, leaf_hash(b"x"), &store),
        Err(LogError::Storage(_))
    ));
}

#[test]
fn storage_errors_come_back_unchanged() {
    let store = BrokenStore(Cell::new(0));
    let fire = LogError::Storage("disk on fire".into());
    assert_eq!(tree_root(3, &store), Err(fire.clone()));
    assert_eq!(inclusion_proof(0, 3, &store), Err(fire.clone()));
    assert_eq!(consistency_proof(1, 3, &store), Err(fire.clone()));
    assert_eq!(hashes_to_store(3, leaf_hash(b"x"), &store), Err(fire));
    assert_eq!(store.0.get(), 4);
    let overlay = OverlayHashStore::new(&store);
    assert_eq!(
        tree_root(3, &overlay),
        Err(LogError::Storage("disk on fire".into()))
    );
}

#[test]
fn the_empty_tree_needs_no_store() {
    let store = BrokenStore(Cell::new(0));
    assert_eq!(
        tree_root(0, &store).unwrap(),
        MemoryHashStore::new().root().unwrap()
    );
    // Appending leaf 0 completes no subtree: nothing to read.
    assert_eq!(
        hashes_to_store(0, leaf_hash(b"first"), &store).unwrap(),
        vec![(0, leaf_hash(b"first"))]
    );
}

#[test]
fn arguments_outside_the_tree_are_refused() {
    let log = log_of(8);
    assert_eq!(
        inclusion_proof(8, 8, &log),
        Err(LogError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        inclusion_proof(0, 0, &log),
        Err(LogError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        tree_root(u64::MAX, &log),
        Err(LogError::TooLarge { size: u64::MAX })
    );
    assert_eq!(
        inclusion_proof(0, MAX_TREE_SIZE + 1, &log),
        Err(LogError::TooLarge {
            size: MAX_TREE_SIZE + 1
        })
    );
    assert_eq!(
        consistency_proof(1, u64::MAX, &log),
        Err(LogError::TooLarge { size: u64::MAX })
    );
    assert!(matches!(
        hashes_to_store(u64::MAX, leaf_hash(b"x"), &log),
        Err(LogError::TooLarge { .. })
    ));
    let leaf = leaf_hash(b"x");
    assert_eq!(
        verify_inclusion(9, 8, leaf, &[], leaf),
        Err(ProofError::IndexOutOfRange { index: 9, size: 8 })
    );
    let long = vec![leaf; 200];
    assert_eq!(
        verify_inclusion(0, 8, leaf, &long, leaf),
        Err(ProofError::TooLong { len: 200, max: 128 })
    );
}

#[test]
fn memory_store_append_returns_indexes_and_tracks_size() {
    let mut log = MemoryHashStore::new();
    assert_eq!(log.size(), 0);
    for i in 0..10 {
        assert_eq!(log.append(leaf_hash(&[i])).unwrap(), u64::from(i));
    }
    assert_eq!(log.size(), 10);
    assert_eq!(log.root().unwrap(), tree_root(10, &log).unwrap());
}

#[test]
fn overlay_reads_pending_first_then_the_base_and_drains_in_order() {
    let base = log_of(3);
    let mut overlay = OverlayHashStore::new(&base);
    assert!(overlay.is_empty());
    for n in 3..6 {
        for (i, h) in hashes_to_store(n, leaf_hash(&n.to_be_bytes()), &overlay).unwrap() {
            overlay.insert(i, h);
        }
    }
    assert_eq!(tree_root(6, &overlay).unwrap(), log_of(6).root().unwrap());
    // Leaves 3..6 add stored hashes 4 (leaf 3), 5, 6 (completed subtrees), 7 (leaf 4), 8 (leaf 5), 9.
    let drained = overlay.drain();
    assert_eq!(
        drained.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8, 9]
    );
    assert!(overlay.is_empty());
    assert_eq!(overlay.len(), 0);
    // Back to reading the base only.
    assert_eq!(tree_root(3, &overlay).unwrap(), base.root().unwrap());
    assert!(matches!(
        tree_root(6, &overlay),
        Err(LogError::MissingHash(_))
    ));
    assert!(format!("{overlay:?}").contains("pending: 0"));
}

/// The compact range of `[0, size)` plus the leaves from `size` on gives
/// the same root as the whole tree, for every split of every size up to 40.
#[test]
fn compact_range_and_later_leaves_give_every_root() {
    let leaves: Vec<lienthong_log::Hash> =
        (0..40u8).map(|i| lienthong_log::leaf_hash(&[i])).collect();
    let mut full = lienthong_log::MemoryHashStore::new();
    for l in &leaves {
        full.append(*l).unwrap();
    }
    for split in 0..=40u64 {
        let prefix = lienthong_log::compact_range(split, &full).unwrap();
        assert_eq!(prefix.len(), split.count_ones() as usize);
        // A compact range: (subtree hash, width) with widths decreasing;
        // append each later leaf, merging equal neighbours, then fold the
        // rest right to left.
        for end in split..=40 {
            let mut stack: Vec<(lienthong_log::Hash, u64)> = prefix
                .iter()
                .zip((0..64).rev().map(|b| 1u64 << b).filter(|w| split & w != 0))
                .map(|(h, w)| (*h, w))
                .collect();
            for l in &leaves[split as usize..end as usize] {
                stack.push((*l, 1));
                while stack.len() >= 2 && stack[stack.len() - 1].1 == stack[stack.len() - 2].1 {
                    let (r, w) = stack.pop().unwrap();
                    let (l, _) = stack.pop().unwrap();
                    stack.push((node(&l, &r), 2 * w));
                }
            }
            let root = stack
                .into_iter()
                .map(|(h, _)| h)
                .rev()
                .reduce(|right, left| node(&left, &right))
                .unwrap_or_else(|| lienthong_log::tree_root(0, &full).unwrap());
            assert_eq!(
                root,
                lienthong_log::tree_root(end, &full).unwrap(),
                "split {split} end {end}"
            );
        }
    }
}

fn node(left: &lienthong_log::Hash, right: &lienthong_log::Hash) -> lienthong_log::Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    lienthong_log::Hash(h.finalize().into())
}

/// Counts the hashes read through it.
struct Counting<'a>(&'a MemoryHashStore, Cell<usize>);

impl HashStore for Counting<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.1.set(self.1.get() + indexes.len());
        self.0.read_hashes(indexes)
    }
}

#[test]
fn a_cached_store_gives_the_same_proofs_from_far_fewer_reads() {
    let log = log_of(1000);
    let size = 997; // not a power of two: proofs need the right edge too
    let plain = Counting(&log, Cell::new(0));
    let cached = CachedHashes::new(Counting(&log, Cell::new(0)));
    for i in 700..size {
        assert_eq!(
            inclusion_proof(i, size, &cached).unwrap(),
            inclusion_proof(i, size, &plain).unwrap(),
            "proof of {i}"
        );
    }
    let (plain_reads, cached_reads) = (plain.1.get(), cached_inner_reads(&cached));
    assert!(
        cached_reads * 4 < plain_reads,
        "{cached_reads} reads through the cache, {plain_reads} without"
    );
    // Errors of the store underneath come through unchanged.
    let broken = CachedHashes::new(BrokenStore(Cell::new(0)));
    assert_eq!(
        inclusion_proof(3, 9, &broken),
        Err(LogError::Storage("disk on fire".into()))
    );
    let short = CachedHashes::new(ShortStore(log_of(16)));
    assert!(matches!(
        inclusion_proof(3, 9, &short),
        Err(LogError::Storage(_))
    ));
}

fn cached_inner_reads(c: &CachedHashes<Counting<'_>>) -> usize {
    c.inner().1.get()
}
