//! What `/proc` says about the machine and about node processes: memory,
//! CPU time and disk writes. Linux only, like the nodes' durability path.

use std::time::Instant;

use serde_json::{Value, json};

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `/proc/loadavg`, as written (1, 5 and 15 minute averages, runnable/total
/// tasks, last pid).
pub fn loadavg() -> String {
    read("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// What the machine is: CPU model and count, memory, kernel.
pub fn machine() -> Value {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = read("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpu_model": model,
        "cpus": cpus,
        "memory_mib": mem_kib / 1024,
        "kernel": kernel,
    })
}

/// Resident memory of a process, KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the highest VmRSS since the process started.
    pub hwm_kib: u64,
    /// RssAnon: heap and other anonymous pages (sled's page cache lives here).
    pub anon_kib: u64,
    /// RssFile: mapped files (the binary, libraries).
    pub file_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
    pub fn to_json(self) -> Value {
        json!({
            "vm_rss_kib": self.rss_kib,
            "vm_hwm_kib": self.hwm_kib,
            "rss_anon_kib": self.anon_kib,
            "rss_file_kib": self.file_kib,
        })
    }
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
    })
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds a process has used so far.
fn cpu_seconds(pid: &str, tick: f64) -> Option<f64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / tick)
}

/// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = read("/proc/stat")?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Bytes a process caused to be written to storage, and its write calls.
fn io(pid: &str) -> Option<(u64, u64)> {
    let text = read(&format!("/proc/{pid}/io"))?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("write_bytes:")?, field("syscw:")?))
}

/// One watched process: label, pid, CPU seconds and (read, written) bytes
/// at the window's start.
type Watched = (String, u32, f64, Option<(u64, u64)>);

/// CPU time and disk writes of some processes (and of the whole machine)
/// over a window: who used the two cores while a scenario ran.
pub struct Window {
    start: Instant,
    tick: f64,
    procs: Vec<Watched>,
    me: f64,
    machine: Option<(u64, u64)>,
}

impl Window {
    /// Starts a window over `procs` (label, pid) and this process.
    pub fn open(procs: &[(String, u32)]) -> Self {
        let tick = clock_ticks();
        Self {
            start: Instant::now(),
            tick,
            procs: procs
                .iter()
                .map(|(l, p)| {
                    let id = p.to_string();
                    (
                        l.clone(),
                        *p,
                        cpu_seconds(&id, tick).unwrap_or(0.0),
                        io(&id),
                    )
                })
                .collect(),
            me: cpu_seconds("self", tick).unwrap_or(0.0),
            machine: machine_jiffies(),
        }
    }

    /// Ends the window (the processes must still run).
    pub fn close(&self) -> Usage {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let mut nodes = Vec::new();
        for (label, pid, cpu0, io0) in &self.procs {
            let id = pid.to_string();
            let cpu = cpu_seconds(&id, self.tick).map_or(0.0, |c| c - cpu0);
            let written = match (io0, io(&id)) {
                (Some((b0, c0)), Some((b1, c1))) => Some((b1 - b0, c1 - c0)),
                _ => None,
            };
            nodes.push(ProcUsage {
                label: label.clone(),
                cpu_s: cpu,
                write_bytes: written.map(|w| w.0),
                write_calls: written.map(|w| w.1),
            });
        }
        let bench_cpu_s = cpu_seconds("self", self.tick).map_or(0.0, |c| c - self.me);
        let machine_busy = match (self.machine, machine_jiffies()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        Usage {
            wall_s: wall,
            procs: nodes,
            bench_cpu_s,
            machine_busy,
        }
    }
}

pub struct ProcUsage {
    pub label: String,
    pub cpu_s: f64,
    pub write_bytes: Option<u64>,
    pub write_calls: Option<u64>,
}

/// What [`Window::close`] found.
pub struct Usage {
    pub wall_s: f64,
    pub procs: Vec<ProcUsage>,
    pub bench_cpu_s: f64,
    /// Fraction of all CPUs busy (anyone's work, including other builds).
    pub machine_busy: Option<f64>,
}

impl Usage {
    /// CPU seconds of the node processes per wall second (2.0 = both cores).
    pub fn nodes_cores(&self) -> f64 {
        self.procs.iter().map(|p| p.cpu_s).sum::<f64>() / self.wall_s
    }

    pub fn bench_cores(&self) -> f64 {
        self.bench_cpu_s / self.wall_s
    }

    /// Cores busy with anything else on the machine (other engineers'
    /// builds, the kernel's own threads).
    pub fn others_cores(&self) -> Option<f64> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.machine_busy
            .map(|b| (b * cpus - self.nodes_cores() - self.bench_cores()).max(0.0))
    }

    /// One line for the table.
    pub fn summary(&self) -> String {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut s = format!(
            "CPU over {:.1} s: nodes {:.2} cores, bench client {:.2}",
            self.wall_s,
            self.nodes_cores(),
            self.bench_cores()
        );
        if let (Some(b), Some(o)) = (self.machine_busy, self.others_cores()) {
            s.push_str(&format!(
                ", everything else {o:.2}; machine {:.0}% busy of {cpus} cores",
                b * 100.0
            ));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "wall_s": self.wall_s,
            "nodes_cores": self.nodes_cores(),
            "bench_cores": self.bench_cores(),
            "others_cores": self.others_cores(),
            "machine_busy_fraction": self.machine_busy,
            "processes": self.procs.iter().map(|p| json!({
                "label": p.label,
                "cpu_s": p.cpu_s,
                "write_bytes": p.write_bytes,
                "write_calls": p.write_calls,
            })).collect::<Vec<_>>(),
        })
    }
}
