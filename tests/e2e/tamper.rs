//! Issue 6 (and 8): bytes flipped anywhere in a node's store file never
//! turn into a log that verifies with different content, nor into an older
//! one served as current. Each flip is refused when the node opens the
//! store (sled drops everything after a damaged record; `checkpoint.last`
//! and `checkpoint.last.b` beside it remember how far the feed was
//! signed), or is caught by
//! `feed verify` against the checkpoint an auditor kept, or hit bytes that
//! change nothing the log shows (stale versions, free space) — and then the
//! node serves exactly the original entries and checkpoint.

use anyhow::Context;
use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, copy_dir, sample_alert};

/// The node's checkpoint note and every envelope it covers, or the error
/// the node answered with.
async fn log_of(node: &Node) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let mut a = node.audit().await?;
    let cp = a
        .get_checkpoint(pb::GetCheckpointRequest::default())
        .await?
        .into_inner();
    let (note, size) = (cp.signed_note, cp.size);
    let mut envelopes = Vec::new();
    while (envelopes.len() as u64) < size {
        let got = a
            .get_entries(pb::GetEntriesRequest {
                start: envelopes.len() as u64,
                end: size,
            })
            .await?
            .into_inner()
            .envelopes;
        anyhow::ensure!(!got.is_empty(), "no entries from {}", envelopes.len());
        envelopes.extend(got);
    }
    Ok((note, envelopes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_in_the_store_are_caught_or_change_nothing() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let mut c = node.alerts().await?;
    for i in 0..300 {
        c.submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(&format!("tamper-{i}"))),
        })
        .await?;
    }
    // Wait for the checkpoint to cover everything, and keep it as an
    // auditor would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (note, original) = loop {
        let (note, envs) = log_of(&node).await?;
        if envs.len() == 300 {
            break (note, envs);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "checkpoint stuck");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    node.stop()?;
    let kept = node.path().join("auditor-checkpoint.txt");
    std::fs::write(&kept, &note)?;

    let store = node.path().join("store");
    let pristine = tempfile::tempdir()?;
    copy_dir(&store, pristine.path())?;
    let db = store.join("db");
    let len = std::fs::metadata(&db)?.len();
    anyhow::ensure!(len > 4096, "store file too small to test: {len}");

    // sled preallocates: most of the file is zeros nobody reads. Flip
    // bytes that hold data, spread over all of them, each nudged by a
    // fixed-seed pseudo-random amount. The store itself differs from run
    // to run (a new key, salt and times), so each run flips different
    // data: every failure names its byte.
    let used: Vec<u64> = std::fs::read(&db)?
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0)
        .map(|(i, _)| i as u64)
        .collect();
    const FLIPS: u64 = 40;
    let step = used.len() as u64 / FLIPS;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut at_open, mut by_verify, mut harmless) = (0, 0, 0);
    for k in 0..FLIPS {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let pos = used[(k * step + (seed >> 33) % step.max(1)) as usize];
        std::fs::remove_dir_all(&store)?;
        copy_dir(pristine.path(), &store)?;
        let mut bytes = std::fs::read(&db)?;
        bytes[pos as usize] ^= 0xff;
        std::fs::write(&db, &bytes)?;

        if let Err(e) = node.start() {
            // Refused at open, saying why.
            let why = e.to_string();
            assert!(
                why.contains("exited") && node.log().contains("store"),
                "flip at byte {pos} of {len}: {why}"
            );
            at_open += 1;
            continue;
        }
        let served = log_of(&node).await;
        match served {
            Ok((n, envs)) if n == note && envs == original => harmless += 1,
            other => {
                if let Ok((n, _)) = &other {
                    // sled drops a damaged log's tail; the node must refuse
                    // such a store, never serve the older state.
                    assert_eq!(
                        n, &note,
                        "flip at byte {pos}: the node serves an older checkpoint instead of refusing"
                    );
                }
                // Different (or unreadable) content must not verify
                // against the checkpoint the auditor kept.
                let verified = node.feed_verify(Some(&kept));
                assert!(
                    verified.is_err(),
                    "flip at byte {pos} of {len}: the node serves a different log that verifies: {:?}",
                    other.map(|(n, e)| (n, e.len()))
                );
                by_verify += 1;
            }
        }
        node.stop()
            .with_context(|| format!("flip at byte {pos} of {len}"))?;
    }
    eprintln!(
        "{FLIPS} flips among the {} data bytes of a {len}-byte store: {at_open} refused at open, {by_verify} caught by feed verify, {harmless} changed nothing served",
        used.len()
    );
    assert_eq!(at_open + by_verify + harmless, FLIPS);
    Ok(())
}
