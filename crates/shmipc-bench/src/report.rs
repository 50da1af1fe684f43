//! What the harness collected, and the table, JSON and SVG made from it.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::cli::{Args, Plan};
use crate::stats::{median, p99};
use crate::{latency, segment_ops, throughput, Result};

/// A suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Round-trip latency.
    Latency,
    /// Messages or bytes per second.
    Throughput,
    /// Segment create/open costs.
    Segment,
}

impl Suite {
    fn floor_of(self, name: &str) -> &'static str {
        match self {
            Suite::Latency => latency::CONTENDERS[0].name,
            Suite::Throughput => throughput::CONTENDERS[0].name,
            Suite::Segment => segment_ops::floor_of(name),
        }
    }
}

/// One floor probe: an 8-byte floor round trip before a suite's block in a round.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Round, from 0.
    pub round: usize,
    /// The suite it preceded.
    pub suite: Suite,
    /// Median per-batch mean round trip, ns.
    pub floor_ns: f64,
    /// `near` or `far`.
    pub placement: &'static str,
}

/// One contender at one payload: its raw per-batch values, per round.
#[derive(Debug)]
pub struct Series {
    /// Suite.
    pub suite: Suite,
    /// Contender.
    pub name: &'static str,
    /// Payload (segment: segment size), bytes.
    pub payload: usize,
    /// What a value is divided by to get one operation's time: messages per batch
    /// (throughput); 1 elsewhere (the values are already per operation).
    pub per_batch: u64,
    /// Round trips, messages or operations in one timed batch.
    pub batch_size: u64,
    /// Latency and segment: ns per operation, one value per batch. Throughput: ns per
    /// batch of `per_batch` messages. Indexed by round.
    pub rounds: Vec<Vec<f64>>,
    /// Involuntary context switches of both processes during the cell, per round:
    /// how often something else took one of the two CPUs.
    pub preempted: Vec<u64>,
}

impl Series {
    /// Records the involuntary context switches seen during round `round`'s cell.
    pub fn preempted_in(&mut self, round: usize, n: u64) {
        if let Some(p) = self.preempted.get_mut(round) {
            *p = n;
        }
    }

    /// The figure's metric of each batch of round `r`: ns (latency, segment) or
    /// per second (throughput: messages/s at 64 B, bytes/s otherwise).
    fn metric(&self, r: usize) -> Vec<f64> {
        let Some(v) = self.rounds.get(r) else {
            return Vec::new();
        };
        match self.suite {
            Suite::Throughput => {
                let unit = if self.payload == throughput::MSG_PAYLOAD {
                    1.0
                } else {
                    self.payload as f64
                };
                v.iter()
                    .map(|&ns| self.per_batch as f64 * unit * 1e9 / ns)
                    .collect()
            }
            _ => v.clone(),
        }
    }

    /// Per-operation ns of every batch of every round.
    fn per_op_ns(&self) -> Vec<f64> {
        let per = self.per_batch as f64;
        self.rounds.iter().flatten().map(|&ns| ns / per).collect()
    }
}

/// Everything measured in a run.
#[derive(Debug, Default)]
pub struct Collected {
    /// Series in first-measured order.
    pub series: Vec<Series>,
    /// The floor probes.
    pub probes: Vec<Probe>,
}

impl Collected {
    /// Adds the batches of one cell.
    #[allow(clippy::too_many_arguments)] // One cell's coordinates and its batches.
    pub fn push(
        &mut self,
        suite: Suite,
        name: &'static str,
        payload: usize,
        round: usize,
        values: Vec<f64>,
        per_batch: u64,
        batch_size: u64,
    ) -> &mut Series {
        let i = match self
            .series
            .iter()
            .position(|s| s.suite == suite && s.name == name && s.payload == payload)
        {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    suite,
                    name,
                    payload,
                    per_batch,
                    batch_size,
                    rounds: Vec::new(),
                    preempted: Vec::new(),
                });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[i];
        if s.rounds.len() <= round {
            s.rounds.resize_with(round + 1, Vec::new);
            s.preempted.resize(round + 1, 0);
        }
        s.rounds[round] = values;
        s
    }

    fn find(&self, suite: Suite, name: &str, payload: usize) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.suite == suite && s.name == name && s.payload == payload)
    }

    fn placement(&self, suite: Suite, round: usize) -> &'static str {
        self.probes
            .iter()
            .find(|p| p.suite == suite && p.round == round)
            .map_or("unknown", |p| p.placement)
    }
}

/// One figure of the report (one object in the JSON's `results`).
#[derive(Debug, Serialize)]
pub struct Figure {
    /// `latency`, `throughput` or `segment`.
    pub suite: Suite,
    /// Contender (segment: operation).
    pub name: &'static str,
    /// Payload bytes (segment: segment size).
    pub payload: u64,
    /// Latency and segment: median over all batches of the per-batch mean, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ns: Option<f64>,
    /// Throughput: median over all batches; messages/s at 64 B, bytes/s otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_sec: Option<f64>,
    /// Throughput: the unit of `per_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// 99th percentile over all batches of the per-batch mean time of one round trip,
    /// message or operation, ns.
    pub p99_ns: f64,
    /// Median over rounds of (this figure / the floor's figure in the same round).
    pub ratio_to_floor: f64,
    /// The row this one is compared with.
    pub floor: &'static str,
    /// `ratio_to_floor` over the rounds whose probe said near / far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor_near: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[allow(missing_docs)]
    pub ratio_to_floor_far: Option<f64>,
    /// shmipc rows: median over rounds of (this / iceoryx2 in the same round).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_iceoryx2: Option<f64>,
    /// Throughput rows: median over rounds of (this / memcpy in the same round).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_memcpy: Option<f64>,
    /// Rounds measured.
    pub rounds: usize,
    /// Batches per round.
    pub batches_per_round: usize,
    /// Round trips, messages or operations in one timed batch (latency: calibrated
    /// once, in the first round, so that a batch takes at least ~50 µs).
    pub batch_size: u64,
    /// The median of each round (same unit as `median_ns` or `per_sec`).
    pub round_medians: Vec<f64>,
    /// The same-round ratio to the floor, per round.
    pub round_ratios: Vec<f64>,
    /// The floor probe's verdict for each round: `near` or `far`.
    pub round_placement: Vec<&'static str>,
    /// Involuntary context switches of the two processes during this figure's cells,
    /// all rounds: how often another process took one of the CPUs (0 is clean).
    pub preemptions: u64,
    /// Per-operation ns of every batch (for the SVG).
    #[serde(skip)]
    pub samples: Vec<f64>,
}

fn round_medians(s: &Series) -> Vec<f64> {
    (0..s.rounds.len()).map(|r| median(&s.metric(r))).collect()
}

fn same_round_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x / y)
        .filter(|r| r.is_finite())
        .collect()
}

fn some_median(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| median(xs))
}

/// The figures, in measuring order.
pub fn figures(data: &Collected) -> Vec<Figure> {
    let mut out = Vec::new();
    for s in &data.series {
        let floor_name = s.suite.floor_of(s.name);
        let meds = round_medians(s);
        let ratio_to = |other: &str| -> Option<Vec<f64>> {
            data.find(s.suite, other, s.payload)
                .map(|o| same_round_ratios(&meds, &round_medians(o)))
        };
        let round_ratios = ratio_to(floor_name).unwrap_or_default();
        let placement: Vec<&'static str> = (0..s.rounds.len())
            .map(|r| data.placement(s.suite, r))
            .collect();
        let pick = |want: &str| -> Vec<f64> {
            round_ratios
                .iter()
                .zip(&placement)
                .filter(|(_, p)| **p == want)
                .map(|(r, _)| *r)
                .collect()
        };
        let pooled: Vec<f64> = (0..s.rounds.len()).flat_map(|r| s.metric(r)).collect();
        let per_op = s.per_op_ns();
        let is_tp = s.suite == Suite::Throughput;
        out.push(Figure {
            suite: s.suite,
            name: s.name,
            payload: s.payload as u64,
            median_ns: (!is_tp).then(|| median(&pooled)),
            per_sec: is_tp.then(|| median(&pooled)),
            unit: is_tp.then_some(if s.payload == throughput::MSG_PAYLOAD {
                "msgs/s"
            } else {
                "bytes/s"
            }),
            p99_ns: p99(&per_op),
            ratio_to_floor: median(&round_ratios),
            floor: floor_name,
            ratio_to_floor_near: some_median(&pick("near")),
            ratio_to_floor_far: some_median(&pick("far")),
            ratio_to_iceoryx2: if s.name.starts_with("shmipc-") {
                ratio_to("iceoryx2").and_then(|r| some_median(&r))
            } else {
                None
            },
            ratio_to_memcpy: if is_tp && s.name != throughput::MEMCPY {
                ratio_to(throughput::MEMCPY).and_then(|r| some_median(&r))
            } else {
                None
            },
            rounds: s.rounds.iter().filter(|r| !r.is_empty()).count(),
            batches_per_round: s.rounds.first().map_or(0, Vec::len),
            batch_size: s.batch_size,
            round_medians: meds,
            round_ratios,
            round_placement: placement,
            preemptions: s.preempted.iter().sum(),
            samples: per_op,
        });
    }
    out
}

/// The machine and the run's settings (the JSON's `machine`).
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPUs available (before pinning).
    pub cpus: usize,
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Whether the harness ran on CPU 0 and the peer on CPU 1.
    pub pinned: bool,
    /// Whether both ran at nice -20 (`--nice`).
    pub nice: bool,
    /// `quick`, `full` or `tiny`.
    pub mode: &'static str,
    /// Rounds.
    pub rounds: usize,
    /// A probe at or above this says "far".
    pub far_threshold_ns: f64,
    /// The floor probe before each suite in each round.
    pub placement: Vec<Probe>,
    /// Asked-for contenders this build does not have yet.
    pub not_wired: Vec<String>,
    /// The iceoryx2 crate version compared against.
    pub iceoryx2: &'static str,
    /// `/proc/loadavg` (1, 5, 15 min) at the start and at the end of the run: above
    /// ~1 means other processes competed for the two CPUs.
    pub loadavg_start: [f64; 3],
    #[allow(missing_docs)]
    pub loadavg_end: [f64; 3],
    /// Seconds spent setting up the contenders.
    pub setup_s: f64,
    /// Seconds the whole run took.
    pub total_s: f64,
    /// How the figures were made.
    pub method: &'static str,
}

const METHOD: &str = "two processes pinned to CPUs 0 and 1; contenders interleaved round by \
round; batches timed with Instant and divided (clock resolution ~10 ns), median and p99 over \
per-batch means of all rounds; ratios are the median over rounds of same-round ratios; the \
sender writes and the receiver copies out the whole payload";

/// Facts the harness gathered about its run.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts {
    /// CPUs available before pinning.
    pub cpus: usize,
    /// Whether both processes are pinned.
    pub pinned: bool,
    /// Whether both processes run at nice -20 (`--nice`).
    pub niced: bool,
    /// Load average when the run started.
    pub loadavg_start: [f64; 3],
    /// Seconds spent setting up the contenders.
    pub setup_s: f64,
    /// When the run started.
    pub started: Instant,
}

impl Machine {
    /// This machine and run.
    pub fn here(plan: &Plan, args: &Args, run: &RunFacts, not_wired: &[String]) -> Machine {
        let RunFacts {
            cpus,
            pinned,
            niced,
            loadavg_start,
            setup_s,
            started,
        } = *run;
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpus,
            cpu_model,
            kernel,
            pinned,
            nice: niced,
            mode: if args.tiny {
                "tiny"
            } else if args.quick {
                "quick"
            } else {
                "full"
            },
            rounds: plan.rounds,
            far_threshold_ns: crate::run::FAR_NS,
            placement: Vec::new(),
            not_wired: not_wired.to_vec(),
            loadavg_start,
            loadavg_end: loadavg(),
            iceoryx2: "0.10",
            setup_s,
            total_s: started.elapsed().as_secs_f64(),
            method: METHOD,
        }
    }
}

/// `/proc/loadavg`'s three averages (zeros if unreadable).
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (o, w) in out.iter_mut().zip(text.split_whitespace()) {
        *o = w.parse().unwrap_or(0.0);
    }
    out
}

/// An axis label: "100 ns", "2 µs", "50 ms".
fn tick(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", (v * 100.0).round() / 100.0)
}

/// "71 ns", "12.3 µs", "1.23 ms".
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn fmt_rate(x: f64, unit: &str) -> String {
    if unit == "msgs/s" {
        format!("{:.1} M msg/s", x / 1e6)
    } else {
        format!("{:.1} GB/s", x / 1e9)
    }
}

fn fmt_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{r:.2}"),
        _ => "-".into(),
    }
}

fn probes_line(data: &Collected, suite: Suite) -> String {
    let mut s = String::new();
    for p in data.probes.iter().filter(|p| p.suite == suite) {
        let _ = write!(
            s,
            "{}{}: {} {}",
            if s.is_empty() { "" } else { " | " },
            p.round + 1,
            fmt_ns(p.floor_ns),
            p.placement
        );
    }
    s
}

/// The table on stdout.
pub fn table(
    w: &mut impl Write,
    machine: &Machine,
    data: &Collected,
    figs: &[Figure],
) -> Result<()> {
    writeln!(
        w,
        "shmipc-bench ({} mode, {} rounds, {} CPUs{}{}, {})",
        machine.mode,
        machine.rounds,
        machine.cpus,
        if machine.pinned {
            ", pinned to 0 and 1"
        } else {
            ", NOT pinned"
        },
        if machine.nice { ", nice -20" } else { "" },
        machine.cpu_model
    )?;
    writeln!(
        w,
        "Times are per-batch means (median and p99 over the batches of all rounds); ratios are \
         medians over rounds of same-round ratios."
    )?;
    writeln!(
        w,
        "Load average {:.2} at the start, {:.2} at the end{}",
        machine.loadavg_start[0],
        machine.loadavg_end[0],
        if machine.loadavg_start[0].max(machine.loadavg_end[0]) > 1.5 {
            ": other processes competed for the two CPUs (see the preempt column)"
        } else {
            ""
        }
    )?;
    if !machine.not_wired.is_empty() {
        writeln!(
            w,
            "Not wired into this build yet: {}",
            machine.not_wired.join(", ")
        )?;
    }
    let near_far = |suite: Suite| {
        let n = data
            .probes
            .iter()
            .filter(|p| p.suite == suite && p.placement == "near")
            .count();
        let f = data
            .probes
            .iter()
            .filter(|p| p.suite == suite && p.placement == "far")
            .count();
        format!("{n} near, {f} far")
    };
    for suite in [Suite::Latency, Suite::Throughput, Suite::Segment] {
        let rows: Vec<&Figure> = figs.iter().filter(|f| f.suite == suite).collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(w)?;
        match suite {
            Suite::Latency => {
                writeln!(w, "== latency: round trip")?;
            }
            Suite::Throughput => writeln!(
                w,
                "== throughput: consumer-side rate (msgs/s at 64 B, bytes/s otherwise)"
            )?,
            Suite::Segment => writeln!(
                w,
                "== segment: create+map+unmap+remove and open+map+unmap, {} segments",
                fmt_bytes(segment_ops::SIZE as u64)
            )?,
        }
        writeln!(
            w,
            "floor probe (8 B round trip) per round ({}): {}",
            near_far(suite),
            probes_line(data, suite)
        )?;
        match suite {
            Suite::Latency => writeln!(
                w,
                "{:<22} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8}",
                "contender",
                "payload",
                "median",
                "p99",
                "x floor",
                "(near)",
                "(far)",
                "x iceoryx2",
                "preempt"
            )?,
            Suite::Throughput => writeln!(
                w,
                "{:<22} {:>8} {:>14} {:>10} {:>8} {:>8} {:>8} {:>10}",
                "contender",
                "payload",
                "median",
                "p99/msg",
                "x floor",
                "(near)",
                "(far)",
                "x memcpy"
            )?,
            Suite::Segment => writeln!(
                w,
                "{:<22} {:>8} {:>10} {:>10} {:>8} {:>8}",
                "operation", "size", "median", "p99", "x bare", "preempt"
            )?,
        }
        for f in rows {
            match suite {
                Suite::Latency => writeln!(
                    w,
                    "{:<22} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8}",
                    f.name,
                    fmt_bytes(f.payload),
                    fmt_ns(f.median_ns.unwrap_or(f64::NAN)),
                    fmt_ns(f.p99_ns),
                    fmt_ratio(Some(f.ratio_to_floor)),
                    fmt_ratio(f.ratio_to_floor_near),
                    fmt_ratio(f.ratio_to_floor_far),
                    fmt_ratio(f.ratio_to_iceoryx2),
                    f.preemptions
                )?,
                Suite::Throughput => writeln!(
                    w,
                    "{:<22} {:>8} {:>14} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8}",
                    f.name,
                    fmt_bytes(f.payload),
                    fmt_rate(f.per_sec.unwrap_or(f64::NAN), f.unit.unwrap_or("")),
                    fmt_ns(f.p99_ns),
                    fmt_ratio(Some(f.ratio_to_floor)),
                    fmt_ratio(f.ratio_to_floor_near),
                    fmt_ratio(f.ratio_to_floor_far),
                    fmt_ratio(f.ratio_to_memcpy),
                    f.preemptions
                )?,
                Suite::Segment => writeln!(
                    w,
                    "{:<22} {:>8} {:>10} {:>10} {:>8} {:>8}",
                    f.name,
                    fmt_bytes(f.payload),
                    fmt_ns(f.median_ns.unwrap_or(f64::NAN)),
                    fmt_ns(f.p99_ns),
                    fmt_ratio(Some(f.ratio_to_floor)),
                    f.preemptions
                )?,
            }
        }
    }
    writeln!(
        w,
        "\nsetup {:.1} s, whole run {:.1} s",
        machine.setup_s, machine.total_s
    )?;
    Ok(())
}

#[derive(Serialize)]
struct Json<'a> {
    machine: &'a Machine,
    results: &'a [Figure],
}

/// Writes `{"machine": {...}, "results": [...]}`.
pub fn write_json(path: &Path, machine: &Machine, data: &Collected, figs: &[Figure]) -> Result<()> {
    let mut m = Machine {
        placement: data.probes.clone(),
        not_wired: machine.not_wired.clone(),
        cpu_model: machine.cpu_model.clone(),
        kernel: machine.kernel.clone(),
        ..*machine
    };
    m.placement = data.probes.clone();
    let text = serde_json::to_string_pretty(&Json {
        machine: &m,
        results: figs,
    })?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}

const COLORS: [&str; 10] = [
    "#000000", "#d62728", "#ff7f0e", "#bcbd22", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
    "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws the latency distributions: one panel per payload, in each the cumulative
/// distribution of per-batch mean round trips (log time axis), one curve per
/// contender.
pub fn write_svg(path: &Path, figs: &[Figure]) -> Result<()> {
    std::fs::write(path, svg(figs))?;
    Ok(())
}

/// The SVG text (see [`write_svg`]).
pub fn svg(figs: &[Figure]) -> String {
    const W: f64 = 960.0;
    const PH: f64 = 240.0; // plot height
    const PW: f64 = 640.0; // plot width
    const LEFT: f64 = 70.0;
    const TOP: f64 = 50.0;
    const GAP: f64 = 80.0;
    let lat: Vec<&Figure> = figs
        .iter()
        .filter(|f| f.suite == Suite::Latency && !f.samples.is_empty())
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for f in &lat {
        if !names.contains(&f.name) {
            names.push(f.name);
        }
    }
    let payloads: Vec<u64> = latency::PAYLOADS
        .iter()
        .map(|&p| p as u64)
        .filter(|p| lat.iter().any(|f| f.payload == *p))
        .collect();
    let h = TOP + payloads.len() as f64 * (PH + GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15">shmipc-bench: round-trip latency, cumulative distribution of per-batch means</text>"#
    );
    for (pi, &payload) in payloads.iter().enumerate() {
        let y0 = TOP + pi as f64 * (PH + GAP);
        let rows: Vec<&&Figure> = lat.iter().filter(|f| f.payload == payload).collect();
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for f in &rows {
            for &x in &f.samples {
                if x > 0.0 && x.is_finite() {
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
            }
        }
        if !lo.is_finite() || hi <= 0.0 {
            continue;
        }
        let (llo, lhi) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let xpos = |ns: f64| LEFT + (ns.log10() - llo) / (lhi - llo) * PW;
        let ypos = |q: f64| y0 + PH - q * PH;
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-size="13">payload {}</text>"#,
            y0 - 8.0,
            fmt_bytes(payload)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#888"/>"##
        );
        // Grid: decades and 2x, 5x; labels on decades only when the axis is wide.
        let label_all = lhi - llo <= 2.0;
        let mut e = llo;
        while e <= lhi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powf(e);
                if v.log10() > lhi + 1e-9 {
                    continue;
                }
                let x = xpos(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                    y0 + PH
                );
                if m == 1.0 || label_all {
                    let _ = writeln!(
                        s,
                        r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                        y0 + PH + 16.0,
                        esc(&tick(v))
                    );
                }
            }
            e += 1.0;
        }
        for q in [0.0, 0.25, 0.5, 0.75, 0.99] {
            let y = ypos(q);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{q}</text>"##,
                LEFT + PW,
                LEFT - 6.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">per-batch mean round trip (log scale)</text>"#,
            LEFT + PW / 2.0,
            y0 + PH + 34.0
        );
        for f in rows {
            let ci = names.iter().position(|n| *n == f.name).unwrap_or(0);
            let color = COLORS[ci % COLORS.len()];
            let mut v = f.samples.clone();
            v.retain(|x| *x > 0.0 && x.is_finite());
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let step = (n / 300).max(1);
            let mut pts = String::new();
            for (i, x) in v.iter().enumerate() {
                if i % step == 0 || i + 1 == n {
                    let _ = write!(
                        pts,
                        "{:.1},{:.1} ",
                        xpos(*x),
                        ypos((i + 1) as f64 / n as f64)
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"><title>{} {}</title></polyline>"#,
                pts.trim_end(),
                esc(f.name),
                fmt_bytes(payload)
            );
        }
        // Legend.
        for (i, name) in names.iter().enumerate() {
            let y = y0 + 14.0 + i as f64 * 18.0;
            let x = LEFT + PW + 24.0;
            let _ = writeln!(
                s,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                x + 24.0,
                COLORS[i % COLORS.len()],
                x + 30.0,
                y + 4.0,
                esc(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(round: usize, suite: Suite, near: bool) -> Probe {
        Probe {
            round,
            suite,
            floor_ns: if near { 100.0 } else { 400.0 },
            placement: if near { "near" } else { "far" },
        }
    }

    #[test]
    fn ratios_are_same_round_and_split_by_placement() {
        let mut d = Collected::default();
        for (round, near) in [(0, true), (1, false), (2, true)] {
            d.probes.push(probe(round, Suite::Latency, near));
            let scale = if near { 1.0 } else { 4.0 };
            d.push(
                Suite::Latency,
                "floor",
                8,
                round,
                vec![100.0 * scale; 3],
                1,
                512,
            );
            d.push(
                Suite::Latency,
                "iceoryx2",
                8,
                round,
                vec![1000.0 * scale; 3],
                1,
                64,
            );
            d.push(
                Suite::Latency,
                "shmipc-spsc",
                8,
                round,
                vec![150.0 * scale; 3],
                1,
                256,
            )
            .preempted_in(round, 2);
        }
        let figs = figures(&d);
        let f = |name: &str| figs.iter().find(|f| f.name == name).unwrap();
        assert_eq!(f("floor").ratio_to_floor, 1.0);
        assert_eq!(f("iceoryx2").ratio_to_floor, 10.0);
        let s = f("shmipc-spsc");
        assert_eq!(s.ratio_to_floor, 1.5);
        assert_eq!(s.ratio_to_floor_near, Some(1.5));
        assert_eq!(s.ratio_to_floor_far, Some(1.5));
        assert_eq!(s.ratio_to_iceoryx2, Some(0.15));
        assert_eq!(s.round_placement, vec!["near", "far", "near"]);
        assert_eq!(s.rounds, 3);
        assert_eq!(s.batch_size, 256);
        assert_eq!(s.preemptions, 6);
        assert_eq!(s.median_ns, Some(150.0));
        assert!(s.per_sec.is_none());
        assert!(f("iceoryx2").ratio_to_iceoryx2.is_none());
    }

    #[test]
    fn throughput_is_messages_at_64_bytes_and_bytes_otherwise() {
        let mut d = Collected::default();
        // 1000 messages per batch in 1 ms: 1 M msgs/s.
        d.push(
            Suite::Throughput,
            "floor-ring",
            64,
            0,
            vec![1e6; 5],
            1000,
            1000,
        );
        d.push(
            Suite::Throughput,
            "memcpy",
            64,
            0,
            vec![0.5e6; 5],
            1000,
            1000,
        );
        d.push(
            Suite::Throughput,
            "floor-ring",
            4096,
            0,
            vec![1e6; 5],
            1000,
            1000,
        );
        let figs = figures(&d);
        let ring64 = &figs[0];
        assert_eq!(ring64.per_sec, Some(1e6));
        assert_eq!(ring64.unit, Some("msgs/s"));
        assert_eq!(ring64.p99_ns, 1000.0);
        assert_eq!(ring64.ratio_to_memcpy, Some(0.5));
        assert!(ring64.median_ns.is_none());
        let memcpy = &figs[1];
        assert_eq!(memcpy.ratio_to_floor, 2.0);
        assert!(memcpy.ratio_to_memcpy.is_none());
        let ring4k = &figs[2];
        assert_eq!(ring4k.per_sec, Some(4096e6));
        assert_eq!(ring4k.unit, Some("bytes/s"));
    }

    #[test]
    fn segment_rows_compare_with_their_bare_counterpart() {
        let mut d = Collected::default();
        d.push(Suite::Segment, "shmipc-create", 65536, 0, vec![30.0], 1, 5);
        d.push(Suite::Segment, "bare-create", 65536, 0, vec![15.0], 1, 5);
        d.push(Suite::Segment, "shmipc-open", 65536, 0, vec![12.0], 1, 5);
        d.push(Suite::Segment, "bare-open", 65536, 0, vec![8.0], 1, 5);
        let figs = figures(&d);
        assert_eq!(figs[0].ratio_to_floor, 2.0);
        assert_eq!(figs[0].floor, "bare-create");
        assert_eq!(figs[2].ratio_to_floor, 1.5);
        assert_eq!(figs[2].floor, "bare-open");
    }

    #[test]
    fn the_svg_is_well_formed_enough() {
        let mut d = Collected::default();
        d.push(
            Suite::Latency,
            "floor",
            8,
            0,
            vec![90.0, 100.0, 110.0],
            1,
            1,
        );
        d.push(Suite::Latency, "pipe", 8, 0, vec![30e3, 40e3], 1, 1);
        let text = svg(&figures(&d));
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("payload 8 B"));
    }

    #[test]
    fn units_read_well() {
        assert_eq!(fmt_ns(71.2), "71 ns");
        assert_eq!(fmt_ns(12_345.0), "12.3 µs");
        assert_eq!(fmt_ns(1_234_567.0), "1.23 ms");
        assert_eq!(fmt_bytes(65536), "64 KiB");
        assert_eq!(fmt_bytes(1 << 20), "1 MiB");
        assert_eq!(fmt_bytes(8), "8 B");
        assert_eq!(tick(2000.0), "2 µs");
    }
}
