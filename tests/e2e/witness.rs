//! Issue 6 items 1–2: members witness each other's checkpoints (C2SP
//! tlog-cosignature/v1), and a member that shows different histories to
//! different peers is caught by the honest ones, with signed evidence.

use std::time::{Duration, Instant};

use lienthong_log::{MemoryHashStore, NoteSigner, TreeHead, leaf_hash, sign_checkpoint};
use lienthong_proto::v1::{self as pb};
use lienthong_tests::peer::{federation_client, peer_identity};
use lienthong_tests::{AGREEMENT_ALL, federation, sample_alert};

const FED: &str = "lienthong.example/bac-bo-11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_cosign_each_others_checkpoints() -> anyhow::Result<()> {
    let mut f = federation(
        &[("01", "Hà Nội"), ("24", "Bắc Ninh"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    let metrics_port = f.nodes[0].enable_metrics()?;
    f.start_all()?;
    for n in &f.nodes {
        n.alerts()
            .await?
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("w-{}", n.member))),
            })
            .await?;
    }
    let vkeys: Vec<(String, String)> = f
        .nodes
        .iter()
        .map(|n| Ok((n.member.clone(), n.vkey()?.trim().to_owned())))
        .collect::<anyhow::Result<_>>()?;
    for n in &f.nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cp = n
                .audit()
                .await?
                .get_checkpoint(pb::GetCheckpointRequest::default())
                .await?
                .into_inner();
            // The member's own signature still verifies with witnesses'
            // lines present, and each other member's cosignature verifies
            // under the key the manifest lists for it.
            lienthong_log::verify_checkpoint(
                cp.signed_note.as_bytes(),
                &vkeys_of(&vkeys, &n.member),
            )?;
            let cosigned: Vec<&str> = vkeys
                .iter()
                .filter(|(m, _)| *m != n.member)
                .filter(|(m, v)| {
                    let (_, _, key) = lienthong_log::parse_vkey(v).unwrap();
                    lienthong_log::verify_cosignature_in_note(
                        cp.signed_note.as_bytes(),
                        &format!("{FED}/{m}"),
                        &key,
                    )
                    .is_ok()
                })
                .map(|(m, _)| m.as_str())
                .collect();
            // Settled: its alert and a receipt for each other member's
            // alert, all under one checkpoint cosigned by both others.
            if cosigned.len() == 2 && cp.size == 3 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}'s checkpoint is cosigned only by {cosigned:?}:\n{}\n{}",
                n.member,
                cp.signed_note,
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = n
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        assert_eq!(status.manifest_version, 1);
        assert_eq!(status.cosignatures, 2, "{status:?}");
        assert_eq!(status.equivocations, 0);
        assert_eq!(status.peers.len(), 2);
        for p in &status.peers {
            assert!(
                p.witnessed_size >= 1,
                "{} has not witnessed {}: {status:?}",
                n.member,
                p.member
            );
        }
        // Both replication streams are up (a peer that calls wakes the
        // subscriber that was backing off from it).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text =
                lienthong_tests::run_ok(&["federation", "status", "--config", &n.config_arg()])?;
            assert!(text.contains("cosigned by 2 member(s)"), "{text}");
            if text.matches(" connected ").count() == 2 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "streams not up:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lienthong_tests::run_ok(&["audit", "status", "--config", &n.config_arg()])?;
        if n.member == "01" {
            let m = lienthong_tests::http_get(metrics_port, "/metrics")?;
            for expected in [
                "lienthong_checkpoint_cosignatures 2",
                "lienthong_peer_connected{peer=\"24\"} 1",
                "lienthong_peer_cosigned_ours{peer=\"20\"} 1",
                "lienthong_manifest_version 1",
                "lienthong_submissions_total{outcome=\"stored\"} 1",
            ] {
                assert!(m.contains(expected), "{expected} not in\n{m}");
            }
            assert!(lienthong_tests::http_get(metrics_port, "/nope")?.starts_with("HTTP/1.1 404"));
            // Every entry this node stored (it started empty) went through
            // a group commit it reported, which took some time to write.
            let value = |m: &str, name: &str| lienthong_tests::metric_sum(m, name, None);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let m = lienthong_tests::http_get(metrics_port, "/metrics")?;
                let stored = value(&m, "lienthong_stored_entries");
                let summed = value(&m, "lienthong_group_entries_sum");
                let writes = value(&m, "lienthong_group_write_seconds_count");
                let commits = value(&m, "lienthong_group_commit_seconds_count");
                if stored.is_some_and(|s| s >= 1.0)
                    && summed == stored
                    && writes == commits
                    && value(&m, "lienthong_group_write_seconds_sum").is_some_and(|s| s > 0.0)
                {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "stored {stored:?}, in groups {summed:?}, writes {writes:?}, commits {commits:?}:\n{m}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

fn vkeys_of(all: &[(String, String)], member: &str) -> String {
    all.iter()
        .find(|(m, _)| m == member)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A tree of three leaves; `fork` changes the last two.
fn tree(fork: u8) -> MemoryHashStore {
    let mut t = MemoryHashStore::new();
    for i in 0..3u8 {
        let tag = if i == 0 { 0 } else { fork };
        t.append(leaf_hash(&[tag, i])).unwrap();
    }
    t
}

/// Issue 6 item 2: member 20 is played by the test and shows history A to
/// 24 and history B (same size, other entries) to 01. Each cosigns what it
/// saw first; once they gossip, both hold signed evidence of the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_showing_two_histories_is_caught_by_honest_peers() -> anyhow::Result<()> {
    let mut f = federation(
        &[("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")],
        2,
        AGREEMENT_ALL,
    )?;
    // 24 and 01 are real nodes; 20 is the test.
    let metrics_port = f.nodes[1].enable_metrics()?;
    f.nodes[1].start()?;
    f.nodes[2].start()?;
    let rogue_dir = f.nodes[0].path();
    let key = lienthong_core::keys::signing_key_from_pem(&std::fs::read_to_string(
        rogue_dir.join("keys/signing-key.pem"),
    )?)?;
    let identity = peer_identity(&rogue_dir)?;
    let origin = format!("{FED}/20");
    let signer = NoteSigner::new(&origin, key)?;
    let note = |t: &MemoryHashStore| {
        sign_checkpoint(
            &TreeHead {
                origin: origin.clone(),
                size: t.size(),
                root: t.root().unwrap(),
            },
            &signer,
        )
    };
    let (a, b) = (note(&tree(1))?, note(&tree(2))?);

    let mut to = Vec::new();
    for code in ["24", "01"] {
        let (endpoint, pin) = f.endpoint(code)?;
        to.push(federation_client(&endpoint, &identity, pin).await?);
    }
    for (client, cp) in to.iter_mut().zip([&a, &b]) {
        let r = client
            .add_checkpoint(pb::AddCheckpointRequest {
                old_size: 0,
                consistency_proof: vec![],
                checkpoint: cp.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(r.cosignatures.len(), 1, "first checkpoint seen is cosigned");
    }
    let forked_at = Instant::now();

    // Both honest members find out from each other's gossip.
    let vkey20 = f.nodes[0].vkey()?;
    for n in &f.nodes[1..] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let evidence = loop {
            let list = n.evidence().await?;
            if let Some(e) = list
                .into_iter()
                .find(|e| e.kind() == pb::EvidenceKind::Equivocation && e.member == "20")
            {
                break e;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not detect the fork:\n{}",
                n.member,
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "{} detected the fork {} ms after it was created",
            n.member,
            forked_at.elapsed().as_millis()
        );
        // The evidence stands alone: two notes signed by 20, same size,
        // different roots.
        assert_eq!(evidence.checkpoints.len(), 2);
        let cps: Vec<_> = evidence
            .checkpoints
            .iter()
            .map(|c| lienthong_log::verify_checkpoint(c.as_bytes(), vkey20.trim()))
            .collect::<Result<_, _>>()?;
        assert_eq!(cps[0].size(), cps[1].size());
        assert_ne!(cps[0].root(), cps[1].root());
        let status = n
            .audit()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        assert!(status.equivocations >= 1, "{status:?}");
        assert!(n.log().contains("EQUIVOCATION"));
        // The operator's view: non-zero exit, the evidence named.
        let out = lienthong_tests::lienthong(&["audit", "status", "--config", &n.config_arg()])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains("Equivocation by 20"), "{text}");
    }

    // Monitoring sees it too.
    let m = lienthong_tests::http_get(metrics_port, "/metrics")?;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.lines().any(
            |l| l.starts_with("lienthong_evidence_records{kind=\"equivocation\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );

    // Offering 24 the other history directly is refused, and kept too.
    let err = to[0]
        .add_checkpoint(pb::AddCheckpointRequest {
            old_size: 3,
            consistency_proof: vec![],
            checkpoint: b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("different roots"), "{err}");
    // Kept once: 24 holds this pair of notes already, from gossip.
    let kept: Vec<_> = f.nodes[1]
        .evidence()
        .await?
        .into_iter()
        .filter(|e| e.member == "20")
        .collect();
    assert_eq!(kept.len(), 1, "the same fork kept more than once: {kept:?}");

    // A node's own pinned client certificate is not a member's: the
    // federation port refuses it at the handshake.
    let (endpoint, pin) = f.endpoint("24")?;
    let admin = lienthong_federation::tls::TlsIdentity {
        cert_pem: std::fs::read_to_string(f.nodes[1].path().join("clients/admin-cert.pem"))?,
        key_pem: std::fs::read_to_string(f.nodes[1].path().join("clients/admin-key.pem"))?,
    };
    let refused = match federation_client(&endpoint, &admin, pin).await {
        Err(_) => true,
        Ok(mut c) => c
            .add_checkpoint(pb::AddCheckpointRequest {
                old_size: 0,
                consistency_proof: vec![],
                checkpoint: a.clone(),
            })
            .await
            .is_err(),
    };
    assert!(refused);
    drop(to);
    Ok(())
}

/// A busy feed is checkpointed every 50 ms here, but the other members are
/// asked to cosign at most once per `checkpoint.cosign_interval_ms` (1 s,
/// as `lienthong init` writes it): far fewer checkpoints are cosigned than
/// signed, and the newest one is still cosigned once the feed is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigning_rounds_are_paced_while_a_feed_is_busy() -> anyhow::Result<()> {
    let mut f = federation(&[("01", "Hà Nội"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    let config = std::fs::read_to_string(f.nodes[0].config())?;
    anyhow::ensure!(
        config.contains("cosign_interval_ms = 1000"),
        "the config written by init no longer asks for 1 s:\n{config}"
    );
    let alive = Instant::now();
    f.start_all()?;
    let mut alerts = f.nodes[0].alerts().await?;
    // About four seconds of alerts, one every 20 ms (at most 200).
    let busy = Instant::now();
    let mut sent = 0u32;
    while busy.elapsed() < Duration::from_secs(4) && sent < 200 {
        alerts
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("paced-{sent}"))),
            })
            .await?;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The newest checkpoint gets its cosignature after the feed goes quiet.
    let mut audit = f.nodes[0].audit().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = audit
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        // The newest cosigned checkpoint is reported beside the latest one.
        anyhow::ensure!(
            s.cosigned_size <= s.checkpoint_size && (s.cosigned_size == 0) == (s.cosigned_by == 0),
            "{s:?}"
        );
        // A cosignature landing between the status's reads of the
        // cosigned and the latest checkpoint shows on the next poll.
        if s.checkpoint_size == s.feed_size
            && s.cosignatures == 1
            && s.cosigned_size == s.checkpoint_size
            && s.cosigned_by == 1
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the newest checkpoint was not cosigned within 20 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Asked for the newest cosigned checkpoint, the node serves it with
    // 24's cosignature, which verifies under 24's key.
    let cp = audit
        .get_checkpoint(pb::GetCheckpointRequest { cosigned: true })
        .await?
        .into_inner();
    let (_, _, witness_key) = lienthong_log::parse_vkey(f.nodes[1].vkey()?.trim())?;
    lienthong_log::verify_cosignature_in_note(
        cp.signed_note.as_bytes(),
        &format!("{FED}/24"),
        &witness_key,
    )?;
    let verified =
        lienthong_log::verify_checkpoint(cp.signed_note.as_bytes(), f.nodes[0].vkey()?.trim())?;
    anyhow::ensure!(
        verified.size() == cp.size && verified.root().0.as_slice() == cp.root_hash,
        "the decoded size and root do not match the note: {cp:?}"
    );
    let store = f.nodes[0].path().join("store");
    f.nodes[0].stop()?;
    let lived = alive.elapsed();

    // Checkpoints signed (`C`) and checkpoints cosigned (`S`), as stored.
    let db = sled::open(&store)?;
    let sizes = |prefix: u8| -> anyhow::Result<std::collections::BTreeSet<Vec<u8>>> {
        db.scan_prefix([prefix])
            .map(|kv| Ok(kv?.0.get(1..9).unwrap_or_default().to_vec()))
            .collect()
    };
    let (signed, cosigned) = (sizes(b'C')?.len(), sizes(b'S')?.len());
    // One round per second at most while the node ran, plus the first.
    let rounds = usize::try_from(lived.as_secs()).unwrap_or(usize::MAX) + 2;
    anyhow::ensure!(
        signed > rounds,
        "only {signed} checkpoints in {lived:?}: too few to tell pacing from none"
    );
    anyhow::ensure!(
        (1..=rounds).contains(&cosigned),
        "{cosigned} of {signed} checkpoints were cosigned in {lived:?}; at most {rounds} rounds fit"
    );
    Ok(())
}
