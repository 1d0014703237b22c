//! The witness's decisions (issue 6 items 1–2), one row per situation.

use ed25519_dalek::SigningKey;
use lienthong_core::witness::{AddDecision, Conflict, compare, decide_add};
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, VerifiedCheckpoint, consistency_proof,
    sign_checkpoint, verify_checkpoint_with_key,
};

const ORIGIN: &str = "lienthong.test/bac-bo-11/20";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[20; 32])
}

/// A feed of `n` leaves whose contents depend on `fork` from leaf `at` on.
fn tree(n: u64, fork: u8, at: u64) -> MemoryHashStore {
    let mut t = MemoryHashStore::new();
    for i in 0..n {
        let tag = if i >= at { fork } else { 0 };
        t.append(lienthong_log::leaf_hash(&[tag, i as u8])).unwrap();
    }
    t
}

fn checkpoint(t: &MemoryHashStore) -> VerifiedCheckpoint {
    let note = sign_checkpoint(
        &TreeHead {
            origin: ORIGIN.into(),
            size: t.size(),
            root: t.root().unwrap(),
        },
        &NoteSigner::new(ORIGIN, key()).unwrap(),
    )
    .unwrap();
    verify_checkpoint_with_key(note.as_bytes(), ORIGIN, &key().verifying_key()).unwrap()
}

fn proof(t: &MemoryHashStore, old: u64, new: u64) -> Vec<Hash> {
    consistency_proof(old, new, t).unwrap()
}

#[test]
fn witness_decisions() {
    let honest = tree(9, 0, 0);
    let mut small = MemoryHashStore::new();
    for i in 0..5u64 {
        small
            .append(lienthong_log::leaf_hash(&[0, i as u8]))
            .unwrap();
    }
    let forked = tree(9, 7, 3);
    let cp5 = checkpoint(&small);
    let cp9 = checkpoint(&honest);
    let fork9 = checkpoint(&forked);
    let good = proof(&honest, 5, 9);
    let from_fork = proof(&forked, 5, 9);

    assert_eq!(decide_add(None, 0, &[], &cp5), AddDecision::Cosign);
    assert_eq!(
        decide_add(None, 5, &[], &cp5),
        AddDecision::SizeMismatch { witness_size: 0 }
    );
    assert_eq!(decide_add(Some(&cp5), 5, &good, &cp9), AddDecision::Cosign);
    assert_eq!(
        decide_add(Some(&cp5), 3, &good, &cp9),
        AddDecision::SizeMismatch { witness_size: 5 }
    );
    assert_eq!(decide_add(Some(&cp9), 9, &[], &cp9), AddDecision::Cosign);
    assert_eq!(
        decide_add(Some(&cp9), 9, &[], &cp5),
        AddDecision::Rollback { witness_size: 9 }
    );
    assert_eq!(
        decide_add(Some(&cp9), 9, &[], &fork9),
        AddDecision::Conflict(Conflict::SameSizeDifferentRoot { size: 9 })
    );
    // The fork diverges after leaf 3, so no proof links 5 to the forked 9.
    assert!(matches!(
        decide_add(Some(&cp5), 5, &from_fork, &fork9),
        AddDecision::Conflict(Conflict::NotConsistent { old: 5, new: 9, .. })
    ));
    assert!(matches!(
        decide_add(Some(&cp5), 5, &[], &cp9),
        AddDecision::Conflict(Conflict::NotConsistent { .. })
    ));
    // compare is symmetric in its checkpoints.
    assert_eq!(compare(&cp9, &cp5, &good), Ok(()));
    assert_eq!(compare(&cp5, &cp9, &good), Ok(()));
    assert!(compare(&cp9, &fork9, &[]).is_err());
}
