//! Witness cosignatures: C2SP tlog-cosignature, the Ed25519
//! `cosignature/v1` type (signature type 0x04).
//!
//! A cosignature is a note signature line whose payload is
//! `key id (4) ‖ timestamp (8, big-endian) ‖ Ed25519 signature (64)`, the
//! signature covering `"cosignature/v1\ntime <timestamp>\n" ‖ checkpoint body`.
//! Signing and verifying go through `signed_note`'s `Signer`/`Verifier`
//! traits, so its note parsing and duplicate handling apply unchanged.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, NoteError, Signature, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;

use crate::checkpoint::{encoded_key, is_valid_key_name};

/// Signature type byte of Ed25519 cosignature/v1 keys (C2SP signed-note,
/// "Signature types"; C2SP tlog-cosignature, Format).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Largest timestamp a cosignature may carry: 2^63 - 1 (C2SP tlog-cosignature, Format).
pub const MAX_COSIGNATURE_TIME: u64 = i64::MAX as u64;

const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// The witness name cannot be a key name.
    #[error(
        "{name:?} cannot name a witness key: a key name must be non-empty and contain no \
         spaces or '+' (C2SP signed-note, Format)"
    )]
    InvalidKeyName {
        /// The refused name.
        name: String,
    },
    /// The time does not fit the format.
    #[error(
        "cosignature time {time} is beyond 2^63-1 seconds (C2SP tlog-cosignature, Format); pass Unix seconds"
    )]
    TimeOutOfRange {
        /// The refused time.
        time: u64,
    },
    /// What is being cosigned is not a checkpoint body.
    #[error(
        "the cosigned text is not a C2SP tlog-checkpoint body (origin, size, root hash, optional \
         extension lines, each ending in a newline, without signature lines)"
    )]
    NotACheckpoint,
    /// The line is not a note signature line carrying a timestamped Ed25519 signature.
    #[error(
        "not a cosignature line: expected '— <witness name> <base64 of key id (4 bytes), \
         timestamp (8) and Ed25519 signature (64)>'"
    )]
    MalformedLine,
    /// The bytes are not a signed note.
    #[error("not a C2SP signed note, so it can carry no cosignature")]
    MalformedNote,
    /// The line or note is by some other key.
    #[error(
        "no cosignature by {key}: the line is by another witness or another key of this one; \
         check the witness's name and public key"
    )]
    NotCosignedBy {
        /// `<name>+<key id>` of the expected cosigner key.
        key: String,
    },
    /// The expected witness's line is there but its signature is wrong.
    #[error(
        "the cosignature by {key} does not verify: the checkpoint or the time differs from what \
         the witness signed"
    )]
    BadSignature {
        /// `<name>+<key id>` of the expected cosigner key.
        key: String,
    },
    /// The witness key failed to sign.
    #[error("signing the cosignature failed: {0}")]
    Signing(String),
}

/// Key id of a witness's cosignature/v1 key:
/// the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key) (C2SP tlog-cosignature, Format).
pub fn cosignature_key_id(witness_name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(witness_name, &encoded_key(SIG_TYPE_COSIGNATURE_V1, key))
}

/// The witness's vkey, `<name>+<key id>+<base64(0x04 ‖ public key)>`
/// (C2SP tlog-cosignature: Ed25519 keys MAY be encoded as vkeys with type 0x04).
pub fn cosigner_vkey_string(witness_name: &str, key: &VerifyingKey) -> String {
    format!(
        "{witness_name}+{:08x}+{}",
        cosignature_key_id(witness_name, key),
        BASE64.encode(encoded_key(SIG_TYPE_COSIGNATURE_V1, key))
    )
}

/// The message a cosignature/v1 signs: `"cosignature/v1\ntime <t>\n"`
/// followed by the checkpoint body (C2SP tlog-cosignature, "Ed25519 signed message").
pub fn cosignature_message(checkpoint_body: &[u8], time_unix: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time_unix}\n").into_bytes();
    m.extend_from_slice(checkpoint_body);
    m
}

/// A witness key signing at a fixed time, as `signed_note` sees it.
struct Cosigner<'a> {
    name: &'a str,
    id: u32,
    key: &'a SigningKey,
    time: u64,
}

impl signed_note::Signer for Cosigner<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let sig = self.key.try_sign(&cosignature_message(msg, self.time))?;
        let mut out = Vec::with_capacity(TIMESTAMPED_SIGNATURE_LEN);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A witness public key checking cosignature/v1 payloads, as `signed_note` sees it.
struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = split_payload(sig) else {
            return false;
        };
        if time > MAX_COSIGNATURE_TIME {
            return false;
        }
        self.key
            .verify(&cosignature_message(msg, time), &sig)
            .is_ok()
    }
}

/// `timestamp ‖ signature` → (timestamp, signature), if the length is right.
fn split_payload(payload: &[u8]) -> Option<(u64, ed25519_dalek::Signature)> {
    if payload.len() != TIMESTAMPED_SIGNATURE_LEN {
        return None;
    }
    let (time, sig) = payload.split_at(8);
    let time = u64::from_be_bytes(time.try_into().ok()?);
    let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
    Some((time, sig))
}

fn check_body(checkpoint_body: &[u8]) -> Result<(), CosignatureError> {
    Checkpoint::from_bytes(checkpoint_body).map_err(|_| CosignatureError::NotACheckpoint)?;
    // Note::new also refuses control characters and a missing final newline.
    Note::new(checkpoint_body, &[]).map_err(|_| CosignatureError::NotACheckpoint)?;
    Ok(())
}

/// A witness's cosignature/v1 on a checkpoint body (the checkpoint text
/// without signatures, e.g. [`crate::VerifiedCheckpoint::body`]), made at
/// `time_unix` (seconds; the witness's clock, passed in). Returns the note
/// signature line, `— <witness name> <base64>` ending in a newline, ready to
/// append to the checkpoint's note.
pub fn cosign(
    checkpoint_body: &[u8],
    time_unix: u64,
    witness_name: &str,
    key: &SigningKey,
) -> Result<String, CosignatureError> {
    if !is_valid_key_name(witness_name) {
        return Err(CosignatureError::InvalidKeyName {
            name: witness_name.to_owned(),
        });
    }
    if time_unix > MAX_COSIGNATURE_TIME {
        return Err(CosignatureError::TimeOutOfRange { time: time_unix });
    }
    check_body(checkpoint_body)?;
    let signer = Cosigner {
        name: witness_name,
        id: cosignature_key_id(witness_name, &key.verifying_key()),
        key,
        time: time_unix,
    };
    let payload = signed_note::Signer::sign(&signer, checkpoint_body)
        .map_err(|e| CosignatureError::Signing(e.to_string()))?;
    let line = Signature::new(witness_name.to_owned(), signer.id, payload).map_err(|_| {
        CosignatureError::InvalidKeyName {
            name: witness_name.to_owned(),
        }
    })?;
    String::from_utf8(line.to_bytes()).map_err(|_| CosignatureError::MalformedLine)
}

/// A cosignature line taken apart but **not verified**: who claims to have
/// cosigned, with which key id, and when. Use it to pick the witness key to
/// verify with, never as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureLine {
    name: String,
    key_id: u32,
    time_unix: u64,
}

impl CosignatureLine {
    /// Parses `— <name> <base64(key id ‖ timestamp ‖ signature)>`, with or
    /// without the final newline.
    pub fn parse(line: &str) -> Result<Self, CosignatureError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let sig =
            Signature::from_bytes(line.as_bytes()).map_err(|_| CosignatureError::MalformedLine)?;
        let (time_unix, _) =
            split_payload(sig.signature()).ok_or(CosignatureError::MalformedLine)?;
        Ok(Self {
            name: sig.name().to_owned(),
            key_id: sig.id(),
            time_unix,
        })
    }

    /// The claimed witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The claimed key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The claimed time, Unix seconds.
    pub fn time_unix(&self) -> u64 {
        self.time_unix
    }
}

/// A cosignature whose signature by the expected witness key was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCosignature {
    witness_name: String,
    key_id: u32,
    time_unix: u64,
}

impl VerifiedCosignature {
    /// The witness's key name.
    pub fn witness_name(&self) -> &str {
        &self.witness_name
    }

    /// The witness key's cosignature/v1 key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// When the witness says it cosigned, Unix seconds. Whether a time in
    /// the future is acceptable is the caller's decision (it has the clock).
    pub fn time_unix(&self) -> u64 {
        self.time_unix
    }
}

impl fmt::Display for VerifiedCosignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:08x} at {}",
            self.witness_name, self.key_id, self.time_unix
        )
    }
}

/// Verifies one cosignature line over a checkpoint body, by the witness
/// `witness_name` with public key `key`.
pub fn verify_cosignature(
    checkpoint_body: &[u8],
    line: &str,
    witness_name: &str,
    key: &VerifyingKey,
) -> Result<VerifiedCosignature, CosignatureError> {
    check_body(checkpoint_body)?;
    let line = line.strip_suffix('\n').unwrap_or(line);
    let sig =
        Signature::from_bytes(line.as_bytes()).map_err(|_| CosignatureError::MalformedLine)?;
    let note = Note::new(checkpoint_body, &[sig]).map_err(|_| CosignatureError::NotACheckpoint)?;
    verify_in(&note, witness_name, key)
}

/// Finds and verifies the cosignature by `witness_name`/`key` among the
/// signature lines of a signed checkpoint note. Other lines (the log's own
/// signature, other witnesses) are ignored.
pub fn verify_cosignature_in_note(
    note: &[u8],
    witness_name: &str,
    key: &VerifyingKey,
) -> Result<VerifiedCosignature, CosignatureError> {
    let note = Note::from_bytes(note).map_err(|_| CosignatureError::MalformedNote)?;
    check_body(note.text())?;
    verify_in(&note, witness_name, key)
}

fn verify_in(
    note: &Note,
    witness_name: &str,
    key: &VerifyingKey,
) -> Result<VerifiedCosignature, CosignatureError> {
    if !is_valid_key_name(witness_name) {
        return Err(CosignatureError::InvalidKeyName {
            name: witness_name.to_owned(),
        });
    }
    let id = cosignature_key_id(witness_name, key);
    let key_label = format!("{witness_name}+{id:08x}");
    let verifier = CosignatureVerifier {
        name: witness_name.to_owned(),
        id,
        key: *key,
    };
    let known = VerifierList::new(vec![Box::new(verifier)]);
    let verified = match note.verify(&known) {
        Ok((verified, _)) => verified,
        Err(NoteError::UnverifiedNote) => {
            return Err(CosignatureError::NotCosignedBy { key: key_label });
        }
        Err(NoteError::InvalidSignature { .. }) => {
            return Err(CosignatureError::BadSignature { key: key_label });
        }
        Err(_) => return Err(CosignatureError::MalformedNote),
    };
    let sig = verified
        .iter()
        .find(|s| s.name() == witness_name && s.id() == id)
        .ok_or_else(|| CosignatureError::NotCosignedBy {
            key: key_label.clone(),
        })?;
    let (time_unix, _) =
        split_payload(sig.signature()).ok_or(CosignatureError::BadSignature { key: key_label })?;
    Ok(VerifiedCosignature {
        witness_name: witness_name.to_owned(),
        key_id: id,
        time_unix,
    })
}
