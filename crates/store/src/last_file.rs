//! `checkpoint.last`, written beside the database off the writer's path.
//!
//! sled answers a damaged log by dropping everything after the damage,
//! which would silently take the feed back to an older, valid-looking
//! state. The file remembers how far the feed had been signed, so opening
//! the store notices ([`crate::Store::open`] refuses a store behind it).
//!
//! Writing it costs a temporary file, its fsync, a rename and an fsync of
//! the directory. Done by the writer after each checkpoint, that delayed
//! both the checkpoint's publication (peers are served only entries a
//! published checkpoint covers) and every group queued behind it. So a
//! thread of its own writes the newest note it was given; notes handed
//! over while it writes replace one another, and only the newest is
//! written next.
//!
//! What may lag is safe: the file is only ever a checkpoint the database
//! already holds durably (the writer hands a note over after its fsync),
//! and a store ahead of its file rewrites the file at open. What a lag
//! gives up is the check of the last few milliseconds of checkpoints after
//! a crash of the whole machine; peers that received them still refuse a
//! feed behind them (`Store::fail` on gossip).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::StoreError;

/// Name of the file beside the database.
pub const LAST_CHECKPOINT_FILE: &str = "checkpoint.last";

/// The writer of one store's `checkpoint.last`.
pub(crate) struct LastFile {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
    /// Where a failed write is reported: the store's own failure slot, so
    /// that the writer refuses every group after it.
    failed: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct State {
    /// The newest note not yet written.
    pending: Option<String>,
    /// A note is being written.
    busy: bool,
    /// The store is closing: write what is pending, then end.
    stop: bool,
    /// The last write failed, and why.
    error: Option<String>,
}

impl LastFile {
    pub(crate) fn new(dir: &Path, failed: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                failed,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Hands `note` over to be written, replacing any note not yet
    /// written, and returns at once. `note` must be durable in the
    /// database already.
    pub(crate) fn record(&self, note: &str) -> Result<(), StoreError> {
        self.start()?;
        let mut s = self.shared.lock();
        s.pending = Some(note.to_owned());
        drop(s);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Returns once every note handed over is written, or with the error
    /// of the write that failed.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.shared.lock();
        while s.pending.is_some() || s.busy {
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
        match &s.error {
            None => Ok(()),
            Some(why) => Err(StoreError::Failed(why.clone())),
        }
    }

    /// Writes `note` now: [`LastFile::record`], then [`LastFile::flush`].
    pub(crate) fn write(&self, note: &str) -> Result<(), StoreError> {
        self.record(note)?;
        self.flush()
    }

    fn start(&self) -> Result<(), StoreError> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = Some(
                std::thread::Builder::new()
                    .name("checkpoint-file".into())
                    .spawn(move || shared.run())
                    .map_err(|source| StoreError::Io {
                        action: "start the checkpoint file thread",
                        path: "-".into(),
                        source,
                    })?,
            );
        }
        Ok(())
    }
}

impl Drop for LastFile {
    /// Writes what is pending and ends the thread.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut s = self.lock();
        loop {
            if let Some(note) = s.pending.take() {
                s.busy = true;
                drop(s);
                let written = write_file(&self.dir, &note);
                s = self.lock();
                s.busy = false;
                if let Err(e) = written {
                    let why = format!("writing {LAST_CHECKPOINT_FILE}: {e}");
                    tracing::error!(error = %why, "refusing further writes until restart");
                    self.failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| why.clone());
                    s.error = Some(why);
                }
                self.changed.notify_all();
            } else if s.stop {
                return;
            } else {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// Temp file, fsync, rename, fsync of the directory.
fn write_file(dir: &Path, note: &str) -> Result<(), StoreError> {
    let path = dir.join(LAST_CHECKPOINT_FILE);
    let tmp = dir.join(format!("{LAST_CHECKPOINT_FILE}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(crate::store::io("create", &tmp))?;
        std::io::Write::write_all(&mut f, note.as_bytes())
            .map_err(crate::store::io("write", &tmp))?;
        f.sync_all().map_err(crate::store::io("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(crate::store::io("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(crate::store::io("fsync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(LAST_CHECKPOINT_FILE)).unwrap()
    }

    #[test]
    fn the_newest_note_is_written_and_dropping_writes_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let failed = Arc::new(Mutex::new(None));
        let f = LastFile::new(dir.path(), failed.clone());
        f.write("one").unwrap();
        assert_eq!(read(dir.path()), "one");
        for i in 0..200 {
            f.record(&format!("note {i}")).unwrap();
        }
        f.flush().unwrap();
        assert_eq!(read(dir.path()), "note 199");
        f.record("last").unwrap();
        drop(f);
        assert_eq!(read(dir.path()), "last");
        assert!(failed.lock().unwrap().is_none());
        assert!(!dir.path().join("checkpoint.last.tmp").exists());
    }

    #[test]
    fn a_failed_write_fails_the_store_and_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let failed = Arc::new(Mutex::new(None));
        let f = LastFile::new(&gone, failed.clone());
        f.record("one").unwrap();
        let err = f.flush().unwrap_err().to_string();
        assert!(err.contains(LAST_CHECKPOINT_FILE), "{err}");
        let why = failed.lock().unwrap().clone().unwrap();
        assert!(why.contains("create"), "{why}");
        std::fs::create_dir(&gone).unwrap();
        assert!(f.write("two").is_err(), "a failure is kept until restart");
    }
}
