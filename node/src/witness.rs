//! Members witness each other (issue 6, items 1–2).
//!
//! - **Author side** ([`cosigner`]): each new checkpoint of the own feed is
//!   offered to every member with a consistency proof from the size that
//!   member last cosigned; the cosignatures that come back are verified and
//!   kept, and served appended to the checkpoint note.
//! - **Witness side** ([`Witness::add_checkpoint`]): verify the author's
//!   signature and the consistency proof (`lienthong_core::witness`),
//!   persist the new checkpoint, and only then cosign.
//! - **Gossip** ([`gossip`], [`Witness::check_shared`]): every member
//!   periodically tells the others the newest checkpoint it cosigned of
//!   each feed. Two checkpoints of one feed that cannot both be honest are
//!   kept as signed evidence, logged, and counted in the status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use lienthong_core::proto as pb;
use lienthong_core::witness::{AddDecision, Conflict, compare, decide_add};
use lienthong_log::{Hash, VerifiedCheckpoint};
use lienthong_store::Store;
use tokio::sync::watch;
use tonic::Status;

use crate::peer::{Peering, client_for};

/// How often members tell each other what they cosigned.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(500);
/// How long to wait for one peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The witness: what it holds per member lives in the store.
pub struct Witness {
    pub peering: Arc<Peering>,
    pub store: Store,
    /// One add-checkpoint at a time, so "compare, persist, cosign" is atomic.
    lock: Mutex<()>,
    /// Equivocation evidence recorded since start (also in the store).
    pub equivocations: std::sync::atomic::AtomicU64,
    /// Pairs of conflicting checkpoint notes (held, shown) kept as
    /// evidence since start.
    kept_forks: Mutex<std::collections::HashSet<(String, String)>>,
    /// Ids of entries refused from peers and kept as evidence since start.
    refused_entries: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// Checkpoint notes already verified: gossip shows every witness the
    /// same few notes again and again (see [`SEEN_NOTES`]).
    seen: lienthong_log::SeenCheckpoints,
}

/// Notes [`Witness::seen`] keeps per generation (it keeps two, each also
/// at most [`lienthong_log::GENERATION_BYTES`] of notes). At rest a
/// federation of the 34 provinces gossips about 70 distinct notes; while
/// feeds grow, each member may show a different checkpoint of each feed,
/// up to about a thousand, and the byte bound (1 MiB in all) is what
/// limits the memory then.
const SEEN_NOTES: usize = 1024;

impl Witness {
    pub fn new(peering: Arc<Peering>, store: Store) -> Arc<Self> {
        Arc::new(Self {
            peering,
            store,
            lock: Mutex::new(()),
            equivocations: std::sync::atomic::AtomicU64::new(0),
            kept_forks: Mutex::new(Default::default()),
            refused_entries: Mutex::new(Default::default()),
            seen: lienthong_log::SeenCheckpoints::new(SEEN_NOTES),
        })
    }

    fn origin_of(&self, member: &str) -> String {
        format!("{}/{member}", self.peering.federation())
    }

    /// Verifies `note` as a checkpoint of `member` under the key in force;
    /// with `any_key`, under any key the member has held (for notes kept
    /// from before a rotation).
    fn verify(&self, member: &str, note: &str, any_key: bool) -> Result<VerifiedCheckpoint> {
        let chain = self.peering.chain();
        let keys = if any_key {
            chain.keys_of(member)
        } else {
            chain
                .current()
                .member_key(member)
                .into_iter()
                .copied()
                .collect()
        };
        let origin = self.origin_of(member);
        let mut last = None;
        for k in &keys {
            match self.seen.verify_with_key(note.as_bytes(), &origin, k) {
                Ok(cp) => return Ok(cp),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(anyhow::Error::new(e).context(format!("checkpoint of {member}"))),
            None => anyhow::bail!("{member} is not a member"),
        }
    }

    /// The checkpoint of `member` this node last cosigned.
    pub fn held(&self, member: &str) -> Result<Option<VerifiedCheckpoint>> {
        match self.store.witnessed(member)? {
            None => Ok(None),
            Some(note) => self.verify(member, &note, true).map(Some),
        }
    }

    /// The evidence of a conflict between two signed checkpoints, to be
    /// kept, or `None` when this pair of notes was kept since start (or is
    /// being kept): a member that goes on showing its fork (in gossip, in
    /// deliveries, in cosigning requests) does not fill the store with
    /// copies. The caller writes it, then calls [`Witness::settle_fork`].
    fn conflict_evidence(
        &self,
        member: &str,
        from: &str,
        conflict: &Conflict,
        notes: [&str; 2],
    ) -> Option<pb::EvidenceRecord> {
        let pair = (notes[0].to_owned(), notes[1].to_owned());
        if !first_sight(&self.kept_forks, pair, KEPT_FORKS_MAX) {
            return None;
        }
        let kind = match conflict {
            Conflict::SameSizeDifferentRoot { .. } => pb::EvidenceKind::Equivocation,
            Conflict::NotConsistent { .. } => pb::EvidenceKind::Inconsistent,
        };
        Some(pb::EvidenceRecord {
            id: 0,
            kind: kind as i32,
            member: member.to_owned(),
            received_from: from.to_owned(),
            observed_unix_ms: now_unix_ms(),
            reason: conflict.to_string(),
            checkpoints: notes.iter().map(|n| (*n).to_owned()).collect(),
            envelope: Vec::new(),
            inclusion_proof: Vec::new(),
        })
    }

    /// After the write of `record` (from [`Witness::conflict_evidence`]):
    /// counts and logs it once kept; if the write failed, forgets the pair,
    /// so the next sighting keeps it.
    fn settle_fork(&self, record: &pb::EvidenceRecord, written: Result<()>) -> Result<()> {
        match written {
            Ok(()) => {
                tracing::error!(member = %record.member, from = %record.received_from, conflict = %record.reason, "EQUIVOCATION: a member signed two checkpoints that cannot both be honest; both kept as evidence");
                self.equivocations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if let [held, shown] = &record.checkpoints[..] {
                    forget(&self.kept_forks, &(held.clone(), shown.clone()));
                }
                Err(e)
            }
        }
    }

    /// Keeps evidence of a conflict between two signed checkpoints, from
    /// async code: the write (an fsync) runs off the runtime's threads.
    async fn record_conflict(
        &self,
        member: &str,
        from: &str,
        conflict: &Conflict,
        notes: [&str; 2],
    ) -> Result<()> {
        match self.conflict_evidence(member, from, conflict, notes) {
            Some(record) => {
                let written = keep_evidence(&self.store, record.clone()).await;
                self.settle_fork(&record, written)
            }
            None => Ok(()),
        }
    }

    /// Witness side of `Federation.AddCheckpoint` for `caller`. Blocks
    /// (it fsyncs): call it on a blocking thread of the runtime.
    pub fn add_checkpoint(
        &self,
        caller: &str,
        req: &pb::AddCheckpointRequest,
    ) -> Result<pb::AddCheckpointResponse, Status> {
        let new = self
            .verify(caller, &req.checkpoint, false)
            .map_err(|e| {
                Status::invalid_argument(format!(
                    "checkpoint: {e:#} (only a member's own checkpoint, signed with its key in force, is cosigned)"
                ))
            })?;
        let proof = hashes(&req.consistency_proof).map_err(Status::invalid_argument)?;
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.held(caller).map_err(internal)?;
        match decide_add(held.as_ref(), req.old_size, &proof, &new) {
            AddDecision::Cosign => {
                // The witness rule: durable before cosigned.
                self.store
                    .set_witnessed(caller, new.note_text())
                    .map_err(internal)?;
                let time = u64::try_from(now_unix_ms() / 1000).unwrap_or(0);
                let line = lienthong_log::cosign(
                    new.body().as_bytes(),
                    time,
                    self.store.origin(),
                    &self.peering.key(),
                )
                .map_err(internal)?;
                self.peering
                    .note_peer(caller, |s| s.witnessed_size = new.size());
                Ok(pb::AddCheckpointResponse {
                    cosignatures: vec![line],
                    witness_size: new.size(),
                })
            }
            AddDecision::SizeMismatch { witness_size } => Ok(pb::AddCheckpointResponse {
                cosignatures: Vec::new(),
                witness_size,
            }),
            AddDecision::Rollback { witness_size } => Err(Status::failed_precondition(format!(
                "this witness already cosigned size {witness_size} of your feed; it never cosigns a smaller tree (was the store restored from an older backup?)"
            ))),
            AddDecision::Conflict(c) => {
                let held_note = held.as_ref().map_or("", |h| h.note_text()).to_owned();
                // Already on a blocking thread: written here.
                if let Some(record) =
                    self.conflict_evidence(caller, caller, &c, [&held_note, new.note_text()])
                {
                    let written = self.store.add_evidence(record.clone()).map(drop);
                    self.settle_fork(&record, written.map_err(anyhow::Error::from))
                        .map_err(internal)?;
                }
                Err(Status::failed_precondition(format!(
                    "refused to cosign: {c}; both checkpoints are kept as evidence"
                )))
            }
        }
    }

    /// Keeps `record`, evidence of a delivery its author signed that this
    /// node refused, unless the same entry was kept since start: a peer
    /// that sends it again at every reconnection does not fill the store
    /// with copies.
    pub async fn keep_refused_entry(&self, record: pb::EvidenceRecord) -> Result<()> {
        let id = lienthong_core::entry::EntryId::of_envelope(&record.envelope).0;
        let new = first_sight(&self.refused_entries, id, REFUSED_ENTRIES_MAX);
        if new && let Err(e) = keep_evidence(&self.store, record).await {
            // Kept at the next sight instead.
            forget(&self.refused_entries, &id);
            return Err(e);
        }
        Ok(())
    }

    /// The newest checkpoint of `author`'s feed that came with entries
    /// stored here, verified under any key the author has held. A note
    /// that no longer verifies is left out, with a warning.
    pub fn newest_delivered(&self, author: &str) -> Result<Option<VerifiedCheckpoint>> {
        let Some((_, note)) = self.store.newest_peer_checkpoint(author)? else {
            return Ok(None);
        };
        match self.verify(author, &note, true) {
            Ok(cp) => Ok(Some(cp)),
            Err(e) => {
                tracing::warn!(author, error = %format!("{e:#}"), "a stored checkpoint of this author does not verify; new ones are compared with the cosigned one only");
                Ok(None)
            }
        }
    }

    /// Checks a new checkpoint `cp` that `author` delivers entries under,
    /// before any of them is stored, against `newest`, the newest of its
    /// checkpoints that came with entries stored here: the same size must
    /// have the same root, and the smaller of two sizes must be a prefix of
    /// the larger, by a consistency proof the author gives (`client`, the
    /// session's connection). Also, the same size as the checkpoint this
    /// node cosigned must have its root. The proof is the one `streamed`
    /// with the delivery (the size it is from, and its hashes) when it
    /// starts from `newest`. Otherwise the two signed notes are
    /// kept as evidence (once) and an error is returned: entries from a
    /// history that forks what this node holds are not stored. Returns the
    /// checkpoint to compare the next one with.
    pub async fn check_delivered(
        &self,
        author: &str,
        client: &mut pb::federation_client::FederationClient<tonic::transport::Channel>,
        newest: Option<VerifiedCheckpoint>,
        cp: &VerifiedCheckpoint,
        streamed: (u64, &[Vec<u8>]),
    ) -> Result<VerifiedCheckpoint> {
        if let Some(held) = self.held(author)?
            && held.size() == cp.size()
            && let Err(c) = compare(&held, cp, &[])
        {
            return Err(self.refuse_delivered(author, &c, &held, cp).await);
        }
        let Some(newest) = newest else {
            return Ok(cp.clone());
        };
        let proof = if newest.size() == cp.size() || newest.size().min(cp.size()) == 0 {
            Vec::new()
        } else if streamed.0 == newest.size() && newest.size() < cp.size() {
            hashes(streamed.1).map_err(anyhow::Error::msg)?
        } else {
            let (old, new) = (newest.size().min(cp.size()), newest.size().max(cp.size()));
            ask_consistency(client, old, new)
                .await
                .context("asking the author for a consistency proof")?
        };
        if let Err(c) = compare(&newest, cp, &proof) {
            return Err(self.refuse_delivered(author, &c, &newest, cp).await);
        }
        Ok(if cp.size() > newest.size() {
            cp.clone()
        } else {
            newest
        })
    }

    /// Keeps a conflict between a delivered checkpoint and one held as
    /// evidence, unless this pair is kept already (an author that goes on
    /// serving its fork is refused at every reconnection), and returns the
    /// error that ends the session.
    async fn refuse_delivered(
        &self,
        author: &str,
        c: &Conflict,
        held: &VerifiedCheckpoint,
        cp: &VerifiedCheckpoint,
    ) -> anyhow::Error {
        if let Err(e) = self
            .record_conflict(author, author, c, [held.note_text(), cp.note_text()])
            .await
        {
            tracing::error!(error = %format!("{e:#}"), "could not store evidence");
        }
        self.peering.refused(author, "inconsistent_checkpoint");
        anyhow::anyhow!(
            "refused the entries of {author} under their checkpoint of size {}: {c}; both checkpoints are kept as evidence",
            cp.size()
        )
    }

    /// The newest checkpoint of `member`'s feed this node holds, cosigned
    /// or delivered with entries, as signed.
    pub fn newest_held_note(&self, member: &str) -> Result<Option<String>> {
        let witnessed = self
            .held(member)?
            .map(|c| (c.size(), c.note_text().to_owned()));
        let delivered = self.store.newest_peer_checkpoint(member)?;
        Ok(match (witnessed, delivered) {
            (Some(w), Some(d)) => Some(if d.0 > w.0 { d.1 } else { w.1 }),
            (w, d) => w.or(d).map(|(_, note)| note),
        })
    }

    /// A checkpoint of this node's own feed that member `from` holds. It is
    /// signed with this node's key, so `from` cannot have made it up; if it
    /// is larger than the store's newest checkpoint, the store lost what
    /// this node signed, and new entries would fork the feed.
    pub fn check_own(&self, from: &str, note: &str) {
        let me = self.peering.me.clone();
        let cp = match self.verify(&me, note, true) {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(from, error = %format!("{e:#}"), "a member showed a checkpoint of our feed that does not verify; ignored");
                return;
            }
        };
        let ours = self.store.latest_checkpoint().map_or(0, |c| c.size);
        if cp.size() > ours {
            self.store.halt(format!(
                "member {from} holds a checkpoint of size {} of this feed, signed by this member, but the store has only {ours} entries checkpointed: it was restored from an older copy or lost writes. New entries would fork the feed, so none are accepted. Recover: stop the node, restore the newest backup (or the store from before the loss), start again and check with `lienthong audit status`",
                cp.size()
            ));
            return;
        }
        match self.store.root_at(cp.size()) {
            Ok(root) if root != cp.root() => self.store.halt(format!(
                "member {from} holds a checkpoint of size {} of this feed, signed by this member, whose root differs from the store's: the store is not the feed this member signed (restored from an older copy that was written on since?). New entries would deepen the fork, so none are accepted; restore the newest backup and check with `lienthong audit status`",
                cp.size()
            )),
            Ok(_) => {}
            Err(e) => tracing::warn!(from, error = %e, "could not compare a checkpoint of our feed a member holds"),
        }
    }

    /// A member says this node's store is behind what it holds of this
    /// node's feed (`claim`). Its word alone does not stop writes: one
    /// dishonest member could then stop any other. Ask it for the checkpoint
    /// of this feed it holds, which this node signed, and refuse writes
    /// only if that shows the store lost what this node signed
    /// ([`Witness::check_own`]). Returns the error to report.
    async fn confirm_behind(&self, m: &str, claim: String) -> anyhow::Error {
        let shown = tokio::time::timeout(PEER_TIMEOUT, async {
            let mut c = client_for(&self.peering, m).await?;
            let r = c
                .share_checkpoint(pb::ShareCheckpointRequest {
                    checkpoints: Vec::new(),
                })
                .await?
                .into_inner();
            anyhow::Ok(r.caller_checkpoint)
        })
        .await;
        if let Ok(Ok(note)) = &shown
            && !note.is_empty()
        {
            self.check_own(m, note);
        }
        match self.store.failure() {
            Some(why) => anyhow::anyhow!(why),
            None => {
                tracing::warn!(witness = %m, %claim, "a member says this store is behind but shows no checkpoint signed by this node that proves it; writes go on");
                anyhow::anyhow!(
                    "{claim}; it showed no checkpoint signed by this node that proves it, so writes go on"
                )
            }
        }
    }

    /// Witness side of `Federation.ShareCheckpoint` from `from`: returns
    /// the members whose checkpoints conflict with what this node holds.
    pub async fn check_shared(&self, from: &str, notes: &[String]) -> Vec<String> {
        let mut conflicts = Vec::new();
        for note in notes {
            let Some(member) = origin_member(note, &self.peering.federation()) else {
                continue;
            };
            if member == self.peering.me {
                continue;
            }
            let shared = match self.verify(&member, note, true) {
                Ok(cp) => cp,
                Err(e) => {
                    tracing::warn!(from, member, error = %format!("{e:#}"), "gossiped checkpoint does not verify; ignored");
                    continue;
                }
            };
            let held = match self.held(&member) {
                Ok(Some(h)) => h,
                _ => continue,
            };
            let proof = if held.size() == shared.size() || held.size().min(shared.size()) == 0 {
                Vec::new()
            } else {
                match self
                    .consistency_from(
                        &member,
                        held.size().min(shared.size()),
                        held.size().max(shared.size()),
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        // The member may just be away: decide later.
                        tracing::debug!(member, error = %format!("{e:#}"), "could not fetch a consistency proof; will check again");
                        continue;
                    }
                }
            };
            if let Err(c) = compare(&held, &shared, &proof) {
                if let Err(e) = self
                    .record_conflict(&member, from, &c, [held.note_text(), note])
                    .await
                {
                    tracing::error!(error = %format!("{e:#}"), "could not store evidence");
                }
                conflicts.push(member);
            }
        }
        conflicts
    }

    async fn consistency_from(&self, member: &str, old: u64, new: u64) -> Result<Vec<Hash>> {
        let mut c = tokio::time::timeout(PEER_TIMEOUT, client_for(&self.peering, member))
            .await
            .context("timed out")??;
        ask_consistency(&mut c, old, new).await
    }
}

/// The consistency proof from size `old` to `new` of the feed `client`
/// serves.
async fn ask_consistency(
    client: &mut pb::federation_client::FederationClient<tonic::transport::Channel>,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>> {
    let p = tokio::time::timeout(
        PEER_TIMEOUT,
        client.get_consistency_proof(pb::GetConsistencyProofRequest {
            old_size: old,
            new_size: new,
        }),
    )
    .await
    .context("timed out")??
    .into_inner();
    hashes(&p.hashes).map_err(anyhow::Error::msg)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn hashes(v: &[Vec<u8>]) -> Result<Vec<Hash>, String> {
    v.iter()
        .map(|h| {
            h.as_slice().try_into().map(Hash).map_err(|_| {
                format!(
                    "consistency_proof: a hash of {} bytes; each must be 32",
                    h.len()
                )
            })
        })
        .collect()
}

/// Bounds of what [`Witness`] remembers as kept since start. A member
/// that signs fork after fork, or sends entry after refused entry, must
/// not grow the node's memory without end. Past the bound the memory
/// starts afresh, and what is seen again is kept again, until the store's
/// own bound ([`lienthong_store::MAX_EVIDENCE`]) refuses more.
const KEPT_FORKS_MAX: usize = 1024;
const REFUSED_ENTRIES_MAX: usize = 100_000;

/// Whether `item` is new to `seen` (and now in it); `seen` is emptied
/// first when it holds `max` items.
fn first_sight<T: std::hash::Hash + Eq>(
    seen: &Mutex<std::collections::HashSet<T>>,
    item: T,
    max: usize,
) -> bool {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() >= max && !seen.contains(&item) {
        seen.clear();
    }
    seen.insert(item)
}

/// Undoes [`first_sight`] of `item`, whose keeping failed: the next sight
/// of it is a first one again.
fn forget<T: std::hash::Hash + Eq>(seen: &Mutex<std::collections::HashSet<T>>, item: &T) {
    seen.lock().unwrap_or_else(|p| p.into_inner()).remove(item);
}

/// Keeps a piece of evidence from async code: the write, an fsync, runs
/// on a blocking thread instead of holding up the runtime's.
async fn keep_evidence(store: &Store, record: pb::EvidenceRecord) -> Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.add_evidence(record))
        .await
        .context("evidence task")??;
    Ok(())
}

/// The member code of a checkpoint note's origin line, if it is a feed of
/// `federation`.
fn origin_member(note: &str, federation: &str) -> Option<String> {
    let origin = note.lines().next()?;
    let code = origin.strip_prefix(federation)?.strip_prefix('/')?;
    (!code.is_empty() && !code.contains('/')).then(|| code.to_owned())
}

/// Author side: offers the newest own checkpoint to every member for
/// cosigning, and keeps the cosignatures.
///
/// A round asks every member that has not cosigned the newest checkpoint;
/// the next round starts no sooner than `pace` after this one ended. A
/// busy feed is checkpointed every `checkpoint.interval_ms`, and one round
/// costs each member a signature check, a cosignature and an fsync, and
/// this node one fsync for all the answers: with eleven members
/// checkpointing every 50 ms, unpaced rounds made 2,200 exchanges a
/// second, most of them for checkpoints a later one supersedes within
/// milliseconds. Checkpoints signed between rounds stay uncosigned; the
/// next cosigned one is consistent with them, which every witness checks
/// before it cosigns.
pub async fn cosigner(w: Arc<Witness>, pace: Duration, mut stopping: watch::Receiver<bool>) {
    let store = w.store.clone();
    let mut durable = store.subscribe();
    // Size each witness holds, as far as we know, and the size it cosigned.
    let mut believed: HashMap<String, u64> = HashMap::new();
    let mut done: HashMap<String, u64> = HashMap::new();
    let mut next_round = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_round) => {}
            _ = stopping.changed() => return,
        }
        if let Some(cp) = store.latest_checkpoint() {
            let members: Vec<String> = w
                .peering
                .chain()
                .current()
                .member_codes()
                .into_iter()
                .filter(|m| *m != w.peering.me && done.get(m) != Some(&cp.size))
                .collect();
            let asked = !members.is_empty();
            let mut set = tokio::task::JoinSet::new();
            for m in members {
                let (w, cp, old) = (
                    w.clone(),
                    cp.clone(),
                    believed.get(&m).copied().unwrap_or(0),
                );
                set.spawn(async move {
                    let r = tokio::time::timeout(
                        PEER_TIMEOUT * 2,
                        request_cosignature(&w, &m, &cp, old),
                    )
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                    (m, r)
                });
            }
            let mut answers = Vec::new();
            while let Some(Ok((m, r))) = set.join_next().await {
                match r {
                    Ok(line) => answers.push((m, line)),
                    Err(e) => {
                        tracing::debug!(witness = %m, error = %format!("{e:#}"), "no cosignature yet");
                        w.peering.note_peer(&m, |s| s.cosigned_ours = false);
                        // Ask afresh next time: it may have restarted.
                        believed.remove(&m);
                    }
                }
            }
            // The round's cosignatures in one write, off the runtime's
            // threads: an fsync each, in the tasks, held up the other
            // work of the runtime (deliveries, API calls) for every one.
            let kept = if answers.is_empty() {
                Ok(())
            } else {
                let (store, size, answers) = (store.clone(), cp.size, answers.clone());
                tokio::task::spawn_blocking(move || {
                    let lines: Vec<(&str, &str)> = answers
                        .iter()
                        .map(|(m, l)| (m.as_str(), l.as_str()))
                        .collect();
                    store.add_cosignatures(size, &lines)
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r.map_err(anyhow::Error::from))
            };
            match kept {
                Ok(()) => {
                    for (m, _) in answers {
                        believed.insert(m.clone(), cp.size);
                        done.insert(m.clone(), cp.size);
                        w.peering.note_peer(&m, |s| s.cosigned_ours = true);
                    }
                }
                Err(e) => {
                    tracing::warn!(size = cp.size, error = %format!("{e:#}"), "could not keep the cosignatures received; asking again next round");
                    for (m, _) in answers {
                        believed.remove(&m);
                    }
                }
            }
            // Counted from the end of the round: on a saturated machine a
            // round can take longer than `pace`, and counting from its start
            // would then run rounds back to back.
            if asked {
                next_round = tokio::time::Instant::now() + pace;
            }
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// One add-checkpoint exchange with witness `m`, retried once from the
/// size the witness reports. Returns the witness's cosignature line on
/// `cp`, verified; the caller keeps it.
async fn request_cosignature(
    w: &Witness,
    m: &str,
    cp: &lienthong_store::CheckpointRecord,
    mut old: u64,
) -> Result<String> {
    let mut client = client_for(&w.peering, m).await?;
    for _ in 0..2 {
        if old > cp.size {
            // The store may have lost what this node signed (restored from
            // an older backup?): writing on would fork the feed. The size
            // is the witness's word; halt only on the checkpoint it holds.
            return Err(w
                .confirm_behind(
                    m,
                    format!(
                        "member {m} says it holds a checkpoint of size {old} of this feed, but the store has only {} entries checkpointed",
                        cp.size
                    ),
                )
                .await);
        }
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            w.store.consistency_proof(old, cp.size)?
        };
        let resp = match client
            .add_checkpoint(pb::AddCheckpointRequest {
                old_size: old,
                consistency_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
                checkpoint: cp.note.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                // The witness says it holds a checkpoint of ours this one
                // contradicts; halt only on that checkpoint itself.
                return Err(w
                    .confirm_behind(
                        m,
                        format!(
                            "member {m} refuses to cosign this node's checkpoint of size {}: {}",
                            cp.size,
                            s.message()
                        ),
                    )
                    .await);
            }
            Err(s) => return Err(s.into()),
        };
        if let Some(line) = resp.cosignatures.first() {
            let key = *w
                .peering
                .chain()
                .current()
                .member_key(m)
                .context("witness left the manifest")?;
            let name = format!("{}/{m}", w.peering.federation());
            let body = w.seen.verify_with_key(
                cp.note.as_bytes(),
                w.store.origin(),
                &w.peering.key().verifying_key(),
            )?;
            lienthong_log::verify_cosignature(body.body().as_bytes(), line, &name, &key)
                .with_context(|| format!("cosignature from {m}"))?;
            return Ok(line.clone());
        }
        old = resp.witness_size;
    }
    anyhow::bail!("witness {m} keeps reporting another size")
}

/// Tells every member, whenever it changes, the newest checkpoint this node
/// cosigned of each feed and its own latest cosigned checkpoint.
pub async fn gossip(w: Arc<Witness>, mut stopping: watch::Receiver<bool>) {
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(GOSSIP_INTERVAL) => {}
            _ = stopping.changed() => return,
        }
        let chain = w.peering.chain();
        let members = chain.current().member_codes();
        let mut notes: Vec<String> = members
            .iter()
            .filter(|m| **m != w.peering.me)
            .filter_map(|m| w.store.witnessed(m).ok().flatten())
            .collect();
        if let Ok(Some((_, own))) = w.store.latest_cosigned_note() {
            notes.push(own);
        }
        if notes.is_empty() {
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for m in members.into_iter().filter(|m| *m != w.peering.me) {
            if sent.get(&m) == Some(&notes) {
                continue;
            }
            let (w, notes) = (w.clone(), notes.clone());
            set.spawn(async move {
                let r = tokio::time::timeout(PEER_TIMEOUT, async {
                    let mut c = client_for(&w.peering, &m).await?;
                    let resp = c
                        .share_checkpoint(pb::ShareCheckpointRequest {
                            checkpoints: notes.clone(),
                        })
                        .await?
                        .into_inner();
                    if !resp.caller_checkpoint.is_empty() {
                        w.check_own(&m, &resp.caller_checkpoint);
                    }
                    anyhow::Ok(())
                })
                .await;
                (m, notes, matches!(r, Ok(Ok(()))))
            });
        }
        while let Some(Ok((m, notes, ok))) = set.join_next().await {
            if ok {
                sent.insert(m, notes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sight_remembers_up_to_its_bound_then_starts_afresh() {
        let seen = Mutex::new(std::collections::HashSet::new());
        assert!(["a", "b", "c"].iter().all(|x| first_sight(&seen, *x, 3)));
        assert!(!first_sight(&seen, "a", 3), "seen already");
        assert!(!first_sight(&seen, "c", 3), "seen already, at the bound");
        assert!(first_sight(&seen, "d", 3), "new: the memory starts afresh");
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(first_sight(&seen, "a", 3), "forgotten with the rest");
        assert!(!first_sight(&seen, "d", 3));
        forget(&seen, &"d");
        assert!(first_sight(&seen, "d", 3), "forgotten after a failed keep");
    }
}
