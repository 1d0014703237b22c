//! The verifier: reads one or more bundles and checks everything in them
//! against the auditor's trust anchors, trusting no node.
//!
//! # Steps
//!
//! 1. Read each bundle's header and manifest chain (the first records of
//!    every bundle); merge the chains; accept versions from genesis with
//!    `accept_next` (quorum of the version before); check every signature;
//!    check the trust anchors. This gives the key each member held at each
//!    version.
//! 2. Stream every other record through a pipeline:
//!    ```text
//!    reader thread ──chunks of raw records──▶ N workers ──facts──▶ this thread (in file order)
//!    (framing, SHA-256     (decode, leaf hashes, Ed25519       (compact range and roots,
//!     of the file)          batch per chunk, proof roots)       order, receipts, end record)
//!    ```
//!    At most a few chunks are in flight (a token per chunk), so memory
//!    stays bounded whatever the bundle's size; per segment entry only 64
//!    bytes of facts are kept for the cross-check.
//! 3. Once everything is read: consistency proofs, forks between
//!    checkpoints from different places, which checkpoints are linked,
//!    and the delivery cross-check.

mod chain;
mod finish;
mod record;
mod seq;
mod work;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lienthong_proto::v1::{BundleRecord, bundle_record::Record};
use prost::Message as _;

use crate::FORMAT;
use crate::framing::{Framer, RawRecord};
use crate::keys::{KeyTable, TrustAnchor};
use crate::report::{Check, Progress, REPORT_FORMAT, Report, Verdict};
use chain::ManifestRecord;
use record::Recorder;
use seq::{BundleEndOfFile, BundleState, Seq};

/// One bundle to verify: a name for the report (usually its path) and its
/// bytes.
#[derive(Debug)]
pub struct BundleInput<R> {
    /// How the report refers to it.
    pub name: String,
    /// Its bytes, read once from start to end.
    pub reader: R,
}

impl BundleInput<File> {
    /// Opens a bundle file; its path is its name.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            name: path.display().to_string(),
            reader: File::open(path)?,
        })
    }
}

/// Tuning and tolerances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// A receipt created later than this after its entry is a late
    /// delivery (a warning); a recipient whose feed runs this far past an
    /// entry without a receipt for it did not acknowledge it (a failure).
    /// Default: 1 hour.
    pub late_after: Duration,
    /// How far two members' clocks may disagree; used to decide whether a
    /// receipt could predate a receiver's exported segment. Default: 5
    /// minutes.
    pub clock_skew: Duration,
    /// Threads checking signatures; 0 means one per available core.
    pub threads: usize,
    /// Require a trust anchor to have signed a manifest version (not only
    /// be listed in one): a listed public key can be copied into a forged
    /// chain, a signature cannot. Default: true.
    pub require_anchor_signature: bool,
    /// Failures (and, separately, warnings) listed in the report; the rest
    /// are only counted. Default: 1000.
    pub max_listed: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            late_after: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(300),
            threads: 0,
            require_anchor_signature: true,
            max_listed: 1000,
        }
    }
}

/// Records per chunk handed to a worker, and bytes.
const CHUNK_RECORDS: usize = 2048;
const CHUNK_BYTES: usize = 8 << 20;

/// Verifies `bundles` together (e.g. one exported by each member) against
/// the auditor's `anchors`, calling `progress` as records are verified.
///
/// Never fails: whatever is wrong, including unreadable input, is in the
/// report, and any failure makes the verdict [`Verdict::Fail`].
///
/// ```no_run
/// use lienthong_audit::{BundleInput, TrustAnchor, VerifyOptions, verify};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let anchor: TrustAnchor = "lienthong.example/bac-bo-11/01+4a1b2c3d+AU…".parse()?;
/// let inputs = vec![BundleInput::open("01.bundle".as_ref())?, BundleInput::open("20.bundle".as_ref())?];
/// let report = verify(inputs, &[anchor], &VerifyOptions::default(), &mut |p| {
///     eprint!("\r{} records, {} MB", p.records, p.bytes >> 20);
/// });
/// println!("{report}");
/// std::fs::write("report.json", serde_json::to_vec_pretty(&report)?)?;
/// # Ok(()) }
/// ```
pub fn verify<R: Read + Send>(
    bundles: Vec<BundleInput<R>>,
    anchors: &[TrustAnchor],
    options: &VerifyOptions,
    progress: &mut dyn FnMut(Progress),
) -> Report {
    let names: Vec<String> = bundles.iter().map(|b| b.name.clone()).collect();
    let mut rec = Recorder::new(names, options.max_listed);

    // Step 1: headers and manifest chains.
    let mut states: Vec<BundleState> = Vec::new();
    let mut manifests = Vec::new();
    let mut streams: Vec<Option<(Framer<R>, Option<RawRecord>)>> = Vec::new();
    for (b, input) in bundles.into_iter().enumerate() {
        let (state, stream) = read_front(b, input, &mut rec, &mut manifests);
        states.push(state);
        streams.push(stream);
    }
    let chain = chain::build(
        manifests,
        states.len(),
        anchors,
        options.require_anchor_signature,
        &mut rec,
    );
    let keys = &chain.keys;
    for (b, state) in states.iter_mut().enumerate() {
        let newest = chain.newest_in_bundle[b];
        if !state.summary.format.is_empty() && state.summary.exporter.is_empty() {
            rec.fail(
                Check::Structure,
                rec.at(b, 0, 0),
                "the header names no exporter",
            );
        }
        state.exporter_key = keys.key_at(&state.summary.exporter, newest).ok().copied();
    }
    check_federations(&states, &mut rec, keys);

    // Step 2: everything else, in parallel where it can be.
    let mut seq = Seq::new(keys, rec, states);
    run_pipeline(streams, keys, options, &mut seq, progress);

    // Step 3: what needs everything.
    let (feeds, deliveries) = seq.finish(options);
    let rec = seq.rec;
    Report {
        format: REPORT_FORMAT.into(),
        verdict: if rec.any_failed() {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
        federation: keys.federation().to_owned(),
        manifest_versions: keys.newest(),
        anchors: chain.anchors,
        bundles: seq.bundles.into_iter().map(|s| s.summary).collect(),
        feeds,
        checks: rec.counts(),
        deliveries,
        failures: rec.failures,
        failures_not_listed: rec.failures_not_listed,
        warnings: rec.warnings,
        warnings_not_listed: rec.warnings_not_listed,
    }
}

type Stream<R> = Option<(Framer<R>, Option<RawRecord>)>;

/// Reads a bundle's header and manifest records; returns the stream
/// positioned after them (with the first other record set aside), or
/// `None` if the rest cannot be read.
fn read_front<R: Read>(
    b: usize,
    input: BundleInput<R>,
    rec: &mut Recorder,
    manifests: &mut Vec<ManifestRecord>,
) -> (BundleState, Stream<R>) {
    let mut state = BundleState::new(input.name);
    let mut framer = Framer::new(input.reader);
    let mut first = true;
    loop {
        let raw = match framer.next_record() {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                if first {
                    rec.fail(Check::Structure, rec.at_bundle(b), "the bundle is empty");
                    return (state, None);
                }
                return (state, Some((framer, None)));
            }
            Err(e) => {
                rec.fail(Check::Structure, rec.at_bundle(b), e.to_string());
                state.summary.records = framer.records();
                state.summary.bytes = framer.offset();
                return (state, None);
            }
        };
        let decoded = BundleRecord::decode(raw.bytes.as_slice())
            .ok()
            .and_then(|r| r.record);
        match (first, decoded) {
            (true, Some(Record::Header(h))) => {
                if h.format != FORMAT {
                    rec.fail(
                        Check::Structure,
                        rec.at(b, raw.number, raw.offset),
                        format!(
                            "the bundle's format is {:?}; this verifier reads {FORMAT:?} only: use a verifier for that format",
                            h.format
                        ),
                    );
                    state.summary.format = h.format;
                    return (state, None);
                }
                rec.pass(Check::Structure);
                state.summary.format = h.format;
                state.summary.exporter = h.exporter;
                state.summary.created_unix_ms = h.created_unix_ms;
                state.federation = h.federation;
            }
            (true, _) => {
                rec.fail(
                    Check::Structure,
                    rec.at(b, raw.number, raw.offset),
                    format!("the first record is not a header: this is not a {FORMAT} file"),
                );
                return (state, None);
            }
            (false, Some(Record::Manifest(m))) => manifests.push(ManifestRecord {
                bundle: b,
                record: raw.number,
                offset: raw.offset,
                version: m,
            }),
            (false, _) => return (state, Some((framer, Some(raw)))),
        }
        first = false;
    }
}

fn check_federations(states: &[BundleState], rec: &mut Recorder, keys: &KeyTable) {
    for (b, s) in states.iter().enumerate() {
        if !s.summary.format.is_empty() && s.federation != keys.federation() {
            rec.fail(
                Check::Structure,
                rec.at(b, 0, 0),
                format!(
                    "the header names federation {:?}, but the manifest chain is of {:?}",
                    s.federation,
                    keys.federation()
                ),
            );
        }
    }
}

enum Job {
    Records {
        seq: u64,
        bundle: usize,
        records: Vec<RawRecord>,
    },
    Done {
        seq: u64,
        bundle: usize,
        eof: BundleEndOfFile,
    },
}

enum Done {
    Records {
        seq: u64,
        bundle: usize,
        items: Vec<work::Processed>,
    },
    Eof {
        seq: u64,
        bundle: usize,
        eof: BundleEndOfFile,
    },
}

impl Done {
    fn seq(&self) -> u64 {
        match self {
            Done::Records { seq, .. } | Done::Eof { seq, .. } => *seq,
        }
    }
}

fn run_pipeline<R: Read + Send>(
    streams: Vec<Stream<R>>,
    keys: &KeyTable,
    options: &VerifyOptions,
    seq: &mut Seq<'_>,
    progress: &mut dyn FnMut(Progress),
) {
    let workers = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let in_flight = 3 * workers + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(in_flight);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        // The channel has room for exactly these tokens.
        let _ = token_tx.send(());
    }

    std::thread::scope(|scope| {
        scope.spawn(move || read_all(streams, &job_tx, &token_rx));
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let done = match job {
                        Ok(Job::Records {
                            seq,
                            bundle,
                            records,
                        }) => Done::Records {
                            seq,
                            bundle,
                            items: work::process_chunk(records, keys),
                        },
                        Ok(Job::Done { seq, bundle, eof }) => Done::Eof { seq, bundle, eof },
                        Err(_) => return,
                    };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        // In file order, whatever order the workers finish in.
        let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let (mut records, mut bytes) = (0u64, 0u64);
        for done in done_rx.iter() {
            waiting.insert(done.seq(), done);
            while let Some(done) = waiting.remove(&next) {
                next += 1;
                match done {
                    Done::Records { bundle, items, .. } => {
                        for p in items {
                            records += 1;
                            bytes += p.framed_len;
                            seq.apply(bundle, p);
                        }
                        progress(Progress {
                            bundle,
                            records,
                            bytes,
                        });
                    }
                    Done::Eof { bundle, eof, .. } => seq.bundle_done(bundle, eof),
                }
                let _ = token_tx.send(());
            }
        }
    });
}

/// The reader thread: frames every bundle into chunks, waiting for a token
/// before each so that only a few chunks are ever in memory.
fn read_all<R: Read>(
    streams: Vec<Stream<R>>,
    jobs: &mpsc::SyncSender<Job>,
    tokens: &mpsc::Receiver<()>,
) {
    let mut seq = 0u64;
    let send = |job: Job| -> bool { tokens.recv().is_ok() && jobs.send(job).is_ok() };
    for (bundle, stream) in streams.into_iter().enumerate() {
        let Some((mut framer, first)) = stream else {
            continue;
        };
        let mut chunk: Vec<RawRecord> = first.into_iter().collect();
        let mut chunk_bytes: usize = chunk.iter().map(|r| r.bytes.len()).sum();
        let error = loop {
            match framer.next_record() {
                Ok(Some(raw)) => {
                    chunk_bytes += raw.bytes.len();
                    chunk.push(raw);
                    if chunk.len() >= CHUNK_RECORDS || chunk_bytes >= CHUNK_BYTES {
                        let records = std::mem::take(&mut chunk);
                        chunk_bytes = 0;
                        if !send(Job::Records {
                            seq,
                            bundle,
                            records,
                        }) {
                            return;
                        }
                        seq += 1;
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        if !chunk.is_empty() {
            if !send(Job::Records {
                seq,
                bundle,
                records: chunk,
            }) {
                return;
            }
            seq += 1;
        }
        let (digest, bytes_before_last) = framer.digest_before_last();
        let eof = BundleEndOfFile {
            digest,
            bytes_before_last,
            records: framer.records(),
            bytes: framer.offset(),
            error,
        };
        if !send(Job::Done { seq, bundle, eof }) {
            return;
        }
        seq += 1;
    }
}
