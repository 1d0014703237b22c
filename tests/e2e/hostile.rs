//! Issue 4 item 7 (and issue 8 item 3 in part): a member that sends what it
//! must not. Member 20 is played by the test: its Federation API serves
//! 24 a feed with an entry addressed to someone else, an entry with a
//! forged signature and an entry with a false inclusion proof between
//! honest ones, then replays an honest one; later it sends oversized
//! entries and messages. 24 stores only the honest ones, logs and counts
//! every refusal by reason, and keeps the signed ones as evidence.

use std::pin::Pin;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use lienthong_core::entry::{ENTRY_FORMAT, VerifiedEntry, sign_entry};
use lienthong_federation::tls::PinSet;
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, consistency_proof, inclusion_proof,
    sign_checkpoint,
};
use lienthong_proto::v1::{self as pb, entry_body::Payload, get_entry_request::Key};
use lienthong_tests::peer::{peer_identity, serve_federation};
use lienthong_tests::{AGREEMENT_ALL, federation, sample_alert};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const FED: &str = "lienthong.example/bac-bo-11";

struct Rogue {
    deliveries: Vec<pb::Delivery>,
    /// Sent instead on the first subscription, if set.
    first: std::sync::Mutex<Option<Vec<pb::Delivery>>>,
    /// Subscriptions served, shared with the test.
    subscriptions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// If set, plays a lying witness, counting the cosigning requests: it
    /// claims to hold a far larger checkpoint of the caller's feed (every
    /// other answer) or refuses to cosign (the others), and never shows a
    /// checkpoint the caller signed.
    lies: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// If set, the feed it proves consistency in (its own version of it).
    tree: Option<std::sync::Mutex<MemoryHashStore>>,
    /// Whether each stream ends after its deliveries (the caller then
    /// subscribes again) instead of staying open.
    ends: bool,
}

impl Rogue {
    fn new(deliveries: Vec<pb::Delivery>) -> Self {
        Self {
            deliveries,
            first: std::sync::Mutex::new(None),
            subscriptions: Default::default(),
            lies: None,
            tree: None,
            ends: false,
        }
    }
}

type Deliveries = Pin<Box<dyn Stream<Item = Result<pb::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl pb::federation_server::Federation for Rogue {
    type SubscribeStream = Deliveries;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Deliveries>, Status> {
        let from = req.get_ref().from_index;
        self.subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(first) = self.first.lock().unwrap().take() {
            let s = tokio_stream::StreamExt::chain(
                tokio_stream::iter(first.into_iter().map(Ok)),
                tokio_stream::pending(),
            );
            return Ok(Response::new(Box::pin(s)));
        }
        let items: Vec<_> = self
            .deliveries
            .iter()
            .filter(|d| index_of(&d.envelope) >= from)
            .cloned()
            .map(Ok)
            .collect();
        if self.ends {
            return Ok(Response::new(Box::pin(tokio_stream::iter(items))));
        }
        // Then stay open, as an author with nothing new does.
        let s = tokio_stream::StreamExt::chain(tokio_stream::iter(items), tokio_stream::pending());
        Ok(Response::new(Box::pin(s)))
    }
    async fn get_manifest(
        &self,
        _: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::GetManifestResponse>, Status> {
        Ok(Response::new(pb::GetManifestResponse::default()))
    }
    async fn add_checkpoint(
        &self,
        _: Request<pb::AddCheckpointRequest>,
    ) -> Result<Response<pb::AddCheckpointResponse>, Status> {
        let Some(calls) = &self.lies else {
            return Err(Status::unimplemented("rogue"));
        };
        if calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(2)
        {
            Ok(Response::new(pb::AddCheckpointResponse {
                cosignatures: vec![],
                witness_size: 1_000_000,
            }))
        } else {
            Err(Status::failed_precondition(
                "this witness already cosigned size 1000000 of your feed",
            ))
        }
    }
    async fn share_checkpoint(
        &self,
        _: Request<pb::ShareCheckpointRequest>,
    ) -> Result<Response<pb::ShareCheckpointResponse>, Status> {
        match self.lies {
            Some(_) => Ok(Response::new(pb::ShareCheckpointResponse::default())),
            None => Err(Status::unimplemented("rogue")),
        }
    }
    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let Some(tree) = &self.tree else {
            return Err(Status::unimplemented("rogue"));
        };
        let r = req.get_ref();
        let tree = tree.lock().unwrap();
        let proof = consistency_proof(r.old_size, r.new_size, &*tree)
            .map_err(|e| Status::out_of_range(e.to_string()))?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            old_size: r.old_size,
            new_size: r.new_size,
            hashes: proof.iter().map(|h| h.0.to_vec()).collect(),
        }))
    }
}

/// The deliveries of `entries` as 20's feed, under one checkpoint signed
/// with `key`; `tamper` may alter each inclusion proof.
fn signed_deliveries(
    entries: &[VerifiedEntry],
    key: &SigningKey,
    tamper: impl Fn(usize, &mut Vec<Hash>),
) -> anyhow::Result<Vec<pb::Delivery>> {
    let mut tree = MemoryHashStore::new();
    for e in entries {
        tree.append(Hash(e.id().0))?;
    }
    let size = entries.len() as u64;
    let origin = format!("{FED}/20");
    let note = sign_checkpoint(
        &TreeHead {
            origin: origin.clone(),
            size,
            root: tree.root()?,
        },
        &NoteSigner::new(&origin, key.clone())?,
    )?;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut proof = inclusion_proof(i as u64, size, &tree)?;
            tamper(i, &mut proof);
            Ok(pb::Delivery {
                envelope: e.envelope().to_vec(),
                checkpoint: note.clone(),
                inclusion_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
                openings: vec![],
                consistency_from: 0,
                consistency_proof: vec![],
            })
        })
        .collect()
}

/// Serves `rogue` where the manifest says 20 is, with 20's TLS key.
async fn serve_rogue(
    f: &lienthong_tests::Federation,
    rogue: impl pb::federation_server::Federation,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (endpoint, _) = f.endpoint("20")?;
    let pins = PinSet::new(f.members()?.into_iter().map(|(c, _, p)| (c, p)));
    let listener = tokio::net::TcpListener::bind(&endpoint).await?;
    serve_federation(listener, &peer_identity(&f.nodes[0].path())?, pins, rogue)
}

/// Members 20, 24 and 01, where only 24 runs: 20 is played by the test
/// (with its signing key, returned), and 01 exists to be addressed.
async fn played_20_and_24_running() -> anyhow::Result<(lienthong_tests::Federation, SigningKey)> {
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        2,
        AGREEMENT_ALL,
    )?;
    f.nodes[1].start()?;
    let key = signing_key_of(&f.nodes[0])?;
    Ok((f, key))
}

fn signing_key_of(node: &lienthong_tests::Node) -> anyhow::Result<SigningKey> {
    Ok(lienthong_core::keys::signing_key_from_pem(
        &std::fs::read_to_string(node.path().join("keys/signing-key.pem"))?,
    )?)
}

async fn peer_status(node: &lienthong_tests::Node, member: &str) -> anyhow::Result<pb::PeerStatus> {
    Ok(node
        .status()
        .await?
        .peers
        .into_iter()
        .find(|p| p.member == member)
        .unwrap_or_default())
}

async fn has_entry(node: &lienthong_tests::Node, e: &VerifiedEntry) -> anyhow::Result<bool> {
    Ok(node
        .alerts()
        .await?
        .get(pb::GetEntryRequest {
            key: Some(Key::EntryId(e.id().0.to_vec())),
        })
        .await
        .is_ok())
}

fn index_of(envelope: &[u8]) -> u64 {
    lienthong_core::entry::decode_envelope(envelope).map_or(0, |(_, b)| b.index)
}

fn entry(index: u64, audience: &[&str], key: &SigningKey) -> VerifiedEntry {
    sign_entry(
        pb::EntryBody {
            format: ENTRY_FORMAT,
            author: "20".into(),
            index,
            created_unix_ms: 1_795_000_000_000 + index as i64,
            audience: audience.iter().map(|s| (*s).to_owned()).collect(),
            manifest_version: 1,
            agreement_hash: vec![0; 32],
            handling: pb::Handling::H1 as i32,
            response_deadline_hours: 0,
            payload: Some(Payload::Alert(sample_alert(&format!("rogue-{index}")))),
        },
        key,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_forged_or_misaddressed_entries_is_refused_and_recorded()
-> anyhow::Result<()> {
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        2,
        AGREEMENT_ALL,
    )?;
    let metrics = f.nodes[1].enable_metrics()?;
    f.nodes[1].start()?;
    let key = signing_key_of(&f.nodes[0])?;
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let entries = [
        entry(0, &["20", "24"], &key),
        entry(1, &["20", "01"], &key),      // not for 24
        entry(2, &["20", "24"], &stranger), // forged signature
        entry(3, &["20", "24"], &key),      // sent with a false proof
        entry(4, &["20", "24"], &key),
    ];
    let mut deliveries = signed_deliveries(&entries, &key, |i, proof| {
        if i == 3 {
            proof[0].0[0] ^= 1;
        }
    })?;
    // Then entry 0 again: a replay.
    deliveries.push(deliveries[0].clone());

    let server = serve_rogue(&f, Rogue::new(deliveries)).await?;

    let node = &f.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(has_entry(node, &entries[0]).await?
        && has_entry(node, &entries[4]).await?
        && peer_status(node, "20").await?.refused == 4)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "honest entries not stored:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, e) in entries.iter().enumerate().take(4).skip(1) {
        assert!(!has_entry(node, e).await?, "entry {i} was stored");
    }
    let evidence = node.evidence().await?;
    let kept: Vec<u64> = evidence
        .iter()
        .filter(|e| e.kind() == pb::EvidenceKind::RefusedEntry && e.member == "20")
        .map(|e| index_of(&e.envelope))
        .collect();
    assert_eq!(
        kept,
        [1, 3],
        "the two signed refusals are evidence; the forgery is not"
    );
    for e in &evidence {
        // Each stands alone: the author's signature on the entry verifies.
        lienthong_core::entry::verify_envelope(&e.envelope, "20", &key.verifying_key())?;
    }
    let log = node.log();
    assert!(log.contains("not addressed to 24"), "{log}");
    assert!(log.contains("not proven included"), "{log}");
    assert!(log.matches("refused a delivery").count() >= 4, "{log}");
    assert!(log.contains("replayed or reordered"), "{log}");
    // Counted by reason, in the status and the metrics.
    let p20 = peer_status(node, "20").await?;
    assert_eq!(p20.refused, 4, "{p20:?}");
    let reasons: Vec<(&str, u64)> = p20
        .refused_by_reason
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect();
    assert_eq!(
        reasons,
        [
            ("forged_signature", 1),
            ("not_for_us", 1),
            ("not_included", 1),
            ("replayed", 1)
        ]
    );
    let scrape = lienthong_tests::http_get(metrics, "/metrics")?;
    for reason in ["forged_signature", "not_for_us", "not_included", "replayed"] {
        let line =
            format!("lienthong_peer_refused_deliveries_total{{peer=\"20\",reason=\"{reason}\"}} 1");
        assert!(scrape.contains(&line), "no {line:?} in\n{scrape}");
    }
    server.abort();
    Ok(())
}

/// 20 sends 24 an entry addressed to someone else, ends the stream, and
/// sends it again at every reconnection. 24 refuses it each time but keeps
/// it as evidence once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_refused_again_and_again_is_kept_as_evidence_once() -> anyhow::Result<()> {
    let (f, key) = played_20_and_24_running().await?;
    let entries = [entry(0, &["20", "01"], &key)];
    let mut rogue = Rogue::new(signed_deliveries(&entries, &key, |_, _| {})?);
    rogue.ends = true;
    let subscriptions = rogue.subscriptions.clone();
    let server = serve_rogue(&f, rogue).await?;
    let node = &f.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(subscriptions.load(std::sync::atomic::Ordering::SeqCst) >= 4
        && peer_status(node, "20").await?.refused >= 3)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not refused three times:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let evidence = node.evidence().await?;
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert_eq!(evidence[0].kind(), pb::EvidenceKind::RefusedEntry);
    server.abort();
    Ok(())
}

/// 20 serves 24 entries 0–2 under a checkpoint of size 3, then entries 3
/// and 4 under a checkpoint of size 5 of another history (its first three
/// leaves differ), with that history's own consistency proof, when asked
/// for one. Each entry verifies against its checkpoint, but the two
/// checkpoints cannot both be honest: 24 stores nothing under the second,
/// keeps both notes as evidence once, and refuses them again after every
/// reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_a_history_that_forks_what_was_stored_is_refused_and_recorded()
-> anyhow::Result<()> {
    fork_is_refused(false).await
}

/// The same, with the fork's consistency proof sent in the stream, as an
/// author of this release does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_proven_in_the_stream_is_refused_and_recorded() -> anyhow::Result<()> {
    fork_is_refused(true).await
}

async fn fork_is_refused(streamed: bool) -> anyhow::Result<()> {
    let (f, key) = played_20_and_24_running().await?;
    let first: Vec<VerifiedEntry> = (0..3).map(|i| entry(i, &["20", "24"], &key)).collect();
    // The other history: other entries at 0–2 (another audience), then 3, 4.
    let other: Vec<VerifiedEntry> = (0..5)
        .map(|i| entry(i, &["20", "24", "01"], &key))
        .collect();
    let mut deliveries = signed_deliveries(&first, &key, |_, _| {})?;
    deliveries.extend(signed_deliveries(&other, &key, |_, _| {})?.split_off(3));
    let mut tree = MemoryHashStore::new();
    for e in &other {
        tree.append(Hash(e.id().0))?;
    }
    if streamed {
        deliveries[3].consistency_from = 3;
        deliveries[3].consistency_proof = consistency_proof(3, 5, &tree)?
            .iter()
            .map(|h| h.0.to_vec())
            .collect();
    }
    let mut rogue = Rogue::new(deliveries);
    rogue.tree = Some(std::sync::Mutex::new(tree));
    let subscriptions = rogue.subscriptions.clone();
    let server = serve_rogue(&f, rogue).await?;

    let node = &f.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(20);
    let evidence = loop {
        let list = node.evidence().await?;
        if !list.is_empty() && subscriptions.load(std::sync::atomic::Ordering::SeqCst) >= 3 {
            break list;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no evidence after three subscriptions:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for e in &first {
        assert!(
            has_entry(node, e).await?,
            "entry {} of the first history",
            e.index()
        );
    }
    for e in &other[3..] {
        assert!(
            !has_entry(node, e).await?,
            "entry {} of the fork was stored",
            e.index()
        );
    }
    assert_eq!(evidence.len(), 1, "kept once: {evidence:?}");
    let e = &evidence[0];
    assert_eq!(
        (e.kind(), e.member.as_str()),
        (pb::EvidenceKind::Inconsistent, "20")
    );
    // It stands alone: both notes are signed by 20, sizes 3 and 5.
    let sizes: Vec<u64> = e
        .checkpoints
        .iter()
        .map(|c| {
            let cp = lienthong_log::verify_checkpoint_with_key(
                c.as_bytes(),
                &format!("{FED}/20"),
                &key.verifying_key(),
            )?;
            Ok(cp.size())
        })
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(sizes, [3, 5]);
    let p20 = peer_status(node, "20").await?;
    assert!(
        p20.refused_by_reason
            .get("inconsistent_checkpoint")
            .copied()
            >= Some(2),
        "refused at each reconnection: {p20:?}"
    );
    assert!(
        p20.last_error.contains("refused the entries of 20"),
        "{p20:?}"
    );
    assert!(node.log().contains("EQUIVOCATION"));
    server.abort();
    Ok(())
}

/// Issue 8 item 3 (oversized): 20, pinned and otherwise honest, sends on
/// its established stream an envelope over the entry size limit and then
/// a message over the gRPC receive limit. 24 refuses both (counted by
/// reason), drops that stream without buffering the rest, keeps serving,
/// and stores 20's honest entries once it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_peer_sending_oversized_messages_is_cut_off_and_the_node_recovers()
-> anyhow::Result<()> {
    let mut f = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.nodes[1].start()?;
    let key = signing_key_of(&f.nodes[0])?;
    let entries: Vec<_> = (0..4).map(|i| entry(i, &["20", "24"], &key)).collect();
    let honest = signed_deliveries(&entries, &key, |_, _| {})?;
    let big_envelope = pb::Delivery {
        envelope: vec![0x0a; lienthong_core::entry::MAX_ENVELOPE_BYTES + 1],
        ..honest[1].clone()
    };
    let huge_message = pb::Delivery {
        envelope: vec![0x0a; 5 * 1024 * 1024],
        ..honest[1].clone()
    };
    let rogue = Rogue::new(honest);
    *rogue.first.lock().unwrap() = Some(vec![
        rogue.deliveries[0].clone(),
        big_envelope,
        huge_message,
        // Never read: the stream is cut before.
        rogue.deliveries[1].clone(),
    ]);
    let subscriptions = rogue.subscriptions.clone();
    let server = serve_rogue(&f, rogue).await?;

    let node = &f.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for e in &entries {
            all &= has_entry(node, e).await?;
        }
        if all {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "20's honest entries not stored after the oversized messages:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p20 = peer_status(node, "20").await?;
    assert_eq!(p20.refused_by_reason.get("oversized"), Some(&1), "{p20:?}");
    assert_eq!(
        p20.refused_by_reason.get("oversized_message"),
        Some(&1),
        "{p20:?}"
    );
    assert!(
        subscriptions.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "24 reconnected"
    );
    let log = node.log();
    assert!(
        log.contains("refused a delivery larger than the receive limit"),
        "{log}"
    );
    let held = node
        .alerts()
        .await?
        .query(pb::QueryRequest {
            author: "20".into(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(held.entries.len(), 4, "each honest entry exactly once");
    server.abort();
    Ok(())
}

/// Issue 8 item 3 (floods): 24's Federation port is flooded with
/// connections that send garbage, connections that send nothing, and TLS
/// handshakes from a key the manifest does not pin, while 20 keeps
/// replicating to it. 24 keeps serving its peer and its local API, stores
/// 20's alerts exactly once, and drops the idle connections by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_the_federation_port_does_not_stop_honest_replication() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.start_all()?;
    let (endpoint, pin) = f.endpoint("24")?;
    // A stranger with a key of its own, not in the manifest.
    let stranger = lienthong_tests::Node::init("01", "Hà Nội")?;
    let stranger_id = peer_identity(&stranger.path())?;

    // Honest load: 200 alerts at 20, paced (bounded by count).
    let mut c = f.nodes[0].alerts().await?;
    let load = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..200 {
            let r = c
                .submit(pb::SubmitAlertRequest {
                    alert: Some(sample_alert(&format!("flood-{i}"))),
                })
                .await?
                .into_inner();
            ids.push(r.entry_id);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        anyhow::Ok(ids)
    });

    // The flood: 150 garbage senders, 150 silent connections, 100
    // handshakes with an unpinned key.
    let mut garbage = Vec::new();
    let mut silent = Vec::new();
    for i in 0..150u32 {
        let mut s = tokio::net::TcpStream::connect(&endpoint).await?;
        let junk: Vec<u8> = (0..16 * 1024u32)
            .map(|k| (k.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        let _ = s.write_all(&junk).await;
        garbage.push(s);
        silent.push(tokio::net::TcpStream::connect(&endpoint).await?);
    }
    let mut refused = 0;
    for _ in 0..100 {
        let dial = lienthong_tests::peer::federation_client(&endpoint, &stranger_id, pin);
        let ok = match tokio::time::timeout(Duration::from_secs(5), dial).await {
            Ok(Ok(mut client)) => client
                .get_manifest(pb::GetManifestRequest::default())
                .await
                .is_ok(),
            _ => false,
        };
        if !ok {
            refused += 1;
        }
    }
    assert_eq!(refused, 100, "an unpinned key got through");

    // Meanwhile the local API answers and replication goes on.
    let st = f.nodes[1]
        .audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert!(st.writes_refused.is_empty());
    let ids = load.await??;
    let mut a = f.nodes[1].alerts().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        loop {
            if a.get(pb::GetEntryRequest {
                key: Some(Key::EntryId(id.clone())),
            })
            .await
            .is_ok()
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "20's alerts stopped reaching 24");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let held = a
        .query(pb::QueryRequest {
            author: "20".into(),
            kinds: vec![pb::EntryKind::Alert as i32],
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(held.entries.len(), 200, "each alert exactly once");

    // The silent connections are closed by 24 (TLS handshake timeout), not
    // held forever.
    let mut closed = 0;
    for mut s in silent {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(15), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 150, "idle connections left open");
    drop(garbage);
    Ok(())
}

/// One member's word that another's store is behind (a larger size it
/// claims to have cosigned, or a refusal to cosign) must not stop that
/// member's writes: only a checkpoint the member signed itself can.
/// Otherwise one dishonest member could stop any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_claiming_without_proof_that_our_store_is_behind_does_not_stop_writes()
-> anyhow::Result<()> {
    let mut f = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rogue = serve_rogue(
        &f,
        Rogue {
            lies: Some(calls.clone()),
            ..Rogue::new(Vec::new())
        },
    )
    .await?;
    f.nodes[1].start()?;
    let mut alerts = f.nodes[1].alerts().await?;
    // New checkpoints keep 24 asking 20 to cosign: both lies, twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0u32;
    while calls.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "24 asked 20 to cosign only {} times:\n{}",
            calls.load(std::sync::atomic::Ordering::SeqCst),
            f.nodes[1].log()
        );
        alerts
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("claimed-{sent}"))),
            })
            .await?;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = f.nodes[1].status().await?;
    assert!(s.writes_refused.is_empty(), "{s:?}");
    alerts
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("after-the-claims")),
        })
        .await?;
    assert!(
        f.nodes[1]
            .log()
            .contains("shows no checkpoint signed by this node"),
        "{}",
        f.nodes[1].log()
    );
    rogue.abort();
    Ok(())
}
