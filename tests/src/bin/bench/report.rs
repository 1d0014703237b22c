//! Figures, targets and baselines; the table and the JSON document.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// Which way a figure should go.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Self::AtLeast(t) => v >= t,
            Self::AtMost(t) => v <= t,
        }
    }
    fn to_json(self) -> Value {
        match self {
            Self::AtLeast(t) => json!({"at_least": t}),
            Self::AtMost(t) => json!({"at_most": t}),
        }
    }
}

/// A baseline measured in this run, which a figure is compared with.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub key: &'static str,
    pub label: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// One measured number.
#[derive(Debug, Clone)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    /// Baselines to show next to it, with `value / baseline`.
    pub baselines: Vec<Baseline>,
}

impl Figure {
    pub fn new(key: &str, label: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            key: key.to_owned(),
            label: label.into(),
            value,
            unit,
            target: None,
            baselines: Vec::new(),
        }
    }
    pub fn target(mut self, t: Target) -> Self {
        self.target = Some(t);
        self
    }
    pub fn against(mut self, b: &Baseline) -> Self {
        self.baselines.push(b.clone());
        self
    }
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.value))
    }
}

/// How a scenario ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Ran to the end; its figures are valid.
    Ran,
    /// Could not run here, which is not a fault (e.g. a command that does
    /// not exist yet).
    NotAvailable(String),
    /// Something is broken: an error, lost entries, a node that died.
    Failed(String),
}

/// What one scenario produced.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub title: String,
    pub outcome: Outcome,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
    pub details: serde_json::Map<String, Value>,
    pub elapsed: Duration,
}

impl Scenario {
    pub fn new(name: &'static str, title: impl Into<String>) -> Self {
        Self {
            name,
            title: title.into(),
            outcome: Outcome::Ran,
            figures: Vec::new(),
            notes: Vec::new(),
            details: serde_json::Map::new(),
            elapsed: Duration::ZERO,
        }
    }
    pub fn figure(&mut self, f: Figure) {
        self.figures.push(f);
    }
    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
    pub fn detail(&mut self, key: &str, v: Value) {
        self.details.insert(key.to_owned(), v);
    }
    /// Marks the scenario broken (keeps the first reason).
    pub fn fail(&mut self, why: impl Into<String>) {
        if !matches!(self.outcome, Outcome::Failed(_)) {
            self.outcome = Outcome::Failed(why.into());
        }
    }
}

/// 12345.6 → "12,346"; small numbers keep decimals.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.abs() >= 100.0 {
        let r = v.round() as i64;
        let digits = r.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if r < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

fn target_text(t: Target, unit: &str) -> String {
    match t {
        Target::AtLeast(v) => format!("≥ {}", with_unit(v, unit)),
        Target::AtMost(v) => format!("≤ {}", with_unit(v, unit)),
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        s.to_owned()
    } else {
        format!("{s}{}", " ".repeat(width - n))
    }
}

/// The readable table: one block per scenario, each figure with its target,
/// whether it is met, and the baselines measured in the same run.
pub fn table(scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    for s in scenarios {
        let state = match &s.outcome {
            Outcome::Ran => String::new(),
            Outcome::NotAvailable(why) => format!("  [not available: {why}]"),
            Outcome::Failed(why) => format!("  [FAILED: {why}]"),
        };
        let _ = writeln!(
            out,
            "\n== {} — {} ({:.1} s){state}",
            s.name,
            s.title,
            s.elapsed.as_secs_f64()
        );
        for f in &s.figures {
            let value = with_unit(f.value, f.unit);
            let (target, verdict) = match (f.target, f.met()) {
                (Some(t), Some(true)) => (target_text(t, f.unit), "met"),
                (Some(t), Some(false)) => (target_text(t, f.unit), "MISSED"),
                _ => (String::new(), ""),
            };
            let _ = writeln!(
                out,
                "  {} {:>16}   {} {verdict}",
                pad(&f.label, 46),
                value,
                pad(&target, 16)
            );
            for b in &f.baselines {
                let ratio = if b.value > 0.0 {
                    format!(" (figure = {:.2}× it)", f.value / b.value)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "      baseline: {} {}{ratio}",
                    b.label,
                    with_unit(b.value, b.unit)
                );
            }
        }
        for n in &s.notes {
            let _ = writeln!(out, "  · {n}");
        }
    }
    out
}

pub fn scenario_json(s: &Scenario) -> Value {
    let (outcome, reason) = match &s.outcome {
        Outcome::Ran => ("ran", None),
        Outcome::NotAvailable(w) => ("not_available", Some(w.clone())),
        Outcome::Failed(w) => ("failed", Some(w.clone())),
    };
    json!({
        "name": s.name,
        "title": s.title,
        "outcome": outcome,
        "reason": reason,
        "elapsed_s": s.elapsed.as_secs_f64(),
        "figures": s.figures.iter().map(|f| json!({
            "key": f.key,
            "label": f.label,
            "value": f.value,
            "unit": f.unit,
            "target": f.target.map(Target::to_json),
            "met": f.met(),
            "baselines": f.baselines.iter().map(|b| json!({
                "key": b.key,
                "value": b.value,
                "unit": b.unit,
                "ratio": if b.value > 0.0 { Some(f.value / b.value) } else { None },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "notes": s.notes,
        "details": s.details,
    })
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        let at = |p: f64| {
            if v.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least p of the
            // sample at or below it.
            let rank = ((v.len() as f64) * p).ceil().max(1.0) as usize;
            v[rank.min(v.len()) - 1].as_secs_f64() * 1e3
        };
        Self {
            n: v.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "n {} · p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            self.n, self.p50, self.p90, self.p99, self.max
        )
    }

    pub fn to_json(self) -> Value {
        json!({"n": self.n, "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99, "max_ms": self.max})
    }
}
