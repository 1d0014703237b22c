//! Issue 8 item 1 (short form): three members under load while one of
//! them is killed with SIGKILL at varying moments of ingest, replication
//! and witnessing, six times (or `LIENTHONG_CHAOS_ROUNDS`). Afterwards every acknowledged alert is at its
//! author and at both receivers exactly once, and the three members' audit
//! bundles verify together: every signature, root and cosignature, and a
//! receipt in each receiver's feed for every entry sent to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{AGREEMENT_ALL, Node, federation, sample_alert};

/// Kill cycles: 6 in CI; `LIENTHONG_CHAOS_ROUNDS=1000` for the long run
/// (docs/reliability.md).
fn rounds() -> u64 {
    std::env::var("LIENTHONG_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// Submits to `node` until `until` (at most 400); returns reference → id
/// of what was acknowledged. Stops at the first error (the node died).
async fn load(node: &Node, tag: String, until: Instant) -> HashMap<String, Vec<u8>> {
    let mut acked = HashMap::new();
    let Ok(mut c) = node.alerts().await else {
        return acked;
    };
    for k in 0..400 {
        if Instant::now() > until {
            break;
        }
        let reference = format!("{tag}-{k}");
        match c
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&reference)),
            })
            .await
        {
            Ok(r) => {
                acked.insert(reference, r.into_inner().entry_id);
            }
            Err(_) => break,
        }
    }
    acked
}

async fn status(n: &Node) -> anyhow::Result<pb::GetStatusResponse> {
    Ok(n.audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_killed_under_load_lose_nothing_and_their_bundles_verify() -> anyhow::Result<()> {
    let mut f = federation(
        &[("01", "Hà Nội"), ("24", "Bắc Ninh"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    f.start_all()?;
    // author → (reference → entry id), acknowledged only.
    let mut acked: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
    let rounds = rounds();
    for round in 0..rounds {
        let victim = (round % 3) as usize;
        let until = Instant::now() + Duration::from_millis(400);
        let kill_after = Duration::from_millis(40 + 53 * (round % 7));
        let pid = f.nodes[victim].pid().unwrap_or_default();
        let tag = |i: usize| format!("r{round}-{}", f.nodes[i].member);
        // SIGKILL lands while all three are loaded: mid-ingest for the
        // victim, mid-replication and mid-witnessing for the others.
        let killer = async {
            tokio::time::sleep(kill_after).await;
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        };
        let (a, b, c, ()) = tokio::join!(
            load(&f.nodes[0], tag(0), until),
            load(&f.nodes[1], tag(1), until),
            load(&f.nodes[2], tag(2), until),
            killer
        );
        for (n, got) in f.nodes.iter().zip([a, b, c]) {
            acked.entry(n.member.clone()).or_default().extend(got);
        }
        f.nodes[victim].kill9(); // reaps the killed process
        f.nodes[victim].start()?;
    }

    // Let replication, receipts and witnessing settle: every acknowledged
    // alert at every member, every feed checkpointed and cosigned by both.
    let sent: Vec<(String, Vec<u8>)> = acked
        .iter()
        .flat_map(|(author, refs)| refs.values().map(move |id| (author.clone(), id.clone())))
        .collect();
    if let Err(e) = f.settle(&sent, Duration::from_secs(60)).await {
        for n in &f.nodes {
            println!("{}: {:?}", n.member, status(n).await?);
        }
        return Err(e);
    }

    // Every acknowledged alert is at its author and at both receivers.
    let mut checked = 0;
    for (author, refs) in &acked {
        for n in &f.nodes {
            let mut c = n.alerts().await?;
            for (reference, id) in refs {
                let e = c
                    .get(pb::GetEntryRequest {
                        key: Some(Key::EntryId(id.clone())),
                    })
                    .await
                    .map_err(|s| {
                        anyhow::anyhow!("{reference} of {author} missing at {}: {s}", n.member)
                    })?
                    .into_inner();
                assert_eq!(e.body.unwrap_or_default().author, *author);
                checked += 1;
            }
        }
    }
    println!("{checked} (alert, node) pairs checked after {rounds} kills");

    // The auditor's view: everything verifies, nothing undelivered.
    let bundles = f.export_bundles()?;
    let (out, r) = f.verify_bundles(&bundles, f.nodes[0].vkey()?.trim())?;
    assert!(out.contains("VERIFIED"), "{out}");
    let d = &r["deliveries"];
    assert_eq!(d["missing"], 0, "{d:#}");
    assert_eq!(d["receipts_unmatched"], 0, "{d:#}");
    assert_eq!(d["delivered"], d["expected"], "{d:#}");
    Ok(())
}

/// Issue 8 item 1: members killed while a manifest change spreads. Each
/// round a new version (the agreement's handling code changes) is signed
/// by a majority and handed to one member while all three take
/// submissions; another member is killed 0–300 ms later and restarted.
/// Afterwards all three are on the last version, every acknowledged alert
/// is everywhere once, and the bundles (with the whole manifest chain)
/// verify. 3 rounds in CI; `LIENTHONG_MANIFEST_ROUNDS` for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_killed_during_manifest_changes_converge() -> anyhow::Result<()> {
    let rounds: u64 = std::env::var("LIENTHONG_MANIFEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .min(500);
    let mut f = federation(
        &[("01", "Hà Nội"), ("24", "Bắc Ninh"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    f.start_all()?;
    let m = f.dir.path().join("manifest.json").display().to_string();
    let base = std::fs::read_to_string(f.dir.path().join("manifest.toml"))?;
    let mut acked: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
    for round in 0..rounds {
        let version = round + 2;
        let handling = if round % 2 == 0 { "H1" } else { "H0" };
        let toml = base
            .replace("version = 1", &format!("version = {version}"))
            .replace("handling = \"H0\"", &format!("handling = \"{handling}\""));
        let path = f.dir.path().join(format!("manifest-v{version}.toml"));
        std::fs::write(&path, toml)?;
        lienthong_tests::run_ok(&[
            "federation",
            "propose",
            "--toml",
            &path.display().to_string(),
            "--file",
            &m,
        ])?;
        for n in 0..2 {
            lienthong_tests::run_ok(&[
                "federation",
                "sign",
                "--config",
                &f.nodes[n].config_arg(),
                "--file",
                &m,
            ])?;
        }
        let to = (round % 3) as usize;
        let victim = ((round + 1) % 3) as usize;
        let pid = f.nodes[victim].pid().unwrap_or_default();
        let until = Instant::now() + Duration::from_millis(500);
        let kill_after = Duration::from_millis(37 * (round % 9));
        let tag = |i: usize| format!("m{round}-{}", f.nodes[i].member);
        let publish_and_kill = async {
            lienthong_tests::run_ok(&[
                "federation",
                "publish",
                "--config",
                &f.nodes[to].config_arg(),
                "--file",
                &m,
            ])?;
            tokio::time::sleep(kill_after).await;
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            anyhow::Ok(())
        };
        let (a, b, c, p) = tokio::join!(
            load(&f.nodes[0], tag(0), until),
            load(&f.nodes[1], tag(1), until),
            load(&f.nodes[2], tag(2), until),
            publish_and_kill
        );
        p?;
        for (n, got) in f.nodes.iter().zip([a, b, c]) {
            acked.entry(n.member.clone()).or_default().extend(got);
        }
        f.nodes[victim].kill9();
        f.nodes[victim].start()?;
    }

    // All on the last version, every feed checkpointed and cosigned.
    let last = rounds + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut settled = true;
        for n in &f.nodes {
            let s = status(n).await?;
            settled &= s.manifest_version == last
                && s.checkpoint_size == s.feed_size
                && s.cosignatures == 2
                && s.writes_refused.is_empty();
        }
        let mut all_there = settled;
        if settled {
            'check: for refs in acked.values() {
                for n in &f.nodes {
                    let mut c = n.alerts().await?;
                    for id in refs.values() {
                        if c.get(pb::GetEntryRequest {
                            key: Some(Key::EntryId(id.clone())),
                        })
                        .await
                        .is_err()
                        {
                            all_there = false;
                            break 'check;
                        }
                    }
                }
            }
        }
        if all_there {
            break;
        }
        if Instant::now() > deadline {
            for n in &f.nodes {
                println!("{}: {:?}", n.member, status(n).await?);
            }
            anyhow::bail!("the federation did not converge on version {last} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bundles = f.export_bundles()?;
    let (out, r) = f.verify_bundles(&bundles, f.nodes[0].vkey()?.trim())?;
    assert!(out.contains("VERIFIED"), "{out}");
    let d = &r["deliveries"];
    assert_eq!(d["missing"], 0, "{d:#}");
    assert_eq!(d["delivered"], d["expected"], "{d:#}");
    println!(
        "{rounds} manifest changes with a kill each: {} alerts, all on version {last}, bundles VERIFIED",
        acked.values().map(HashMap::len).sum::<usize>()
    );
    Ok(())
}
