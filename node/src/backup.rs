//! Online backup (`lienthong.v1.Admin.Backup`, `lienthong backup`) and
//! restore (`lienthong restore`, with the node stopped).
//!
//! A backup is a complete store directory: the node copies every record
//! between two write groups (`Store::backup_to`), then opens the copy as it
//! would open its own store, integrity checks included, before answering.
//!
//! A restore never takes a feed back silently. This member's signed
//! checkpoints are what peers witnessed and cosigned: a store behind the
//! newest of them would make the node sign different entries under indexes
//! peers already hold (equivocation). So restore compares the backup with
//! the newest checkpoint this node is known to have signed (the current
//! store's `checkpoint.last` files, readable even when the database is
//! damaged)
//! and refuses an older backup unless told `--accept-older`; a node started
//! on such a store also refuses writes as soon as a peer shows it a larger
//! checkpoint of its own (see `peer.rs` / `witness.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lienthong_core::proto::{self as pb, admin_server::Admin};
use lienthong_store::{OpenOptions, Store};
use tonic::{Request, Response, Status};

/// The Admin service.
pub struct AdminService {
    pub store: Store,
    pub backup_dir: PathBuf,
    /// How to open (check) a copy: this node's store options.
    pub open: OpenOptions,
    pub running: Arc<AtomicBool>,
}

fn valid_label(l: &str) -> bool {
    l.len() <= 64
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let label = req.into_inner().label;
        if !valid_label(&label) {
            return Err(crate::status::ApiError::field(
                "label",
                "up to 64 characters from A–Z a–z 0–9 . _ -",
            )
            .into());
        }
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(Status::failed_precondition(
                "a backup is already running; wait for it",
            ));
        }
        let stamp = time::OffsetDateTime::now_utc();
        let name = format!(
            "{}-{:04}{:02}{:02}T{:02}{:02}{:02}Z{}{}",
            self.store.member(),
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            if label.is_empty() { "" } else { "-" },
            label
        );
        let dest = self.backup_dir.join(name);
        let store = self.store.clone();
        let mut open = self.open.clone();
        open.dir = dest.clone();
        let running = self.running.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<pb::BackupResponse> {
            let started = Instant::now();
            std::fs::create_dir_all(dest.parent().unwrap_or(&dest))
                .with_context(|| format!("creating {}", dest.display()))?;
            let info = store.backup_to(&dest)?;
            let pause_ms = started.elapsed().as_millis() as u64;
            // The copy must open as the node's own store would.
            let copy = Store::reopen(&open, Duration::from_secs(5)).with_context(|| {
                format!("the backup at {} does not open cleanly", dest.display())
            })?;
            drop(copy);
            Ok(pb::BackupResponse {
                path: dest.display().to_string(),
                feed_size: info.feed_size,
                checkpoint_size: info.checkpoint_size,
                records: info.records,
                bytes: info.bytes,
                pause_ms,
            })
        })
        .await;
        running.store(false, Ordering::SeqCst);
        match r {
            Ok(Ok(resp)) => {
                tracing::info!(path = %resp.path, feed_size = resp.feed_size, records = resp.records, "backup written");
                Ok(Response::new(resp))
            }
            Ok(Err(e)) => Err(Status::internal(format!("backup failed: {e:#}"))),
            Err(e) => Err(Status::internal(format!("backup task: {e}"))),
        }
    }
}

/// The size of the newest checkpoint recorded beside the store in `dir`
/// (`checkpoint.last` and `checkpoint.last.b`), if any; an error if what
/// is there is not signed by one of this member's keys.
fn recorded_size(dir: &Path, opts: &OpenOptions) -> Result<Option<u64>> {
    Ok(lienthong_store::last_signed_size(
        dir,
        &opts.origin,
        &opts.verifying_keys,
    )?)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// `lienthong restore`: puts a backup in place of the store, the node
/// being stopped. The current store is kept beside it, never deleted.
pub fn restore(config: &crate::config::Config, from: &Path, accept_older: bool) -> Result<()> {
    let opts = crate::serve::open_options(config, &config.store_dir)?;
    let current = &config.store_dir;
    // The backup must be a store of this member that opens cleanly. A copy
    // is opened, never the backup itself: opening upgrades an older
    // release's layout, and the backup must stay usable by the release
    // that wrote it.
    let tmp = current.with_extension("restoring");
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(from, &tmp)?;
    let checked = check_and_move_aside(config, &opts, from, &tmp, accept_older);
    if checked.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    checked?;
    std::fs::rename(&tmp, current)
        .with_context(|| format!("putting the backup in place at {}", current.display()))?;
    // The check above had the copy open a moment ago.
    let restored = Store::reopen(&opts, Duration::from_secs(5))
        .with_context(|| format!("the restored store at {} does not open", current.display()))?;
    println!(
        "restored {} into {}: feed size {}, checkpoint size {}; start the node with `lienthong run`",
        from.display(),
        current.display(),
        restored.durable().feed_size,
        restored.latest_checkpoint().map_or(0, |c| c.size)
    );
    Ok(())
}

/// Checks the copy of the backup at `tmp` and, if the node's current
/// store may be replaced by it, moves that store aside.
fn check_and_move_aside(
    config: &crate::config::Config,
    opts: &lienthong_store::OpenOptions,
    from: &Path,
    tmp: &Path,
    accept_older: bool,
) -> Result<()> {
    let mut check = opts.clone();
    check.dir = tmp.to_path_buf();
    let backup = Store::open(&check)
        .with_context(|| format!("{} is not a sound store of this node", from.display()))?;
    let backup_size = backup.latest_checkpoint().map_or(0, |c| c.size);
    drop(backup);

    let current = &config.store_dir;
    if current.exists() {
        // Refuse while the node runs: it holds a lock on the database.
        if let crate::doctor::NodeState::Running { pid } = crate::doctor::node_state(current) {
            bail!(
                "the node (pid {pid}) is running on {}: stop it first",
                current.display()
            );
        }
        let signed = recorded_size(current, opts)?;
        if let Some(signed) = signed
            && signed > backup_size
            && !accept_older
        {
            bail!(
                "this node has signed a checkpoint of size {signed} but the backup holds only size {backup_size}.\n\
                 Restoring it would take the feed back behind what peers have seen and cosigned: the node would \
                 sign different entries under indexes {backup_size}..{signed}, which peers treat as equivocation.\n\
                 Instead:\n  - if the current store opens (`lienthong run --check`), keep it and take a new backup;\n  \
                 - otherwise restore the newest backup you have (one of size ≥ {signed}), or\n  \
                 - restore this one with --accept-older: the node will then refuse new entries as soon as a peer \
                 shows it its larger checkpoint, and the federation must agree how to continue this feed \
                 (see docs/operations.md, incidents)."
            );
        }
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let aside = current.with_file_name(format!(
            "{}.replaced-{stamp}",
            current
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "store".into())
        ));
        std::fs::rename(current, &aside)
            .with_context(|| format!("moving the current store aside to {}", aside.display()))?;
        println!("moved the current store aside: {}", aside.display());
    }
    Ok(())
}
