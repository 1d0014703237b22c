//! What a receiver checks before it stores anything a peer sent (issue 4,
//! item 3), as one pure function.
//!
//! A delivery is an envelope from the author's feed, the author's signed
//! checkpoint, and an inclusion proof of the entry under that checkpoint.
//! The receiver may legitimately see only some of the author's entries (the
//! others are not for it), so it never relies on having every leaf: each
//! entry is proven included on its own.

use crate::entry::{EntryError, VerifiedEntry};
use ed25519_dalek::VerifyingKey;
use lienthong_log::{CheckpointError, Hash, ProofError, VerifiedCheckpoint};

/// What the manifest chain says about an author's keys.
#[derive(Debug, Clone)]
pub struct AuthorKeys {
    /// Member code.
    pub member: String,
    /// Checkpoint origin and signed-note key name, `<federation>/<member>`.
    pub origin: String,
    /// Key in force now (in the receiver's newest manifest): checkpoints
    /// must be signed with it, so a retired or compromised key cannot
    /// vouch for anything new.
    pub current: VerifyingKey,
    /// (first manifest version, key) in version order; `None` where the
    /// author was not a member. Entries are verified with the key in force
    /// at their `manifest_version`.
    pub history: Vec<(u64, Option<VerifyingKey>)>,
    /// Newest manifest version the receiver has; entries naming a later
    /// one cannot be judged yet.
    pub known: u64,
}

impl AuthorKeys {
    /// An author that has had one key from version 1 on.
    pub fn single(member: &str, origin: &str, key: VerifyingKey) -> Self {
        Self {
            member: member.to_owned(),
            origin: origin.to_owned(),
            current: key,
            history: vec![(1, Some(key))],
            known: u64::MAX,
        }
    }

    /// From the receiver's manifest chain; `None` if the author is not a
    /// member of the version in force.
    pub fn from_chain(chain: &crate::manifest::ManifestChain, member: &str) -> Option<Self> {
        let current = *chain.current().member_key(member)?;
        Some(Self {
            member: member.to_owned(),
            origin: format!("{}/{member}", chain.current().manifest().federation),
            current,
            history: chain.key_history(member),
            known: chain.current().version(),
        })
    }

    /// The key in force at manifest `version`, if the author was a member
    /// then and the version is not newer than the receiver's.
    pub fn at(&self, version: u64) -> Option<&VerifyingKey> {
        if version > self.known {
            return None;
        }
        self.history
            .iter()
            .rev()
            .find(|(from, _)| *from <= version)
            .and_then(|(_, k)| k.as_ref())
    }
}

/// One entry as a peer delivers it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Envelope bytes as signed.
    pub envelope: &'a [u8],
    /// The author's signed checkpoint the proof is against.
    pub checkpoint: &'a [u8],
    /// Inclusion proof of the entry under that checkpoint.
    pub inclusion_proof: &'a [Hash],
}

/// A delivery that passed every check: signature by the author, addressed
/// to us, and included in a checkpoint the author signed. Only
/// [`verify_delivery`] and its halves make one.
#[derive(Debug, Clone)]
pub struct AcceptedDelivery {
    entry: VerifiedEntry,
    checkpoint: VerifiedCheckpoint,
    inclusion_proof: Vec<Hash>,
}

impl AcceptedDelivery {
    /// The verified entry.
    pub fn entry(&self) -> &VerifiedEntry {
        &self.entry
    }
    /// The checkpoint it is included in.
    pub fn checkpoint(&self) -> &VerifiedCheckpoint {
        &self.checkpoint
    }
    /// The inclusion proof that was checked, kept so the receiver can
    /// later prove what the author showed it.
    pub fn inclusion_proof(&self) -> &[Hash] {
        &self.inclusion_proof
    }
    /// Both parts.
    pub fn into_parts(self) -> (VerifiedEntry, VerifiedCheckpoint) {
        (self.entry, self.checkpoint)
    }
}

/// Why a delivery was refused. Each is logged; signed ones are evidence.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Bad envelope, wrong author or forged signature.
    #[error("entry refused: {0}")]
    Entry(#[from] EntryError),
    /// The entry names a manifest version this receiver does not have (or
    /// in which the author was not a member): fetch the newer manifest
    /// before deciding.
    #[error(
        "entry {index} of {author} was signed under manifest version {version}, in which this node knows no key for it (it knows versions up to {known})"
    )]
    UnknownManifestVersion {
        /// Author.
        author: String,
        /// Feed index.
        index: u64,
        /// The entry's manifest version.
        version: u64,
        /// Newest version the receiver knows.
        known: u64,
    },
    /// Signed by the author, but not addressed to us: the author broke the
    /// agreement by sending it.
    #[error("entry {index} of {author} is not addressed to {me} (audience {audience:?})")]
    NotForUs {
        /// Author.
        author: String,
        /// Feed index.
        index: u64,
        /// Us.
        me: String,
        /// The signed audience.
        audience: Vec<String>,
    },
    /// Already received, or sent out of order.
    #[error(
        "entry {index} of {author} comes before the next expected index {expected}: replayed or reordered"
    )]
    Replayed {
        /// Author.
        author: String,
        /// Feed index.
        index: u64,
        /// Next index we expect.
        expected: u64,
    },
    /// The checkpoint does not verify under the author's key.
    #[error("checkpoint refused: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The entry is beyond the checkpoint offered for it.
    #[error("entry {index} is not covered by the checkpoint of size {size}")]
    BeyondCheckpoint {
        /// Feed index.
        index: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// The inclusion proof fails: the entry is not in the author's log.
    #[error("entry {index} is not proven included in the author's checkpoint: {source}")]
    NotIncluded {
        /// Feed index.
        index: u64,
        /// Why.
        source: ProofError,
    },
}

impl Rejected {
    /// A short, stable name for the reason, for metrics and status
    /// (`lienthong_peer_refused_deliveries{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Entry(EntryError::TooLarge(_)) => "oversized",
            Self::Entry(EntryError::Malformed { .. }) => "malformed",
            Self::Entry(EntryError::UnknownFormat(_)) => "unknown_format",
            Self::Entry(EntryError::WrongAuthor { .. }) => "wrong_author",
            Self::Entry(EntryError::BadSignature { .. }) => "forged_signature",
            Self::UnknownManifestVersion { .. } => "unknown_manifest_version",
            Self::NotForUs { .. } => "not_for_us",
            Self::Replayed { .. } => "replayed",
            Self::Checkpoint(_) => "bad_checkpoint",
            Self::BeyondCheckpoint { .. } => "beyond_checkpoint",
            Self::NotIncluded { .. } => "not_included",
        }
    }
}

/// Checks a delivery from `author` to member `me`, who expects indexes from
/// `next_expected` on.
pub fn verify_delivery(
    d: Delivery<'_>,
    author: &AuthorKeys,
    me: &str,
    next_expected: u64,
) -> Result<AcceptedDelivery, Rejected> {
    let checkpoint = verify_author_checkpoint(d.checkpoint, author)?;
    verify_delivery_under(
        d.envelope,
        d.inclusion_proof,
        &checkpoint,
        author,
        me,
        next_expected,
    )
}

/// The first half of [`verify_delivery`]: the author's checkpoint, signed
/// with its key in force. A receiver that gets many entries under one
/// checkpoint verifies it once and reuses it with
/// [`verify_delivery_under`].
pub fn verify_author_checkpoint(
    note: &[u8],
    author: &AuthorKeys,
) -> Result<VerifiedCheckpoint, Rejected> {
    Ok(lienthong_log::verify_checkpoint_with_key(
        note,
        &author.origin,
        &author.current,
    )?)
}

/// The second half of [`verify_delivery`]: the entry, under a checkpoint
/// that [`verify_author_checkpoint`] accepted for the same `author`.
pub fn verify_delivery_under(
    envelope: &[u8],
    inclusion_proof: &[Hash],
    checkpoint: &VerifiedCheckpoint,
    author: &AuthorKeys,
    me: &str,
    next_expected: u64,
) -> Result<AcceptedDelivery, Rejected> {
    let signed = match verify_entries(&[envelope], author).pop() {
        Some(result) => result?,
        None => unreachable!("one result for each envelope"),
    };
    accept_entry(
        signed,
        inclusion_proof,
        checkpoint,
        author,
        me,
        next_expected,
    )
}

/// The signature half of [`verify_delivery_under`] for many envelopes by
/// `author` at once: each decoded, its key chosen by its manifest version,
/// and the signatures checked together, which costs about half as much
/// per entry as one by one (the rule is the same, see
/// [`crate::signature`]). Results are in input order; pass each accepted
/// entry to [`accept_entry`].
pub fn verify_entries(
    envelopes: &[&[u8]],
    author: &AuthorKeys,
) -> Vec<Result<SignedByAuthor, Rejected>> {
    let mut results: Vec<Option<Result<SignedByAuthor, Rejected>>> = Vec::new();
    let mut decoded = Vec::new();
    for envelope in envelopes {
        let (env, body) = match crate::entry::decode_envelope(envelope) {
            Ok(d) => d,
            Err(e) => {
                results.push(Some(Err(e.into())));
                continue;
            }
        };
        let version = body.manifest_version;
        let Some(key) = author.at(version) else {
            results.push(Some(Err(Rejected::UnknownManifestVersion {
                author: author.member.clone(),
                index: body.index,
                version,
                known: author.known,
            })));
            continue;
        };
        results.push(None);
        decoded.push(crate::entry::Decoded {
            envelope,
            env,
            body,
            key,
        });
    }
    let mut verified = crate::entry::verify_decoded(decoded, &author.member).into_iter();
    results
        .into_iter()
        .map(|r| match r {
            Some(refused) => refused,
            None => match verified.next() {
                Some(v) => v.map(SignedByAuthor).map_err(Rejected::from),
                None => unreachable!("one result for each decoded envelope"),
            },
        })
        .collect()
}

/// An entry whose signature [`verify_entries`] checked under the key the
/// author held at the entry's manifest version. Only that function makes
/// one, so [`accept_entry`] cannot be handed an entry checked under some
/// other key.
#[derive(Debug, Clone)]
pub struct SignedByAuthor(VerifiedEntry);

impl SignedByAuthor {
    /// The verified entry.
    pub fn entry(&self) -> &VerifiedEntry {
        &self.0
    }
}

/// The rest of [`verify_delivery_under`], for an entry whose signature
/// [`verify_entries`] checked: not a replay, addressed to `me`, and
/// included in `checkpoint`. `author` must be the one `signed` was
/// checked for.
pub fn accept_entry(
    signed: SignedByAuthor,
    inclusion_proof: &[Hash],
    checkpoint: &VerifiedCheckpoint,
    author: &AuthorKeys,
    me: &str,
    next_expected: u64,
) -> Result<AcceptedDelivery, Rejected> {
    let entry = signed.0;
    if entry.author() != author.member {
        return Err(EntryError::WrongAuthor {
            expected: author.member.clone(),
            found: entry.author().to_owned(),
        }
        .into());
    }
    let index = entry.index();
    if index < next_expected {
        return Err(Rejected::Replayed {
            author: author.member.clone(),
            index,
            expected: next_expected,
        });
    }
    if !entry.body().audience.iter().any(|m| m == me) {
        return Err(Rejected::NotForUs {
            author: author.member.clone(),
            index,
            me: me.to_owned(),
            audience: entry.body().audience.clone(),
        });
    }
    if index >= checkpoint.size() {
        return Err(Rejected::BeyondCheckpoint {
            index,
            size: checkpoint.size(),
        });
    }
    lienthong_log::verify_inclusion(
        index,
        checkpoint.size(),
        Hash(entry.id().0),
        inclusion_proof,
        checkpoint.root(),
    )
    .map_err(|source| Rejected::NotIncluded { index, source })?;
    Ok(AcceptedDelivery {
        entry,
        checkpoint: checkpoint.clone(),
        inclusion_proof: inclusion_proof.to_vec(),
    })
}
