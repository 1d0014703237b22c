use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::VerifyingKey;
use lienthong_core::entry::EntryId;
use lienthong_log::{Hash, HashStore, LogError};
use tokio::sync::watch;

use crate::STORE_FORMAT;
use crate::error::StoreError;
use crate::keys;

/// How far the store is durable. Readers never see anything at or beyond
/// these positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Entries in this member's own feed that are on disk.
    pub feed_size: u64,
    /// One past the highest cursor that is on disk.
    pub next_cursor: u64,
}

/// A signed checkpoint of the own feed, as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// The signed note text.
    pub note: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: [u8; 32],
}

/// What to open and what it must belong to.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Directory of the sled database.
    pub dir: PathBuf,
    /// Member code the store must belong to.
    pub member: String,
    /// Checkpoint origin (and signed-note key name) of the member's feed.
    pub origin: String,
    /// Every key the member has held (manifest chain), newest first: the
    /// last checkpoint on open must verify under one of them, since it may
    /// predate a key rotation.
    pub verifying_keys: Vec<VerifyingKey>,
    /// Bytes sled may keep in its page cache (its own default, 1 GiB, is
    /// most of a node's memory on a large feed).
    pub cache_bytes: u64,
}

/// sled's page cache when the configuration does not say. sled holds
/// more than this (its accounting counts a page at its size on disk, and
/// evicts only every 64 accesses of a shard): after taking 200,000 entries
/// a node used 50 MiB with 8 MiB here and 70 MiB with 32. At a million
/// entries 8 MiB costs some 5% of catch-up and 3–11% of the fill rate
/// (docs/benchmarks.md); a node that needs that sets `store.cache_mb`.
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Handle to the store; cheap to clone, shared by readers and the writer.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) dir: PathBuf,
    data_file: File,
    pub(crate) durable: watch::Sender<Durable>,
    pub(crate) checkpoint: RwLock<Option<Arc<CheckpointRecord>>>,
    pub(crate) failed: Mutex<Option<String>>,
    pub(crate) origin: String,
    pub(crate) member: String,
    /// The salt of the id and reference digests (`hashed` module).
    pub(crate) salt: crate::hashed::Salt,
    /// Ids staged for their buckets, by digest (`hashed` module).
    pub(crate) ids_run: crate::hashed::Run,
    /// References staged for their buckets, likewise.
    pub(crate) refs_run: crate::hashed::Run,
    /// Held by the writer while it commits a group, and by a backup while
    /// it copies: a backup sees the store between two groups, never inside
    /// one.
    commit_lock: Mutex<()>,
    /// Which of the `last` module's two files records the next
    /// checkpoint; held while it is written.
    last_slot: Mutex<usize>,
    /// Held while a piece of evidence takes the next id and is written:
    /// subscribers, gossip and witness calls keep evidence concurrently.
    pub(crate) evidence_lock: Mutex<()>,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Own feed size in the copy.
    pub feed_size: u64,
    /// Size of the newest signed checkpoint in the copy.
    pub checkpoint_size: u64,
    /// Records copied.
    pub records: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
}

/// How many of the newest entries are re-hashed on open.
const TAIL_CHECK: u64 = 256;

impl Store {
    /// Opens (creating if needed) the store, checks that it belongs to the
    /// configured member, and verifies the feed against the last checkpoint
    /// this node signed. On a mismatch it refuses to open and says why.
    pub fn open(opts: &OpenOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&opts.dir).map_err(io("create directory", &opts.dir))?;
        let db = sled::Config::new()
            .path(&opts.dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(opts.cache_bytes)
            .open()?;
        let data_path = opts.dir.join("db");
        let data_file = File::open(&data_path).map_err(io("open", &data_path))?;
        let mismatch = |problem: String| StoreError::Mismatch {
            dir: opts.dir.clone(),
            problem,
        };

        let mut fresh = false;
        let format = match db.get(keys::meta("format"))? {
            None => {
                fresh = true;
                if db.scan_prefix([keys::ENTRY]).next().is_some()
                    || db.scan_prefix([keys::RECORDS]).next().is_some()
                {
                    return Err(mismatch(
                        "has entries but no format marker; it was not written by lienthong".into(),
                    ));
                }
                db.insert(keys::meta("format"), &STORE_FORMAT.to_be_bytes())?;
                db.insert(keys::meta("member"), opts.member.as_bytes())?;
                db.insert(keys::meta("origin"), opts.origin.as_bytes())?;
                crate::reindex::mark_current(&db)?;
                STORE_FORMAT
            }
            Some(v) => {
                let format = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| mismatch("has an unreadable format marker".into()))?,
                );
                if format == 0 || format > STORE_FORMAT {
                    return Err(mismatch(format!(
                        "has layout version {format}; this lienthong reads versions 1 to {STORE_FORMAT}: use the matching release"
                    )));
                }
                let member = db
                    .get(keys::meta("member"))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                if member != opts.member {
                    return Err(mismatch(format!(
                        "belongs to member {member:?} but the config says {:?}: point store.dir at this member's own store",
                        opts.member
                    )));
                }
                let origin = db
                    .get(keys::meta("origin"))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                if origin != opts.origin {
                    return Err(mismatch(format!(
                        "holds the feed {origin:?} but the config names {:?}: the federation name must not change for an existing feed",
                        opts.origin
                    )));
                }
                format
            }
        };
        // Made once, when the store is created or first upgraded to
        // buckets (layout 3); written before anything is bucketed under
        // it. A bucketed store without one is refused, never given a new
        // one that would make every recorded id unfindable.
        let salt = crate::hashed::salt(&db, format < 3 || fresh)?;
        // The ids and references staged for their buckets (`hashed`
        // module); an older layout has none.
        let ids_run = crate::hashed::Run::load(&db, crate::hashed::IDS)?;
        let refs_run = crate::hashed::Run::load(&db, crate::hashed::REFERENCES)?;
        let durable = Durable {
            feed_size: read_meta_u64(&db, "feed_size")?,
            next_cursor: read_meta_u64(&db, "next_cursor")?,
        };
        let store = Store {
            inner: Arc::new(Inner {
                db,
                dir: opts.dir.clone(),
                data_file,
                durable: watch::Sender::new(durable),
                checkpoint: RwLock::new(None),
                failed: Mutex::new(None),
                origin: opts.origin.clone(),
                member: opts.member.clone(),
                salt,
                ids_run,
                refs_run,
                commit_lock: Mutex::new(()),
                last_slot: Mutex::new(0),
                evidence_lock: Mutex::new(()),
            }),
        };
        // A store of an older release's layout is packed before anything
        // reads it, and marked as upgraded only once it passes the checks.
        if format == 1 {
            crate::upgrade::pack_layout_1(&store.inner.db, durable.feed_size, || store.sync())?;
        }
        if format < 3 {
            crate::upgrade::bucket_layout_2(&store.inner.db, &salt, || store.sync())?;
            crate::upgrade::repost_layout_2(&store.inner.db, || store.sync())?;
        }
        if format < 4 {
            crate::upgrade::pack_records_layout_3(&store.inner.db, durable.next_cursor, || {
                store.sync()
            })?;
        }
        if format < 5 {
            crate::upgrade::count_stored_up_to(&store.inner.db, || store.sync())?;
        }
        if format < 6 {
            crate::upgrade::filter_references(&store.inner.db, || store.sync())?;
        }
        store.sync()?;
        let cp = store.check_integrity(&opts.verifying_keys)?;
        store.check_last_checkpoint(&opts.verifying_keys, cp.as_ref())?;
        crate::upgrade::finish(&store.inner.db, format, || store.sync())?;
        // Indexes built by another release are rebuilt before serving.
        crate::reindex::reindex_if_needed(&store.inner.db)?;
        *store
            .inner
            .checkpoint
            .write()
            .unwrap_or_else(|e| e.into_inner()) = cp.map(Arc::new);
        Ok(store)
    }

    /// [`Store::open`] for a store this process has just closed (a backup
    /// copy it checks): sled's own threads may hold the file lock for a
    /// moment after the last handle is dropped, so a lock conflict is
    /// retried for up to `wait`.
    pub fn reopen(opts: &OpenOptions, wait: std::time::Duration) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Self::open(opts) {
                Err(e) if e.is_lock_conflict() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn check_integrity(
        &self,
        keys: &[VerifyingKey],
    ) -> Result<Option<CheckpointRecord>, StoreError> {
        let db = &self.inner.db;
        let size = self.durable().feed_size;
        let recover = "the store is damaged or was restored from an older copy. Do not serve from it: \
            move it aside, restore the newest backup, start the node again and check the \
            feed with `lienthong feed verify`";

        // The newest entries must hash to the stored leaves.
        let mut positions = crate::packed::POSITIONS.reader(db);
        let mut records = crate::records::Reader::new(db);
        for index in size.saturating_sub(TAIL_CHECK)..size {
            let cursor = positions.get_u64(index)?.ok_or_else(|| {
                StoreError::Integrity(format!(
                    "feed index {index} is missing but the feed has {size} entries: {recover}"
                ))
            })?;
            let record = records.get(cursor)?.ok_or_else(|| {
                StoreError::Integrity(format!(
                    "entry at cursor {cursor} (feed index {index}) is missing: {recover}"
                ))
            })?;
            let envelope = crate::read::record_envelope(&record).ok_or_else(|| {
                StoreError::Integrity(format!("entry at cursor {cursor} is unreadable: {recover}"))
            })?;
            let leaf =
                TreeHashes(db).read_hashes(&[tlog_tiles::tlog::stored_hash_index(0, index)])?;
            let id = EntryId::of_envelope(envelope);
            if leaf[0].0 != id.0 {
                return Err(StoreError::Integrity(format!(
                    "entry at feed index {index} does not hash to its Merkle leaf: {recover}"
                )));
            }
            let found = self.id_cursor(&id)?;
            if found != Some(cursor) {
                return Err(StoreError::Integrity(format!(
                    "the id index finds {found:?} for the entry at feed index {index}, not cursor \
                     {cursor}: {recover}"
                )));
            }
        }

        // Received entries come after the last own one too: the records
        // must reach the durable next cursor.
        let next = self.durable().next_cursor;
        if next > 0 && records.get(next - 1)?.is_none() {
            return Err(StoreError::Integrity(format!(
                "the store counts {next} entries but the record of the newest, at cursor {}, is \
                 missing: {recover}",
                next - 1
            )));
        }

        let Some((_, note)) = db.scan_prefix([keys::CHECKPOINT]).next_back().transpose()? else {
            if size > 0 {
                tracing::warn!(
                    size,
                    "feed has entries but no checkpoint yet; one will be issued"
                );
            }
            return Ok(None);
        };
        let cp = crate::last::signed_by_any(&note, &self.inner.origin, keys)
            .ok_or_else(|| {
                StoreError::Integrity(format!("the last checkpoint in the store does not verify with this member's key{} in the manifest; the key file or the store belongs to another node", if keys.len() > 1 { "s" } else { "" }))
            })?;
        if cp.size() > size {
            return Err(StoreError::Integrity(format!(
                "this node already signed a checkpoint of size {} but the feed on disk has only {size} entries: {recover}",
                cp.size()
            )));
        }
        let root = lienthong_log::tree_root(cp.size(), &TreeHashes(db))?;
        if root != cp.root() {
            return Err(StoreError::Integrity(format!(
                "the feed's Merkle root at size {} is {} but this node signed {}: {recover}",
                cp.size(),
                hex(&root.0),
                hex(&cp.root().0)
            )));
        }
        Ok(Some(CheckpointRecord {
            note: String::from_utf8_lossy(&note).into_owned(),
            size: cp.size(),
            root: cp.root().0,
        }))
    }

    /// Records the newest signed checkpoint beside the database (`last`
    /// module), once sled holds it durably, and before the checkpoint is
    /// published. Written once per checkpoint (2 a second at the default
    /// `checkpoint.interval_ms`, at most 100 at its lowest): one write in
    /// place and one `fdatasync`. Writing it from a thread of its own
    /// published checkpoints about 2 ms sooner, but then a peer could hold
    /// a checkpoint the file did not yet record (docs/benchmarks.md,
    /// seventh session); it stays on the writer's path.
    pub(crate) fn record_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.record_in(&mut self.last_slot(), note)
    }

    /// Writes `note` to the file `slot` names, then names the other one.
    fn record_in(&self, slot: &mut usize, note: &str) -> Result<(), StoreError> {
        crate::last::write(&self.inner.dir, *slot, note)?;
        *slot = 1 - *slot;
        Ok(())
    }

    /// The file the next checkpoint goes to (`Inner::last_slot`), held.
    fn last_slot(&self) -> std::sync::MutexGuard<'_, usize> {
        self.inner
            .last_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Holds off the writer's next group, or waits for the current one to
    /// end (`Inner::commit_lock`).
    pub(crate) fn between_groups(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .commit_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// At a clean shutdown: records the newest checkpoint in the first of
    /// the two files too, when it is only in the second, so that an
    /// earlier release, which reads the first only, sees it (the `last`
    /// module).
    pub(crate) fn settle_last_checkpoint(&self) -> Result<(), StoreError> {
        let mut slot = self.last_slot();
        match self.latest_checkpoint() {
            Some(cp) if *slot == 0 => self.record_in(&mut slot, &cp.note),
            _ => Ok(()),
        }
    }

    /// Checks the store against the checkpoint recorded beside it (see
    /// [`Store::record_checkpoint`]): the store must hold at least that
    /// checkpoint. Also chooses the file the next checkpoint goes to.
    fn check_last_checkpoint(
        &self,
        keys: &[VerifyingKey],
        held: Option<&CheckpointRecord>,
    ) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        let recorded = crate::last::Recorded::read(dir, &self.inner.origin, keys)?;
        let newest = recorded.newest(dir)?;
        if let Some(torn) = recorded.torn(dir) {
            tracing::warn!(
                file = %torn.display(),
                "this file does not hold a checkpoint signed by this member (a write cut off by a crash?); \
                 the other one does, and this one is written next"
            );
        }
        // What was read may be in the page cache only: a process killed
        // between a write and its fdatasync. It is about to be published.
        crate::last::sync(dir)?;
        *self.last_slot() = recorded.next_slot();
        let held_size = held.map_or(0, |c| c.size);
        match (newest, held) {
            (Some((last, file)), _) if last > held_size => Err(StoreError::Integrity(format!(
                "this node signed a checkpoint of size {last} ({}) but the store holds only up to size {held_size}: \
                 the database lost its newest part (damaged on disk, or a partial copy). Do not serve from it: \
                 move it aside, restore the newest backup, start the node again and check the feed with \
                 `lienthong feed verify`",
                file.display()
            ))),
            // A new store, one from before the files, or one whose last
            // checkpoint was signed again (key rotation) or not recorded.
            (last, Some(cp)) if last.as_ref().is_none_or(|(l, _)| *l < held_size) => {
                self.record_checkpoint(&cp.note)
            }
            _ => Ok(()),
        }
    }

    /// Copies the whole store, consistently, into a new store directory
    /// `dest` (which must not exist) while the node keeps serving: the
    /// writer waits between two groups for the length of the copy
    /// (submissions queue meanwhile), reads go on. The copy is a complete
    /// store, flushed and fsynced, with its checkpoint files; restore it by
    /// putting it in place of `store.dir` while the node is stopped
    /// (`lienthong restore`).
    pub fn backup_to(&self, dest: &Path) -> Result<BackupInfo, StoreError> {
        if dest.exists() {
            return Err(io("create backup (it already exists)", dest)(
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        std::fs::create_dir_all(dest).map_err(io("create directory", dest))?;
        // No background flusher: one thread fewer holding the copy's file
        // lock after `copy` is dropped. Not enough alone (sled's I/O
        // threads may still hold it a moment): the node reopens the copy
        // with `Store::reopen`, which waits that out.
        let copy = sled::Config::new()
            .path(dest)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(DEFAULT_CACHE_BYTES)
            .flush_every_ms(None)
            .open()?;
        let _quiet = self.between_groups();
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        for kv in self.inner.db.iter() {
            let (k, v) = kv?;
            records += 1;
            bytes += (k.len() + v.len()) as u64;
            batch.insert(k, v);
            in_batch += 1;
            if in_batch == 10_000 {
                copy.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        copy.apply_batch(batch)?;
        copy.flush()?;
        for name in crate::last::LAST_CHECKPOINT_FILES {
            let last = self.inner.dir.join(name);
            if last.exists() {
                std::fs::copy(&last, dest.join(name)).map_err(io("copy", &last))?;
            }
        }
        let durable = self.durable();
        let checkpoint_size = self.latest_checkpoint().map_or(0, |c| c.size);
        drop(_quiet);
        drop(copy);
        let [a, b] = crate::last::LAST_CHECKPOINT_FILES;
        for f in ["db", "conf", a, b] {
            let p = dest.join(f);
            if p.exists() {
                File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(io("fsync", &p))?;
            }
        }
        File::open(dest)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dest))?;
        Ok(BackupInfo {
            feed_size: durable.feed_size,
            checkpoint_size,
            records,
            bytes,
        })
    }

    /// Flushes sled and fsyncs its data file: the commit point.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        self.inner
            .data_file
            .sync_all()
            // The path is built only on failure: this is the commit point.
            .map_err(|e| io("fsync", &self.inner.dir.join("db"))(e))?;
        Ok(())
    }

    /// Current durable positions.
    pub fn durable(&self) -> Durable {
        *self.inner.durable.borrow()
    }

    /// Notifies every change of the durable positions.
    pub fn subscribe(&self) -> watch::Receiver<Durable> {
        self.inner.durable.subscribe()
    }

    /// The latest durable checkpoint, if any was issued.
    pub fn latest_checkpoint(&self) -> Option<Arc<CheckpointRecord>> {
        self.inner
            .checkpoint
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the latest checkpoint was recorded (the time one of its files
    /// was last written), if there is one.
    pub fn latest_checkpoint_time(&self) -> Option<std::time::SystemTime> {
        crate::last::LAST_CHECKPOINT_FILES
            .iter()
            .filter_map(|f| {
                std::fs::metadata(self.inner.dir.join(f))
                    .and_then(|m| m.modified())
                    .ok()
            })
            .max()
    }

    /// Member code the store belongs to.
    pub fn member(&self) -> &str {
        &self.inner.member
    }

    /// Checkpoint origin of the own feed.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// If the writer failed, why.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops all further writes (until restart) because continuing would
    /// fork the feed, e.g. a peer proves this member signed a larger tree
    /// than the store holds. The first reason is kept.
    pub fn halt(&self, why: String) {
        let mut f = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            tracing::error!(reason = %why, "refusing all writes");
            *f = Some(why);
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Inclusion proof of feed entry `index` in the tree of `tree_size`,
    /// which must not exceed the latest checkpoint.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<(Hash, Vec<Hash>), StoreError> {
        let limit = self.latest_checkpoint().map_or(0, |c| c.size);
        if tree_size == 0 || tree_size > limit || index >= tree_size {
            return Err(StoreError::OutOfRange(format!(
                "no inclusion proof for index {index} in a tree of size {tree_size}: need index < tree_size ≤ {limit} (the latest checkpoint)"
            )));
        }
        let r = TreeHashes(&self.inner.db);
        let leaf = r.read_hashes(&[tlog_tiles::tlog::stored_hash_index(0, index)])?[0];
        Ok((leaf, lienthong_log::inclusion_proof(index, tree_size, &r)?))
    }

    /// Inclusion proofs of many leaves under one tree size, as
    /// [`Store::inclusion_proof`] gives them one at a time, reading each
    /// stored hash once: neighbouring leaves share most of their proofs.
    pub fn inclusion_proofs(
        &self,
        indexes: &[u64],
        tree_size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        let limit = self.latest_checkpoint().map_or(0, |c| c.size);
        let r = lienthong_log::CachedHashes::new(TreeHashes(&self.inner.db));
        indexes
            .iter()
            .map(|&index| {
                if tree_size == 0 || tree_size > limit || index >= tree_size {
                    return Err(StoreError::OutOfRange(format!(
                        "no inclusion proof for index {index} in a tree of size {tree_size}: need index < tree_size ≤ {limit} (the latest checkpoint)"
                    )));
                }
                Ok(lienthong_log::inclusion_proof(index, tree_size, &r)?)
            })
            .collect()
    }

    /// Consistency proof between two tree sizes, both at most the latest
    /// checkpoint.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        let limit = self.latest_checkpoint().map_or(0, |c| c.size);
        if old_size == 0 || old_size > new_size || new_size > limit {
            return Err(StoreError::OutOfRange(format!(
                "no consistency proof from {old_size} to {new_size}: need 0 < old_size ≤ new_size ≤ {limit} (the latest checkpoint)"
            )));
        }
        Ok(lienthong_log::consistency_proof(
            old_size,
            new_size,
            &TreeHashes(&self.inner.db),
        )?)
    }

    /// Root hash of the own feed at `size` (≤ durable feed size).
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        if size > self.durable().feed_size {
            return Err(StoreError::OutOfRange(format!(
                "feed has only {} durable entries",
                self.durable().feed_size
            )));
        }
        Ok(lienthong_log::tree_root(size, &TreeHashes(&self.inner.db))?)
    }
}

/// Stored Merkle hashes, read from sled.
pub(crate) struct TreeHashes<'a>(pub(crate) &'a sled::Tree);

impl HashStore for TreeHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let mut hashes = crate::packed::HASHES.reader(self.0);
        indexes
            .iter()
            .map(|&i| {
                let h = hashes
                    .get(i)
                    .map_err(|e| LogError::Storage(e.to_string()))?
                    .ok_or(LogError::MissingHash(i))?;
                let arr: [u8; 32] = h
                    .try_into()
                    .map_err(|_| LogError::Storage(format!("stored hash {i} is not 32 bytes")))?;
                Ok(Hash(arr))
            })
            .collect()
    }
}

/// Maps an I/O error on `path` to the store's error, naming the action.
pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Removes every key under `prefix`, `per_batch` to a sled batch;
/// returns how many there were.
pub(crate) fn remove_prefix(
    db: &sled::Tree,
    prefix: u8,
    per_batch: usize,
) -> Result<u64, StoreError> {
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let mut n = 0u64;
    for k in db.scan_prefix([prefix]).keys() {
        batch.remove(k?);
        n += 1;
        in_batch += 1;
        if in_batch == per_batch {
            db.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        db.apply_batch(batch)?;
    }
    Ok(n)
}

pub(crate) fn read_meta_u64(db: &sled::Tree, name: &str) -> Result<u64, StoreError> {
    match db.get(keys::meta(name))? {
        None => Ok(0),
        Some(v) => keys::tail_u64(&v).ok_or_else(|| StoreError::Corrupt {
            key: format!("meta {name}"),
            detail: "not a u64".into(),
        }),
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
