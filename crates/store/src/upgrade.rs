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
//! Entries, ids, checkpoints and everything signed are not touched.
//!
//! There is no way back: a release reading format 1 refuses a format 2
//! store and names the release to use.

use std::time::Instant;

use crate::keys;
use crate::packed::{self, Packed};
use crate::store::remove_prefix;
use crate::{STORE_FORMAT, StoreError};

/// Old keys removed per sled batch.
const REMOVE_BATCH: usize = 16 * 1024;

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
    let removed =
        remove_prefix(db, keys::FEED, REMOVE_BATCH)? + remove_prefix(db, keys::HASH, REMOVE_BATCH)?;
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
        let index =
            keys::tail_u64(&k)
                .filter(|_| k.len() == 9)
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("{:?} key {}", old_prefix as char, crate::store::hex(&k)),
                    detail: "not a prefix and a u64 index".into(),
                })?;
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
