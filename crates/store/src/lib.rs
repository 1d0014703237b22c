//! Durable storage of one Liên Thông node, on sled.
//!
//! The store holds this member's own feed (entries, Merkle hashes, signed
//! checkpoints), the search indexes, and the node-local order in which
//! entries were stored (the *cursor*). It never decides what is valid: it
//! accepts only [`lienthong_core::entry::VerifiedEntry`] values it signed
//! itself, and it never serves anything that is not yet durable.
//!
//! # Write path (the [`writer::Writer`] thread, the only writer)
//!
//! 1. Wait for submissions; take every one queued (up to `max_batch`): this
//!    is the group.
//! 2. For each, look up its reference: a known reference is answered with
//!    the first entry (`duplicate = true`) and takes no index. A received
//!    entry is looked up by id the same way, unless its index is past every
//!    received index of its author (`N`), so that it cannot be stored yet
//!    (entries of the own feed are always looked up).
//! 3. Assign feed indexes and cursors in order; set `created_unix_ms` from
//!    the clock, never below the previous entry's.
//! 4. Sign every body (in parallel for large groups). Signing holds no lock
//!    that readers need.
//! 5. Compute the RFC 6962 stored hashes of the new leaves; if a checkpoint
//!    is due, compute the new root and sign the checkpoint.
//! 6. Write entries, ids (staged, and the next slice of id buckets swept:
//!    the `hashed` module), feed positions, hashes, references, index
//!    terms, counters and the checkpoint in **one** atomic sled batch.
//! 7. `Db::flush()`, then `fsync` the data file (sled's flush uses
//!    `sync_file_range`, which does not survive power loss). With a new
//!    checkpoint, then record its note beside the database (the `last`
//!    module), so that a database later found behind it is refused.
//! 8. Only now publish the new durable sizes (readers filter on them) and
//!    the checkpoint, and answer every submission of the group.
//!
//! If step 6 or 7 fails the store is marked failed: everything after is
//! refused until the node restarts, because sled's memory may then hold
//! writes the disk does not.
//!
//! # Key layout (one sled tree, so a batch is atomic)
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | name | meta value (`format`, `member`, `origin`, `feed_size`, `next_cursor`, `terms_version`: see the `reindex` module) |
//! | `e` | cursor of the value's first record, u64 BE | up to 8 consecutive items (fewer once 6 KiB), each the record (version, verification, stored time, envelope) and, for an entry received from a peer, its proof (the size of the author's checkpoint it was proven under, then the inclusion proof's 32-byte hashes), each a LEB128 length and the bytes (`records` module) |
//! | `M` `index_salt` | | 16 random bytes, made once per store: the salt of the `i` and `r` digests |
//! | `i` | bucket: first 2 bytes of the id's salted digest | the bucket's ids, sorted: the other 30 digest bytes and the cursor u64 BE each (`hashed` module) |
//! | `j` | first cursor of the group that wrote it, u64 BE | the ids that group staged for their buckets: salted digest (32 bytes) and cursor u64 BE each; loaded into memory at open, swept into the buckets by later groups, removed a whole turn of sweeps later (`hashed` module) |
//! | `N` | author member code | one past the highest index of that author's entries stored here: a received entry at or past it needs no look-up by id |
//! | `f` | own feed index / 64, u64 BE | the cursors of those 64 feed indexes, u64 BE each, in order (the last value may hold fewer) |
//! | `h` | stored-hash index / 64, u64 BE | those 64 stored hashes, 32 bytes each, in order (the last value may hold fewer) |
//! | `r` | bucket: first 2 bytes of the reference's salted digest | the bucket's references, as for `i` |
//! | `k` | first cursor of the group that wrote it, u64 BE | the references that group staged for their buckets, as for `j` |
//! | `M` `reference_filter_generations` | | generations of the filter of references on disk, u32 BE, written with it |
//! | `b` | generation u32 BE, chunk u16 BE | 8 KiB of that generation of the filter of recorded references, or (chunk `ffff`) its count of references u32 BE (`filter` module) |
//! | `t` | term length u16 BE, term, first cursor of the block | the block's cursors ascending, as LEB128 varints (the first whole, then each as its distance from the previous): at most 512; a group's new cursors fill the term's last block first (`postings` module) |
//! | `C` | tree size u64 BE | signed checkpoint note |
//! | `P` | author member code | next index to ask that author for (replication cursor) |
//! | `O` | cursor u64 BE | `OpeningSet`: values of the entry's withheld fields this node may see (and, for the author, who may see which) |
//! | `Q` | tree size u64 BE | a checkpoint note signed with a retired key, kept when the same tree was signed again after a key rotation |
//! | `W` | member code | the checkpoint of that member this node last cosigned as a witness (note text) |
//! | `S` | own tree size u64 BE, witness member code | that witness's cosignature line on the own checkpoint of that size |
//! | `X` | evidence id u64 BE | `EvidenceRecord` (protobuf): equivocating checkpoints or a refused signed entry |
//! | `K` | author length u8, author, tree size u64 BE | that author's checkpoint note as delivered with entries |

mod error;
mod filter;
mod hashed;
mod keys;
mod last;
mod packed;
mod postings;
mod read;
mod records;
mod reindex;
mod store;
mod upgrade;
mod witness;
pub mod writer;

pub use error::StoreError;
pub use last::{LAST_CHECKPOINT_FILES, last_signed_size};
pub use read::{Deliverable, Page, Query, StoredEntry, Verification};
pub use store::{BackupInfo, CheckpointRecord, DEFAULT_CACHE_BYTES, Durable, OpenOptions, Store};
pub use witness::MAX_EVIDENCE;
pub use writer::{
    Appended, CommitObserver, CommitStats, FeedSigner, NewEntry, Writer, WriterConfig,
};

/// Version of the on-disk layout written by this code. Formats 1 (releases
/// up to 0.2.0), 2 (one key per id and per reference), 3 (one key per
/// entry record), 4 (no staged ids) and 5 (no staged references) are
/// upgraded at open (`upgrade` module); later ones are refused.
pub const STORE_FORMAT: u32 = 6;
