//! What this node keeps as a witness and as an author being witnessed,
//! and the evidence it collects. These records are small and rare, so each
//! is written on its own (insert, flush, fsync) outside the feed writer:
//! a cosignature is only handed out after the checkpoint it covers is
//! durable here (the C2SP witness rule).

use lienthong_core::proto::EvidenceRecord as Evidence;
use lienthong_log::Hash;
use prost::Message as _;

use crate::error::StoreError;
use crate::keys;
use crate::store::{CheckpointRecord, Store};

/// Most evidence records kept; past this, new ones are counted, not kept,
/// so a hostile peer cannot fill the disk.
pub const MAX_EVIDENCE: u64 = 100_000;

/// Of [`MAX_EVIDENCE`], the records kept for conflicting checkpoints only.
pub const RESERVED_FOR_CHECKPOINTS: u64 = 10_000;

/// Evidence kinds about conflicting checkpoints.
const CHECKPOINT_KINDS: [i32; 2] = [
    lienthong_core::proto::EvidenceKind::Equivocation as i32,
    lienthong_core::proto::EvidenceKind::Inconsistent as i32,
];

impl Store {
    /// The checkpoint of `member` this node last cosigned, if any.
    pub fn witnessed(&self, member: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .inner
            .db
            .get(keys::with_bytes(keys::WITNESSED, member.as_bytes()))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records `note` as the checkpoint of `member` this node cosigns;
    /// durable when this returns.
    pub fn set_witnessed(&self, member: &str, note: &str) -> Result<(), StoreError> {
        self.inner.db.insert(
            keys::with_bytes(keys::WITNESSED, member.as_bytes()),
            note.as_bytes(),
        )?;
        self.sync()
    }

    /// Keeps witnesses' cosignature lines, (witness, line), on this
    /// node's checkpoint of `size`, in one write; durable when this
    /// returns. A cosigning round hands in all its answers at once: one
    /// fsync a round rather than one a witness.
    pub fn add_cosignatures(&self, size: u64, lines: &[(&str, &str)]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (witness, line) in lines {
            let mut k = keys::with_u64(keys::COSIGNATURE, size).to_vec();
            k.extend_from_slice(witness.as_bytes());
            batch.insert(k, line.as_bytes());
        }
        self.inner.db.apply_batch(batch)?;
        self.sync()
    }

    /// Cosignatures held on the checkpoint of `size`: (witness, line).
    pub fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = keys::with_u64(keys::COSIGNATURE, size);
        self.inner
            .db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// The size of the newest own checkpoint that holds any cosignature,
    /// and how many it holds. Witnesses are asked at most once per
    /// cosigning round, so under load the latest checkpoint is often newer.
    pub fn latest_cosigned(&self) -> Result<Option<(u64, usize)>, StoreError> {
        let Some(size) = self.latest_cosigned_size()? else {
            return Ok(None);
        };
        Ok(Some((size, self.cosignatures(size)?.len())))
    }

    /// The size of the newest own checkpoint that holds any cosignature.
    fn latest_cosigned_size(&self) -> Result<Option<u64>, StoreError> {
        let Some((k, _)) = self
            .inner
            .db
            .scan_prefix([keys::COSIGNATURE])
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        let size = k
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("cosignature {k:?}"),
                detail: format!("a key of {} bytes has no tree size", k.len()),
            })?;
        Ok(Some(size))
    }

    /// The newest own checkpoint that members cosigned, its note with the
    /// cosignatures appended.
    pub fn newest_cosigned_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        let Some(size) = self.latest_cosigned_size()? else {
            return Ok(None);
        };
        let Some((_, note)) = self
            .own_checkpoints(size.saturating_sub(1), size)?
            .into_iter()
            .find(|(s, _)| *s == size)
        else {
            return Ok(None);
        };
        let root = self.root_at(size)?;
        Ok(Some(CheckpointRecord {
            note,
            size,
            root: root.0,
        }))
    }

    /// The latest checkpoint note with every cosignature it has gathered
    /// appended (a valid signed note: extra signature lines are ignored by
    /// verifiers that do not know the witness).
    pub fn latest_cosigned_note(&self) -> Result<Option<(u64, String)>, StoreError> {
        let Some(cp) = self.latest_checkpoint() else {
            return Ok(None);
        };
        let mut note = cp.note.clone();
        for (_, line) in self.cosignatures(cp.size)? {
            note.push_str(&line);
            if !line.ends_with('\n') {
                note.push('\n');
            }
        }
        Ok(Some((cp.size, note)))
    }

    /// Keeps a piece of evidence; returns its id, or `None` once
    /// [`MAX_EVIDENCE`] are held. Durable when this returns.
    pub fn add_evidence(&self, mut e: Evidence) -> Result<Option<u64>, StoreError> {
        let db = &self.inner.db;
        // Two callers taking the same id would write one over the other.
        let _one_at_a_time = self
            .inner
            .evidence_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let id = db
            .scan_prefix([keys::EVIDENCE])
            .next_back()
            .transpose()?
            .and_then(|(k, _)| keys::tail_u64(&k))
            .map_or(1, |last| last + 1);
        // Entries refused from peers stop short of the limit: however many
        // a member sends, checkpoints that fork a feed still find room.
        let limit = if CHECKPOINT_KINDS.contains(&e.kind) {
            MAX_EVIDENCE
        } else {
            MAX_EVIDENCE - RESERVED_FOR_CHECKPOINTS
        };
        if id > limit {
            return Ok(None);
        }
        e.id = id;
        db.insert(keys::with_u64(keys::EVIDENCE, id), e.encode_to_vec())?;
        self.sync()?;
        Ok(Some(id))
    }

    /// How many pieces of evidence are kept, and how many of them are
    /// not refused entries (so about checkpoints: equivocation,
    /// inconsistency). Decodes each record's kind only, not the envelope a
    /// refused entry carries (up to 1 MiB), though sled still reads each
    /// value.
    pub fn evidence_counts(&self) -> Result<(u64, u64), StoreError> {
        /// The kind field of `EvidenceRecord` alone; decoding skips the rest.
        #[derive(Clone, PartialEq, prost::Message)]
        struct KindOnly {
            #[prost(int32, tag = "2")]
            kind: i32,
        }
        let (mut all, mut about_checkpoints) = (0, 0);
        for kv in self.inner.db.scan_prefix([keys::EVIDENCE]) {
            let (k, v) = kv?;
            let kind = KindOnly::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                key: format!("evidence {:?}", keys::tail_u64(&k)),
                detail: e.to_string(),
            })?;
            all += 1;
            if kind.kind != lienthong_core::proto::EvidenceKind::RefusedEntry as i32 {
                about_checkpoints += 1;
            }
        }
        Ok((all, about_checkpoints))
    }

    /// Evidence with id > `after`, oldest first, at most `limit`.
    pub fn evidence(&self, after: u64, limit: usize) -> Result<Vec<Evidence>, StoreError> {
        self.inner
            .db
            .range(keys::with_u64(keys::EVIDENCE, after.saturating_add(1))..)
            .take_while(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.first() == Some(&keys::EVIDENCE))
            })
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Evidence::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                    key: format!("evidence {:?}", keys::tail_u64(&k)),
                    detail: e.to_string(),
                })
            })
            .collect()
    }
}

impl Store {
    /// For an entry received from a peer (by cursor): the size of the
    /// author's checkpoint it was proven under and the inclusion proof.
    pub fn received_proof(&self, cursor: u64) -> Result<Option<(u64, Vec<Hash>)>, StoreError> {
        if cursor >= self.durable().next_cursor {
            return Ok(None);
        }
        let Some(v) = crate::records::get_proof(&self.inner.db, cursor)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Corrupt {
            key: format!("proof of cursor {cursor}"),
            detail: "bad length".into(),
        };
        if v.len() < 8 || (v.len() - 8) % 32 != 0 {
            return Err(corrupt());
        }
        let size = u64::from_be_bytes(v[..8].try_into().map_err(|_| corrupt())?);
        let hashes = v[8..]
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok().map(Hash))
            .collect();
        Ok(Some((size, hashes)))
    }

    /// The newest checkpoint note of `author` delivered with its entries,
    /// and its size.
    pub fn newest_peer_checkpoint(
        &self,
        author: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let Some((k, v)) = self
            .inner
            .db
            .scan_prefix(keys::peer_checkpoint_prefix(author))
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        let size = keys::tail_u64(&k).ok_or_else(|| StoreError::Corrupt {
            key: format!("checkpoint of {author} {k:?}"),
            detail: "no tree size".into(),
        })?;
        Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
    }

    /// A peer's checkpoint note of `size`, as it was delivered.
    pub fn peer_checkpoint(&self, author: &str, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .inner
            .db
            .get(keys::peer_checkpoint(author, size))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every own checkpoint issued with a size in `(after, upto]`, each with
    /// the cosignatures it gathered, in size order.
    pub fn own_checkpoints(&self, after: u64, upto: u64) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.db.range(
            keys::with_u64(keys::CHECKPOINT, after.saturating_add(1))
                ..=keys::with_u64(keys::CHECKPOINT, upto),
        ) {
            let (k, v) = kv?;
            let Some(size) = keys::tail_u64(&k) else {
                continue;
            };
            let mut note = String::from_utf8_lossy(&v).into_owned();
            for (_, line) in self.cosignatures(size)? {
                note.push_str(&line);
                if !line.ends_with('\n') {
                    note.push('\n');
                }
            }
            out.push((size, note));
        }
        Ok(out)
    }

    /// The compact range of the own feed's leaves `[0, size)`: the roots of
    /// the complete subtrees of its left-to-right decomposition, largest
    /// first (what an audit bundle segment starting at `size` needs).
    pub fn compact_prefix(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        Ok(lienthong_log::compact_range(
            size,
            &crate::store::TreeHashes(&self.inner.db),
        )?)
    }
}
