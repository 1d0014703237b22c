//! Issue 4 item 7 (and issue 8 item 3 in part): a member that sends what it
//! must not. Member 20 is played by the test: its Federation API serves
//! 24 a feed with an entry addressed to someone else, an entry with a
//! forged signature and an entry with a false inclusion proof between
//! honest ones. 24 stores only the honest ones, logs every refusal, and
//! keeps the signed ones as evidence.

use std::pin::Pin;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use lienthong_core::entry::{ENTRY_FORMAT, VerifiedEntry, sign_entry};
use lienthong_federation::tls::PinSet;
use lienthong_log::{
    Hash, MemoryHashStore, NoteSigner, TreeHead, inclusion_proof, sign_checkpoint,
};
use lienthong_proto::v1::{self as pb, entry_body::Payload, get_entry_request::Key};
use lienthong_tests::peer::{peer_identity, serve_federation};
use lienthong_tests::{AGREEMENT_ALL, federation, sample_alert};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const FED: &str = "lienthong.example/bac-bo-11";

struct Rogue {
    deliveries: Vec<pb::Delivery>,
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
        let items: Vec<_> = self
            .deliveries
            .iter()
            .filter(|d| index_of(&d.envelope) >= from)
            .cloned()
            .map(Ok)
            .collect();
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
        Err(Status::unimplemented("rogue"))
    }
    async fn share_checkpoint(
        &self,
        _: Request<pb::ShareCheckpointRequest>,
    ) -> Result<Response<pb::ShareCheckpointResponse>, Status> {
        Err(Status::unimplemented("rogue"))
    }
    async fn get_consistency_proof(
        &self,
        _: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("rogue"))
    }
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
    f.nodes[1].start()?;
    let rogue_dir = f.nodes[0].path();
    let key = lienthong_core::keys::signing_key_from_pem(&std::fs::read_to_string(
        rogue_dir.join("keys/signing-key.pem"),
    )?)?;
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let entries = [
        entry(0, &["20", "24"], &key),
        entry(1, &["20", "01"], &key),      // not for 24
        entry(2, &["20", "24"], &stranger), // forged signature
        entry(3, &["20", "24"], &key),      // sent with a false proof
        entry(4, &["20", "24"], &key),
    ];
    let mut tree = MemoryHashStore::new();
    for e in &entries {
        tree.append(Hash(e.id().0))?;
    }
    let origin = format!("{FED}/20");
    let note = sign_checkpoint(
        &TreeHead {
            origin: origin.clone(),
            size: 5,
            root: tree.root()?,
        },
        &NoteSigner::new(&origin, key.clone())?,
    )?;
    let deliveries = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut proof = inclusion_proof(i as u64, 5, &tree)?;
            if i == 3 {
                proof[0].0[0] ^= 1;
            }
            Ok(pb::Delivery {
                envelope: e.envelope().to_vec(),
                checkpoint: note.clone(),
                inclusion_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
                openings: vec![],
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Listen where the manifest says 20 is, with 20's TLS key.
    let (endpoint, _) = f.endpoint("20")?;
    let pins = PinSet::new(f.members()?.into_iter().map(|(c, _, p)| (c, p)));
    let listener = tokio::net::TcpListener::bind(&endpoint).await?;
    let server = serve_federation(
        listener,
        &peer_identity(&rogue_dir)?,
        pins,
        Rogue { deliveries },
    )?;

    let node = &f.nodes[1];
    let alerts = node.alerts().await?;
    let has = |e: &VerifiedEntry| {
        let mut alerts = alerts.clone();
        let id = e.id().0.to_vec();
        async move {
            alerts
                .get(pb::GetEntryRequest {
                    key: Some(Key::EntryId(id)),
                })
                .await
                .is_ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(has(&entries[0]).await && has(&entries[4]).await) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "honest entries not stored:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, e) in entries.iter().enumerate().take(4).skip(1) {
        assert!(!has(e).await, "entry {i} was stored");
    }
    let evidence = node
        .audit()
        .await?
        .list_evidence(pb::ListEvidenceRequest::default())
        .await?
        .into_inner()
        .evidence;
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
    assert!(log.matches("refused a delivery").count() >= 3, "{log}");
    let status = node
        .audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let p20 = status
        .peers
        .iter()
        .find(|p| p.member == "20")
        .cloned()
        .unwrap_or_default();
    assert!(p20.refused >= 3, "{status:?}");
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
