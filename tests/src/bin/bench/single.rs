//! Scenarios on one node alone: durable signed ingest, and the time from
//! an acknowledgement to a signed checkpoint covering the entry.

use std::time::Duration;

use anyhow::{Context, Result};
use lienthong_tests::Node;
use serde_json::json;

use crate::Ctx;
use crate::load::{self, ClosedLoop};
use crate::report::{Baseline, Figure, Percentiles, Scenario, Target};
use crate::sys;

/// Concurrent local systems submitting alerts.
const CLIENTS: usize = 64;

/// How often the checkpoint is polled: the resolution of ack → checkpoint.
const POLL: Duration = Duration::from_millis(5);

/// A fresh standalone node with the run's checkpoint interval and its
/// metrics endpoint, started; and that endpoint's port.
pub fn fresh_node(ctx: &Ctx, member: &str, name: &str) -> Result<(Node, u16)> {
    let mut node = Node::init(member, name)?;
    node.set_checkpoint_interval_ms(ctx.checkpoint_ms)?;
    let metrics = node.enable_metrics()?;
    node.start()?;
    Ok((node, metrics))
}

/// The node's group commit histograms (`lienthong_group_*`) at one moment.
#[derive(Default)]
struct Groups {
    /// Commits (those that signed a checkpoint), and the sums of their
    /// seconds, write seconds and entries.
    count: f64,
    checkpoints: f64,
    seconds: f64,
    write_seconds: f64,
    /// Of the write seconds, those of the commits that signed a checkpoint
    /// (they also record it beside the database).
    checkpoint_write_seconds: f64,
    entries: f64,
    /// Commits that took more than 10 ms, and whose write did.
    over_10ms: f64,
    write_over_10ms: f64,
}

impl Groups {
    fn scrape(port: u16) -> Result<Self> {
        let text = lienthong_tests::http_get(port, "/metrics")?;
        // The sum over the series of `name` whose labels include `with`.
        let value = |name: &str, with: &str| -> Result<f64> {
            lienthong_tests::metric_sum(&text, name, Some(with).filter(|w| !w.is_empty()))
                .with_context(|| format!("no {name} {{{with}}} in the node's metrics"))
        };
        let count = value("lienthong_group_commit_seconds_count", "")?;
        let write_count = value("lienthong_group_write_seconds_count", "")?;
        let le_10ms = "le=\"0.01\"";
        Ok(Self {
            count,
            checkpoints: value(
                "lienthong_group_commit_seconds_count",
                "checkpoint=\"true\"",
            )?,
            seconds: value("lienthong_group_commit_seconds_sum", "")?,
            write_seconds: value("lienthong_group_write_seconds_sum", "")?,
            checkpoint_write_seconds: value(
                "lienthong_group_write_seconds_sum",
                "checkpoint=\"true\"",
            )?,
            entries: value("lienthong_group_entries_sum", "")?,
            over_10ms: count - value("lienthong_group_commit_seconds_bucket", le_10ms)?,
            write_over_10ms: write_count - value("lienthong_group_write_seconds_bucket", le_10ms)?,
        })
    }

    /// What the node's writer did between `self` and `later`, in words.
    fn note(&self, later: &Self, window: Duration) -> String {
        let n = (later.count - self.count).max(1.0);
        let with = later.checkpoints - self.checkpoints;
        let with_write = later.checkpoint_write_seconds - self.checkpoint_write_seconds;
        let without_write = later.write_seconds - self.write_seconds - with_write;
        format!(
            "node's group commits in the window: {:.0} ({:.0}/s, {:.0} of them with a checkpoint), {:.1} entries each; {:.2} ms each, of which writing {:.2} ms (batch, flush, fsync; {:.2} ms in those with a checkpoint, which also record it, {:.2} ms in the others); over 10 ms: {:.2}% of commits, {:.2}% of writes",
            later.count - self.count,
            (later.count - self.count) / window.as_secs_f64().max(1e-9),
            with,
            (later.entries - self.entries) / n,
            1000.0 * (later.seconds - self.seconds) / n,
            1000.0 * (later.write_seconds - self.write_seconds) / n,
            1000.0 * with_write / with.max(1.0),
            1000.0 * without_write / (n - with).max(1.0),
            100.0 * (later.over_10ms - self.over_10ms) / n,
            100.0 * (later.write_over_10ms - self.write_over_10ms) / n,
        )
    }
}

/// Fails the scenario if any submission failed.
pub fn check_errors(s: &mut Scenario, run: &load::Run) {
    if run.errors > 0 {
        s.fail(format!(
            "{} submissions failed; first: {}",
            run.errors,
            run.first_error.as_deref().unwrap_or("?")
        ));
    }
}

/// Write bytes and write calls per acknowledged entry, from /proc/<pid>/io.
pub fn io_note(usage: &sys::Usage, entries: usize) -> Option<String> {
    let p = usage.procs.first()?;
    let (bytes, calls) = (p.write_bytes?, p.write_calls?);
    let n = entries.max(1) as f64;
    Some(format!(
        "node wrote {:.1} MiB to storage in the window: {:.0} bytes and {:.2} write calls per entry",
        bytes as f64 / 1048576.0,
        bytes as f64 / n,
        calls as f64 / n
    ))
}

pub async fn ingest(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let (mut node, metrics) = fresh_node(ctx, "01", "Hà Nội")?;
    let pid = node.pid().context("node pid")?;
    let chans = load::channels(&node, CLIENTS).await?;

    // What the node's gRPC + mTLS stack costs when it does no work: the
    // ceiling this client and this machine put on any RPC.
    let (health_rate, health_lat) = load::health_loop(&chans, ctx.secs(4.0, 0.5)).await?;
    let health_rate_b = Baseline {
        key: "grpc_health_64",
        label: "gRPC health check to this node, 64 clients (no work)",
        value: health_rate,
        unit: "/s",
    };
    let health_p99_b = Baseline {
        key: "grpc_health_64_p99",
        label: "gRPC health check to this node, 64 clients, p99",
        value: health_lat.p99,
        unit: "ms",
    };

    let (seen, poller) = load::poll_checkpoints(node.channel().await?, POLL);
    let warmup = ctx.secs(2.0, 0.5);
    let window = ctx.secs(20.0, 3.0);
    let submit = ClosedLoop {
        chans: &chans,
        clients: CLIENTS,
        warmup,
        window,
        max: 50_000_000,
        tag: "ingest",
        progress: None,
    }
    .run();
    let measure = async {
        tokio::time::sleep(warmup).await;
        let w = sys::Window::open(&[("node 01".into(), pid)]);
        let before = tokio::task::block_in_place(|| Groups::scrape(metrics));
        tokio::time::sleep(window).await;
        let after = tokio::task::block_in_place(|| Groups::scrape(metrics));
        (w.close(), before, after)
    };
    let (run, (usage, groups_before, groups_after)) = tokio::join!(submit, measure);
    let run = run?;
    tokio::time::sleep(Duration::from_millis(3 * ctx.checkpoint_ms + 200)).await;
    poller.abort();
    check_errors(s, &run);

    let rate = run.throughput();
    let lat = run.latency();
    let in_window = run.in_window();
    let sightings = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (lags, uncovered) = load::checkpoint_lag(&in_window, &sightings);
    let cp = Percentiles::of(lags);

    let b = &ctx.base;
    s.figure(
        Figure::new(
            "alerts_per_s",
            "acknowledged alerts/s (fsynced)",
            rate,
            "/s",
        )
        .target(Target::AtLeast(5000.0))
        .against(&b.sled_64)
        .against(&b.sign)
        .against(&health_rate_b)
        .against(&b.tls_64_rate),
    );
    s.figure(
        Figure::new("ack_p99_ms", "submit → ack p99", lat.p99, "ms")
            .target(Target::AtMost(20.0))
            .against(&health_p99_b)
            .against(&b.tls_rtt_p99),
    );
    s.figure(Figure::new("ack_p50_ms", "submit → ack p50", lat.p50, "ms"));
    s.figure(
        Figure::new(
            "checkpoint_p99_ms",
            "ack → signed checkpoint p99, at this load",
            cp.p99,
            "ms",
        )
        .target(Target::AtMost(250.0)),
    );
    s.note(format!(
        "{} alerts acknowledged in a {:.1} s window after {:.1} s of warm-up; latency {}",
        in_window.len(),
        window.as_secs_f64(),
        warmup.as_secs_f64(),
        lat.text()
    ));
    s.note(format!(
        "gRPC health checks before the run: {health_rate:.0}/s, {}",
        health_lat.text()
    ));
    s.note(usage.summary());
    if let Some(n) = io_note(&usage, in_window.len()) {
        s.note(n);
    }
    match (groups_before, groups_after) {
        (Ok(before), Ok(after)) => s.note(before.note(&after, window)),
        (Err(e), _) | (_, Err(e)) => s.note(format!("node's group commits not read: {e:#}")),
    }
    if uncovered > 0 {
        s.fail(format!(
            "{uncovered} acknowledged entries were never covered by a checkpoint"
        ));
    }
    s.detail("latency", lat.to_json());
    s.detail("checkpoint_lag", cp.to_json());
    s.detail(
        "grpc_health",
        json!({"rate": health_rate, "latency": health_lat.to_json()}),
    );
    s.detail("usage", usage.to_json());
    s.detail("clients", json!(CLIENTS));
    drop(chans);
    node.stop()?;
    Ok(())
}

pub async fn checkpoint(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    const RATE: f64 = 1000.0;
    let (mut node, _) = fresh_node(ctx, "01", "Hà Nội")?;
    let pid = node.pid().context("node pid")?;
    let chans = load::channels(&node, 16).await?;
    let (seen, poller) = load::poll_checkpoints(node.channel().await?, POLL);
    let window = ctx.secs(10.0, 2.0);
    let usage = sys::Window::open(&[("node 01".into(), pid)]);
    let run = load::open_loop(&chans, RATE, window, "checkpoint").await?;
    let usage = usage.close();
    tokio::time::sleep(Duration::from_millis(3 * ctx.checkpoint_ms + 200)).await;
    poller.abort();
    check_errors(s, &run);
    let sightings = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (lags, uncovered) = load::checkpoint_lag(&run.acks, &sightings);
    let cp = Percentiles::of(lags);
    let one_fsync = Baseline {
        key: "sled_batch_1_ms",
        label: "one raw sled batch + flush + fsync",
        value: 1000.0 / ctx.base.sled_1.value.max(1e-9),
        unit: "ms",
    };
    s.figure(
        Figure::new(
            "checkpoint_p99_ms",
            "ack → signed checkpoint p99",
            cp.p99,
            "ms",
        )
        .target(Target::AtMost(250.0))
        .against(&one_fsync),
    );
    s.figure(Figure::new(
        "checkpoint_p50_ms",
        "ack → signed checkpoint p50",
        cp.p50,
        "ms",
    ));
    s.figure(Figure::new(
        "ack_p99_ms",
        "submit → ack p99 at 1,000/s",
        run.latency().p99,
        "ms",
    ));
    s.note(format!(
        "{} alerts at {RATE:.0}/s (open loop); checkpoint interval {} ms, polled every {} ms; lag {}",
        run.acks.len(),
        ctx.checkpoint_ms,
        POLL.as_millis(),
        cp.text()
    ));
    s.note(usage.summary());
    if uncovered > 0 {
        s.fail(format!(
            "{uncovered} acknowledged entries were never covered by a checkpoint"
        ));
    }
    s.detail("checkpoint_lag", cp.to_json());
    s.detail("ack_latency", run.latency().to_json());
    s.detail("usage", usage.to_json());
    drop(chans);
    node.stop()?;
    Ok(())
}
