//! Tests of `lienthong-log` against the specifications it implements: RFC
//! 6962 / RFC 9162 (Merkle trees and proofs), C2SP signed-note, C2SP
//! tlog-checkpoint and C2SP tlog-cosignature. One test binary; each module
//! names the document it pins.

mod checkpoint;
mod cosignature;
mod properties;
mod rfc6962_vectors;
mod signed_note_spec;
mod stores;

use ed25519_dalek::SigningKey;
use lienthong_log::Hash;

/// A hash from 64 hex digits.
pub fn hash_hex(s: &str) -> Hash {
    Hash(hex::decode(s).expect("hex").try_into().expect("32 bytes"))
}

/// A hash from base64, the encoding of checkpoints and of the
/// transparency-dev/merkle JSON vectors.
pub fn hash_b64(s: &str) -> Hash {
    Hash::parse_hash(s).expect("base64 hash")
}

/// A deterministic test key.
pub fn test_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The same bytes with one bit flipped at `at`.
pub fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[at] ^= 0x01;
    v
}
