//! The harness: selection, set-up, the interleaved rounds, and the report.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Args, Plan};
use crate::ctx::Ctx;
use crate::latency::{self, message, RoundTrip};
use crate::peer::{self, Peer};
use crate::report::{self, Collected, Probe, Suite};
use crate::segment_ops::{self, Fixture};
use crate::throughput::{self, Stream};
use crate::Result;

/// A floor round trip (8 B) at or above this many ns means the host keeps the two
/// vCPUs far apart (`shared/notes/measuring-here.md`: a bare ping-pong takes ~60-78 ns
/// near, ~300-360 ns far; this floor, with its two 8-byte copies, ~100 ns and ~400 ns).
pub const FAR_NS: f64 = 250.0;

/// `main` of the binary, harness or peer.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.role.as_deref() {
        Some("peer") => peer::main(args.prefix.clone().unwrap_or_default(), &args.fds, args.pin),
        Some("wake-peer") => crate::wake::peer(
            args.prefix.as_deref().unwrap_or_default(),
            &args.fds,
            args.pin,
            args.idle.unwrap_or(0),
        ),
        Some("fanout-child") => {
            crate::fanout::child(args.fanout_spec.as_deref().unwrap_or_default())
        }
        Some(other) => Err(format!("unknown --role {other}").into()),
        None => {
            let iox = crate::iceoryx::claim_run_prefix();
            crate::iceoryx::sweep_dead_runs();
            let r = harness(&args);
            // Every peer has exited by now (each is reaped when its suite ends).
            crate::iceoryx::remove_run_files(&iox);
            r
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmipc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What runs.
#[derive(Debug, Default)]
struct Selection {
    /// Latency contenders to run (the floor first); empty: no latency suite.
    lat: Vec<latency::Contender>,
    /// Two-process throughput contenders (the floor ring first); empty: none.
    tp: Vec<throughput::Contender>,
    /// The throughput suite runs (it may be memcpy alone plus the floor ring).
    tp_suite: bool,
    memcpy: bool,
    seg: bool,
    /// The fanout suite runs.
    fanout: bool,
    /// Asked-for contenders that this build does not have yet.
    unwired: Vec<String>,
}

fn all_names() -> Vec<&'static str> {
    let mut v = vec!["latency", "throughput", "segment", "fanout", "floor-fanout"];
    v.extend(latency::CONTENDERS.iter().map(|c| c.name));
    v.extend(throughput::CONTENDERS.iter().map(|c| c.name));
    v.push(throughput::MEMCPY);
    v.extend(segment_ops::OPS);
    let mut seen = std::collections::HashSet::new();
    v.retain(|n| seen.insert(*n));
    v
}

fn select(only: &[String]) -> Result<Selection> {
    let names = all_names();
    for n in only {
        if !names.contains(&n.as_str()) {
            return Err(format!(
                "--only: no contender or suite named {n:?}; choose from: {}",
                names.join(", ")
            )
            .into());
        }
    }
    let wanted =
        |name: &str, suite: &str| only.is_empty() || only.iter().any(|o| o == name || o == suite);
    let mut sel = Selection::default();
    if latency::CONTENDERS
        .iter()
        .any(|c| wanted(c.name, "latency"))
    {
        for (i, c) in latency::CONTENDERS.iter().enumerate() {
            if i == 0 || wanted(c.name, "latency") {
                if c.open.is_some() {
                    sel.lat.push(*c);
                } else {
                    sel.unwired.push(format!("latency/{}", c.name));
                }
            }
        }
    }
    sel.memcpy = wanted(throughput::MEMCPY, "throughput");
    if sel.memcpy
        || throughput::CONTENDERS
            .iter()
            .any(|c| wanted(c.name, "throughput"))
    {
        sel.tp_suite = true;
        for (i, c) in throughput::CONTENDERS.iter().enumerate() {
            if i == 0 || wanted(c.name, "throughput") {
                if c.open.is_some() {
                    sel.tp.push(*c);
                } else {
                    sel.unwired.push(format!("throughput/{}", c.name));
                }
            }
        }
    }
    sel.seg = segment_ops::OPS.iter().any(|op| wanted(op, "segment"));
    sel.fanout = wanted("floor-fanout", "fanout");
    Ok(sel)
}

fn list() {
    println!(
        "latency (round trip; payloads {:?} bytes):",
        latency::PAYLOADS
    );
    for c in latency::CONTENDERS {
        let wired = if c.open.is_some() {
            ""
        } else {
            "  [not wired yet]"
        };
        println!("  {:<22} {}{wired}", c.name, c.about);
    }
    println!(
        "throughput (payloads {:?} bytes; msgs/s at 64 B, bytes/s otherwise):",
        throughput::PAYLOADS
    );
    for c in throughput::CONTENDERS {
        let wired = if c.open.is_some() {
            ""
        } else {
            "  [not wired yet]"
        };
        println!("  {:<22} {}{wired}", c.name, c.about);
    }
    println!(
        "  {:<22} single-process copy of the same bytes",
        throughput::MEMCPY
    );
    println!("segment ({} KiB segments):", segment_ops::SIZE / 1024);
    for op in segment_ops::OPS {
        println!("  {op}");
    }
    println!(
        "wake (--only wake; runs alone; round trip with the receiver asleep, the sender pausing {} µs; then an idle WaitSet's CPU):",
        crate::wake::PAUSE.as_micros()
    );
    for (name, about) in crate::wake::CONTENDERS.iter().zip(crate::wake::ABOUT) {
        println!("  {name:<22} {about}");
    }
}

/// Per-(contender, payload) state of the client's latency cells.
struct LatEnd {
    c: latency::Contender,
    ep: Box<dyn RoundTrip>,
    /// Calibrated round trips per batch, per payload.
    batch: HashMap<usize, u64>,
}

struct Harness {
    plan: Plan,
    peer: Peer,
    seq: u64,
    data: Collected,
    bar: ProgressBar,
}

impl Harness {
    /// One latency cell: the peer echoes, this process times batches.
    /// Returns the per-batch means and the batch size.
    fn lat_cell(
        &mut self,
        end: &mut LatEnd,
        len: usize,
        batches: usize,
    ) -> Result<(Vec<f64>, u64)> {
        let name = end.c.name;
        self.peer.send(&format!("lat {name} {len}"))?;
        let mut out = message(len);
        let mut back = vec![0u8; len];
        let batch = match end.batch.get(&len) {
            Some(&b) => b,
            None => {
                let b = latency::calibrate(
                    end.ep.as_mut(),
                    &mut out,
                    &mut back,
                    &mut self.seq,
                    self.plan.lat_target,
                )?;
                end.batch.insert(len, b);
                b
            }
        };
        let means = latency::measure(
            end.ep.as_mut(),
            &mut out,
            &mut back,
            &mut self.seq,
            batch,
            batches,
        )
        .map_err(|e| format!("{name}, {len} B: {e}"))?;
        end.ep.stop(&mut out, &mut back)?;
        self.peer.answer()?;
        Ok((means, batch))
    }

    /// The floor probe before a suite: where does the host keep the vCPUs now?
    fn probe(&mut self, floor: &mut LatEnd, round: usize, suite: Suite) -> Result<()> {
        let (means, _) = self.lat_cell(floor, 8, self.plan.probe_batches)?;
        let floor_ns = crate::stats::median(&means);
        self.data.probes.push(Probe {
            round,
            suite,
            floor_ns,
            placement: if floor_ns < FAR_NS { "near" } else { "far" },
        });
        Ok(())
    }

    /// One throughput cell: the peer produces, this process consumes and times.
    fn tp_cell(&mut self, name: &str, ep: &mut dyn Stream, len: usize) -> Result<(Vec<f64>, u64)> {
        let per = throughput::msgs_per_batch(len, self.plan.tp_batch_bytes) as u64;
        let batches = self.plan.tp_batches + throughput::WARMUP_BATCHES;
        ep.begin(len)?;
        self.peer
            .send(&format!("tp {name} {len} {}", per * batches as u64))?;
        let times = ep
            .consume(len, per, batches)
            .map_err(|e| format!("{name}, {len} B: {e}"))?;
        self.peer.answer()?;
        Ok((times, per))
    }

    /// Involuntary context switches so far of this process and the peer: the count
    /// grows when another process takes one of the two CPUs from a contender.
    fn switches(&self) -> u64 {
        nonvoluntary_switches("self") + nonvoluntary_switches(&self.peer.pid().to_string())
    }

    fn tick(&self, what: String) {
        self.bar.set_message(what);
        self.bar.inc(1);
    }
}

/// `nonvoluntary_ctxt_switches` of `/proc/<pid>/status` (0 if unreadable).
fn nonvoluntary_switches(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn harness(args: &Args) -> Result<()> {
    if args.list {
        list();
        return Ok(());
    }
    if crate::wake::wanted(args) {
        return crate::wake::run(args);
    }
    let sel = select(&args.only)?;
    let plan = Plan::new(args);
    if sel.fanout && sel.lat.is_empty() && !sel.tp_suite && !sel.seg {
        return fanout_suite(args, &plan, None);
    }
    let started = Instant::now();
    let loadavg_start = report::loadavg();

    // Pin: this process to CPU 0, the peer to CPU 1.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = if cpus < 2 {
        eprintln!("shmipc-bench: fewer than 2 CPUs; not pinning (figures mean less)");
        false
    } else {
        match peer::pin(0) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("shmipc-bench: {e}; running unpinned (figures mean less)");
                false
            }
        }
    };

    // Before the peer starts: it inherits the nice value.
    let niced = args.nice && {
        match rustix::process::setpriority_process(None, -20) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "shmipc-bench: --nice: cannot raise the priority ({e}); running at the default"
                );
                false
            }
        }
    };

    let mut ctx = Ctx::client()?;
    let peer = Peer::spawn(&ctx, pinned.then_some(1))?;
    let mut h = Harness {
        plan: plan.clone(),
        peer,
        seq: 0,
        data: Collected::default(),
        bar: ProgressBar::hidden(),
    };

    // Set-up: this end first (it creates), then the peer's (it opens).
    let setup = Instant::now();
    let mut floor = None;
    let mut lat_ends = Vec::new();
    // The floor is always set up: the placement probe uses it.
    let lat_list = if sel.lat.is_empty() {
        vec![latency::CONTENDERS[0]]
    } else {
        sel.lat.clone()
    };
    for c in lat_list {
        let open = c.open.ok_or("unwired contender selected")?;
        let ep = open(&mut ctx).map_err(|e| format!("setting up {}: {e}", c.name))?;
        h.peer.call(&format!("setup-lat {}", c.name), "ok")?;
        let end = LatEnd {
            c,
            ep,
            batch: HashMap::new(),
        };
        if c.name == latency::CONTENDERS[0].name {
            floor = Some(end);
        } else {
            lat_ends.push(end);
        }
    }
    let mut floor = floor.ok_or("the floor is not set up")?;
    let mut tp_ends: Vec<(throughput::Contender, Box<dyn Stream>)> = Vec::new();
    for c in &sel.tp {
        let open = c.open.ok_or("unwired contender selected")?;
        let ep = open(&mut ctx).map_err(|e| format!("setting up {}: {e}", c.name))?;
        h.peer.call(&format!("setup-tp {}", c.name), "ok")?;
        tp_ends.push((*c, ep));
    }
    let fixture = if sel.seg {
        Some(Fixture::new(&ctx.prefix)?)
    } else {
        None
    };
    let setup_s = setup.elapsed().as_secs_f64();

    // Progress: one step per cell.
    let lat_cells = if sel.lat.is_empty() {
        0
    } else {
        1 + latency::PAYLOADS.len() * sel.lat.len()
    };
    let tp_cells = if sel.tp_suite {
        1 + throughput::PAYLOADS.len() * (sel.tp.len() + usize::from(sel.memcpy))
    } else {
        0
    };
    let seg_cells = if sel.seg {
        1 + segment_ops::OPS.len()
    } else {
        0
    };
    let total = (plan.rounds * (lat_cells + tp_cells + seg_cells)) as u64;
    h.bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:32}] {pos}/{len} {msg}") {
        h.bar.set_style(style.progress_chars("=> "));
    }

    for round in 0..plan.rounds {
        if !sel.lat.is_empty() {
            h.probe(&mut floor, round, Suite::Latency)?;
            h.tick(format!("round {} latency probe", round + 1));
            for len in latency::PAYLOADS {
                // The floor first, then the others, in table order.
                let sw = h.switches();
                let (means, b) = h.lat_cell(&mut floor, len, plan.lat_batches)?;
                let sw = h.switches() - sw;
                h.data
                    .push(Suite::Latency, floor.c.name, len, round, means, 1, b)
                    .preempted_in(round, sw);
                h.tick(format!("round {} latency floor {len} B", round + 1));
                for end in lat_ends.iter_mut() {
                    let sw = h.switches();
                    let (means, b) = h.lat_cell(end, len, plan.lat_batches)?;
                    let sw = h.switches() - sw;
                    h.data
                        .push(Suite::Latency, end.c.name, len, round, means, 1, b)
                        .preempted_in(round, sw);
                    h.tick(format!(
                        "round {} latency {} {len} B",
                        round + 1,
                        end.c.name
                    ));
                }
            }
        }
        if sel.tp_suite {
            h.probe(&mut floor, round, Suite::Throughput)?;
            h.tick(format!("round {} throughput probe", round + 1));
            for len in throughput::PAYLOADS {
                for (c, ep) in tp_ends.iter_mut() {
                    let sw = h.switches();
                    let (times, per) = h.tp_cell(c.name, ep.as_mut(), len)?;
                    let sw = h.switches() - sw;
                    h.data
                        .push(Suite::Throughput, c.name, len, round, times, per, per)
                        .preempted_in(round, sw);
                    h.tick(format!("round {} throughput {} {len} B", round + 1, c.name));
                }
                if sel.memcpy {
                    let per = throughput::msgs_per_batch(len, plan.tp_batch_bytes) as u64;
                    let sw = h.switches();
                    let times = throughput::memcpy_batches(
                        len,
                        per,
                        plan.tp_batches + throughput::WARMUP_BATCHES,
                    );
                    let sw = h.switches() - sw;
                    h.data
                        .push(
                            Suite::Throughput,
                            throughput::MEMCPY,
                            len,
                            round,
                            times,
                            per,
                            per,
                        )
                        .preempted_in(round, sw);
                    h.tick(format!("round {} throughput memcpy {len} B", round + 1));
                }
            }
        }
        if let Some(fx) = &fixture {
            h.probe(&mut floor, round, Suite::Segment)?;
            h.tick(format!("round {} segment probe", round + 1));
            for op in segment_ops::OPS {
                let sw = h.switches();
                let means = fx.measure(op, plan.seg_per_batch, plan.seg_batches)?;
                let sw = h.switches() - sw;
                h.data
                    .push(
                        Suite::Segment,
                        op,
                        segment_ops::SIZE,
                        round,
                        means,
                        1,
                        u64::from(plan.seg_per_batch),
                    )
                    .preempted_in(round, sw);
                h.tick(format!("round {} segment {op}", round + 1));
            }
        }
    }
    h.bar.finish_and_clear();

    // Tear down: the peer first (it holds its ends), then ours.
    let Harness { peer, data, .. } = h;
    peer.quit()?;
    drop(tp_ends);
    drop(lat_ends);
    drop(floor);
    drop(fixture);

    let facts = report::RunFacts {
        cpus,
        pinned,
        niced,
        loadavg_start,
        setup_s,
        started,
    };
    let machine = report::Machine::here(&plan, args, &facts, &sel.unwired);
    let figures = report::figures(&data);
    let mut stdout = std::io::stdout().lock();
    report::table(&mut stdout, &machine, &data, &figures)?;
    stdout.flush()?;
    if let Some(path) = &args.json {
        report::write_json(path, &machine, &data, &figures)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        report::write_svg(path, &figures)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    drop(stdout);
    if sel.fanout {
        fanout_suite(args, &plan, args.json.as_deref())?;
    }
    Ok(())
}

/// Runs the fanout suite (its own processes and method: `fanout.rs`), prints its
/// table, and writes its rows to `--json` (added as `"fanout"` to the report in
/// `merge_into`, else as `{"fanout": [...]}`).
fn fanout_suite(args: &Args, plan: &Plan, merge_into: Option<&std::path::Path>) -> Result<()> {
    let cells = plan.rounds * 24;
    let bar = ProgressBar::new(cells as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}").map_err(|e| e.to_string())?,
    );
    let rows = crate::fanout::run(plan.rounds, plan.fanout_bytes, |m| {
        bar.set_message(m);
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let mut stdout = std::io::stdout().lock();
    crate::fanout::table(&mut stdout, &rows)?;
    stdout.flush()?;
    if let Some(path) = &args.json {
        let mut doc = match merge_into {
            Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)?,
            None => serde_json::json!({}),
        };
        doc["fanout"] = serde_json::to_value(&rows)?;
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn lat_names(sel: &Selection) -> Vec<&'static str> {
        sel.lat.iter().map(|c| c.name).collect()
    }

    #[test]
    fn everything_wired_runs_by_default() {
        let sel = select(&[]).unwrap();
        assert_eq!(lat_names(&sel)[0], "floor");
        assert!(lat_names(&sel).contains(&"iceoryx2"));
        assert!(lat_names(&sel).contains(&"pipe"));
        assert!(sel.tp_suite && sel.memcpy && sel.seg);
        assert_eq!(sel.tp[0].name, "floor-ring");
        let unwired = latency::CONTENDERS
            .iter()
            .filter(|c| c.open.is_none())
            .count()
            + throughput::CONTENDERS
                .iter()
                .filter(|c| c.open.is_none())
                .count();
        assert_eq!(sel.unwired.len(), unwired);
    }

    #[test]
    fn only_keeps_the_floor_of_each_suite_it_touches() {
        let sel = select(&only(&["pipe"])).unwrap();
        assert_eq!(lat_names(&sel), vec!["floor", "pipe"]);
        assert!(!sel.tp_suite && !sel.seg);

        let sel = select(&only(&["memcpy"])).unwrap();
        assert!(sel.lat.is_empty());
        assert!(sel.tp_suite && sel.memcpy);
        assert_eq!(sel.tp.len(), 1);

        let sel = select(&only(&["iceoryx2"])).unwrap();
        assert_eq!(lat_names(&sel), vec!["floor", "iceoryx2"]);
        assert_eq!(sel.tp.len(), 2);
        assert!(!sel.memcpy);

        let sel = select(&only(&["segment"])).unwrap();
        assert!(sel.seg && sel.lat.is_empty() && !sel.tp_suite);
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        let e = select(&only(&["floor", "nope"])).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("choose from"), "{e}");
    }
}
