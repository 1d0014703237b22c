//! The look-up indexes of the entries, by id (`i`) and by the submitting
//! system's reference (`r`), each in 65,536 sled values (buckets).
//!
//! Up to store layout 2 every id and every reference was a sled key of its
//! own (`I`, `R`): two of the three keys each entry needed. sled 0.34 keeps
//! memory for every leaf of its tree, loaded or not, about 40 bytes a key
//! (docs/benchmarks.md), so those two indexes were two thirds of an idle
//! node's memory. Bucketed, they are at most 2 × 65,536 keys however many
//! entries the store holds.
//!
//! An indexed key (an id, or a reference) has a *digest*: SHA-256 over the
//! store's index salt, the index's tag and the key. Its first two bytes
//! name the bucket; the other 30 are kept in the bucket with the cursor.
//! The salt is 16 random bytes made once per store (`M index_salt`), so a
//! submitting system or a peer cannot choose references or ids that all
//! fall into one bucket and make every insert rewrite a large value.
//!
//! A bucket's value is its items sorted by digest: the 30 bytes, then the
//! cursor u64 BE, [`ITEM`] bytes each. At a million entries a bucket holds
//! about 15 items (580 bytes). The writer rewrites the buckets a group adds
//! to in the same atomic batch as the entries, so a reader sees a bucket
//! either before or after the group; it still finds only durable entries,
//! because every read by cursor checks the durable size.
//!
//! # Staged ids (layout 5)
//!
//! Adding to a bucket means reading it first, and buckets are random: at a
//! million entries the id buckets are about 38 MB, several times the page
//! cache, so nearly every add pulled a leaf of sled's tree from disk and
//! wrote it again (docs/benchmarks.md). New ids therefore go first to the
//! *run* of staged ids:
//!
//! - on disk, one sled value per group, appended in cursor order
//!   ([`keys::ID_STAGED`], the group's first cursor → its ids, 32 digest
//!   bytes and the cursor each): one key added at the end of the tree per
//!   group, where one sled key per id, at random places, made sled split
//!   and merge leaves all the time (tried first; no faster than buckets);
//! - in memory, every staged id by digest ([`Run`]), loaded at open, which
//!   every look-up by id consults before the buckets.
//!
//! Each group *sweeps* the next slice of buckets in key order: the staged
//! ids of those buckets go into them, in the same atomic batch as the
//! group's entries, and leave the memory run once that batch is applied.
//! The slice grows with the ids the group adds (see [`Sweep`]), so the run
//! holds at most about [`RUN_TARGET`] ids (half that on average) and each
//! bucket is written once per sweep, with every id staged for it since,
//! instead of once per id. A group's value on disk is removed by the first
//! group whose sweep completes a whole turn of the buckets after it, by
//! when every id in it is in its bucket. After a restart every value left
//! is loaded again and swept again; adding an id already in its bucket
//! keeps the bucket as it is.
//!
//! A look-up reads the memory run first and the bucket second: an id
//! leaves the run only after its bucket is written, so a reader never
//! misses it between the two.
//!
//! # Staged references (layout 6)
//!
//! References are staged the same way, in a run of their own (values
//! [`keys::REFERENCE_STAGED`], their own sweep). Staging alone would not
//! spare the random bucket read, because the writer looks every new
//! reference up first to answer a resubmission with the entry it made.
//! A filter of every recorded reference ([`crate::filter`]) answers that
//! look-up for a reference never seen, nearly always, without the bucket.
//! Up to layout 5 each new reference read and rewrote a random bucket:
//! at a million entries that held most of the memory right after a fill
//! and halved the fill rate (docs/benchmarks.md).

use sha2::{Digest as _, Sha256};

use crate::StoreError;
use crate::keys;

/// Digest bytes kept in an item (the two bucket bytes are in the key).
const REST: usize = 30;
/// Bytes per item: the rest of the digest, then the cursor.
pub(crate) const ITEM: usize = REST + 8;

/// The random salt of a store's digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Salt(pub(crate) [u8; 16]);

/// The digest of an indexed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Digest([u8; 32]);

impl Digest {
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn rest(&self) -> &[u8] {
        &self.0[2..]
    }

    fn bucket(&self) -> u32 {
        u32::from(u16::from_be_bytes([self.0[0], self.0[1]]))
    }
}

/// The slice of buckets a group sweeps: `len` buckets from `from`,
/// wrapping after the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sweep {
    from: u32,
    len: u32,
}

impl Sweep {
    /// The sweep of a group that adds `added` ids while `staged` are in
    /// the run, after `swept` buckets were swept since start: it begins
    /// where they left off, wrapping after the last bucket. In steady state
    /// every bucket is swept once per [`RUN_TARGET`] ids added, and a run
    /// larger than that (after a burst) shrinks by an eighth of its excess
    /// per group, at most [`MAX_SWEEP`] buckets at a time.
    pub(crate) fn next(swept: u64, added: usize, staged: usize) -> Self {
        let excess = staged.saturating_sub(RUN_TARGET) / 8;
        let want = ((added + excess) as u64 * u64::from(BUCKETS)).div_ceil(RUN_TARGET as u64);
        Self {
            from: u32::try_from(swept % u64::from(BUCKETS)).unwrap_or_default(),
            len: u32::try_from(want).unwrap_or(u32::MAX).min(MAX_SWEEP),
        }
    }

    /// Buckets swept.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    fn covers(&self, bucket: u32) -> bool {
        (bucket + BUCKETS - self.from) % BUCKETS < self.len
    }

    /// The bucket ranges `[from, to)` it covers, at most two.
    fn ranges(&self) -> impl Iterator<Item = (u32, u32)> {
        let end = self.from + self.len;
        let first = (self.len > 0).then_some((self.from, end.min(BUCKETS)));
        let second = (end > BUCKETS).then(|| (0, end - BUCKETS));
        first.into_iter().chain(second)
    }
}

/// Bytes of a staged id in a run value: the digest, then the cursor.
const STAGED_ITEM: usize = 32 + 8;

/// What a group did to the run ([`Run::add`]).
pub(crate) struct Staging {
    /// Ids staged: in the run from now on.
    pub(crate) staged: Vec<(Digest, u64)>,
    /// Ids of the run now in their buckets: out of the run from now on.
    pub(crate) swept: Vec<(Digest, u64)>,
    /// The key of the run value written, if any ids were staged.
    pub(crate) value: Option<[u8; 9]>,
}

/// The staged keys of one index in memory, by digest (module docs); shared
/// by the writer, which alone changes it, and readers.
#[derive(Debug)]
pub(crate) struct Run {
    index: Index,
    ids: std::sync::RwLock<std::collections::BTreeMap<Digest, u64>>,
}

impl Run {
    /// An empty run of `index`.
    #[cfg(test)]
    pub(crate) fn new(index: Index) -> Self {
        Self {
            index,
            ids: Default::default(),
        }
    }

    /// Reads every run value of `index` in the store into memory.
    pub(crate) fn load(db: &sled::Tree, index: Index) -> Result<Self, StoreError> {
        let mut ids = std::collections::BTreeMap::new();
        for kv in db.scan_prefix([index.staged]) {
            let (k, v) = kv?;
            index.value_key(&k)?;
            if v.is_empty() || !v.len().is_multiple_of(STAGED_ITEM) {
                return Err(StoreError::Corrupt {
                    key: format!("staged {}s {}", index.what, crate::store::hex(&k)),
                    detail: format!("is {} bytes, not {}s of {STAGED_ITEM}", v.len(), index.what),
                });
            }
            for item in v.chunks_exact(STAGED_ITEM) {
                let mut d = [0u8; 32];
                d.copy_from_slice(&item[..32]);
                ids.insert(Digest(d), keys::tail_u64(item).unwrap_or_default());
            }
        }
        Ok(Self {
            index,
            ids: std::sync::RwLock::new(ids),
        })
    }

    /// The keys of the run values of the store, in order.
    pub(crate) fn value_keys(&self, db: &sled::Tree) -> Result<Vec<[u8; 9]>, StoreError> {
        let mut out = Vec::new();
        for k in db.scan_prefix([self.index.staged]).keys() {
            out.push(self.index.value_key(&k?)?);
        }
        Ok(out)
    }

    /// Every staged digest (for the writer's filter of references).
    pub(crate) fn digests(&self) -> Vec<Digest> {
        self.read().keys().copied().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<Digest, u64>> {
        self.ids.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The cursor staged for digest `d`, if it is.
    pub(crate) fn get(&self, d: &Digest) -> Option<u64> {
        self.read().get(d).copied()
    }

    /// Staged ids.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// The staged ids of the buckets `sweep` covers.
    fn in_sweep(&self, sweep: Sweep) -> Vec<(Digest, u64)> {
        let ids = self.read();
        let mut out = Vec::new();
        for (from, to) in sweep.ranges() {
            let start = Digest(first_of(from));
            let range = if to == BUCKETS {
                ids.range(start..)
            } else {
                ids.range(start..Digest(first_of(to)))
            };
            out.extend(range.map(|(d, c)| (*d, *c)));
        }
        out
    }

    /// Adds the new keys of a group to the index, `items` (digest, cursor), none
    /// recorded yet, the first at cursor `first`: those in the buckets
    /// `sweep` covers go straight into them, with the ids the run holds
    /// for those buckets; the rest are staged in one value. The caller
    /// applies the batch, then [`Run::update`]s the run with what this
    /// returns.
    pub(crate) fn add(
        &self,
        db: &sled::Tree,
        batch: &mut sled::Batch,
        items: Vec<(Digest, u64)>,
        first: u64,
        sweep: Sweep,
        read: &BucketsRead,
    ) -> Result<Staging, StoreError> {
        // A new reference is always staged: one not in a run value must
        // be in the filter written to disk (`filter` module).
        let (mut now, staged): (Vec<_>, Vec<_>) = items
            .into_iter()
            .partition(|(d, _)| !self.index.filtered && sweep.covers(d.bucket()));
        let value = (!staged.is_empty()).then(|| {
            let key = keys::with_u64(self.index.staged, first);
            let mut v = Vec::with_capacity(staged.len() * STAGED_ITEM);
            for (d, cursor) in &staged {
                v.extend_from_slice(&d.0);
                v.extend_from_slice(&cursor.to_be_bytes());
            }
            batch.insert(&key, v);
            key
        });
        let swept = self.in_sweep(sweep);
        now.extend_from_slice(&swept);
        self.index.add(db, batch, &mut now, read)?;
        Ok(Staging {
            staged,
            swept,
            value,
        })
    }

    /// Once the group's batch is applied: its staged ids join the run and
    /// its swept ones leave it.
    pub(crate) fn update(&self, staging: &Staging) {
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        ids.extend(staging.staged.iter().copied());
        for (d, _) in &staging.swept {
            ids.remove(d);
        }
    }
}

/// The writer's account of one run: where its sweeps are, and its values
/// on disk, oldest first, each with the buckets swept when it was written
/// and the group that wrote it.
#[derive(Debug)]
pub(crate) struct Sweeper {
    swept: u64,
    values: std::collections::VecDeque<([u8; 9], u64, u64)>,
}

/// A group's sweep of one run ([`Sweeper::plan`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) sweep: Sweep,
    swept_after: u64,
    /// Values of the run the group removes: the oldest so many.
    spent: usize,
}

impl Sweeper {
    /// The run's values left on disk by the last process: swept again from
    /// the start, as if written by group 0.
    pub(crate) fn load(run: &Run, db: &sled::Tree) -> Result<Self, StoreError> {
        Ok(Self {
            swept: 0,
            values: run.value_keys(db)?.into_iter().map(|k| (k, 0, 0)).collect(),
        })
    }

    /// The sweep of a group that adds `added` keys to `run`, and the values
    /// it removes: those a whole turn of sweeps old once it is done. A
    /// group that writes no entry (every job in it known already) sweeps
    /// nothing: its batch is not applied, so the work would be lost.
    pub(crate) fn plan(&self, added: usize, run: &Run, writes: bool) -> Plan {
        let staged = if writes { run.len() } else { 0 };
        let sweep = Sweep::next(self.swept, added, staged);
        let swept_after = self.swept + u64::from(sweep.len());
        let spent = self
            .values
            .iter()
            .take_while(|(_, at, _)| at + u64::from(BUCKETS) <= swept_after)
            .count();
        Plan {
            sweep,
            swept_after,
            spent,
        }
    }

    /// The keys of the values `plan` removes.
    pub(crate) fn spent(&self, plan: &Plan) -> impl Iterator<Item = &[u8; 9]> {
        self.values.iter().take(plan.spent).map(|(k, _, _)| k)
    }

    /// True if `plan` removes a value written by group `group` or later.
    pub(crate) fn spends_since(&self, plan: &Plan, group: u64) -> bool {
        self.values
            .iter()
            .take(plan.spent)
            .any(|(_, _, g)| *g >= group)
    }

    /// Once group `group`'s batch, planned as `plan`, is applied.
    pub(crate) fn done(&mut self, plan: &Plan, staging: &Staging, group: u64) {
        self.values.drain(..plan.spent);
        if let Some(k) = staging.value {
            self.values.push_back((k, plan.swept_after, group));
        }
        self.swept = plan.swept_after;
    }
}

/// The smallest digest of bucket `b`.
fn first_of(b: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..2].copy_from_slice(&u16::try_from(b).unwrap_or(u16::MAX).to_be_bytes());
    d
}

/// Buckets of an index: the first two digest bytes.
pub(crate) const BUCKETS: u32 = 1 << 16;

/// About how many ids the run of staged ids holds at most in steady state
/// (each bucket is swept once per this many ids added).
pub(crate) const RUN_TARGET: usize = 32 * 1024;

/// Most buckets one group sweeps (about 512 leaves of sled's tree): what
/// the largest group needs to keep the run near [`RUN_TARGET`]. A group
/// is at most 2,048 jobs (`WriterConfig::max_batch` by default), and a
/// received entry may bring its receipt: 4,096 new ids, two buckets each.
const MAX_SWEEP: u32 = 8192;

/// One hashed index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Index {
    prefix: u8,
    /// The prefix of its run values.
    staged: u8,
    /// Whether the writer keeps a filter of its keys (`filter` module).
    filtered: bool,
    tag: u8,
    /// What it maps to a cursor, for error messages.
    what: &'static str,
}

/// Entry id → cursor.
pub(crate) const IDS: Index = Index {
    prefix: keys::ID_BUCKET,
    staged: keys::ID_STAGED,
    filtered: false,
    tag: b'i',
    what: "id",
};

/// A submitting system's reference → the cursor of the entry it created.
///
/// Staged like ids (layout 6): the writer looks every new reference up
/// first, and a filter kept by the writer ([`crate::filter`]) answers that
/// look-up for a reference never seen without reading its bucket.
pub(crate) const REFERENCES: Index = Index {
    prefix: keys::REFERENCE_BUCKET,
    staged: keys::REFERENCE_STAGED,
    filtered: true,
    tag: b'r',
    what: "reference",
};

/// Buckets the writer read while looking a group's keys up, by sled key
/// (`None`: no such bucket yet).
pub(crate) type BucketsRead = std::collections::HashMap<[u8; 3], Option<sled::IVec>>;

impl Index {
    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    /// A run value's key: the prefix and a group's first cursor.
    fn value_key(&self, k: &[u8]) -> Result<[u8; 9], StoreError> {
        k.try_into().map_err(|_| StoreError::Corrupt {
            key: format!("staged {}s {}", self.what, crate::store::hex(k)),
            detail: "is not a prefix and a cursor".into(),
        })
    }

    /// Every digest in the buckets of this index, bucket by bucket (the
    /// upgrade to layout 6 builds the filter of references from them).
    pub(crate) fn for_each_digest(
        &self,
        db: &sled::Tree,
        mut f: impl FnMut(&Digest),
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for kv in db.scan_prefix([self.prefix]) {
            let (k, v) = kv?;
            let key: [u8; 3] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                key: format!("{} bucket {}", self.what, crate::store::hex(&k)),
                detail: "is not a prefix and two bytes".into(),
            })?;
            for item in self.items(&key, &v)?.chunks_exact(ITEM) {
                let mut d = [0u8; 32];
                d[..2].copy_from_slice(&key[1..]);
                d[2..].copy_from_slice(&item[..REST]);
                f(&Digest(d));
                n += 1;
            }
        }
        Ok(n)
    }

    /// The digest of `key` in this index of the store salted with `salt`.
    pub(crate) fn digest(&self, salt: &Salt, key: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(salt.0);
        h.update([self.tag]);
        h.update(key);
        Digest(h.finalize().into())
    }

    fn bucket_key(&self, d: &Digest) -> [u8; 3] {
        [self.prefix, d.0[0], d.0[1]]
    }

    /// The cursor recorded for the key of digest `d`, if any.
    pub(crate) fn get(&self, db: &sled::Tree, d: &Digest) -> Result<Option<u64>, StoreError> {
        let key = self.bucket_key(d);
        match db.get(key)? {
            None => Ok(None),
            Some(v) => self.find(&key, &v, d),
        }
    }

    /// [`Index::get`] for the writer, which then adds to the same buckets:
    /// each bucket read is kept in `read` for [`Index::add`].
    pub(crate) fn get_keeping(
        &self,
        db: &sled::Tree,
        d: &Digest,
        read: &mut BucketsRead,
    ) -> Result<Option<u64>, StoreError> {
        let key = self.bucket_key(d);
        let value = match read.entry(key) {
            std::collections::hash_map::Entry::Occupied(v) => v.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(db.get(key)?),
        };
        match value {
            None => Ok(None),
            Some(v) => self.find(&key, v, d),
        }
    }

    fn corrupt(&self, key: &[u8; 3], detail: String) -> StoreError {
        StoreError::Corrupt {
            key: format!("{} bucket {:02x}{:02x}", self.what, key[1], key[2]),
            detail,
        }
    }

    fn items<'v>(&self, key: &[u8; 3], value: &'v [u8]) -> Result<&'v [u8], StoreError> {
        if !value.len().is_multiple_of(ITEM) {
            return Err(self.corrupt(
                key,
                format!("is {} bytes, not items of {ITEM}", value.len()),
            ));
        }
        Ok(value)
    }

    /// Binary search of a bucket's sorted items.
    fn find(&self, key: &[u8; 3], value: &[u8], d: &Digest) -> Result<Option<u64>, StoreError> {
        let items = self.items(key, value)?;
        let (mut lo, mut hi) = (0, items.len() / ITEM);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let item = &items[mid * ITEM..(mid + 1) * ITEM];
            match item[..REST].cmp(d.rest()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(keys::tail_u64(item)),
            }
        }
        Ok(None)
    }

    /// Adds `items` (digest, cursor) to their buckets in `batch`, each
    /// bucket written once and read once: from `read` if this group's
    /// look-ups read it already (nothing else writes buckets meanwhile: the
    /// writer is the only writer), else from `db`. A digest already
    /// recorded keeps its cursor. For references that happens only when an
    /// earlier write was cut off (the writer looks every reference up
    /// first); for ids, whenever a sweep meets a staged id its bucket
    /// already holds, as after a restart (module docs).
    pub(crate) fn add(
        &self,
        db: &sled::Tree,
        batch: &mut sled::Batch,
        items: &mut [(Digest, u64)],
        read: &BucketsRead,
    ) -> Result<(), StoreError> {
        for group in by_bucket(items) {
            let key = self.bucket_key(&group[0].0);
            let old = match read.get(&key) {
                Some(v) => v.clone(),
                None => db.get(key)?,
            };
            let old = match &old {
                Some(v) => self.items(&key, v)?,
                None => &[],
            };
            batch.insert(&key, merge(old, group));
        }
        Ok(())
    }

    /// Writes whole buckets from `items`, sorted, none yet stored (the
    /// upgrade from layout 2); applies a batch every 4,096 buckets.
    pub(crate) fn write_all(
        &self,
        db: &sled::Tree,
        items: &mut [(Digest, u64)],
    ) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut buckets = 0usize;
        for group in by_bucket(items) {
            batch.insert(&self.bucket_key(&group[0].0), merge(&[], group));
            buckets += 1;
            if buckets.is_multiple_of(4096) {
                db.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        db.apply_batch(batch)?;
        Ok(buckets)
    }
}

/// `items` sorted, in runs of one bucket each.
fn by_bucket(items: &mut [(Digest, u64)]) -> impl Iterator<Item = &[(Digest, u64)]> {
    items.sort_unstable();
    items.chunk_by(|a, b| a.0.0[..2] == b.0.0[..2])
}

/// The sorted items of `old` with the sorted `new` ones added (a digest
/// in both keeps its old cursor; a digest twice in `new`, its first).
fn merge(old: &[u8], new: &[(Digest, u64)]) -> Vec<u8> {
    use std::cmp::Ordering;
    let mut out = Vec::with_capacity(old.len() + new.len() * ITEM);
    let (mut o, mut n) = (0, 0);
    let olds: Vec<&[u8]> = old.chunks_exact(ITEM).collect();
    while o < olds.len() || n < new.len() {
        let order = match (olds.get(o), new.get(n)) {
            (Some(a), Some((d, _))) => a[..REST].cmp(d.rest()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        if order != Ordering::Greater {
            out.extend_from_slice(olds[o]);
            o += 1;
            // An equal new item is dropped: the old cursor stays.
            n += usize::from(order == Ordering::Equal);
            continue;
        }
        let (d, cursor) = &new[n];
        n += 1;
        if out.len() >= ITEM && out[out.len() - ITEM..out.len() - 8] == *d.rest() {
            continue;
        }
        out.extend_from_slice(d.rest());
        out.extend_from_slice(&cursor.to_be_bytes());
    }
    out
}

/// The store's salt: read, or made and written (not yet durable: the
/// caller syncs) when `may_make`, i.e. for a new store or one of an older
/// layout about to be upgraded. A store of this layout without one is
/// damaged: a new salt would make every recorded id unfindable.
pub(crate) fn salt(db: &sled::Tree, may_make: bool) -> Result<Salt, StoreError> {
    let name = keys::meta("index_salt");
    if let Some(v) = db.get(&name)? {
        return <[u8; 16]>::try_from(v.as_ref())
            .map(Salt)
            .map_err(|_| StoreError::Corrupt {
                key: "meta index_salt".into(),
                detail: format!("is {} bytes, not 16", v.len()),
            });
    }
    if !may_make {
        return Err(StoreError::Integrity(
            "the store has no index salt (meta index_salt), so its id and reference indexes \
             cannot be read: it is damaged; restore the newest backup"
                .into(),
        ));
    }
    let mut s = [0u8; 16];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut s).map_err(|e| {
        StoreError::Integrity(format!("no randomness for the store's index salt: {e}"))
    })?;
    db.insert(&name, &s)?;
    Ok(Salt(s))
}

/// Items of every bucket under `index` (the tests' view of the layout).
#[cfg(test)]
pub(crate) fn count(db: &sled::Tree, index: Index) -> (usize, usize) {
    let mut buckets = 0;
    let mut items = 0;
    for v in db.scan_prefix([index.prefix]).values() {
        buckets += 1;
        items += v.map_or(0, |v| v.len() / ITEM);
    }
    (buckets, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(n: u32) -> Vec<(Digest, u64)> {
        let salt = Salt([7; 16]);
        (0..n)
            .map(|i| (IDS.digest(&salt, &i.to_be_bytes()), u64::from(i)))
            .collect()
    }

    #[test]
    fn added_items_are_found_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut all = digests(3000);
        // In three groups, as three commits would: the later two look
        // their keys up first, as the writer does, and add to the buckets
        // those look-ups read.
        for (n, chunk) in all.chunks(1000).enumerate() {
            let mut read = BucketsRead::new();
            if n > 0 {
                for (d, _) in chunk {
                    assert_eq!(IDS.get_keeping(&db, d, &mut read).unwrap(), None);
                }
                assert!(read.len() > 900, "{} buckets read", read.len());
            }
            let mut batch = sled::Batch::default();
            IDS.add(&db, &mut batch, &mut chunk.to_vec(), &read)
                .unwrap();
            db.apply_batch(batch).unwrap();
        }
        for (d, c) in &all {
            assert_eq!(IDS.get(&db, d).unwrap(), Some(*c));
        }
        let salt = Salt([7; 16]);
        assert_eq!(IDS.get(&db, &IDS.digest(&salt, b"none")).unwrap(), None);
        // Another salt, another index: nothing found.
        assert_eq!(
            IDS.get(&db, &IDS.digest(&Salt([8; 16]), &5u32.to_be_bytes()))
                .unwrap(),
            None
        );
        assert_eq!(
            IDS.get(&db, &REFERENCES.digest(&salt, &5u32.to_be_bytes()))
                .unwrap(),
            None
        );
        // Adding again keeps the first cursor and the item count.
        let before = count(&db, IDS);
        let mut again: Vec<_> = all.iter_mut().map(|(d, c)| (*d, *c + 1)).collect();
        let mut batch = sled::Batch::default();
        IDS.add(&db, &mut batch, &mut again, &BucketsRead::new())
            .unwrap();
        db.apply_batch(batch).unwrap();
        assert_eq!(count(&db, IDS), before);
        assert_eq!(before.1, 3000);
        assert_eq!(IDS.get(&db, &all[17].0).unwrap(), Some(all[17].1));
    }

    #[test]
    fn a_sweep_covers_its_slice_and_wraps_after_the_last_bucket() {
        let s = Sweep::next(0, 64, 0);
        assert_eq!((s.from, s.len), (0, 128));
        assert_eq!(Sweep::next(128, 0, 0).from, 128);
        assert!(s.covers(0) && s.covers(127) && !s.covers(128) && !s.covers(BUCKETS - 1));
        assert_eq!(s.ranges().collect::<Vec<_>>(), [(0, 128)]);
        let before = 3 * u64::from(BUCKETS) - 36;
        let s = Sweep::next(before, 50, 0);
        assert_eq!((s.from, s.len), (BUCKETS - 36, 100));
        assert_eq!(Sweep::next(before + 100, 0, 0).from, 64);
        assert!(s.covers(BUCKETS - 36) && s.covers(BUCKETS - 1) && s.covers(0));
        assert!(s.covers(63) && !s.covers(64) && !s.covers(BUCKETS - 37));
        assert_eq!(
            s.ranges().collect::<Vec<_>>(),
            [(BUCKETS - 36, BUCKETS), (0, 64)]
        );
        // Nothing added, run at or below its target: no sweep.
        let s = Sweep::next(7, 0, RUN_TARGET);
        assert_eq!((s.from, s.len, s.ranges().count()), (7, 0, 0));
        // A run beyond its target shrinks, a bounded slice at a time.
        assert_eq!(Sweep::next(7, 0, RUN_TARGET + 8 * 1000).len, 2000);
        assert_eq!(Sweep::next(7, 1 << 20, 0).len, MAX_SWEEP);
    }

    /// Ids added a group at a time, as the writer adds them: every one is
    /// found after every group, in the run or in its bucket, and the run
    /// stays near its target; what is on disk loads the same run again.
    #[test]
    fn staged_ids_are_found_and_swept_into_their_buckets() {
        const GROUP: usize = 700;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let all = digests(100 * GROUP as u32);
        let run = Run::new(IDS);
        let find = |run: &Run, d: &Digest| run.get(d).or_else(|| IDS.get(&db, d).unwrap());
        let (mut swept, mut most) = (0u64, 0usize);
        for (n, chunk) in all.chunks(GROUP).enumerate() {
            let sweep = Sweep::next(swept, chunk.len(), run.len());
            let mut batch = sled::Batch::default();
            let staging = run
                .add(
                    &db,
                    &mut batch,
                    chunk.to_vec(),
                    (n * GROUP) as u64,
                    sweep,
                    &BucketsRead::new(),
                )
                .unwrap();
            db.apply_batch(batch).unwrap();
            run.update(&staging);
            swept += u64::from(sweep.len());
            most = most.max(run.len());
            if n % 10 == 9 {
                for (d, c) in &all[..(n + 1) * GROUP] {
                    assert_eq!(find(&run, d), Some(*c), "group {n}");
                }
            }
        }
        let (_, in_buckets) = count(&db, IDS);
        assert_eq!(in_buckets + run.len(), all.len());
        assert!(
            run.len() > RUN_TARGET / 4 && most < RUN_TARGET + 2 * GROUP,
            "run of {} ids, at most {most}",
            run.len()
        );
        // Reads of ids never added find nothing.
        let salt = Salt([7; 16]);
        assert_eq!(find(&run, &IDS.digest(&salt, b"none")), None);
        // Nothing removed the values here (the writer does, a turn later):
        // loaded again, they hold every id staged, each with its cursor.
        let again = Run::load(&db, IDS).unwrap();
        assert_eq!(
            again.value_keys(&db).unwrap().len(),
            100,
            "a value per group"
        );
        assert!(again.len() >= run.len());
        for (d, c) in run.read().iter() {
            assert_eq!(again.get(d), Some(*c));
        }
        // Swept again for a whole turn, as after a restart: ids already in
        // their buckets stay there once, the others join them, and the run
        // empties.
        let mut swept = 0;
        for _ in 0..BUCKETS / MAX_SWEEP {
            let whole = Sweep::next(swept, RUN_TARGET, 0);
            assert_eq!(whole.len(), MAX_SWEEP);
            let mut batch = sled::Batch::default();
            let staging = again
                .add(&db, &mut batch, vec![], 0, whole, &BucketsRead::new())
                .unwrap();
            assert!(staging.value.is_none() && staging.staged.is_empty());
            db.apply_batch(batch).unwrap();
            again.update(&staging);
            swept += u64::from(whole.len());
        }
        assert_eq!((swept, again.len()), (u64::from(BUCKETS), 0));
        assert_eq!(count(&db, IDS).1, all.len());
        for (d, c) in &all {
            assert_eq!(find(&again, d), Some(*c));
        }
    }

    #[test]
    fn a_run_value_of_the_wrong_size_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.insert(keys::with_u64(keys::ID_STAGED, 5), vec![0u8; 41])
            .unwrap();
        let e = Run::load(&db, IDS).unwrap_err().to_string();
        assert!(
            e.contains("staged ids") && e.contains("not ids of 40"),
            "{e}"
        );
    }

    #[test]
    fn whole_buckets_written_at_once_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut all = digests(5000);
        let buckets = REFERENCES.write_all(&db, &mut all.clone()).unwrap();
        assert_eq!(count(&db, REFERENCES), (buckets, 5000));
        for (d, c) in all.iter_mut() {
            assert_eq!(REFERENCES.get(&db, d).unwrap(), Some(*c));
        }
    }

    #[test]
    fn a_bucket_of_the_wrong_size_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let (d, _) = digests(1)[0];
        db.insert(IDS.bucket_key(&d), vec![0u8; ITEM + 1]).unwrap();
        let e = IDS.get(&db, &d).unwrap_err().to_string();
        assert!(
            e.contains("id bucket") && e.contains("not items of 38"),
            "{e}"
        );
    }
}
