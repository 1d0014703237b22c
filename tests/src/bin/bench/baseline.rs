//! Baselines: what this machine does in-process, without a node, measured
//! in the same run so that every figure can be read as a fraction of the
//! machine's own limits.
//!
//! - Ed25519 signing and verification (one core), and batch verification
//!   (ed25519-dalek's, and ours from `lienthong_core::signature`, one key),
//!   over real signed entries of the size the node writes;
//! - sled batches of 1, 64 and 1024 values, each batch flushed and fsynced
//!   exactly as the node's commit point does (`flush` + `sync_all` of
//!   `<db>/db`), in a directory on the same file system as the nodes;
//! - mutual-TLS round trips on loopback with the node's own certificate
//!   kinds: one connection's latency, and 64 connections' total rate.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use lienthong_proto::v1::{EntryBody, entry_body::Payload};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::report::{Baseline, Percentiles};

/// Every baseline of one run.
#[derive(Debug, Clone)]
pub struct Baselines {
    pub envelope_bytes: usize,
    pub sign: Baseline,
    pub verify: Baseline,
    pub verify_batch: Baseline,
    pub verify_batch_one_key: Baseline,
    pub sled_1: Baseline,
    pub sled_64: Baseline,
    pub sled_1024: Baseline,
    pub tls_rtt_p50: Baseline,
    pub tls_rtt_p99: Baseline,
    pub tls_64_rate: Baseline,
}

impl Baselines {
    pub fn all(&self) -> Vec<&Baseline> {
        vec![
            &self.sign,
            &self.verify,
            &self.verify_batch,
            &self.verify_batch_one_key,
            &self.sled_1,
            &self.sled_64,
            &self.sled_1024,
            &self.tls_rtt_p50,
            &self.tls_rtt_p99,
            &self.tls_64_rate,
        ]
    }

    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("envelope_bytes".into(), json!(self.envelope_bytes));
        for b in self.all() {
            m.insert(
                b.key.into(),
                json!({"label": b.label, "value": b.value, "unit": b.unit}),
            );
        }
        Value::Object(m)
    }
}

/// A signed entry body like the ones the node writes for the bench's alerts.
pub fn sample_body(index: u64) -> EntryBody {
    EntryBody {
        format: lienthong_core::entry::ENTRY_FORMAT,
        author: "20".into(),
        index,
        created_unix_ms: 1_780_000_000_000,
        audience: [
            "01", "04", "15", "19", "20", "22", "24", "25", "31", "33", "37",
        ]
        .map(String::from)
        .to_vec(),
        manifest_version: 1,
        agreement_hash: vec![0x42; 32],
        handling: 1,
        response_deadline_hours: 0,
        payload: Some(Payload::Alert(lienthong_tests::sample_alert(&format!(
            "bench-{index}"
        )))),
    }
}

/// Runs `f` in rounds of `round` until `time` has passed; returns calls/s.
fn rate(time: Duration, round: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        for _ in 0..round {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn crypto(time: Duration) -> (usize, f64, f64, f64, f64) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk: VerifyingKey = key.verifying_key();
    let entries: Vec<_> = (0..256)
        .map(|i| lienthong_core::entry::sign_entry(sample_body(i), &key))
        .collect();
    let envelope_bytes = entries.iter().map(|e| e.envelope().len()).sum::<usize>() / entries.len();
    // The signed message: domain tag and body bytes, as the node signs.
    let messages: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            let mut m = lienthong_core::entry::ENTRY_SIGNING_DOMAIN.to_vec();
            m.extend_from_slice(&prost::Message::encode_to_vec(e.body()));
            m
        })
        .collect();
    let sigs: Vec<Signature> = messages.iter().map(|m| key.sign(m)).collect();
    let sign = rate(time, 32, |n| {
        std::hint::black_box(key.sign(&messages[n as usize % messages.len()]));
    });
    let verify = rate(time, 32, |n| {
        let i = n as usize % messages.len();
        std::hint::black_box(vk.verify(&messages[i], &sigs[i]).is_ok());
    });
    // Batches of 64, as a receiver could verify a window of deliveries.
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let keys = vec![vk; 64];
    let batches = rate(time, 1, |n| {
        let at = (n as usize * 64) % (messages.len() - 63);
        let ok = ed25519_dalek::verify_batch(&refs[at..at + 64], &sigs[at..at + 64], &keys).is_ok();
        std::hint::black_box(ok);
    });
    // The node's own batch check (lienthong_core::signature), which gives
    // one key one term: the rate receivers and auditors can reach on one
    // author's entries.
    let checks: Vec<lienthong_core::signature::Check<'_>> = refs
        .iter()
        .zip(&sigs)
        .map(|(message, signature)| lienthong_core::signature::Check {
            key: &vk,
            message,
            signature,
        })
        .collect();
    let ours = rate(time, 1, |n| {
        let at = (n as usize * 64) % (checks.len() - 63);
        let ok = lienthong_core::signature::verify_all(&checks[at..at + 64]);
        std::hint::black_box(ok);
    });
    (envelope_bytes, sign, verify, batches * 64.0, ours * 64.0)
}

/// A bare sled database, written as the node's commit point writes.
struct RawSled {
    db: sled::Db,
    /// Its data file, fsynced after each flush.
    file: std::fs::File,
}

impl RawSled {
    fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let file = std::fs::File::open(path.join("db"))?;
        Ok(Self { db, file })
    }

    /// Applies `b`, flushes and fsyncs.
    fn commit(&self, b: sled::Batch) -> Result<()> {
        self.db.apply_batch(b)?;
        self.db.flush()?;
        self.file.sync_all()?;
        Ok(())
    }
}

/// Entries per second written by sled batches of `batch` values, each batch
/// flushed and fsynced.
fn sled_rate(dir: &Path, batch: usize, value_len: usize, time: Duration) -> Result<f64> {
    let sled = RawSled::open(&dir.join(format!("sled-{batch}")))?;
    let value = vec![0x5a; value_len];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            b.insert(&n.to_be_bytes(), value.clone());
            n += 1;
        }
        sled.commit(b)?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn certs(pem: &[u8]) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")
}

fn private_key(pem: &[u8]) -> Result<rustls_pki_types::PrivateKeyDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem).context("key PEM")
}

/// Server and client TLS settings from a node directory made by `lienthong
/// init`: the API certificate, the node's CA, the `admin` client.
fn tls_configs(node_dir: &Path) -> Result<(rustls::ServerConfig, rustls::ClientConfig)> {
    let read = |p: &str| std::fs::read(node_dir.join(p)).with_context(|| format!("reading {p}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&read("tls/ca-cert.pem")?)? {
        roots.add(c)?;
    }
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&read("tls/api-cert.pem")?)?,
            private_key(&read("tls/api-key.pem")?)?,
        )?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs(&read("clients/admin-cert.pem")?)?,
            private_key(&read("clients/admin-key.pem")?)?,
        )?;
    Ok((server, client))
}

/// 64-byte ping-pongs over mutual TLS on loopback: the latency of one
/// connection, and the total rate of `conns` connections at once.
async fn tls_round_trips(
    node_dir: &Path,
    time: Duration,
    conns: usize,
) -> Result<(Percentiles, f64)> {
    let (server, client) = tls_configs(node_dir)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while tls.read_exact(&mut buf).await.is_ok() {
                    if tls.write_all(&buf).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let connect = || {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from("localhost")?;
            anyhow::Ok(connector.connect(name, tcp).await?)
        }
    };
    // One connection, one round trip at a time.
    let mut one = connect().await?;
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut buf = [0x5au8; 64];
    while start.elapsed() < time && lat.len() < 1_000_000 {
        let t = Instant::now();
        one.write_all(&buf).await?;
        one.flush().await?;
        one.read_exact(&mut buf).await?;
        lat.push(t.elapsed());
    }
    drop(one);
    // Many connections at once.
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut c = connect().await?;
        let (count, stop) = (count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = [0x5au8; 64];
            while !stop.load(Ordering::Relaxed) {
                c.write_all(&buf).await?;
                c.flush().await?;
                c.read_exact(&mut buf).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let start = Instant::now();
    let before = count.load(Ordering::Relaxed);
    tokio::time::sleep(time).await;
    let done = count.load(Ordering::Relaxed) - before;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    server_task.abort();
    Ok((Percentiles::of(lat), rate))
}

/// Measures every baseline, `time` each. `scratch` is a node directory
/// made by `lienthong init` (its certificates are used; sled writes go
/// beside it).
pub async fn measure(scratch: &Path, time: Duration) -> Result<Baselines> {
    let (envelope_bytes, sign, verify, verify_batch, verify_batch_one_key) =
        tokio::task::spawn_blocking(move || crypto(time)).await?;
    let dir = scratch.join("baseline-sled");
    std::fs::create_dir_all(&dir)?;
    let d = dir.clone();
    let sled = tokio::task::spawn_blocking(move || -> Result<[f64; 3]> {
        Ok([
            sled_rate(&d, 1, envelope_bytes, time)?,
            sled_rate(&d, 64, envelope_bytes, time)?,
            sled_rate(&d, 1024, envelope_bytes, time)?,
        ])
    })
    .await??;
    let _ = std::fs::remove_dir_all(&dir);
    let (rtt, tls_rate) = tls_round_trips(scratch, time, 64).await?;
    let b = |key, label, value, unit| Baseline {
        key,
        label,
        value,
        unit,
    };
    Ok(Baselines {
        envelope_bytes,
        sign: b("sign", "raw Ed25519 sign, one core", sign, "/s"),
        verify: b("verify", "raw Ed25519 verify, one core", verify, "/s"),
        verify_batch: b(
            "verify_batch",
            "raw Ed25519 batch verify, dalek (64), one core",
            verify_batch,
            "/s",
        ),
        verify_batch_one_key: b(
            "verify_batch_one_key",
            "raw Ed25519 batch verify, ours (64), one core",
            verify_batch_one_key,
            "/s",
        ),
        sled_1: b(
            "sled_batch_1",
            "raw sled batch of 1 + flush + fsync",
            sled[0],
            "entries/s",
        ),
        sled_64: b(
            "sled_batch_64",
            "raw sled batch of 64 + flush + fsync",
            sled[1],
            "entries/s",
        ),
        sled_1024: b(
            "sled_batch_1024",
            "raw sled batch of 1024 + flush + fsync",
            sled[2],
            "entries/s",
        ),
        tls_rtt_p50: b(
            "tls_rtt_p50",
            "raw loopback mTLS round trip, p50",
            rtt.p50,
            "ms",
        ),
        tls_rtt_p99: b(
            "tls_rtt_p99",
            "raw loopback mTLS round trip, p99",
            rtt.p99,
            "ms",
        ),
        tls_64_rate: b(
            "tls_64_conns",
            "raw loopback mTLS round trips, 64 connections",
            tls_rate,
            "/s",
        ),
    })
}

/// The replication scenario's floor, without nodes: what it costs this
/// machine to take one author's checkpoints to `peers` stores.
///
/// Every `period`, for `time`, an author thread signs a checkpoint note
/// over the next `per_batch` signed entries, records it beside its store
/// as the node does before publishing (rewritten in place, `fdatasync`),
/// and hands both to `peers` threads at once. Each peer, with its own
/// sled database as a node has, takes every checkpoint waiting for it as
/// one group, as the node's writer does: it checks the notes' signatures
/// and the entries' (batched, with the node's own functions), writes the
/// entries in one sled batch, flushes and fsyncs. No network, no TLS, no
/// gRPC, no indexes, no receipts: the signature checks and the fsyncs that
/// replication cannot do without, all at once on one disk and these cores.
///
/// Returns, per checkpoint, the time from when it was due to the last
/// peer's fsync, and to each peer's fsync. Bounded: `time / period`
/// checkpoints, then the peers finish what they were handed.
pub fn fan_out(
    dir: &Path,
    peers: usize,
    per_batch: usize,
    period: Duration,
    time: Duration,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    use std::sync::mpsc;
    const ORIGIN: &str = "lienthong.example/bench/20";
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    // Batches larger than the pool repeat envelopes; checking and storing
    // them costs the same.
    let pool: Vec<Vec<u8>> = (0..256)
        .map(|i| {
            lienthong_core::entry::sign_entry(sample_body(i), &key)
                .envelope()
                .to_vec()
        })
        .collect();
    let pool = Arc::new(pool);
    let signer = lienthong_log::NoteSigner::new(ORIGIN, key)?;
    // (checkpoint number, note, first entry of the pool)
    type Batch = (usize, Arc<String>, usize);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Instant)>();
    let mut inboxes = Vec::with_capacity(peers);
    let mut workers = Vec::with_capacity(peers);
    for p in 0..peers {
        let (tx, rx) = mpsc::channel::<Batch>();
        inboxes.push(tx);
        let path = dir.join(format!("fan-out-{p}"));
        let (pool, done) = (pool.clone(), done_tx.clone());
        workers.push(std::thread::spawn(move || -> Result<()> {
            let sled = RawSled::open(&path)?;
            let author = lienthong_core::delivery::AuthorKeys::single("20", ORIGIN, vk);
            let mut n = 0u64;
            while let Ok(next) = rx.recv() {
                let group: Vec<Batch> = std::iter::once(next).chain(rx.try_iter()).collect();
                let mut b = sled::Batch::default();
                for (_, note, first) in &group {
                    lienthong_log::verify_checkpoint_with_key(note.as_bytes(), ORIGIN, &vk)?;
                    let envelopes: Vec<&[u8]> = (0..per_batch)
                        .map(|i| pool[(first + i) % pool.len()].as_slice())
                        .collect();
                    let verified = lienthong_core::delivery::verify_entries(&envelopes, &author);
                    anyhow::ensure!(
                        verified.iter().all(Result::is_ok),
                        "an entry did not verify"
                    );
                    for e in &envelopes {
                        b.insert(&n.to_be_bytes(), *e);
                        n += 1;
                    }
                }
                sled.commit(b)?;
                let at = Instant::now();
                for (number, ..) in &group {
                    if done.send((*number, at)).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }));
    }
    drop(done_tx);
    let mut recorded = std::fs::File::create(dir.join("checkpoint.last"))?;
    let start = Instant::now();
    let rounds = (time.as_secs_f64() / period.as_secs_f64()).ceil() as usize;
    let mut due_at = Vec::with_capacity(rounds);
    let mut handed = Ok(());
    for number in 0..rounds {
        // Timed from when it was due: a late author counts.
        let due = start + period * number as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let head = lienthong_log::TreeHead {
            origin: ORIGIN.into(),
            size: ((number + 1) * per_batch) as u64,
            root: lienthong_log::Hash([number as u8; 32]),
        };
        let note = Arc::new(lienthong_log::sign_checkpoint(&head, &signer)?);
        {
            use std::io::{Seek, Write};
            recorded.seek(std::io::SeekFrom::Start(0))?;
            recorded.write_all(note.as_bytes())?;
            recorded.sync_data()?;
        }
        due_at.push(due);
        if inboxes.iter().any(|inbox| {
            inbox
                .send((number, note.clone(), number * per_batch))
                .is_err()
        }) {
            // A peer stopped: its own error says why (below).
            handed = Err(anyhow::anyhow!("a fan-out peer stopped"));
            break;
        }
    }
    drop(inboxes);
    let mut last = vec![Duration::ZERO; due_at.len()];
    let mut each = Vec::with_capacity(due_at.len() * peers);
    for (number, at) in done_rx {
        let d = at.saturating_duration_since(due_at[number]);
        each.push(d);
        last[number] = last[number].max(d);
    }
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a fan-out peer panicked"))??;
    }
    handed?;
    Ok((last, each))
}
