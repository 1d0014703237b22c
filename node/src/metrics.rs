//! Prometheus metrics over plain HTTP (`[metrics] listen`), for the
//! province's monitoring: `GET /metrics` in the OpenMetrics text format.
//!
//! Counters and the ingest latency histogram are kept as events happen;
//! everything else (feed and checkpoint sizes, peers, evidence) is read
//! from the store and the peering state at scrape time, so it is never
//! stale and costs nothing between scrapes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use lienthong_core::proto as pb;
use lienthong_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::peer::Peering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerReason {
    peer: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// What the services record as they work.
#[derive(Clone)]
pub struct Metrics {
    /// Submissions by outcome (stored, duplicate, invalid, error).
    pub submitted: Family<Outcome, Counter>,
    /// Time from request to durable acknowledgement, seconds.
    pub submit_seconds: Histogram,
    /// Each group commit of the feed writer, from taking the group to just
    /// before answering it, seconds; by whether it signed a checkpoint.
    pub group_commit_seconds: GroupHistograms,
    /// Of which writing it to disk (batch, flush, fsync; with a checkpoint
    /// also its file beside the database, one more fdatasync), seconds.
    pub group_write_seconds: GroupHistograms,
    /// Entries in each group commit (0 in a group that only signs a
    /// checkpoint).
    pub group_entries: GroupHistograms,
}

/// Whether a group commit signed a checkpoint: such a group also records
/// it beside the database (`checkpoint.last`, `checkpoint.last.b`), so its
/// time is shown apart.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupKind {
    checkpoint: &'static str,
}

/// A histogram of group commits per [`GroupKind`].
pub type GroupHistograms = Family<GroupKind, Histogram, fn() -> Histogram>;

/// Latency buckets, seconds: 0.5 ms to 2.5 s.
const SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn group_histograms(make: fn() -> Histogram) -> GroupHistograms {
    let family = GroupHistograms::new_with_constructor(make);
    // Both series from the start, so a dashboard never misses one.
    for checkpoint in ["false", "true"] {
        drop(family.get_or_create(&GroupKind { checkpoint }));
    }
    family
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            submitted: Family::default(),
            submit_seconds: Histogram::new(SECONDS[1..].iter().copied()),
            group_commit_seconds: group_histograms(|| Histogram::new(SECONDS)),
            group_write_seconds: group_histograms(|| Histogram::new(SECONDS)),
            group_entries: group_histograms(|| {
                Histogram::new((0..13).map(|k| f64::from(1u32 << k)))
            }),
        }
    }
}

impl Metrics {
    /// The feed writer's report of each group (`WriterConfig::on_commit`).
    pub fn commit_observer(&self) -> lienthong_store::CommitObserver {
        let (total, write, entries) = (
            self.group_commit_seconds.clone(),
            self.group_write_seconds.clone(),
            self.group_entries.clone(),
        );
        lienthong_store::CommitObserver(Arc::new(move |c: &lienthong_store::CommitStats| {
            let kind = GroupKind {
                checkpoint: if c.checkpoint { "true" } else { "false" },
            };
            total.get_or_create(&kind).observe(c.total.as_secs_f64());
            write.get_or_create(&kind).observe(c.write.as_secs_f64());
            entries.get_or_create(&kind).observe(c.entries as f64);
        }))
    }
}

/// Everything a scrape reads.
pub struct Sources {
    pub metrics: Metrics,
    pub store: Store,
    pub peering: Option<Arc<Peering>>,
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Renders every metric now.
pub fn render(src: &Sources) -> Result<String> {
    let mut reg = Registry::with_prefix("lienthong");
    reg.register(
        "submissions",
        "Alert submissions by outcome",
        src.metrics.submitted.clone(),
    );
    let m = &src.metrics;
    reg.register(
        "submit_seconds",
        "Time from request to durable acknowledgement of a submission",
        m.submit_seconds.clone(),
    );
    for (name, help, family) in [
        (
            "group_commit_seconds",
            "Time the feed writer took for each group commit, from taking the group to just before answering it, by whether it signed a checkpoint",
            &m.group_commit_seconds,
        ),
        (
            "group_write_seconds",
            "Of each group commit, the time writing it to disk (batch, flush, fsync; with a checkpoint also the checkpoint file)",
            &m.group_write_seconds,
        ),
        (
            "group_entries",
            "Entries written by each group commit (own, receipts and received; 0 when it only signs a checkpoint)",
            &m.group_entries,
        ),
    ] {
        reg.register(name, help, family.clone());
    }
    let store = &src.store;
    let durable = store.durable();
    gauge(
        &mut reg,
        "feed_entries",
        "Entries in this member's own feed",
        i(durable.feed_size),
    );
    gauge(
        &mut reg,
        "stored_entries",
        "Entries stored (own and received)",
        i(durable.next_cursor),
    );
    let cp = store.latest_checkpoint();
    gauge(
        &mut reg,
        "checkpoint_size",
        "Tree size of the latest signed checkpoint",
        i(cp.as_ref().map_or(0, |c| c.size)),
    );
    gauge(
        &mut reg,
        "checkpoint_pending_entries",
        "Entries of the own feed not yet covered by a signed checkpoint (should stay near 0)",
        i(durable
            .feed_size
            .saturating_sub(cp.as_ref().map_or(0, |c| c.size))),
    );
    if let Some(t) = store.latest_checkpoint_time() {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(unix_seconds(t));
        reg.register(
            "checkpoint_timestamp_seconds",
            "When this node signed its latest checkpoint (Unix time); a node signs only when its feed grows, so an idle feed keeps an old one",
            g,
        );
    }
    let (cosigned_size, cosigs) = store.latest_cosigned()?.unwrap_or((0, 0));
    gauge(
        &mut reg,
        "checkpoint_cosignatures",
        "Members that cosigned the newest cosigned checkpoint (checkpoints signed since the last cosigning round have none yet)",
        i(cosigs as u64),
    );
    gauge(
        &mut reg,
        "checkpoint_cosigned_size",
        "Tree size of the newest checkpoint that members cosigned",
        i(cosigned_size),
    );
    gauge(
        &mut reg,
        "store_bytes",
        "Bytes the store occupies on disk",
        i(store.size_on_disk()?),
    );

    let evidence: Family<KindLabel, Gauge> = Family::default();
    let mut after = 0;
    loop {
        let page = store.evidence(after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            evidence
                .get_or_create(&KindLabel {
                    kind: e
                        .kind()
                        .as_str_name()
                        .trim_start_matches("EVIDENCE_KIND_")
                        .to_ascii_lowercase(),
                })
                .inc();
        }
    }
    reg.register(
        "evidence_records",
        "Signed evidence held, by kind (equivocation, inconsistent, refused_entry)",
        evidence,
    );

    if let Some(p) = &src.peering {
        let chain = p.chain();
        gauge(
            &mut reg,
            "manifest_version",
            "Manifest version in force",
            i(chain.current().version()),
        );
        let connected: Family<PeerLabel, Gauge> = Family::default();
        let lag: Family<PeerLabel, Gauge> = Family::default();
        let witnessed: Family<PeerLabel, Gauge> = Family::default();
        let cosigned: Family<PeerLabel, Gauge> = Family::default();
        let refused: Family<PeerReason, Counter> = Family::default();
        let clock: Family<PeerLabel, Gauge<f64, AtomicU64>> = Family::default();
        for s in p.peer_status() {
            let l = PeerLabel {
                peer: s.member.clone(),
            };
            connected.get_or_create(&l).set(i64::from(s.connected));
            let cursor = store.replication_cursor(&s.member)?;
            lag.get_or_create(&l)
                .set(i(s.checkpoint_size.saturating_sub(cursor)));
            witnessed.get_or_create(&l).set(i(s.witnessed_size));
            cosigned.get_or_create(&l).set(i64::from(s.cosigned_ours));
            // Every reason from 0, so that a first refusal is an increase.
            for reason in crate::peer::REFUSAL_REASONS {
                let n = s.refused_by_reason.get(*reason).copied().unwrap_or(0);
                refused
                    .get_or_create(&PeerReason {
                        peer: s.member.clone(),
                        reason: (*reason).to_owned(),
                    })
                    .inc_by(n);
            }
            if let Some(o) = s.clock_offset_ms {
                clock.get_or_create(&l).set(o as f64 / 1000.0);
            }
        }
        reg.register(
            "peer_connected",
            "1 while a replication stream to the peer is open",
            connected,
        );
        reg.register(
            "peer_replication_lag_entries",
            "The peer's latest checkpoint size seen minus the next index asked of it (an upper bound: some entries are not for us)",
            lag,
        );
        reg.register(
            "peer_witnessed_size",
            "Size of the peer's checkpoint this node last cosigned",
            witnessed,
        );
        reg.register(
            "peer_cosigned_ours",
            "1 if the peer cosigned this node's latest checkpoint",
            cosigned,
        );
        reg.register(
            "peer_refused_deliveries",
            "Deliveries refused from the peer since start, by reason",
            refused,
        );
        reg.register(
            "peer_clock_offset_seconds",
            "The peer's clock minus this node's, measured at the last manifest poll",
            clock,
        );
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// Binds `metrics.listen`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics.listen {addr}"))
}

/// Serves `GET /metrics` on `listener` until `stopping`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    src: Arc<Sources>,
    mut stopping: watch::Receiver<bool>,
) -> Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics");
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = stopping.changed() => return Ok(()),
        };
        let src = src.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let src = src.clone();
                    async move {
                        let (status, body) = if req.uri().path() != "/metrics" {
                            (404, "not found: metrics are at /metrics\n".to_owned())
                        } else {
                            match tokio::task::spawn_blocking(move || render(&src)).await {
                                Ok(Ok(text)) => (200, text),
                                Ok(Err(e)) => (500, format!("{e:#}\n")),
                                Err(e) => (500, format!("{e}\n")),
                            }
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(status).unwrap_or_default();
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Label of a submission outcome.
pub fn outcome(r: &Result<pb::SubmitAlertResponse, tonic::Status>) -> Outcome {
    Outcome {
        outcome: match r {
            Ok(a) if a.duplicate => "duplicate",
            Ok(_) => "stored",
            Err(s) if s.code() == tonic::Code::InvalidArgument => "invalid",
            Err(_) => "error",
        },
    }
}
