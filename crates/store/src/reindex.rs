//! Rebuilding the derived indexes when the code that computes them changed.
//!
//! The search terms of an entry (`t` postings) and the retraction marks
//! (`Z`) are derived from the stored envelopes by
//! [`lienthong_core::terms::entry_terms`] and the retraction rule. A store
//! written by an older release holds them as that release computed them:
//! an entry of a kind it did not know (it keeps such entries, verified,
//! byte for byte) has no kind, thread or subject terms, and a retraction
//! it could not read marked nothing. The store records which
//! [`TERMS_VERSION`] built its indexes (meta `terms_version`; absent in
//! stores older than the record); when that is not the current one, the
//! indexes are rebuilt from the envelopes at open, before anything is
//! served. Entries, feed, hashes and checkpoints are never touched.
//!
//! The rebuild is safe to interrupt: the version is written last, so a
//! node killed half-way starts again from scratch at its next open.

use lienthong_core::proto::OpeningSet;
use lienthong_core::terms::TERMS_VERSION;

use crate::StoreError;
use crate::keys;
use crate::read::decode_record;
use crate::writer::{index_terms, mark_retraction};

/// Entries per batch (and per posting block) while rebuilding.
const CHUNK: usize = 4096;

/// The terms version the store's indexes were built with, if recorded.
fn recorded(db: &sled::Tree) -> Result<Option<u32>, StoreError> {
    Ok(db
        .get(keys::meta("terms_version"))?
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map(u32::from_be_bytes))
}

/// Marks a new, empty store as indexed by this code.
pub(crate) fn mark_current(db: &sled::Tree) -> Result<(), StoreError> {
    db.insert(keys::meta("terms_version"), &TERMS_VERSION.to_be_bytes())?;
    Ok(())
}

/// Rebuilds the indexes if they were built by other code; returns how
/// many entries were reindexed (0: nothing to do).
pub(crate) fn reindex_if_needed(db: &sled::Tree) -> Result<u64, StoreError> {
    let was = recorded(db)?;
    if was == Some(TERMS_VERSION) {
        return Ok(0);
    }
    tracing::info!(
        from = ?was,
        to = TERMS_VERSION,
        "rebuilding the search indexes: they were built by another release"
    );
    for prefix in [keys::TERM, keys::POSTING, keys::RETRACTED] {
        crate::store::remove_prefix(db, prefix, CHUNK)?;
    }
    let mut count = 0u64;
    let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
    for record in crate::records::all(db) {
        let (cursor, v) = record?;
        chunk.push((cursor, v.to_vec()));
        if chunk.len() == CHUNK {
            count += index_chunk(db, &chunk)?;
            chunk.clear();
        }
    }
    count += index_chunk(db, &chunk)?;
    mark_current(db)?;
    db.flush()?;
    tracing::info!(entries = count, "search indexes rebuilt");
    Ok(count)
}

fn index_chunk(db: &sled::Tree, chunk: &[(u64, Vec<u8>)]) -> Result<u64, StoreError> {
    let mut batch = sled::Batch::default();
    let mut postings: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = Default::default();
    for (cursor, record) in chunk {
        let e = decode_record(*cursor, record)?;
        let openings = match db.get(keys::with_u64(keys::OPENINGS, *cursor))? {
            Some(v) => prost::Message::decode(v.as_ref())
                .map(|s: OpeningSet| s.openings)
                .map_err(|err| StoreError::Corrupt {
                    key: format!("openings of the entry at cursor {cursor}"),
                    detail: err.to_string(),
                })?,
            None => Vec::new(),
        };
        mark_retraction(&mut batch, &e.body, *cursor);
        for t in index_terms(&e.id.0, &e.body, &openings) {
            postings.entry(t.0).or_default().push(*cursor);
        }
    }
    // Cursors arrive in ascending order: each block is sorted already.
    for (term, cursors) in postings {
        crate::postings::add(db, &mut batch, &term, &cursors, None)?;
    }
    db.apply_batch(batch)?;
    Ok(chunk.len() as u64)
}
