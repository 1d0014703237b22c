//! Entry records packed several to a sled value (`e`).
//!
//! Every stored entry has a record (`read::encode_record`): its
//! verification, stored time and signed envelope. An entry received from a
//! peer also has the proof it came with: the size of the author's
//! checkpoint and the inclusion proof, kept so that this node can show
//! later that the author committed to it (`Store::received_proof`).
//!
//! Up to layout 3 each record was a sled key of its own, and each proof
//! one more. sled 0.34 keeps memory for every leaf of 8–16 keys, loaded or
//! not: with a million entries the records were 80% of a store's keys and
//! half of a restarted node's memory (docs/benchmarks.md). Cursors are
//! dense, so records grow only at the end, one group at a time, and can be
//! packed: a value holds up to [`PER_VALUE`].
//!
//! A value is keyed by the cursor of its first record and holds an item
//! per cursor, in order: the record's length (a LEB128 varint) and bytes,
//! then the proof's length and bytes (length 0: no proof). A value takes
//! no further item once it holds [`PER_VALUE`] or once the next would take
//! it past [`VALUE_BYTES`]; a larger item has a value of its own. Values
//! thus vary in count, and the value holding a cursor is the one with the
//! greatest key not above it.
//!
//! A group commit rewrites the last value with its new items appended and
//! adds values after it, in the same atomic batch as everything else of
//! the group: a reader sees the old value or the new one, the old one a
//! prefix of the new, and reads by cursor never go past the durable size.

use sled::IVec;

use crate::StoreError;
use crate::keys;

/// Records per value at most. With the bench's alerts (about 600 bytes
/// each) a million entries take 125,000 keys instead of a million.
pub(crate) const PER_VALUE: usize = 8;

/// Bytes per value at most, unless one record is larger. A sled leaf holds
/// up to 16 values, so a leaf of full values stays below the 128 KiB above
/// which sled moves a page out of its log into a file of its own.
pub(crate) const VALUE_BYTES: usize = 6 * 1024;

/// The key of the value whose first record has cursor `first`.
fn key(first: u64) -> [u8; 9] {
    keys::with_u64(keys::RECORDS, first)
}

fn corrupt(first: u64, detail: String) -> StoreError {
    StoreError::Corrupt {
        key: format!("entry records from cursor {first}"),
        detail,
    }
}

/// Where one item lies in its value: the record's and the proof's offset
/// and length.
#[derive(Debug, Clone, Copy)]
struct Part {
    record: (usize, usize),
    proof: (usize, usize),
}

/// Where each item of a value lies in it.
fn split(first: u64, value: &[u8]) -> Result<Vec<Part>, StoreError> {
    let mut out = Vec::with_capacity(PER_VALUE);
    let mut rest = value;
    // One length-prefixed field: its offset and length.
    let field = |rest: &mut &[u8], n: usize, what: &str, empty: bool| {
        let len = prost::encoding::decode_varint(rest)
            .map_err(|_| corrupt(first, format!("{what} {n} has no length")))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| (empty || *len > 0) && *len <= rest.len())
            .ok_or_else(|| {
                corrupt(
                    first,
                    format!(
                        "{what} {n} claims {len} bytes where {} are left",
                        rest.len()
                    ),
                )
            })?;
        let at = value.len() - rest.len();
        *rest = &rest[len..];
        Ok::<_, StoreError>((at, len))
    };
    while !rest.is_empty() {
        let n = out.len();
        let record = field(&mut rest, n, "record", false)?;
        let proof = field(&mut rest, n, "proof", true)?;
        out.push(Part { record, proof });
    }
    if out.is_empty() {
        return Err(corrupt(first, "holds no record".into()));
    }
    Ok(out)
}

/// The stored value holding `cursor`, if any.
fn holding(db: &sled::Tree, cursor: u64) -> Result<Option<Value>, StoreError> {
    db.range(key(0)..=key(cursor))
        .next_back()
        .transpose()?
        .map(|(k, value)| Value::read(&k, value))
        .transpose()
}

/// One stored value, split.
struct Value {
    first: u64,
    value: IVec,
    parts: Vec<Part>,
}

impl Value {
    /// The value stored under key `k`, split.
    fn read(k: &[u8], value: IVec) -> Result<Self, StoreError> {
        let first =
            keys::tail_u64(k)
                .filter(|_| k.len() == 9)
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("entry records key {}", crate::store::hex(k)),
                    detail: "is not a prefix and a cursor".into(),
                })?;
        let parts = split(first, &value)?;
        Ok(Value {
            first,
            value,
            parts,
        })
    }

    fn part(&self, cursor: u64) -> Option<Part> {
        let i = usize::try_from(cursor.checked_sub(self.first)?).ok()?;
        self.parts.get(i).copied()
    }

    /// The record at `cursor`, if this value holds it.
    fn record(&self, cursor: u64) -> Option<IVec> {
        let (at, len) = self.part(cursor)?.record;
        Some(self.value.subslice(at, len))
    }

    /// The proof stored with the record at `cursor`, if this value holds
    /// it (empty: none).
    fn proof(&self, cursor: u64) -> Option<IVec> {
        let (at, len) = self.part(cursor)?.proof;
        Some(self.value.subslice(at, len))
    }

    /// One past the last cursor this value holds.
    fn end(&self) -> u64 {
        self.first + self.parts.len() as u64
    }
}

/// The record at `cursor`, if stored. The caller checks the cursor against
/// the durable size.
pub(crate) fn get(db: &sled::Tree, cursor: u64) -> Result<Option<IVec>, StoreError> {
    Ok(holding(db, cursor)?.and_then(|v| v.record(cursor)))
}

/// The proof stored with the entry at `cursor`: `None` if there is no
/// such entry or it came with no proof.
pub(crate) fn get_proof(db: &sled::Tree, cursor: u64) -> Result<Option<IVec>, StoreError> {
    Ok(holding(db, cursor)?
        .and_then(|v| v.proof(cursor))
        .filter(|p| !p.is_empty()))
}

/// A record to append, with its cursor and the proof it came with (empty:
/// none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) cursor: u64,
    pub(crate) record: Vec<u8>,
    pub(crate) proof: Vec<u8>,
}

impl Item {
    fn encoded_len(&self) -> usize {
        prost::encoding::encoded_len_varint(self.record.len() as u64)
            + self.record.len()
            + prost::encoding::encoded_len_varint(self.proof.len() as u64)
            + self.proof.len()
    }
}

/// Reads records by cursor, keeping the last value read: reading cursors
/// in order takes one sled lookup per value, not one per record.
pub(crate) struct Reader<'a> {
    db: &'a sled::Tree,
    last: Option<Value>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(db: &'a sled::Tree) -> Self {
        Reader { db, last: None }
    }

    /// The record at `cursor`, if stored.
    pub(crate) fn get(&mut self, cursor: u64) -> Result<Option<IVec>, StoreError> {
        if let Some(r) = self.last.as_ref().and_then(|v| v.record(cursor)) {
            return Ok(Some(r));
        }
        self.last = holding(self.db, cursor)?;
        Ok(self.last.as_ref().and_then(|v| v.record(cursor)))
    }
}

/// Every stored record in cursor order, with its cursor.
pub(crate) fn all(db: &sled::Tree) -> impl Iterator<Item = Result<(u64, IVec), StoreError>> + '_ {
    db.scan_prefix([keys::RECORDS]).flat_map(|kv| {
        let split = kv
            .map_err(StoreError::from)
            .and_then(|(k, value)| Value::read(&k, value));
        let items: Vec<Result<(u64, IVec), StoreError>> = match split {
            Ok(v) => (v.first..v.end())
                .filter_map(|c| v.record(c).map(|r| Ok((c, r))))
                .collect(),
            Err(err) => vec![Err(err)],
        };
        items
    })
}

/// Appends `items`, which must have the cursors `next ..` in order, to
/// `batch`; `next` must be the number of records stored. The last stored
/// value is read from `db` and, if it has room, rewritten with the first
/// new items after its own.
pub(crate) fn append(
    db: &sled::Tree,
    batch: &mut sled::Batch,
    next: u64,
    items: &[Item],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        let cursor = item.cursor;
        if cursor != next + i as u64 {
            return Err(corrupt(
                next,
                format!(
                    "new record {i} has cursor {cursor}, not {}",
                    next + i as u64
                ),
            ));
        }
    }
    let (mut first, mut count, mut value) = (next, 0usize, Vec::with_capacity(VALUE_BYTES));
    if next > 0 {
        let last = holding(db, next - 1)?
            .filter(|v| v.end() == next)
            .ok_or_else(|| {
                corrupt(
                    next,
                    format!("no stored value ends at cursor {next}, the number of records stored"),
                )
            })?;
        if last.parts.len() < PER_VALUE && last.value.len() < VALUE_BYTES {
            first = last.first;
            count = last.parts.len();
            value.extend_from_slice(&last.value);
        }
    }
    for item in items {
        let size = item.encoded_len();
        if count > 0 && (count == PER_VALUE || value.len() + size > VALUE_BYTES) {
            batch.insert(&key(first), std::mem::take(&mut value));
            first = item.cursor;
            count = 0;
        }
        for field in [&item.record, &item.proof] {
            prost::encoding::encode_varint(field.len() as u64, &mut value);
            value.extend_from_slice(field);
        }
        count += 1;
    }
    batch.insert(&key(first), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    /// A record of `len` bytes; every third one with a proof.
    fn record(cursor: u64, len: usize) -> Item {
        Item {
            cursor,
            record: vec![(cursor % 251) as u8 + 1; len],
            proof: if cursor.is_multiple_of(3) {
                Vec::new()
            } else {
                vec![0xaa; 1 + cursor as usize % 5]
            },
        }
    }

    /// Appends `records` in groups of the given sizes, as the writer would.
    fn append_groups(db: &sled::Db, records: &[Item], groups: &[usize]) {
        let mut at = 0;
        for g in groups {
            let mut batch = sled::Batch::default();
            append(db, &mut batch, at as u64, &records[at..at + g]).unwrap();
            db.apply_batch(batch).unwrap();
            at += g;
        }
        assert_eq!(at, records.len());
    }

    fn value_counts(db: &sled::Db) -> Vec<(u64, usize)> {
        db.scan_prefix([keys::RECORDS])
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let first = keys::tail_u64(&k).unwrap();
                (first, split(first, &v).unwrap().len())
            })
            .collect()
    }

    /// Records taken one at a time, in groups, or larger than a value all
    /// read back by cursor, in order and through a reader; values fill up
    /// to 8 records or 6 KiB whatever the group sizes.
    #[test]
    fn records_read_back_whatever_the_groups() {
        let (_d, db) = db();
        let mut records: Vec<_> = (0..40).map(|c| record(c, 100)).collect();
        records[20].record = vec![9; 10_000];
        records[21].record = vec![8; 3_040];
        records[22].record = vec![7; 3_040];
        append_groups(&db, &records, &[1, 1, 1, 5, 3, 9, 1, 19]);
        // 0..8 and 8..16 full; 16..20 then the big one alone; 21 and 22
        // share a value (6,089 bytes with their proofs), 23 does not fit;
        // then 8 at a time.
        assert_eq!(
            value_counts(&db),
            [
                (0, 8),
                (8, 8),
                (16, 4),
                (20, 1),
                (21, 2),
                (23, 8),
                (31, 8),
                (39, 1)
            ]
        );
        let mut reader = Reader::new(&db);
        for Item {
            cursor: c,
            record: r,
            proof: p,
        } in &records
        {
            assert_eq!(get(&db, *c).unwrap().as_deref(), Some(&r[..]), "{c}");
            assert_eq!(reader.get(*c).unwrap().as_deref(), Some(&r[..]), "{c}");
            let proof = get_proof(&db, *c).unwrap();
            assert_eq!(proof.as_deref(), (!p.is_empty()).then_some(&p[..]), "{c}");
        }
        assert_eq!(get(&db, 40).unwrap(), None);
        assert_eq!(get_proof(&db, 40).unwrap(), None);
        assert_eq!(reader.get(40).unwrap(), None);
        assert_eq!(
            reader.get(3).unwrap().as_deref(),
            Some(&records[3].record[..])
        );
        let scanned: Vec<_> = all(&db)
            .map(|r| r.map(|(c, v)| (c, v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<_> = records
            .iter()
            .map(|i| (i.cursor, i.record.clone()))
            .collect();
        assert_eq!(scanned, want);
    }

    /// Appending anything but the next cursors, or after a value that does
    /// not end where the store does, and reading a value that does not
    /// split into records, are refused as corrupt.
    #[test]
    fn bad_appends_and_values_are_refused() {
        let (_d, db) = db();
        let records: Vec<_> = (0..3).map(|c| record(c, 10)).collect();
        append_groups(&db, &records, &[3]);
        let mut batch = sled::Batch::default();
        let gap = append(&db, &mut batch, 3, &[record(4, 10)]).unwrap_err();
        assert!(gap.to_string().contains("has cursor 4, not 3"), "{gap}");
        let behind = append(&db, &mut batch, 5, &[record(5, 10)]).unwrap_err();
        assert!(
            behind
                .to_string()
                .contains("no stored value ends at cursor 5"),
            "{behind}"
        );
        db.insert(key(0), &[20u8, 1, 2][..]).unwrap();
        let short = get(&db, 1).unwrap_err();
        assert!(
            short
                .to_string()
                .contains("record 0 claims 20 bytes where 2 are left"),
            "{short}"
        );
        db.insert(key(0), &[1u8, 1][..]).unwrap();
        let no_proof = get(&db, 0).unwrap_err();
        assert!(
            no_proof.to_string().contains("proof 0 has no length"),
            "{no_proof}"
        );
        db.insert(key(0), &[0x80u8][..]).unwrap();
        assert!(get(&db, 0).is_err());
        assert!(all(&db).any(|r| r.is_err()));
    }
}
