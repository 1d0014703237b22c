//! C2SP signed-note: the specification's own example, and the examples of
//! Go's `golang.org/x/mod/sumdb/note` tests (`note_test.go`), which every
//! implementation of the format checks against.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use lienthong_log::{
    CheckpointError, NoteSigner, parse_vkey, verify_checkpoint, verify_note, vkey_string,
};
use sha2::{Digest, Sha256};

use crate::flip;

/// C2SP signed-note, "Verifier keys" → "Example".
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\
— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// Go sumdb/note `note_test.go` (TestSign, TestOpen).
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_key() -> SigningKey {
    // PRIVATE+KEY+<name>+<id>+base64(0x01 ‖ 32-byte seed)
    let raw = BASE64
        .decode(PETER_SKEY.splitn(5, '+').nth(4).unwrap())
        .unwrap();
    assert_eq!(raw[0], 0x01);
    SigningKey::from_bytes(&raw[1..].try_into().unwrap())
}

#[test]
fn spec_verifier_key_example_verifies_its_note() {
    assert_eq!(
        verify_note(SPEC_NOTE.as_bytes(), SPEC_VKEY).unwrap(),
        "This is an example message.\n"
    );
    // It is a signed note but not a checkpoint.
    assert_eq!(
        verify_checkpoint(SPEC_NOTE.as_bytes(), SPEC_VKEY),
        Err(CheckpointError::NotACheckpoint)
    );
}

#[test]
fn spec_example_fails_once_any_byte_of_text_or_signature_changes() {
    let text_len = "This is an example message.\n".len();
    for at in 0..text_len - 1 {
        let bad = flip(SPEC_NOTE.as_bytes(), at);
        assert!(
            verify_note(&bad, SPEC_VKEY).is_err(),
            "text byte {at} flipped"
        );
    }
    // A different, well-formed signature by the same key id.
    let sig_start = SPEC_NOTE.rfind(' ').unwrap() + 1;
    let sig_b64 = &SPEC_NOTE[sig_start..SPEC_NOTE.len() - 1];
    let mut sig = BASE64.decode(sig_b64).unwrap();
    sig[10] ^= 0x01;
    let forged = format!("{}{}\n", &SPEC_NOTE[..sig_start], BASE64.encode(&sig));
    assert!(matches!(
        verify_note(forged.as_bytes(), SPEC_VKEY),
        Err(CheckpointError::BadSignature { .. })
    ));
}

#[test]
fn go_note_test_peter_neumann_verifies_and_tampering_fails() {
    let note = format!("{GO_TEXT}\n{PETER_SIG}");
    assert_eq!(verify_note(note.as_bytes(), PETER_VKEY).unwrap(), GO_TEXT);
    let tampered = note.replacen("answer", "Answer", 1);
    assert!(matches!(
        verify_note(tampered.as_bytes(), PETER_VKEY),
        Err(CheckpointError::BadSignature { .. })
    ));
    // TestOpen: the Enoch key has not signed this note.
    assert!(matches!(
        verify_note(note.as_bytes(), ENOCH_VKEY),
        Err(CheckpointError::NotSignedBy { .. })
    ));
}

#[test]
fn go_note_test_unknown_signatures_are_ignored() {
    // C2SP signed-note, Signatures: "Verifiers MUST ignore signatures from unknown keys".
    let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(verify_note(both.as_bytes(), PETER_VKEY).unwrap(), GO_TEXT);
    assert_eq!(verify_note(both.as_bytes(), ENOCH_VKEY).unwrap(), GO_TEXT);
}

#[test]
fn go_note_test_our_signer_reproduces_the_published_signatures() {
    // Ed25519 is deterministic: the same key and text give Go's exact line.
    let peter = NoteSigner::new("PeterNeumann", peter_key()).unwrap();
    assert_eq!(peter.vkey(), PETER_VKEY);
    assert_eq!(peter.key_id(), 0xc74f20a3);
    let mut note = signed_note::Note::new(GO_TEXT.as_bytes(), &[]).unwrap();
    note.add_sigs(&[&peter]).unwrap();
    assert_eq!(
        String::from_utf8(note.to_bytes()).unwrap(),
        format!("{GO_TEXT}\n{PETER_SIG}")
    );

    // EnochRoot's key is the one generate_key derives from an all-zero seed.
    let enoch = NoteSigner::new("EnochRoot", SigningKey::from_bytes(&[0; 32])).unwrap();
    assert_eq!(enoch.vkey(), ENOCH_VKEY);
    note.add_sigs(&[&enoch]).unwrap();
    assert_eq!(
        String::from_utf8(note.to_bytes()).unwrap(),
        format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}")
    );
}

#[test]
fn signatures_key_id_is_sha256_of_name_newline_type_and_key() {
    // C2SP signed-note, Ed25519 signatures:
    // key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
    for vkey in [SPEC_VKEY, PETER_VKEY, ENOCH_VKEY] {
        let (name, id, key) = parse_vkey(vkey).unwrap();
        let digest = Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0x0a, 0x01])
            .chain_update(key.as_bytes())
            .finalize();
        assert_eq!(
            id,
            u32::from_be_bytes(digest[..4].try_into().unwrap()),
            "{vkey}"
        );
        assert_eq!(vkey_string(&name, &key), vkey, "round trip");
    }
}

#[test]
fn malformed_notes_are_refused_as_such() {
    for bad in [
        GO_TEXT.to_owned(),                                    // no signature block
        format!("{GO_TEXT}\n{}", PETER_SIG.trim_end()),        // last line without newline
        format!("\x01{GO_TEXT}\n{PETER_SIG}"),                 // control character
        format!("{GO_TEXT}\n— Bad Name {}", &PETER_SIG[17..]), // space in the key name
        String::new(),
    ] {
        assert_eq!(
            verify_note(bad.as_bytes(), PETER_VKEY),
            Err(CheckpointError::MalformedNote),
            "{bad:?}"
        );
    }
    let mut not_utf8 = format!("{GO_TEXT}\n{PETER_SIG}").into_bytes();
    not_utf8[0] = 0xff;
    assert_eq!(
        verify_note(&not_utf8, PETER_VKEY),
        Err(CheckpointError::MalformedNote)
    );
}
