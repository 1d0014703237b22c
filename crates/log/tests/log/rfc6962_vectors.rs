//! RFC 6962 §2.1 / RFC 9162 §2.1 test vectors: the eight reference leaves
//! used by Certificate Transparency implementations, their roots for every
//! size, and the published inclusion and consistency proofs.
//!
//! Source: github.com/transparency-dev/merkle at 417fb0c3,
//! `testonly/constants.go` (leaves, roots, node hashes) and
//! `testdata/{inclusion,consistency}/*/happy-path.json` (proofs; the JSON
//! uses 0-based leaf indexes, as we do).

use lienthong_log::{
    Hash, LogError, MemoryHashStore, ProofError, consistency_proof, inclusion_proof, leaf_hash,
    tree_root, verify_consistency, verify_inclusion,
};

use crate::{hash_b64, hash_hex};

const LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// Roots of the trees of the first 0..=8 leaves.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Leaf hashes of the eight leaves (level 0 of `NodeHashes()`).
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// (leaf index, tree size, audit path) — testdata/inclusion/{0..4}/happy-path.json.
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
        ],
    ),
    (
        5,
        8,
        &[
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
    (2, 3, &["+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="]),
    (
        1,
        5,
        &[
            "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
        ],
    ),
];

/// (old size, new size, proof) — testdata/consistency/{0..4}/happy-path.json.
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
        ],
    ),
    (
        6,
        8,
        &[
            "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
    (
        2,
        5,
        &[
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
        ],
    ),
    (
        6,
        7,
        &[
            "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
];

fn reference_log() -> MemoryHashStore {
    let mut log = MemoryHashStore::new();
    for (i, leaf) in LEAVES.iter().enumerate() {
        assert_eq!(log.append(leaf_hash(leaf)).unwrap(), i as u64);
    }
    log
}

fn root(size: u64) -> Hash {
    hash_hex(ROOTS[size as usize])
}

fn proof(b64: &[&str]) -> Vec<Hash> {
    b64.iter().map(|h| hash_b64(h)).collect()
}

#[test]
fn rfc6962_2_1_leaf_hash_is_sha256_of_0x00_and_data() {
    for (leaf, want) in LEAVES.iter().zip(LEAF_HASHES) {
        assert_eq!(leaf_hash(leaf), hash_hex(want));
    }
}

#[test]
fn rfc6962_2_1_roots_of_every_size_match_the_published_vectors() {
    // Appending one by one: the root after each append.
    let mut log = MemoryHashStore::new();
    assert_eq!(log.root().unwrap(), root(0), "MTH({{}}) = SHA-256()");
    for (n, leaf) in LEAVES.iter().enumerate() {
        log.append(leaf_hash(leaf)).unwrap();
        assert_eq!(log.root().unwrap(), root(n as u64 + 1), "size {}", n + 1);
    }
    // Historical roots from the full store.
    for size in 0..=8 {
        assert_eq!(
            tree_root(size, &log).unwrap(),
            root(size),
            "tree_root({size})"
        );
    }
}

#[test]
fn rfc9162_2_1_3_inclusion_proofs_match_the_published_vectors() {
    let log = reference_log();
    for (index, size, want) in INCLUSION {
        let want = proof(want);
        let leaf = hash_hex(LEAF_HASHES[index as usize]);
        assert_eq!(
            inclusion_proof(index, size, &log).unwrap(),
            want,
            "PATH({index}, D[{size}])"
        );
        verify_inclusion(index, size, leaf, &want, root(size)).unwrap();

        // The mutations of testdata/inclusion/*: each must fail.
        assert!(
            verify_inclusion(
                index,
                size,
                hash_hex(LEAF_HASHES[(index as usize + 1) % 8]),
                &want,
                root(size)
            )
            .is_err(),
            "wrong leaf"
        );
        assert!(
            verify_inclusion(index, size, leaf, &want, root(0)).is_err(),
            "empty root"
        );
        assert!(
            verify_inclusion(index + 1, size, leaf, &want, root(size)).is_err(),
            "index + 1"
        );
        if index > 0 {
            assert!(
                verify_inclusion(index - 1, size, leaf, &want, root(size)).is_err(),
                "index - 1"
            );
        }
        let mut longer = want.clone();
        longer.push(leaf);
        assert!(
            verify_inclusion(index, size, leaf, &longer, root(size)).is_err(),
            "trailing garbage"
        );
        let mut preceded = vec![leaf];
        preceded.extend_from_slice(&want);
        assert!(
            verify_inclusion(index, size, leaf, &preceded, root(size)).is_err(),
            "preceding garbage"
        );
        for k in 0..want.len() {
            let mut bad = want.clone();
            bad[k].0[3] ^= 0x08;
            assert_eq!(
                verify_inclusion(index, size, leaf, &bad, root(size)),
                Err(ProofError::InclusionMismatch),
                "modified proof[{k}]"
            );
            let mut short = want.clone();
            short.remove(k);
            assert!(
                verify_inclusion(index, size, leaf, &short, root(size)).is_err(),
                "removed proof[{k}]"
            );
        }
    }
}

#[test]
fn rfc9162_2_1_4_consistency_proofs_match_the_published_vectors() {
    let log = reference_log();
    for (old, new, want) in CONSISTENCY {
        let want = proof(want);
        assert_eq!(
            consistency_proof(old, new, &log).unwrap(),
            want,
            "PROOF({old}, D[{new}])"
        );
        verify_consistency(old, root(old), new, root(new), &want).unwrap();

        // The mutations of testdata/consistency/*: each must fail.
        if old != new {
            assert!(
                verify_consistency(old, root(new), new, root(old), &want).is_err(),
                "swapped roots"
            );
            assert!(
                verify_consistency(old, root(old), new, root(new), &[]).is_err(),
                "empty proof"
            );
            assert!(
                verify_consistency(old, root(old), new, root(new), &want[..want.len() - 1])
                    .is_err(),
                "truncated proof"
            );
        }
        assert!(
            verify_consistency(old, root(0), new, root(new), &want).is_err(),
            "wrong old root"
        );
        assert!(
            verify_consistency(old, root(old), new, root(0), &want).is_err(),
            "wrong new root"
        );
        let mut longer = want.clone();
        longer.push(root(old));
        assert!(
            verify_consistency(old, root(old), new, root(new), &longer).is_err(),
            "trailing garbage"
        );
        for k in 0..want.len() {
            let mut bad = want.clone();
            bad[k].0[4] ^= 0x10;
            assert_eq!(
                verify_consistency(old, root(old), new, root(new), &bad),
                Err(ProofError::ConsistencyMismatch),
                "modified proof[{k}]"
            );
        }
    }
}

#[test]
fn rfc9162_2_1_4_no_consistency_proof_from_the_empty_tree_or_backwards() {
    // testdata/consistency/additional: size1 = 0, and size1 > size2, are errors.
    let log = reference_log();
    assert_eq!(
        consistency_proof(0, 8, &log),
        Err(LogError::NoConsistencyProof { old: 0, new: 8 })
    );
    assert_eq!(
        consistency_proof(5, 4, &log),
        Err(LogError::NoConsistencyProof { old: 5, new: 4 })
    );
    assert_eq!(
        verify_consistency(0, root(0), 0, root(0), &[]),
        Err(ProofError::NoConsistencyProof { old: 0, new: 0 })
    );
    assert_eq!(
        verify_consistency(0, root(0), 1, root(1), &[]),
        Err(ProofError::NoConsistencyProof { old: 0, new: 1 })
    );
    assert_eq!(
        verify_consistency(8, root(8), 7, root(7), &[]),
        Err(ProofError::NoConsistencyProof { old: 8, new: 7 })
    );
    // Equal sizes: the proof is empty and the roots must match.
    assert!(verify_consistency(1, root(1), 1, root(2), &[]).is_err());
    assert!(verify_consistency(1, root(1), 1, root(1), &[root(1)]).is_err());
}

#[test]
fn rfc9162_2_1_3_single_entry_tree() {
    // testdata/inclusion/single-entry: the root of a one-leaf tree is the leaf hash.
    let leaf = hash_b64("DTrtAjFI/9KiWfvQzcf7PPl1ZYdg03dbgq9vkKrMLfw=");
    verify_inclusion(0, 1, leaf, &[], leaf).unwrap();
    assert!(verify_inclusion(0, 1, leaf, &[], root(0)).is_err());
    assert!(verify_inclusion(0, 1, root(0), &[], leaf).is_err());
    assert_eq!(
        verify_inclusion(0, 0, leaf, &[], leaf),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
}
