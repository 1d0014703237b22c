//! Durable signed ingest against a real node over mTLS, next to baselines
//! measured in the same run on the same disk: raw Ed25519 signing, and raw
//! sled batch + flush + fsync. A preview of issue 7's `lienthong bench`.
//!
//! ```sh
//! cargo build --release -p lienthong -p lienthong-tests
//! target/release/ingest-bench [CLIENTS] [SECONDS]    # defaults: 64 10
//! ```

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, sample_alert};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn baseline_sign() -> f64 {
    let key = SigningKey::from_bytes(&[7; 32]);
    let msg = vec![0x5a; 600];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            std::hint::black_box(key.sign(&msg));
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Entries per second written by sled batches of `batch` 600-byte values,
/// each batch flushed and fsynced.
fn baseline_fsync(dir: &std::path::Path, batch: usize) -> anyhow::Result<f64> {
    let db = sled::open(dir.join(format!("raw-{batch}")))?;
    let file = std::fs::File::open(dir.join(format!("raw-{batch}/db")))?;
    let value = vec![0x5a; 600];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            b.insert(&n.to_be_bytes(), value.clone());
            n += 1;
        }
        db.apply_batch(b)?;
        db.flush()?;
        file.sync_all()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);

    let mut node = Node::init("01", "Hà Nội")?;
    let raw_dir = node.path().join("baseline");
    std::fs::create_dir_all(&raw_dir)?;
    let sign_rate = baseline_sign();
    let fsync_1 = baseline_fsync(&raw_dir, 1)?;
    let fsync_64 = baseline_fsync(&raw_dir, 64)?;

    node.start()?;
    let channel = node.channel().await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = pb::alerts_client::AlertsClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            // Bounded in time and count.
            for k in 0..1_000_000u64 {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                client
                    .submit(pb::SubmitAlertRequest {
                        alert: Some(sample_alert(&format!("b{c}-{k}"))),
                    })
                    .await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    node.stop()?;
    lat.sort();
    println!(
        "durable signed ingest, {clients} clients over mTLS, {seconds} s, one node on this machine"
    );
    println!(
        "  acknowledged      {:>10} alerts   {:>10.0} alerts/s",
        lat.len(),
        lat.len() as f64 / elapsed
    );
    println!(
        "  ack latency       p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.90).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("baselines, same run, same disk:");
    println!("  raw Ed25519 sign (600 B)                 {sign_rate:>10.0} /s");
    println!("  raw sled batch of 1 + flush + fsync      {fsync_1:>10.0} entries/s");
    println!("  raw sled batch of 64 + flush + fsync     {fsync_64:>10.0} entries/s");
    Ok(())
}
