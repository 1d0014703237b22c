//! C2SP tlog-checkpoint signed as a C2SP signed-note: our checkpoints round
//! trip, match an independent implementation byte for byte, and every
//! alteration is caught.

use ed25519_dalek::SigningKey;
use lienthong_log::{
    CheckpointError, MemoryHashStore, NoteSigner, TreeHead, cosign, leaf_hash, parse_vkey,
    sign_checkpoint, verify_checkpoint, verify_checkpoint_with_key, vkey_string,
};
use sha2::{Digest, Sha256};
use tlog_tiles::checkpoint::Checkpoint;

use crate::{hash_hex, test_key};

const ORIGIN: &str = "lienthong.example/bac-bo-11/01";

/// Computed independently with Python's `cryptography` from the C2SP texts:
/// key seed 0x07 × 32, the 8-leaf RFC 6962 root.
const PY_VKEY: &str =
    "lienthong.example/bac-bo-11/01+7c1e6920+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";
const PY_NOTE: &str = "lienthong.example/bac-bo-11/01\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\
— lienthong.example/bac-bo-11/01 fB5pIETFfYrRzBA3lewpeeEMYhcPgnjwKIdv7wIcSDanJzrdxILEs8+eIzDoZLeYCt4/GSrjwQ5KpyC2ub1sI2AcmwU=\n";

fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, test_key(7)).unwrap()
}

fn head(size: u64) -> TreeHead {
    let mut log = MemoryHashStore::new();
    for i in 0..size {
        log.append(leaf_hash(format!("entry {i}").as_bytes()))
            .unwrap();
    }
    TreeHead {
        origin: ORIGIN.to_owned(),
        size,
        root: log.root().unwrap(),
    }
}

#[test]
fn tlog_checkpoint_note_text_is_origin_size_root_and_matches_an_independent_signer() {
    let root = hash_hex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    let note = sign_checkpoint(
        &TreeHead {
            origin: ORIGIN.to_owned(),
            size: 8,
            root,
        },
        &signer(),
    )
    .unwrap();
    assert_eq!(note, PY_NOTE);
    assert_eq!(signer().vkey(), PY_VKEY);
    let cp = verify_checkpoint(PY_NOTE.as_bytes(), PY_VKEY).unwrap();
    assert_eq!((cp.origin(), cp.size(), cp.root()), (ORIGIN, 8, root));
}

#[test]
fn sign_then_verify_round_trips() {
    let s = signer();
    for size in [0, 1, 2, 7, 100] {
        let head = head(size);
        let note = sign_checkpoint(&head, &s).unwrap();
        let cp = verify_checkpoint(note.as_bytes(), &s.vkey()).unwrap();
        assert_eq!(cp.tree_head(), head);
        assert_eq!(cp.note_text(), note, "the exact bytes given");
        assert_eq!(cp.body(), format!("{ORIGIN}\n{size}\n{}\n", head.root));
        assert_eq!(cp.extension(), "");
        assert_eq!(cp.signed_by_key_id(), s.key_id());
        assert_eq!(
            verify_checkpoint_with_key(note.as_bytes(), ORIGIN, &s.verifying_key()).unwrap(),
            cp
        );
    }
}

#[test]
fn a_different_key_is_refused() {
    let note = sign_checkpoint(&head(3), &signer()).unwrap();
    let other = NoteSigner::new(ORIGIN, test_key(8)).unwrap();
    assert_eq!(
        verify_checkpoint(note.as_bytes(), &other.vkey()),
        Err(CheckpointError::NotSignedBy {
            key: format!("{ORIGIN}+{:08x}", other.key_id())
        })
    );
    assert!(
        verify_checkpoint_with_key(note.as_bytes(), ORIGIN, &test_key(8).verifying_key()).is_err()
    );
}

#[test]
fn another_feeds_origin_is_refused() {
    // Signing refuses a head for another origin…
    let mut other = head(3);
    other.origin = "lienthong.example/bac-bo-11/24".into();
    assert_eq!(
        sign_checkpoint(&other, &signer()),
        Err(CheckpointError::OriginMismatch {
            origin: other.origin.clone(),
            key_name: ORIGIN.into()
        })
    );
    // …and verification refuses a validly signed checkpoint whose origin is not the key name.
    let cp = Checkpoint::new(&other.origin, other.size, other.root, "").unwrap();
    let mut note = signed_note::Note::new(&cp.to_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer()]).unwrap();
    assert_eq!(
        verify_checkpoint(&note.to_bytes(), &signer().vkey()),
        Err(CheckpointError::OriginMismatch {
            origin: other.origin,
            key_name: ORIGIN.into()
        })
    );
}

#[test]
fn a_modified_size_root_or_origin_is_refused() {
    let s = signer();
    let head = head(5);
    let note = sign_checkpoint(&head, &s).unwrap();
    let key = format!("{ORIGIN}+{:08x}", s.key_id());
    let bigger = note.replacen("\n5\n", "\n6\n", 1);
    assert_eq!(
        verify_checkpoint(bigger.as_bytes(), &s.vkey()),
        Err(CheckpointError::BadSignature { key: key.clone() })
    );
    let mut root = head.root;
    root.0[0] ^= 1;
    let reroot = note.replacen(&head.root.to_string(), &root.to_string(), 1);
    assert_ne!(reroot, note);
    assert_eq!(
        verify_checkpoint(reroot.as_bytes(), &s.vkey()),
        Err(CheckpointError::BadSignature { key })
    );
    let moved = note.replacen("/01\n", "/02\n", 1);
    assert!(verify_checkpoint(moved.as_bytes(), &s.vkey()).is_err());
    // Every single-bit change of the note is caught one way or another.
    for at in 0..note.len() {
        let bad = crate::flip(note.as_bytes(), at);
        assert!(
            verify_checkpoint(&bad, &s.vkey()).is_err(),
            "byte {at} flipped"
        );
    }
}

#[test]
fn tlog_checkpoint_extension_lines_are_accepted_and_kept() {
    // C2SP tlog-checkpoint, Note text: "Any following lines are extension lines, opaque and OPTIONAL."
    let h = head(2);
    let cp = Checkpoint::new(ORIGIN, h.size, h.root, "note: first\nsecond line\n").unwrap();
    let mut note = signed_note::Note::new(&cp.to_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer()]).unwrap();
    let verified = verify_checkpoint(&note.to_bytes(), &signer().vkey()).unwrap();
    assert_eq!(verified.extension(), "note: first\nsecond line\n");
    assert_eq!(verified.body().as_bytes(), cp.to_bytes());
}

#[test]
fn tlog_checkpoint_malformed_texts_are_not_checkpoints() {
    // C2SP tlog-checkpoint, Note text: size without leading zeros, base64 root, non-empty lines.
    let h = head(2);
    for text in [
        format!("{ORIGIN}\n02\n{}\n", h.root),
        format!("{ORIGIN}\n2\n{}\n\nx\n", h.root),
        format!("{ORIGIN}\n2\nnot-base64\n"),
        format!("{ORIGIN}\n-2\n{}\n", h.root),
        format!("{ORIGIN}\n2\n"),
    ] {
        let mut note = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&signer()]).unwrap();
        assert_eq!(
            verify_checkpoint(&note.to_bytes(), &signer().vkey()),
            Err(CheckpointError::NotACheckpoint),
            "{text:?}"
        );
    }
}

#[test]
fn other_signatures_such_as_cosignatures_do_not_disturb_verification() {
    // C2SP tlog-checkpoint, Signatures: clients MUST ignore unknown signatures (rotation, witnesses).
    let note = sign_checkpoint(&head(4), &signer()).unwrap();
    let body = verify_checkpoint(note.as_bytes(), &signer().vkey())
        .unwrap()
        .body()
        .to_owned();
    let cosigned = note.clone()
        + &cosign(
            body.as_bytes(),
            1_750_000_000,
            "witness.example/24",
            &test_key(24),
        )
        .unwrap();
    let old_key = NoteSigner::new(ORIGIN, test_key(6)).unwrap();
    let mut twice = signed_note::Note::from_bytes(cosigned.as_bytes()).unwrap();
    twice.add_sigs(&[&old_key]).unwrap();
    let twice = String::from_utf8(twice.to_bytes()).unwrap();
    for n in [&cosigned, &twice] {
        let cp = verify_checkpoint(n.as_bytes(), &signer().vkey()).unwrap();
        assert_eq!(cp.note_text(), n.as_str());
        assert_eq!(cp.body(), body);
    }
    assert_eq!(
        verify_checkpoint(twice.as_bytes(), &old_key.vkey())
            .unwrap()
            .signed_by_key_id(),
        old_key.key_id()
    );
}

#[test]
fn vkey_form_parses_and_its_key_id_is_sha256_of_name_newline_0x01_key() {
    let s = signer();
    let vkey = s.vkey();
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts[0], ORIGIN);
    assert_eq!(parts[1].len(), 8);
    assert!(
        parts[1]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex"
    );
    let (name, id, key) = parse_vkey(&vkey).unwrap();
    assert_eq!(
        (name.as_str(), id, key),
        (ORIGIN, s.key_id(), s.verifying_key())
    );
    let mut pre = ORIGIN.as_bytes().to_vec();
    pre.push(0x0a);
    pre.push(0x01);
    pre.extend_from_slice(key.as_bytes());
    assert_eq!(
        id,
        u32::from_be_bytes(Sha256::digest(&pre)[..4].try_into().unwrap())
    );
    assert_eq!(vkey_string(ORIGIN, &key), vkey);
}

#[test]
fn bad_vkeys_say_what_is_wrong() {
    let vkey = signer().vkey();
    let (name, id, key) = parse_vkey(&vkey).unwrap();
    let cases = [
        (
            format!(
                "{name}+{:08x}+{}",
                id ^ 1,
                &vkey[vkey.rfind('+').unwrap() + 1..]
            ),
            "does not match",
        ),
        (format!("{name}+{id:x}z+AAAA"), "8 hex digits"),
        (name.clone(), "no '+'"),
        (format!("{name}+{id:08x}"), "one '+'"),
        (format!("{name}+{id:08x}+!!!"), "base64"),
        (format!("a b+{id:08x}+AAAA"), "key name"),
        (
            lienthong_log::cosigner_vkey_string(&name, &key),
            "witness cosignature key",
        ),
        (format!("{name}+{id:08x}+AQID"), "32 bytes"),
    ];
    for (bad, why) in cases {
        let err = parse_vkey(&bad).unwrap_err();
        assert!(matches!(err, CheckpointError::InvalidVkey { .. }), "{bad}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
        assert!(verify_checkpoint(b"x", &bad).is_err());
    }
}

#[test]
fn signer_names_must_be_key_names() {
    for bad in ["", "a b", "a+b", "tab\there", "line\nbreak"] {
        assert_eq!(
            NoteSigner::new(bad, test_key(1)).unwrap_err(),
            CheckpointError::InvalidKeyName {
                name: bad.to_owned()
            }
        );
        assert!(verify_checkpoint_with_key(b"", bad, &test_key(1).verifying_key()).is_err());
    }
}

#[test]
fn the_signer_never_prints_its_private_key() {
    let key = SigningKey::from_bytes(&[0xab; 32]);
    let s = NoteSigner::new(ORIGIN, key).unwrap();
    let shown = format!("{s:?}");
    assert!(
        shown.contains(ORIGIN) && !shown.to_lowercase().contains("abab"),
        "{shown}"
    );
}
