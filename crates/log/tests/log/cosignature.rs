//! C2SP tlog-cosignature, Ed25519 `cosignature/v1` (signature type 0x04).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lienthong_log::{
    CosignatureError, CosignatureLine, MemoryHashStore, NoteSigner, TreeHead, cosign,
    cosignature_key_id, cosignature_message, cosigner_vkey_string, leaf_hash, sign_checkpoint,
    verify_checkpoint, verify_cosignature, verify_cosignature_in_note,
};
use sha2::{Digest, Sha256};

use crate::test_key;

/// The checkpoint of the specification's examples (tlog-checkpoint and tlog-cosignature).
const SPEC_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const SPEC_LOG_SIG: &str = "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
const SPEC_COSIG: &str = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
const SPEC_TIME: u64 = 1679315147;

/// The spec publishes no witness key, so this known answer was computed
/// independently with Python's `cryptography` from the spec text: witness
/// `witness.example.com/w1` with key seed 0x42 × 32 cosigning the spec's
/// checkpoint at the spec's time.
const PY_WITNESS_VKEY: &str =
    "witness.example.com/w1+886a0481+BCFS+NGbeR0kRTJC4V8uq2y3z/p7al7TAJeWDgaYgdsS";
const PY_COSIG: &str = "— witness.example.com/w1 iGoEgQAAAABkGFDLEqgtDUsneMqeLcGMqk8Xx08OQIVxF72ZJmEtUU5sbo5WiTljN+UF1cQ+vSoh1gRQ0wV3Nz9m8DFvjwHDTDcQBA==\n";

const WITNESS: &str = "witness.example.com/w1";

#[test]
fn spec_ed25519_signed_message_is_header_time_and_body() {
    // tlog-cosignature, "Ed25519 signed message": the example, byte for byte.
    let want = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    assert_eq!(
        cosignature_message(SPEC_BODY.as_bytes(), SPEC_TIME),
        want.as_bytes()
    );
    // "ASCII decimal with no leading zeroes".
    assert!(cosignature_message(b"", 0).starts_with(b"cosignature/v1\ntime 0\n"));
}

#[test]
fn spec_example_line_is_key_id_timestamp_and_signature() {
    // tlog-cosignature, Format: timestamped_signature = u64 timestamp (big-endian) ‖ ed25519_signature[64].
    let line = CosignatureLine::parse(SPEC_COSIG).unwrap();
    assert_eq!(line.name(), WITNESS);
    assert_eq!(line.key_id(), 0x8d66cf3f);
    assert_eq!(
        line.time_unix(),
        SPEC_TIME,
        "the time of the spec's signed-message example"
    );
    // The log's own Ed25519 signature is no cosignature: 64 bytes, not 8 + 64.
    assert_eq!(
        CosignatureLine::parse(SPEC_LOG_SIG),
        Err(CosignatureError::MalformedLine)
    );
}

#[test]
fn spec_example_note_carries_no_cosignature_by_another_witness() {
    let note = format!("{SPEC_BODY}\n{SPEC_LOG_SIG}{SPEC_COSIG}");
    let key = test_key(0x42).verifying_key();
    assert!(matches!(
        verify_cosignature_in_note(note.as_bytes(), WITNESS, &key),
        Err(CosignatureError::NotCosignedBy { .. })
    ));
}

#[test]
fn matches_an_independent_implementation_byte_for_byte() {
    let key = test_key(0x42);
    assert_eq!(
        cosigner_vkey_string(WITNESS, &key.verifying_key()),
        PY_WITNESS_VKEY
    );
    assert_eq!(
        cosign(SPEC_BODY.as_bytes(), SPEC_TIME, WITNESS, &key).unwrap(),
        PY_COSIG
    );
    let ok = verify_cosignature(
        SPEC_BODY.as_bytes(),
        PY_COSIG,
        WITNESS,
        &key.verifying_key(),
    )
    .unwrap();
    assert_eq!((ok.witness_name(), ok.time_unix()), (WITNESS, SPEC_TIME));
    // In a note next to the log's signature, as in the spec's example.
    let note = format!("{SPEC_BODY}\n{SPEC_LOG_SIG}{PY_COSIG}");
    assert_eq!(
        verify_cosignature_in_note(note.as_bytes(), WITNESS, &key.verifying_key()).unwrap(),
        ok
    );
}

#[test]
fn key_id_uses_signature_type_0x04() {
    // tlog-cosignature, Format: SHA-256(<name> || "\n" || 0x04 || 32-byte Ed25519 public key)[:4]
    let key = test_key(9).verifying_key();
    let digest = Sha256::new()
        .chain_update(WITNESS)
        .chain_update([0x0a, 0x04])
        .chain_update(key.as_bytes())
        .finalize();
    let id = cosignature_key_id(WITNESS, &key);
    assert_eq!(id, u32::from_be_bytes(digest[..4].try_into().unwrap()));
    let as_log_key = NoteSigner::new(WITNESS, test_key(9)).unwrap().key_id();
    assert_ne!(
        id, as_log_key,
        "same key and name, different signature type, different id"
    );
    let line = cosign(SPEC_BODY.as_bytes(), 1, WITNESS, &test_key(9)).unwrap();
    assert_eq!(CosignatureLine::parse(&line).unwrap().key_id(), id);
}

fn feed_checkpoint(size: u64) -> (NoteSigner, String) {
    let origin = "lienthong.example/bac-bo-11/20";
    let signer = NoteSigner::new(origin, test_key(20)).unwrap();
    let mut log = MemoryHashStore::new();
    for i in 0..size {
        log.append(leaf_hash(&i.to_le_bytes())).unwrap();
    }
    let note = sign_checkpoint(
        &TreeHead {
            origin: origin.into(),
            size,
            root: log.root().unwrap(),
        },
        &signer,
    )
    .unwrap();
    (signer, note)
}

#[test]
fn cosign_then_verify_and_wrong_time_body_or_key_fail() {
    let (signer, note) = feed_checkpoint(10);
    let cp = verify_checkpoint(note.as_bytes(), &signer.vkey()).unwrap();
    let witness = "lienthong.example/bac-bo-11/22";
    let key = test_key(22);
    let time = 1_751_328_000;
    let line = cosign(cp.body().as_bytes(), time, witness, &key).unwrap();
    assert!(line.starts_with(&format!("— {witness} ")) && line.ends_with('\n'));
    let payload = BASE64
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    assert_eq!(payload.len(), 4 + 8 + 64);
    assert_eq!(u64::from_be_bytes(payload[4..12].try_into().unwrap()), time);

    let ok =
        verify_cosignature(cp.body().as_bytes(), &line, witness, &key.verifying_key()).unwrap();
    assert_eq!(
        (ok.witness_name(), ok.time_unix(), ok.key_id()),
        (
            witness,
            time,
            cosignature_key_id(witness, &key.verifying_key())
        )
    );
    let cosigned = note.clone() + &line;
    assert_eq!(
        verify_cosignature_in_note(cosigned.as_bytes(), witness, &key.verifying_key()).unwrap(),
        ok
    );
    assert!(verify_checkpoint(cosigned.as_bytes(), &signer.vkey()).is_ok());

    // Another time: rewrite the 8 timestamp bytes, keep the signature.
    let mut later = payload.clone();
    later[4..12].copy_from_slice(&(time + 1).to_be_bytes());
    let moved = format!("— {witness} {}\n", BASE64.encode(&later));
    assert!(matches!(
        verify_cosignature(cp.body().as_bytes(), &moved, witness, &key.verifying_key()),
        Err(CosignatureError::BadSignature { .. })
    ));
    // Another checkpoint.
    let (_, other_note) = feed_checkpoint(11);
    let other_body = &other_note[..other_note.find("\n\n").unwrap() + 1];
    assert!(matches!(
        verify_cosignature(other_body.as_bytes(), &line, witness, &key.verifying_key()),
        Err(CosignatureError::BadSignature { .. })
    ));
    // Another witness key, or the right key under another name.
    assert!(matches!(
        verify_cosignature(
            cp.body().as_bytes(),
            &line,
            witness,
            &test_key(23).verifying_key()
        ),
        Err(CosignatureError::NotCosignedBy { .. })
    ));
    assert!(matches!(
        verify_cosignature(
            cp.body().as_bytes(),
            &line,
            "lienthong.example/bac-bo-11/23",
            &key.verifying_key()
        ),
        Err(CosignatureError::NotCosignedBy { .. })
    ));
    // A note without that witness's line.
    assert!(matches!(
        verify_cosignature_in_note(note.as_bytes(), witness, &key.verifying_key()),
        Err(CosignatureError::NotCosignedBy { .. })
    ));
}

#[test]
fn every_single_bit_change_of_a_cosigned_note_is_caught() {
    let (_, note) = feed_checkpoint(3);
    let body = note[..note.find("\n\n").unwrap() + 1].to_owned();
    let line = cosign(body.as_bytes(), 1_700_000_000, "w.example", &test_key(5)).unwrap();
    let cosigned = note.clone() + &line;
    let key = test_key(5).verifying_key();
    verify_cosignature_in_note(cosigned.as_bytes(), "w.example", &key).unwrap();
    let line_start = cosigned.len() - line.len();
    for at in (0..body.len()).chain(line_start..cosigned.len()) {
        let bad = crate::flip(cosigned.as_bytes(), at);
        assert!(
            verify_cosignature_in_note(&bad, "w.example", &key).is_err(),
            "byte {at} flipped"
        );
    }
}

#[test]
fn times_beyond_2_pow_63_and_non_checkpoints_are_refused() {
    // tlog-cosignature, Format: "It MUST NOT exceed 2^63 - 1".
    let key = test_key(1);
    assert!(cosign(SPEC_BODY.as_bytes(), (1 << 63) - 1, WITNESS, &key).is_ok());
    assert_eq!(
        cosign(SPEC_BODY.as_bytes(), 1 << 63, WITNESS, &key),
        Err(CosignatureError::TimeOutOfRange { time: 1 << 63 })
    );
    // A line claiming such a time does not verify, even if correctly signed.
    let id = cosignature_key_id(WITNESS, &key.verifying_key());
    let time = u64::MAX;
    let sig = ed25519_dalek::Signer::sign(&key, &cosignature_message(SPEC_BODY.as_bytes(), time));
    let mut payload = id.to_be_bytes().to_vec();
    payload.extend_from_slice(&time.to_be_bytes());
    payload.extend_from_slice(&sig.to_bytes());
    let line = format!("— {WITNESS} {}\n", BASE64.encode(payload));
    assert!(
        verify_cosignature(SPEC_BODY.as_bytes(), &line, WITNESS, &key.verifying_key()).is_err()
    );

    for body in [
        "",
        "just text\n",
        "example.com/x\n1\n",
        "example.com/x\n1\nnot a hash\n",
    ] {
        assert_eq!(
            cosign(body.as_bytes(), 1, WITNESS, &key),
            Err(CosignatureError::NotACheckpoint),
            "{body:?}"
        );
    }
    let note = format!("{SPEC_BODY}\n{SPEC_LOG_SIG}");
    assert_eq!(
        cosign(note.as_bytes(), 1, WITNESS, &key),
        Err(CosignatureError::NotACheckpoint),
        "a whole note is not a body"
    );
    assert_eq!(
        cosign(SPEC_BODY.as_bytes(), 1, "a b", &key),
        Err(CosignatureError::InvalidKeyName { name: "a b".into() })
    );
    assert_eq!(
        CosignatureLine::parse("— w AAAA"),
        Err(CosignatureError::MalformedLine)
    );
    assert_eq!(
        verify_cosignature_in_note(b"garbage", WITNESS, &key.verifying_key()),
        Err(CosignatureError::MalformedNote)
    );
}
