//! Load generators and observers. Every loop here is bounded by a count
//! and a deadline, and every request by a timeout, so a stuck node makes a
//! scenario fail instead of hanging the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, sample_alert};
use tonic::transport::Channel;

use crate::report::Percentiles;

/// Longest any single request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` mTLS channels to `node`, each its own connection and TLS session,
/// as `n` separate local systems would have.
pub async fn channels(node: &Node, n: usize) -> Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(node.channel().await?);
    }
    Ok(out)
}

/// One acknowledged submission.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub sent: Instant,
    pub acked: Instant,
    /// Feed index of the entry.
    pub index: u64,
}

/// What a load run produced.
#[derive(Debug, Default)]
pub struct Run {
    pub acks: Vec<Ack>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// The measured window: acks in it count towards throughput; requests
    /// sent in it count towards latency.
    pub window: Option<(Instant, Instant)>,
    /// Entry id of the highest feed index acknowledged.
    pub last: Option<(u64, Vec<u8>)>,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.acks.extend(other.acks);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        match (&self.last, other.last) {
            (Some((a, _)), Some((b, id))) if b > *a => self.last = Some((b, id)),
            (None, Some(l)) => self.last = Some(l),
            _ => {}
        }
    }

    fn record(&mut self, sent: Instant, r: Result<pb::SubmitAlertResponse, tonic::Status>) {
        match r {
            Ok(r) => {
                if r.duplicate {
                    self.errors += 1;
                    self.first_error.get_or_insert_with(|| {
                        "a fresh reference was answered as a duplicate".into()
                    });
                    return;
                }
                if self.last.as_ref().is_none_or(|(i, _)| r.index > *i) {
                    self.last = Some((r.index, r.entry_id));
                }
                self.acks.push(Ack {
                    sent,
                    acked: Instant::now(),
                    index: r.index,
                });
            }
            Err(s) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| format!("{:?}: {}", s.code(), s.message()));
            }
        }
    }

    /// Acknowledgements per second inside the window.
    pub fn throughput(&self) -> f64 {
        let Some((a, b)) = self.window else {
            return 0.0;
        };
        let n = self
            .acks
            .iter()
            .filter(|k| k.acked >= a && k.acked <= b)
            .count();
        n as f64 / (b - a).as_secs_f64().max(1e-9)
    }

    /// Acks of the requests sent inside the window.
    pub fn in_window(&self) -> Vec<Ack> {
        let Some((a, b)) = self.window else {
            return self.acks.clone();
        };
        self.acks
            .iter()
            .filter(|k| k.sent >= a && k.sent <= b)
            .copied()
            .collect()
    }

    /// Submission → acknowledgement latency of requests sent in the window.
    pub fn latency(&self) -> Percentiles {
        Percentiles::of(self.in_window().iter().map(|k| k.acked - k.sent).collect())
    }
}

async fn submit(
    client: &mut pb::alerts_client::AlertsClient<Channel>,
    reference: String,
) -> Result<pb::SubmitAlertResponse, tonic::Status> {
    let mut req = tonic::Request::new(pb::SubmitAlertRequest {
        alert: Some(sample_alert(&reference)),
    });
    req.set_timeout(REQUEST_TIMEOUT);
    client.submit(req).await.map(tonic::Response::into_inner)
}

/// A closed loop: `clients` submitters, each with one request in flight,
/// spread over `chans`; runs for `warmup + window` or until `max` have been
/// sent, whichever comes first. `progress` prints a line every 10 s.
pub struct ClosedLoop<'a> {
    pub chans: &'a [Channel],
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub max: u64,
    /// Prefix of the alert references: unique per run on a node.
    pub tag: &'a str,
    pub progress: Option<&'a str>,
}

impl ClosedLoop<'_> {
    pub async fn run(self) -> Result<Run> {
        let issued = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let window_start = start + self.warmup;
        let end = window_start + self.window;
        let mut tasks = Vec::new();
        for c in 0..self.clients {
            let mut client =
                pb::alerts_client::AlertsClient::new(self.chans[c % self.chans.len()].clone());
            let (issued, acked, max, tag) =
                (issued.clone(), acked.clone(), self.max, self.tag.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut run = Run::default();
                loop {
                    let k = issued.fetch_add(1, Ordering::Relaxed);
                    if k >= max || Instant::now() >= end {
                        break;
                    }
                    let sent = Instant::now();
                    let r = submit(&mut client, format!("{tag}-{c}-{k}")).await;
                    run.record(sent, r);
                    acked.fetch_add(1, Ordering::Relaxed);
                    // A broken node answers errors fast: don't spin on it.
                    if run.errors > 100 {
                        break;
                    }
                }
                run
            }));
        }
        let reporter = self.progress.map(|label| {
            let (acked, label, max) = (acked.clone(), label.to_owned(), self.max);
            tokio::spawn(async move {
                let mut last = (Instant::now(), 0u64);
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let n = acked.load(Ordering::Relaxed);
                    let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    eprintln!(
                        "  {label}: {n}/{max} ({rate:.0}/s over the last 10 s, {:.0} s so far)",
                        start.elapsed().as_secs_f64()
                    );
                    last = (Instant::now(), n);
                }
            })
        });
        let mut run = Run::default();
        for t in tasks {
            run.merge(t.await?);
        }
        if let Some(r) = reporter {
            r.abort();
        }
        let finished = Instant::now();
        run.window = Some((window_start.min(finished), end.min(finished)));
        Ok(run)
    }
}

/// An open loop: `rate` submissions per second for `window`, each its own
/// request whatever the previous ones do (no coordinated omission), spread
/// over `chans`.
pub async fn open_loop(chans: &[Channel], rate: f64, window: Duration, tag: &str) -> Result<Run> {
    let total = (rate * window.as_secs_f64()).round() as u64;
    let results = Arc::new(Mutex::new(Run::default()));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    while sent < total && start.elapsed() < window + Duration::from_secs(1) {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let mut client =
                pb::alerts_client::AlertsClient::new(chans[sent as usize % chans.len()].clone());
            let (results, reference) = (results.clone(), format!("{tag}-{sent}"));
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = submit(&mut client, reference).await;
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(t, r);
            }));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let end = Instant::now();
    for t in tasks {
        t.await?;
    }
    let mut run = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    run.window = Some((start, end));
    Ok(run)
}

/// When each entry of one author arrived at a node, by feed index, from
/// the node's `Alerts.Watch` stream.
#[derive(Default)]
pub struct Arrivals {
    pub at: Mutex<HashMap<u64, Instant>>,
    pub count: AtomicU64,
    pub error: Mutex<Option<String>>,
}

impl Arrivals {
    pub fn get(&self, index: u64) -> Option<Instant> {
        self.at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
            .copied()
    }
}

/// Watches `channel`'s node from `from_cursor` and records the arrival of
/// every entry authored by `author`. Abort the handle when done.
pub fn watch(
    channel: Channel,
    author: &str,
    from_cursor: u64,
) -> (Arc<Arrivals>, tokio::task::JoinHandle<()>) {
    let arrivals = Arc::new(Arrivals::default());
    let (a, author) = (arrivals.clone(), author.to_owned());
    let task = tokio::spawn(async move {
        let mut c = pb::alerts_client::AlertsClient::new(channel);
        let stream = match c.watch(pb::WatchRequest { from_cursor }).await {
            Ok(s) => s,
            Err(e) => {
                *a.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return;
            }
        };
        let mut stream = stream.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(e)) => {
                    let now = Instant::now();
                    if let Some(b) = e.body.as_ref().filter(|b| b.author == author) {
                        a.at.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(b.index, now);
                        a.count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    *a.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return;
                }
            }
        }
    });
    (arrivals, task)
}

/// Checkpoint sizes of a node as first seen, polled with
/// `Audit.GetCheckpoint` every `period`: (time seen, size).
pub type Sightings = Arc<Mutex<Vec<(Instant, u64)>>>;

pub fn poll_checkpoints(
    channel: Channel,
    period: Duration,
) -> (Sightings, tokio::task::JoinHandle<()>) {
    let seen: Sightings = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let mut c = pb::audit_client::AuditClient::new(channel);
        let mut last = None;
        loop {
            let mut req = tonic::Request::new(pb::GetCheckpointRequest::default());
            req.set_timeout(REQUEST_TIMEOUT);
            if let Ok(r) = c.get_checkpoint(req).await {
                let size = r.into_inner().size;
                if last != Some(size) {
                    last = Some(size);
                    s.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), size));
                }
            }
            tokio::time::sleep(period).await;
        }
    });
    (seen, task)
}

/// Time from each ack to the first sighting of a checkpoint covering its
/// entry (zero if one was seen before the ack reached the client);
/// `None` for entries no checkpoint was seen to cover.
pub fn checkpoint_lag(acks: &[Ack], seen: &[(Instant, u64)]) -> (Vec<Duration>, usize) {
    let mut lags = Vec::with_capacity(acks.len());
    let mut uncovered = 0;
    for a in acks {
        // Sizes only grow, so the first sighting larger than the index is
        // found by bisection.
        let i = seen.partition_point(|(_, size)| *size <= a.index);
        match seen.get(i) {
            Some((t, _)) => lags.push(t.saturating_duration_since(a.acked)),
            None => uncovered += 1,
        }
    }
    (lags, uncovered)
}

/// `grpc.health.v1` checks over every channel, closed loop, for `time`:
/// the node's gRPC + mTLS round trip when it does no work.
pub async fn health_loop(chans: &[Channel], time: Duration) -> Result<(f64, Percentiles)> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let end = Instant::now() + time;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ch in chans {
        let mut c = HealthClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end && lat.len() < 1_000_000 {
                let t = Instant::now();
                let mut req = tonic::Request::new(HealthCheckRequest {
                    service: "lienthong.v1.Alerts".into(),
                });
                req.set_timeout(REQUEST_TIMEOUT);
                c.check(req).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, Percentiles::of(lat)))
}

/// True once `node` answers SERVING for the Alerts service over mTLS.
pub async fn serving(node: &Node) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(tls) = node.client_tls() else {
        return false;
    };
    let Ok(ep) = tonic::transport::Endpoint::from_shared(format!("https://{}", node.addr())) else {
        return false;
    };
    let Ok(ep) = ep
        .tls_config(tls)
        .map(|e| e.connect_timeout(Duration::from_millis(500)))
    else {
        return false;
    };
    let Ok(ch) = ep.connect().await else {
        return false;
    };
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: "lienthong.v1.Alerts".into(),
    });
    req.set_timeout(Duration::from_secs(2));
    matches!(
        HealthClient::new(ch).check(req).await,
        Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}
