//! Checkpoints: a C2SP tlog-checkpoint text signed as a C2SP signed-note
//! with an Ed25519 key, and the `<name>+<id>+<key>` verifier-key form.
//!
//! Parsing, signing and signature checking are `signed_note` and
//! `tlog_tiles::checkpoint`; this module decides what a valid checkpoint of
//! a feed is (signed by the expected key, origin equal to the key name) and
//! hands out [`VerifiedCheckpoint`], which nothing else can make.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, NoteError, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;

/// Signature type byte of Ed25519 note signatures (C2SP signed-note, "Signature types").
pub(crate) const SIG_TYPE_ED25519: u8 = 0x01;

/// Why a checkpoint or a verifier key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The name cannot be a signed-note key name.
    #[error(
        "{name:?} cannot name a signed-note key: a key name must be non-empty and contain \
         no spaces or '+' (C2SP signed-note, Format)"
    )]
    InvalidKeyName {
        /// The refused name.
        name: String,
    },
    /// The verifier key string is malformed.
    #[error(
        "verifier key {vkey:?} is malformed: {reason}; expected \
         <name>+<8 hex digit key id>+<base64 of 0x01 followed by the 32-byte Ed25519 public key>"
    )]
    InvalidVkey {
        /// The refused vkey.
        vkey: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bytes are not a signed note at all.
    #[error(
        "not a C2SP signed note: expected UTF-8 text without control characters ending in a \
         newline, a blank line, then 1 to 100 lines '— <key name> <base64 signature>', at most 1 MB"
    )]
    MalformedNote,
    /// None of the note's signatures is by the expected key.
    #[error(
        "the note has no signature by {key}: it was signed by another key or for another log; \
         check that this is the right verifier key"
    )]
    NotSignedBy {
        /// `<name>+<key id>` of the expected key.
        key: String,
    },
    /// A signature by the expected key is there but wrong.
    #[error("the signature by {key} does not verify: the note was altered after it was signed")]
    BadSignature {
        /// `<name>+<key id>` of the expected key.
        key: String,
    },
    /// The signed text is not a checkpoint.
    #[error(
        "the signed text is not a C2SP tlog-checkpoint: expected an origin line, the tree size \
         in decimal without leading zeros, the base64 root hash, then optional non-empty extension lines"
    )]
    NotACheckpoint,
    /// The checkpoint names a log other than its key.
    #[error(
        "the checkpoint is for log {origin:?} but the key is named {key_name:?}: a feed's \
         checkpoints are signed under its origin, so this one belongs to another feed"
    )]
    OriginMismatch {
        /// The checkpoint's origin line.
        origin: String,
        /// The signing or verifying key's name.
        key_name: String,
    },
    /// The signing key failed to sign.
    #[error("signing the checkpoint failed: {0}")]
    Signing(String),
}

/// Whether `name` can name a signed-note key, and so a feed's origin
/// (C2SP signed-note, Format).
pub fn is_valid_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// `sig_type ‖ public key`, the key encoding inside key ids and vkeys.
pub(crate) fn encoded_key(sig_type: u8, key: &VerifyingKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 32);
    v.push(sig_type);
    v.extend_from_slice(key.as_bytes());
    v
}

/// `<name>+<key id as 8 hex digits>+<base64(0x01 ‖ public key)>`, the
/// verifier key ("vkey") that Go's `golang.org/x/mod/sumdb/note` and the
/// C2SP tools accept (C2SP signed-note, Verifier keys).
pub fn vkey_string(name: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(name, key)
}

/// Parses an Ed25519 vkey into its name, key id and public key, checking
/// that the key id is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key).
pub fn parse_vkey(vkey: &str) -> Result<(String, u32, VerifyingKey), CheckpointError> {
    let bad = |reason| CheckpointError::InvalidVkey {
        vkey: vkey.to_owned(),
        reason,
    };
    let (name, rest) = vkey
        .split_once('+')
        .ok_or_else(|| bad("it has no '+' separators"))?;
    let (id_hex, key_b64) = rest
        .split_once('+')
        .ok_or_else(|| bad("it has only one '+' separator"))?;
    if !is_valid_key_name(name) {
        return Err(bad("the key name is empty or contains spaces"));
    }
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the key id is not 8 hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("the key id is not 8 hex digits"))?;
    let raw = BASE64
        .decode(key_b64)
        .map_err(|_| bad("the key is not valid base64"))?;
    match raw.first() {
        Some(&SIG_TYPE_ED25519) => {}
        Some(0x04) => {
            return Err(bad(
                "this is a witness cosignature key (type 0x04), not a log signing key",
            ));
        }
        _ => return Err(bad("the key type is not Ed25519 (0x01)")),
    }
    let bytes: [u8; 32] = raw[1..]
        .try_into()
        .map_err(|_| bad("the Ed25519 key is not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| bad("the bytes are not an Ed25519 public key"))?;
    if signed_note::key_id(name, &raw) != id {
        return Err(bad("the key id does not match the name and key"));
    }
    Ok((name.to_owned(), id, key))
}

/// Signs notes with a member's Ed25519 key under a key name, which for a
/// feed is its checkpoint origin (e.g. `lienthong.example/bac-bo-11/01`).
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer for key name `name`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !is_valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName {
                name: name.to_owned(),
            });
        }
        let id = signed_note::key_id(name, &encoded_key(SIG_TYPE_ED25519, &key.verifying_key()));
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// The signed-note key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The verifier key string (see [`vkey_string`]).
    pub fn vkey(&self) -> String {
        vkey_string(&self.name, &self.key.verifying_key())
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        write!(f, "NoteSigner({}+{:08x})", self.name, self.id)
    }
}

impl signed_note::Signer for NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.try_sign(msg)?.to_bytes().to_vec())
    }
}

/// A tree head to sign: the three lines of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeHead {
    /// The feed's origin line, e.g. `lienthong.example/bac-bo-11/01`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
}

// `tlog_tiles`' Hash only derives PartialEq; byte equality is a full equivalence.
impl Eq for TreeHead {}

/// Signs `head` as a checkpoint (no extension lines) and returns the whole
/// signed note. The origin must be the signer's key name.
pub fn sign_checkpoint(head: &TreeHead, signer: &NoteSigner) -> Result<String, CheckpointError> {
    if head.origin != signer.name {
        return Err(CheckpointError::OriginMismatch {
            origin: head.origin.clone(),
            key_name: signer.name.clone(),
        });
    }
    let checkpoint = Checkpoint::new(&head.origin, head.size, head.root, "")
        .map_err(|_| CheckpointError::NotACheckpoint)?;
    let mut note =
        Note::new(&checkpoint.to_bytes(), &[]).map_err(|_| CheckpointError::NotACheckpoint)?;
    note.add_sigs(&[signer])
        .map_err(|e| CheckpointError::Signing(e.to_string()))?;
    // Note text and signature lines are UTF-8 by construction; checked anyway.
    String::from_utf8(note.to_bytes()).map_err(|_| CheckpointError::MalformedNote)
}

/// A checkpoint whose signature by the feed's key was checked and whose
/// origin is that key's name. Only [`verify_checkpoint`] and
/// [`verify_checkpoint_with_key`] make one ([`crate::SeenCheckpoints`]
/// hands out again what the latter made, for the same bytes and key).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    pub(crate) origin: String,
    pub(crate) size: u64,
    pub(crate) root: Hash,
    pub(crate) extension: String,
    pub(crate) note: String,
    pub(crate) body_len: usize,
    pub(crate) key_id: u32,
}

impl Eq for VerifiedCheckpoint {}

impl VerifiedCheckpoint {
    /// The origin line (equal to the key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Extension lines after the root hash, each ending in a newline; empty
    /// for our own checkpoints. Kept as signed, not interpreted.
    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// Origin, size and root.
    pub fn tree_head(&self) -> TreeHead {
        TreeHead {
            origin: self.origin.clone(),
            size: self.size,
            root: self.root,
        }
    }

    /// The whole signed note, exactly the bytes that were verified
    /// (including any other signatures, such as cosignatures).
    pub fn note_text(&self) -> &str {
        &self.note
    }

    /// The checkpoint text the signatures cover (the note without its blank
    /// line and signature lines); what a witness cosigns.
    pub fn body(&self) -> &str {
        &self.note[..self.body_len]
    }

    /// Key id of the key whose signature was verified.
    pub fn signed_by_key_id(&self) -> u32 {
        self.key_id
    }
}

/// Verifies a signed checkpoint against a vkey: the note must carry a valid
/// signature by that key, the text must be a C2SP checkpoint, and its origin
/// must equal the key name. Signatures by other keys (older keys of the same
/// feed, witnesses) are ignored, as C2SP signed-note requires.
pub fn verify_checkpoint(note: &[u8], vkey: &str) -> Result<VerifiedCheckpoint, CheckpointError> {
    let (name, id, _) = parse_vkey(vkey)?;
    let verifier = StandardVerifier::new(vkey).map_err(|_| CheckpointError::InvalidVkey {
        vkey: vkey.to_owned(),
        reason: "signed_note refused it",
    })?;
    let text = verified_text(note, verifier, &name, id)?;
    let checkpoint = Checkpoint::from_bytes(&text).map_err(|_| CheckpointError::NotACheckpoint)?;
    if checkpoint.origin() != name {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin().to_owned(),
            key_name: name,
        });
    }
    // Note::from_bytes accepted the bytes, so they are UTF-8.
    let note = String::from_utf8(note.to_vec()).map_err(|_| CheckpointError::MalformedNote)?;
    Ok(VerifiedCheckpoint {
        origin: name,
        size: checkpoint.size(),
        root: *checkpoint.hash(),
        extension: checkpoint.extension().to_owned(),
        note,
        body_len: text.len(),
        key_id: id,
    })
}

/// [`verify_checkpoint`] with the key given as a name and a public key.
pub fn verify_checkpoint_with_key(
    note: &[u8],
    name: &str,
    key: &VerifyingKey,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    if !is_valid_key_name(name) {
        return Err(CheckpointError::InvalidKeyName {
            name: name.to_owned(),
        });
    }
    verify_checkpoint(note, &vkey_string(name, key))
}

/// Verifies any signed note (not only a checkpoint) against an Ed25519 vkey
/// and returns its text, the part the signature covers.
pub fn verify_note(note: &[u8], vkey: &str) -> Result<String, CheckpointError> {
    let (name, id, _) = parse_vkey(vkey)?;
    let verifier = StandardVerifier::new(vkey).map_err(|_| CheckpointError::InvalidVkey {
        vkey: vkey.to_owned(),
        reason: "signed_note refused it",
    })?;
    let text = verified_text(note, verifier, &name, id)?;
    String::from_utf8(text).map_err(|_| CheckpointError::MalformedNote)
}

/// Parses `note` and checks its signature by `verifier`; returns the text.
fn verified_text(
    note: &[u8],
    verifier: StandardVerifier,
    name: &str,
    id: u32,
) -> Result<Vec<u8>, CheckpointError> {
    let key = format!("{name}+{id:08x}");
    let parsed = Note::from_bytes(note).map_err(|_| CheckpointError::MalformedNote)?;
    let known = VerifierList::new(vec![Box::new(verifier)]);
    match parsed.verify(&known) {
        Ok((verified, _)) if verified.iter().any(|s| s.name() == name && s.id() == id) => {
            Ok(parsed.text().to_vec())
        }
        Ok(_) | Err(NoteError::UnverifiedNote) => Err(CheckpointError::NotSignedBy { key }),
        Err(NoteError::InvalidSignature { .. }) => Err(CheckpointError::BadSignature { key }),
        Err(_) => Err(CheckpointError::MalformedNote),
    }
}
