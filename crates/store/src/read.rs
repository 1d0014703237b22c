//! Reading: by id, index, reference, cursor; queries over the term index.
//! Every read is bounded by the durable positions, so nothing that is not
//! yet on disk is ever shown.

use lienthong_core::entry::{EntryId, decode_envelope};
use lienthong_core::proto::entry_body::Payload;
use lienthong_core::proto::{EntryBody, OpeningSet};
use lienthong_core::terms::Term;

use crate::error::StoreError;
use crate::keys;
use crate::store::Store;

/// How the node established an entry's authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Verification {
    /// Signed here, with this node's key.
    AuthoredHere = 1,
    /// Signature and inclusion checked against the author's checkpoint.
    Verified = 2,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// Node-local order.
    pub cursor: u64,
    /// How it was verified before it was stored.
    pub verification: Verification,
    /// When it was stored, ms since the epoch.
    pub stored_unix_ms: i64,
    /// Exact signed bytes.
    pub envelope: Vec<u8>,
    /// Leaf hash of the envelope.
    pub id: EntryId,
    /// Decoded body.
    pub body: EntryBody,
    /// Openings of withheld fields this node may see (and, on the author's
    /// node, who may see which).
    pub openings: OpeningSet,
    /// The author's retraction of this entry, if it was retracted.
    pub retracted_by: Option<EntryId>,
    /// The entry that retraction names as the correction, if any.
    pub replaced_by: Option<EntryId>,
}

/// An own-feed entry as a delivery to a peer needs it
/// ([`Store::deliverables`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Deliverable {
    /// Its index in the own feed.
    pub index: u64,
    /// Exact signed bytes.
    pub envelope: Vec<u8>,
    /// The members allowed to receive it (`EntryBody.audience`).
    pub audience: Vec<String>,
    /// Openings of withheld fields, and who may see which.
    pub openings: OpeningSet,
}

/// `Envelope` read with its `body` (field 1, bytes) taken as the embedded
/// message it holds, keeping only `EntryBody.audience` (field 5): the same
/// bytes on the wire, and every other field is skipped without being
/// decoded. The field numbers are frozen (proto/lienthong/v1/entry.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct AudienceOfEnvelope {
    #[prost(message, optional, tag = "1")]
    body: Option<AudienceOfBody>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AudienceOfBody {
    #[prost(string, repeated, tag = "5")]
    audience: Vec<String>,
}

const RECORD_VERSION: u8 = 1;
const RECORD_HEADER: usize = 1 + 1 + 8;

pub(crate) fn encode_record(
    verification: Verification,
    stored_unix_ms: i64,
    envelope: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + envelope.len());
    v.push(RECORD_VERSION);
    v.push(verification as u8);
    v.extend_from_slice(&stored_unix_ms.to_be_bytes());
    v.extend_from_slice(envelope);
    v
}

pub(crate) fn record_envelope(record: &[u8]) -> Option<&[u8]> {
    (record.len() > RECORD_HEADER && record[0] == RECORD_VERSION).then(|| &record[RECORD_HEADER..])
}

pub(crate) fn decode_record(cursor: u64, record: &[u8]) -> Result<StoredEntry, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        key: format!("entry at cursor {cursor}"),
        detail,
    };
    let envelope = record_envelope(record).ok_or_else(|| corrupt("bad record header".into()))?;
    let verification = match record[1] {
        1 => Verification::AuthoredHere,
        2 => Verification::Verified,
        v => return Err(corrupt(format!("unknown verification {v}"))),
    };
    let stored_unix_ms = i64::from_be_bytes(
        record[2..10]
            .try_into()
            .map_err(|_| corrupt("short".into()))?,
    );
    let (_, body) = decode_envelope(envelope).map_err(|e| corrupt(e.to_string()))?;
    Ok(StoredEntry {
        cursor,
        verification,
        stored_unix_ms,
        envelope: envelope.to_vec(),
        id: EntryId::of_envelope(envelope),
        body,
        openings: OpeningSet::default(),
        retracted_by: None,
        replaced_by: None,
    })
}

/// A query: every group must match (AND); within a group any term may
/// match (OR). Results come newest first.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Term groups.
    pub groups: Vec<Vec<Term>>,
    /// Only alerts observed at or after, ms.
    pub observed_from: Option<i64>,
    /// Only alerts observed before, ms.
    pub observed_to: Option<i64>,
    /// Only cursors below this one (paging).
    pub before_cursor: Option<u64>,
    /// Page size.
    pub limit: usize,
    /// Also return entries their author retracted.
    pub include_retracted: bool,
    /// Only entries created at or after, ms.
    pub created_from: Option<i64>,
    /// Only entries created before, ms.
    pub created_to: Option<i64>,
    /// Stop after examining this many candidates and return what was found
    /// with a continuation, so one query cannot occupy the node.
    pub max_scan: usize,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Matching entries, highest cursor first.
    pub entries: Vec<StoredEntry>,
    /// Continue with `before_cursor = next_before`; `None` at the end.
    pub next_before: Option<u64>,
}

impl Store {
    fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// The entry at `cursor`, if durable.
    pub fn get_by_cursor(&self, cursor: u64) -> Result<Option<StoredEntry>, StoreError> {
        if cursor >= self.durable().next_cursor {
            return Ok(None);
        }
        match crate::records::get(self.db(), cursor)? {
            None => Ok(None),
            Some(r) => self.with_openings(decode_record(cursor, &r)?).map(Some),
        }
    }

    /// Adds what is stored about an entry besides its record: openings of
    /// withheld fields and its author's retraction.
    fn with_openings(&self, e: StoredEntry) -> Result<StoredEntry, StoreError> {
        let mut e = self.with_openings_only(e)?;
        let end = self.durable().next_cursor;
        for kv in self
            .db()
            .scan_prefix(keys::with_bytes(keys::RETRACTED, &e.id.0))
        {
            let (k, _) = kv?;
            let Some(c) = keys::tail_u64(&k).filter(|c| *c < end) else {
                continue;
            };
            let Some(r) = crate::records::get(self.db(), c)? else {
                continue;
            };
            let r = decode_record(c, &r)?;
            if r.body.author != e.body.author {
                continue;
            }
            if let Some(Payload::Retraction(x)) = &r.body.payload {
                e.retracted_by = Some(r.id);
                e.replaced_by = EntryId::from_slice(&x.replaced_by);
                break;
            }
        }
        Ok(e)
    }

    fn with_openings_only(&self, mut e: StoredEntry) -> Result<StoredEntry, StoreError> {
        e.openings = self.openings_of(e.cursor)?;
        Ok(e)
    }

    /// The openings stored for the entry at `cursor` (none: empty).
    fn openings_of(&self, cursor: u64) -> Result<OpeningSet, StoreError> {
        match self.db().get(keys::with_u64(keys::OPENINGS, cursor))? {
            None => Ok(OpeningSet::default()),
            Some(v) => prost::Message::decode(v.as_ref()).map_err(|err| StoreError::Corrupt {
                key: format!("openings of cursor {cursor}"),
                detail: err.to_string(),
            }),
        }
    }

    /// The entry recorded under `key` in a hashed index, if durable.
    /// The cursor recorded for `key` in `index`: in the index's run of
    /// staged keys, else in its bucket (`hashed` module; in this order,
    /// because a key leaves the run only once it is in its bucket).
    fn indexed_cursor(
        &self,
        index: crate::hashed::Index,
        run: &crate::hashed::Run,
        key: &[u8],
    ) -> Result<Option<u64>, StoreError> {
        let d = index.digest(&self.inner.salt, key);
        match run.get(&d) {
            Some(c) => Ok(Some(c)),
            None => index.get(self.db(), &d),
        }
    }

    /// The entry with this id, if durable.
    pub fn get_by_id(&self, id: &EntryId) -> Result<Option<StoredEntry>, StoreError> {
        match self.id_cursor(id)? {
            None => Ok(None),
            Some(c) => self.get_by_cursor(c),
        }
    }

    /// The cursor recorded for the entry with this id.
    pub(crate) fn id_cursor(&self, id: &EntryId) -> Result<Option<u64>, StoreError> {
        self.indexed_cursor(crate::hashed::IDS, &self.inner.ids_run, &id.0)
    }

    /// Own-feed entries in `[from, end)`, in order and as far as they are
    /// durable, with only what serving them to a peer needs: the envelope,
    /// its audience and the openings; with `to`, only those addressed to
    /// that member. Returns them and the index to go on from: one past the
    /// last entry read, whether it was kept or not.
    ///
    /// Nothing else of the body is decoded, no id is hashed and no
    /// retraction is looked up; an author serves every entry once per
    /// subscribed peer, and the full read was most of its work. An entry
    /// for another member is not copied and its openings are not read: a
    /// member's feed is mostly receipts, each addressed to one author,
    /// and every other subscriber reads past them.
    pub fn deliverables(
        &self,
        from: u64,
        end: u64,
        to: Option<&str>,
    ) -> Result<(Vec<Deliverable>, u64), StoreError> {
        let durable = self.durable();
        let end = end.min(durable.feed_size);
        let mut positions = crate::packed::POSITIONS.reader(self.db());
        let mut records = crate::records::Reader::new(self.db());
        let mut out = Vec::new();
        let mut next = from;
        for index in from..end {
            let Some(cursor) = positions.get_u64(index)? else {
                break;
            };
            if cursor >= durable.next_cursor {
                break;
            }
            let Some(record) = records.get(cursor)? else {
                break;
            };
            let corrupt = |detail: String| StoreError::Corrupt {
                key: format!("entry at cursor {cursor}"),
                detail,
            };
            let envelope =
                record_envelope(&record).ok_or_else(|| corrupt("bad record header".into()))?;
            // What the full read checks cheaply: never serve a record that
            // is not a signed envelope of bounded size (field 1 first).
            if envelope.len() > lienthong_core::entry::MAX_ENVELOPE_BYTES
                || envelope.first() != Some(&0x0a)
            {
                return Err(corrupt(format!(
                    "not an envelope ({} bytes)",
                    envelope.len()
                )));
            }
            let audience = <AudienceOfEnvelope as prost::Message>::decode(envelope)
                .map_err(|e| corrupt(e.to_string()))?
                .body
                .unwrap_or_default()
                .audience;
            next = index + 1;
            if to.is_some_and(|m| !audience.iter().any(|a| a == m)) {
                continue;
            }
            out.push(Deliverable {
                index,
                envelope: envelope.to_vec(),
                audience,
                openings: self.openings_of(cursor)?,
            });
        }
        Ok((out, next))
    }

    /// The own-feed entry at `index`, if durable.
    pub fn get_by_own_index(&self, index: u64) -> Result<Option<StoredEntry>, StoreError> {
        if index >= self.durable().feed_size {
            return Ok(None);
        }
        match crate::packed::POSITIONS.reader(self.db()).get_u64(index)? {
            None => Ok(None),
            Some(c) => self.get_by_cursor(c),
        }
    }

    /// The entry created for a submitting system's reference, if durable.
    pub fn get_by_reference(&self, reference: &str) -> Result<Option<StoredEntry>, StoreError> {
        let refs = crate::hashed::REFERENCES;
        match self.indexed_cursor(refs, &self.inner.refs_run, reference.as_bytes())? {
            None => Ok(None),
            Some(c) => self.get_by_cursor(c),
        }
    }

    /// The next index to ask `author` for: one past the highest index of
    /// theirs stored here (0 if none).
    pub fn replication_cursor(&self, author: &str) -> Result<u64, StoreError> {
        Ok(self
            .db()
            .get(keys::with_bytes(keys::REPLICATION, author.as_bytes()))?
            .and_then(|v| keys::tail_u64(&v))
            .unwrap_or(0))
    }

    /// One past the highest index of `author`'s stored here (0 if none).
    /// The same as [`Store::replication_cursor`] for stores written from
    /// layout 5 on, but kept apart: it only says what cannot be stored yet,
    /// and the upgrade to layout 5 counted it from the records themselves.
    pub(crate) fn stored_up_to(&self, author: &str) -> Result<u64, StoreError> {
        Ok(self
            .db()
            .get(keys::with_bytes(keys::STORED_UP_TO, author.as_bytes()))?
            .and_then(|v| keys::tail_u64(&v))
            .unwrap_or(0))
    }

    /// Envelopes of the own feed in `[start, end)`: at most `max`, and
    /// no more than `max_bytes` counting 8 bytes of framing each, except
    /// that the first is always given (an entry may be up to 1 MiB).
    pub fn feed_envelopes(
        &self,
        start: u64,
        end: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = end.min(self.durable().feed_size);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for i in start..end {
            if out.len() >= max {
                break;
            }
            match self.get_by_own_index(i)? {
                Some(e) => {
                    bytes += e.envelope.len() + 8;
                    if bytes > max_bytes && !out.is_empty() {
                        break;
                    }
                    out.push(e.envelope);
                }
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("feed index {i}"),
                        detail: "missing".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Durable entries with cursor ≥ `from`, in order, at most `max`.
    pub fn entries_from(&self, from: u64, max: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let end = self.durable().next_cursor;
        let mut out = Vec::new();
        if from >= end {
            return Ok(out);
        }
        let end = end.min(from.saturating_add(max as u64));
        let mut records = crate::records::Reader::new(self.db());
        for cursor in from..end {
            let v = records.get(cursor)?.ok_or_else(|| StoreError::Corrupt {
                key: format!("entry at cursor {cursor}"),
                detail: "missing below the durable next cursor".into(),
            })?;
            out.push(self.with_openings(decode_record(cursor, &v)?)?);
        }
        Ok(out)
    }

    /// Runs a query. See [`Query`].
    pub fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let end = self.durable().next_cursor;
        let below = q.before_cursor.map_or(end, |b| b.min(end));
        let limit = q.limit.max(1);
        let max_scan = q.max_scan.max(limit);
        let mut page = Page::default();
        if q.groups.iter().any(Vec::is_empty) {
            return Ok(page);
        }

        // Drive by the smallest group; check the others per candidate.
        let driver = (0..q.groups.len()).min_by_key(|&i| self.estimate(&q.groups[i], below));
        let candidates: CursorIter = match driver {
            // Cursors are dense: every one below the durable end is an
            // entry.
            None => Box::new((0..below).rev().map(Ok)),
            Some(d) => Box::new(MergeDesc::new(self, &q.groups[d], below)),
        };
        let mut scanned = 0usize;
        for c in candidates {
            let c = c?;
            scanned += 1;
            if scanned > max_scan {
                page.next_before = Some(c + 1);
                return Ok(page);
            }
            let others_match = q
                .groups
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != driver)
                .all(|(_, g)| g.iter().any(|t| self.term_has(&t.0, c).unwrap_or(false)));
            if !others_match {
                continue;
            }
            let Some(e) = self.get_by_cursor(c)? else {
                continue;
            };
            if e.retracted_by.is_some() && !q.include_retracted {
                continue;
            }
            let created = e.body.created_unix_ms;
            if q.created_from.is_some_and(|f| created < f)
                || q.created_to.is_some_and(|t| created >= t)
            {
                continue;
            }
            if q.observed_from.is_some() || q.observed_to.is_some() {
                let observed = match &e.body.payload {
                    Some(Payload::Alert(a)) => a.observed_unix_ms,
                    _ => continue,
                };
                if q.observed_from.is_some_and(|f| observed < f)
                    || q.observed_to.is_some_and(|t| observed >= t)
                {
                    continue;
                }
            }
            page.entries.push(e);
            if page.entries.len() == limit {
                page.next_before = (c > 0).then_some(c);
                break;
            }
        }
        Ok(page)
    }

    /// Whether `cursor` is in the postings of `term`: the block that can
    /// hold it is the last one starting at or before it.
    fn term_has(&self, term: &[u8], cursor: u64) -> Result<bool, StoreError> {
        let lo = keys::term_prefix(term);
        let hi = keys::posting(term, cursor);
        match self.db().range(lo..=hi).next_back() {
            None => Ok(false),
            Some(kv) => {
                let (k, v) = kv?;
                for c in crate::postings::cursors(&v) {
                    if c.map_err(|detail| crate::postings::bad_block(&k, detail))? == cursor {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// The posting blocks of `term` starting below `below`, newest first.
    fn blocks_below(&self, term: &[u8], below: u64) -> std::iter::Rev<sled::Iter> {
        self.db()
            .range(keys::term_prefix(term)..keys::posting(term, below))
            .rev()
    }

    /// Postings of a group below `below`, counted up to a cap (a cost
    /// estimate for choosing which group drives a query).
    fn estimate(&self, group: &[Term], below: u64) -> usize {
        const CAP_BLOCKS: usize = 512;
        group
            .iter()
            .map(|t| {
                self.blocks_below(&t.0, below)
                    .take(CAP_BLOCKS)
                    .map(|kv| kv.map_or(0, |(_, v)| crate::postings::count(&v)))
                    .sum::<usize>()
            })
            .sum()
    }
}

/// Cursors, highest first.
type CursorIter = Box<dyn Iterator<Item = Result<u64, StoreError>>>;

/// Merges the postings of several terms, highest cursor first, without
/// duplicates.
struct MergeDesc {
    iters: Vec<std::iter::Peekable<CursorIter>>,
}

impl MergeDesc {
    fn new(store: &Store, group: &[Term], below: u64) -> Self {
        let iters = group
            .iter()
            .map(|t| {
                // Blocks starting below `below`, newest first; within a
                // block, cursors newest first and below `below`.
                let it: CursorIter =
                    Box::new(store.blocks_below(&t.0, below).flat_map(move |kv| {
                        let cursors: Vec<Result<u64, StoreError>> = match kv {
                            Err(e) => vec![Err(e.into())],
                            Ok((k, v)) => {
                                let mut c: Vec<Result<u64, StoreError>> =
                                    crate::postings::cursors(&v)
                                        .map(|c| c.map_err(|d| crate::postings::bad_block(&k, d)))
                                        .filter(|c| c.as_ref().map_or(true, |c| *c < below))
                                        .collect();
                                c.reverse();
                                c
                            }
                        };
                        cursors
                    }));
                it.peekable()
            })
            .collect();
        Self { iters }
    }
}

impl Iterator for MergeDesc {
    type Item = Result<u64, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<u64> = None;
        for it in &mut self.iters {
            match it.peek() {
                Some(Ok(c)) => best = Some(best.map_or(*c, |b| b.max(*c))),
                Some(Err(_)) => return it.next(),
                None => {}
            }
        }
        let best = best?;
        for it in &mut self.iters {
            while matches!(it.peek(), Some(Ok(c)) if *c == best) {
                it.next();
            }
        }
        Some(Ok(best))
    }
}
