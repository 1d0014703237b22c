//! Issue 8 item 6 / issue 9 item 4: a node whose store is put back to an
//! older copy must not sign new entries on top of it (that would fork its
//! feed): its peers hold a larger checkpoint it signed, so it refuses all
//! writes and says how to recover.

use std::time::{Duration, Instant};

use lienthong_proto::v1 as pb;
use lienthong_tests::{AGREEMENT_ALL, Federation, Node, copy_dir, federation, sample_alert};

async fn submit(node: &Node, reference: &str) -> Result<pb::SubmitAlertResponse, tonic::Status> {
    node.alerts()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(reference)),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// What `node` knows of `peer` once `ready` holds of it (at most 20 s;
/// `what` names the wait in the error).
async fn peer_once(
    node: &Node,
    peer: &str,
    what: &str,
    ready: impl Fn(&pb::PeerStatus) -> bool,
) -> anyhow::Result<pb::PeerStatus> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = node
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        if let Some(p) = s.peers.iter().find(|p| p.member == peer && ready(p)) {
            return Ok(p.clone());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `witness` has cosigned `author`'s checkpoint of at least
/// `size`.
async fn witnessed(witness: &Node, author: &str, size: u64) -> anyhow::Result<()> {
    peer_once(witness, author, "not witnessed", |p| {
        p.witnessed_size >= size
    })
    .await?;
    Ok(())
}

/// Starts the federation (01 authors, 24 witnesses); once 24 cosigned
/// 01's first alert, backs up 01's store while 01 is stopped; then 01
/// takes three more alerts. Returns where the backup is.
async fn backed_up_then_grown(f: &mut Federation) -> anyhow::Result<std::path::PathBuf> {
    f.start_all()?;
    submit(&f.nodes[0], "r-1").await?;
    witnessed(&f.nodes[1], "01", 1).await?;
    let backup = f.dir.path().join("store-backup");
    let node = &mut f.nodes[0];
    node.stop()?;
    copy_dir(&node.path().join("store"), &backup)?;
    node.start()?;
    for i in 2..=4 {
        submit(&f.nodes[0], &format!("r-{i}")).await?;
    }
    Ok(backup)
}

/// Puts the copy in `backup` back as `node`'s store, and starts it.
fn put_back(node: &mut Node, backup: &std::path::Path) -> anyhow::Result<()> {
    let store = node.path().join("store");
    node.stop()?;
    std::fs::remove_dir_all(&store)?;
    copy_dir(backup, &store)?;
    node.start()
}

/// Why `node` refuses writes, once it does (at most 20 s).
async fn refusal(node: &Node) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = node
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        if !s.writes_refused.is_empty() {
            return Ok(s.writes_refused);
        }
        anyhow::ensure!(Instant::now() < deadline, "no refusal:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_behind_what_peers_cosigned_refuses_to_write() -> anyhow::Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    let backup = backed_up_then_grown(&mut f).await?;
    witnessed(&f.nodes[1], "01", 4).await?;

    // Put the old copy back: its own integrity check passes (it is a
    // consistent older feed), but 24 holds a larger checkpoint 01 signed.
    put_back(&mut f.nodes[0], &backup)?;
    let refused = refusal(&f.nodes[0]).await?;
    assert!(refused.contains("older copy"), "{refused}");
    let err = submit(&f.nodes[0], "r-5").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.message().contains("restore"), "{err}");
    let out = lienthong_tests::run_ok(&["audit", "status", "--config", &f.nodes[0].config_arg()])?;
    assert!(out.contains("WRITES REFUSED"), "{out}");
    Ok(())
}

/// With cosigning paced (`checkpoint.cosign_interval_ms`), a witness may
/// hold an older checkpoint than its member has signed since; the newer
/// ones reached the peers with their entries. A store restored behind
/// those is refused too: a peer answers the node's gossip with the
/// newest checkpoint of the node's own feed it holds, which the node
/// signed, so it cannot be made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_behind_what_peers_received_refuses_to_write() -> anyhow::Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    // 01 asks for cosignatures once a minute: only its first checkpoint
    // of each run is cosigned within this test.
    let config = f.nodes[0].config();
    let text = std::fs::read_to_string(&config)?;
    anyhow::ensure!(text.contains("cosign_interval_ms = 1000"), "{text}");
    std::fs::write(
        &config,
        text.replace("cosign_interval_ms = 1000", "cosign_interval_ms = 60000"),
    )?;
    let backup = backed_up_then_grown(&mut f).await?;
    // 24 received and verified all four, under 01's checkpoint of size 4,
    // while it still holds the size it cosigned before.
    let witnessed_size = peer_once(&f.nodes[1], "01", "not received", |p| {
        p.replication_cursor >= 4 && p.checkpoint_size >= 4
    })
    .await?
    .witnessed_size;
    anyhow::ensure!(
        witnessed_size < 4,
        "24 cosigned size {witnessed_size}: the test needs a witness behind the deliveries"
    );

    put_back(&mut f.nodes[0], &backup)?;
    let refused = refusal(&f.nodes[0]).await?;
    assert!(
        refused.contains("member 24 holds a checkpoint of size 4"),
        "{refused}"
    );
    assert!(refused.contains("older copy"), "{refused}");
    let err = submit(&f.nodes[0], "r-5").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    Ok(())
}
