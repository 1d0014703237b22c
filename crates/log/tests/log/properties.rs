//! Property tests against a naive, recursive transcription of RFC 6962
//! §2.1 (MTH), §2.1.1 (PATH) and §2.1.2 (PROOF/SUBPROOF), written here from
//! the RFC text and sharing no code with `tlog_tiles`.

use lienthong_log::{
    Hash, HashStore, MemoryHashStore, OverlayHashStore, consistency_proof, hashes_to_store,
    inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

mod reference {
    use super::*;

    pub fn leaf(data: &[u8]) -> Hash {
        Hash(
            Sha256::new()
                .chain_update([0x00])
                .chain_update(data)
                .finalize()
                .into(),
        )
    }

    fn node(l: Hash, r: Hash) -> Hash {
        Hash(
            Sha256::new()
                .chain_update([0x01])
                .chain_update(l.0)
                .chain_update(r.0)
                .finalize()
                .into(),
        )
    }

    /// The largest power of two smaller than `n` (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[n]) over leaf hashes.
    pub fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Hash(Sha256::digest([]).into()),
            1 => d[0],
            n => {
                let k = split(n);
                node(mth(&d[..k]), mth(&d[k..]))
            }
        }
    }

    /// PATH(m, D[n]).
    pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// SUBPROOF(m, D[n], b).
    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// PROOF(m, D[n]).
    pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        subproof(m, d, true)
    }
}

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| reference::leaf(format!("entry {i} of {salt}").as_bytes()))
        .collect()
}

fn log_of(hashes: &[Hash]) -> MemoryHashStore {
    let mut log = MemoryHashStore::new();
    for h in hashes {
        log.append(*h).unwrap();
    }
    log
}

#[test]
fn rfc6962_2_1_leaf_hash_agrees_with_the_reference() {
    for data in [&b""[..], b"a", b"H\xc3\xa0ng gi\xe1\xba\xa3", &[0u8; 1000]] {
        assert_eq!(leaf_hash(data), reference::leaf(data));
    }
}

/// Exhaustive over small trees: every size, every leaf, every older size.
#[test]
fn rfc6962_2_1_every_root_path_and_proof_up_to_64_leaves() {
    let d = leaves(64, 0);
    let log = log_of(&d);
    for n in 1..=d.len() {
        let root = reference::mth(&d[..n]);
        assert_eq!(tree_root(n as u64, &log).unwrap(), root, "MTH(D[{n}])");
        for m in 0..n {
            let want = reference::path(m, &d[..n]);
            assert_eq!(
                inclusion_proof(m as u64, n as u64, &log).unwrap(),
                want,
                "PATH({m}, D[{n}])"
            );
            verify_inclusion(m as u64, n as u64, d[m], &want, root).unwrap();
        }
        for m in 1..=n {
            let want = reference::proof(m, &d[..n]);
            assert_eq!(
                consistency_proof(m as u64, n as u64, &log).unwrap(),
                want,
                "PROOF({m}, D[{n}])"
            );
            verify_consistency(m as u64, reference::mth(&d[..m]), n as u64, root, &want).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// RFC 6962 §2.1: roots after each append equal MTH of the prefix.
    #[test]
    fn rfc6962_2_1_roots_agree_with_the_reference(n in 1usize..300, salt in any::<u64>()) {
        let d = leaves(n, salt);
        let mut log = MemoryHashStore::new();
        for (i, h) in d.iter().enumerate() {
            prop_assert_eq!(log.append(*h).unwrap(), i as u64);
        }
        prop_assert_eq!(log.size(), n as u64);
        prop_assert_eq!(log.root().unwrap(), reference::mth(&d));
        for size in [0, 1, n / 3, n / 2, n - 1] {
            prop_assert_eq!(tree_root(size as u64, &log).unwrap(), reference::mth(&d[..size]));
        }
    }

    /// RFC 6962 §2.1.1: audit paths equal PATH(m, D[n]), verify, and fail
    /// once the leaf, the index, the root or any proof hash is changed.
    #[test]
    fn rfc6962_2_1_1_inclusion_agrees_and_tampering_fails(
        (n, m) in (1usize..300).prop_flat_map(|n| (Just(n), 0..n)),
        salt in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let d = leaves(n, salt);
        let log = log_of(&d);
        let root = reference::mth(&d);
        let proof = inclusion_proof(m as u64, n as u64, &log).unwrap();
        prop_assert_eq!(&proof, &reference::path(m, &d));
        prop_assert!(verify_inclusion(m as u64, n as u64, d[m], &proof, root).is_ok());

        let other_leaf = reference::leaf(b"not in the log");
        prop_assert!(verify_inclusion(m as u64, n as u64, other_leaf, &proof, root).is_err());
        let other_root = reference::mth(&d[..n - 1]);
        prop_assert!(verify_inclusion(m as u64, n as u64, d[m], &proof, other_root).is_err());
        if n > 1 {
            let other_index = (m + 1 + pick.index(n - 1)) % n;
            prop_assert!(verify_inclusion(other_index as u64, n as u64, d[m], &proof, root).is_err());
        }
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick.index(bad.len());
            bad[k].0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(m as u64, n as u64, d[m], &bad, root).is_err());
            bad = proof.clone();
            bad.remove(k);
            prop_assert!(verify_inclusion(m as u64, n as u64, d[m], &bad, root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(d[m]);
        prop_assert!(verify_inclusion(m as u64, n as u64, d[m], &longer, root).is_err());
    }

    /// RFC 6962 §2.1.2: consistency proofs equal PROOF(m, D[n]), verify, and
    /// fail once either root or any proof hash is changed.
    #[test]
    fn rfc6962_2_1_2_consistency_agrees_and_tampering_fails(
        (n, m) in (1usize..300).prop_flat_map(|n| (Just(n), 1..=n)),
        salt in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let d = leaves(n, salt);
        let log = log_of(&d);
        let (old_root, new_root) = (reference::mth(&d[..m]), reference::mth(&d));
        let proof = consistency_proof(m as u64, n as u64, &log).unwrap();
        prop_assert_eq!(&proof, &reference::proof(m, &d));
        prop_assert!(verify_consistency(m as u64, old_root, n as u64, new_root, &proof).is_ok());

        let forked = reference::leaf(b"a rewritten entry");
        prop_assert!(verify_consistency(m as u64, forked, n as u64, new_root, &proof).is_err());
        prop_assert!(verify_consistency(m as u64, old_root, n as u64, forked, &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick.index(bad.len());
            bad[k].0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(m as u64, old_root, n as u64, new_root, &bad).is_err());
            bad = proof.clone();
            bad.remove(k);
            prop_assert!(verify_consistency(m as u64, old_root, n as u64, new_root, &bad).is_err());
        }
    }

    /// A batch appended through an overlay over a persisted prefix yields the
    /// same stored hashes, in index order, as appending everything directly.
    #[test]
    fn overlay_batches_store_what_direct_appends_store(
        (n, persisted) in (1usize..300).prop_flat_map(|n| (Just(n), 0..=n)),
        salt in any::<u64>(),
    ) {
        let d = leaves(n, salt);
        let base = log_of(&d[..persisted]);
        let mut overlay = OverlayHashStore::new(&base);
        for (i, h) in d.iter().enumerate().skip(persisted) {
            for (index, hash) in hashes_to_store(i as u64, *h, &overlay).unwrap() {
                overlay.insert(index, hash);
            }
        }
        prop_assert_eq!(tree_root(n as u64, &overlay).unwrap(), reference::mth(&d));
        let pending = overlay.into_pending();
        let full = log_of(&d);
        let indexes: Vec<u64> = pending.iter().map(|(i, _)| *i).collect();
        prop_assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "pending indexes are contiguous");
        let hashes: Vec<Hash> = pending.iter().map(|(_, h)| *h).collect();
        prop_assert_eq!(full.read_hashes(&indexes).unwrap(), hashes);
    }

    /// Verifiers never panic, whatever they are given.
    #[test]
    fn verifiers_never_panic(
        index in any::<u64>(),
        size in prop_oneof![any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1), 0u64..1000],
        old in any::<u64>(),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..140),
        leaf in any::<[u8; 32]>(),
    ) {
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        let _ = verify_inclusion(index, size, Hash(leaf), &proof, Hash(leaf));
        let _ = verify_inclusion(index % size.max(1), size, Hash(leaf), &proof, Hash(leaf));
        let _ = verify_consistency(old, Hash(leaf), size, Hash(leaf), &proof);
        let _ = verify_consistency(old % size.max(1) + 1, Hash(leaf), size, Hash(leaf), &proof);
    }
}
