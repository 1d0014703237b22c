//! Encoding of sled keys (see the table in the crate docs).

pub const META: u8 = b'M';
/// Layouts 1 to 3 only: one key per entry record (read by the upgrade).
pub const ENTRY: u8 = b'E';
/// Entry records, several to a value (`records` module).
pub const RECORDS: u8 = b'e';
/// Layouts 1 and 2 only: one key per entry id (read by the upgrade).
pub const ID: u8 = b'I';
/// Entry ids in buckets (`hashed` module).
pub const ID_BUCKET: u8 = b'i';
/// Format 1 only: one key per own feed index (read by the upgrade).
pub const FEED: u8 = b'F';
/// Format 1 only: one key per stored hash (read by the upgrade).
pub const HASH: u8 = b'H';
/// Entry ids staged for their buckets (`hashed` module): one value per
/// group, keyed by the group's first cursor.
pub const ID_STAGED: u8 = b'j';
/// Each author's entries: one past the highest index stored here.
pub const STORED_UP_TO: u8 = b'N';
/// Own feed positions, 64 to a value (`packed` module).
pub const FEED_PACKED: u8 = b'f';
/// Own feed stored Merkle hashes, 64 to a value (`packed` module).
pub const HASH_PACKED: u8 = b'h';
/// Layouts 1 and 2 only: one key per reference (read by the upgrade).
pub const REFERENCE: u8 = b'R';
/// References in buckets (`hashed` module).
pub const REFERENCE_BUCKET: u8 = b'r';
/// References staged for their buckets (`hashed` module), as `ID_STAGED`.
pub const REFERENCE_STAGED: u8 = b'k';
/// The filter of recorded references, one value per generation (`filter`
/// module), keyed by the generation u32 BE.
pub const REFERENCE_FILTER: u8 = b'b';
/// Layouts 1 and 2 only: posting blocks of 8-byte cursors (read by the
/// upgrade).
pub const TERM: u8 = b'T';
/// Posting blocks (`postings` module).
pub const POSTING: u8 = b't';
pub const CHECKPOINT: u8 = b'C';
pub const REPLICATION: u8 = b'P';
pub const OPENINGS: u8 = b'O';
pub const CHECKPOINT_RETIRED: u8 = b'Q';
pub const WITNESSED: u8 = b'W';
pub const COSIGNATURE: u8 = b'S';
pub const EVIDENCE: u8 = b'X';
/// Layouts 1 to 3 only: one key per received entry's proof (read by the
/// upgrade).
pub const PROOF: u8 = b'V';
pub const PEER_CHECKPOINT: u8 = b'K';
/// Retraction marks: `Z ‖ target id ‖ cursor of the retraction` → empty.
pub const RETRACTED: u8 = b'Z';

/// The retraction mark of `target` by the entry at `cursor`.
pub fn retracted(target: &[u8], cursor: u64) -> Vec<u8> {
    let mut k = with_bytes(RETRACTED, target);
    k.extend_from_slice(&cursor.to_be_bytes());
    k
}

/// `K`, author length u8, author, tree size u64 BE.
pub fn peer_checkpoint(author: &str, size: u64) -> Vec<u8> {
    let mut k = peer_checkpoint_prefix(author);
    k.extend_from_slice(&size.to_be_bytes());
    k
}

pub fn peer_checkpoint_prefix(author: &str) -> Vec<u8> {
    let a = author.as_bytes();
    let len = u8::try_from(a.len()).unwrap_or(u8::MAX);
    let mut k = vec![PEER_CHECKPOINT, len];
    k.extend_from_slice(&a[..usize::from(len)]);
    k
}

pub fn with_u64(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

pub fn with_bytes(prefix: u8, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + b.len());
    k.push(prefix);
    k.extend_from_slice(b);
    k
}

pub fn meta(name: &str) -> Vec<u8> {
    with_bytes(META, name.as_bytes())
}

/// Prefix of every posting block of one term: `t`, length, term.
pub fn term_prefix(term: &[u8]) -> Vec<u8> {
    let len = u16::try_from(term.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(3 + term.len() + 8);
    k.push(POSTING);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&term[..usize::from(len)]);
    k
}

pub fn posting(term: &[u8], cursor: u64) -> Vec<u8> {
    let mut k = term_prefix(term);
    k.extend_from_slice(&cursor.to_be_bytes());
    k
}

/// The u64 in the last 8 bytes of a key or value.
pub fn tail_u64(b: &[u8]) -> Option<u64> {
    let s = b.len().checked_sub(8)?;
    Some(u64::from_be_bytes(b[s..].try_into().ok()?))
}
