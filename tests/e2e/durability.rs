//! Nothing acknowledged is lost: SIGKILL while clients submit, restart,
//! check every acknowledged alert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{Node, sample_alert};

/// Rounds of kill -9; each round runs 16 concurrent submitters.
const ROUNDS: usize = 10;
const CLIENTS: usize = 16;

/// reference → (entry id, feed index).
type Acked = HashMap<String, (Vec<u8>, u64)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_alert_survives_kill_9() -> anyhow::Result<()> {
    let mut node = Node::init("31", "Hải Phòng")?;
    // reference → (entry id, feed index) for every acknowledged submission.
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut total_attempts = 0usize;

    for round in 0..ROUNDS {
        node.start()?;
        let channel = node.channel().await?;
        let stop_at = Instant::now() + Duration::from_millis(150 + 97 * round as u64);
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let mut c = pb::alerts_client::AlertsClient::new(channel.clone());
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                // Bounded in count and in time; stops by itself.
                for k in 0..2_000 {
                    if Instant::now() > stop_at + Duration::from_secs(5) {
                        break;
                    }
                    let reference = format!("r{round}-c{client}-{k}");
                    n += 1;
                    match c
                        .submit(pb::SubmitAlertRequest {
                            alert: Some(sample_alert(&reference)),
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            acked
                                .lock()
                                .unwrap()
                                .insert(reference, (r.entry_id, r.index));
                        }
                        Err(_) => break, // the node was killed
                    }
                }
                n
            }));
        }
        tokio::time::sleep_until(stop_at.into()).await;
        node.kill9();
        for t in tasks {
            total_attempts += t.await?;
        }
    }

    // Restart and check.
    node.start()?;
    let mut c = node.alerts().await?;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > ROUNDS * 10,
        "too few acknowledged submissions to mean anything: {}",
        acked.len()
    );
    for (reference, (id, index)) in &acked {
        let e = c
            .get(pb::GetEntryRequest {
                key: Some(Key::Reference(reference.clone())),
            })
            .await?
            .into_inner();
        assert_eq!(&e.entry_id, id, "{reference}");
        let by_index = c
            .get(pb::GetEntryRequest {
                key: Some(Key::OwnIndex(*index)),
            })
            .await?
            .into_inner();
        assert_eq!(&by_index.entry_id, id, "{reference} at index {index}");
    }
    // Exactly once: no reference appears twice in the feed, and the feed has
    // no holes (indexes 0..size all present).
    let mut refs = std::collections::HashSet::new();
    let mut size = 0u64;
    let mut token = String::new();
    loop {
        let page = c
            .query(pb::QueryRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in &page.entries {
            let body = e.body.as_ref().unwrap();
            let Some(pb::entry_body::Payload::Alert(a)) = &body.payload else {
                panic!("not an alert")
            };
            assert!(
                refs.insert(a.reference.clone()),
                "reference {} stored twice",
                a.reference
            );
            size = size.max(body.index + 1);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(refs.len() as u64, size, "feed indexes have holes");
    // Every third reference submitted again after the kills is known (the
    // writer's filter of references, rebuilt at each start from what is
    // on disk): the same entry, nothing new stored.
    let mut tasks = Vec::new();
    let all: Vec<_> = acked
        .iter()
        .step_by(3)
        .map(|(r, (id, _))| (r.clone(), id.clone()))
        .collect();
    for chunk in all.chunks(all.len().div_ceil(CLIENTS)) {
        let (mut c, chunk) = (c.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for (reference, id) in chunk {
                let r = c
                    .submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&reference)),
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(r.duplicate && r.entry_id == id, "{reference} stored again");
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let status = node.status().await?;
    assert_eq!(status.feed_size, size, "nothing new stored");
    eprintln!(
        "{ROUNDS} kill -9 rounds: {total_attempts} submissions attempted, {} acknowledged, {size} stored",
        acked.len()
    );

    // And the whole feed still verifies against a fresh checkpoint.
    std::thread::sleep(Duration::from_millis(200));
    node.feed_verify(None)?;
    Ok(())
}

#[test]
fn a_node_refuses_to_serve_a_store_its_key_did_not_sign() -> anyhow::Result<()> {
    let mut a = Node::init("37", "Ninh Bình")?;
    a.start()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut c = a.alerts().await?;
        c.submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("nb-1")),
        })
        .await?;
        anyhow::Ok(())
    })?;
    a.stop()?; // clean stop writes a last checkpoint
    // Swap in another node's signing key: the checkpoint no longer verifies.
    let b = Node::init("37", "Ninh Bình")?;
    std::fs::copy(
        b.path().join("keys/signing-key.pem"),
        a.path().join("keys/signing-key.pem"),
    )?;
    let err = a.start().unwrap_err().to_string();
    assert!(
        err.contains("does not verify with this member's key"),
        "{err}"
    );
    Ok(())
}
