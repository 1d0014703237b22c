//! Writing a bundle: the exporter's side.
//!
//! The writer enforces the record order the verifier expects (header,
//! manifest chain, closed segments, end record) so that a bug in an
//! exporter shows up as an error here, not as a failed audit later. It does
//! not check signatures: the verifier does that, trusting nothing.
//!
//! ```no_run
//! # use lienthong_audit::{BundleWriter, ExportInfo};
//! # fn export(
//! #     out: std::fs::File, info: ExportInfo, chain: &[lienthong_core::manifest::SignedManifest],
//! #     prefix: &[lienthong_log::Hash], feed: &[(Vec<u8>, Option<String>)],
//! #     key: &ed25519_dalek::SigningKey,
//! # ) -> Result<(), lienthong_audit::WriteError> {
//! let mut w = BundleWriter::new(out, &info, chain)?;
//! w.begin_segment("20", 1000, prefix)?; // prefix: compact_prefix(1000, &store)
//! for (envelope, checkpoint_after) in feed {
//!     w.segment_entry(envelope)?;
//!     if let Some(note) = checkpoint_after {
//!         w.checkpoint(note)?; // every checkpoint whose size is reached here
//!     }
//! }
//! w.end_segment()?;
//! w.finish(key)?;
//! # Ok(()) }
//! ```

use std::io::{self, Write};

use ed25519_dalek::{Signer as _, SigningKey};
use lienthong_core::manifest::SignedManifest;
use lienthong_log::Hash;
use lienthong_proto::v1::{
    BundleCheckpoint, BundleEnd, BundleHeader, BundleRecord, ConsistencyProof, Evidence,
    ManifestSignature, ReceivedEntry, SegmentEnd, SegmentEntry, SegmentStart, Selection,
    SignedManifestVersion, bundle_record::Record,
};
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::{FORMAT, MAX_RECORD_BYTES, bundle_signing_message};

/// What the header says about an export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportInfo {
    /// The federation's name, e.g. `lienthong.example/bac-bo-11`.
    pub federation: String,
    /// The exporting member's code; its key signs the end record.
    pub exporter: String,
    /// When the export was made, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// What was asked for.
    pub selection: Selection,
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output failed.
    #[error("writing the bundle failed: {0}")]
    Io(#[from] io::Error),
    /// The calls came in an order, or with values, that make a bundle the
    /// verifier would refuse; the text says which rule.
    #[error("cannot write this bundle: {0}")]
    Order(String),
}

struct OpenSegment {
    author: String,
    start: u64,
    size: u64,
    last_checkpoint: Option<u64>,
}

/// Writes one bundle file, record by record. Nothing is buffered beyond
/// one record, so exporting a feed of any size takes constant memory (wrap
/// a file in a `BufWriter`).
pub struct BundleWriter<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
    records: u64,
    segment: Option<OpenSegment>,
    buf: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for BundleWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle: writes the header and the manifest chain (`chain`:
    /// every version from genesis, in order, with its signatures).
    pub fn new(out: W, info: &ExportInfo, chain: &[SignedManifest]) -> Result<Self, WriteError> {
        if chain.is_empty() {
            return Err(WriteError::Order(
                "the manifest chain is empty; a bundle carries every version from genesis".into(),
            ));
        }
        for (i, s) in chain.iter().enumerate() {
            if s.manifest.version != i as u64 + 1 {
                return Err(WriteError::Order(format!(
                    "manifest version {} is at position {i} of the chain; versions must run 1, 2, 3, … without gaps",
                    s.manifest.version
                )));
            }
        }
        let mut w = Self {
            out,
            hasher: Sha256::new(),
            bytes: 0,
            records: 0,
            segment: None,
            buf: Vec::new(),
        };
        w.write(Record::Header(BundleHeader {
            format: FORMAT.into(),
            federation: info.federation.clone(),
            exporter: info.exporter.clone(),
            created_unix_ms: info.created_unix_ms,
            selection: Some(info.selection.clone()),
        }))?;
        for s in chain {
            w.write(Record::Manifest(manifest_record(s)))?;
        }
        Ok(w)
    }

    /// Opens a segment of `author`'s own feed starting at index `start`;
    /// `prefix` is the compact range of `[0, start)` (see
    /// [`crate::compact_prefix`]).
    pub fn begin_segment(
        &mut self,
        author: &str,
        start: u64,
        prefix: &[Hash],
    ) -> Result<(), WriteError> {
        if let Some(open) = &self.segment {
            return Err(WriteError::Order(format!(
                "the segment of {} is still open; end it before starting another",
                open.author
            )));
        }
        if prefix.len() != start.count_ones() as usize {
            return Err(WriteError::Order(format!(
                "a segment starting at {start} needs {} prefix hashes (one per bit set in {start}), not {}",
                start.count_ones(),
                prefix.len()
            )));
        }
        self.write(Record::SegmentStart(SegmentStart {
            author: author.into(),
            start,
            prefix: prefix.iter().map(|h| h.0.to_vec()).collect(),
        }))?;
        self.segment = Some(OpenSegment {
            author: author.into(),
            start,
            size: start,
            last_checkpoint: None,
        });
        Ok(())
    }

    /// Adds the next entry of the open segment.
    pub fn segment_entry(&mut self, envelope: &[u8]) -> Result<(), WriteError> {
        let Some(open) = &mut self.segment else {
            return Err(WriteError::Order(
                "a segment entry outside a segment; call begin_segment first".into(),
            ));
        };
        open.size += 1;
        self.write(Record::SegmentEntry(SegmentEntry {
            envelope: envelope.to_vec(),
        }))
    }

    /// Adds a signed checkpoint note. Inside a segment its size must be the
    /// size the segment has reached; outside, it is a reference checkpoint
    /// for received entries and consistency proofs.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), WriteError> {
        if let Some(open) = &mut self.segment {
            let size = note_size(note).ok_or_else(|| {
                WriteError::Order("the note is not a signed C2SP checkpoint".into())
            })?;
            if size != open.size {
                return Err(WriteError::Order(format!(
                    "a checkpoint of size {size} inside the segment of {}, which has reached size {}; write each checkpoint right after entry size-1",
                    open.author, open.size
                )));
            }
            open.last_checkpoint = Some(size);
        }
        self.write(Record::Checkpoint(BundleCheckpoint { note: note.into() }))
    }

    /// Closes the open segment. Unless it holds no entry, its last record
    /// must be a checkpoint of the size it reached, so every entry is under
    /// a signed root.
    pub fn end_segment(&mut self) -> Result<(), WriteError> {
        let Some(open) = self.segment.take() else {
            return Err(WriteError::Order("no segment is open".into()));
        };
        if open.last_checkpoint != Some(open.size) && open.size != open.start {
            let size = open.size;
            let author = open.author.clone();
            self.segment = Some(open);
            return Err(WriteError::Order(format!(
                "the segment of {author} reached size {size} without a checkpoint of that size; end segments at a checkpoint"
            )));
        }
        self.write(Record::SegmentEnd(SegmentEnd { size: open.size }))
    }

    /// Adds an entry of another member's feed, proven included in that
    /// member's checkpoint of `checkpoint_size` (which must be written
    /// before, with [`BundleWriter::checkpoint`], in this or an earlier
    /// bundle of the same audit).
    pub fn received_entry(
        &mut self,
        envelope: &[u8],
        checkpoint_size: u64,
        inclusion_proof: &[Hash],
    ) -> Result<(), WriteError> {
        self.outside_segments("a received entry")?;
        self.write(Record::ReceivedEntry(ReceivedEntry {
            envelope: envelope.to_vec(),
            checkpoint_size,
            inclusion_proof: inclusion_proof.iter().map(|h| h.0.to_vec()).collect(),
        }))
    }

    /// Adds a proof that `author`'s tree of `new_size` extends its tree of
    /// `old_size`.
    pub fn consistency_proof(
        &mut self,
        author: &str,
        old_size: u64,
        new_size: u64,
        proof: &[Hash],
    ) -> Result<(), WriteError> {
        self.outside_segments("a consistency proof")?;
        self.write(Record::ConsistencyProof(ConsistencyProof {
            author: author.into(),
            old_size,
            new_size,
            hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
        }))
    }

    /// Adds evidence a member recorded.
    pub fn evidence(&mut self, evidence: Evidence) -> Result<(), WriteError> {
        self.outside_segments("evidence")?;
        self.write(Record::Evidence(evidence))
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the end record, signed with the exporter's key (its key in
    /// the newest manifest version written), flushes, and returns the
    /// output.
    pub fn finish(mut self, exporter_key: &SigningKey) -> Result<W, WriteError> {
        self.outside_segments("the end record")?;
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        let signature = exporter_key.sign(&bundle_signing_message(&digest));
        let end = BundleEnd {
            records: self.records,
            bytes: self.bytes,
            sha256: digest.to_vec(),
            signature: signature.to_bytes().to_vec(),
        };
        self.write(Record::End(end))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn outside_segments(&self, what: &str) -> Result<(), WriteError> {
        match &self.segment {
            Some(open) => Err(WriteError::Order(format!(
                "{what} inside the segment of {}; end the segment first",
                open.author
            ))),
            None => Ok(()),
        }
    }

    fn write(&mut self, record: Record) -> Result<(), WriteError> {
        let record = BundleRecord {
            record: Some(record),
        };
        let len = record.encoded_len();
        if len > MAX_RECORD_BYTES {
            return Err(WriteError::Order(format!(
                "a record of {len} bytes is larger than the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        self.buf.clear();
        // Encoding into a Vec cannot run out of space.
        record
            .encode_length_delimited(&mut self.buf)
            .map_err(|e| WriteError::Order(e.to_string()))?;
        self.out.write_all(&self.buf)?;
        self.hasher.update(&self.buf);
        self.bytes += self.buf.len() as u64;
        self.records += 1;
        Ok(())
    }
}

/// The wire form of one manifest version.
pub(crate) fn manifest_record(s: &SignedManifest) -> SignedManifestVersion {
    SignedManifestVersion {
        canonical_manifest: s.manifest.canonical_bytes(),
        signatures: s
            .signatures
            .iter()
            .map(|g| ManifestSignature {
                member: g.member.clone(),
                signature: g.signature.to_vec(),
            })
            .collect(),
    }
}

/// The tree size of a signed checkpoint note, read without checking
/// signatures.
fn note_size(note: &str) -> Option<u64> {
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).ok()?;
    let cp = tlog_tiles::checkpoint::Checkpoint::from_bytes(parsed.text()).ok()?;
    Some(cp.size())
}
