//! Checkpoints: C2SP tlog-checkpoint text signed as a C2SP signed-note with
//! Ed25519, and C2SP tlog-cosignature/v1 witness signatures.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, Signature, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;

/// Signature algorithm byte of Ed25519 signed-note keys (C2SP signed-note §Signatures).
const ALG_ED25519: u8 = 0x01;
/// Signature algorithm byte of cosignature/v1 keys (C2SP tlog-cosignature).
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Why a checkpoint or cosignature was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The key name is not a valid signed-note key name.
    #[error("{0:?} is not a valid key name: it must be non-empty, without spaces or '+'")]
    BadName(String),
    /// The vkey string is malformed.
    #[error("malformed verifier key {0:?}: expected <name>+<8 hex digits>+<base64 of 0x01 and the 32-byte Ed25519 key>")]
    BadVkey(String),
    /// The note is not a well-formed signed note.
    #[error("malformed signed note: {0}")]
    Malformed(String),
    /// No valid signature by the expected key.
    #[error("the note is not signed by {0}: wrong key, altered text, or forged")]
    NotSigned(String),
    /// The note text is not a tlog checkpoint.
    #[error("the signed text is not a C2SP tlog-checkpoint")]
    NotACheckpoint,
    /// The checkpoint names another log than its key.
    #[error("checkpoint origin {found:?} does not match the key name {expected:?}")]
    WrongOrigin {
        /// Key name.
        expected: String,
        /// Origin line.
        found: String,
    },
    /// A cosignature line is malformed or does not verify.
    #[error("cosignature: {0}")]
    Cosignature(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A tree head to sign.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeHead {
    /// The log's origin line, e.g. `lienthong.example/bac-bo-11/01`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// Signs notes with a member's Ed25519 key under a key name.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer for `name` (the feed's origin).
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !is_valid_key_name(name) {
            return Err(CheckpointError::BadName(name.to_owned()));
        }
        let id = signed_note::key_id(name, &encoded_key(ALG_ED25519, &key.verifying_key()));
        Ok(Self { name: name.to_owned(), id, key })
    }
    /// The signed-note key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }
    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The verifier key string other tools accept.
    pub fn vkey(&self) -> String {
        vkey_string(&self.name, &self.key.verifying_key())
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
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

fn encoded_key(alg: u8, key: &VerifyingKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(alg);
    v.extend_from_slice(key.as_bytes());
    v
}

/// Whether `name` may name a signed-note key (C2SP signed-note §Format).
pub fn is_valid_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// `<name>+<key id hex>+<base64(0x01 ‖ key)>`, the vkey form of Go's
/// `sumdb/note` and the C2SP tools.
pub fn vkey_string(name: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(name, key)
}

/// Parses a vkey into (name, key id, key), checking the id.
pub fn parse_vkey(vkey: &str) -> Result<(String, u32, VerifyingKey), CheckpointError> {
    let bad = || CheckpointError::BadVkey(vkey.to_owned());
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    if !is_valid_key_name(name) || id_hex.len() != 8 {
        return Err(bad());
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad())?;
    let raw = BASE64.decode(b64).map_err(|_| bad())?;
    if raw.len() != 33 || raw[0] != ALG_ED25519 || signed_note::key_id(name, &raw) != id {
        return Err(bad());
    }
    let bytes: [u8; 32] = raw[1..].try_into().map_err(|_| bad())?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
    Ok((name.to_owned(), id, key))
}

/// Signs a checkpoint; returns the whole signed note.
pub fn sign_checkpoint(head: &TreeHead, signer: &NoteSigner) -> Result<String, CheckpointError> {
    if head.origin != signer.name {
        return Err(CheckpointError::WrongOrigin { expected: signer.name.clone(), found: head.origin.clone() });
    }
    let cp = Checkpoint::new(&head.origin, head.size, head.root, "").map_err(|_| CheckpointError::NotACheckpoint)?;
    let mut note = Note::new(&cp.to_bytes(), &[]).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    note.add_sigs(&[signer]).map_err(|e| CheckpointError::Signing(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))
}

/// A checkpoint whose signature was checked. Only verification makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    origin: String,
    size: u64,
    root: Hash,
    note: Vec<u8>,
    body: Vec<u8>,
    key_id: u32,
}

impl VerifiedCheckpoint {
    /// Origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// Tree size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Root hash.
    pub fn root(&self) -> Hash {
        self.root
    }
    /// The whole note, exactly as verified.
    pub fn note(&self) -> &[u8] {
        &self.note
    }
    /// The checkpoint text (what signatures and cosignatures cover).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// Key id of the signature that verified.
    pub fn signed_by_key_id(&self) -> u32 {
        self.key_id
    }
}

/// Verifies a signed checkpoint against a vkey; the origin must equal the
/// key's name.
pub fn verify_checkpoint(note: &[u8], vkey: &str) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verifier = StandardVerifier::new(vkey).map_err(|_| CheckpointError::BadVkey(vkey.to_owned()))?;
    let (name, id, _) = parse_vkey(vkey)?;
    let parsed = Note::from_bytes(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let list = VerifierList::new(vec![Box::new(verifier)]);
    let (verified, _) = parsed.verify(&list).map_err(|_| CheckpointError::NotSigned(format!("{name}+{id:08x}")))?;
    if !verified.iter().any(|s| s.name() == name && s.id() == id) {
        return Err(CheckpointError::NotSigned(format!("{name}+{id:08x}")));
    }
    let cp = Checkpoint::from_bytes(parsed.text()).map_err(|_| CheckpointError::NotACheckpoint)?;
    if cp.origin() != name {
        return Err(CheckpointError::WrongOrigin { expected: name, found: cp.origin().to_owned() });
    }
    Ok(VerifiedCheckpoint { origin: name, size: cp.size(), root: *cp.hash(), note: note.to_vec(), body: parsed.text().to_vec(), key_id: id })
}

/// [`verify_checkpoint`] with the key given as name and public key.
pub fn verify_checkpoint_with_key(note: &[u8], name: &str, key: &VerifyingKey) -> Result<VerifiedCheckpoint, CheckpointError> {
    if !is_valid_key_name(name) {
        return Err(CheckpointError::BadName(name.to_owned()));
    }
    verify_checkpoint(note, &vkey_string(name, key))
}

/// Key id of a witness's cosignature/v1 key (C2SP tlog-cosignature).
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> u32 {
    signed_note::key_id(name, &encoded_key(ALG_COSIGNATURE_V1, key))
}

fn cosigned_message(checkpoint_body: &[u8], time_unix: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time_unix}\n").into_bytes();
    m.extend_from_slice(checkpoint_body);
    m
}

/// A witness's cosignature/v1 on a checkpoint body, as a note signature
/// line (`— <name> <base64(key id ‖ time ‖ signature)>`). `time_unix` is
/// the witness's clock, passed in.
pub fn cosign(checkpoint_body: &[u8], time_unix: u64, witness_name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    if !is_valid_key_name(witness_name) {
        return Err(CheckpointError::BadName(witness_name.to_owned()));
    }
    let sig = key.sign(&cosigned_message(checkpoint_body, time_unix));
    let mut payload = Vec::with_capacity(8 + 64);
    payload.extend_from_slice(&time_unix.to_be_bytes());
    payload.extend_from_slice(&sig.to_bytes());
    let line = Signature::new(witness_name.to_owned(), cosignature_key_id(witness_name, &key.verifying_key()), payload)
        .map_err(|e| CheckpointError::Cosignature(e.to_string()))?;
    String::from_utf8(line.to_bytes()).map_err(|e| CheckpointError::Cosignature(e.to_string()))
}

/// Verifies a cosignature line over a checkpoint body; returns its time.
pub fn verify_cosignature(checkpoint_body: &[u8], line: &str, witness_name: &str, key: &VerifyingKey) -> Result<u64, CheckpointError> {
    let bad = |why: &str| CheckpointError::Cosignature(why.to_owned());
    let sig = Signature::from_bytes(line.trim_end_matches('\n').as_bytes()).map_err(|_| bad("malformed signature line"))?;
    if sig.name() != witness_name || sig.id() != cosignature_key_id(witness_name, key) {
        return Err(bad("signed by another key"));
    }
    let payload = sig.signature();
    if payload.len() != 8 + 64 {
        return Err(bad("payload is not 8-byte time and 64-byte signature"));
    }
    let time = u64::from_be_bytes(payload[..8].try_into().map_err(|_| bad("time"))?);
    let s = ed25519_dalek::Signature::from_slice(&payload[8..]).map_err(|_| bad("signature"))?;
    key.verify(&cosigned_message(checkpoint_body, time), &s).map_err(|_| bad("does not verify: altered checkpoint or time"))?;
    Ok(time)
}
