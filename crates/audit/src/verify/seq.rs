//! The sequential half of verification: records in file order, against
//! the state built so far. Segments (compact range, roots at checkpoints,
//! index and time order), reference checkpoints and received entries,
//! receipts for the cross-check, and each bundle's end record.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use lienthong_log::Hash;
use lienthong_proto::v1::BundleEnd;

use crate::bundle_signing_message;
use crate::compact::CompactRange;
use crate::keys::KeyTable;
use crate::report::{BundleSummary, Check, Location};
use crate::verify::record::Recorder;
use crate::verify::work::{
    CheckpointFacts, EntryFacts, EvidenceFacts, EvidenceOutcome, Item, Processed, ReceiptFacts,
    SigState,
};

/// What the cross-check needs of one segment entry (64 bytes, so a
/// million-entry feed costs 64 MB, never its envelopes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryFact {
    pub id: [u8; 32],
    pub created_unix_ms: i64,
    pub audience: u64,
    pub record: u64,
    pub flags: u8,
}

pub(crate) const VERIFIED: u8 = 1;
pub(crate) const IS_RECEIPT: u8 = 2;

/// One segment of a feed as read.
#[derive(Debug)]
pub(crate) struct Segment {
    pub author: String,
    pub bundle: usize,
    pub record: u64,
    pub offset: u64,
    pub start: u64,
    /// The size it reached.
    pub end: u64,
    /// Root of the prefix `[0, start)`, when `start > 0`.
    pub prefix_root: Option<Hash>,
    /// Checkpoints whose signature verified and whose root matched, in
    /// size order.
    pub checkpoints: Vec<(u64, Hash)>,
    /// Checkpoint records of any kind it carried.
    pub checkpoint_records: u64,
    /// Entry `start + i` is `entries[i]`.
    pub entries: Vec<EntryFact>,
    /// Every checkpoint root matched.
    pub sound: bool,
}

impl Segment {
    /// The verified root at `size`, if the segment carries a checkpoint of
    /// that size (or `size` is its start and its prefix was authenticated).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size == self.start
            && self.sound
            && !self.checkpoints.is_empty()
            && let Some(r) = self.prefix_root
        {
            return Some(r);
        }
        self.checkpoints
            .binary_search_by_key(&size, |(s, _)| *s)
            .ok()
            .map(|i| self.checkpoints[i].1)
    }

    /// Whether the segment's range of sizes `(start, end]` includes `size`.
    pub fn covers_size(&self, size: u64) -> bool {
        self.start < size && size <= self.end
    }

    pub fn entry(&self, index: u64) -> Option<&EntryFact> {
        let i = usize::try_from(index.checked_sub(self.start)?).ok()?;
        self.entries.get(i)
    }
}

struct OpenSegment {
    id: usize,
    range: CompactRange,
    last_created: Option<i64>,
    last_checkpoint: Option<u64>,
    /// body.index − position of the last entry, to report a gap once.
    shift: i128,
}

/// A checkpoint outside segments.
#[derive(Debug, Clone)]
pub(crate) struct RefCheckpoint {
    pub root: Hash,
    /// Its member's signature verified.
    pub signed: bool,
    pub at: Location,
}

/// An entry of another feed held by an exporter.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedFact {
    pub author: String,
    pub index: u64,
    pub id: [u8; 32],
    pub at: Location,
}

/// A verified receipt: `receiver` says it received `facts`.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptFact {
    pub receiver: u8,
    pub facts: ReceiptFacts,
    pub created_unix_ms: i64,
    /// Index of the receipt in the receiver's feed.
    pub receiver_index: u64,
    pub at: Location,
}

/// A consistency proof, checked once every checkpoint is known.
#[derive(Debug)]
pub(crate) struct PendingProof {
    pub author: String,
    pub old_size: u64,
    pub new_size: u64,
    pub hashes: Vec<Hash>,
    pub at: Location,
}

/// Where the reader stopped in one bundle.
#[derive(Debug)]
pub(crate) struct BundleEndOfFile {
    pub digest: [u8; 32],
    pub bytes_before_last: u64,
    pub records: u64,
    pub bytes: u64,
    pub error: Option<String>,
}

#[derive(Default)]
pub(crate) struct BundleState {
    pub summary: BundleSummary,
    /// The federation its header names.
    pub federation: String,
    pub exporter_key: Option<VerifyingKey>,
    open: Option<OpenSegment>,
    end: Option<(u64, u64, BundleEnd)>,
}

impl BundleState {
    pub fn new(name: String) -> Self {
        Self {
            summary: BundleSummary {
                name,
                ..BundleSummary::default()
            },
            ..Self::default()
        }
    }
}

pub(crate) struct Seq<'a> {
    pub keys: &'a KeyTable,
    pub rec: Recorder,
    /// Bundle names, for locations.
    names: Vec<String>,
    pub bundles: Vec<BundleState>,
    pub segments: Vec<Segment>,
    /// Member → size → checkpoints outside segments.
    pub refs: BTreeMap<String, BTreeMap<u64, Vec<RefCheckpoint>>>,
    pub received: Vec<ReceivedFact>,
    pub received_count: BTreeMap<String, u64>,
    /// (author bit, index) → receipts naming that entry.
    pub receipts: BTreeMap<(u8, u64), Vec<ReceiptFact>>,
    pub proofs: Vec<PendingProof>,
    /// (member, index into `KeyTable::held`) → checkpoints it signed.
    pub key_uses: BTreeMap<(String, usize), u64>,
    unknown_audience: BTreeSet<String>,
}

impl<'a> Seq<'a> {
    pub fn new(keys: &'a KeyTable, rec: Recorder, bundles: Vec<BundleState>) -> Self {
        Self {
            keys,
            names: rec.names.clone(),
            rec,
            bundles,
            segments: Vec::new(),
            refs: BTreeMap::new(),
            received: Vec::new(),
            received_count: BTreeMap::new(),
            receipts: BTreeMap::new(),
            proofs: Vec::new(),
            key_uses: BTreeMap::new(),
            unknown_audience: BTreeSet::new(),
        }
    }

    pub fn apply(&mut self, b: usize, p: Processed) {
        if let Some((end, _, _)) = &self.bundles[b].end {
            let message = format!(
                "a record after the end record (record {end}): the end record must be last"
            );
            self.rec.fail(
                Check::Structure,
                self.rec.at(b, p.number, p.offset),
                message,
            );
            return;
        }
        // The common record first, without building a location unless
        // something is wrong with it.
        let item = match p.item {
            Item::SegmentEntry(e) => return self.segment_entry(b, p.number, p.offset, *e),
            other => other,
        };
        let at = self.rec.at(b, p.number, p.offset);
        if matches!(item, Item::Consistency { .. } | Item::Evidence(_)) {
            self.close_unended(b, &format!("record {}", p.number));
        }
        match item {
            Item::Malformed(why) => self.rec.fail(Check::Structure, at, why),
            Item::Misplaced(what) => self.rec.fail(
                Check::Structure,
                at,
                format!(
                    "a {what} record after the first section: the header and every manifest version come first"
                ),
            ),
            Item::SegmentStart {
                author,
                start,
                prefix,
            } => self.segment_start(b, at, p.number, p.offset, author, start, prefix),
            Item::SegmentEntry(_) => {}
            Item::Checkpoint(c) => self.checkpoint(b, at, *c),
            Item::SegmentEnd { size } => self.segment_end(b, at, size),
            Item::Received {
                entry,
                checkpoint_size,
                implied_root,
            } => self.received(b, at, *entry, checkpoint_size, implied_root),
            Item::Consistency {
                author,
                old_size,
                new_size,
                hashes,
            } => match hashes {
                Ok(hashes) => self.proofs.push(PendingProof {
                    author,
                    old_size,
                    new_size,
                    hashes,
                    at,
                }),
                Err(why) => self.rec.fail(Check::Consistency, at.author(&author), why),
            },
            Item::Evidence(e) => self.evidence(at, *e),
            Item::End(e) => {
                self.close_unended(b, "the end record");
                self.bundles[b].end = Some((p.number, p.offset, e));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn segment_start(
        &mut self,
        b: usize,
        at: Location,
        record: u64,
        offset: u64,
        author: String,
        start: u64,
        prefix: Result<Vec<Hash>, String>,
    ) {
        self.close_unended(b, &format!("the segment starting at record {record}"));
        if start >= 1 << 62 {
            self.rec.fail(
                Check::Structure,
                at.clone().author(&author),
                format!("a segment starting at position {start}, beyond any real feed"),
            );
        }
        if self.keys.bit(&author).is_none() {
            self.rec.fail(
                Check::Structure,
                at.clone().author(&author),
                format!("a segment of {author:?}, which is no member in the manifest chain"),
            );
        }
        let range = match prefix
            .map_err(|why| why.to_string())
            .and_then(|p| CompactRange::from_prefix(start, p).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(why) => {
                self.rec.fail(Check::Structure, at.author(&author), why);
                // Placeholder hashes keep sizes right; every root check of
                // this segment then fails, as it should.
                let n = start.count_ones() as usize;
                CompactRange::from_prefix(start, vec![Hash([0; 32]); n]).unwrap_or_default()
            }
        };
        let prefix_root = (start > 0).then(|| range.root());
        self.segments.push(Segment {
            author,
            bundle: b,
            record,
            offset,
            start,
            end: start,
            prefix_root,
            checkpoints: Vec::new(),
            checkpoint_records: 0,
            entries: Vec::new(),
            sound: true,
        });
        self.bundles[b].open = Some(OpenSegment {
            id: self.segments.len() - 1,
            range,
            last_created: None,
            last_checkpoint: None,
            shift: 0,
        });
    }

    fn segment_entry(&mut self, b: usize, record: u64, offset: u64, e: EntryFacts) {
        let Some(mut open) = self.bundles[b].open.take() else {
            let at = self.rec.at(b, record, offset);
            self.rec.fail(
                Check::Structure,
                at.clone(),
                "a segment entry outside any segment",
            );
            self.entry_signature(&at, &e);
            return;
        };
        let id = open.id;
        let position = open.range.size();
        // No feed comes near 2^62 entries; a segment claiming to is forged,
        // and counting on would overflow.
        if position >= 1 << 62 {
            let at = self.rec.at(b, record, offset);
            self.rec.fail(
                Check::Structure,
                at,
                format!("a segment entry at position {position}, beyond any real feed"),
            );
            self.bundles[b].open = Some(open);
            return;
        }
        open.range.append(e.leaf);
        self.segments[id].end = position + 1;
        let names = &self.names;
        let seg = &self.segments[id];
        let at = || {
            Location {
                bundle: names.get(b).cloned(),
                record: Some(record),
                offset: Some(offset),
                ..Location::default()
            }
            .author(&seg.author)
            .index(position)
        };
        let verified = signature_outcome(&mut self.rec, &e, &at);
        let Ok(body) = &e.body else {
            let fact = EntryFact {
                id: e.leaf.0,
                created_unix_ms: open.last_created.unwrap_or_default(),
                audience: 0,
                record,
                flags: 0,
            };
            self.segments[id].entries.push(fact);
            self.bundles[b].open = Some(open);
            return;
        };
        let mut problems = Vec::new();
        let same_author = body.author == seg.author;
        if !same_author {
            problems.push(format!(
                "the entry names author {:?} inside the segment of {:?}",
                body.author, seg.author
            ));
        }
        let shift = i128::from(body.index) - i128::from(position);
        let mut quiet = false;
        if shift != 0 {
            // The same gap as the entry before was reported there.
            quiet = shift == open.shift && problems.is_empty();
            problems.push(if shift > 0 {
                format!(
                    "the entry at position {position} says index {}: {shift} entr{} missing before it, or entries are out of order",
                    body.index,
                    if shift == 1 { "y is" } else { "ies are" }
                )
            } else {
                format!(
                    "the entry at position {position} says index {}: it is repeated or out of order",
                    body.index
                )
            });
        }
        open.shift = shift;
        if let Some(prev) = open.last_created
            && body.created_unix_ms < prev
        {
            quiet = false;
            problems.push(format!(
                "created at {} ms, before the entry before it ({prev} ms): time goes backwards along the feed",
                body.created_unix_ms
            ));
        }
        open.last_created = Some(body.created_unix_ms);
        if problems.is_empty() {
            self.rec.pass(Check::EntryPosition);
        } else if quiet {
            self.rec.fail_quietly(Check::EntryPosition);
        } else {
            self.rec
                .fail(Check::EntryPosition, at(), problems.join("; "));
        }
        let unusual = !body.audience_well_formed || !body.unknown_audience.is_empty();
        let receiver = self.keys.bit(&seg.author);
        let location = (unusual || body.receipt.is_some()).then(at);
        let mut flags = if verified && same_author { VERIFIED } else { 0 };
        if body.receipt.is_some() {
            flags |= IS_RECEIPT;
        }
        self.segments[id].entries.push(EntryFact {
            id: e.leaf.0,
            created_unix_ms: body.created_unix_ms,
            audience: body.audience,
            record,
            flags,
        });
        self.bundles[b].open = Some(open);
        if let Some(at) = location {
            self.body_warnings(&at, &e);
            if let (Some(receiver), true) = (receiver, flags & VERIFIED != 0) {
                self.receipt(&at, &e, receiver, body.index);
            }
        }
    }

    fn entry_signature(&mut self, at: &Location, e: &EntryFacts) -> bool {
        let at = match &e.body {
            Ok(b) => at.clone().author(&b.author).index(b.index),
            Err(_) => at.clone(),
        };
        signature_outcome(&mut self.rec, e, &|| at.clone())
    }

    fn body_warnings(&mut self, at: &Location, e: &EntryFacts) {
        let Ok(body) = &e.body else { return };
        if !body.audience_well_formed {
            self.rec.warn(
                Check::EntrySignature,
                at.clone(),
                "the signed audience is not sorted without duplicates or lacks the author (entry.proto requires both)",
            );
        }
        for code in &body.unknown_audience {
            if self.unknown_audience.insert(code.clone()) {
                self.rec.warn(
                    Check::Delivery,
                    at.clone(),
                    format!(
                        "the audience names {code:?}, no member of any trusted manifest version; deliveries to it are not cross-checked (first occurrence)"
                    ),
                );
            }
        }
    }

    /// Files a receipt found in a verified entry of `receiver`'s feed.
    fn receipt(&mut self, at: &Location, e: &EntryFacts, receiver: u8, receiver_index: u64) {
        let Ok(body) = &e.body else { return };
        match &body.receipt {
            None => {}
            Some(Err(why)) => self.rec.fail(
                Check::Delivery,
                at.clone(),
                format!("malformed receipt: {why}"),
            ),
            Some(Ok(items)) => {
                // Every item names the receipt's one author.
                let Some(first) = items.first() else { return };
                let Some(author) = self.keys.bit(&first.author) else {
                    self.rec.warn(
                        Check::Delivery,
                        at.clone(),
                        format!(
                            "a receipt for entries of {:?}, no member of the manifest chain",
                            first.author
                        ),
                    );
                    return;
                };
                for r in items {
                    let list = self.receipts.entry((author, r.index)).or_default();
                    // The same receipt is often in two places: the
                    // receiver's feed and the author's received entries.
                    if !list
                        .iter()
                        .any(|x| x.receiver == receiver && x.receiver_index == receiver_index)
                    {
                        list.push(ReceiptFact {
                            receiver,
                            facts: r.clone(),
                            created_unix_ms: body.created_unix_ms,
                            receiver_index,
                            at: at.clone(),
                        });
                    }
                }
            }
        }
    }

    fn checkpoint(&mut self, b: usize, at: Location, c: CheckpointFacts) {
        let in_segment = self.bundles[b].open.is_some();
        if let Some(open) = &self.bundles[b].open {
            self.segments[open.id].checkpoint_records += 1;
        }
        let p = match &c.parsed {
            Ok(p) => p.clone(),
            Err(why) => {
                self.rec
                    .fail(Check::CheckpointSignature, at.clone(), why.clone());
                if in_segment {
                    self.rec.fail(
                        Check::SegmentRoot,
                        at,
                        "the segment's checkpoint cannot be read, so its root cannot be compared",
                    );
                }
                return;
            }
        };
        let Some(member) = p.member.clone() else {
            self.rec.fail(
                Check::CheckpointSignature,
                at.size(p.size),
                format!(
                    "the checkpoint's origin {:?} is no member's feed of federation {:?}",
                    p.origin,
                    self.keys.federation()
                ),
            );
            return;
        };
        let at = at.author(&member).size(p.size);
        let signed = match c.author_signature() {
            Ok(k) => {
                self.rec.pass(Check::CheckpointSignature);
                *self.key_uses.entry((member.clone(), k)).or_default() += 1;
                if !c.unknown_author_keys.is_empty() {
                    self.rec.warn(
                        Check::CheckpointSignature,
                        at.clone(),
                        "the note also carries signature lines by keys under the member's name that the manifest chain never listed; ignored",
                    );
                }
                true
            }
            Err(why) => {
                self.rec.fail(Check::CheckpointSignature, at.clone(), why);
                false
            }
        };
        for line in &c.cosignatures {
            match &line.state {
                SigState::Valid => self.rec.pass(Check::Cosignature),
                SigState::Invalid(why) => {
                    self.rec.fail(Check::Cosignature, at.clone(), why.clone())
                }
                SigState::Pending => self.rec.fail(
                    Check::Cosignature,
                    at.clone(),
                    "internal error: the cosignature was never checked",
                ),
            }
        }
        for name in &c.foreign {
            self.rec.warn(
                Check::Cosignature,
                at.clone(),
                format!(
                    "a signature line by {name:?}, which is not a member of the federation; ignored"
                ),
            );
        }
        let Some(open) = self.bundles[b].open.as_mut() else {
            self.refs
                .entry(member)
                .or_default()
                .entry(p.size)
                .or_default()
                .push(RefCheckpoint {
                    root: p.root,
                    signed,
                    at,
                });
            return;
        };
        let seg = &mut self.segments[open.id];
        if member != seg.author {
            self.rec.fail(
                Check::SegmentRoot,
                at,
                format!(
                    "a checkpoint of {member} inside the segment of {}",
                    seg.author
                ),
            );
            return;
        }
        let reached = open.range.size();
        if p.size != reached {
            seg.sound = false;
            self.rec.fail(
                Check::SegmentRoot,
                at,
                format!(
                    "a checkpoint of size {} where the segment has reached size {reached}: each checkpoint goes right after the entry that makes the feed reach its size",
                    p.size
                ),
            );
            return;
        }
        open.last_checkpoint = Some(p.size);
        if open.range.root() == p.root {
            self.rec.pass(Check::SegmentRoot);
            if signed {
                seg.checkpoints.push((p.size, p.root));
            }
        } else {
            seg.sound = false;
            self.rec.fail(
                Check::SegmentRoot,
                at,
                format!(
                    "the root computed from the segment's entries differs from the signed root of size {}: an entry before it was altered, dropped, added or reordered, or the segment's prefix hashes are wrong",
                    p.size
                ),
            );
        }
    }

    fn segment_end(&mut self, b: usize, at: Location, size: u64) {
        let Some(open) = self.bundles[b].open.take() else {
            self.rec
                .fail(Check::Structure, at, "a segment end without a segment");
            return;
        };
        let author = self.segments[open.id].author.clone();
        let reached = open.range.size();
        if size != reached {
            self.rec.fail(
                Check::Structure,
                at.clone().author(&author),
                format!("the segment end says size {size}, but the segment reached size {reached}"),
            );
        }
        self.finish_segment(open, at.author(&author));
    }

    /// Closes a segment that was never ended.
    fn close_unended(&mut self, b: usize, what: &str) {
        let Some(open) = self.bundles[b].open.take() else {
            return;
        };
        let seg = &self.segments[open.id];
        let at = self.rec.at(b, seg.record, seg.offset).author(&seg.author);
        self.rec.fail(
            Check::Structure,
            at.clone(),
            format!(
                "the segment of {} starting here is never ended before {what}",
                seg.author
            ),
        );
        self.finish_segment(open, at);
    }

    fn finish_segment(&mut self, open: OpenSegment, at: Location) {
        let seg = &mut self.segments[open.id];
        let reached = open.range.size();
        seg.end = reached;
        if open.last_checkpoint == Some(reached) || reached == seg.start {
            self.rec.pass(Check::SegmentRoot);
        } else {
            seg.sound = false;
            let from = open.last_checkpoint.unwrap_or(seg.start);
            self.rec.fail(
                Check::SegmentRoot,
                at,
                format!(
                    "entries {from} to {} of {} come after the segment's last checkpoint: no signed root covers them",
                    reached.saturating_sub(1),
                    seg.author
                ),
            );
        }
    }

    fn received(
        &mut self,
        b: usize,
        at: Location,
        e: EntryFacts,
        checkpoint_size: u64,
        implied_root: Result<Hash, String>,
    ) {
        if self.bundles[b].open.is_some() {
            self.close_unended(b, "a received entry");
        }
        let verified = self.entry_signature(&at, &e);
        let Ok(body) = &e.body else { return };
        let author = body.author.clone();
        let at = at.author(&author).index(body.index).size(checkpoint_size);
        *self.received_count.entry(author.clone()).or_default() += 1;
        let candidates = self.roots_of(&author, checkpoint_size);
        let included = match implied_root {
            Err(why) => Err(why),
            Ok(_) if candidates.is_empty() => Err(format!(
                "no checkpoint of {author} of size {checkpoint_size} comes before this entry: put the checkpoint record before the entries proven under it"
            )),
            Ok(root) if candidates.contains(&root) => Ok(()),
            Ok(_) => Err(format!(
                "the inclusion proof does not lead to the root of {author}'s checkpoint of size {checkpoint_size}: the entry is not in that tree, or the entry or proof was altered"
            )),
        };
        let included_ok = included.is_ok();
        self.rec.outcome(Check::Inclusion, || at.clone(), included);
        self.body_warnings(&at, &e);
        let exporter = self.bundles[b].summary.exporter.clone();
        if let Some(bit) = self.keys.bit(&exporter)
            && body.audience & (1 << bit) == 0
            && exporter != author
        {
            self.rec.warn(
                Check::Delivery,
                at.clone(),
                format!(
                    "{exporter} holds entry {} of {author}, which is not addressed to it",
                    body.index
                ),
            );
        }
        if verified {
            self.received.push(ReceivedFact {
                author: author.clone(),
                index: body.index,
                id: e.leaf.0,
                at: at.clone(),
            });
            if included_ok && let Some(receiver) = self.keys.bit(&author) {
                self.receipt(&at, &e, receiver, body.index);
            }
        }
    }

    /// Roots of `author`'s checkpoints of `size` seen so far.
    fn roots_of(&self, author: &str, size: u64) -> Vec<Hash> {
        let mut out: Vec<Hash> = self
            .refs
            .get(author)
            .and_then(|m| m.get(&size))
            .map(|v| v.iter().map(|r| r.root).collect())
            .unwrap_or_default();
        for s in self.segments.iter().filter(|s| s.author == author) {
            if let Some(r) = s.root_at(size) {
                out.push(r);
            }
        }
        out
    }

    fn evidence(&mut self, at: Location, e: EvidenceFacts) {
        let mut at = at;
        if let Some(a) = &e.accused {
            at = at.author(a);
        }
        if let Some(i) = e.index {
            at = at.index(i);
        }
        if let Some(s) = e.size {
            at = at.size(s);
        }
        match e.outcome {
            EvidenceOutcome::Confirmed(what) => self.rec.fail(
                Check::Evidence,
                at,
                format!(
                    "misbehaviour confirmed (recorded by {}): {what}",
                    e.recorded_by
                ),
            ),
            EvidenceOutcome::Invalid(why) => self.rec.fail(
                Check::Evidence,
                at,
                format!(
                    "the evidence recorded by {} does not verify: {why}",
                    e.recorded_by
                ),
            ),
            EvidenceOutcome::Unfounded(why) => {
                self.rec.pass(Check::Evidence);
                self.rec.warn(
                    Check::Evidence,
                    at,
                    format!(
                        "evidence recorded by {} shows no misbehaviour: {why}",
                        e.recorded_by
                    ),
                );
            }
        }
    }

    /// The reader reached the end of bundle `b`.
    pub fn bundle_done(&mut self, b: usize, eof: BundleEndOfFile) {
        if let Some(why) = eof.error {
            self.rec.fail(Check::Structure, self.rec.at_bundle(b), why);
        }
        self.close_unended(b, "the end of the file");
        let state = &mut self.bundles[b];
        state.summary.records = eof.records;
        state.summary.bytes = eof.bytes;
        let Some((record, offset, end)) = state.end.take() else {
            self.rec.fail(
                Check::BundleSignature,
                self.rec.at_bundle(b),
                "the bundle has no end record: it is truncated",
            );
            return;
        };
        let at = self.rec.at(b, record, offset);
        let mut problems = Vec::new();
        if end.records != record {
            problems.push(format!(
                "the end record counts {} records before it, but there are {record}",
                end.records
            ));
        }
        if record + 1 == eof.records {
            if end.bytes != eof.bytes_before_last {
                problems.push(format!(
                    "the end record counts {} bytes before it, but there are {}",
                    end.bytes, eof.bytes_before_last
                ));
            }
            if end.sha256 != eof.digest {
                problems.push(
                    "the SHA-256 of the bytes before the end record differs from the one it signs: the bundle was altered after it was written".into(),
                );
            }
        }
        match (&state.exporter_key, Signature::from_slice(&end.signature)) {
            (None, _) => problems.push(format!(
                "no key for the exporter {:?} in the newest manifest version the bundle carries",
                state.summary.exporter
            )),
            (Some(_), Err(_)) => problems.push("the exporter's signature is not 64 bytes".into()),
            (Some(key), Ok(sig)) => {
                let digest = <[u8; 32]>::try_from(end.sha256.as_slice()).unwrap_or_default();
                if key.verify(&bundle_signing_message(&digest), &sig).is_err() {
                    problems.push(format!(
                        "the end record's signature does not verify under {}'s key",
                        state.summary.exporter
                    ));
                }
            }
        }
        if problems.is_empty() {
            state.summary.signed_by_exporter = true;
            self.rec.pass(Check::BundleSignature);
        } else {
            self.rec
                .fail(Check::BundleSignature, at, problems.join("; "));
        }
    }
}

/// Counts an entry's signature check; true if it verified. `at` is only
/// called when the check fails.
fn signature_outcome(rec: &mut Recorder, e: &EntryFacts, at: &dyn Fn() -> Location) -> bool {
    match (&e.body, &e.signature) {
        (Err(why), _) => {
            rec.fail(
                Check::EntrySignature,
                at(),
                format!("the envelope does not decode: {why}"),
            );
            false
        }
        (Ok(_), SigState::Valid) => {
            rec.pass(Check::EntrySignature);
            true
        }
        (Ok(_), SigState::Invalid(why)) => {
            rec.fail(Check::EntrySignature, at(), why.clone());
            false
        }
        (Ok(_), SigState::Pending) => {
            rec.fail(
                Check::EntrySignature,
                at(),
                "internal error: the signature was never checked",
            );
            false
        }
    }
}
