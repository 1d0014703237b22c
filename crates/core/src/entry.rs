//! Signed entries: the envelope format, entry ids and the verification type.
//!
//! ```text
//! EntryBody ──encode once──▶ body bytes ──Ed25519("lienthong:entry:v1\n" ‖ body)──▶ signature
//! Envelope { body, signature } ──encode──▶ envelope bytes
//! entry id = SHA-256(0x00 ‖ envelope bytes)      (RFC 6962 leaf hash)
//! ```
//!
//! A [`VerifiedEntry`] can only be made by [`sign_entry`] (we authored it) or
//! [`verify_envelope`] and [`crate::delivery::verify_entries`] (we checked
//! the author's signature over the exact bytes, by the one rule of
//! [`crate::signature`]), so code that stores or forwards entries cannot
//! forget to verify.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use lienthong_proto::v1::{EntryBody, Envelope};
use prost::Message;

/// Domain separation tag prefixed to the body before signing.
pub const ENTRY_SIGNING_DOMAIN: &[u8] = b"lienthong:entry:v1\n";

/// The only entry format this code writes and reads.
pub const ENTRY_FORMAT: u32 = 1;

/// Largest envelope accepted from anywhere, bytes.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// An entry id: the RFC 6962 leaf hash of the envelope bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub [u8; 32]);

impl EntryId {
    /// The id of an envelope.
    pub fn of_envelope(envelope: &[u8]) -> Self {
        Self(tlog_tiles::tlog::record_hash(envelope).0)
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
    /// From raw bytes, which must be 32 long.
    pub fn from_slice(s: &[u8]) -> Option<Self> {
        Some(Self(s.try_into().ok()?))
    }
}

impl std::fmt::Debug for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntryId({})", self.to_hex())
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {0} bytes is larger than the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not a protobuf `Envelope`, or its body is not an `EntryBody`.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which layer failed to decode.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The body declares a format this code does not know.
    #[error(
        "entry format {0} is not supported (this node reads format {ENTRY_FORMAT}); upgrade the node"
    )]
    UnknownFormat(u32),
    /// Signed by someone else than the member it names.
    #[error("entry names author {found:?} but was expected from {expected:?}")]
    WrongAuthor {
        /// Author expected by the caller.
        expected: String,
        /// Author named in the body.
        found: String,
    },
    /// The signature does not verify under the author's key.
    #[error(
        "signature does not verify under the key of member {author:?}: the entry was altered or forged"
    )]
    BadSignature {
        /// Claimed author.
        author: String,
    },
}

/// An entry whose signature is known to be good: either we signed it, or
/// [`verify_envelope`] checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEntry {
    envelope: Vec<u8>,
    id: EntryId,
    body: EntryBody,
}

impl VerifiedEntry {
    /// The exact envelope bytes.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
    /// The entry id (leaf hash).
    pub fn id(&self) -> EntryId {
        self.id
    }
    /// The decoded body.
    pub fn body(&self) -> &EntryBody {
        &self.body
    }
    /// Author member code.
    pub fn author(&self) -> &str {
        &self.body.author
    }
    /// Index in the author's feed.
    pub fn index(&self) -> u64 {
        self.body.index
    }
}

/// Encodes `body` once, signs it and wraps it into an envelope.
pub fn sign_entry(body: EntryBody, key: &SigningKey) -> VerifiedEntry {
    let body_bytes = body.encode_to_vec();
    let signature = key.sign(&signing_message(&body_bytes));
    let envelope = Envelope {
        body: body_bytes,
        signature: signature.to_bytes().to_vec(),
    }
    .encode_to_vec();
    let id = EntryId::of_envelope(&envelope);
    VerifiedEntry { envelope, id, body }
}

/// Checks an envelope from elsewhere (a peer, a bundle, our own store) and,
/// if its signature verifies under `author_key` for `expected_author`,
/// returns it as a [`VerifiedEntry`].
pub fn verify_envelope(
    envelope: &[u8],
    expected_author: &str,
    author_key: &VerifyingKey,
) -> Result<VerifiedEntry, EntryError> {
    let (env, body) = decode_envelope(envelope)?;
    let decoded = Decoded {
        envelope,
        env,
        body,
        key: author_key,
    };
    match verify_decoded(vec![decoded], expected_author).pop() {
        Some(result) => result,
        None => unreachable!("one result for each entry"),
    }
}

/// An envelope decoded by [`decode_envelope`], with the key its signature
/// must verify under, waiting for [`verify_decoded`].
pub(crate) struct Decoded<'a> {
    /// The envelope bytes `env` and `body` were decoded from.
    pub(crate) envelope: &'a [u8],
    pub(crate) env: Envelope,
    pub(crate) body: EntryBody,
    pub(crate) key: &'a VerifyingKey,
}

/// [`verify_envelope`] of envelopes already decoded (for a caller that
/// needed each body first to choose its key), each expected from
/// `expected_author`. The signatures are checked together
/// ([`crate::signature::verify_all`]); the results are in input order.
pub(crate) fn verify_decoded(
    decoded: Vec<Decoded<'_>>,
    expected_author: &str,
) -> Vec<Result<VerifiedEntry, EntryError>> {
    // The author and the signature's length first, for each.
    let parsed: Vec<Result<(Decoded<'_>, Signature), EntryError>> = decoded
        .into_iter()
        .map(|d| {
            if d.body.author != expected_author {
                return Err(EntryError::WrongAuthor {
                    expected: expected_author.to_owned(),
                    found: d.body.author,
                });
            }
            match Signature::from_slice(&d.env.signature) {
                Ok(sig) => Ok((d, sig)),
                Err(_) => Err(EntryError::BadSignature {
                    author: d.body.author,
                }),
            }
        })
        .collect();
    let messages: Vec<Vec<u8>> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|(d, _)| signing_message(&d.env.body))
        .collect();
    let checks: Vec<crate::signature::Check<'_>> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .zip(&messages)
        .map(|((d, signature), message)| crate::signature::Check {
            key: d.key,
            message,
            signature,
        })
        .collect();
    let mut good = crate::signature::verify_all(&checks).into_iter();
    parsed
        .into_iter()
        .map(|p| {
            let (d, _) = p?;
            if !good.next().unwrap_or(false) {
                return Err(EntryError::BadSignature {
                    author: d.body.author,
                });
            }
            Ok(VerifiedEntry {
                envelope: d.envelope.to_vec(),
                id: EntryId::of_envelope(d.envelope),
                body: d.body,
            })
        })
        .collect()
}

/// Decodes an envelope and its body without checking the signature; for
/// display of entries that were verified when they were stored.
pub fn decode_envelope(envelope: &[u8]) -> Result<(Envelope, EntryBody), EntryError> {
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return Err(EntryError::TooLarge(envelope.len()));
    }
    let env = Envelope::decode(envelope).map_err(|e| EntryError::Malformed {
        what: "envelope",
        detail: e.to_string(),
    })?;
    // One signed entry, one id: the envelope must be exactly its two fields
    // in order (what every protobuf encoder writes), not padded with unknown
    // fields or repeated ones that would give the same entry another id.
    // Checked without re-encoding (this runs on every stored read): any
    // unknown, repeated or explicitly empty field, or a non-minimal length,
    // makes the input longer than the canonical encoding, so equal lengths
    // leave only the order of the two fields to check.
    let reordered = !env.body.is_empty() && envelope.first() != Some(&0x0a);
    if env.encoded_len() != envelope.len() || reordered {
        return Err(EntryError::Malformed {
            what: "envelope",
            detail: "not in canonical form (unknown, repeated or reordered fields)".into(),
        });
    }
    let body = EntryBody::decode(env.body.as_slice()).map_err(|e| EntryError::Malformed {
        what: "entry body",
        detail: e.to_string(),
    })?;
    if body.format != ENTRY_FORMAT {
        return Err(EntryError::UnknownFormat(body.format));
    }
    Ok((env, body))
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENTRY_SIGNING_DOMAIN.len() + body.len());
    m.extend_from_slice(ENTRY_SIGNING_DOMAIN);
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_proto::v1::{Alert, entry_body::Payload};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn body(title: &str, index: u64) -> EntryBody {
        EntryBody {
            format: ENTRY_FORMAT,
            author: "20".into(),
            index,
            created_unix_ms: 1_795_000_000_000,
            audience: vec!["20".into()],
            manifest_version: 0,
            agreement_hash: vec![],
            handling: 0,
            response_deadline_hours: 0,
            payload: Some(Payload::Alert(Alert {
                reference: "r1".into(),
                title: title.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn signed_entries_verify_and_id_is_rfc6962_leaf_hash() {
        let e = sign_entry(body("Hàng giả", 3), &key(1));
        let v = verify_envelope(e.envelope(), "20", &key(1).verifying_key()).expect("verifies");
        assert_eq!(v, e);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(e.envelope());
        assert_eq!(e.id().0, <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn only_the_canonical_encoding_of_an_envelope_is_accepted() {
        let e = sign_entry(body("Hàng giả", 3), &key(1));
        let (env, _) = decode_envelope(e.envelope()).expect("canonical");
        let field = |tag: u8, v: &[u8]| {
            let mut f = vec![tag];
            prost::encoding::encode_varint(v.len() as u64, &mut f);
            f.extend_from_slice(v);
            f
        };
        let reordered = [field(0x12, &env.signature), field(0x0a, &env.body)].concat();
        let repeated = [e.envelope().to_vec(), field(0x12, &env.signature)].concat();
        let unknown = [e.envelope(), &[0x78, 0x01][..]].concat();
        let empty_field = [e.envelope(), &[0x0a, 0x00][..]].concat();
        for bad in [reordered, repeated, unknown, empty_field] {
            assert!(
                matches!(decode_envelope(&bad), Err(EntryError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_signature_covers_the_domain_tag() {
        // A signature over the bare body (no domain tag) must not verify.
        let b = body("x", 0);
        let bytes = b.encode_to_vec();
        let sig = key(1).sign(&bytes);
        let env = Envelope {
            body: bytes,
            signature: sig.to_bytes().to_vec(),
        }
        .encode_to_vec();
        assert!(matches!(
            verify_envelope(&env, "20", &key(1).verifying_key()),
            Err(EntryError::BadSignature { .. })
        ));
    }

    #[test]
    fn wrong_key_wrong_author_and_unknown_format_are_refused() {
        let e = sign_entry(body("x", 0), &key(1));
        assert!(matches!(
            verify_envelope(e.envelope(), "20", &key(2).verifying_key()),
            Err(EntryError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_envelope(e.envelope(), "01", &key(1).verifying_key()),
            Err(EntryError::WrongAuthor { .. })
        ));
        let mut b = body("x", 0);
        b.format = 2;
        let e2 = sign_entry(b, &key(1));
        assert_eq!(
            verify_envelope(e2.envelope(), "20", &key(1).verifying_key()),
            Err(EntryError::UnknownFormat(2))
        );
        assert!(matches!(
            verify_envelope(
                &vec![0u8; MAX_ENVELOPE_BYTES + 1],
                "20",
                &key(1).verifying_key()
            ),
            Err(EntryError::TooLarge(_))
        ));
    }

    proptest! {
        /// Round trip: whatever the body, the signed envelope verifies and
        /// decodes to the same body.
        #[test]
        fn round_trip(title in "\\PC{0,80}", index in any::<u64>(), seed in any::<u8>()) {
            let e = sign_entry(body(&title, index), &key(seed));
            let v = verify_envelope(e.envelope(), "20", &key(seed).verifying_key()).unwrap();
            prop_assert_eq!(v.body(), &body(&title, index));
        }

        /// Flipping any single bit of the envelope is detected: it either no
        /// longer decodes, names someone else, or fails the signature.
        #[test]
        fn any_bit_flip_is_detected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let e = sign_entry(body("Mỹ phẩm giả", 7), &key(9));
            let mut bytes = e.envelope().to_vec();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(verify_envelope(&bytes, "20", &key(9).verifying_key()).is_err());
        }
    }
}
