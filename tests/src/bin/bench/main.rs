//! `bench`: Liên Thông's benchmarks (issue 7). Each scenario runs against
//! real `lienthong` processes on loopback, and each figure is printed next
//! to baselines measured in the same run on the same machine (raw signing
//! and verification, raw sled batch + fsync, raw loopback mTLS round
//! trips), so results from noisy or different machines can be compared.
//!
//! ```sh
//! cargo build --release -p lienthong
//! cargo run --release -p lienthong-tests --bin bench                        # everything, 1M entries
//! cargo run --release -p lienthong-tests --bin bench -- --quick             # smoke run, under a minute
//! cargo run --release -p lienthong-tests --bin bench -- --scenario ingest --json ingest.json
//! ```
//!
//! Scenarios, in the order they run: `ingest`, `checkpoint`, `replication`,
//! then on one node filled with `--entries` alerts: `memory`, `coldstart`,
//! `audit`, `catchup`. Missing a target is reported, never an error: the
//! exit status is non-zero only when something is broken (an error, an
//! entry lost, a node that died), or with `--fail-on-miss`.
//! See docs/benchmarks.md for what each figure means and the latest results.

mod baseline;
mod filled;
mod load;
mod replication;
mod report;
mod single;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use serde_json::json;

use crate::baseline::Baselines;
use crate::report::{Outcome, Scenario};

/// Every scenario, in the order they run.
const SCENARIOS: &[(&str, &str)] = &[
    (
        "ingest",
        "durable signed ingest, 64 concurrent mTLS clients",
    ),
    (
        "checkpoint",
        "ack → included in a signed checkpoint, 1,000 alerts/s",
    ),
    (
        "replication",
        "author ack → stored at 10 peers, 11 nodes (1,000 alerts/s; see --replication-rate, --replication-peers)",
    ),
    (
        "memory",
        "resident memory of a node holding the filled feed",
    ),
    ("coldstart", "process start → serving, with the filled feed"),
    ("audit", "audit export + verify of the filled feed"),
    ("catchup", "a fresh peer pulls and verifies the filled feed"),
];

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Benchmarks of Liên Thông nodes against this machine's own limits (issue 7)",
    after_help = "Scenarios: ingest, checkpoint, replication, memory, coldstart, audit, catchup.\n\nExamples:\n  cargo build --release -p lienthong\n  cargo run --release -p lienthong-tests --bin bench -- --quick\n  cargo run --release -p lienthong-tests --bin bench -- --scenario replication --scenario catchup --entries 200000\n\nThe exit status is non-zero only if something is broken (or --fail-on-miss and a target is missed)."
)]
struct Args {
    /// Run only this scenario (repeatable); default: all of them.
    #[arg(long = "scenario", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(["ingest", "checkpoint", "replication", "memory", "coldstart", "audit", "catchup"]))]
    scenarios: Vec<String>,
    /// Small and short: every scenario in well under a minute (CI's smoke run).
    #[arg(long)]
    quick: bool,
    /// Where to write the results as JSON [default: target/bench.json].
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Entries in the filled feed used by memory, coldstart, audit and
    /// catchup [default: 1000000, or 10000 with --quick].
    #[arg(long, value_name = "N")]
    entries: Option<u64>,
    /// The nodes' `[checkpoint] interval_ms` (10–1000).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    checkpoint_ms: u64,
    /// Alerts per second offered to the replication scenario's author
    /// (10–5000). The target is for 1000; other rates show where the
    /// latency goes when the machine is not saturated.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    replication_rate: u32,
    /// Peers of the replication scenario's author (1–10). The target is
    /// for 10; fewer show the latency with more of the machine per node
    /// (deployed, each node has a machine of its own).
    #[arg(long, value_name = "N", default_value_t = replication::TARGET_PEERS)]
    replication_peers: usize,
    /// Concurrent clients filling the feed (1–256). With 1, every alert is
    /// a group commit of its own, as on a node taking alerts one at a time.
    #[arg(long, value_name = "N", default_value_t = 64)]
    fill_clients: usize,
    /// Exit non-zero when a target is missed, too (for a quiet, dedicated machine).
    #[arg(long)]
    fail_on_miss: bool,
}

/// What every scenario can use.
pub struct Ctx {
    pub quick: bool,
    pub checkpoint_ms: u64,
    /// Alerts per second offered in the replication scenario.
    pub replication_rate: u32,
    /// The replication scenario's peers (besides its author).
    pub replication_peers: usize,
    pub entries: u64,
    /// Concurrent clients of the fill.
    pub fill_clients: usize,
    pub base: Baselines,
    /// The federation holding the filled feed, once built.
    pub filled: Option<filled::Filled>,
    /// Measurements of an empty node (start time, idle memory), once taken.
    pub empty: Option<filled::EmptyNode>,
}

impl Ctx {
    /// `full` seconds, or `quick` with --quick.
    pub fn secs(&self, full: f64, quick: f64) -> Duration {
        Duration::from_secs_f64(if self.quick { quick } else { full })
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run_one(ctx: &mut Ctx, name: &'static str, title: &str) -> Vec<Scenario> {
    let mut s = Scenario::new(name, title);
    let mut extra = Vec::new();
    let start = Instant::now();
    eprintln!("== {name}: {title}");
    let r = async {
        if matches!(name, "memory" | "coldstart" | "audit" | "catchup") && ctx.filled.is_none() {
            let mut f = Scenario::new(
                "fill",
                format!(
                    "{} alerts into one node ({} mTLS clients)",
                    ctx.entries, ctx.fill_clients
                ),
            );
            let t = Instant::now();
            let r = filled::fill(ctx, &mut f).await;
            f.elapsed = t.elapsed();
            if let Err(e) = &r {
                f.fail(format!("{e:#}"));
            }
            extra.push(f);
            r?;
        }
        match name {
            "ingest" => single::ingest(ctx, &mut s).await,
            "checkpoint" => single::checkpoint(ctx, &mut s).await,
            "replication" => replication::run(ctx, &mut s).await,
            "memory" => filled::memory(ctx, &mut s).await,
            "coldstart" => filled::coldstart(ctx, &mut s).await,
            "audit" => filled::audit(ctx, &mut s).await,
            "catchup" => filled::catchup(ctx, &mut s).await,
            _ => anyhow::bail!("unknown scenario {name}"),
        }
    }
    .await;
    if let Err(e) = r {
        s.fail(format!("{e:#}"));
    }
    s.elapsed = start.elapsed();
    match &s.outcome {
        Outcome::Failed(why) => eprintln!("   FAILED: {why}"),
        Outcome::NotAvailable(why) => eprintln!("   not available: {why}"),
        Outcome::Ran => eprintln!("   done in {:.1} s", s.elapsed.as_secs_f64()),
    }
    extra.push(s);
    extra
}

async fn real_main(args: Args) -> Result<bool> {
    let started = Instant::now();
    let load_before = sys::loadavg();
    let binary = lienthong_tests::binary();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    eprintln!(
        "bench: lienthong at {}; load before: {load_before}",
        binary.display()
    );
    if cfg!(debug_assertions) || !binary.components().any(|c| c.as_os_str() == "release") {
        eprintln!("bench: WARNING: not a release build: figures are for a smoke run only");
    }
    let entries = args
        .entries
        .unwrap_or(if args.quick { 10_000 } else { 1_000_000 });
    anyhow::ensure!(entries > 0, "--entries must be at least 1");
    anyhow::ensure!(
        (10..=1000).contains(&args.checkpoint_ms),
        "--checkpoint-ms must be 10–1000 (the node's own limits)"
    );
    anyhow::ensure!(
        (10..=5000).contains(&args.replication_rate),
        "--replication-rate must be 10–5000 alerts/s"
    );
    anyhow::ensure!(
        (1..=replication::TARGET_PEERS).contains(&args.replication_peers),
        "--replication-peers must be 1–10"
    );
    anyhow::ensure!(
        (1..=256).contains(&args.fill_clients),
        "--fill-clients must be 1–256"
    );

    eprintln!("== baselines");
    let scratch = lienthong_tests::Node::init("01", "Baseline")?;
    let time = Duration::from_secs_f64(if args.quick { 0.25 } else { 2.0 });
    let base = baseline::measure(&scratch.path(), time).await?;
    drop(scratch);
    let mut ctx = Ctx {
        quick: args.quick,
        checkpoint_ms: args.checkpoint_ms,
        replication_rate: args.replication_rate,
        replication_peers: args.replication_peers,
        entries,
        fill_clients: args.fill_clients,
        base,
        filled: None,
        empty: None,
    };

    let mut results = Vec::new();
    for (name, title) in SCENARIOS {
        if args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name) {
            let title =
                if *name == "replication" && ctx.replication_peers != replication::TARGET_PEERS {
                    format!(
                        "author ack → stored at {} peer(s), {} nodes (--replication-peers)",
                        ctx.replication_peers,
                        ctx.replication_peers + 1
                    )
                } else {
                    title.to_string()
                };
            results.extend(run_one(&mut ctx, name, &title).await);
        }
    }
    if let Some(f) = ctx.filled.take() {
        f.shut_down();
    }
    let load_after = sys::loadavg();

    let mut head = format!(
        "Liên Thông bench — {}{} · checkpoint interval {} ms · filled feed {} entries\n",
        if args.quick { "quick run" } else { "full run" },
        if cfg!(debug_assertions) {
            " (DEBUG BUILD)"
        } else {
            ""
        },
        ctx.checkpoint_ms,
        ctx.entries
    );
    let m = sys::machine();
    head.push_str(&format!(
        "machine: {} × {} · {} MiB · Linux {}\nload before: {load_before}\nload after:  {load_after}\n",
        m["cpus"], m["cpu_model"].as_str().unwrap_or("?"), m["memory_mib"], m["kernel"].as_str().unwrap_or("?")
    ));
    head.push_str(&format!(
        "\n== baselines, this run, this machine (entry envelope {} bytes)\n",
        ctx.base.envelope_bytes
    ));
    for b in ctx.base.all() {
        head.push_str(&format!(
            "  {:<48} {:>16}\n",
            b.label,
            format!("{} {}", report::num(b.value), b.unit)
        ));
    }
    let table = report::table(&results);
    println!("{head}{table}");

    let failed: Vec<&str> = results
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
        .map(|s| s.name)
        .collect();
    let missed: Vec<String> = results
        .iter()
        .flat_map(|s| {
            s.figures
                .iter()
                .filter(|f| f.met() == Some(false))
                .map(move |f| format!("{}.{}", s.name, f.key))
        })
        .collect();
    let doc = json!({
        "schema": "lienthong-bench/1",
        "started_unix": unix_now,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "quick": args.quick,
        "release_build": !cfg!(debug_assertions),
        "lienthong_binary": binary.display().to_string(),
        "git_commit": git(&["rev-parse", "HEAD"]),
        "git_dirty": git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        "machine": m,
        "load_before": load_before,
        "load_after": load_after,
        "config": {
            "checkpoint_interval_ms": ctx.checkpoint_ms,
            "filled_entries": ctx.entries,
        },
        "baselines": ctx.base.to_json(),
        "scenarios": results.iter().map(report::scenario_json).collect::<Vec<_>>(),
        "failed": failed,
        "missed_targets": missed,
    });
    let path = args.json.clone().unwrap_or_else(|| {
        binary
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(|| PathBuf::from("bench.json"), |t| t.join("bench.json"))
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!(
        "\n{} scenario(s) in {:.0} s; results in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    if !missed.is_empty() {
        println!("targets missed: {}", missed.join(", "));
    }
    if !failed.is_empty() {
        println!("BROKEN: {}", failed.join(", "));
    }
    Ok(failed.is_empty() && (!args.fail_on_miss || missed.is_empty()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
