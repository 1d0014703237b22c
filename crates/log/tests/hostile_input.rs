//! Issue 8: hostile input to every parser and verifier of `lienthong-log`.
//!
//! Random and mutated bytes go to the signed-note and checkpoint readers,
//! the vkey and cosignature-line parsers and the cosignature verifiers;
//! random hashes and sizes (up to `u64::MAX`) go to the inclusion and
//! consistency proof verifiers and to the provers over a store. Each must
//! answer with a value or an error, never panic; valid inputs round-trip,
//! and a mutated signed input never verifies as something else.
//!
//! Case counts are fixed and small and the seed is fixed, so the whole file
//! runs in a few seconds and a failure reproduces.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use lienthong_log::{
    CosignatureLine, Hash, MAX_PROOF_HASHES, MAX_TREE_SIZE, MemoryHashStore, NoteSigner, TreeHead,
    VerifiedCheckpoint, compact_range, consistency_proof, cosign, cosigner_vkey_string,
    hashes_to_store, inclusion_proof, leaf_hash, parse_vkey, sign_checkpoint, tree_root,
    verify_checkpoint, verify_checkpoint_with_key, verify_consistency, verify_cosignature,
    verify_cosignature_in_note, verify_inclusion, verify_note,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const ORIGIN: &str = "lienthong.example/bac-bo-11/20";
const WITNESS: &str = "lienthong.example/bac-bo-11/24";
const TIME: u64 = 1_794_700_800;

/// Case counts and seed. CI runs these counts with a fixed seed; the long
/// run scales them and picks another seed:
/// `LIENTHONG_FUZZ_SCALE=200 LIENTHONG_FUZZ_SEED=7 cargo test --release --test hostile_input`.
fn cfg(cases: u32) -> Config {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let scale = env("LIENTHONG_FUZZ_SCALE").unwrap_or(1).clamp(1, 100_000) as u32;
    Config {
        cases: cases.saturating_mul(scale),
        // Nothing is written next to the sources; the seed is fixed instead.
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(env("LIENTHONG_FUZZ_SEED").unwrap_or(0x1e27_7407_0008)),
        ..Config::default()
    }
}

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[20; 32])
}

fn witness_key() -> SigningKey {
    SigningKey::from_bytes(&[24; 32])
}

/// Sizes where arithmetic on tree coordinates goes wrong if unchecked.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..300,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        Just((1 << 63) - 1),
        Just(MAX_TREE_SIZE),
        Just(MAX_TREE_SIZE + 1),
        Just(MAX_TREE_SIZE - 1),
        any::<u64>(),
    ]
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn mutate(bytes: &mut Vec<u8>, ops: &[(u8, usize, u8)]) {
    for &(op, pos, val) in ops {
        let len = bytes.len();
        match op % 5 {
            0 if len > 0 => bytes[pos % len] ^= 1 << (val % 8),
            1 if len > 0 => bytes[pos % len] = val,
            2 => bytes.insert(pos % (len + 1), val),
            3 if len > 0 => {
                bytes.remove(pos % len);
            }
            4 => bytes.truncate(pos % (len + 1)),
            _ => bytes.push(val),
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
}

/// A log of 37 leaves, its signed checkpoint, and the same checkpoint
/// cosigned by a witness.
struct Fixture {
    store: MemoryHashStore,
    note: String,
    cosigned: String,
    vkey: String,
    checkpoint: VerifiedCheckpoint,
}

const SIZE: u64 = 37;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut store = MemoryHashStore::new();
        for i in 0..SIZE {
            store
                .append(leaf_hash(format!("entry {i}").as_bytes()))
                .expect("append");
        }
        let signer = NoteSigner::new(ORIGIN, log_key()).expect("signer");
        let head = TreeHead {
            origin: ORIGIN.into(),
            size: SIZE,
            root: store.root().expect("root"),
        };
        let note = sign_checkpoint(&head, &signer).expect("sign");
        let vkey = signer.vkey();
        let checkpoint = verify_checkpoint(note.as_bytes(), &vkey).expect("verifies");
        let line =
            cosign(checkpoint.body().as_bytes(), TIME, WITNESS, &witness_key()).expect("cosign");
        let cosigned = format!("{note}{line}");
        Fixture {
            store,
            note,
            cosigned,
            vkey,
            checkpoint,
        }
    })
}

#[test]
fn valid_checkpoints_and_cosignatures_round_trip() {
    let f = fixture();
    assert_eq!(f.checkpoint.size(), SIZE);
    assert_eq!(f.checkpoint.origin(), ORIGIN);
    assert_eq!(f.checkpoint.note_text(), f.note);
    let (name, id, key) = parse_vkey(&f.vkey).expect("vkey");
    assert_eq!(
        (name.as_str(), id),
        (ORIGIN, f.checkpoint.signed_by_key_id())
    );
    assert_eq!(key, log_key().verifying_key());
    let again = verify_checkpoint_with_key(f.cosigned.as_bytes(), ORIGIN, &key).expect("cosigned");
    assert_eq!(again.tree_head(), f.checkpoint.tree_head());
    assert_eq!(
        verify_note(f.note.as_bytes(), &f.vkey).expect("note"),
        f.checkpoint.body()
    );
    let c = verify_cosignature_in_note(
        f.cosigned.as_bytes(),
        WITNESS,
        &witness_key().verifying_key(),
    )
    .expect("cosignature");
    assert_eq!((c.witness_name(), c.time_unix()), (WITNESS, TIME));
    let line = &f.cosigned[f.note.len()..];
    let parsed = CosignatureLine::parse(line).expect("a cosignature line");
    assert_eq!(
        (parsed.name(), parsed.key_id(), parsed.time_unix()),
        (WITNESS, c.key_id(), TIME)
    );
    verify_cosignature(
        f.checkpoint.body().as_bytes(),
        line,
        WITNESS,
        &witness_key().verifying_key(),
    )
    .expect("line verifies");
    assert!(cosigner_vkey_string(WITNESS, &witness_key().verifying_key()).starts_with(WITNESS));
}

proptest! {
    #![proptest_config(cfg(512))]

    /// Random bytes as a note, a checkpoint, and a cosigned note.
    #[test]
    fn note_readers_take_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let f = fixture();
        prop_assert!(verify_checkpoint(&bytes, &f.vkey).is_err());
        prop_assert!(verify_note(&bytes, &f.vkey).is_err());
        prop_assert!(verify_cosignature_in_note(&bytes, WITNESS, &witness_key().verifying_key()).is_err());
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(verify_checkpoint(f.note.as_bytes(), &text).is_err());
        prop_assert!(parse_vkey(&text).is_err());
        let _ = CosignatureLine::parse(&text);
        prop_assert!(verify_cosignature(f.checkpoint.body().as_bytes(), &text, WITNESS, &witness_key().verifying_key()).is_err());
        let _ = verify_cosignature(&bytes, &text, &text, &witness_key().verifying_key());
        let _ = cosign(&bytes, TIME, WITNESS, &witness_key());
    }

    /// Random text shaped like a note: lines, a blank line, signature lines.
    #[test]
    fn note_readers_take_plausible_notes(
        lines in prop::collection::vec("[a-zA-Z0-9./+= \u{2014}-]{0,50}", 0..8),
        sigs in prop::collection::vec(("[a-z./0-9]{0,30}", "[A-Za-z0-9+/=]{0,100}"), 0..4),
    ) {
        let f = fixture();
        let mut note = lines.join("\n");
        note.push_str("\n\n");
        for (name, b64) in &sigs {
            note.push_str(&format!("\u{2014} {name} {b64}\n"));
        }
        prop_assert!(verify_checkpoint(note.as_bytes(), &f.vkey).is_err());
        let _ = verify_cosignature_in_note(note.as_bytes(), WITNESS, &witness_key().verifying_key());
        for (name, b64) in &sigs {
            let _ = CosignatureLine::parse(&format!("\u{2014} {name} {b64}"));
        }
    }

    /// A vkey from plausible parts.
    #[test]
    fn vkey_parser_takes_plausible_garbage(
        name in "[a-z./0-9+ ]{0,30}",
        id in "[0-9a-fA-Fxg]{0,10}",
        raw in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let _ = parse_vkey(&format!("{name}+{id}+{b64}"));
    }
}

proptest! {
    #![proptest_config(cfg(512))]

    /// Any single bit flip of a checkpoint signed by the log alone fails.
    #[test]
    fn single_bit_flip_of_a_checkpoint_never_verifies(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let f = fixture();
        let mut bytes = f.note.clone().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(verify_checkpoint(&bytes, &f.vkey).is_err(), "bit {} of byte {}", bit, i);
        prop_assert!(verify_note(&bytes, &f.vkey).is_err());
    }

    /// Mutations of a cosigned checkpoint: if the log's signature still
    /// verifies, the tree head is the signed one; if the cosignature still
    /// verifies, so is what it covers.
    #[test]
    fn mutated_cosigned_checkpoint_never_verifies_as_another(ops in ops()) {
        let f = fixture();
        let mut bytes = f.cosigned.clone().into_bytes();
        mutate(&mut bytes, &ops);
        if let Ok(c) = verify_checkpoint(&bytes, &f.vkey) {
            prop_assert_eq!(c.tree_head(), f.checkpoint.tree_head());
            prop_assert_eq!(c.body(), f.checkpoint.body());
        }
        if let Ok(c) = verify_cosignature_in_note(&bytes, WITNESS, &witness_key().verifying_key()) {
            prop_assert_eq!(c.time_unix(), TIME);
            prop_assert!(bytes.starts_with(f.checkpoint.body().as_bytes()));
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = CosignatureLine::parse(&text);
    }

    /// A cosignature line with one bit flipped: the line no longer verifies
    /// over the body, and a flipped body no longer verifies under the line.
    #[test]
    fn single_bit_flip_of_a_cosignature_never_verifies(pos in any::<prop::sample::Index>(), bit in 0u8..8, body in any::<bool>()) {
        let f = fixture();
        let mut line = f.cosigned.as_bytes()[f.note.len()..].to_vec();
        let mut text = f.checkpoint.body().as_bytes().to_vec();
        let target = if body { &mut text } else { &mut line };
        let i = pos.index(target.len());
        target[i] ^= 1 << bit;
        let line = String::from_utf8_lossy(&line);
        let r = verify_cosignature(&text, &line, WITNESS, &witness_key().verifying_key());
        // The final newline of the line is optional, so only that flip passes.
        if r.is_ok() {
            prop_assert!(!body && i + 1 == f.cosigned.len() - f.note.len(), "bit {} of byte {} unnoticed", bit, i);
        }
    }

    /// Signing round trip for any origin-like name, size and root.
    #[test]
    fn checkpoints_round_trip(name in "[a-z0-9.]{1,20}/[a-z0-9]{1,5}", size in size(), root in hash()) {
        let signer = NoteSigner::new(&name, log_key()).expect("a valid name");
        let head = TreeHead { origin: name.clone(), size, root };
        let note = sign_checkpoint(&head, &signer).expect("sign");
        let c = verify_checkpoint(note.as_bytes(), &signer.vkey());
        prop_assert!(c.is_ok(), "{:?}", c);
        prop_assert_eq!(c.map(|c| c.tree_head()).ok(), Some(head));
    }
}

proptest! {
    #![proptest_config(cfg(1024))]

    /// Random proofs for random positions, sizes up to `u64::MAX`: an
    /// answer, never a panic, and never a pass (the root is random).
    #[test]
    fn proof_verifiers_take_random_input(
        index in size(),
        tree_size in size(),
        old in size(),
        leaf in hash(),
        root in hash(),
        other in hash(),
        proof in prop::collection::vec(hash(), 0..70),
    ) {
        prop_assume!(leaf != root && root != other);
        prop_assert!(verify_inclusion(index, tree_size, leaf, &proof, root).is_err());
        prop_assert!(verify_consistency(old, other, tree_size, root, &proof).is_err());
        let _ = lienthong_log::verify_inclusion(index, tree_size, root, &proof, root);
        let _ = verify_consistency(tree_size, root, tree_size, root, &proof);
    }

    /// Proofs longer than any proof can be are refused before hashing.
    #[test]
    fn overlong_proofs_are_refused(tree_size in size(), extra in 1usize..2000, h in hash()) {
        let proof = vec![h; MAX_PROOF_HASHES + extra];
        prop_assert!(verify_inclusion(0, tree_size.max(1), h, &proof, h).is_err());
        prop_assert!(verify_consistency(1, h, tree_size.max(1), h, &proof).is_err());
    }

    /// Provers asked about sizes and positions the store does not hold:
    /// an error, never a panic or an attempt to allocate per leaf.
    #[test]
    fn provers_take_any_size(index in size(), a in size(), b in size()) {
        let f = fixture();
        let store = &f.store;
        let _ = tree_root(a, store);
        let _ = compact_range(a, store);
        let _ = inclusion_proof(index, a, store);
        let _ = consistency_proof(a, b, store);
        let _ = hashes_to_store(a, Hash([1; 32]), store);
        if a > SIZE {
            prop_assert!(tree_root(a, store).is_err());
            prop_assert!(compact_range(a, store).is_err());
        }
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Real proofs verify; with one bit flipped, or at another position or
    /// size, they do not.
    #[test]
    fn real_proofs_round_trip_and_flips_fail(
        i in 0..SIZE,
        old in 1..=SIZE,
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
        shift in 1u64..5,
    ) {
        let f = fixture();
        let root = f.store.root().expect("root");
        let leaf = leaf_hash(format!("entry {i}").as_bytes());
        let proof = inclusion_proof(i, SIZE, &f.store).expect("proof");
        prop_assert!(verify_inclusion(i, SIZE, leaf, &proof, root).is_ok());
        prop_assert!(verify_inclusion(i ^ shift, SIZE, leaf, &proof, root).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick.index(bad.len());
            bad[k].0[usize::from(bit) % 32] ^= 1 << bit;
            prop_assert!(verify_inclusion(i, SIZE, leaf, &bad, root).is_err());
        }

        let old_root = tree_root(old, &f.store).expect("old root");
        let proof = consistency_proof(old, SIZE, &f.store).expect("proof");
        prop_assert!(verify_consistency(old, old_root, SIZE, root, &proof).is_ok());
        prop_assert!(verify_consistency(old, old_root, u64::MAX, root, &proof).is_err());
        prop_assert!(verify_consistency(old, old_root, MAX_TREE_SIZE, root, &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick.index(bad.len());
            bad[k].0[usize::from(bit) % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(old, old_root, SIZE, root, &bad).is_err());
        }
    }
}

/// The provers' size limit: far beyond it, an error naming the size.
#[test]
fn huge_sizes_are_refused_by_the_provers() {
    let f = fixture();
    for s in [u64::MAX, 1 << 63, MAX_TREE_SIZE + 1] {
        assert!(tree_root(s, &f.store).is_err(), "{s}");
        assert!(inclusion_proof(0, s, &f.store).is_err(), "{s}");
        assert!(consistency_proof(1, s, &f.store).is_err(), "{s}");
        assert!(compact_range(s, &f.store).is_err(), "{s}");
        assert!(hashes_to_store(s, Hash([0; 32]), &f.store).is_err(), "{s}");
    }
    let mut store = MemoryHashStore::new();
    assert!(verify_inclusion(0, 0, Hash([0; 32]), &[], Hash([0; 32])).is_err());
    assert!(verify_consistency(0, Hash([0; 32]), 0, Hash([0; 32]), &[]).is_err());
    store.append(Hash([9; 32])).expect("append");
    assert_eq!(tree_root(1, &store).expect("root"), Hash([9; 32]));
}
