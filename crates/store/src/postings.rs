//! Posting blocks of the search index (`t`): the cursors of the entries
//! carrying a term, up to [`BLOCK_CURSORS`] to a sled value, keyed by the
//! term and the block's first cursor (`keys::posting`).
//!
//! A block's value is its cursors ascending, as LEB128 varints: the first
//! one whole, each later one as its distance from the one before. Cursors
//! of a common term are close together, so most take one byte: a full
//! block of a term every entry has is 512 bytes, where 512 cursors of
//! 8 bytes (layout 2, `T`, 64 to a block) were 4 KiB.
//!
//! Every entry carries about 30 terms, so postings are most of the keys a
//! store needs after the entries themselves, and sled 0.34 keeps memory
//! for every leaf of keys (about 40 bytes a key, docs/benchmarks.md). At
//! 64 cursors a block they were half a key per entry; at 512, a sixteenth.

use crate::StoreError;
use crate::keys;

/// Cursors a posting block holds at most.
///
/// Every group rewrites the last block of each of its terms (and sled the
/// leaf holding it), so larger blocks save keys but write more per group:
/// at one alert per group the node rewrites about half a block per term
/// per alert. With varints that is a few hundred bytes per term at 512,
/// about what 64 cursors of 8 bytes cost.
pub(crate) const BLOCK_CURSORS: usize = 512;

/// A posting block as the writer last wrote it: its key, its value, how
/// many cursors it holds and the last one.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    key: Vec<u8>,
    value: Vec<u8>,
    count: usize,
    last: u64,
}

impl Block {
    /// A block read from the store; checks that its value decodes.
    fn read(key: Vec<u8>, value: Vec<u8>) -> Result<Self, StoreError> {
        let mut count = 0;
        let mut last = None;
        for c in cursors(&value) {
            last = Some(c.map_err(|detail| bad_block(&key, detail))?);
            count += 1;
        }
        let last = last.ok_or_else(|| bad_block(&key, "is empty".into()))?;
        Ok(Self {
            key,
            value,
            count,
            last,
        })
    }

    /// A new block holding `first`.
    fn start(term: &[u8], first: u64) -> Self {
        let mut value = Vec::with_capacity(64);
        prost::encoding::encode_varint(first, &mut value);
        Self {
            key: keys::posting(term, first),
            value,
            count: 1,
            last: first,
        }
    }

    fn push(&mut self, cursor: u64) {
        prost::encoding::encode_varint(cursor - self.last, &mut self.value);
        self.count += 1;
        self.last = cursor;
    }

    /// Bytes the writer keeps for it.
    pub(crate) fn size(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

/// The cursors of a block's value, ascending; an error names what is
/// wrong with a value that does not decode.
pub(crate) fn cursors(v: &[u8]) -> impl Iterator<Item = Result<u64, String>> + '_ {
    let mut rest = v;
    let mut last: Option<u64> = None;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let item = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| e.to_string())
            .and_then(|d| match last {
                None => Ok(d),
                Some(l) if d > 0 => l.checked_add(d).ok_or_else(|| "overflows".into()),
                Some(_) => Err("repeats a cursor".into()),
            });
        match &item {
            Ok(c) => last = Some(*c),
            Err(_) => rest = &[],
        }
        Some(item)
    })
}

/// The error for the posting block under `key`.
pub(crate) fn bad_block(key: &[u8], detail: String) -> StoreError {
    StoreError::Corrupt {
        key: format!("posting block {}", crate::store::hex(key)),
        detail,
    }
}

/// How many cursors a block's value holds (each varint ends with a byte
/// below 0x80).
pub(crate) fn count(v: &[u8]) -> usize {
    v.iter().filter(|b| **b < 0x80).count()
}

/// Adds `sorted` (ascending cursors, all above every cursor already posted
/// under `term`) to the postings of `term`: first into the term's last
/// block, up to [`BLOCK_CURSORS`], then in new blocks of at most that
/// many.
///
/// Filling the last block, rather than adding one block per group, keeps
/// the number of keys near postings / 512. With one block per group (up to
/// 0.2.0), a node taking alerts one at a time wrote a key for every word
/// of every alert. (A tail of small blocks merged into full ones, tried
/// too, wrote 162 KB per alert at one alert per group: sled split and
/// merged leaves as blocks came and went.)
///
/// `known` is the term's last block if the caller knows it (`None`: read
/// from `db`). Returns the term's last block after the addition, as
/// written to `batch` (`None` if `sorted` is empty and nothing is known).
pub(crate) fn add(
    db: &sled::Tree,
    batch: &mut sled::Batch,
    term: &[u8],
    sorted: &[u64],
    known: Option<Block>,
) -> Result<Option<Block>, StoreError> {
    let Some(&first) = sorted.first() else {
        return Ok(known);
    };
    let mut block = match known {
        Some(k) => Some(k),
        None => db
            .scan_prefix(keys::term_prefix(term))
            .next_back()
            .transpose()?
            .map(|(k, v)| Block::read(k.to_vec(), v.to_vec()))
            .transpose()?,
    };
    // Blocks stay ascending and disjoint, which queries rely on: new
    // cursors are above every cursor stored, or something is wrong.
    if let Some(b) = &block
        && b.last >= first
    {
        return Err(bad_block(
            &b.key,
            format!(
                "ends at cursor {}, at or above cursor {first}, which is being added now",
                b.last
            ),
        ));
    }
    let mut dirty = false;
    for &c in sorted {
        match &mut block {
            Some(b) if b.count < BLOCK_CURSORS => {
                b.push(c);
                dirty = true;
            }
            _ => {
                if let (Some(b), true) = (&block, dirty) {
                    batch.insert(b.key.as_slice(), b.value.as_slice());
                }
                block = Some(Block::start(term, c));
                dirty = true;
            }
        }
    }
    if let (Some(b), true) = (&block, dirty) {
        batch.insert(b.key.as_slice(), b.value.as_slice());
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_to_what_was_pushed_and_bad_ones_are_named() {
        let list = [3u64, 4, 5, 200, 70_000, 70_001, u64::MAX / 2];
        let mut b = Block::start(b"x", list[0]);
        for c in &list[1..] {
            b.push(*c);
        }
        let got: Vec<u64> = cursors(&b.value).map(Result::unwrap).collect();
        assert_eq!(got, list);
        assert_eq!(count(&b.value), list.len());
        assert_eq!((b.count, b.last), (list.len(), list[6]));
        let again = Block::read(b.key.clone(), b.value.clone()).unwrap();
        assert_eq!((again.count, again.last), (b.count, b.last));
        // A truncated varint, and a zero distance.
        let e = Block::read(b"k".to_vec(), vec![0x05, 0x80]).unwrap_err();
        assert!(e.to_string().contains("posting block 6b"), "{e}");
        let e = Block::read(b"k".to_vec(), vec![0x05, 0x00]).unwrap_err();
        assert!(e.to_string().contains("repeats a cursor"), "{e}");
    }
}
