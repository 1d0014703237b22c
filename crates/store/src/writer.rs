//! The single writer of the own feed: group commit, signing, checkpoints.
//! The steps are numbered in the crate documentation.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use lienthong_core::delivery::AcceptedDelivery;
use lienthong_core::entry::{ENTRY_FORMAT, EntryId, VerifiedEntry, sign_entry};
use lienthong_core::proto::entry_body::Payload;
use lienthong_core::proto::{EntryBody, Opening, OpeningSet, Receipt, ReceiptItem};
use lienthong_core::terms::entry_terms;
use lienthong_log::{NoteSigner, OverlayHashStore, TreeHead};
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::keys;
use crate::read::{Verification, encode_record};
use crate::store::{CheckpointRecord, Durable, Store, TreeHashes, read_meta_u64};

/// What the writer signs with.
pub struct FeedSigner {
    /// Member code written as author.
    pub author: String,
    /// The member's entry-signing key in force now.
    pub key: SigningKey,
    /// Signs checkpoints (same key, named by the feed origin).
    pub note_signer: NoteSigner,
}

/// Keys of earlier manifest versions, kept by the writer after a key
/// rotation while the node runs: an entry is signed with the key of its
/// own `manifest_version`, so one decided under the version before the
/// rotation still verifies under that version.
#[derive(Default)]
struct EarlierKeys {
    /// (first version the *next* key is in force from, key before it).
    before: Vec<(u64, SigningKey)>,
}

impl EarlierKeys {
    fn key_for<'a>(&'a self, version: u64, current: &'a SigningKey) -> &'a SigningKey {
        self.before
            .iter()
            .find(|(until, _)| version < *until)
            .map_or(current, |(_, k)| k)
    }
}

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest time between a feed growing and a checkpoint covering it.
    pub checkpoint_interval: Duration,
    /// The same when the feed grew by receipts only, if longer. Receipts
    /// only tell authors that an entry arrived; checkpointing each group
    /// of them at a short `checkpoint_interval` (down to 10 ms, for fast
    /// replication) made every member sign, record, serve and verify up to
    /// a hundred receipt checkpoints a second per author it receives
    /// from (docs/benchmarks.md).
    pub receipt_interval: Duration,
    /// Most submissions in one group commit.
    pub max_batch: usize,
    /// Told about every group that wrote something, once it is durable
    /// and before its submitters are answered (the node's metrics).
    pub on_commit: Option<CommitObserver>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_millis(500),
            receipt_interval: Duration::from_millis(500),
            max_batch: 2048,
            on_commit: None,
        }
    }
}

/// What one group commit took.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    /// Entries written: own ones signed (receipts included) and peers'
    /// ones received. Summed over a writer's groups, the entries it
    /// stored.
    pub entries: usize,
    /// From the writer taking the group to just before its answers are
    /// sent (answering, a look-up per repeated reference, is not in it).
    pub total: Duration,
    /// Of which writing: the batch applied, flushed and fsynced, and the
    /// checkpoint file when the group signed a checkpoint.
    pub write: Duration,
    /// The group signed a checkpoint.
    pub checkpoint: bool,
}

/// A function the writer calls with each group's [`CommitStats`], on the
/// writer's thread: it must be quick.
#[derive(Clone)]
pub struct CommitObserver(pub Arc<dyn Fn(&CommitStats) + Send + Sync>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

/// A new entry to author.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// What the entry says.
    pub payload: Payload,
    /// Members allowed to receive it (the author is added).
    pub audience: Vec<String>,
    /// Manifest version in force.
    pub manifest_version: u64,
    /// Hash of the agreement that decided the audience.
    pub agreement_hash: Vec<u8>,
    /// Idempotency key of the submitting system, if any.
    pub reference: Option<String>,
    /// Handling code decided by the agreement (proto enum `Handling`).
    pub handling: i32,
    /// Response deadline decided by the agreement, hours (0: none).
    pub response_deadline_hours: u32,
    /// Values of the fields withheld in `payload`, and who may see them.
    pub openings: OpeningSet,
}

/// The answer to a submission, sent only once the entry is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Entry id.
    pub id: EntryId,
    /// Feed index.
    pub index: u64,
    /// Local cursor.
    pub cursor: u64,
    /// Creation time written in the entry.
    pub created_unix_ms: i64,
    /// True if the reference was known and this is the first entry for it.
    pub duplicate: bool,
}

type Reply = oneshot::Sender<Result<Appended, StoreError>>;

/// Most entries one receipt acknowledges beyond its first (`Receipt.more`):
/// about 200 KiB of receipt, well inside an envelope.
pub const MAX_RECEIPT_MORE: usize = 4096;

/// What a job asks the writer to do.
enum Work {
    /// Author a new entry in the own feed.
    Author(Box<NewEntry>),
    /// Store a peer's verified entry and write its receipt.
    Receive(Box<Received>),
}

/// A peer's verified entry on its way to the writer.
struct Received {
    delivery: AcceptedDelivery,
    openings: Vec<Opening>,
    /// The receiver's manifest version in force: its receipt is signed
    /// under it.
    manifest_version: u64,
    /// The entry's search terms, worked out by the submitting thread (text
    /// folding is about a tenth of the writer's time during a catch-up,
    /// and the writer is the one thread every entry goes through).
    terms: Vec<lienthong_core::terms::Term>,
}

impl Received {
    fn new(delivery: AcceptedDelivery, openings: Vec<Opening>, manifest_version: u64) -> Self {
        let entry = delivery.entry();
        let terms = index_terms(&entry.id().0, entry.body(), &openings);
        Self {
            delivery,
            openings,
            manifest_version,
            terms,
        }
    }
}

struct Job {
    work: Work,
    reply: Reply,
}

/// A job that will write.
struct Slot {
    work: Work,
    reply: Reply,
    /// The digest it was looked up by in step 2: of its reference (own
    /// entries that have one) or of its id (received entries).
    digest: Option<crate::hashed::Digest>,
}

/// Where a slot's answer comes from.
#[derive(Clone, Copy)]
enum Answer {
    Own(usize),
    Received(usize),
}

/// A new key for the own feed, in force from a manifest version.
type Rekey = (
    u64,
    FeedSigner,
    std::sync::mpsc::Sender<Result<(), StoreError>>,
);

/// What the writer thread is asked, in order.
enum Msg {
    Job(Job),
    Rekey(Box<Rekey>),
}

/// Handle to the writer thread.
pub struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `store`.
    pub fn start(
        store: Store,
        signer: FeedSigner,
        config: WriterConfig,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let state = State::load(store, signer, config)?;
        let thread = std::thread::Builder::new()
            .name("feed-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|source| StoreError::Io {
                action: "start writer thread",
                path: "-".into(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Switches the feed to a new key (a rotation the manifest version
    /// `from_version` brought) without stopping: entries of earlier
    /// manifest versions still queued or still being submitted are signed
    /// with the key of their version; new checkpoints, and the latest one
    /// again, with the new key. Returns once the writer uses it. Blocks
    /// the calling thread briefly (one checkpoint signature and fsync).
    pub fn rekey(&self, from_version: u64, signer: FeedSigner) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Msg::Rekey(Box::new((from_version, signer, reply))))
            .map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    /// Appends an entry; resolves once it is durable.
    pub async fn append(&self, entry: NewEntry) -> Result<Appended, StoreError> {
        self.submit(Work::Author(Box::new(entry))).await
    }

    /// Stores a peer's entry that passed every delivery check, and writes a
    /// signed receipt for it into the own feed in the same atomic write.
    /// Resolves once both are durable; an entry stored before answers with
    /// `duplicate = true` and writes nothing.
    ///
    /// `manifest_version` is the receiver's manifest version in force: the
    /// receipt is signed with the receiver's key of that version.
    pub async fn receive(
        &self,
        delivery: AcceptedDelivery,
        openings: Vec<Opening>,
        manifest_version: u64,
    ) -> Result<Appended, StoreError> {
        self.submit(Work::Receive(Box::new(Received::new(
            delivery,
            openings,
            manifest_version,
        ))))
        .await
    }

    /// Queues a peer's verified entry (as [`Writer::receive`]) without
    /// waiting: entries queued in order are written in order, so a
    /// subscriber can keep many in flight and let them share group
    /// commits. The receiver resolves once the entry is durable.
    /// `openings` must already be checked against the entry's commitments.
    pub fn receive_queued(
        &self,
        delivery: AcceptedDelivery,
        openings: Vec<Opening>,
        manifest_version: u64,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Msg::Job(Job {
                work: Work::Receive(Box::new(Received::new(
                    delivery,
                    openings,
                    manifest_version,
                ))),
                reply,
            }))
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    async fn submit(&self, work: Work) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Msg::Job(Job { work, reply }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting, finishes what is queued, issues a last checkpoint
    /// and joins the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct State {
    store: Store,
    signer: Arc<FeedSigner>,
    earlier: EarlierKeys,
    config: WriterConfig,
    durable: Durable,
    last_created: i64,
    checkpoint_size: u64,
    last_checkpoint: Instant,
    /// The feed holds entries past the last checkpoint other than
    /// receipts.
    uncovered_own: bool,
    /// The last posting block of recently used terms, as committed.
    last_blocks: LastBlocks,
    /// The sweeps of the staged ids and references (`hashed` module).
    id_sweeper: crate::hashed::Sweeper,
    ref_sweeper: crate::hashed::Sweeper,
    /// Every recorded reference (`filter` module).
    filter: crate::filter::Filter,
    /// Groups committed since start, this process: numbers the groups for
    /// the filter's rule.
    groups: u64,
    /// The filter on disk holds the references of every group before this
    /// one.
    filter_covers: u64,
}

/// The last posting block (key, cursors) of terms the writer used
/// recently, as committed: a group finds where each term's cursors go
/// without a reverse scan of sled, which was about 9% of the writer's time
/// at 7,500 alerts/s. Only the writer writes postings while it runs, so an
/// entry cannot go stale; a term is taken out before a group and put back
/// only once the group is durable. Emptied when it holds
/// [`LAST_BLOCKS_MAX`] terms: a block of 512 cursors is 0.5 to 2 KiB, so a
/// few MiB.
type LastBlocks = HashMap<Vec<u8>, crate::postings::Block>;

/// Terms [`LastBlocks`] holds at most.
const LAST_BLOCKS_MAX: usize = 4096;

/// A received entry that could not be looked up fails its whole group:
/// were the author's later entries stored, the replication cursor would
/// pass it, and it would never be asked for again. Returns the error and
/// every reply of the group, for [`State::commit`] to answer.
fn unread(
    err: StoreError,
    reply: Reply,
    slots: Vec<Slot>,
    repeats: Vec<(Reply, usize)>,
    known: Vec<(Reply, u64)>,
    rest: impl Iterator<Item = Job>,
) -> (StoreError, Vec<Reply>) {
    let replies = std::iter::once(reply)
        .chain(slots.into_iter().map(|s| s.reply))
        .chain(repeats.into_iter().map(|(r, _)| r))
        .chain(known.into_iter().map(|(r, _)| r))
        .chain(rest.map(|j| j.reply))
        .collect();
    (err, replies)
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl State {
    fn load(store: Store, signer: FeedSigner, config: WriterConfig) -> Result<Self, StoreError> {
        let durable = store.durable();
        let last_created = match durable.feed_size.checked_sub(1) {
            Some(i) => store
                .get_by_own_index(i)?
                .map_or(0, |e| e.body.created_unix_ms),
            None => 0,
        };
        let latest = store.latest_checkpoint();
        // After a key rotation the newest checkpoint is signed with the
        // retired key, which peers no longer accept: sign the same tree
        // again with the current key before anything is served.
        if let Some(cp) = &latest
            && lienthong_log::verify_checkpoint_with_key(
                cp.note.as_bytes(),
                store.origin(),
                &signer.key.verifying_key(),
            )
            .is_err()
        {
            resign(&store, &signer, cp)?;
        }
        let checkpoint_size = latest.map_or(0, |c| c.size);
        // Values left by the last run are swept again from the start.
        let db = &store.inner.db;
        let id_sweeper = crate::hashed::Sweeper::load(&store.inner.ids_run, db)?;
        let ref_sweeper = crate::hashed::Sweeper::load(&store.inner.refs_run, db)?;
        // The filter on disk, and every reference of a run value on disk:
        // the filter may have been written before they were recorded.
        // Read from disk, not from the store's run in memory, which a
        // writer before this one on the same store may have swept.
        let staged = crate::hashed::Run::load(db, crate::hashed::REFERENCES)?.digests();
        let filter = crate::filter::Filter::open(db, &staged)?;
        debug_assert_eq!(
            read_meta_u64(&store.inner.db, "feed_size")?,
            durable.feed_size
        );
        Ok(Self {
            store,
            signer: Arc::new(signer),
            earlier: EarlierKeys::default(),
            config,
            durable,
            last_created,
            checkpoint_size,
            last_checkpoint: Instant::now(),
            uncovered_own: checkpoint_size < durable.feed_size,
            last_blocks: LastBlocks::new(),
            id_sweeper,
            ref_sweeper,
            filter,
            groups: 0,
            filter_covers: 0,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let wait = if self.checkpoint_size < self.durable.feed_size {
                self.interval(self.uncovered_own)
                    .saturating_sub(self.last_checkpoint.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            // A group is the jobs queued up to the next key rotation, which
            // then applies after them: entries keep the order they came in.
            let mut jobs = Vec::new();
            let mut rekey = None;
            match rx.recv_timeout(wait) {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Rekey(r)) => rekey = Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while rekey.is_none() && jobs.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Job(j)) => jobs.push(j),
                    Ok(Msg::Rekey(r)) => rekey = Some(r),
                    Err(_) => break,
                }
            }
            if let Some(why) = self.store.failure() {
                for j in jobs {
                    let _ = j.reply.send(Err(StoreError::Failed(why.clone())));
                }
                if let Some(r) = rekey {
                    let _ = r.2.send(Err(StoreError::Failed(why)));
                }
                continue;
            }
            let store = self.store.clone();
            let _group = store.between_groups();
            self.commit(jobs, false);
            if let Some(r) = rekey {
                let (from, signer, reply) = *r;
                let _ = reply.send(self.rekey(from, signer));
            }
        }
        // Shutting down, under the lock as every group (a backup still
        // copying must not see this half written): the last entries are
        // covered by a checkpoint, and the newest one is left in the first
        // of its two files, the one earlier releases read.
        if self.store.failure().is_none() {
            let store = self.store.clone();
            let _group = store.between_groups();
            if self.checkpoint_size < self.durable.feed_size {
                self.commit(Vec::new(), true);
            }
            if store.failure().is_none()
                && let Err(e) = store.settle_last_checkpoint()
            {
                tracing::warn!(error = %e, "could not record the newest checkpoint in the first file at shutdown");
            }
        }
        tracing::info!(
            feed_size = self.durable.feed_size,
            checkpoint = self.checkpoint_size,
            "writer stopped"
        );
    }

    /// Takes `signer` as the key in force from manifest version `from`,
    /// keeps the previous one for entries of earlier versions, and signs
    /// the latest checkpoint again with the new key.
    fn rekey(&mut self, from: u64, signer: FeedSigner) -> Result<(), StoreError> {
        let old = std::mem::replace(&mut self.signer, Arc::new(signer));
        let old_key = old.key.clone();
        if old_key.verifying_key() == self.signer.key.verifying_key() {
            return Ok(());
        }
        self.earlier.before.retain(|(until, _)| *until < from);
        self.earlier.before.push((from, old_key));
        if let Some(cp) = self.store.latest_checkpoint() {
            resign(&self.store, &self.signer, &cp)?;
        }
        tracing::info!(
            from_version = from,
            "the feed signs with its new key from now on"
        );
        Ok(())
    }

    /// How long after the last checkpoint the next one is due, `own`
    /// telling whether the feed grew by more than receipts since.
    fn interval(&self, own: bool) -> Duration {
        if own {
            self.config.checkpoint_interval
        } else {
            self.config
                .checkpoint_interval
                .max(self.config.receipt_interval)
        }
    }

    /// Steps 2–8 of the write path for one group.
    fn commit(&mut self, jobs: Vec<Job>, force_checkpoint: bool) {
        match self.try_commit(jobs, force_checkpoint) {
            Ok(()) => {}
            Err((e, replies)) => {
                let why = e.to_string();
                tracing::error!(error = %why, "feed write failed; refusing further writes until restart");
                // The first reason is kept (as `Store::fail` keeps it).
                self.store
                    .inner
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| why.clone());
                for r in replies {
                    let _ = r.send(Err(StoreError::Failed(why.clone())));
                }
            }
        }
    }

    fn try_commit(
        &mut self,
        jobs: Vec<Job>,
        force_checkpoint: bool,
    ) -> Result<(), (StoreError, Vec<Reply>)> {
        let started = Instant::now();
        let db = &self.store.inner.db;
        let salt = &self.store.inner.salt;
        let (ids, refs) = (crate::hashed::IDS, crate::hashed::REFERENCES);
        // Step 2: references already durable or repeated within the group;
        // received entries already stored.
        let mut slots: Vec<Slot> = Vec::with_capacity(jobs.len());
        let mut known: Vec<(Reply, u64)> = Vec::new();
        let mut in_group: HashMap<String, usize> = HashMap::new();
        let mut ids_in_group: HashMap<[u8; 32], usize> = HashMap::new();
        let mut repeats: Vec<(Reply, usize)> = Vec::new();
        // Buckets read by the look-ups, for step 6 to add to without
        // reading them again.
        let mut buckets_read = crate::hashed::BucketsRead::new();
        // Each author's entries stored here: one past the highest index
        // (read once per author per group, advanced in step 5).
        let mut stored_up_to: HashMap<String, u64> = HashMap::new();
        let mut jobs = jobs.into_iter();
        while let Some(Job { work, reply }) = jobs.next() {
            if let Work::Author(e) = &work
                && let Err(err) = self.fits(e)
            {
                let _ = reply.send(Err(err));
                continue;
            }
            // (index, digest, whether it may be stored already).
            let lookup = match &work {
                Work::Author(e) => e
                    .reference
                    .as_ref()
                    .map(|r| (refs, refs.digest(salt, r.as_bytes()), true)),
                Work::Receive(d) => {
                    let entry = d.delivery.entry();
                    let up_to = match stored_up_to.get(entry.author()) {
                        Some(u) => Ok(*u),
                        None => self.store.stored_up_to(entry.author()).inspect(|u| {
                            stored_up_to.insert(entry.author().to_owned(), *u);
                        }),
                    };
                    let up_to = match up_to {
                        Ok(u) => u,
                        Err(e) => return Err(unread(e, reply, slots, repeats, known, jobs)),
                    };
                    // An id hashes a body that names its author and index,
                    // so an entry past every stored index of its author
                    // cannot be stored yet: only replays (a stream that
                    // started again behind one still queued) are looked
                    // up, which spares a random bucket read per entry.
                    // Entries of the own feed are always looked up: `N`
                    // counts only what was received, and the own feed is
                    // written here.
                    let maybe_known = entry.index() < up_to || entry.author() == self.signer.author;
                    Some((ids, ids.digest(salt, &entry.id().0), maybe_known))
                }
            };
            if let Some((index, digest, true)) = &lookup {
                // A key may still be in its run of staged keys, and a
                // reference not in the filter is certainly new.
                let found = match &work {
                    Work::Receive(_) => self.store.inner.ids_run.get(digest),
                    Work::Author(_) => self.store.inner.refs_run.get(digest),
                };
                let unseen = matches!(work, Work::Author(_)) && !self.filter.may_hold(digest);
                let found = match found {
                    Some(c) => Ok(Some(c)),
                    None if unseen => Ok(None),
                    None => index.get_keeping(db, digest, &mut buckets_read),
                };
                match found {
                    Ok(Some(cursor)) => {
                        known.push((reply, cursor));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) if matches!(work, Work::Receive(_)) => {
                        return Err(unread(e, reply, slots, repeats, known, jobs));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
            }
            let earlier = match &work {
                Work::Author(e) => e.reference.as_ref().and_then(|r| in_group.get(r)).copied(),
                Work::Receive(d) => ids_in_group.get(&d.delivery.entry().id().0).copied(),
            };
            if let Some(pos) = earlier {
                repeats.push((reply, pos));
                continue;
            }
            match &work {
                Work::Author(e) => {
                    if let Some(r) = &e.reference {
                        in_group.insert(r.clone(), slots.len());
                    }
                }
                Work::Receive(d) => {
                    ids_in_group.insert(d.delivery.entry().id().0, slots.len());
                }
            }
            slots.push(Slot {
                work,
                reply,
                digest: lookup.map(|(_, d, _)| d),
            });
        }

        // Step 3: indexes, cursors, times. A received entry takes a cursor,
        // and its receipt the next cursor and the next own index.
        let now = now_unix_ms().max(self.last_created);
        let mut bodies: Vec<EntryBody> = Vec::with_capacity(slots.len());
        let mut own_cursors: Vec<u64> = Vec::with_capacity(slots.len());
        // The digest of each own entry's reference, if it has one.
        let mut own_refs: Vec<Option<crate::hashed::Digest>> = Vec::with_capacity(slots.len());
        let mut new_ids = Vec::with_capacity(slots.len() * 2);
        let mut received: Vec<(&Received, u64)> = Vec::new();
        let mut own_openings: Vec<Option<&OpeningSet>> = Vec::with_capacity(slots.len());
        let mut answer_of: Vec<Answer> = Vec::with_capacity(slots.len());
        // (author, manifest version) → its receipt's position in `bodies`.
        let mut open_receipts: HashMap<(String, u64), usize> = HashMap::new();
        let mut cursor = self.durable.next_cursor;
        let own = |payload: Payload,
                   audience: &[String],
                   manifest_version: u64,
                   agreement_hash: Vec<u8>,
                   bodies: &mut Vec<EntryBody>| {
            let mut audience = audience.to_vec();
            audience.push(self.signer.author.clone());
            audience.sort();
            audience.dedup();
            bodies.push(EntryBody {
                format: ENTRY_FORMAT,
                author: self.signer.author.clone(),
                index: self.durable.feed_size + bodies.len() as u64,
                created_unix_ms: now,
                audience,
                manifest_version,
                agreement_hash,
                handling: 0,
                response_deadline_hours: 0,
                payload: Some(payload),
            });
        };
        let authored = slots.iter().any(|s| matches!(s.work, Work::Author(_)));
        for slot in &slots {
            match &slot.work {
                Work::Author(e) => {
                    answer_of.push(Answer::Own(bodies.len()));
                    own(
                        e.payload.clone(),
                        &e.audience,
                        e.manifest_version,
                        e.agreement_hash.clone(),
                        &mut bodies,
                    );
                    if let Some(b) = bodies.last_mut() {
                        b.handling = e.handling;
                        b.response_deadline_hours = e.response_deadline_hours;
                    }
                    own_refs.push(slot.digest);
                    own_openings.push(Some(&e.openings));
                    own_cursors.push(cursor);
                    cursor += 1;
                }
                Work::Receive(d) => {
                    let entry = d.delivery.entry();
                    answer_of.push(Answer::Received(received.len()));
                    received.push((&**d, cursor));
                    // Step 2 worked out every received entry's id digest
                    // (and looked it up where it may be stored already).
                    if let Some(digest) = slot.digest {
                        new_ids.push((digest, cursor));
                    }
                    cursor += 1;
                    // A receipt acknowledges an entry; acknowledging a
                    // receipt would make two members acknowledge each
                    // other's acknowledgements forever.
                    if matches!(entry.body().payload, Some(Payload::Receipt(_))) {
                        continue;
                    }
                    // Further entries of an author already receipted in
                    // this group join that receipt: one signature and one
                    // feed entry for the group, not one per entry.
                    let group_key = (entry.author().to_owned(), d.manifest_version);
                    if let Some(&b) = open_receipts.get(&group_key)
                        && let Some(Payload::Receipt(r)) = bodies[b].payload.as_mut()
                        && r.more.len() < MAX_RECEIPT_MORE
                    {
                        r.more.push(ReceiptItem {
                            index: entry.index(),
                            entry_id: entry.id().0.to_vec(),
                            checkpoint_size: d.delivery.checkpoint().size(),
                        });
                        continue;
                    }
                    open_receipts.insert(group_key, bodies.len());
                    let receipt = Receipt {
                        author: entry.author().to_owned(),
                        index: entry.index(),
                        entry_id: entry.id().0.to_vec(),
                        checkpoint_size: d.delivery.checkpoint().size(),
                        more: Vec::new(),
                    };
                    // The receipt is for the author (and auditors).
                    own(
                        Payload::Receipt(receipt),
                        &[entry.author().to_owned()],
                        d.manifest_version,
                        Vec::new(),
                        &mut bodies,
                    );
                    own_refs.push(None);
                    own_openings.push(None);
                    own_cursors.push(cursor);
                    cursor += 1;
                }
            }
        }
        let replies = |slots: Vec<Slot>, repeats: Vec<(Reply, usize)>| -> Vec<Reply> {
            slots
                .into_iter()
                .map(|s| s.reply)
                .chain(repeats.into_iter().map(|(r, _)| r))
                .collect()
        };

        // Step 4: sign, in parallel for large groups.
        let signed = if self.earlier.before.is_empty() {
            sign_all(bodies, &self.signer.key)
        } else {
            bodies
                .into_iter()
                .map(|b| {
                    let k = self.earlier.key_for(b.manifest_version, &self.signer.key);
                    sign_entry(b, k)
                })
                .collect()
        };

        // Step 5: Merkle hashes and, if due, a checkpoint.
        let base = TreeHashes(db);
        let mut overlay = OverlayHashStore::new(&base);
        let start_size = self.durable.feed_size;
        let mut batch = sled::Batch::default();
        let mut postings: std::collections::BTreeMap<Vec<u8>, Vec<u64>> =
            std::collections::BTreeMap::new();
        let stored_ms = now_unix_ms();
        // The group's stored hashes and feed positions, appended to the
        // packed values after the loop.
        let first_hash = tlog_tiles::tlog::stored_hash_index(0, start_size);
        let mut new_hashes = Vec::with_capacity(64 * signed.len());
        let mut new_positions = Vec::with_capacity(8 * signed.len());
        let mut new_refs = Vec::with_capacity(signed.len());
        let mut new_records = Vec::with_capacity(signed.len() + received.len());
        for (k, e) in signed.iter().enumerate() {
            let index = start_size + k as u64;
            let cursor = own_cursors[k];
            let leaf = lienthong_log::Hash(e.id().0);
            let hashes = match lienthong_log::hashes_to_store(index, leaf, &overlay) {
                Ok(h) => h,
                Err(err) => {
                    drop(overlay);
                    return Err((err.into(), replies(slots, repeats)));
                }
            };
            for (i, h) in hashes {
                debug_assert_eq!(i, first_hash + (new_hashes.len() / 32) as u64);
                overlay.insert(i, h);
                new_hashes.extend_from_slice(&h.0);
            }
            new_records.push(crate::records::Item {
                cursor,
                record: encode_record(Verification::AuthoredHere, stored_ms, e.envelope()),
                proof: Vec::new(),
            });
            new_ids.push((ids.digest(salt, &e.id().0), cursor));
            new_positions.extend_from_slice(&cursor.to_be_bytes());
            if let Some(digest) = own_refs[k] {
                new_refs.push((digest, cursor));
            }
            mark_retraction(&mut batch, e.body(), cursor);
            let openings = own_openings[k].filter(|o| !o.openings.is_empty());
            if let Some(o) = openings {
                batch.insert(
                    &keys::with_u64(keys::OPENINGS, cursor),
                    prost::Message::encode_to_vec(o),
                );
            }
            for t in index_terms(
                &e.id().0,
                e.body(),
                openings.map_or(&[][..], |o| &o.openings),
            ) {
                postings.entry(t.0).or_default().push(cursor);
            }
        }
        let appended = crate::packed::HASHES
            .append(db, &mut batch, first_hash, &new_hashes)
            .and_then(|()| {
                crate::packed::POSITIONS.append(db, &mut batch, start_size, &new_positions)
            });
        if let Err(err) = appended {
            drop(overlay);
            return Err((err, replies(slots, repeats)));
        }
        // Each author's replication cursor: one past the highest index
        // stored, never lowered by an entry received out of order.
        let mut advanced: HashMap<&str, u64> = HashMap::new();
        // Author checkpoints written in this group.
        let mut noted: std::collections::HashSet<(&str, u64)> = Default::default();
        for (r, cursor) in &received {
            let (d, openings) = (&r.delivery, &r.openings);
            let entry = d.entry();
            // What the author showed: its checkpoint (once per size) and
            // the inclusion proof, kept with the record, so this node can
            // prove it later (audit export).
            let cp = d.checkpoint();
            let mut proof = Vec::with_capacity(8 + 32 * d.inclusion_proof().len());
            proof.extend_from_slice(&cp.size().to_be_bytes());
            for h in d.inclusion_proof() {
                proof.extend_from_slice(&h.0);
            }
            if noted.insert((entry.author(), cp.size())) {
                batch.insert(
                    keys::peer_checkpoint(entry.author(), cp.size()),
                    cp.note_text().as_bytes(),
                );
            }
            let c = match advanced.entry(entry.author()) {
                Entry::Occupied(c) => c.into_mut(),
                // One read per author per group.
                Entry::Vacant(v) => match self.store.replication_cursor(entry.author()) {
                    Ok(stored) => v.insert(stored),
                    Err(err) => {
                        drop(overlay);
                        return Err((err, replies(slots, repeats)));
                    }
                },
            };
            *c = (*c).max(entry.index() + 1);
            if let Some(u) = stored_up_to.get_mut(entry.author()) {
                *u = (*u).max(entry.index() + 1);
            }
            if !openings.is_empty() {
                let set = OpeningSet {
                    openings: openings.to_vec(),
                    withheld: Vec::new(),
                };
                batch.insert(
                    &keys::with_u64(keys::OPENINGS, *cursor),
                    prost::Message::encode_to_vec(&set),
                );
            }
            new_records.push(crate::records::Item {
                cursor: *cursor,
                record: encode_record(Verification::Verified, stored_ms, entry.envelope()),
                proof,
            });
            mark_retraction(&mut batch, entry.body(), *cursor);
            for t in &r.terms {
                match postings.get_mut(&t.0) {
                    Some(list) => list.push(*cursor),
                    None => {
                        postings.insert(t.0.clone(), vec![*cursor]);
                    }
                }
            }
        }
        for (author, next) in &advanced {
            batch.insert(
                keys::with_bytes(keys::REPLICATION, author.as_bytes()),
                &next.to_be_bytes(),
            );
            if let Some(u) = stored_up_to.get(*author) {
                batch.insert(
                    keys::with_bytes(keys::STORED_UP_TO, author.as_bytes()),
                    &u.to_be_bytes(),
                );
            }
        }
        // Own entries and received ones interleave: records go in by
        // cursor.
        new_records.sort_unstable_by_key(|i| i.cursor);
        // New ids and references are staged, and the group sweeps the
        // next slice of the buckets of each (`hashed` module); run values
        // a whole turn old go. A reference's run value goes only once the
        // filter on disk holds it (`filter` module): the filter is written
        // in the batch that first removes a value of a group it does not
        // cover yet, about once a turn.
        self.groups += 1;
        let group = self.groups;
        let (ids_run, refs_run) = (&self.store.inner.ids_run, &self.store.inner.refs_run);
        let writes = !signed.is_empty() || !received.is_empty();
        let id_plan = self.id_sweeper.plan(new_ids.len(), ids_run, writes);
        let ref_plan = self.ref_sweeper.plan(new_refs.len(), refs_run, writes);
        let filter_written = self.ref_sweeper.spends_since(&ref_plan, self.filter_covers);
        if filter_written {
            self.filter.write_changed(&mut batch);
        }
        for k in self
            .id_sweeper
            .spent(&id_plan)
            .chain(self.ref_sweeper.spent(&ref_plan))
        {
            batch.remove(&k[..]);
        }
        let first = self.durable.next_cursor;
        let indexed = crate::records::append(db, &mut batch, first, &new_records)
            .and_then(|()| {
                ids_run.add(db, &mut batch, new_ids, first, id_plan.sweep, &buckets_read)
            })
            .and_then(|ids| {
                refs_run
                    .add(
                        db,
                        &mut batch,
                        new_refs,
                        first,
                        ref_plan.sweep,
                        &buckets_read,
                    )
                    .map(|refs| (ids, refs))
            });
        let (id_staging, ref_staging) = match indexed {
            Ok(staging) => staging,
            Err(err) => {
                drop(overlay);
                return Err((err, replies(slots, repeats)));
            }
        };
        // Postings go in blocks of up to 512 cursors keyed by their first
        // cursor (`postings::add`): far fewer keys than one per (term,
        // entry), which was most of the writer's time, or one per (term,
        // group), which was most of the keys of a node taking alerts one
        // at a time.
        let mut new_last_blocks = Vec::new();
        for (term, mut list) in postings {
            // Own entries and received ones interleave: sort each block.
            list.sort_unstable();
            let known = self.last_blocks.remove(&term);
            match crate::postings::add(db, &mut batch, &term, &list, known) {
                Ok(last) => new_last_blocks.push((term, last)),
                Err(err) => {
                    drop(overlay);
                    return Err((err, replies(slots, repeats)));
                }
            }
        }
        let new = Durable {
            feed_size: start_size + signed.len() as u64,
            next_cursor: cursor,
        };
        batch.insert(keys::meta("feed_size"), &new.feed_size.to_be_bytes());
        batch.insert(keys::meta("next_cursor"), &new.next_cursor.to_be_bytes());

        let own_uncovered = self.uncovered_own || authored;
        let due = new.feed_size > self.checkpoint_size
            && (force_checkpoint || self.last_checkpoint.elapsed() >= self.interval(own_uncovered));
        let checkpoint = if due {
            match self.sign_checkpoint(new.feed_size, &overlay) {
                Ok(cp) => {
                    batch.insert(
                        &keys::with_u64(keys::CHECKPOINT, cp.size),
                        cp.note.as_bytes(),
                    );
                    Some(cp)
                }
                Err(err) => {
                    drop(overlay);
                    return Err((err, replies(slots, repeats)));
                }
            }
        } else {
            None
        };
        drop(overlay);

        if signed.is_empty() && received.is_empty() && checkpoint.is_none() {
            drop(received);
            self.answer_known(known, repeats, &[]);
            return Ok(());
        }

        // Steps 6–7: one atomic batch, flush, fsync.
        let write_started = Instant::now();
        let written = db
            .apply_batch(batch)
            .map_err(StoreError::from)
            .and_then(|()| self.store.sync())
            .and_then(|()| match &checkpoint {
                Some(cp) => self.store.record_checkpoint(&cp.note),
                None => Ok(()),
            });
        if let Err(err) = written {
            drop(received);
            return Err((err, replies(slots, repeats)));
        }
        let write = write_started.elapsed();
        let checkpointed = checkpoint.is_some();

        // Step 8: publish, then answer.
        if self.last_blocks.len() + new_last_blocks.len() > LAST_BLOCKS_MAX {
            self.last_blocks.clear();
        }
        // Terms longer than a key holds (`keys::term_prefix` cuts them, so
        // two of them may share blocks) are read again when needed rather
        // than kept, and so is whatever would exceed the bound.
        for (term, last) in new_last_blocks {
            if let Some(l) = last
                && l.size() <= 16 * crate::postings::BLOCK_CURSORS
                && term.len() < usize::from(u16::MAX)
                && self.last_blocks.len() < LAST_BLOCKS_MAX
            {
                self.last_blocks.insert(term, l);
            }
        }
        self.durable = new;
        self.last_created = now;
        ids_run.update(&id_staging);
        self.id_sweeper.done(&id_plan, &id_staging, group);
        refs_run.update(&ref_staging);
        self.ref_sweeper.done(&ref_plan, &ref_staging, group);
        if filter_written {
            self.filter.written();
            self.filter_covers = group;
        }
        // Every new reference is staged (`hashed::REFERENCES`), so the
        // staged ones are all of them.
        for (d, _) in &ref_staging.staged {
            self.filter.insert(d);
        }
        self.uncovered_own = own_uncovered && checkpoint.is_none();
        if let Some(cp) = checkpoint {
            self.checkpoint_size = cp.size;
            self.last_checkpoint = Instant::now();
            *self
                .store
                .inner
                .checkpoint
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cp));
        }
        self.store.inner.durable.send_replace(new);

        let answers: Vec<Appended> = answer_of
            .iter()
            .map(|a| match *a {
                Answer::Own(k) => Appended {
                    id: signed[k].id(),
                    index: signed[k].index(),
                    cursor: own_cursors[k],
                    created_unix_ms: now,
                    duplicate: false,
                },
                Answer::Received(j) => {
                    let (r, c) = received[j];
                    let e = r.delivery.entry();
                    Appended {
                        id: e.id(),
                        index: e.index(),
                        cursor: c,
                        created_unix_ms: e.body().created_unix_ms,
                        duplicate: false,
                    }
                }
            })
            .collect();
        if let Some(CommitObserver(observe)) = &self.config.on_commit {
            observe(&CommitStats {
                entries: signed.len() + received.len(),
                total: started.elapsed(),
                write,
                checkpoint: checkpointed,
            });
        }
        drop(received);
        self.answer_known(known, repeats, &answers);
        for (slot, a) in slots.into_iter().zip(answers) {
            let _ = slot.reply.send(Ok(a));
        }
        Ok(())
    }

    /// Refuses an own entry whose envelope could exceed what every reader
    /// accepts: signed and stored, it could never be read or delivered,
    /// and each peer's stream would stop at its index. The bound takes the
    /// largest index and time the writer could give it.
    fn fits(&self, e: &NewEntry) -> Result<(), StoreError> {
        use prost::Message;
        let mut audience = e.audience.clone();
        audience.push(self.signer.author.clone());
        let rest = EntryBody {
            format: ENTRY_FORMAT,
            author: self.signer.author.clone(),
            index: u64::MAX,
            created_unix_ms: i64::MIN,
            audience,
            manifest_version: e.manifest_version,
            agreement_hash: e.agreement_hash.clone(),
            handling: e.handling,
            response_deadline_hours: e.response_deadline_hours,
            payload: None,
        };
        let body = rest.encoded_len() + e.payload.encoded_len();
        // The envelope: the body as field 1, the 64-byte signature as field 2.
        let bytes = 1 + prost::length_delimiter_len(body) + body + 2 + 64;
        let limit = lienthong_core::entry::MAX_ENVELOPE_BYTES;
        if bytes > limit {
            return Err(StoreError::TooLarge { bytes, limit });
        }
        Ok(())
    }

    fn answer_known(
        &self,
        known: Vec<(Reply, u64)>,
        repeats: Vec<(Reply, usize)>,
        answers: &[Appended],
    ) {
        for (reply, cursor) in known {
            let _ = reply.send(self.appended_at(cursor));
        }
        for (reply, pos) in repeats {
            let a = answers.get(pos).cloned().map(|a| Appended {
                duplicate: true,
                ..a
            });
            let _ = reply.send(a.ok_or(StoreError::Closed));
        }
    }

    fn appended_at(&self, cursor: u64) -> Result<Appended, StoreError> {
        let e = self
            .store
            .get_by_cursor(cursor)?
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("reference target cursor {cursor}"),
                detail: "missing".into(),
            })?;
        Ok(Appended {
            id: e.id,
            index: e.body.index,
            cursor,
            created_unix_ms: e.body.created_unix_ms,
            duplicate: true,
        })
    }

    fn sign_checkpoint(
        &self,
        size: u64,
        hashes: &impl lienthong_log::HashStore,
    ) -> Result<CheckpointRecord, StoreError> {
        let root = lienthong_log::tree_root(size, hashes)?;
        let head = TreeHead {
            origin: self.store.origin().to_owned(),
            size,
            root,
        };
        let note = lienthong_log::sign_checkpoint(&head, &self.signer.note_signer)?;
        Ok(CheckpointRecord {
            note,
            size,
            root: root.0,
        })
    }
}

/// Signs the tree of `cp` with the current key, keeping the note signed
/// with the retired key beside it (prefix `CHECKPOINT_RETIRED`) for audit.
fn resign(store: &Store, signer: &FeedSigner, cp: &CheckpointRecord) -> Result<(), StoreError> {
    let head = TreeHead {
        origin: store.origin().to_owned(),
        size: cp.size,
        root: lienthong_log::Hash(cp.root),
    };
    let note = lienthong_log::sign_checkpoint(&head, &signer.note_signer)?;
    let mut batch = sled::Batch::default();
    batch.insert(
        &keys::with_u64(keys::CHECKPOINT_RETIRED, cp.size),
        cp.note.as_bytes(),
    );
    batch.insert(&keys::with_u64(keys::CHECKPOINT, cp.size), note.as_bytes());
    store.inner.db.apply_batch(batch)?;
    store.sync()?;
    store.record_checkpoint(&note)?;
    tracing::info!(
        size = cp.size,
        "signed the latest checkpoint again with the new key"
    );
    *store
        .inner
        .checkpoint
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(CheckpointRecord {
        note,
        size: cp.size,
        root: cp.root,
    }));
    Ok(())
}

/// Marks the target of a retraction, in the same batch as the retraction
/// itself. Readers honour the mark only if the retraction's author wrote
/// the target, so a member cannot hide another's entry.
pub(crate) fn mark_retraction(batch: &mut sled::Batch, body: &EntryBody, cursor: u64) {
    if let Some(Payload::Retraction(r)) = &body.payload
        && r.target.len() == 32
    {
        batch.insert(keys::retracted(&r.target, cursor), &[][..]);
    }
}

/// Search terms of an entry as this node sees it: with the values of the
/// withheld fields it may see.
pub(crate) fn index_terms(
    id: &[u8; 32],
    body: &EntryBody,
    openings: &[Opening],
) -> Vec<lienthong_core::terms::Term> {
    match (&body.payload, openings.is_empty()) {
        (Some(Payload::Alert(a)), false) => {
            let mut b = body.clone();
            b.payload = Some(Payload::Alert(lienthong_core::redaction::reveal(
                a, openings,
            )));
            entry_terms(id, &b)
        }
        _ => entry_terms(id, body),
    }
}

/// Signs bodies in order; splits large groups across two threads (the
/// machine size this is tuned for), keeping the order.
fn sign_all(bodies: Vec<EntryBody>, key: &SigningKey) -> Vec<VerifiedEntry> {
    const PARALLEL_FROM: usize = 64;
    if bodies.len() < PARALLEL_FROM {
        return bodies.into_iter().map(|b| sign_entry(b, key)).collect();
    }
    let mut bodies = bodies;
    let second = bodies.split_off(bodies.len() / 2);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            second
                .into_iter()
                .map(|b| sign_entry(b, key))
                .collect::<Vec<_>>()
        });
        let mut first: Vec<VerifiedEntry> =
            bodies.into_iter().map(|b| sign_entry(b, key)).collect();
        match h.join() {
            Ok(rest) => first.extend(rest),
            Err(p) => std::panic::resume_unwind(p),
        }
        first
    })
}
