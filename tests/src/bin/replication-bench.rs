//! Replication between two real nodes over pinned mTLS: latency from the
//! author's acknowledgement to the entry being verified and stored at the
//! peer, at a steady rate; then the catch-up rate of a peer that was down.
//! A preview of issue 7's `lienthong bench`.
//!
//! ```sh
//! cargo build --release -p lienthong -p lienthong-tests
//! target/release/replication-bench [RATE/s] [SECONDS] [CATCH-UP ENTRIES]   # defaults: 1000 5 20000
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lienthong_proto::v1 as pb;
use lienthong_tests::{AGREEMENT_ALL, federation, sample_alert};

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// Records when each entry of author 20 arrives at the receiver.
fn watch_arrivals(
    channel: tonic::transport::Channel,
    from: u64,
) -> Arc<Mutex<HashMap<Vec<u8>, Instant>>> {
    let arrivals: Arc<Mutex<HashMap<Vec<u8>, Instant>>> = Arc::default();
    let a = arrivals.clone();
    tokio::spawn(async move {
        let mut c = pb::alerts_client::AlertsClient::new(channel);
        let Ok(stream) = c.watch(pb::WatchRequest { from_cursor: from }).await else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(e)) = stream.message().await {
            if e.body.as_ref().is_some_and(|b| b.author == "20") {
                a.lock().unwrap().insert(e.entry_id, Instant::now());
            }
        }
    });
    arrivals
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let catch_up: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20_000);

    let mut f = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    f.start_all()?;
    let author = f.nodes[0].channel().await?;
    let arrivals = watch_arrivals(f.nodes[1].channel().await?, 0);

    // Steady rate: 16 clients, each sending every 16/rate seconds.
    const CLIENTS: u64 = 16;
    let acks: Arc<Mutex<HashMap<Vec<u8>, Instant>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (mut client, acks) = (
            pb::alerts_client::AlertsClient::new(author.clone()),
            acks.clone(),
        );
        let period = Duration::from_secs_f64(CLIENTS as f64 / rate as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            for k in 0..1_000_000u64 {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let r = client
                    .submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&format!("s{c}-{k}"))),
                    })
                    .await?;
                acks.lock()
                    .unwrap()
                    .insert(r.into_inner().entry_id, Instant::now());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent = acks.lock().unwrap().len();
    let wait_until = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < sent && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat: Vec<Duration> = {
        let (acks, arr) = (acks.lock().unwrap(), arrivals.lock().unwrap());
        acks.iter()
            .filter_map(|(id, t)| arr.get(id).map(|a| a.saturating_duration_since(*t)))
            .collect()
    };
    lat.sort();
    println!("replication 20 → 24 over pinned mTLS, {rate} alerts/s offered for {seconds} s");
    println!(
        "  acknowledged {sent}, stored and verified at the peer {}",
        lat.len()
    );
    println!(
        "  author ack → verified and stored at peer: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );

    // Catch-up: the peer is down while the author takes `catch_up` alerts.
    f.nodes[1].stop()?;
    let mut tasks = Vec::new();
    let per = catch_up / 64;
    for c in 0..64 {
        let mut client = pb::alerts_client::AlertsClient::new(author.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                client
                    .submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&format!("cu{c}-{k}"))),
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let expected = sent + per * 64;
    let start = Instant::now();
    f.nodes[1].start()?;
    let arrivals = watch_arrivals(f.nodes[1].channel().await?, 0);
    let wait_until = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().unwrap().len() < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = arrivals.lock().unwrap().len();
    let last = arrivals
        .lock()
        .unwrap()
        .values()
        .max()
        .copied()
        .unwrap_or(start);
    let secs = last.saturating_duration_since(start).as_secs_f64();
    println!(
        "catch-up: peer down while the author took {} alerts; after restart it verified and stored them",
        per * 64
    );
    println!(
        "  {got}/{expected} entries present, {:.1} s from restart → {:.0} entries/s (includes process start)",
        secs,
        (per * 64) as f64 / secs.max(1e-9)
    );
    for n in &mut f.nodes {
        n.stop()?;
    }
    Ok(())
}
