//! The node's side of the federation: the `Federation` service other
//! members subscribe to (author side), and one subscriber per member whose
//! entries this node may receive (receiver side). Both run over mutual TLS
//! pinned by the manifest.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use std::time::SystemTime;

use anyhow::{Context, Result};
use lienthong_core::delivery::{
    AuthorKeys, Rejected, accept_entry, verify_author_checkpoint, verify_entries,
};
use lienthong_core::manifest::{ManifestChain, SignedManifest};
use lienthong_core::proto::{
    self as pb, federation_client::FederationClient, federation_server::Federation,
};
use lienthong_federation::tls::{PinSet, SpkiPin, TlsIdentity};
use lienthong_store::{Store, Writer};

use crate::manifest_file::ManifestFile;
use crate::witness::Witness;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// What a running node needs to rotate its key when a manifest version
/// says so: where key files are, and the writer to switch.
pub struct Rotation {
    pub config: crate::config::Config,
    pub writer: Arc<lienthong_store::Writer>,
}

/// Federation settings that passed every check, and the manifest chain in
/// force, which changes at run time when a newer version is adopted.
pub struct Peering {
    pub me: String,
    /// This member's peer certificate and key, re-read when renewed.
    pub identity: Arc<lienthong_federation::reload::ReloadingIdentity>,
    pub listen: SocketAddr,
    /// How often to look for newer manifest versions.
    pub poll: Duration,
    /// Pins of the current members; shared with the TLS verifiers.
    pub pins: PinSet,
    chain: RwLock<Arc<ManifestChain>>,
    manifest_path: PathBuf,
    /// Modification time of the manifest file when last read or written.
    file_stamp: Mutex<Option<SystemTime>>,
    /// The version in force; changes wake the subscriber supervisor.
    version: watch::Sender<u64>,
    /// Asks the manifest sync task to look now (a peer used a version we
    /// do not have).
    pub sync_now: tokio::sync::Notify,
    /// This node's signing key: cosigns peers' checkpoints as a witness,
    /// and tells when a new version rotates it.
    key: RwLock<ed25519_dalek::SigningKey>,
    /// Switches the feed writer to a new key when an adopted version
    /// rotates this member's key (set once the writer runs).
    rotate: std::sync::OnceLock<Rotation>,
    /// What this node knows of each peer, for `GetStatus`.
    status: Mutex<std::collections::BTreeMap<String, pb::PeerStatus>>,
    /// Wakes a member's subscriber out of its backoff when that member
    /// calls us (it is up again).
    wake: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Open connections to members, for calls other than subscriptions
    /// (see [`client_for`]).
    channels: Mutex<std::collections::HashMap<String, (ChannelKey, tonic::transport::Channel)>>,
}

/// What a kept-open connection to a member was made for.
#[derive(PartialEq, Eq)]
struct ChannelKey {
    endpoint: String,
    pin: SpkiPin,
    /// This node's certificate when it connected.
    cert_pem: String,
}

impl Peering {
    pub fn new(
        me: String,
        chain: ManifestChain,
        manifest_path: PathBuf,
        identity: Arc<lienthong_federation::reload::ReloadingIdentity>,
        listen: SocketAddr,
        poll: Duration,
        key: ed25519_dalek::SigningKey,
    ) -> Arc<Self> {
        let pins = PinSet::new(pins_of(&chain));
        let stamp = modified(&manifest_path);
        Arc::new(Self {
            me,
            identity,
            listen,
            poll,
            pins,
            version: watch::Sender::new(chain.current().version()),
            chain: RwLock::new(Arc::new(chain)),
            manifest_path,
            file_stamp: Mutex::new(stamp),
            sync_now: tokio::sync::Notify::new(),
            key: RwLock::new(key),
            rotate: std::sync::OnceLock::new(),
            status: Mutex::new(std::collections::BTreeMap::new()),
            wake: Mutex::new(std::collections::HashMap::new()),
            channels: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The notifier that wakes `member`'s subscriber.
    pub fn waker(&self, member: &str) -> Arc<tokio::sync::Notify> {
        self.wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(member.to_owned())
            .or_default()
            .clone()
    }

    /// This node's signing key in force.
    pub fn key(&self) -> ed25519_dalek::SigningKey {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets adopted manifest versions rotate the feed's key without a
    /// restart (see [`Rotation`]).
    pub fn enable_rotation(&self, r: Rotation) {
        let _ = self.rotate.set(r);
    }

    /// If `version` lists another key for this member than the one in use,
    /// finds it beside the configured key and switches the writer to it,
    /// before the version is published to the rest of the node (so no
    /// entry of the new version is ever signed with the old key).
    fn rotate_to(&self, version: u64, listed: &ed25519_dalek::VerifyingKey) {
        if *listed == self.key().verifying_key() {
            return;
        }
        let Some(r) = self.rotate.get() else {
            tracing::error!(
                version,
                "the manifest in force rotates this member's signing key: restart the node with the new key (keys.signing_key); until then peers refuse its checkpoints"
            );
            return;
        };
        let Some((path, key)) = r.config.find_signing_key(listed) else {
            tracing::error!(version, dir = %r.config.signing_key.parent().map(|d| d.display().to_string()).unwrap_or_default(), "the manifest in force rotates this member's signing key, but no key file (0600) beside keys.signing_key holds it: put it there (lienthong key new) or restart with it; until then peers refuse this node's checkpoints");
            return;
        };
        let signer = match lienthong_log::NoteSigner::new(&r.config.origin(), key.clone()) {
            Ok(note_signer) => lienthong_store::FeedSigner {
                author: self.me.clone(),
                key: key.clone(),
                note_signer,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot sign checkpoints with the new key");
                return;
            }
        };
        match r.writer.rekey(version, signer) {
            Ok(()) => {
                *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
                tracing::warn!(version, key = %path.display(), "rotated this member's signing key without a restart; set keys.signing_key to this file before the next restart");
            }
            Err(e) => tracing::error!(error = %e, "could not switch the feed to the new key"),
        }
    }

    /// The federation name.
    pub fn federation(&self) -> String {
        self.chain().current().manifest().federation.clone()
    }

    /// Updates what is known of `member`.
    pub fn note_peer(&self, member: &str, f: impl FnOnce(&mut pb::PeerStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let s = all
            .entry(member.to_owned())
            .or_insert_with(|| pb::PeerStatus {
                member: member.to_owned(),
                ..Default::default()
            });
        f(s);
    }

    /// Records `member`'s clock offset, warning when it crosses
    /// [`CLOCK_SKEW_WARN_MS`] (once, not at every poll).
    pub fn note_clock(&self, member: &str, offset: Option<i64>) {
        self.note_peer(member, |s| {
            let was_skewed = s
                .clock_offset_ms
                .is_some_and(|o| o.abs() > CLOCK_SKEW_WARN_MS);
            let skewed = offset.is_some_and(|o| o.abs() > CLOCK_SKEW_WARN_MS);
            if skewed && !was_skewed {
                tracing::warn!(peer = %member, offset_ms = offset, "the peer's clock differs from this node's by more than {} s: check NTP on both", CLOCK_SKEW_WARN_MS / 1000);
            } else if was_skewed && !skewed && offset.is_some() {
                tracing::info!(peer = %member, offset_ms = offset, "the peer's clock agrees with this node's again");
            }
            if offset.is_some() {
                s.clock_offset_ms = offset;
            }
        });
    }

    /// Counts a delivery refused from `member`, by `reason` (one of
    /// [`REFUSAL_REASONS`]).
    pub fn refused(&self, member: &str, reason: &str) {
        self.note_peer(member, |s| {
            s.refused += 1;
            *s.refused_by_reason.entry(reason.to_owned()).or_default() += 1;
        });
    }

    /// What is known of every current member but this one.
    pub fn peer_status(&self) -> Vec<pb::PeerStatus> {
        let chain = self.chain();
        let all = self.status.lock().unwrap_or_else(|e| e.into_inner());
        chain
            .current()
            .manifest()
            .members
            .iter()
            .filter(|m| m.code != self.me)
            .map(|m| {
                let mut s = all.get(&m.code).cloned().unwrap_or_default();
                s.member = m.code.clone();
                s.name = m.name.clone();
                s
            })
            .collect()
    }

    /// The chain in force now.
    pub fn chain(&self) -> Arc<ManifestChain> {
        self.chain.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes of the version in force.
    pub fn versions(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Adopts the versions in `offered` that follow ours, each only if the
    /// quorum of the one before signed it; writes the manifest file, then
    /// switches pins and subscriptions. Returns how many were adopted.
    pub fn adopt(&self, offered: &[SignedManifest], source: &str) -> Result<usize> {
        let mut guard = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let mut next = ManifestChain::clone(&guard);
        let added = next
            .merge(offered)
            .with_context(|| format!("manifest versions offered by {source}"))?;
        if added == 0 {
            return Ok(0);
        }
        // Durable first: a restart must come back with what peers may
        // already be using.
        ManifestFile::from_chain(&next).write(&self.manifest_path)?;
        *self.file_stamp.lock().unwrap_or_else(|e| e.into_inner()) = modified(&self.manifest_path);
        self.pins.replace(pins_of(&next));
        let cur = next.current();
        tracing::info!(version = cur.version(), hash = %hex::encode(cur.hash()), from = %source, members = cur.manifest().members.len(), "adopted a new manifest version");
        match cur.member_key(&self.me) {
            None => tracing::error!(
                version = cur.version(),
                "this member is not in the manifest in force any more: peers will refuse it"
            ),
            Some(k) => self.rotate_to(cur.version(), k),
        }
        let version = cur.version();
        *guard = Arc::new(next);
        drop(guard);
        self.version.send_replace(version);
        Ok(added)
    }

    /// Re-reads the manifest file if an operator replaced it.
    fn reload_file(&self) {
        let stamp = modified(&self.manifest_path);
        {
            let mut last = self.file_stamp.lock().unwrap_or_else(|e| e.into_inner());
            if stamp == *last {
                return;
            }
            *last = stamp;
        }
        let signed = ManifestFile::read(&self.manifest_path).and_then(|f| {
            f.versions
                .iter()
                .map(crate::manifest_file::VersionEntry::signed)
                .collect::<Result<Vec<_>>>()
        });
        match signed.and_then(|s| self.adopt(&s, "the manifest file")) {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(file = %self.manifest_path.display(), error = %format!("{e:#}"), "ignored the changed manifest file")
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Pins of every member of the version in force.
fn pins_of(chain: &ManifestChain) -> Vec<(String, SpkiPin)> {
    chain
        .current()
        .manifest()
        .members
        .iter()
        .filter_map(|m| SpkiPin::from_hex(&m.tls_spki_sha256).map(|p| (m.code.clone(), p)))
        .collect()
}

/// Every reason a delivery is refused for, as counted in
/// `PeerStatus.refused_by_reason` and the metric
/// `lienthong_peer_refused_deliveries_total` (which starts each at 0).
/// A checkpoint or manifest version this node cannot verify yet is not
/// among them: the node fetches newer manifest versions and asks again.
pub const REFUSAL_REASONS: &[&str] = &[
    // Rejected::reason()
    "oversized",
    "malformed",
    "unknown_format",
    "wrong_author",
    "forged_signature",
    "not_for_us",
    "replayed",
    "beyond_checkpoint",
    "not_included",
    // Checked by the subscriber itself.
    "bad_history",
    "oversized_message",
    "inconsistent_checkpoint",
];

/// Clock offsets beyond this are logged and reported by `doctor`.
pub const CLOCK_SKEW_WARN_MS: i64 = 2_000;

/// A peer's clock minus ours, from its time `peer_unix_ms` reported by a
/// call made between `before` and `after` (our clock): its answer was made
/// at our midpoint, give or take half the round trip. `None` when the peer
/// did not report its time.
pub fn clock_offset_ms(before: i64, after: i64, peer_unix_ms: i64) -> Option<i64> {
    (peer_unix_ms != 0).then(|| peer_unix_ms - before.midpoint(after))
}

/// Keeps the manifest current: re-reads the file when it changes and asks
/// every member for versions after ours, each `poll` or when woken.
pub async fn manifest_sync(peering: Arc<Peering>, mut stopping: watch::Receiver<bool>) {
    loop {
        peering.reload_file();
        let chain = peering.chain();
        let have = chain.current().version();
        let members: Vec<_> = chain
            .current()
            .manifest()
            .members
            .iter()
            .filter(|m| m.code != peering.me)
            .cloned()
            .collect();
        let asks = members.into_iter().map(|m| {
            let peering = peering.clone();
            async move {
                let r = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut client = client_for(&peering, &m.code).await?;
                    let before = crate::witness::now_unix_ms();
                    let resp = client
                        .get_manifest(pb::GetManifestRequest {
                            after_version: have,
                        })
                        .await?
                        .into_inner();
                    let offset = clock_offset_ms(before, crate::witness::now_unix_ms(), resp.unix_ms);
                    peering.note_clock(&m.code, offset);
                    let offered = resp
                        .versions
                        .iter()
                        .map(SignedManifest::from_proto)
                        .collect::<Result<Vec<_>, _>>()?;
                    if !offered.is_empty() {
                        peering.adopt(&offered, &format!("member {}", m.code))?;
                    }
                    anyhow::Ok(())
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %m.code, error = %format!("{e:#}"), "manifest check failed")
                    }
                    Err(_) => tracing::debug!(peer = %m.code, "manifest check timed out"),
                }
            }
        });
        let mut set = tokio::task::JoinSet::new();
        for ask in asks {
            set.spawn(ask);
        }
        while set.join_next().await.is_some() {}
        tokio::select! {
            () = tokio::time::sleep(peering.poll) => {}
            () = peering.sync_now.notified() => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Starts a subscriber for every member of the version in force (but us),
/// and more when a new version adds members; a subscriber whose author
/// left the federation stops by itself.
pub async fn supervise_subscribers(
    witness: Arc<Witness>,
    writer: Arc<Writer>,
    mut stopping: watch::Receiver<bool>,
) {
    let peering = witness.peering.clone();
    let mut running: std::collections::BTreeMap<String, tokio::task::JoinHandle<()>> =
        std::collections::BTreeMap::new();
    let mut versions = peering.versions();
    loop {
        running.retain(|_, t| !t.is_finished());
        for m in &peering.chain().current().manifest().members {
            if m.code != peering.me && !running.contains_key(&m.code) {
                running.insert(
                    m.code.clone(),
                    tokio::spawn(subscriber(
                        witness.clone(),
                        m.code.clone(),
                        writer.clone(),
                        stopping.clone(),
                    )),
                );
            }
        }
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { break },
            _ = stopping.changed() => break,
        }
    }
    for (_, t) in running {
        let _ = t.await;
    }
}

/// Author side: serves this member's feed to the members in each entry's
/// audience.
pub struct FederationService {
    pub store: Store,
    pub peering: Arc<Peering>,
    pub witness: Arc<Witness>,
    pub stopping: watch::Receiver<bool>,
}

impl FederationService {
    /// The member whose pinned certificate the caller presented.
    fn caller<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a member certificate is required"))?;
        let member = certs
            .first()
            .and_then(|c| self.peering.pins.member_of(c))
            .ok_or_else(|| {
                Status::permission_denied(
                    "this certificate is not pinned for any member in the manifest",
                )
            })?;
        // It is up: if we were backing off from it, try again now.
        self.peering.waker(&member).notify_one();
        Ok(member)
    }
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<pb::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for FederationService {
    type SubscribeStream = DeliveryStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        const RESUME: &str = "subscribe again from the next index";
        let caller = self.caller(&req)?;
        let mut index = req.get_ref().from_index;
        // The size the caller is known to hold entries under: a delivery
        // under another checkpoint proves consistency from it.
        let mut proven = req.get_ref().known_size;
        tracing::info!(peer = %caller, from = index, "peer subscribed");
        let store = self.store.clone();
        let (mut out, rx) = crate::stopping::Outbox::channel(256, self.stopping.clone(), RESUME);
        tokio::spawn(async move {
            let mut durable = store.subscribe();
            loop {
                let size = store.latest_checkpoint().map_or(0, |c| c.size);
                if index >= size {
                    if !out.wait_for_change(&mut durable).await {
                        return;
                    }
                    continue;
                }
                let (s, who, from) = (store.clone(), caller.clone(), index);
                let batch =
                    tokio::task::spawn_blocking(move || collect(&s, &who, from, size, proven))
                        .await;
                let Ok(Ok((items, next))) = batch else {
                    out.fail(Status::internal("reading the feed failed")).await;
                    return;
                };
                if !items.is_empty() {
                    proven = size;
                }
                for d in items {
                    if !out.send(d).await {
                        return;
                    }
                }
                if next == index {
                    // The writer publishes a checkpoint a moment before
                    // the entries it covers read as durable: try again
                    // shortly rather than skip them.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                index = next;
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::GetManifestResponse>, Status> {
        self.caller(&req)?;
        let versions = self
            .peering
            .chain()
            .signed_after(req.get_ref().after_version)
            .iter()
            .map(SignedManifest::to_proto)
            .collect();
        Ok(Response::new(pb::GetManifestResponse {
            versions,
            unix_ms: crate::witness::now_unix_ms(),
        }))
    }

    async fn add_checkpoint(
        &self,
        req: Request<pb::AddCheckpointRequest>,
    ) -> Result<Response<pb::AddCheckpointResponse>, Status> {
        let caller = self.caller(&req)?;
        let (w, r) = (self.witness.clone(), req.into_inner());
        let resp = tokio::task::spawn_blocking(move || w.add_checkpoint(&caller, &r))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(resp))
    }

    async fn share_checkpoint(
        &self,
        req: Request<pb::ShareCheckpointRequest>,
    ) -> Result<Response<pb::ShareCheckpointResponse>, Status> {
        let caller = self.caller(&req)?;
        let notes = req.into_inner().checkpoints;
        if notes.len() > 1024 {
            return Err(Status::invalid_argument(
                "checkpoints: at most 1024 per call (one per member)",
            ));
        }
        let conflicts = self.witness.check_shared(&caller, &notes).await;
        let caller_checkpoint = self
            .witness
            .newest_held_note(&caller)
            .unwrap_or_else(|e| {
                tracing::warn!(peer = %caller, error = %format!("{e:#}"), "could not read the checkpoint held of this peer");
                None
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ShareCheckpointResponse {
            conflicts,
            caller_checkpoint,
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        self.caller(&req)?;
        let r = req.into_inner();
        let proof = self
            .store
            .consistency_proof(r.old_size, r.new_size)
            .map_err(|e| Status::out_of_range(e.to_string()))?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            old_size: r.old_size,
            new_size: r.new_size,
            hashes: proof.into_iter().map(|h| h.0.to_vec()).collect(),
        }))
    }
}

/// Entries in `[from, min(size, from+256))` addressed to `caller`, each with
/// its proof under the checkpoint of `size`, and the index to go on from:
/// the first one not yet readable, never past it. The first carries a
/// consistency proof from `proven`, the checkpoint size the caller holds,
/// when that is another, smaller one.
fn collect(
    store: &Store,
    caller: &str,
    from: u64,
    size: u64,
    proven: u64,
) -> Result<(Vec<pb::Delivery>, u64), lienthong_store::StoreError> {
    let end = size.min(from + 256);
    let note = store
        .latest_checkpoint()
        .filter(|c| c.size == size)
        .map(|c| c.note.clone());
    let Some(note) = note else {
        return Ok((Vec::new(), from));
    };
    // Choose first, then prove all under one cache: neighbouring entries
    // share most of their proof hashes.
    let (chosen, next) = store.deliverables(from, end, Some(caller))?;
    let indexes: Vec<u64> = chosen.iter().map(|e| e.index).collect();
    let proofs = store.inclusion_proofs(&indexes, size)?;
    let mut out: Vec<pb::Delivery> = chosen
        .into_iter()
        .zip(proofs)
        .map(|(e, proof)| {
            let withheld: &[String] = e
                .openings
                .withheld
                .iter()
                .find(|w| w.recipient == caller)
                .map_or(&[], |w| &w.fields);
            pb::Delivery {
                openings: lienthong_core::redaction::allowed(&e.openings.openings, withheld),
                envelope: e.envelope,
                checkpoint: note.clone(),
                inclusion_proof: proof.into_iter().map(|h| h.0.to_vec()).collect(),
                consistency_from: 0,
                consistency_proof: Vec::new(),
            }
        })
        .collect();
    if let Some(first) = out.first_mut()
        && proven > 0
        && proven < size
    {
        first.consistency_from = proven;
        first.consistency_proof = store
            .consistency_proof(proven, size)?
            .into_iter()
            .map(|h| h.0.to_vec())
            .collect();
    }
    Ok((out, next))
}

/// Accepts TLS connections with `config`'s verifier (pinned members on
/// the federation port, the local CA on the API), handshaking off the
/// accept loop; refused handshakes are logged with `port`.
pub fn tls_incoming(
    listener: tokio::net::TcpListener,
    config: rustls::ServerConfig,
    port: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(port, error = %e, "accepting a connection failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(port, %addr, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(port, %addr, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A Federation client to `member`, at its endpoint in the manifest in
/// force, accepting only its pinned key.
///
/// Calls share one kept-open connection per member (HTTP/2 multiplexes
/// them; tonic reconnects it when it breaks). Dialling for each call cost
/// a full TLS handshake per cosignature request, gossip and manifest poll:
/// with 11 members signing checkpoints every 50 ms, thousands of
/// handshakes a second, the largest cost in the replication benchmark.
/// A new endpoint or pin in the manifest, or a new certificate of this
/// node, opens a new connection. Subscriptions keep their own connection.
pub async fn client_for(
    peering: &Peering,
    member: &str,
) -> Result<FederationClient<tonic::transport::Channel>> {
    let chain = peering.chain();
    let m = chain
        .current()
        .manifest()
        .members
        .iter()
        .find(|m| m.code == member)
        .with_context(|| format!("{member} is not a member"))?;
    let pin = SpkiPin::from_hex(&m.tls_spki_sha256).context("bad pin in manifest")?;
    let identity = peering.identity.identity();
    let key = ChannelKey {
        endpoint: m.endpoint.clone(),
        pin,
        cert_pem: identity.cert_pem.clone(),
    };
    let cached = peering
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(member)
        .filter(|(k, _)| *k == key)
        .map(|(_, c)| c.clone());
    let channel = match cached {
        Some(c) => c,
        None => {
            let c = connect_pinned(&m.endpoint, &identity, pin).await?;
            peering
                .channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(member.to_owned(), (key, c.clone()));
            c
        }
    };
    Ok(FederationClient::new(channel).max_decoding_message_size(16 * 1024 * 1024))
}

/// A gRPC channel to `endpoint`, accepting only the server key `pin`.
async fn connect_pinned(
    endpoint: &str,
    identity: &TlsIdentity,
    pin: SpkiPin,
) -> Result<tonic::transport::Channel> {
    Ok(lienthong_federation::channel::connect_pinned(endpoint, identity, pin).await?)
}

/// Receiver side: keeps a subscription to `author` open, verifying every
/// delivery before storing it; reconnects with backoff until stopped.
pub async fn subscriber(
    witness: Arc<Witness>,
    author: String,
    writer: Arc<Writer>,
    mut stopping: watch::Receiver<bool>,
) {
    let peering = witness.peering.clone();
    let wake = peering.waker(&author);
    let mut backoff = Duration::from_millis(100);
    loop {
        if peering.chain().current().member_key(&author).is_none() {
            tracing::info!(peer = %author, "no longer a member: stopped following its feed");
            return;
        }
        let result = tokio::select! {
            r = subscribe_once(&witness, &author, &writer) => r,
            _ = stopping.changed() => return,
        };
        peering.note_peer(&author, |s| s.connected = false);
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                let e = format!("{e:#}");
                tracing::debug!(peer = %author, error = %e, "subscription ended; retrying");
                peering.note_peer(&author, |s| s.last_error = e);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = wake.notified() => backoff = Duration::from_millis(100),
            _ = stopping.changed() => return,
        }
    }
}

async fn subscribe_once(witness: &Witness, author: &str, writer: &Writer) -> Result<()> {
    let (peering, store) = (&*witness.peering, &witness.store);
    // Watch for new manifest versions before reading the one in force: a
    // version adopted while this session connects then still ends it,
    // instead of leaving it on the old keys for as long as the stream
    // lasts.
    let mut versions = peering.versions();
    let chain = peering.chain();
    let m = chain.current().manifest();
    let member = m
        .members
        .iter()
        .find(|x| x.code == author)
        .context("author left the manifest")?;
    let pin = SpkiPin::from_hex(&member.tls_spki_sha256).context("bad pin in manifest")?;
    let author_key = AuthorKeys::from_chain(&chain, author).context("no key for author")?;
    // Receipts are signed under this node's manifest version in force; a
    // new version ends this stream (below) and the next one uses it.
    let version = chain.current().version();
    let channel = connect_pinned(&member.endpoint, &peering.identity.identity(), pin).await?;
    let mut client = FederationClient::new(channel);
    let mut next = store.replication_cursor(author)?;
    // The newest checkpoint of the author's that entries stored here came
    // under: every new one must be consistent with it before an entry
    // under it is accepted.
    let mut newest = witness.newest_delivered(author)?;
    let stream = client
        .subscribe(pb::SubscribeRequest {
            from_index: next,
            known_size: newest.as_ref().map_or(0, |c| c.size()),
        })
        .await?
        .into_inner();
    peering.note_peer(author, |s| {
        s.connected = true;
        s.last_error.clear();
    });
    let mut cached: Option<lienthong_log::VerifiedCheckpoint> = None;
    // Verified entries are queued to the writer in order without waiting
    // for each fsync, so many share one group commit; at most WINDOW wait,
    // and at most WINDOW_BYTES of envelopes and openings (entries may be up
    // to 1 MiB each).
    const WINDOW: usize = 1024;
    const WINDOW_BYTES: usize = 32 << 20;
    type Pending = tokio::sync::oneshot::Receiver<
        Result<lienthong_store::Appended, lienthong_store::StoreError>,
    >;
    let mut in_flight: std::collections::VecDeque<(u64, usize, Pending)> =
        std::collections::VecDeque::new();
    let mut in_flight_bytes = 0usize;
    // The deliveries that have arrived when the task looks (up to
    // CHUNK): their signatures are checked as one batch, which costs about
    // half as much per entry during a catch-up. A lone delivery is not
    // held back to wait for company.
    const CHUNK: usize = 64;
    let mut stream = futures_util::StreamExt::ready_chunks(stream, CHUNK);
    loop {
        let arrived = tokio::select! {
            m = futures_util::StreamExt::next(&mut stream) => match m {
                Some(arrived) => arrived,
                None => break,
            },
            // Keys and the version receipts carry changed: reconnect.
            _ = versions.changed() => break,
        };
        let mut deliveries = Vec::with_capacity(arrived.len());
        let mut ended = None;
        for m in arrived {
            match m {
                Ok(d) => deliveries.push(d),
                Err(status) => {
                    ended = Some(status);
                    break;
                }
            }
        }
        let envelopes: Vec<&[u8]> = deliveries.iter().map(|d| d.envelope.as_slice()).collect();
        let entries = verify_entries(&envelopes, &author_key);
        let mut reconnect = false;
        for (d, entry) in deliveries.iter().zip(entries) {
            // A new manifest version arrived mid-chunk: the rest of the
            // chunk is decided again after reconnecting, with its keys and
            // its version for receipts (the stream resumes at the cursor).
            if versions.has_changed().unwrap_or(true) {
                reconnect = true;
                break;
            }
            let Ok(proof) = d
                .inclusion_proof
                .iter()
                .map(|h| h.as_slice().try_into().map(lienthong_log::Hash))
                .collect::<Result<Vec<_>, _>>()
            else {
                tracing::warn!(peer = %author, "refused a delivery whose inclusion proof has a hash that is not 32 bytes");
                peering.refused(author, "malformed");
                continue;
            };
            // Many deliveries share one checkpoint: verify its signature once.
            if cached
                .as_ref()
                .is_none_or(|c| c.note_text() != d.checkpoint)
            {
                match verify_author_checkpoint(d.checkpoint.as_bytes(), &author_key) {
                    Ok(cp) => {
                        newest = Some(
                            witness
                                .check_delivered(
                                    author,
                                    &mut client,
                                    newest.take(),
                                    &cp,
                                    (d.consistency_from, &d.consistency_proof),
                                )
                                .await?,
                        );
                        peering.note_peer(author, |s| s.checkpoint_size = cp.size());
                        cached = Some(cp);
                    }
                    Err(reason) => {
                        // Not counted as a refusal: after a key rotation the
                        // author's new checkpoints verify only once this node
                        // has the manifest version that says so.
                        peering.sync_now.notify_one();
                        anyhow::bail!("{reason}; looking for a newer manifest version");
                    }
                }
            }
            let Some(checkpoint) = cached.as_ref() else {
                continue;
            };
            match entry
                .and_then(|e| accept_entry(e, &proof, checkpoint, &author_key, &peering.me, next))
            {
                Ok(accepted) => {
                    // A case event may carry earlier events for a newcomer:
                    // each must verify too, or the whole delivery is refused.
                    if let Some(pb::entry_body::Payload::CaseEvent(ev)) =
                        &accepted.entry().body().payload
                        && !ev.history.is_empty()
                        && let Err(why) = lienthong_core::coordination::case::verify_history(
                            &accepted.entry().id().0,
                            ev,
                            // The key each event's author held at its
                            // version, also of members who left since.
                            |member, version| chain.key_at(member, version).copied(),
                        )
                    {
                        tracing::warn!(peer = %author, %why, "refused a case event whose history does not verify");
                        peering.refused(author, "bad_history");
                        witness
                            .keep_refused_entry(refused_entry(
                                author,
                                d,
                                format!("case history does not verify: {why}"),
                            ))
                            .await?;
                        continue;
                    }
                    let index = accepted.entry().index();
                    // Openings are unsigned: keep them only if they match the
                    // signed commitments.
                    let openings = match &accepted.entry().body().payload {
                        Some(pb::entry_body::Payload::Alert(a)) => {
                            match lienthong_core::redaction::check_openings(a, &d.openings) {
                                Ok(()) => d.openings.clone(),
                                Err(e) => {
                                    tracing::warn!(peer = %author, index, error = %e, "refused the openings of an entry");
                                    Vec::new()
                                }
                            }
                        }
                        _ => Vec::new(),
                    };
                    let bytes = d.envelope.len()
                        + openings
                            .iter()
                            .map(prost::Message::encoded_len)
                            .sum::<usize>();
                    in_flight.push_back((
                        index,
                        bytes,
                        writer.receive_queued(accepted, openings, version)?,
                    ));
                    in_flight_bytes += bytes;
                    next = index + 1;
                }
                Err(
                    reason @ (Rejected::UnknownManifestVersion { .. } | Rejected::Checkpoint(_)),
                ) => {
                    // Maybe the author is on a newer manifest (a new key, a
                    // new version): look for it, then reconnect. Not a
                    // refusal: the delivery is decided again then.
                    peering.sync_now.notify_one();
                    anyhow::bail!("{reason}; looking for a newer manifest version");
                }
                Err(reason) => {
                    tracing::warn!(peer = %author, %reason, "refused a delivery");
                    peering.refused(author, reason.reason());
                    // Signed by the author yet refused: keep it as evidence.
                    if matches!(
                        reason,
                        Rejected::NotForUs { .. }
                            | Rejected::BeyondCheckpoint { .. }
                            | Rejected::NotIncluded { .. }
                    ) {
                        witness
                            .keep_refused_entry(refused_entry(author, d, reason.to_string()))
                            .await?;
                    }
                }
            }
            while in_flight.len() > WINDOW
                || in_flight_bytes > WINDOW_BYTES
                || in_flight.front().is_some_and(|(_, _, rx)| !rx.is_empty())
            {
                let Some((index, bytes, rx)) = in_flight.pop_front() else {
                    break;
                };
                in_flight_bytes -= bytes;
                let stored = rx
                    .await
                    .map_err(|_| anyhow::anyhow!("the writer stopped"))??;
                tracing::debug!(peer = %author, index, cursor = stored.cursor, duplicate = stored.duplicate, "received and verified");
            }
        }
        if reconnect {
            break;
        }
        if let Some(status) = ended {
            if crate::limits::is_message_too_large(&status) {
                tracing::warn!(peer = %author, error = %status.message(), "refused a delivery larger than the receive limit");
                peering.refused(author, "oversized_message");
            }
            return Err(status.into());
        }
    }
    for (_, _, rx) in in_flight {
        rx.await
            .map_err(|_| anyhow::anyhow!("the writer stopped"))??;
    }
    Ok(())
}

/// Evidence of a delivery the author signed that this node refused.
fn refused_entry(author: &str, d: &pb::Delivery, reason: String) -> pb::EvidenceRecord {
    pb::EvidenceRecord {
        id: 0,
        kind: pb::EvidenceKind::RefusedEntry as i32,
        member: author.to_owned(),
        received_from: author.to_owned(),
        observed_unix_ms: crate::witness::now_unix_ms(),
        reason,
        checkpoints: vec![d.checkpoint.clone()],
        envelope: d.envelope.clone(),
        inclusion_proof: d.inclusion_proof.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::clock_offset_ms;

    #[test]
    fn every_refusal_reason_is_listed() {
        use lienthong_core::delivery::Rejected;
        use lienthong_core::entry::EntryError;
        let all = [
            Rejected::Entry(EntryError::TooLarge(0)),
            Rejected::Entry(EntryError::Malformed {
                what: "",
                detail: String::new(),
            }),
            Rejected::Entry(EntryError::UnknownFormat(0)),
            Rejected::Entry(EntryError::WrongAuthor {
                expected: String::new(),
                found: String::new(),
            }),
            Rejected::Entry(EntryError::BadSignature {
                author: String::new(),
            }),
            Rejected::NotForUs {
                author: String::new(),
                index: 0,
                me: String::new(),
                audience: vec![],
            },
            Rejected::Replayed {
                author: String::new(),
                index: 0,
                expected: 0,
            },
            Rejected::BeyondCheckpoint { index: 0, size: 0 },
        ];
        for r in &all {
            assert!(
                super::REFUSAL_REASONS.contains(&r.reason()),
                "{}",
                r.reason()
            );
        }
        assert!(super::REFUSAL_REASONS.contains(&"not_included"));
    }

    #[test]
    fn clock_offset_is_measured_from_the_midpoint_of_the_call() {
        // Asked at 1000, answered at 1100 (our clock); the peer said 1550.
        assert_eq!(clock_offset_ms(1_000, 1_100, 1_550), Some(500));
        assert_eq!(clock_offset_ms(1_000, 1_100, 1_000), Some(-50));
        // A peer that does not report its time.
        assert_eq!(clock_offset_ms(1_000, 1_100, 0), None);
    }
}
