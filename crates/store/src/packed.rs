//! Fixed-width records of the own feed packed [`PER_VALUE`] to a sled value:
//! the stored Merkle hashes (`h`, 32 bytes each) and the feed positions
//! (`f`, the cursor of each feed index, 8 bytes each).
//!
//! Both grow only at the end, by whole groups, and are read by position.
//! As one sled key each (store format 1) they were three of the six or so
//! keys of every own entry, and sled 0.34 keeps memory for every leaf of
//! 8–16 keys, loaded or not: about 40% of a restarted node's memory with a
//! million entries (docs/benchmarks.md). Packed, they are one key per 64.
//!
//! Value `n` of a kind holds items `64n ..` in order, `width` bytes each;
//! only the last value may hold fewer than 64. A group commit rewrites that
//! last value with the new items appended, in the same atomic batch as the
//! entries, so a reader sees either the old or the new value, and the old
//! one is a prefix of the new.

use sled::IVec;

use crate::StoreError;
use crate::keys;

/// Items per sled value. 64 hashes are 2 KiB; a sled leaf holds up to 16
/// values, so a leaf stays far below sled's 128 KiB threshold for moving a
/// page out of its log into a file of its own.
pub(crate) const PER_VALUE: u64 = 64;

/// One kind of packed item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packed {
    prefix: u8,
    width: usize,
    /// What an item is, for error messages.
    what: &'static str,
}

/// The own feed's stored Merkle hashes, by stored-hash index.
pub(crate) const HASHES: Packed = Packed {
    prefix: keys::HASH_PACKED,
    width: 32,
    what: "stored hash",
};

/// The cursor of each own feed index.
pub(crate) const POSITIONS: Packed = Packed {
    prefix: keys::FEED_PACKED,
    width: 8,
    what: "feed position",
};

impl Packed {
    /// Bytes per item.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The key of the value holding item `index`.
    fn key(&self, index: u64) -> [u8; 9] {
        keys::with_u64(self.prefix, index / PER_VALUE)
    }

    fn corrupt(&self, index: u64, detail: String) -> StoreError {
        StoreError::Corrupt {
            key: format!("packed {}s holding {} {index}", self.what, self.what),
            detail,
        }
    }

    /// The bytes of item `index` within `value`, the value holding it
    /// (`None`: not stored).
    fn cut<'v>(&self, value: Option<&'v IVec>, index: u64) -> Result<Option<&'v [u8]>, StoreError> {
        let Some(value) = value else {
            return Ok(None);
        };
        if value.len() % self.width != 0 || value.len() > PER_VALUE as usize * self.width {
            return Err(self.corrupt(
                index,
                format!(
                    "is {} bytes, not a whole number of {}-byte items up to {PER_VALUE}",
                    value.len(),
                    self.width
                ),
            ));
        }
        let at = (index % PER_VALUE) as usize * self.width;
        Ok(value.get(at..at + self.width))
    }

    /// Appends `items` (a whole number of items) as items `first ..` to
    /// `batch`. `first` must be the number of items stored: the last
    /// value is read from `db` and rewritten with the new items after it.
    pub(crate) fn append(
        &self,
        db: &sled::Tree,
        batch: &mut sled::Batch,
        first: u64,
        items: &[u8],
    ) -> Result<(), StoreError> {
        debug_assert_eq!(items.len() % self.width, 0);
        if items.is_empty() {
            return Ok(());
        }
        let mut value = Vec::with_capacity(PER_VALUE as usize * self.width);
        let held = first % PER_VALUE;
        if held > 0 {
            let old = db.get(self.key(first))?.unwrap_or_default();
            if old.len() != held as usize * self.width {
                return Err(self.corrupt(
                    first,
                    format!(
                        "holds {} bytes where the {held} {}s before index {first} take {}",
                        old.len(),
                        self.what,
                        held as usize * self.width
                    ),
                ));
            }
            value.extend_from_slice(&old);
        }
        let mut index = first;
        for item in items.chunks_exact(self.width) {
            value.extend_from_slice(item);
            index += 1;
            if index.is_multiple_of(PER_VALUE) {
                batch.insert(&self.key(index - 1), std::mem::take(&mut value));
            }
        }
        if !value.is_empty() {
            batch.insert(&self.key(index - 1), value);
        }
        Ok(())
    }

    /// A reader that keeps the last value it read: neighbouring items
    /// share it.
    pub(crate) fn reader<'a>(&self, db: &'a sled::Tree) -> Reader<'a> {
        Reader {
            packed: *self,
            db,
            last: None,
        }
    }
}

/// Reads items of one kind, keeping the last value read.
pub(crate) struct Reader<'a> {
    packed: Packed,
    db: &'a sled::Tree,
    last: Option<(u64, Option<IVec>)>,
}

impl Reader<'_> {
    /// Item `index`, if stored.
    pub(crate) fn get(&mut self, index: u64) -> Result<Option<&[u8]>, StoreError> {
        let n = index / PER_VALUE;
        if self.last.as_ref().is_none_or(|(m, _)| *m != n) {
            let value = self.db.get(self.packed.key(index))?;
            self.last = Some((n, value));
        }
        let value = self.last.as_ref().and_then(|(_, v)| v.as_ref());
        self.packed.cut(value, index)
    }

    /// The cursor stored as item `index` (for [`POSITIONS`]).
    pub(crate) fn get_u64(&mut self, index: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.get(index)?.and_then(keys::tail_u64))
    }
}
