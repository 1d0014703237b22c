//! Scenarios on a filled feed: Lạng Sơn (20) takes `--entries` alerts through
//! its API (1M in the full run), in a two-member federation whose other
//! member, Bắc Ninh (24), stays down until the catch-up scenario. Then:
//! memory idle and under ingest, cold start, the audit commands, and the
//! fresh peer pulling and verifying the whole feed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lienthong_proto::v1 as pb;
use lienthong_tests::{AGREEMENT_ALL, Federation, Node, federation, lienthong};
use serde_json::json;

use crate::Ctx;
use crate::load::{self, ClosedLoop};
use crate::report::{Baseline, Figure, Outcome, Percentiles, Scenario, Target};
use crate::single::{check_errors, io_note};
use crate::sys;

const CLIENTS: usize = 64;
const MIB: f64 = 1024.0 * 1024.0;

/// The federation holding the filled feed.
pub struct Filled {
    pub fed: Federation,
    /// Entries in the author's feed.
    pub entries: u64,
    /// Feed index and id of the author's newest entry.
    pub last: (u64, Vec<u8>),
    /// Whether the author has been restarted since it was filled.
    pub restarted: bool,
}

impl Filled {
    fn author(&mut self) -> &mut Node {
        &mut self.fed.nodes[0]
    }

    /// Stops both nodes (whatever state they are in).
    pub fn shut_down(mut self) {
        for n in &mut self.fed.nodes {
            if n.stop().is_err() {
                n.kill9();
            }
        }
    }
}

/// The sled keys of the (stopped) node's store by kind (first byte of
/// the key; crates/store/src/lib.rs lists them): sled's memory grows with
/// the number of keys, loaded or not.
fn key_census(store: &Path, entries: u64) -> Result<String> {
    // No background flusher: one thread fewer holding the file lock after
    // `db` drops, just before the node starts again on this store.
    let db = sled::Config::new()
        .path(store)
        .cache_capacity(8 << 20)
        .flush_every_ms(None)
        .open()
        .with_context(|| format!("open {} to count its keys", store.display()))?;
    let mut count = std::collections::BTreeMap::<u8, u64>::new();
    for k in db.iter().keys() {
        *count.entry(k?.first().copied().unwrap_or(0)).or_default() += 1;
    }
    drop(db);
    // sled's I/O threads can still hold the store's file lock for a moment
    // after the last handle drops; the node started next would refuse the
    // store (seen once, 2026-12-06). Wait until the lock is free.
    let file = std::fs::File::open(store.join("db"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                bail!("the store's lock is still held 10 s after counting its keys: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(file);
    let total: u64 = count.values().sum();
    let kinds: Vec<String> = count
        .iter()
        .map(|(k, n)| format!("{} {n}", char::from(*k)))
        .collect();
    Ok(format!(
        "store keys: {total} ({:.2} per entry): {}",
        total as f64 / entries.max(1) as f64,
        kinds.join(" · ")
    ))
}

/// A node with an empty store, measured once per run: the floor the
/// filled node's start time and memory are compared with.
#[derive(Debug, Clone, Copy)]
pub struct EmptyNode {
    pub ready_s: f64,
    pub serving_s: f64,
    pub idle: sys::Memory,
}

fn filled(ctx: &mut Ctx) -> Result<&mut Filled> {
    ctx.filled.as_mut().context("the filled feed is not there")
}

/// Starts `node` and times it: (process start → ready file, process start
/// → health SERVING over mTLS), seconds.
async fn timed_start(node: &mut Node) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let ready = node.spawn()?;
    let (mut ready_at, mut serving_at) = (None, None);
    while t0.elapsed() < Duration::from_secs(120) {
        if let Some(status) = node.exit_status() {
            bail!("node exited with {status} while starting:\n{}", node.log());
        }
        if ready_at.is_none() && ready.exists() {
            ready_at = Some(t0.elapsed().as_secs_f64());
        }
        if serving_at.is_none() && load::serving(node).await {
            serving_at = Some(t0.elapsed().as_secs_f64());
        }
        if let (Some(r), Some(s)) = (ready_at, serving_at) {
            return Ok((r, s));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("node did not serve within 120 s:\n{}", node.log())
}

async fn empty_node(ctx: &mut Ctx) -> Result<EmptyNode> {
    if let Some(e) = ctx.empty {
        return Ok(e);
    }
    let mut node = Node::init("04", "Cao Bằng")?;
    node.set_checkpoint_interval_ms(ctx.checkpoint_ms)?;
    let (ready_s, serving_s) = timed_start(&mut node).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sys::memory(node.pid().context("pid")?).context("memory")?;
    node.stop()?;
    let e = EmptyNode {
        ready_s,
        serving_s,
        idle,
    };
    ctx.empty = Some(e);
    Ok(e)
}

/// Rate of the first and of the last tenth of the acknowledgements: does
/// ingest slow down as the store grows?
fn tenths(run: &load::Run) -> Option<(f64, f64)> {
    let mut t: Vec<Instant> = run.acks.iter().map(|a| a.acked).collect();
    t.sort_unstable();
    let k = t.len() / 10;
    if k < 2 {
        return None;
    }
    let rate =
        |s: &[Instant]| (s.len() - 1) as f64 / (s[s.len() - 1] - s[0]).as_secs_f64().max(1e-9);
    Some((rate(&t[..k]), rate(&t[t.len() - k..])))
}

pub async fn fill(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let n = ctx.entries;
    let mut fed = federation(&[("20", "Lạng Sơn"), ("24", "Bắc Ninh")], 2, AGREEMENT_ALL)?;
    for node in &fed.nodes {
        node.set_checkpoint_interval_ms(ctx.checkpoint_ms)?;
        node.set_manifest_poll_ms(10_000)?;
    }
    fed.nodes[0].start()?;
    let pid = fed.nodes[0].pid().context("pid")?;
    let clients = ctx.fill_clients;
    let chans = load::channels(&fed.nodes[0], clients).await?;
    // Slower than 500/s on average means something is wrong, not slow.
    let limit = Duration::from_secs(60 + n / 500);
    let usage = sys::Window::open(&[("node 20".into(), pid)]);
    let start = Instant::now();
    let run = ClosedLoop {
        chans: &chans,
        clients,
        warmup: Duration::ZERO,
        window: limit,
        max: n,
        tag: "fill",
        progress: (n >= 100_000).then_some("filling"),
    }
    .run()
    .await?;
    let secs = start.elapsed().as_secs_f64();
    let usage = usage.close();
    check_errors(s, &run);
    let got = run.acks.len() as u64;
    if got < n {
        bail!("only {got} of {n} alerts were acknowledged within {limit:?}");
    }
    let last = run.last.clone().context("no acknowledgement")?;
    let rate = got as f64 / secs;
    s.figure(
        Figure::new(
            "alerts_per_s",
            format!("fill rate, alerts/s ({clients} clients)"),
            rate,
            "/s",
        )
        .against(&ctx.base.sled_64),
    );
    if let Some((first, lastr)) = tenths(&run) {
        s.figure(Figure::new(
            "first_tenth_per_s",
            "rate over the first tenth",
            first,
            "/s",
        ));
        s.figure(Figure::new(
            "last_tenth_per_s",
            "rate over the last tenth",
            lastr,
            "/s",
        ));
    }
    let lat = Percentiles::of(run.acks.iter().map(|a| a.acked - a.sent).collect());
    s.figure(Figure::new("ack_p99_ms", "submit → ack p99", lat.p99, "ms"));
    s.note(format!(
        "{got} alerts in {secs:.1} s; latency {}",
        lat.text()
    ));
    s.note(usage.summary());
    if let Some(note) = io_note(&usage, run.acks.len()) {
        s.note(note);
    }
    let store = dir_size(&fed.nodes[0].path().join("store"));
    s.note(format!(
        "store on disk after the fill: {:.0} MiB ({:.0} bytes per entry)",
        store as f64 / MIB,
        store as f64 / n as f64
    ));
    s.detail("usage", usage.to_json());
    s.detail("latency", lat.to_json());
    s.detail("store_bytes", json!(store));
    drop(chans);
    ctx.filled = Some(Filled {
        fed,
        entries: got,
        last,
        restarted: false,
    });
    Ok(())
}

/// `store.cache_mb` as the node's configuration file `config` sets it.
fn cache_mb(config: &Path) -> String {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("cache_mb"))
                .and_then(|v| v.trim().strip_prefix('='))
                .and_then(|v| v.split('#').next())
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "its default".into())
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mem_figure(key: &str, label: String, m: f64, target: f64, empty: &Baseline) -> Figure {
    Figure::new(key, label, m, "MiB")
        .target(Target::AtMost(target))
        .against(empty)
}

pub async fn memory(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let empty = empty_node(ctx).await?;
    let empty_b = Baseline {
        key: "empty_node_idle_mib",
        label: "an empty node, idle (VmRSS)",
        value: empty.idle.rss_mib(),
        unit: "MiB",
    };
    let settle = ctx.secs(5.0, 1.0);
    let window = ctx.secs(10.0, 2.0);
    let f = filled(ctx)?;
    let n = f.entries;
    if !f.restarted {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m = sys::memory(f.author().pid().context("pid")?).context("memory")?;
        s.figure(mem_figure(
            "idle_after_fill_mib",
            format!("idle, right after taking {n} entries (VmRSS)"),
            m.rss_mib(),
            64.0,
            &empty_b,
        ));
        s.detail("idle_after_fill", m.to_json());
        s.note(format!(
            "after the fill: VmRSS {:.0} MiB = {:.0} anonymous + {:.0} file; VmHWM {:.0} MiB",
            m.rss_mib(),
            m.anon_kib as f64 / 1024.0,
            m.file_kib as f64 / 1024.0,
            m.hwm_mib()
        ));
    }
    let author = f.author();
    author.stop()?;
    let census = key_census(&author.path().join("store"), n)?;
    s.note(census);
    author.start()?;
    f.restarted = true;
    tokio::time::sleep(settle).await;
    let pid = f.author().pid().context("pid")?;
    let idle = sys::memory(pid).context("memory")?;
    s.figure(mem_figure(
        "idle_mib",
        format!("idle, restarted, holding {n} entries (VmRSS)"),
        idle.rss_mib(),
        64.0,
        &empty_b,
    ));
    s.detail("idle_restarted", idle.to_json());

    // Under ingest: 64 clients for the window, VmRSS sampled every 100 ms.
    let chans = load::channels(f.author(), CLIENTS).await?;
    let sampler = tokio::spawn(async move {
        let mut peak = sys::Memory::default();
        let until = Instant::now() + window + Duration::from_secs(1);
        while Instant::now() < until {
            if let Some(m) = sys::memory(pid)
                && m.rss_kib > peak.rss_kib
            {
                peak = m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let run = ClosedLoop {
        chans: &chans,
        clients: CLIENTS,
        warmup: Duration::ZERO,
        window,
        max: 50_000_000,
        tag: "memory",
        progress: None,
    }
    .run()
    .await?;
    let peak = sampler.await?;
    let after = sys::memory(pid).context("memory")?;
    check_errors(s, &run);
    s.figure(mem_figure(
        "under_ingest_mib",
        "under ingest, 64 clients, peak VmRSS".into(),
        peak.rss_mib(),
        256.0,
        &empty_b,
    ));
    s.figure(Figure::new(
        "under_ingest_hwm_mib",
        "VmHWM since the restart",
        after.hwm_mib(),
        "MiB",
    ));
    s.figure(Figure::new(
        "under_ingest_per_s",
        "alerts/s meanwhile",
        run.throughput(),
        "/s",
    ));
    s.note(format!(
        "idle after restart: VmRSS {:.0} MiB = {:.0} anonymous + {:.0} file; under ingest peak {:.0} anonymous + {:.0} file",
        idle.rss_mib(),
        idle.anon_kib as f64 / 1024.0,
        idle.file_kib as f64 / 1024.0,
        peak.anon_kib as f64 / 1024.0,
        peak.file_kib as f64 / 1024.0
    ));
    s.note(format!(
        "the store is sled (page cache: store.cache_mb = {} as `lienthong init` wrote it); sled also keeps write buffers, page tables and per-segment page sets beyond that cache, and the sets grow with the store until a restart",
        cache_mb(&f.author().config())
    ));
    s.detail("under_ingest_peak", peak.to_json());
    s.detail("after_ingest", after.to_json());
    if let Some(l) = &run.last
        && l.0 > f.last.0
    {
        f.last = l.clone();
    }
    f.entries += run.acks.len() as u64;
    Ok(())
}

/// How long the OS takes to run the binary at all: `lienthong --version`.
fn exec_floor() -> Result<f64> {
    let mut t = Vec::new();
    for _ in 0..5 {
        let s = Instant::now();
        let out = lienthong(&["--version"])?;
        anyhow::ensure!(out.status.success(), "lienthong --version failed");
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

pub async fn coldstart(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let empty = empty_node(ctx).await?;
    let exec = exec_floor()?;
    let runs = if ctx.quick { 2 } else { 3 };
    let f = filled(ctx)?;
    let n = f.entries;
    let mut clean = Vec::new();
    for _ in 0..runs {
        let node = f.author();
        node.stop()?;
        clean.push(timed_start(node).await?);
    }
    f.restarted = true;
    let node = f.author();
    node.kill9();
    let killed = timed_start(node).await?;
    let worst = clean.iter().map(|c| c.1).fold(0.0, f64::max);
    let empty_b = Baseline {
        key: "empty_node_serving_s",
        label: "an empty node, start → SERVING",
        value: empty.serving_s,
        unit: "s",
    };
    let exec_b = Baseline {
        key: "exec_s",
        label: "`lienthong --version`, start to exit",
        value: exec,
        unit: "s",
    };
    s.figure(
        Figure::new(
            "serving_s",
            format!("start → SERVING, {n} entries, worst of {runs}"),
            worst,
            "s",
        )
        .target(Target::AtMost(2.0))
        .against(&empty_b)
        .against(&exec_b),
    );
    s.figure(Figure::new(
        "ready_s",
        "start → ready file, worst",
        clean.iter().map(|c| c.0).fold(0.0, f64::max),
        "s",
    ));
    s.figure(
        Figure::new(
            "after_kill9_s",
            "start → SERVING after SIGKILL",
            killed.1,
            "s",
        )
        .target(Target::AtMost(2.0)),
    );
    s.note(format!(
        "clean restarts (ready file, SERVING) in s: {}; after SIGKILL: ({:.3}, {:.3})",
        clean
            .iter()
            .map(|c| format!("({:.3}, {:.3})", c.0, c.1))
            .collect::<Vec<_>>()
            .join(" "),
        killed.0,
        killed.1
    ));
    s.detail(
        "runs",
        json!({
            "clean": clean.iter().map(|c| json!({"ready_s": c.0, "serving_s": c.1})).collect::<Vec<_>>(),
            "after_sigkill": {"ready_s": killed.0, "serving_s": killed.1},
            "empty_node": {"ready_s": empty.ready_s, "serving_s": empty.serving_s},
            "exec_s": exec,
        }),
    );
    Ok(())
}

/// Runs `lienthong ARGS`, polling its peak memory; (exit status, stderr,
/// seconds, VmHWM MiB).
async fn run_measured(
    args: &[String],
    limit: Duration,
) -> Result<(std::process::ExitStatus, String, f64, f64)> {
    let start = Instant::now();
    let mut child = std::process::Command::new(lienthong_tests::binary())
        .args(args)
        .env_remove("LIENTHONG_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut hwm = 0.0f64;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(m) = sys::memory(child.id()) {
            hwm = hwm.max(m.hwm_mib());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "lienthong {} did not finish within {limit:?}",
                args.join(" ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = start.elapsed().as_secs_f64();
    let err = reader.join().unwrap_or_default();
    Ok((status, err, secs, hwm))
}

fn lists_subcommand(help: &str, name: &str) -> bool {
    help.lines()
        .any(|l| l.split_whitespace().next() == Some(name) && l.starts_with("  "))
}

/// Reports a command-line mismatch as "not available", not as broken: the
/// audit commands are young (issue 6) and their flags may still change.
fn usage_error(status: std::process::ExitStatus) -> bool {
    status.code() == Some(2)
}

pub async fn audit(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let help = lienthong(&["audit", "--help"])?;
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    if !help.status.success() || !lists_subcommand(&text, "verify") {
        s.outcome = Outcome::NotAvailable(
            "this lienthong has no `audit verify` (issue 6); nothing measured".into(),
        );
        return Ok(());
    }
    let limit = Duration::from_secs(120 + ctx.entries / 1000);
    let base = ctx.base.clone();
    let f = filled(ctx)?;
    let n = f.entries;
    let node = f.author();
    let bundle = node.dir.path().join("bundle");
    let export_help = lienthong(&["audit", "export", "--help"])?;
    let export_help = String::from_utf8_lossy(&export_help.stdout).into_owned();
    let mut args: Vec<String> = vec![
        "audit".into(),
        "export".into(),
        "--config".into(),
        node.config_arg(),
    ];
    if export_help.contains("--member") {
        args.extend(["--member".into(), node.member.clone()]);
    }
    let out_flag = ["--out", "--output", "--bundle", "--file"]
        .into_iter()
        .find(|f| export_help.contains(f));
    if let Some(flag) = out_flag {
        args.push(flag.into());
    }
    args.push(bundle.display().to_string());
    let (mut status, mut err, mut export_s, _) = run_measured(&args, limit).await?;
    if !status.success() && !usage_error(status) {
        // Perhaps export reads the store itself, which a running node locks.
        node.stop()?;
        (status, err, export_s, _) = run_measured(&args, limit).await?;
        node.start()?;
    }
    if usage_error(status) {
        s.outcome = Outcome::NotAvailable(format!(
            "`lienthong {}` was refused; the bench needs updating to the new flags: {}",
            args.join(" "),
            err.lines().next().unwrap_or("")
        ));
        return Ok(());
    }
    if !status.success() {
        bail!("audit export failed ({status}): {err}");
    }
    let verify_help = lienthong(&["audit", "verify", "--help"])?;
    let verify_help = String::from_utf8_lossy(&verify_help.stdout).into_owned();
    let mut vargs: Vec<String> = vec!["audit".into(), "verify".into()];
    if verify_help.contains("--vkey") {
        vargs.extend(["--vkey".into(), node.vkey()?]);
    }
    vargs.push(bundle.display().to_string());
    let (status, err, verify_s, hwm) = run_measured(&vargs, limit).await?;
    if usage_error(status) {
        s.outcome = Outcome::NotAvailable(format!(
            "`lienthong {}` was refused; the bench needs updating to the new flags: {}",
            vargs.join(" "),
            err.lines().next().unwrap_or("")
        ));
        return Ok(());
    }
    if !status.success() {
        bail!("audit verify of an untouched bundle failed ({status}): {err}");
    }
    let sig_floor = Baseline {
        key: "verify_n_s",
        label: "raw Ed25519 verify of as many signatures, one core",
        value: n as f64 / base.verify.value.max(1e-9),
        unit: "s",
    };
    s.figure(
        Figure::new(
            "verify_per_s",
            "audit verify, entries/s",
            n as f64 / verify_s,
            "/s",
        )
        .target(Target::AtLeast(1_000_000.0 / 12.0))
        .against(&base.verify)
        .against(&base.verify_batch)
        .against(&base.verify_batch_one_key),
    );
    s.figure(
        Figure::new(
            "verify_s",
            format!("audit verify of {n} entries"),
            verify_s,
            "s",
        )
        .against(&sig_floor),
    );
    s.figure(Figure::new("export_s", "audit export", export_s, "s"));
    s.figure(Figure::new(
        "verify_hwm_mib",
        "verifier peak memory (VmHWM)",
        hwm,
        "MiB",
    ));
    s.note(format!(
        "bundle {:.0} MiB",
        dir_or_file_size(&bundle) as f64 / MIB
    ));
    Ok(())
}

fn dir_or_file_size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => dir_size(p),
        Err(_) => 0,
    }
}

pub async fn catchup(ctx: &mut Ctx, s: &mut Scenario) -> Result<()> {
    let base = ctx.base.clone();
    let f = filled(ctx)?;
    let n = f.entries;
    let (_, last_id) = f.last.clone();
    if f.author().pid().is_none() {
        f.author().start()?;
    }
    let author_pid = f.author().pid().context("pid")?;
    let peer = &mut f.fed.nodes[1];
    let t0 = Instant::now();
    let ready = peer.spawn()?;
    while !ready.exists() {
        if let Some(st) = peer.exit_status() {
            bail!("peer exited with {st}:\n{}", peer.log());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "peer did not start in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let serving = t0.elapsed();
    let peer_pid = peer.pid().context("pid")?;
    let usage = sys::Window::open(&[
        ("node 20 (author)".into(), author_pid),
        ("node 24 (peer)".into(), peer_pid),
    ]);
    let mut alerts = pb::alerts_client::AlertsClient::new(peer.channel().await?);
    let mut audit = pb::audit_client::AuditClient::new(peer.channel().await?);
    let limit = Duration::from_secs(120 + n / 200);
    let mut next_progress = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        if let Some(st) = peer.exit_status() {
            bail!("peer exited with {st} while catching up:\n{}", peer.log());
        }
        let mut req = tonic::Request::new(pb::GetEntryRequest {
            key: Some(pb::get_entry_request::Key::EntryId(last_id.clone())),
        });
        req.set_timeout(load::REQUEST_TIMEOUT);
        match alerts.get(req).await {
            Ok(e) => break e.into_inner(),
            Err(st) if st.code() == tonic::Code::NotFound => {}
            Err(st) => bail!("Alerts.Get at the peer: {st}"),
        }
        if t0.elapsed() > limit {
            bail!("the peer had not stored the newest entry after {limit:?}");
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(10);
            // The next index the peer will ask the author for.
            if let Ok(st) = audit.get_status(pb::GetStatusRequest {}).await {
                let cursor = st
                    .into_inner()
                    .peers
                    .iter()
                    .find(|p| p.member == "20")
                    .map_or(0, |p| p.replication_cursor);
                eprintln!(
                    "  catching up: {cursor}/{n} received ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done = t0.elapsed();
    let usage = usage.close();
    if stored.verification != pb::Verification::Verified as i32 {
        s.fail(format!(
            "the peer stored the entry with verification {}",
            stored.verification
        ));
    }
    let peer_mem = sys::memory(peer_pid).context("memory")?;
    let pulling = (done - serving).as_secs_f64();
    let rate = n as f64 / pulling.max(1e-9);
    s.figure(
        Figure::new(
            "entries_per_s",
            "entries pulled, verified and stored /s",
            rate,
            "/s",
        )
        .target(Target::AtLeast(1_000_000.0 / 60.0))
        .against(&base.verify)
        .against(&base.verify_batch)
        .against(&base.verify_batch_one_key)
        .against(&base.sled_1024),
    );
    s.figure(Figure::new(
        "seconds",
        format!("{n} entries, peer process start → newest entry stored"),
        done.as_secs_f64(),
        "s",
    ));
    s.figure(Figure::new(
        "peer_hwm_mib",
        "peer peak memory (VmHWM)",
        peer_mem.hwm_mib(),
        "MiB",
    ));
    s.note(format!(
        "the peer started serving after {:.2} s and then took {pulling:.1} s; besides storing each entry it acknowledges the entries of each group commit with one signed receipt in its own feed, which the author pulls and verifies at the same time",
        serving.as_secs_f64()
    ));
    s.note(usage.summary());
    s.detail("usage", usage.to_json());
    s.detail("peer_memory", peer_mem.to_json());
    s.detail("entries", json!(n));
    Ok(())
}
