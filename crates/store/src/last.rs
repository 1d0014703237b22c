//! The newest checkpoint this node signed, recorded beside the database.
//!
//! sled answers a damaged log by dropping everything after the damage,
//! which would silently take the feed back to an older, valid-looking
//! state. The note recorded here remembers how far the feed had been
//! signed, so opening the store notices (`Store::check_last_checkpoint`),
//! and so does a restore (`lienthong restore`) even when the database will
//! not open.
//!
//! Two files hold it, written in turn: [`LAST_CHECKPOINT_FILES`]. Each
//! write overwrites the older of the two in place and ends with one
//! `fdatasync`; the newer one stays whole, so a write cut off by a crash
//! can tear only the file that held the older note, and the newer valid
//! note of the two is always at least the last one published (it is
//! written before the checkpoint is published). A file is created, the
//! first time only, whole: a temporary file, fsync, rename, fsync of the
//! directory. Before, every write went that way: 0.66–0.87 ms on the
//! bench machine against 0.12–0.18 ms in place, at up to 100 checkpoints a
//! second (docs/benchmarks.md).
//!
//! The first file keeps the name and the content (exactly one note) of the
//! single file of earlier releases, so a store written by one opens in
//! this one. An earlier release reads only the first file, so a clean
//! shutdown leaves the newest note there too (`Store::settle_last_checkpoint`):
//! after a crash the first file may be one behind or torn, which an
//! earlier release would take for no damage or for tampering.
//!
//! On open, both files are fdatasynced before anything is published: what
//! was read may have been in the page cache only, written by a process
//! killed before its fdatasync.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::error::StoreError;
use crate::store::io;

/// The files beside the database that record the newest signed
/// checkpoint, written in turn.
pub const LAST_CHECKPOINT_FILES: [&str; 2] = ["checkpoint.last", "checkpoint.last.b"];

/// What one of the two files holds.
#[derive(Debug)]
enum Slot {
    Missing,
    /// A note signed by this member, of this tree size.
    Signed(u64),
    /// Present, but not a note of this member's: altered, or a write cut
    /// off by a crash.
    Unsigned,
}

/// What the two files record.
#[derive(Debug)]
pub(crate) struct Recorded {
    slots: [Slot; 2],
}

impl Recorded {
    /// Reads both files of `dir` and checks their notes against the feed
    /// `origin` and the member's keys (newest first; any of them counts,
    /// since the note may predate a key rotation).
    pub(crate) fn read(
        dir: &Path,
        origin: &str,
        keys: &[VerifyingKey],
    ) -> Result<Recorded, StoreError> {
        let slot = |name: &str| -> Result<Slot, StoreError> {
            let path = dir.join(name);
            let note = match std::fs::read(&path) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Slot::Missing),
                Err(source) => return Err(io("read", &path)(source)),
            };
            Ok(signed_by_any(&note, origin, keys)
                .map_or(Slot::Unsigned, |cp| Slot::Signed(cp.size())))
        };
        let [a, b] = LAST_CHECKPOINT_FILES;
        Ok(Recorded {
            slots: [slot(a)?, slot(b)?],
        })
    }

    /// The size of the newest note recorded and the file holding it.
    /// `Ok(None)` when neither file exists (a new store, or one from
    /// before the files); an error when files exist but none holds a note
    /// of this member.
    pub(crate) fn newest(&self, dir: &Path) -> Result<Option<(u64, PathBuf)>, StoreError> {
        match self.newest_slot() {
            Some((size, i)) => Ok(Some((size, dir.join(LAST_CHECKPOINT_FILES[i])))),
            None if self.slots.iter().all(|s| matches!(s, Slot::Missing)) => Ok(None),
            None => {
                let present = self.present(dir);
                let (subject, them) = if present.len() == 1 {
                    (
                        "does not hold a checkpoint signed by this member: it was altered or belongs",
                        "the file",
                    )
                } else {
                    (
                        "do not hold a checkpoint signed by this member: they were altered or belong",
                        "both files",
                    )
                };
                Err(StoreError::Integrity(format!(
                    "{} {subject} to another node; \
                     if the store itself verifies (`lienthong feed verify`), move {them} aside and start again",
                    present.join(" and ")
                )))
            }
        }
    }

    /// The file to write next: the one not holding the newest note.
    pub(crate) fn next_slot(&self) -> usize {
        self.newest_slot().map_or(0, |(_, i)| 1 - i)
    }

    /// A file present but not holding a note of this member's, when the
    /// other one does: most likely a write cut off by a crash.
    pub(crate) fn torn(&self, dir: &Path) -> Option<PathBuf> {
        let (_, i) = self.newest_slot()?;
        matches!(self.slots[1 - i], Slot::Unsigned).then(|| dir.join(LAST_CHECKPOINT_FILES[1 - i]))
    }

    /// The size of the newest note of the two, and which file holds it.
    fn newest_slot(&self) -> Option<(u64, usize)> {
        (0..2)
            .filter_map(|i| match self.slots[i] {
                Slot::Signed(size) => Some((size, i)),
                _ => None,
            })
            .max()
    }

    fn present(&self, dir: &Path) -> Vec<String> {
        (0..2)
            .filter(|&i| !matches!(self.slots[i], Slot::Missing))
            .map(|i| dir.join(LAST_CHECKPOINT_FILES[i]).display().to_string())
            .collect()
    }
}

/// The checkpoint `note` of the feed `origin`, if it verifies under one of
/// the member's `keys` (newest first; an older one may have signed it
/// before a key rotation).
pub(crate) fn signed_by_any(
    note: &[u8],
    origin: &str,
    keys: &[VerifyingKey],
) -> Option<lienthong_log::VerifiedCheckpoint> {
    keys.iter()
        .find_map(|k| lienthong_log::verify_checkpoint_with_key(note, origin, k).ok())
}

/// Records `note` in file `slot` of `dir`, durably: in place with one
/// `fdatasync` when the file exists, else created whole.
pub(crate) fn write(dir: &Path, slot: usize, note: &str) -> Result<(), StoreError> {
    let path = dir.join(LAST_CHECKPOINT_FILES[slot]);
    let mut f = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create(dir, &path, note),
        Err(source) => return Err(io("open", &path)(source)),
    };
    f.write_all(note.as_bytes()).map_err(io("write", &path))?;
    // Notes only grow (the size gains digits, the rest has a fixed
    // length), but the file may hold something longer: a damaged note.
    let len = note.len() as u64;
    if f.metadata().map_err(io("stat", &path))?.len() > len {
        f.set_len(len).map_err(io("truncate", &path))?;
    }
    // Also records a change of length; the times are not needed.
    f.sync_data().map_err(io("fdatasync", &path))
}

/// Makes the files of `dir` that exist, and their names, durable.
pub(crate) fn sync(dir: &Path) -> Result<(), StoreError> {
    for name in LAST_CHECKPOINT_FILES {
        let path = dir.join(name);
        match File::open(&path) {
            Ok(f) => f.sync_data().map_err(io("fdatasync", &path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("open", &path)(source)),
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

fn create(dir: &Path, path: &Path, note: &str) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(note.as_bytes()).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// The size of the newest checkpoint recorded in `dir` (a store
/// directory), read without opening the database: `Ok(None)` when nothing
/// is recorded, an error when what is there is not this member's.
pub fn last_signed_size(
    dir: &Path,
    origin: &str,
    keys: &[VerifyingKey],
) -> Result<Option<u64>, StoreError> {
    Ok(Recorded::read(dir, origin, keys)?
        .newest(dir)?
        .map(|(size, _)| size))
}
