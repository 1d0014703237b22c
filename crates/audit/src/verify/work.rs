//! The parallel half of verification: everything about a record that does
//! not depend on the records before it. Decoding, leaf hashes, every
//! signature (entries, checkpoints, cosignatures, in one Ed25519 batch per
//! chunk), and the root each inclusion proof leads to. The sequential half
//! (`seq.rs`) then compares these facts with the state built so far.

use ed25519_dalek::{Signature, VerifyingKey};
use lienthong_core::entry::{ENTRY_SIGNING_DOMAIN, decode_envelope};
use lienthong_core::proto::entry_body::Payload;
use lienthong_log::Hash;
use lienthong_proto::v1::{BundleEnd, BundleRecord, Evidence, bundle_record::Record, evidence};
use prost::Message as _;

use crate::compact::root_from_inclusion_proof;
use crate::framing::RawRecord;
use crate::keys::KeyTable;

/// A record after the parallel checks.
#[derive(Debug)]
pub(crate) struct Processed {
    pub number: u64,
    pub offset: u64,
    /// Bytes of the record including its length prefix.
    pub framed_len: u64,
    pub item: Item,
}

#[derive(Debug)]
pub(crate) enum Item {
    /// Not a BundleRecord, or none of its fields set.
    Malformed(String),
    /// A header or manifest record after the manifest chain.
    Misplaced(&'static str),
    SegmentStart {
        author: String,
        start: u64,
        prefix: Result<Vec<Hash>, String>,
    },
    SegmentEntry(Box<EntryFacts>),
    Checkpoint(Box<CheckpointFacts>),
    SegmentEnd {
        size: u64,
    },
    Received {
        entry: Box<EntryFacts>,
        checkpoint_size: u64,
        /// The root the inclusion proof leads to.
        implied_root: Result<Hash, String>,
    },
    Consistency {
        author: String,
        old_size: u64,
        new_size: u64,
        hashes: Result<Vec<Hash>, String>,
    },
    Evidence(Box<EvidenceFacts>),
    End(BundleEnd),
}

/// What one envelope says and whether its signature holds.
#[derive(Debug)]
pub(crate) struct EntryFacts {
    /// SHA-256(0x00 ‖ envelope): the entry id and Merkle leaf.
    pub leaf: Hash,
    pub body: Result<Body, String>,
    pub signature: SigState,
}

#[derive(Debug)]
pub(crate) struct Body {
    pub author: String,
    pub index: u64,
    pub created_unix_ms: i64,
    /// Audience as member bits (see `KeyTable::mask`).
    pub audience: u64,
    /// Audience codes that are no member of the trusted chain.
    pub unknown_audience: Vec<String>,
    /// Sorted, without duplicates, containing the author (entry.proto).
    pub audience_well_formed: bool,
    /// What a receipt acknowledges: its first entry, then `Receipt.more`.
    pub receipt: Option<Result<Vec<ReceiptFacts>, String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct ReceiptFacts {
    pub author: String,
    pub index: u64,
    pub entry_id: [u8; 32],
    pub checkpoint_size: u64,
}

/// The state of one signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SigState {
    /// Queued in this chunk's batch.
    Pending,
    /// Verified.
    Valid,
    /// Did not verify, or could not be checked; the text says why.
    Invalid(String),
}

/// A signed checkpoint note, taken apart.
#[derive(Debug)]
pub(crate) struct CheckpointFacts {
    pub parsed: Result<ParsedCheckpoint, String>,
    /// Signature lines by the feed's own keys.
    pub author_lines: Vec<AuthorLine>,
    /// Lines named like the author's origin but by a key it never held.
    pub unknown_author_keys: Vec<u32>,
    /// Lines by other members: witness cosignatures.
    pub cosignatures: Vec<CosignatureLine>,
    /// Names of signers outside the federation (ignored).
    pub foreign: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedCheckpoint {
    pub origin: String,
    /// The member whose feed it is; `None` if the origin names no member.
    pub member: Option<String>,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug)]
pub(crate) struct AuthorLine {
    /// Index into `KeyTable::held(member)`.
    pub held: usize,
    pub state: SigState,
}

#[derive(Debug)]
pub(crate) struct CosignatureLine {
    pub witness: String,
    pub key_id: u32,
    pub time_unix: u64,
    pub state: SigState,
}

impl CheckpointFacts {
    /// The outcome for the author's signature: the key that verified, or
    /// why none did.
    pub fn author_signature(&self) -> Result<usize, String> {
        if let Some(bad) = self.author_lines.iter().find_map(|l| match &l.state {
            SigState::Invalid(why) => Some(why.clone()),
            _ => None,
        }) {
            return Err(bad);
        }
        if let Some(l) = self
            .author_lines
            .iter()
            .find(|l| l.state == SigState::Valid)
        {
            return Ok(l.held);
        }
        if self.unknown_author_keys.is_empty() {
            Err("the note carries no signature by its member's key".into())
        } else {
            Err(format!(
                "the note is signed only by key id(s) {} under its origin, which the member never held in the manifest chain",
                self.unknown_author_keys
                    .iter()
                    .map(|id| format!("{id:08x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// Evidence, re-judged.
#[derive(Debug)]
pub(crate) struct EvidenceFacts {
    pub recorded_by: String,
    /// The member the evidence is about, when known.
    pub accused: Option<String>,
    pub index: Option<u64>,
    pub size: Option<u64>,
    pub outcome: EvidenceOutcome,
}

#[derive(Debug)]
pub(crate) enum EvidenceOutcome {
    /// The signatures prove the misbehaviour described.
    Confirmed(String),
    /// It verifies, but proves no misbehaviour by the accused.
    Unfounded(String),
    /// It does not verify: not evidence at all.
    Invalid(String),
}

/// One signature to check, and where its result goes.
struct SigJob {
    item: usize,
    slot: Slot,
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

#[derive(Clone, Copy)]
enum Slot {
    Entry,
    AuthorLine(usize),
    Cosignature(usize),
}

/// Examines a chunk of records: each on its own, then all their signatures
/// in one batch.
pub(crate) fn process_chunk(records: Vec<RawRecord>, keys: &KeyTable) -> Vec<Processed> {
    let mut jobs = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    for raw in records {
        let framed_len = raw.bytes.len() as u64 + varint_len(raw.bytes.len() as u64);
        let item = examine(&raw.bytes, keys, out.len(), &mut jobs);
        out.push(Processed {
            number: raw.number,
            offset: raw.offset,
            framed_len,
            item,
        });
    }
    let results = check_all(&jobs);
    for (job, ok) in jobs.iter().zip(results) {
        let state = if ok {
            SigState::Valid
        } else {
            SigState::Invalid(match job.slot {
                Slot::Entry => {
                    "the signature does not verify under the author's key for the entry's manifest version: the entry was altered or forged".into()
                }
                Slot::AuthorLine(_) | Slot::Cosignature(_) => String::new(),
            })
        };
        apply(&mut out[job.item].item, job.slot, state);
    }
    out
}

fn apply(item: &mut Item, slot: Slot, state: SigState) {
    match item {
        Item::SegmentEntry(e) | Item::Received { entry: e, .. } => e.signature = state,
        Item::Checkpoint(c) => apply_note(c, slot, state),
        _ => {}
    }
}

fn apply_note(c: &mut CheckpointFacts, slot: Slot, state: SigState) {
    match slot {
        Slot::AuthorLine(i) => {
            if let Some(l) = c.author_lines.get_mut(i) {
                l.state = match state {
                    SigState::Invalid(_) => SigState::Invalid(
                        "a signature line by the member's key does not verify: the checkpoint was altered after it was signed".into(),
                    ),
                    s => s,
                };
            }
        }
        Slot::Cosignature(i) => {
            if let Some(l) = c.cosignatures.get_mut(i) {
                l.state = match state {
                    SigState::Invalid(_) => SigState::Invalid(format!(
                        "the cosignature by {} (key id {:08x}, time {}) does not verify: the checkpoint or the time differs from what the witness signed",
                        l.witness, l.key_id, l.time_unix
                    )),
                    s => s,
                };
            }
        }
        Slot::Entry => {}
    }
}

/// Checks every job, by the one rule entries are checked with everywhere
/// ([`lienthong_core::signature`]): one batch, and if the batch fails,
/// each on its own to find which. The notes' signatures (author lines,
/// cosignatures) go through the same rule here; nodes check notes with
/// `signed_note`'s cofactorless equation, which refuses only signatures
/// their key holder crafted.
fn check_all(jobs: &[SigJob]) -> Vec<bool> {
    let checks: Vec<lienthong_core::signature::Check<'_>> = jobs
        .iter()
        .map(|j| lienthong_core::signature::Check {
            key: &j.key,
            message: &j.message,
            signature: &j.signature,
        })
        .collect();
    lienthong_core::signature::verify_all(&checks)
}

fn varint_len(mut n: u64) -> u64 {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn examine(bytes: &[u8], keys: &KeyTable, item: usize, jobs: &mut Vec<SigJob>) -> Item {
    let record = match BundleRecord::decode(bytes) {
        Ok(BundleRecord { record: Some(r) }) => r,
        Ok(BundleRecord { record: None }) => {
            return Item::Malformed(
                "the record has no field set (an unknown record kind from a newer format, or corrupt bytes)".into(),
            );
        }
        Err(e) => return Item::Malformed(format!("not a BundleRecord: {e}")),
    };
    match record {
        Record::Header(_) => Item::Misplaced("header"),
        Record::Manifest(_) => Item::Misplaced("manifest version"),
        Record::SegmentStart(s) => Item::SegmentStart {
            author: s.author,
            start: s.start,
            prefix: hashes(&s.prefix, "prefix hash"),
        },
        Record::SegmentEntry(e) => {
            Item::SegmentEntry(Box::new(examine_envelope(&e.envelope, keys, item, jobs)))
        }
        Record::Checkpoint(c) => {
            Item::Checkpoint(Box::new(examine_note(&c.note, keys, item, jobs)))
        }
        Record::SegmentEnd(e) => Item::SegmentEnd { size: e.size },
        Record::ReceivedEntry(r) => {
            let entry = examine_envelope(&r.envelope, keys, item, jobs);
            let implied_root = match (&entry.body, hashes(&r.inclusion_proof, "proof hash")) {
                (_, Err(e)) => Err(e),
                (Err(_), _) => Err("the entry does not decode, so its index is unknown".into()),
                (Ok(body), Ok(proof)) => {
                    root_from_inclusion_proof(body.index, r.checkpoint_size, entry.leaf, &proof)
                        .ok_or_else(|| {
                            format!(
                                "the proof has {} hashes, which is not the shape of an inclusion proof of index {} in a tree of size {}",
                                proof.len(),
                                body.index,
                                r.checkpoint_size
                            )
                        })
                }
            };
            Item::Received {
                entry: Box::new(entry),
                checkpoint_size: r.checkpoint_size,
                implied_root,
            }
        }
        Record::ConsistencyProof(p) => Item::Consistency {
            author: p.author,
            old_size: p.old_size,
            new_size: p.new_size,
            hashes: hashes(&p.hashes, "proof hash"),
        },
        Record::Evidence(e) => Item::Evidence(Box::new(examine_evidence(e, keys))),
        Record::End(e) => Item::End(e),
    }
}

fn hashes(raw: &[Vec<u8>], what: &str) -> Result<Vec<Hash>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, h)| {
            <[u8; 32]>::try_from(h.as_slice())
                .map(Hash)
                .map_err(|_| format!("{what} {i} is {} bytes, not 32", h.len()))
        })
        .collect()
}

/// Decodes an envelope, computes its leaf hash, and queues its signature
/// with the key its author held at the entry's manifest version.
fn examine_envelope(
    envelope: &[u8],
    keys: &KeyTable,
    item: usize,
    jobs: &mut Vec<SigJob>,
) -> EntryFacts {
    let leaf = lienthong_log::leaf_hash(envelope);
    let (env, body) = match decode_envelope(envelope) {
        Ok(x) => x,
        Err(e) => {
            return EntryFacts {
                leaf,
                body: Err(e.to_string()),
                signature: SigState::Invalid("not checked: the envelope does not decode".into()),
            };
        }
    };
    let (audience, unknown_audience) = keys.mask(&body.audience);
    let audience_well_formed =
        body.audience.windows(2).all(|w| w[0] < w[1]) && body.audience.contains(&body.author);
    let receipt = match &body.payload {
        Some(Payload::Receipt(r)) => Some(
            std::iter::once((r.index, &r.entry_id, r.checkpoint_size))
                .chain(
                    r.more
                        .iter()
                        .map(|m| (m.index, &m.entry_id, m.checkpoint_size)),
                )
                .map(|(index, id, checkpoint_size)| {
                    <[u8; 32]>::try_from(id.as_slice())
                        .map(|entry_id| ReceiptFacts {
                            author: r.author.clone(),
                            index,
                            entry_id,
                            checkpoint_size,
                        })
                        .map_err(|_| {
                            format!(
                                "the receipt's entry id for index {index} is {} bytes, not 32",
                                id.len()
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>(),
        ),
        _ => None,
    };
    let signature = match (
        keys.key_at(&body.author, body.manifest_version),
        Signature::from_slice(&env.signature),
    ) {
        (Err(why), _) => SigState::Invalid(format!("no key to check the signature with: {why}")),
        (Ok(_), Err(_)) => SigState::Invalid(format!(
            "the signature is {} bytes, not 64",
            env.signature.len()
        )),
        (Ok(key), Ok(signature)) => {
            let mut message = Vec::with_capacity(ENTRY_SIGNING_DOMAIN.len() + env.body.len());
            message.extend_from_slice(ENTRY_SIGNING_DOMAIN);
            message.extend_from_slice(&env.body);
            jobs.push(SigJob {
                item,
                slot: Slot::Entry,
                message,
                signature,
                key: *key,
            });
            SigState::Pending
        }
    };
    EntryFacts {
        leaf,
        body: Ok(Body {
            author: body.author,
            index: body.index,
            created_unix_ms: body.created_unix_ms,
            audience,
            unknown_audience,
            audience_well_formed,
            receipt,
        }),
        signature,
    }
}

/// Parses a signed checkpoint note with the same parsers `lienthong_log`
/// uses (C2SP signed-note, C2SP tlog-checkpoint) and queues every
/// signature line it can attribute: the member's own keys (any it held in
/// the chain) and other members' cosignature/v1 keys.
fn examine_note(
    note: &str,
    keys: &KeyTable,
    item: usize,
    jobs: &mut Vec<SigJob>,
) -> CheckpointFacts {
    let mut facts = CheckpointFacts {
        parsed: Err(String::new()),
        author_lines: Vec::new(),
        unknown_author_keys: Vec::new(),
        cosignatures: Vec::new(),
        foreign: Vec::new(),
    };
    let Ok(parsed) = signed_note::Note::from_bytes(note.as_bytes()) else {
        facts.parsed = Err("not a C2SP signed note: expected UTF-8 text without control characters, a blank line, then 1 to 100 signature lines".into());
        return facts;
    };
    let text = parsed.text();
    let Ok(cp) = tlog_tiles::checkpoint::Checkpoint::from_bytes(text) else {
        facts.parsed = Err(
            "the signed text is not a C2SP tlog-checkpoint (origin, size, base64 root hash)".into(),
        );
        return facts;
    };
    let origin = cp.origin().to_owned();
    let member = keys.member_of_origin(&origin).map(str::to_owned);
    facts.parsed = Ok(ParsedCheckpoint {
        origin: origin.clone(),
        member: member.clone(),
        size: cp.size(),
        root: *cp.hash(),
    });
    let Some(member) = member else {
        return facts;
    };
    // Note::from_bytes accepted the note, so it has a final "\n\n"-separated
    // block of well-formed signature lines.
    let Some((_, block)) = note.rsplit_once("\n\n") else {
        return facts;
    };
    for line in block.lines() {
        let Ok(sig) = signed_note::Signature::from_bytes(line.as_bytes()) else {
            continue;
        };
        if sig.name() == origin {
            let held = keys.held(&member);
            match held.iter().position(|h| h.note_id == sig.id()) {
                Some(k) => {
                    let slot = facts.author_lines.len();
                    let state = match Signature::from_slice(sig.signature()) {
                        Ok(signature) => {
                            jobs.push(SigJob {
                                item,
                                slot: Slot::AuthorLine(slot),
                                message: text.to_vec(),
                                signature,
                                key: held[k].key,
                            });
                            SigState::Pending
                        }
                        Err(_) => SigState::Invalid(
                            "a signature line by the member's key is not 64 bytes".into(),
                        ),
                    };
                    facts.author_lines.push(AuthorLine { held: k, state });
                }
                None => facts.unknown_author_keys.push(sig.id()),
            }
            continue;
        }
        let Some(witness) = keys.member_of_origin(sig.name()) else {
            facts.foreign.push(sig.name().to_owned());
            continue;
        };
        let slot = facts.cosignatures.len();
        let payload = sig.signature();
        let time = payload
            .get(..8)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes);
        let key = keys
            .held(witness)
            .iter()
            .find(|h| h.cosignature_id == sig.id())
            .map(|h| h.key);
        let state = match (key, time, payload.get(8..).map(Signature::from_slice)) {
            (None, _, _) => SigState::Invalid(format!(
                "a cosignature line names witness {witness} with key id {:08x}, which is none of the keys {witness} held in the manifest chain",
                sig.id()
            )),
            (_, Some(t), _) if t > lienthong_log::MAX_COSIGNATURE_TIME => SigState::Invalid(
                format!("the cosignature by {witness} has a time beyond 2^63-1"),
            ),
            (Some(key), Some(t), Some(Ok(signature))) if payload.len() == 72 => {
                jobs.push(SigJob {
                    item,
                    slot: Slot::Cosignature(slot),
                    message: lienthong_log::cosignature_message(text, t),
                    signature,
                    key,
                });
                SigState::Pending
            }
            _ => SigState::Invalid(format!(
                "the cosignature line by {witness} is not a cosignature/v1 payload (8-byte time and 64-byte signature)"
            )),
        };
        facts.cosignatures.push(CosignatureLine {
            witness: witness.to_owned(),
            key_id: sig.id(),
            time_unix: time.unwrap_or_default(),
            state,
        });
    }
    facts
}

/// A checkpoint note with its signatures checked now (for evidence, which
/// is rare and judged as a whole).
fn note_now(note: &str, keys: &KeyTable) -> CheckpointFacts {
    let mut jobs = Vec::new();
    let mut facts = examine_note(note, keys, 0, &mut jobs);
    for (job, ok) in jobs.iter().zip(check_all(&jobs)) {
        let state = if ok {
            SigState::Valid
        } else {
            SigState::Invalid(String::new())
        };
        apply_note(&mut facts, job.slot, state);
    }
    facts
}

/// An envelope with its signature checked now.
fn envelope_now(envelope: &[u8], keys: &KeyTable) -> EntryFacts {
    let mut jobs = Vec::new();
    let mut facts = examine_envelope(envelope, keys, 0, &mut jobs);
    if check_all(&jobs).contains(&false) {
        facts.signature = SigState::Invalid(
            "the signature does not verify under the author's key for the entry's manifest version"
                .into(),
        );
    } else if !jobs.is_empty() {
        facts.signature = SigState::Valid;
    }
    facts
}

fn examine_evidence(e: Evidence, keys: &KeyTable) -> EvidenceFacts {
    let recorded_by = e.recorded_by;
    match e.kind {
        None => EvidenceFacts {
            recorded_by,
            accused: None,
            index: None,
            size: None,
            outcome: EvidenceOutcome::Invalid(
                "the evidence record says neither equivocation nor refused entry".into(),
            ),
        },
        Some(evidence::Kind::Equivocation(q)) => {
            let a = note_now(&q.first_note, keys);
            let b = note_now(&q.second_note, keys);
            let mut facts = EvidenceFacts {
                recorded_by,
                accused: Some(q.member.clone()),
                index: None,
                size: None,
                outcome: EvidenceOutcome::Invalid(String::new()),
            };
            facts.outcome = judge_equivocation(&q.member, &a, &b, &mut facts.size);
            facts
        }
        Some(evidence::Kind::RefusedEntry(r)) => {
            let entry = envelope_now(&r.envelope, keys);
            let (accused, index) = match &entry.body {
                Ok(b) => (Some(b.author.clone()), Some(b.index)),
                Err(_) => (None, None),
            };
            let outcome = judge_refusal(&recorded_by, &entry, &r, keys);
            EvidenceFacts {
                recorded_by,
                accused,
                index,
                size: None,
                outcome,
            }
        }
    }
}

fn judge_equivocation(
    member: &str,
    a: &CheckpointFacts,
    b: &CheckpointFacts,
    size: &mut Option<u64>,
) -> EvidenceOutcome {
    let mut heads = Vec::new();
    for (which, c) in [("first", a), ("second", b)] {
        let p = match &c.parsed {
            Ok(p) => p,
            Err(why) => return EvidenceOutcome::Invalid(format!("the {which} note: {why}")),
        };
        if p.member.as_deref() != Some(member) {
            return EvidenceOutcome::Invalid(format!(
                "the {which} note is a checkpoint of {}, not of {member}",
                p.origin
            ));
        }
        if let Err(why) = c.author_signature() {
            return EvidenceOutcome::Invalid(format!("the {which} note: {why}"));
        }
        heads.push((p.size, p.root));
    }
    let ((sa, ra), (sb, rb)) = (heads[0], heads[1]);
    *size = Some(sa);
    if sa != sb {
        return EvidenceOutcome::Invalid(format!(
            "the two checkpoints have different sizes ({sa} and {sb}); that alone is no equivocation (a consistency proof would decide)"
        ));
    }
    if ra == rb {
        return EvidenceOutcome::Invalid(format!(
            "the two checkpoints of size {sa} have the same root; they agree"
        ));
    }
    EvidenceOutcome::Confirmed(format!(
        "{member} signed two checkpoints of size {sa} with different roots: it showed two different histories of its feed"
    ))
}

fn judge_refusal(
    recorded_by: &str,
    entry: &EntryFacts,
    r: &lienthong_proto::v1::RefusedEntry,
    keys: &KeyTable,
) -> EvidenceOutcome {
    let body = match &entry.body {
        Ok(b) => b,
        Err(why) => {
            return EvidenceOutcome::Invalid(format!(
                "the refused entry does not decode ({why}); it proves nothing against anyone"
            ));
        }
    };
    if let SigState::Invalid(why) = &entry.signature {
        return EvidenceOutcome::Invalid(format!(
            "the refused entry is not signed by its author ({why}); it proves nothing against {}",
            body.author
        ));
    }
    let author = &body.author;
    let index = body.index;
    let addressed = keys
        .bit(recorded_by)
        .is_some_and(|b| body.audience & (1 << b) != 0);
    if !addressed {
        return EvidenceOutcome::Confirmed(format!(
            "{author} signed entry {index} and delivered it to {recorded_by}, which is not in its audience"
        ));
    }
    if r.checkpoint.is_empty() {
        return EvidenceOutcome::Unfounded(format!(
            "entry {index} of {author} is validly signed and addressed to {recorded_by}; no checkpoint was kept to judge the rest"
        ));
    }
    let cp = note_now(&r.checkpoint, keys);
    let p = match &cp.parsed {
        Ok(p) if p.member.as_deref() == Some(author.as_str()) => p.clone(),
        Ok(p) => {
            return EvidenceOutcome::Unfounded(format!(
                "the checkpoint kept is of {}, not of {author}: it says nothing about {author}",
                p.origin
            ));
        }
        Err(why) => {
            return EvidenceOutcome::Unfounded(format!(
                "the checkpoint kept is unreadable ({why}); the entry itself is valid"
            ));
        }
    };
    if let Err(why) = cp.author_signature() {
        return EvidenceOutcome::Unfounded(format!(
            "the checkpoint kept is not signed by {author} ({why}), so it proves nothing against {author}"
        ));
    }
    let proof = match hashes(&r.inclusion_proof, "proof hash") {
        Ok(p) => p,
        Err(why) => {
            return EvidenceOutcome::Confirmed(format!(
                "{author} delivered entry {index} with a malformed inclusion proof ({why}) under its signed checkpoint of size {}",
                p.size
            ));
        }
    };
    match root_from_inclusion_proof(index, p.size, entry.leaf, &proof) {
        Some(root) if root == p.root => EvidenceOutcome::Unfounded(format!(
            "entry {index} of {author} is signed, addressed to {recorded_by} and proven included in {author}'s checkpoint of size {}: the refusal is not supported by the evidence (\"{}\")",
            p.size, r.reason
        )),
        _ => EvidenceOutcome::Confirmed(format!(
            "{author} signed entry {index} but its signed checkpoint of size {} does not include it: the entry it delivered is not in its log",
            p.size
        )),
    }
}
