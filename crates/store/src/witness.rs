//! What this node keeps as a witness and as an author being witnessed,
//! and the evidence it collects. These records are small and rare, so each
//! is written on its own (insert, flush, fsync) outside the feed writer:
//! a cosignature is only handed out after the checkpoint it covers is
//! durable here (the C2SP witness rule).

use lienthong_core::proto::EvidenceRecord as Evidence;
use prost::Message as _;

use crate::error::StoreError;
use crate::keys;
use crate::store::Store;

/// Most evidence records kept; past this, new ones are counted, not kept,
/// so a hostile peer cannot fill the disk.
pub const MAX_EVIDENCE: u64 = 100_000;

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

    /// Keeps a witness's cosignature line on this node's checkpoint of
    /// `size`; durable when this returns.
    pub fn add_cosignature(&self, size: u64, witness: &str, line: &str) -> Result<(), StoreError> {
        let mut k = keys::with_u64(keys::COSIGNATURE, size).to_vec();
        k.extend_from_slice(witness.as_bytes());
        self.inner.db.insert(k, line.as_bytes())?;
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
        let id = db
            .scan_prefix([keys::EVIDENCE])
            .next_back()
            .transpose()?
            .and_then(|(k, _)| keys::tail_u64(&k))
            .map_or(1, |last| last + 1);
        if id > MAX_EVIDENCE {
            return Ok(None);
        }
        e.id = id;
        db.insert(keys::with_u64(keys::EVIDENCE, id), e.encode_to_vec())?;
        self.sync()?;
        Ok(Some(id))
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
