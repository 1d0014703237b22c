//! `Audit.ExportBundle`: writes the audit bundle (crates/audit, format in
//! docs/audit-format.md) from the store, streaming, in constant memory.
//!
//! What a node exports:
//! - a segment of its own feed: every entry in the selected range (receipts
//!   included), every checkpoint it issued in that range with the
//!   cosignatures it gathered, ending at a checkpoint;
//! - the entries it received from other members (all, or one member's),
//!   each with the author's checkpoint and the inclusion proof it was
//!   verified with on arrival;
//! - the evidence it holds, as signed by the members concerned.

use std::io::Write;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use lienthong_audit::{BundleWriter, ExportInfo};
use lienthong_core::manifest::ManifestChain;
use lienthong_core::proto as pb;
use lienthong_store::{Store, Verification};

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only entries received from this member (empty: from every member).
    pub member: String,
    /// Entries created at or after this time (0: from the start).
    pub from_unix_ms: i64,
    /// Entries created before this time (0: up to now).
    pub to_unix_ms: i64,
}

impl Selection {
    fn contains(&self, created: i64) -> bool {
        created >= self.from_unix_ms && (self.to_unix_ms == 0 || created < self.to_unix_ms)
    }
}

/// Writes the bundle to `out`; returns (records, bytes).
pub fn export(
    store: &Store,
    chain: &ManifestChain,
    key: &SigningKey,
    sel: &Selection,
    out: impl Write,
) -> Result<(u64, u64)> {
    let me = store.member().to_owned();
    let info = ExportInfo {
        federation: chain.current().manifest().federation.clone(),
        exporter: me.clone(),
        created_unix_ms: crate::witness::now_unix_ms(),
        selection: pb::Selection {
            member: sel.member.clone(),
            from_unix_ms: sel.from_unix_ms,
            to_unix_ms: sel.to_unix_ms,
            from_index: 0,
            to_index: 0,
        },
    };
    let signed: Vec<_> = chain.signed().cloned().collect();
    let mut w = BundleWriter::new(out, &info, &signed)?;

    // The own feed, from the first entry in the time range to the first
    // checkpoint at or after the last one.
    let checkpointed = store.latest_checkpoint().map_or(0, |c| c.size);
    let (start, end) = own_range(store, sel, checkpointed)?;
    if start < end {
        let checkpoints = store.own_checkpoints(start, end)?;
        let end = checkpoints
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s >= end)
            .unwrap_or(end);
        w.begin_segment(&me, start, &store.compact_prefix(start)?)?;
        let mut cps = checkpoints
            .into_iter()
            .filter(|(s, _)| *s <= end)
            .peekable();
        let mut i = start;
        while i < end {
            let batch = store.feed_envelopes(i, end, 1000, 16 << 20)?;
            anyhow::ensure!(!batch.is_empty(), "own feed entry {i} is missing");
            for env in batch {
                w.segment_entry(&env)?;
                i += 1;
                while let Some((_, note)) = cps.next_if(|(s, _)| *s == i) {
                    w.checkpoint(&note)?;
                }
            }
        }
        w.end_segment()?;
    }

    // Entries received from others, with what they were verified against.
    let mut written_checkpoints = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let page = store.entries_from(cursor, 1000)?;
        let Some(last) = page.last() else { break };
        cursor = last.cursor + 1;
        for e in page {
            if e.verification != Verification::Verified
                || (!sel.member.is_empty() && e.body.author != sel.member)
                || !sel.contains(e.body.created_unix_ms)
            {
                continue;
            }
            let Some((size, proof)) = store.received_proof(e.cursor)? else {
                // Stored before proofs were kept: nothing to prove it with.
                tracing::warn!(author = %e.body.author, index = e.body.index, "received entry without a stored proof; left out of the bundle");
                continue;
            };
            if written_checkpoints.insert((e.body.author.clone(), size)) {
                let note = store
                    .peer_checkpoint(&e.body.author, size)?
                    .with_context(|| {
                        format!("checkpoint {size} of {} is missing", e.body.author)
                    })?;
                w.checkpoint(&note)?;
            }
            w.received_entry(&e.envelope, size, &proof)?;
        }
    }

    // Evidence, as the members concerned signed it.
    let mut after = 0;
    loop {
        let page = store.evidence(after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in page {
            if !sel.member.is_empty() && e.member != sel.member {
                continue;
            }
            if let Some(b) = bundle_evidence(&me, e) {
                w.evidence(b)?;
            }
        }
    }
    let (records, bytes) = (w.records(), w.bytes());
    w.finish(key)?;
    Ok((records + 1, bytes))
}

/// Own feed indexes `[start, end)` holding the entries created in the
/// selected time range, within what is checkpointed.
fn own_range(store: &Store, sel: &Selection, checkpointed: u64) -> Result<(u64, u64)> {
    if sel.from_unix_ms == 0 && sel.to_unix_ms == 0 {
        return Ok((0, checkpointed));
    }
    // Creation times never decrease along the feed: binary search.
    let created = |i: u64| -> Result<i64> {
        Ok(store
            .get_by_own_index(i)?
            .map_or(i64::MAX, |e| e.body.created_unix_ms))
    };
    let first_at_or_after = |t: i64| -> Result<u64> {
        let (mut lo, mut hi) = (0u64, checkpointed);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if created(mid)? < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    };
    let start = first_at_or_after(sel.from_unix_ms)?;
    let end = if sel.to_unix_ms == 0 {
        checkpointed
    } else {
        first_at_or_after(sel.to_unix_ms)?
    };
    Ok((start, end.max(start)))
}

fn bundle_evidence(me: &str, e: pb::EvidenceRecord) -> Option<pb::Evidence> {
    use pb::evidence::Kind;
    let kind = match e.kind() {
        pb::EvidenceKind::Equivocation => {
            let mut notes = e.checkpoints.into_iter();
            Kind::Equivocation(pb::Equivocation {
                member: e.member.clone(),
                first_note: notes.next()?,
                second_note: notes.next()?,
            })
        }
        pb::EvidenceKind::RefusedEntry => Kind::RefusedEntry(pb::RefusedEntry {
            envelope: e.envelope,
            checkpoint: e.checkpoints.into_iter().next().unwrap_or_default(),
            inclusion_proof: e.inclusion_proof,
            reason: e.reason,
        }),
        // Checkpoints of different sizes with no valid consistency proof:
        // the bundle format has no record for it yet; `audit status`
        // shows it.
        pb::EvidenceKind::Inconsistent | pb::EvidenceKind::Unspecified => return None,
    };
    Some(pb::Evidence {
        recorded_by: me.to_owned(),
        recorded_unix_ms: e.observed_unix_ms,
        kind: Some(kind),
    })
}
