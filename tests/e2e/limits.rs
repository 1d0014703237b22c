//! Issue 8: oversized and flood input against a real node. An oversized
//! gRPC message and an alert beyond the field limits are refused cleanly
//! and the node keeps serving; a flood of concurrent clients has every
//! acknowledged alert stored exactly once while status and metrics keep
//! answering. Every loop is bounded by a count and a time budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{Node, http_get, sample_alert};
use tonic::Code;
use tonic_types::StatusExt;

/// The fields named in a refusal's BadRequest detail.
fn fields(s: &tonic::Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_fields_are_refused_and_the_node_keeps_serving() -> anyhow::Result<()>
{
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let mut c = node.alerts().await?;

    // (a) A 5 MiB request, beyond the node's 4 MiB message limit.
    let mut big = sample_alert("ls-big");
    big.description = "x".repeat(5 << 20);
    let s = tokio::time::timeout(
        Duration::from_secs(30),
        c.submit(pb::SubmitAlertRequest { alert: Some(big) }),
    )
    .await?
    .expect_err("a 5 MiB message is refused");
    // RESOURCE_EXHAUSTED, as the gRPC status table says (tonic's own
    // OUT_OF_RANGE is rewritten), naming the size, the limit and the fix.
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    assert!(
        s.message().contains("-byte limit") && s.message().contains("send less per call"),
        "{}",
        s.message()
    );
    eprintln!(
        "5 MiB SubmitAlertRequest refused with {:?}: {}",
        s.code(),
        s.message()
    );

    // The same connection serves the next valid request.
    let ok = c
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("ls-after-big")),
        })
        .await?
        .into_inner();
    assert_eq!((ok.index, ok.duplicate), (0, false));

    // (b) Beyond the field limits, under the message limit: refused naming
    // the field, nothing stored.
    let mut many = sample_alert("ls-subjects");
    many.subjects = vec![many.subjects[0].clone(); 101];
    let mut long = sample_alert("ls-description");
    long.description = "đ".repeat(20_001);
    let mut both = sample_alert("ls-both");
    both.subjects = many.subjects.clone();
    both.description = long.description.clone();
    for (alert, want) in [
        (many, vec!["alert.subjects"]),
        (long, vec!["alert.description"]),
        (both, vec!["alert.description", "alert.subjects"]),
    ] {
        let s = c
            .submit(pb::SubmitAlertRequest { alert: Some(alert) })
            .await
            .expect_err("over the field limit");
        assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
        let mut got = fields(&s);
        got.sort();
        assert_eq!(got, want, "{}", s.message());
        for f in &want {
            assert!(s.message().contains(f), "{f} in {}", s.message());
        }
    }
    // Exactly at the limits: accepted.
    let mut edge = sample_alert("ls-edge");
    edge.subjects = vec![edge.subjects[0].clone(); 100];
    edge.description = "đ".repeat(20_000);
    let r = c
        .submit(pb::SubmitAlertRequest { alert: Some(edge) })
        .await?
        .into_inner();
    assert_eq!(r.index, 1);

    // A fresh connection works too, and the node stored only the two.
    let status = node
        .audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.feed_size, 2, "{status:?}");
    node.stop()?;
    Ok(())
}

const CLIENTS: usize = 64;
const PER_CLIENT: usize = 50;
const BUDGET: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_clients_stores_each_acknowledged_alert_once() -> anyhow::Result<()> {
    let mut node = Node::init("24", "Bắc Ninh")?;
    let metrics = node.enable_metrics()?;
    node.start()?;
    let started = Instant::now();
    let deadline = started + BUDGET;

    // Status and metrics are polled during the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let status_ok = Arc::new(AtomicU64::new(0));
    let metrics_ok = Arc::new(AtomicU64::new(0));
    let mut audit = node.audit().await?;
    let watcher = {
        let flooding = flooding.clone();
        let status_ok = status_ok.clone();
        let metrics_ok = metrics_ok.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            // Bounded by count and by the flood's end.
            for _ in 0..2_000 {
                if !flooding.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let s = tokio::time::timeout(
                    Duration::from_secs(10),
                    audit.get_status(pb::GetStatusRequest {}),
                )
                .await;
                if matches!(s, Ok(Ok(_))) {
                    status_ok.fetch_add(1, Ordering::Relaxed);
                }
                let m = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics")).await;
                if matches!(&m, Ok(Ok(body)) if body.starts_with("HTTP/1.1 200")) {
                    metrics_ok.fetch_add(1, Ordering::Relaxed);
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            slowest
        })
    };

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        // One connection per client.
        let mut c = node.alerts().await?;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = Vec::new();
            for i in 0..PER_CLIENT {
                if Instant::now() > deadline {
                    break;
                }
                let reference = format!("flood-{client}-{i}");
                let r = tokio::time::timeout(
                    Duration::from_secs(20),
                    c.submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&reference)),
                    }),
                )
                .await;
                match r {
                    Ok(Ok(a)) => acked.push((reference, a.into_inner())),
                    Ok(Err(s)) => {
                        refused.push(format!("{reference}: {:?} {}", s.code(), s.message()))
                    }
                    Err(_) => refused.push(format!("{reference}: no answer in 20 s")),
                }
            }
            (acked, refused)
        }));
    }
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (a, r) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(25),
            t,
        )
        .await??;
        acked.extend(a);
        refused.extend(r);
    }
    let flood_time = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let slowest = watcher.await?;
    eprintln!(
        "flood: {} acknowledged, {} refused in {:.1} s; status answered {} times, metrics {} times, slowest poll {:?}",
        acked.len(),
        refused.len(),
        flood_time.as_secs_f64(),
        status_ok.load(Ordering::Relaxed),
        metrics_ok.load(Ordering::Relaxed),
        slowest
    );
    assert!(
        flood_time < BUDGET + Duration::from_secs(25),
        "flood took {flood_time:?}"
    );
    assert!(
        refused.len() <= CLIENTS * PER_CLIENT / 10,
        "{} refused, e.g. {:?}",
        refused.len(),
        refused.iter().take(5).collect::<Vec<_>>()
    );
    assert!(!acked.is_empty());
    assert!(
        status_ok.load(Ordering::Relaxed) > 0,
        "GetStatus never answered during the flood"
    );
    assert!(
        metrics_ok.load(Ordering::Relaxed) > 0,
        "/metrics never answered during the flood"
    );

    // Every acknowledgement is a distinct entry at a distinct index, none
    // a duplicate (each reference was submitted once).
    let ids: BTreeSet<Vec<u8>> = acked.iter().map(|(_, a)| a.entry_id.clone()).collect();
    let indexes: BTreeSet<u64> = acked.iter().map(|(_, a)| a.index).collect();
    assert_eq!(
        ids.len(),
        acked.len(),
        "two acknowledgements share an entry id"
    );
    assert_eq!(
        indexes.len(),
        acked.len(),
        "two acknowledgements share an index"
    );
    assert!(acked.iter().all(|(_, a)| !a.duplicate));

    // Stored exactly once: the feed holds as many entries as were
    // acknowledged, and each reference finds its acknowledged entry.
    let status = node
        .audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.feed_size, acked.len() as u64, "{status:?}");
    let by_ref: BTreeMap<String, Vec<u8>> = acked
        .iter()
        .map(|(r, a)| (r.clone(), a.entry_id.clone()))
        .collect();
    let by_ref = Arc::new(by_ref.into_iter().collect::<Vec<_>>());
    let mut checks = Vec::new();
    for part in 0..8usize {
        let mut c = node.alerts().await?;
        let by_ref = by_ref.clone();
        checks.push(tokio::spawn(async move {
            for (reference, id) in by_ref.iter().skip(part).step_by(8) {
                let e = c
                    .get(pb::GetEntryRequest {
                        key: Some(Key::Reference(reference.clone())),
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(&e.entry_id == id, "{reference} found another entry");
            }
            anyhow::Ok(())
        }));
    }
    for c in checks {
        tokio::time::timeout(Duration::from_secs(60), c).await???;
    }
    // And paging through the whole feed meets each entry once.
    let mut c = node.alerts().await?;
    let mut seen = BTreeSet::new();
    let mut token = String::new();
    for _ in 0..=(CLIENTS * PER_CLIENT / 1000 + 1) {
        let page = c
            .query(pb::QueryRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in page.entries {
            assert!(seen.insert(e.entry_id), "an entry listed twice");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
    node.stop()?;
    Ok(())
}
