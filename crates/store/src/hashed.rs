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
    fn rest(&self) -> &[u8] {
        &self.0[2..]
    }
}

/// One hashed index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Index {
    prefix: u8,
    tag: u8,
    /// What it maps to a cursor, for error messages.
    what: &'static str,
}

/// Entry id → cursor.
pub(crate) const IDS: Index = Index {
    prefix: keys::ID_BUCKET,
    tag: b'i',
    what: "id",
};

/// A submitting system's reference → the cursor of the entry it created.
pub(crate) const REFERENCES: Index = Index {
    prefix: keys::REFERENCE_BUCKET,
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
    /// recorded keeps its cursor: the writer looks every key up before it
    /// adds it, so this happens only when an earlier write was cut off.
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
