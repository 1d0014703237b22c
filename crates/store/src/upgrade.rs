//! Moving a store written by an older release to this release's layout, at
//! open, before anything is read or served.
//!
//! Format 1 → 2: the own feed's stored hashes (`H`) and feed positions
//! (`F`), one key each, are packed 64 to a value (`h`, `f`; see the
//! `packed` module). The steps, each safe to interrupt:
//!
//! 1. Write the packed values from the old keys (checking that no index is
//!    missing and that the counts fit the feed size), then flush and fsync.
//!    A node killed here still has format 1 and does it again from the
//!    start; the values it rewrites are the same.
//! 2. Only once the store has passed the checks of every open on the
//!    packed values (the newest entries hash to their stored leaves, the
//!    last checkpoint's root is the stored tree's), record format 2, flush
//!    and fsync. From now on only the packed values are read. A store that
//!    fails the checks stays in layout 1, still readable by 0.2.0.
//! 3. Remove the old keys. Whatever a kill leaves of them is removed at the
//!    next open (this step runs at every open and costs one lookup when
//!    there is nothing to do).
//!
//! Format 2 → 3 (and 1 → 3, after the packing): the id (`I`) and
//! reference (`R`) keys, one per entry, go into 65,536 buckets each (`i`,
//! `r`; see the `hashed` module), and the posting blocks of 64 cursors of
//! 8 bytes (`T`) become blocks of 512 varints (`t`; the `postings`
//! module), in the same three steps: write every bucket and block from the
//! old keys, the buckets under the store's salt (made first, and kept if a
//! cut-off run made it already), removing whatever buckets and blocks a
//! cut-off run left; record format 3 only once every open's checks pass,
//! which now include finding the newest entries by id; then remove the old
//! keys.
//!
//! Format 3 → 4 (and older, after the steps above): the entry records
//! (`E`), one key per entry, are packed several to a value (`e`; see the
//! `records` module), each with the proof of a received entry (`V`, one
//! key per received entry), in the same three steps: write every value from the
//! old keys, after removing whatever values a cut-off run left, checking
//! that no cursor below the store's next cursor is missing; record format
//! 4 only once every open's checks pass on the packed records; then remove
//! the old keys. The records themselves are copied byte for byte.
//!
//! Format 4 → 5 (and older, after the steps above): new ids are staged
//! (`j`) before they go into their buckets (see the `hashed` module), and
//! a received entry is looked up by id only if its author's entries stored
//! here reach its index (`N`). Step 1 counts `N` for every author from the
//! records themselves, not from the replication cursor (`P`), which stores
//! written before 2026-12-05 may hold lower than their highest entry; a
//! cut-off run counts again and writes the same values. No store of an
//! older layout holds a `j` key.
//!
//! Format 5 → 6 (and older, after the steps above): new references are
//! staged (`k`) like ids, and the writer looks a new reference up in a
//! filter of every recorded reference (`b`; the `filter` module) before
//! its bucket. Step 1 builds the filter from the reference buckets and
//! writes it, after removing whatever a cut-off run left of it. No store of
//! an older layout holds a `k` or `b` key.
//!
//! Checkpoints and everything signed are not touched.
//!
//! There is no way back: a release reading an older format refuses a newer
//! store and names the release to use.

use std::time::Instant;

use crate::hashed::{self, Salt};
use crate::keys;
use crate::packed::{self, Packed};
use crate::records::Item;
use crate::store::remove_prefix;
use crate::{STORE_FORMAT, StoreError};

/// Old keys removed per sled batch.
const REMOVE_BATCH: usize = 16 * 1024;

/// Entry records packed per sled batch.
const RECORDS_BATCH: usize = 4096;

/// Step 1 for a store of layout `format` 1: writes the packed values from
/// the old keys and makes them durable (`sync`: flush and fsync). Nothing
/// else changes: a 0.2.0 binary still opens the store and ignores them.
pub(crate) fn pack_layout_1(
    db: &sled::Tree,
    feed_size: u64,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    tracing::info!(
        from = 1,
        to = STORE_FORMAT,
        feed_size,
        "upgrading the store layout: packing the feed's hashes and positions"
    );
    let damaged = |what: &str, held: u64, want: u64| {
        StoreError::Integrity(format!(
            "the store records {feed_size} own entries, which need {want} {what}, but holds \
             {held}: it is damaged; restore the newest backup"
        ))
    };
    let positions = pack(db, keys::FEED, packed::POSITIONS)?;
    if positions != feed_size {
        return Err(damaged("feed positions", positions, feed_size));
    }
    let hashes = pack(db, keys::HASH, packed::HASHES)?;
    let want = tlog_tiles::tlog::stored_hash_index(0, feed_size);
    if hashes != want {
        return Err(damaged("stored hashes", hashes, want));
    }
    sync()?;
    tracing::info!(
        positions,
        hashes,
        seconds = t0.elapsed().as_secs_f64(),
        "store layout packed"
    );
    Ok(())
}

/// Step 1 for a store of layout 1 (once packed) or 2: writes the id and
/// reference buckets from the old keys and makes them durable. A 0.2.0
/// binary, or this code's predecessor, ignores them.
pub(crate) fn bucket_layout_2(
    db: &sled::Tree,
    salt: &Salt,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    tracing::info!(
        to = STORE_FORMAT,
        "upgrading the store layout: putting ids and references into buckets"
    );
    let mut counts = [0usize; 2];
    for (n, (old, index)) in [
        (keys::ID, hashed::IDS),
        (keys::REFERENCE, hashed::REFERENCES),
    ]
    .into_iter()
    .enumerate()
    {
        remove_prefix(db, index.prefix(), REMOVE_BATCH)?;
        let mut items = Vec::new();
        for kv in db.scan_prefix([old]) {
            let (k, v) = kv?;
            let bad = |detail: String| StoreError::Corrupt {
                key: format!("{:?} key {}", old as char, crate::store::hex(&k)),
                detail,
            };
            if old == keys::ID && k.len() != 33 {
                return Err(bad("is not an entry id".into()));
            }
            let cursor = keys::tail_u64(&v)
                .filter(|_| v.len() == 8)
                .ok_or_else(|| bad(format!("holds {} bytes, not a cursor", v.len())))?;
            items.push((index.digest(salt, &k[1..]), cursor));
        }
        counts[n] = items.len();
        index.write_all(db, &mut items)?;
    }
    sync()?;
    tracing::info!(
        ids = counts[0],
        references = counts[1],
        seconds = t0.elapsed().as_secs_f64(),
        "ids and references bucketed"
    );
    Ok(())
}

/// Step 1, too, for the postings of a store of layout 1 or 2: the blocks
/// of 8-byte cursors (`T`) are written again as blocks of up to 512
/// varints (`t`; see the `postings` module), and made durable.
pub(crate) fn repost_layout_2(
    db: &sled::Tree,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    remove_prefix(db, keys::POSTING, REMOVE_BATCH)?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let (mut terms, mut postings) = (0u64, 0u64);
    let mut term: Option<Vec<u8>> = None;
    let mut cursors: Vec<u64> = Vec::new();
    let mut flush = |term: &[u8], cursors: &mut Vec<u64>, last: bool| {
        in_batch += cursors.len();
        crate::postings::add(db, &mut batch, term, cursors, None)?;
        cursors.clear();
        if in_batch >= 64 * 1024 || last {
            db.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
        Ok::<(), StoreError>(())
    };
    for kv in db.scan_prefix([keys::TERM]) {
        let (k, v) = kv?;
        let bad = |detail: &str| StoreError::Corrupt {
            key: format!("'T' key {}", crate::store::hex(&k)),
            detail: detail.into(),
        };
        // `T`, term length u16 BE, term, first cursor u64 BE.
        let len = k
            .get(1..3)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .filter(|len| k.len() == 3 + len + 8)
            .ok_or_else(|| bad("is not a term and a cursor"))?;
        if !v.len().is_multiple_of(8) || v.is_empty() {
            return Err(bad("does not hold 8-byte cursors"));
        }
        let this = &k[3..3 + len];
        if term.as_deref() != Some(this) {
            if let Some(t) = term.take() {
                flush(&t, &mut cursors, false)?;
            }
            term = Some(this.to_vec());
            terms += 1;
        }
        for c in v.chunks_exact(8) {
            let c = u64::from_be_bytes(c.try_into().map_err(|_| bad("odd cursor"))?);
            if cursors.last().is_some_and(|l| *l >= c) {
                return Err(bad("holds cursors out of order"));
            }
            cursors.push(c);
            postings += 1;
        }
    }
    flush(term.as_deref().unwrap_or_default(), &mut cursors, true)?;
    sync()?;
    tracing::info!(
        terms,
        postings,
        seconds = t0.elapsed().as_secs_f64(),
        "postings written again in blocks of 512"
    );
    Ok(())
}

/// Step 1 for the entry records of a store of layout 3 or older: writes
/// the packed values (`e`) from the one-key-per-record `E` keys, which must
/// be exactly the cursors below `next_cursor`, each with the proof of a
/// received entry from its `V` key, and makes them durable. An older
/// binary ignores them.
pub(crate) fn pack_records_layout_3(
    db: &sled::Tree,
    next_cursor: u64,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    tracing::info!(
        to = STORE_FORMAT,
        records = next_cursor,
        "upgrading the store layout: packing the entry records and their proofs"
    );
    remove_prefix(db, keys::RECORDS, REMOVE_BATCH)?;
    let mut proofs = db.scan_prefix([keys::PROOF]).peekable();
    let (mut next, mut proven) = (0u64, 0u64);
    let mut items: Vec<Item> = Vec::with_capacity(RECORDS_BATCH);
    let write = |items: &mut Vec<Item>, next: u64| {
        let mut batch = sled::Batch::default();
        crate::records::append(db, &mut batch, next - items.len() as u64, items)?;
        db.apply_batch(batch)?;
        items.clear();
        Ok::<(), StoreError>(())
    };
    for kv in db.scan_prefix([keys::ENTRY]) {
        let (k, v) = kv?;
        let cursor = numbered_key(keys::ENTRY, &k, "a cursor")?;
        if cursor != next {
            return Err(StoreError::Integrity(format!(
                "the record of the entry at cursor {next} is missing (the next is at {cursor}): \
                 the store is damaged; restore the newest backup"
            )));
        }
        let mut proof = Vec::new();
        if let Some(kv) = proofs.next_if(|kv| {
            kv.as_ref()
                .map_or(true, |(k, _)| keys::tail_u64(k).is_none_or(|c| c <= cursor))
        }) {
            let (pk, pv) = kv?;
            let at = numbered_key(keys::PROOF, &pk, "a cursor")?;
            if at != cursor {
                return Err(StoreError::Integrity(format!(
                    "the store holds a proof for cursor {at}, which has no entry record: it is \
                     damaged; restore the newest backup"
                )));
            }
            proof = pv.to_vec();
            proven += 1;
        }
        items.push(Item {
            cursor,
            record: v.to_vec(),
            proof,
        });
        next += 1;
        if items.len() == RECORDS_BATCH {
            write(&mut items, next)?;
        }
    }
    if !items.is_empty() {
        write(&mut items, next)?;
    }
    if let Some(kv) = proofs.next() {
        let (pk, _) = kv?;
        return Err(StoreError::Integrity(format!(
            "the store holds a proof for cursor {}, beyond its last entry record: it is damaged; \
             restore the newest backup",
            numbered_key(keys::PROOF, &pk, "a cursor")?
        )));
    }
    if next != next_cursor {
        return Err(StoreError::Integrity(format!(
            "the store counts {next_cursor} entries but holds {next} entry records: it is \
             damaged; restore the newest backup"
        )));
    }
    sync()?;
    tracing::info!(
        records = next,
        proofs = proven,
        seconds = t0.elapsed().as_secs_f64(),
        "entry records packed"
    );
    Ok(())
}

/// `Envelope` with only `EntryBody.author` and `.index` decoded (the
/// field numbers are frozen: proto/lienthong/v1/entry.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct AuthorIndexOfEnvelope {
    #[prost(message, optional, tag = "1")]
    body: Option<AuthorIndexOfBody>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AuthorIndexOfBody {
    #[prost(string, tag = "2")]
    author: String,
    #[prost(uint64, tag = "3")]
    index: u64,
}

/// Step 1 for a store of layout 4 or older (once its records are packed):
/// writes each author's `N` (one past the highest index of its entries
/// received here) from the records, and makes it durable.
/// An older binary ignores the keys.
pub(crate) fn count_stored_up_to(
    db: &sled::Tree,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    let mut up_to: std::collections::HashMap<String, u64> = Default::default();
    let mut records = 0u64;
    for item in crate::records::all(db) {
        let (cursor, record) = item?;
        // Only received records count, as the writer counts them (it
        // looks up entries of the own feed always).
        if record.get(1) != Some(&(crate::read::Verification::Verified as u8)) {
            continue;
        }
        records += 1;
        let envelope =
            crate::read::record_envelope(&record).ok_or_else(|| StoreError::Corrupt {
                key: format!("entry at cursor {cursor}"),
                detail: "bad record header".into(),
            })?;
        let body = <AuthorIndexOfEnvelope as prost::Message>::decode(envelope)
            .map_err(|e| StoreError::Corrupt {
                key: format!("entry at cursor {cursor}"),
                detail: e.to_string(),
            })?
            .body
            .unwrap_or_default();
        let u = up_to.entry(body.author).or_default();
        *u = (*u).max(body.index.saturating_add(1));
    }
    let mut batch = sled::Batch::default();
    for (author, u) in &up_to {
        batch.insert(
            keys::with_bytes(keys::STORED_UP_TO, author.as_bytes()),
            &u.to_be_bytes(),
        );
    }
    db.apply_batch(batch)?;
    sync()?;
    tracing::info!(
        to = STORE_FORMAT,
        received = records,
        authors = up_to.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "each author's highest stored index counted"
    );
    Ok(())
}

/// Step 1 for a store of layout 5 or older (once its references are in
/// buckets): builds the filter of references and makes it durable. An
/// older binary ignores its keys.
pub(crate) fn filter_references(
    db: &sled::Tree,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let t0 = Instant::now();
    let references = crate::filter::Filter::build(db)?;
    sync()?;
    tracing::info!(
        to = STORE_FORMAT,
        references,
        seconds = t0.elapsed().as_secs_f64(),
        "filter of references built"
    );
    Ok(())
}

/// Steps 2 and 3, once the store has passed the checks of every open on
/// the packed values: records [`STORE_FORMAT`] (if `format` is older) and
/// removes whatever old keys are left.
pub(crate) fn finish(
    db: &sled::Tree,
    format: u32,
    sync: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if format < STORE_FORMAT {
        db.insert(keys::meta("format"), &STORE_FORMAT.to_be_bytes())?;
        sync()?;
        tracing::info!(
            to = STORE_FORMAT,
            "store layout upgraded; removing the old keys"
        );
    }
    let mut removed = 0;
    for old in [
        keys::FEED,
        keys::HASH,
        keys::ID,
        keys::REFERENCE,
        keys::TERM,
        keys::ENTRY,
        keys::PROOF,
    ] {
        removed += remove_prefix(db, old, REMOVE_BATCH)?;
    }
    if removed > 0 {
        sync()?;
        tracing::info!(removed, "old layout keys removed");
    }
    Ok(())
}

/// Writes the packed values of the one-key-per-item records under
/// `old_prefix`; returns how many items there were.
fn pack(db: &sled::Tree, old_prefix: u8, into: Packed) -> Result<u64, StoreError> {
    let mut batch = sled::Batch::default();
    let mut items = Vec::new();
    let mut next = 0u64;
    let mut values = 0usize;
    for kv in db.scan_prefix([old_prefix]) {
        let (k, v) = kv?;
        let index = numbered_key(old_prefix, &k, "a u64 index")?;
        if index != next {
            return Err(StoreError::Integrity(format!(
                "{:?} record {next} is missing (the next is {index}): the store is damaged; \
                 restore the newest backup",
                old_prefix as char
            )));
        }
        if v.len() != into.width() {
            return Err(StoreError::Corrupt {
                key: format!("{:?} record {index}", old_prefix as char),
                detail: format!("is {} bytes, not {}", v.len(), into.width()),
            });
        }
        items.extend_from_slice(&v);
        next += 1;
        if next.is_multiple_of(packed::PER_VALUE) {
            into.append(db, &mut batch, next - packed::PER_VALUE, &items)?;
            items.clear();
            values += 1;
            if values.is_multiple_of(1024) {
                db.apply_batch(std::mem::take(&mut batch))?;
            }
        }
    }
    let partial = next - next % packed::PER_VALUE;
    into.append(db, &mut batch, partial, &items)?;
    db.apply_batch(batch)?;
    Ok(next)
}

/// The number in an old key of one prefix byte and a u64 BE (`what` it
/// is, for the error).
fn numbered_key(prefix: u8, k: &[u8], what: &str) -> Result<u64, StoreError> {
    keys::tail_u64(k)
        .filter(|_| k.len() == 9)
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{:?} key {}", prefix as char, crate::store::hex(k)),
            detail: format!("not a prefix and {what}"),
        })
}
