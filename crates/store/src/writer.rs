//! The single writer of the own feed: group commit, signing, checkpoints.
//! The steps are numbered in the crate documentation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use lienthong_core::entry::{ENTRY_FORMAT, EntryId, VerifiedEntry, sign_entry};
use lienthong_core::proto::EntryBody;
use lienthong_core::proto::entry_body::Payload;
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
    /// The member's entry-signing key.
    pub key: SigningKey,
    /// Signs checkpoints (same key, named by the feed origin).
    pub note_signer: NoteSigner,
}

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest time between a feed growing and a checkpoint covering it.
    pub checkpoint_interval: Duration,
    /// Most submissions in one group commit.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_millis(500),
            max_batch: 2048,
        }
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

struct Job {
    entry: NewEntry,
    reply: Reply,
}

/// Handle to the writer thread.
pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
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

    /// Appends an entry; resolves once it is durable.
    pub async fn append(&self, entry: NewEntry) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Job { entry, reply })
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
    config: WriterConfig,
    durable: Durable,
    last_created: i64,
    checkpoint_size: u64,
    last_checkpoint: Instant,
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
        let checkpoint_size = store.latest_checkpoint().map_or(0, |c| c.size);
        debug_assert_eq!(
            read_meta_u64(&store.inner.db, "feed_size")?,
            durable.feed_size
        );
        Ok(Self {
            store,
            signer: Arc::new(signer),
            config,
            durable,
            last_created,
            checkpoint_size,
            last_checkpoint: Instant::now(),
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let wait = if self.checkpoint_size < self.durable.feed_size {
                self.config
                    .checkpoint_interval
                    .saturating_sub(self.last_checkpoint.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let mut jobs = match rx.recv_timeout(wait) {
                Ok(j) => vec![j],
                Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            while jobs.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            if let Some(why) = self.store.failure() {
                for j in jobs {
                    let _ = j.reply.send(Err(StoreError::Failed(why.clone())));
                }
                continue;
            }
            self.commit(jobs, false);
        }
        // Shutting down: make sure the last entries are covered.
        if self.store.failure().is_none() && self.checkpoint_size < self.durable.feed_size {
            self.commit(Vec::new(), true);
        }
    }

    /// Steps 2–8 of the write path for one group.
    fn commit(&mut self, jobs: Vec<Job>, force_checkpoint: bool) {
        match self.try_commit(jobs, force_checkpoint) {
            Ok(()) => {}
            Err((e, replies)) => {
                let why = e.to_string();
                tracing::error!(error = %why, "feed write failed; refusing further writes until restart");
                *self
                    .store
                    .inner
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                for r in replies {
                    let _ = r.send(Err(StoreError::Failed(why.clone())));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_commit(
        &mut self,
        jobs: Vec<Job>,
        force_checkpoint: bool,
    ) -> Result<(), (StoreError, Vec<Reply>)> {
        let db = &self.store.inner.db;
        // Step 2: references already durable or repeated within the group.
        let mut fresh: Vec<(NewEntry, Reply)> = Vec::with_capacity(jobs.len());
        let mut known: Vec<(Reply, u64)> = Vec::new();
        let mut in_group: HashMap<String, usize> = HashMap::new();
        let mut repeats: Vec<(Reply, usize)> = Vec::new();
        for Job { entry, reply } in jobs {
            if let Some(r) = &entry.reference {
                match db.get(keys::with_bytes(keys::REFERENCE, r.as_bytes())) {
                    Ok(Some(v)) => {
                        known.push((reply, keys::tail_u64(&v).unwrap_or(u64::MAX)));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        continue;
                    }
                }
                if let Some(&pos) = in_group.get(r) {
                    repeats.push((reply, pos));
                    continue;
                }
                in_group.insert(r.clone(), fresh.len());
            }
            fresh.push((entry, reply));
        }

        // Step 3: indexes, cursors, times.
        let now = now_unix_ms().max(self.last_created);
        let bodies: Vec<EntryBody> = fresh
            .iter()
            .enumerate()
            .map(|(k, (e, _))| {
                let mut audience = e.audience.clone();
                audience.push(self.signer.author.clone());
                audience.sort();
                audience.dedup();
                EntryBody {
                    format: ENTRY_FORMAT,
                    author: self.signer.author.clone(),
                    index: self.durable.feed_size + k as u64,
                    created_unix_ms: now,
                    audience,
                    manifest_version: e.manifest_version,
                    agreement_hash: e.agreement_hash.clone(),
                    payload: Some(e.payload.clone()),
                }
            })
            .collect();

        // Step 4: sign, in parallel for large groups.
        let signed = sign_all(bodies, &self.signer.key);

        // Step 5: Merkle hashes and, if due, a checkpoint.
        let base = TreeHashes(db);
        let mut overlay = OverlayHashStore::new(&base);
        let start_size = self.durable.feed_size;
        let mut batch = sled::Batch::default();
        let mut postings: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
            std::collections::BTreeMap::new();
        let stored_ms = now_unix_ms();
        for (k, e) in signed.iter().enumerate() {
            let index = start_size + k as u64;
            let cursor = self.durable.next_cursor + k as u64;
            let leaf = lienthong_log::Hash(e.id().0);
            let hashes = match lienthong_log::hashes_to_store(index, leaf, &overlay) {
                Ok(h) => h,
                Err(err) => return Err((err.into(), fresh.into_iter().map(|(_, r)| r).collect())),
            };
            for (i, h) in hashes {
                overlay.insert(i, h);
                batch.insert(&keys::with_u64(keys::HASH, i), &h.0);
            }
            batch.insert(
                &keys::with_u64(keys::ENTRY, cursor),
                encode_record(Verification::AuthoredHere, stored_ms, e.envelope()),
            );
            batch.insert(keys::with_bytes(keys::ID, &e.id().0), &cursor.to_be_bytes());
            batch.insert(&keys::with_u64(keys::FEED, index), &cursor.to_be_bytes());
            if let Some(r) = &fresh[k].0.reference {
                batch.insert(
                    keys::with_bytes(keys::REFERENCE, r.as_bytes()),
                    &cursor.to_be_bytes(),
                );
            }
            for t in entry_terms(e.body()) {
                postings
                    .entry(t.0)
                    .or_default()
                    .extend_from_slice(&cursor.to_be_bytes());
            }
        }
        // One posting block per term per group, keyed by its first cursor:
        // far fewer keys than one per (term, entry), which was most of the
        // writer's time.
        for (term, cursors) in postings {
            let first = u64::from_be_bytes(cursors[..8].try_into().unwrap_or_default());
            batch.insert(keys::posting(&term, first), cursors);
        }
        let new = Durable {
            feed_size: start_size + signed.len() as u64,
            next_cursor: self.durable.next_cursor + signed.len() as u64,
        };
        batch.insert(keys::meta("feed_size"), &new.feed_size.to_be_bytes());
        batch.insert(keys::meta("next_cursor"), &new.next_cursor.to_be_bytes());

        let due = new.feed_size > self.checkpoint_size
            && (force_checkpoint
                || self.last_checkpoint.elapsed() >= self.config.checkpoint_interval);
        let checkpoint = if due {
            match self.sign_checkpoint(new.feed_size, &overlay) {
                Ok(cp) => {
                    batch.insert(
                        &keys::with_u64(keys::CHECKPOINT, cp.size),
                        cp.note.as_bytes(),
                    );
                    Some(cp)
                }
                Err(err) => return Err((err, fresh.into_iter().map(|(_, r)| r).collect())),
            }
        } else {
            None
        };
        drop(overlay);

        if signed.is_empty() && checkpoint.is_none() {
            self.answer_known(known, repeats, &[]);
            return Ok(());
        }

        // Steps 6–7: one atomic batch, flush, fsync.
        let written = db
            .apply_batch(batch)
            .map_err(StoreError::from)
            .and_then(|()| self.store.sync());
        if let Err(err) = written {
            let mut replies: Vec<Reply> = fresh.into_iter().map(|(_, r)| r).collect();
            replies.extend(repeats.into_iter().map(|(r, _)| r));
            return Err((err, replies));
        }

        // Step 8: publish, then answer.
        self.durable = new;
        self.last_created = now;
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

        let answers: Vec<Appended> = signed
            .iter()
            .enumerate()
            .map(|(k, e)| Appended {
                id: e.id(),
                index: e.index(),
                cursor: new.next_cursor - signed.len() as u64 + k as u64,
                created_unix_ms: e.body().created_unix_ms,
                duplicate: false,
            })
            .collect();
        self.answer_known(known, repeats, &answers);
        for ((_, reply), a) in fresh.into_iter().zip(answers) {
            let _ = reply.send(Ok(a));
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
