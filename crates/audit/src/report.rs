//! What the verifier found: counts per check, every failure with its
//! location, and a verdict. Serialises to JSON (`serde_json::to_string`)
//! for other tools; `Display` gives a summary for people.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of this report's JSON shape.
pub const REPORT_FORMAT: &str = "lienthong-audit-report/v1";

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed; see [`Report::failures`].
    Fail,
}

/// The kinds of check the verifier makes, in the order the report lists
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The file splits into records that decode, in the order the format
    /// requires (header, manifests, closed segments, end record last).
    Structure,
    /// The end record: record count, byte count, SHA-256 of the bytes
    /// before it, and the exporter's signature over that digest.
    BundleSignature,
    /// Each manifest version: canonical bytes, every signature, the quorum
    /// of the version before it (genesis: its own), and agreement between
    /// bundles.
    Manifest,
    /// The auditor's trusted keys are in the chain and endorse it.
    TrustAnchor,
    /// Each entry decodes and is signed by its author's key for its
    /// manifest version.
    EntrySignature,
    /// Each segment entry names the segment's author and the next index,
    /// and its time does not go backwards.
    EntryPosition,
    /// Each checkpoint is signed by a key its member held.
    CheckpointSignature,
    /// Each witness cosignature verifies under the witness member's key.
    Cosignature,
    /// At every checkpoint in a segment, the root computed from the
    /// entries equals the signed root; every segment ends at a checkpoint.
    SegmentRoot,
    /// Each received entry's inclusion proof leads to its checkpoint.
    Inclusion,
    /// Consistency proofs verify, and no member signed two different trees
    /// of one size (or left a checkpoint others hold out of its export).
    Consistency,
    /// Evidence records re-verify; confirmed misbehaviour is a failure.
    Evidence,
    /// The cross-check: every entry sent to a member whose feed is in the
    /// bundles is acknowledged by a receipt in that feed, and every receipt
    /// names an entry that exists, with its id, addressed to the receiver.
    Delivery,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 13] = [
        Check::Structure,
        Check::BundleSignature,
        Check::Manifest,
        Check::TrustAnchor,
        Check::EntrySignature,
        Check::EntryPosition,
        Check::CheckpointSignature,
        Check::Cosignature,
        Check::SegmentRoot,
        Check::Inclusion,
        Check::Consistency,
        Check::Evidence,
        Check::Delivery,
    ];

    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Check::Structure => "structure",
            Check::BundleSignature => "bundle_signature",
            Check::Manifest => "manifest",
            Check::TrustAnchor => "trust_anchor",
            Check::EntrySignature => "entry_signature",
            Check::EntryPosition => "entry_position",
            Check::CheckpointSignature => "checkpoint_signature",
            Check::Cosignature => "cosignature",
            Check::SegmentRoot => "segment_root",
            Check::Inclusion => "inclusion",
            Check::Consistency => "consistency",
            Check::Evidence => "evidence",
            Check::Delivery => "delivery",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where something was found. Fields that do not apply are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The bundle's name as given to the verifier (usually its path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Record number in that bundle; the header is record 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Byte offset of the record's length prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Member code of the feed concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Feed index of the entry concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Tree size of the checkpoint concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = &self.bundle {
            parts.push(b.clone());
        }
        if let Some(r) = self.record {
            parts.push(format!("record {r}"));
        }
        if let Some(o) = self.offset {
            parts.push(format!("byte {o}"));
        }
        if let Some(a) = &self.author {
            parts.push(format!("feed {a}"));
        }
        if let Some(i) = self.index {
            parts.push(format!("index {i}"));
        }
        if let Some(s) = self.size {
            parts.push(format!("checkpoint size {s}"));
        }
        if parts.is_empty() {
            f.write_str("(whole audit)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which check.
    pub check: Check,
    /// Where.
    pub at: Location,
    /// What failed and why, in words.
    pub message: String,
}

/// Something worth knowing that does not make the audit fail: a late
/// delivery, checkpoints the bundles do not prove consistent, a signature
/// line by a key outside the federation, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The check it relates to.
    pub check: Check,
    /// Where.
    pub at: Location,
    /// What, in words.
    pub message: String,
}

/// How often a check passed and failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCount {
    /// Which check.
    pub check: Check,
    /// Times it passed.
    pub passed: u64,
    /// Times it failed.
    pub failed: u64,
}

/// The cross-check between what senders' feeds say they sent and what
/// receivers' feeds say they received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    /// (entry, recipient) pairs: every entry in a segment, other than a
    /// receipt, times each audience member other than its author.
    pub expected: u64,
    /// Acknowledged by a receipt within the allowed delay.
    pub delivered: u64,
    /// Acknowledged, but the receipt was created later than the allowed
    /// delay after the entry (each is also a warning).
    pub late: u64,
    /// Not acknowledged although the recipient's exported feed runs past
    /// the allowed delay (each is a failure).
    pub missing: u64,
    /// Not acknowledged, and the recipient's feed is not in the bundles
    /// over the period the receipt would be in: cannot be judged.
    pub not_checkable: u64,
    /// Receipts found in the bundles (in segments or received entries).
    pub receipts: u64,
    /// Receipts whose entry's author feed does not cover that entry:
    /// cannot be matched.
    pub receipts_unmatched: u64,
}

/// What was in one bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSummary {
    /// Its name as given.
    pub name: String,
    /// The header's format string.
    pub format: String,
    /// The exporting member.
    pub exporter: String,
    /// The header's creation time, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// Records read.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Whether its end record verified under the exporter's key.
    pub signed_by_exporter: bool,
}

/// One key a member signed checkpoints with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    /// The verifier key, `<origin>+<key id>+<base64>`.
    pub vkey: String,
    /// First manifest version listing it.
    pub first_version: u64,
    /// Last manifest version listing it.
    pub last_version: u64,
    /// Checkpoints (in the bundles) whose signature by this key verified.
    pub checkpoints: u64,
}

/// One segment of a feed as verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// The bundle it was in.
    pub bundle: String,
    /// First index.
    pub start: u64,
    /// One past the last index (the size it reached).
    pub end: u64,
    /// Checkpoints it carried.
    pub checkpoints: u64,
}

/// What the bundles hold of one member's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSummary {
    /// Member code.
    pub member: String,
    /// Segments of the feed, in the order read.
    pub segments: Vec<SegmentSummary>,
    /// Entries of the feed held by other members (received entries).
    pub received_entries: u64,
    /// Checkpoints of the feed outside segments.
    pub reference_checkpoints: u64,
    /// Keys its checkpoints were signed with.
    pub checkpoint_keys: Vec<KeyUse>,
    /// Groups of its checkpoints the bundles prove consistent among
    /// themselves; more than one means some are not linked by any proof.
    pub checkpoint_groups: u64,
}

/// A trust anchor and what the chain says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorSummary {
    /// The verifier key given.
    pub vkey: String,
    /// Manifest versions listing that key for that member.
    pub listed_in_versions: Vec<u64>,
    /// Manifest versions the key signed (its signature verified).
    pub signed_versions: Vec<u64>,
}

/// The verifier's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// Pass only if no check failed.
    pub verdict: Verdict,
    /// The federation, as the manifest chain names it.
    pub federation: String,
    /// Manifest versions accepted (1 to this).
    pub manifest_versions: u64,
    /// The trust anchors.
    pub anchors: Vec<AnchorSummary>,
    /// The bundles read.
    pub bundles: Vec<BundleSummary>,
    /// Every feed seen.
    pub feeds: Vec<FeedSummary>,
    /// Counts per check.
    pub checks: Vec<CheckCount>,
    /// The delivery cross-check.
    pub deliveries: Deliveries,
    /// Failures, in the order found, up to the listing limit.
    pub failures: Vec<Failure>,
    /// Failures found beyond the listing limit (counted in `checks`).
    pub failures_not_listed: u64,
    /// Warnings, up to the listing limit.
    pub warnings: Vec<Warning>,
    /// Warnings beyond the listing limit.
    pub warnings_not_listed: u64,
}

impl Report {
    /// The count of one check.
    pub fn count(&self, check: Check) -> CheckCount {
        self.checks
            .iter()
            .find(|c| c.check == check)
            .copied()
            .unwrap_or(CheckCount {
                check,
                passed: 0,
                failed: 0,
            })
    }

    /// Whether the audit passed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The listed failures of one check.
    pub fn failures_of(&self, check: Check) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(move |f| f.check == check)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        };
        writeln!(
            f,
            "audit of {} ({} manifest version(s)): {verdict}",
            self.federation, self.manifest_versions
        )?;
        for b in &self.bundles {
            writeln!(
                f,
                "  bundle {}: exported by {}, {} records, {} bytes{}",
                b.name,
                b.exporter,
                b.records,
                b.bytes,
                if b.signed_by_exporter {
                    ""
                } else {
                    " (NOT signed by its exporter)"
                }
            )?;
        }
        for feed in &self.feeds {
            let spans: Vec<String> = feed
                .segments
                .iter()
                .map(|s| format!("[{}, {})", s.start, s.end))
                .collect();
            writeln!(
                f,
                "  feed {}: segments {}, {} received entries, {} reference checkpoints",
                feed.member,
                if spans.is_empty() {
                    "none".into()
                } else {
                    spans.join(" ")
                },
                feed.received_entries,
                feed.reference_checkpoints
            )?;
        }
        for c in &self.checks {
            if c.passed + c.failed > 0 {
                writeln!(
                    f,
                    "  {:<22} {:>10} passed {:>8} failed",
                    c.check.name(),
                    c.passed,
                    c.failed
                )?;
            }
        }
        let d = &self.deliveries;
        writeln!(
            f,
            "  deliveries: {} expected, {} delivered, {} late, {} missing, {} not checkable",
            d.expected, d.delivered, d.late, d.missing, d.not_checkable
        )?;
        for x in &self.failures {
            writeln!(f, "FAIL [{}] {}: {}", x.check, x.at, x.message)?;
        }
        if self.failures_not_listed > 0 {
            writeln!(
                f,
                "… and {} more failures (see the counts above)",
                self.failures_not_listed
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warn [{}] {}: {}", w.check, w.at, w.message)?;
        }
        if self.warnings_not_listed > 0 {
            writeln!(f, "… and {} more warnings", self.warnings_not_listed)?;
        }
        Ok(())
    }
}

/// How far the verifier has read, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Index of the bundle being read (in the order given).
    pub bundle: usize,
    /// Records verified so far, all bundles together.
    pub records: u64,
    /// Bytes verified so far, all bundles together.
    pub bytes: u64,
}
