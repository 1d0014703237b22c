//! The filter of recorded references (store layout 6): a Bloom filter that
//! tells the writer, for a reference it is about to record, whether the
//! reference may be recorded already. "No" is certain, so a new reference
//! is staged (`hashed` module) without reading its bucket; "maybe" (about
//! one in two thousand new references per generation, below) is settled by
//! reading the bucket, as before.
//!
//! # Generations
//!
//! The filter grows in generations of [`GEN_KEYS`] references each, 16
//! bits per reference and [`PROBES`] probes: 256 KiB a generation, so
//! about 2 MiB of memory at a million references, and a "maybe" for a new
//! reference about 0.05 % of the time per full generation. Only the newest
//! generation changes. The bit positions come from the reference's salted
//! digest (the `hashed` module), so a submitting system cannot aim at them.
//!
//! # On disk
//!
//! Each generation is [`CHUNKS`] values of [`CHUNK`] bytes
//! ([`keys::REFERENCE_FILTER`], the generation u32 BE, the chunk u16 BE)
//! and a count ([`COUNT_CHUNK`] in place of the chunk), so that a sled leaf
//! (up to 16 keys) holds at most 128 KiB of it. The writer changes the
//! filter in memory once a group is durable and writes the changed chunks
//! in the batch of a later group, under one rule: a reference's run value
//! (`hashed` module) is removed only in a batch that writes, or after one
//! that wrote, the filter holding it. At open the filter is read from disk
//! and every reference of the run values on disk that it does not hold is
//! added. So every recorded reference is in the filter: while its run value
//! exists, from that value; after, from the filter written before the value
//! went. The writer writes the filter at most about once per turn of
//! sweeps (some 32,000 references), not per group.
//!
//! Each write also records the number of generations (`M
//! reference_filter_generations`), so a generation lost as a whole is
//! found at open. A damaged filter is built again from the reference
//! buckets, with a warning: it is derived data.

use std::collections::BTreeMap;

use crate::StoreError;
use crate::hashed::Digest;
use crate::keys;

/// References per generation.
pub(crate) const GEN_KEYS: u32 = 1 << 17;
/// Bits per generation: 16 per reference.
const GEN_BITS: u64 = 1 << 21;
/// Bit probes per reference: about the best for 16 bits per reference.
const PROBES: u64 = 11;
/// Bytes per chunk value.
const CHUNK: usize = 8 * 1024;
/// Chunks per generation.
const CHUNKS: u16 = (GEN_BITS / 8 / CHUNK as u64) as u16;
/// The chunk number under which a generation's count is kept.
const COUNT_CHUNK: u16 = u16::MAX;
/// The meta key recording how many generations the filter on disk has,
/// written with every write of it: a generation lost as a whole is found.
const GENERATIONS: &str = "reference_filter_generations";
/// The bit of a generation's count in a mask of changed chunks.
const COUNT_BIT: u64 = 1 << 63;
const _: () = assert!(CHUNKS < 63);

struct Generation {
    /// References added.
    keys: u32,
    bits: Vec<u8>,
}

impl Generation {
    fn new() -> Self {
        Self {
            keys: 0,
            bits: vec![0; (GEN_BITS / 8) as usize],
        }
    }

    fn has(&self, probes: &[u64; PROBES as usize]) -> bool {
        probes
            .iter()
            .all(|p| self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
    }
}

/// The filter, held by the writer alone.
#[derive(Default)]
pub(crate) struct Filter {
    gens: Vec<Generation>,
    /// Generation → mask of its chunks (bit `c` for chunk `c`, and
    /// [`COUNT_BIT`]) changed since last written.
    changed: BTreeMap<u32, u64>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("generations", &self.gens.len())
            .field("references", &self.len())
            .field("changed_chunks", &self.changed.len())
            .finish()
    }
}

/// The bit positions of a digest in every generation: double hashing over
/// digest bytes the bucket number does not use.
fn probes(d: &Digest) -> [u64; PROBES as usize] {
    let b = d.bytes();
    let h1 = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
    let h2 = u64::from_le_bytes(b[16..24].try_into().unwrap_or_default()) | 1;
    let mut out = [0; PROBES as usize];
    for (i, p) in out.iter_mut().enumerate() {
        *p = h1.wrapping_add((i as u64).wrapping_mul(h2)) % GEN_BITS;
    }
    out
}

fn chunk_key(generation: u32, chunk: u16) -> [u8; 7] {
    let mut k = [0; 7];
    k[0] = keys::REFERENCE_FILTER;
    k[1..5].copy_from_slice(&generation.to_be_bytes());
    k[5..].copy_from_slice(&chunk.to_be_bytes());
    k
}

impl Filter {
    /// Reads the filter from the store (empty if it has none).
    pub(crate) fn load(db: &sled::Tree) -> Result<Self, StoreError> {
        let corrupt = |k: &[u8], detail: String| StoreError::Corrupt {
            key: format!("reference filter {}", crate::store::hex(k)),
            detail,
        };
        let mut gens: Vec<Generation> = Vec::new();
        // Chunks and counts seen, to find any missing.
        let mut seen: Vec<(u32, bool)> = Vec::new();
        for kv in db.scan_prefix([keys::REFERENCE_FILTER]) {
            let (k, v) = kv?;
            let Ok(key) = <[u8; 7]>::try_from(k.as_ref()) else {
                return Err(corrupt(&k, "is not a generation and a chunk".into()));
            };
            let generation = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
            let chunk = u16::from_be_bytes([key[5], key[6]]);
            let g = generation as usize;
            if g > gens.len() {
                return Err(corrupt(
                    &k,
                    format!("generation {generation} follows generation {}", gens.len()),
                ));
            }
            if g == gens.len() {
                gens.push(Generation::new());
                seen.push((0, false));
            }
            if chunk == COUNT_CHUNK {
                let n = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .ok()
                    .filter(|n| *n <= GEN_KEYS)
                    .ok_or_else(|| corrupt(&k, "is not a count up to the generation's".into()))?;
                gens[g].keys = n;
                seen[g].1 = true;
            } else if chunk < CHUNKS && v.len() == CHUNK {
                let at = usize::from(chunk) * CHUNK;
                gens[g].bits[at..at + CHUNK].copy_from_slice(&v);
                seen[g].0 += 1;
            } else {
                return Err(corrupt(
                    &k,
                    format!(
                        "chunk {chunk} of {} bytes is not one of {CHUNKS} of {CHUNK}",
                        v.len()
                    ),
                ));
            }
        }
        if let Some(g) = seen
            .iter()
            .position(|(chunks, count)| *chunks != u32::from(CHUNKS) || !count)
        {
            return Err(corrupt(
                &chunk_key(g as u32, 0)[..5],
                format!(
                    "generation {g} has {} of its {CHUNKS} chunks and {} count",
                    seen[g].0,
                    if seen[g].1 { "its" } else { "no" }
                ),
            ));
        }
        let recorded = db
            .get(keys::meta(GENERATIONS))?
            .map(|v| <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes));
        match recorded {
            None if gens.is_empty() => {}
            Some(Ok(n)) if n as usize == gens.len() => {}
            other => {
                return Err(corrupt(
                    &[keys::REFERENCE_FILTER],
                    format!(
                        "has {} generations where the store recorded {}",
                        gens.len(),
                        match other {
                            Some(Ok(n)) => n.to_string(),
                            Some(Err(_)) => "an unreadable count".into(),
                            None => "none".into(),
                        }
                    ),
                ));
            }
        }
        Ok(Self {
            gens,
            changed: BTreeMap::new(),
        })
    }

    /// The writer's filter at open: the one on disk (built again from the
    /// buckets if it is damaged: it is derived data) with every reference
    /// of the run values on disk, `staged`, added, each only if the
    /// filter does not hold it already (a reference swept and written
    /// with the filter before a restart would otherwise count again at
    /// every restart, and grow the filter).
    pub(crate) fn open(db: &sled::Tree, staged: &[Digest]) -> Result<Self, StoreError> {
        let mut filter = match Self::load(db) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "the filter of references is damaged; building it again from the reference buckets");
                let references = Self::build(db)?;
                tracing::info!(references, "filter of references built again");
                Self::load(db)?
            }
        };
        for d in staged {
            if !filter.may_hold(d) {
                filter.insert(d);
            }
        }
        Ok(filter)
    }

    /// False if the reference of digest `d` is certainly not in the filter.
    pub(crate) fn may_hold(&self, d: &Digest) -> bool {
        let p = probes(d);
        self.gens.iter().any(|g| g.has(&p))
    }

    /// Adds the reference of digest `d`.
    pub(crate) fn insert(&mut self, d: &Digest) {
        let fresh = self.gens.last().is_none_or(|g| g.keys >= GEN_KEYS);
        if fresh {
            self.gens.push(Generation::new());
        }
        let n = u32::try_from(self.gens.len() - 1).unwrap_or(u32::MAX);
        let Some(g) = self.gens.last_mut() else {
            return;
        };
        g.keys += 1;
        // A new generation is written whole: every chunk is on disk.
        let mut mask = COUNT_BIT | if fresh { (1 << CHUNKS) - 1 } else { 0 };
        for p in probes(d) {
            let byte = (p / 8) as usize;
            g.bits[byte] |= 1 << (p % 8);
            mask |= 1 << (byte / CHUNK);
        }
        *self.changed.entry(n).or_default() |= mask;
    }

    /// References added.
    pub(crate) fn len(&self) -> u64 {
        self.gens.iter().map(|g| u64::from(g.keys)).sum()
    }

    /// Puts the chunks changed since [`Filter::written`] into `batch`.
    pub(crate) fn write_changed(&self, batch: &mut sled::Batch) {
        let generations = u32::try_from(self.gens.len()).unwrap_or(u32::MAX);
        batch.insert(keys::meta(GENERATIONS), &generations.to_be_bytes());
        for (&g, &mask) in &self.changed {
            let generation = &self.gens[g as usize];
            if mask & COUNT_BIT != 0 {
                batch.insert(&chunk_key(g, COUNT_CHUNK), &generation.keys.to_be_bytes());
            }
            for chunk in (0..CHUNKS).filter(|c| mask & (1 << c) != 0) {
                let at = usize::from(chunk) * CHUNK;
                batch.insert(&chunk_key(g, chunk), &generation.bits[at..at + CHUNK]);
            }
        }
    }

    /// Once a batch from [`Filter::write_changed`] is applied: nothing
    /// has changed since.
    pub(crate) fn written(&mut self) {
        self.changed.clear();
    }

    /// Builds the filter of every reference in the buckets and writes all of
    /// it (the upgrade to layout 6): returns the references added.
    pub(crate) fn build(db: &sled::Tree) -> Result<u64, StoreError> {
        crate::store::remove_prefix(db, keys::REFERENCE_FILTER, 4096)?;
        let mut filter = Self::default();
        crate::hashed::REFERENCES.for_each_digest(db, |d| filter.insert(d))?;
        let mut batch = sled::Batch::default();
        filter.write_changed(&mut batch);
        db.apply_batch(batch)?;
        filter.written();
        Ok(filter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashed::{REFERENCES, Salt};

    fn digest(n: u32) -> Digest {
        REFERENCES.digest(&Salt([3; 16]), &n.to_be_bytes())
    }

    #[test]
    fn every_added_reference_is_held_and_few_others_seem_to_be() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut f = Filter::default();
        let n = GEN_KEYS + GEN_KEYS / 2;
        for i in 0..n {
            f.insert(&digest(i));
        }
        assert_eq!((f.gens.len(), f.len()), (2, u64::from(n)));
        assert!((0..n).all(|i| f.may_hold(&digest(i))));
        // Two generations, the first full: about 0.05 % + less.
        let false_maybe = (n..n + 200_000).filter(|i| f.may_hold(&digest(*i))).count();
        assert!(
            false_maybe < 400,
            "{false_maybe} of 200,000 new seemed held"
        );

        // Written and read back: the same answers, nothing left to write.
        let mut batch = sled::Batch::default();
        f.write_changed(&mut batch);
        db.apply_batch(batch).unwrap();
        f.written();
        assert!(f.changed.is_empty());
        let back = Filter::load(&db).unwrap();
        assert_eq!((back.gens.len(), back.len()), (2, u64::from(n)));
        assert!((0..n).all(|i| back.may_hold(&digest(i))));
        for (a, b) in f.gens.iter().zip(&back.gens) {
            assert!(a.bits == b.bits);
        }

        // Only the changed chunks are written again.
        f.insert(&digest(n));
        let changed: Vec<_> = f
            .changed
            .iter()
            .map(|(g, m)| (*g, m.count_ones()))
            .collect();
        assert!(
            changed.len() == 1 && changed[0].0 == 1 && changed[0].1 <= 12,
            "{changed:?}"
        );
        let mut batch = sled::Batch::default();
        f.write_changed(&mut batch);
        db.apply_batch(batch).unwrap();
        assert!(Filter::load(&db).unwrap().may_hold(&digest(n)));
    }

    /// At open, references of run values the filter holds already do not
    /// count again; a filter missing a whole generation is found and built
    /// again from the buckets.
    #[test]
    fn opening_adds_only_what_is_new_and_rebuilds_a_damaged_filter() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let n = GEN_KEYS + 1000;
        let mut items: Vec<_> = (0..n).map(|i| (digest(i), u64::from(i))).collect();
        REFERENCES.write_all(&db, &mut items).unwrap();
        assert_eq!(Filter::build(&db).unwrap(), u64::from(n));
        let staged: Vec<_> = (n - 500..n + 500).map(digest).collect();
        let f = Filter::open(&db, &staged).unwrap();
        assert_eq!((f.gens.len(), f.len()), (2, u64::from(n) + 500));
        assert!(staged.iter().all(|d| f.may_hold(d)));
        // The second generation lost whole, count and chunks.
        for k in db.scan_prefix(&chunk_key(1, 0)[..5]).keys() {
            db.remove(k.unwrap()).unwrap();
        }
        let e = Filter::load(&db).unwrap_err().to_string();
        assert!(
            e.contains("has 1 generations where the store recorded 2"),
            "{e}"
        );
        let f = Filter::open(&db, &[]).unwrap();
        assert!((0..n).all(|i| f.may_hold(&digest(i))));
        assert_eq!(Filter::load(&db).unwrap().len(), u64::from(n));
        // Every value gone but the count: found too.
        crate::store::remove_prefix(&db, keys::REFERENCE_FILTER, 4096).unwrap();
        let e = Filter::load(&db).unwrap_err().to_string();
        assert!(
            e.contains("has 0 generations where the store recorded 2"),
            "{e}"
        );
    }

    #[test]
    fn a_damaged_filter_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut f = Filter::default();
        f.insert(&digest(1));
        let mut batch = sled::Batch::default();
        f.write_changed(&mut batch);
        db.apply_batch(batch).unwrap();
        db.remove(chunk_key(0, 3)).unwrap();
        let e = Filter::load(&db).unwrap_err().to_string();
        assert!(e.contains("generation 0 has 31 of its 32 chunks"), "{e}");
        db.insert(chunk_key(0, 3), vec![0; 100]).unwrap();
        let e = Filter::load(&db).unwrap_err().to_string();
        assert!(e.contains("chunk 3 of 100 bytes"), "{e}");
        db.insert(chunk_key(0, 3), vec![0; CHUNK]).unwrap();
        db.insert(chunk_key(2, 0), vec![0; CHUNK]).unwrap();
        let e = Filter::load(&db).unwrap_err().to_string();
        assert!(e.contains("generation 2 follows generation 1"), "{e}");
    }
}
