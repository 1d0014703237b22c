//! The receiver's checks on delivered entries (issue 4 item 3; issue 8
//! item 3 "hostile peer"): one row per way a peer can lie.

use ed25519_dalek::SigningKey;
use lienthong_core::delivery::{AuthorKeys, Delivery, Rejected, verify_delivery};
use lienthong_core::entry::{ENTRY_FORMAT, VerifiedEntry, sign_entry};
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, inclusion_proof, sign_checkpoint,
};
use lienthong_proto::v1::{Alert, EntryBody, entry_body::Payload};

const ORIGIN: &str = "lienthong.test/bac-bo-11/20";

fn author_key() -> SigningKey {
    SigningKey::from_bytes(&[20; 32])
}

fn author() -> AuthorKeys {
    AuthorKeys::single("20", ORIGIN, author_key().verifying_key())
}

fn entry(index: u64, audience: &[&str], key: &SigningKey, author: &str) -> VerifiedEntry {
    sign_entry(
        EntryBody {
            format: ENTRY_FORMAT,
            author: author.into(),
            index,
            created_unix_ms: 1_795_000_000_000 + index as i64,
            audience: audience.iter().map(|s| (*s).to_owned()).collect(),
            manifest_version: 1,
            agreement_hash: vec![1; 32],
            handling: 0,
            response_deadline_hours: 0,
            payload: Some(Payload::Alert(Alert {
                reference: format!("r{index}"),
                title: "Hàng giả".into(),
                ..Default::default()
            })),
        },
        key,
    )
}

/// The author's feed: entries 0..6, entry 3 only for 01 (not for us, 24).
struct Feed {
    entries: Vec<VerifiedEntry>,
    tree: MemoryHashStore,
    note: String,
}

fn feed() -> Feed {
    let mut tree = MemoryHashStore::new();
    let entries: Vec<VerifiedEntry> = (0..6)
        .map(|i| {
            entry(
                i,
                if i == 3 {
                    &["01", "20"]
                } else {
                    &["01", "20", "24"]
                },
                &author_key(),
                "20",
            )
        })
        .collect();
    for e in &entries {
        tree.append(Hash(e.id().0)).unwrap();
    }
    let signer = NoteSigner::new(ORIGIN, author_key()).unwrap();
    let note = sign_checkpoint(
        &TreeHead {
            origin: ORIGIN.into(),
            size: 6,
            root: tree.root().unwrap(),
        },
        &signer,
    )
    .unwrap();
    Feed {
        entries,
        tree,
        note,
    }
}

fn check(env: &[u8], note: &[u8], proof: &[Hash], next: u64) -> Result<u64, Rejected> {
    verify_delivery(
        Delivery {
            envelope: env,
            checkpoint: note,
            inclusion_proof: proof,
        },
        &author(),
        "24",
        next,
    )
    .map(|a| a.entry().index())
}

#[test]
fn honest_deliveries_are_accepted_even_with_gaps() {
    let f = feed();
    // 24 sees 0, 1, 2, 4, 5 (3 is not for it) and needs no other leaves.
    let mut next = 0;
    for i in [0u64, 1, 2, 4, 5] {
        let proof = inclusion_proof(i, 6, &f.tree).unwrap();
        assert_eq!(
            check(
                f.entries[i as usize].envelope(),
                f.note.as_bytes(),
                &proof,
                next
            )
            .unwrap(),
            i
        );
        next = i + 1;
    }
}

#[test]
fn every_kind_of_lie_is_refused_and_named() {
    let f = feed();
    let proof2 = inclusion_proof(2, 6, &f.tree).unwrap();
    let proof3 = inclusion_proof(3, 6, &f.tree).unwrap();
    let forged = entry(
        2,
        &["01", "20", "24"],
        &SigningKey::from_bytes(&[66; 32]),
        "20",
    );
    let other_author = entry(
        2,
        &["01", "20", "24"],
        &SigningKey::from_bytes(&[1; 32]),
        "01",
    );
    let not_logged = entry(2, &["01", "20", "24", "31"], &author_key(), "20");
    let mut flipped = f.entries[2].envelope().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let other_signer = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
    let forged_note = sign_checkpoint(
        &TreeHead {
            origin: ORIGIN.into(),
            size: 6,
            root: f.tree.root().unwrap(),
        },
        &other_signer,
    )
    .unwrap();
    let mut small = MemoryHashStore::new();
    for e in &f.entries[..2] {
        small.append(Hash(e.id().0)).unwrap();
    }
    let small_note = sign_checkpoint(
        &TreeHead {
            origin: ORIGIN.into(),
            size: 2,
            root: small.root().unwrap(),
        },
        &NoteSigner::new(ORIGIN, author_key()).unwrap(),
    )
    .unwrap();
    let mut bad_proof = proof2.clone();
    bad_proof[0].0[0] ^= 1;

    type Case<'a> = (&'a str, Result<u64, Rejected>, fn(&Rejected) -> bool);
    let cases: Vec<Case> = vec![
        (
            "forged signature",
            check(forged.envelope(), f.note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::Entry(_)),
        ),
        (
            "another author's entry",
            check(other_author.envelope(), f.note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::Entry(_)),
        ),
        (
            "altered bytes",
            check(&flipped, f.note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::Entry(_)),
        ),
        (
            "garbage",
            check(b"\xff\xff\xff", f.note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::Entry(_)),
        ),
        (
            "outside the audience",
            check(f.entries[3].envelope(), f.note.as_bytes(), &proof3, 0),
            |r| matches!(r, Rejected::NotForUs { .. }),
        ),
        (
            "replay",
            check(f.entries[2].envelope(), f.note.as_bytes(), &proof2, 3),
            |r| matches!(r, Rejected::Replayed { .. }),
        ),
        (
            "checkpoint by another key",
            check(f.entries[2].envelope(), forged_note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::Checkpoint(_)),
        ),
        (
            "checkpoint too small",
            check(f.entries[2].envelope(), small_note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::BeyondCheckpoint { .. }),
        ),
        (
            "signed but never logged",
            check(not_logged.envelope(), f.note.as_bytes(), &proof2, 0),
            |r| matches!(r, Rejected::NotIncluded { .. }),
        ),
        (
            "tampered proof",
            check(f.entries[2].envelope(), f.note.as_bytes(), &bad_proof, 0),
            |r| matches!(r, Rejected::NotIncluded { .. }),
        ),
        (
            "proof of another index",
            check(f.entries[2].envelope(), f.note.as_bytes(), &proof3, 0),
            |r| matches!(r, Rejected::NotIncluded { .. }),
        ),
    ];
    for (name, result, expected) in cases {
        match result {
            Ok(i) => panic!("{name}: accepted as index {i}"),
            Err(r) => assert!(expected(&r), "{name}: refused for the wrong reason: {r}"),
        }
    }
}

/// Key rotation: entries keep verifying with the key in force at their
/// manifest version, while checkpoints must carry the current key.
#[test]
fn rotated_keys_verify_old_entries_and_refuse_old_checkpoints() {
    let old = author_key();
    let new = SigningKey::from_bytes(&[21; 32]);
    let keys = AuthorKeys {
        member: "20".into(),
        origin: ORIGIN.into(),
        current: new.verifying_key(),
        history: vec![
            (1, Some(old.verifying_key())),
            (3, Some(new.verifying_key())),
        ],
        known: 3,
    };
    let with_version = |index: u64, version: u64, key: &SigningKey| {
        let e = entry(index, &["20", "24"], key, "20");
        let mut body = e.body().clone();
        body.manifest_version = version;
        sign_entry(body, key)
    };
    let entries = [
        with_version(0, 1, &old),
        with_version(1, 2, &old),
        with_version(2, 3, &new),
        // Claims the new version but is signed with the retired key.
        with_version(3, 3, &old),
        // Names a version the receiver has not seen yet.
        with_version(4, 4, &new),
    ];
    let mut tree = MemoryHashStore::new();
    for e in &entries {
        tree.append(Hash(e.id().0)).unwrap();
    }
    let head = TreeHead {
        origin: ORIGIN.into(),
        size: 5,
        root: tree.root().unwrap(),
    };
    let new_note = sign_checkpoint(&head, &NoteSigner::new(ORIGIN, new).unwrap()).unwrap();
    let old_note = sign_checkpoint(&head, &NoteSigner::new(ORIGIN, old).unwrap()).unwrap();
    let run = |i: usize, note: &str| {
        let proof = inclusion_proof(i as u64, 5, &tree).unwrap();
        verify_delivery(
            Delivery {
                envelope: entries[i].envelope(),
                checkpoint: note.as_bytes(),
                inclusion_proof: &proof,
            },
            &keys,
            "24",
            0,
        )
    };
    for i in 0..3 {
        assert_eq!(run(i, &new_note).unwrap().entry().index(), i as u64);
    }
    assert!(matches!(run(3, &new_note), Err(Rejected::Entry(_))));
    assert!(matches!(
        run(4, &new_note),
        Err(Rejected::UnknownManifestVersion {
            version: 4,
            known: 3,
            ..
        })
    ));
    // A checkpoint under the retired key vouches for nothing.
    assert!(matches!(run(0, &old_note), Err(Rejected::Checkpoint(_))));
}
