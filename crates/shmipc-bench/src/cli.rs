//! Command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// shmipc side by side with the hardware floor, iceoryx2 and the kernel's IPC.
///
/// Every figure is measured between two processes pinned to CPUs 0 and 1, the
/// contenders interleaved round by round, and given as a ratio to the floor of the
/// same round. Times are per-batch means (median and 99th percentile over batches).
#[derive(Parser, Debug)]
#[command(name = "shmipc-bench", version)]
pub struct Args {
    /// Fewer messages per round (still at least 5 rounds); finishes in well under two
    /// minutes on a 2-vCPU machine.
    #[arg(long)]
    pub quick: bool,

    /// Run only these contenders (comma-separated; or a suite: latency, throughput,
    /// segment). Each suite's floor always runs. `--list` shows the names.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub only: Vec<String>,

    /// Write every figure, with the machine and the per-round placement, as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw the latency distributions (CDF of per-batch means, one curve per
    /// contender, one panel per payload) as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Number of rounds (at least 5; default 10, or 5 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(5..))]
    pub rounds: Option<u32>,

    /// Run both processes at nice -20 (needs root or CAP_SYS_NICE), so that other
    /// processes on the machine take the two CPUs from the contenders less often (the
    /// `preempt` column). Everything else on the machine runs slower meanwhile.
    #[arg(long)]
    pub nice: bool,

    /// List the contenders of each suite and exit.
    #[arg(long)]
    pub list: bool,

    /// Tests only: a handful of batches per cell.
    #[arg(long, hide = true)]
    pub tiny: bool,

    /// Internal: `peer` runs this process as the harness's peer.
    #[arg(long, hide = true)]
    pub role: Option<String>,

    /// Internal (peer): the run's object-name prefix.
    #[arg(long, hide = true)]
    pub prefix: Option<String>,

    /// Internal (peer): inherited descriptor numbers.
    #[arg(long, hide = true, value_delimiter = ',', allow_hyphen_values = true)]
    pub fds: Vec<i32>,

    /// Internal (fanout child): what to be.
    #[arg(long, hide = true)]
    pub fanout_spec: Option<String>,

    /// Internal (wake peer): how many idle producers to hold.
    #[arg(long, hide = true)]
    pub idle: Option<usize>,

    /// Internal (peer): the CPU to pin to.
    #[arg(long, hide = true)]
    pub pin: Option<usize>,
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rounds.
    pub rounds: usize,
    /// A latency batch lasts at least this long (sets its round-trip count, once per
    /// contender and payload).
    pub lat_target: Duration,
    /// Timed latency batches per contender, payload and round.
    pub lat_batches: usize,
    /// Timed batches of the floor probe before each suite.
    pub probe_batches: usize,
    /// About this many bytes per throughput batch.
    pub tp_batch_bytes: usize,
    /// Timed throughput batches per contender, payload and round.
    pub tp_batches: usize,
    /// Operations per segment batch.
    pub seg_per_batch: u32,
    /// Timed segment batches per operation and round.
    pub seg_batches: usize,
    /// Fanout: about this many payload bytes per cell (and subscriber).
    pub fanout_bytes: usize,
}

impl Plan {
    /// The plan for these arguments.
    pub fn new(args: &Args) -> Plan {
        let mut plan = if args.tiny {
            Plan {
                rounds: 5,
                lat_target: Duration::from_micros(2),
                lat_batches: 3,
                probe_batches: 2,
                tp_batch_bytes: 64 << 10,
                tp_batches: 2,
                seg_per_batch: 2,
                seg_batches: 2,
                fanout_bytes: 256 << 10,
            }
        } else if args.quick {
            Plan {
                rounds: 5,
                lat_target: Duration::from_micros(50),
                lat_batches: 400,
                probe_batches: 20,
                tp_batch_bytes: 2 << 20,
                tp_batches: 200,
                seg_per_batch: 5,
                seg_batches: 80,
                fanout_bytes: 32 << 20,
            }
        } else {
            Plan {
                rounds: 10,
                lat_target: Duration::from_micros(50),
                lat_batches: 1000,
                probe_batches: 50,
                tp_batch_bytes: 2 << 20,
                tp_batches: 500,
                seg_per_batch: 5,
                seg_batches: 200,
                fanout_bytes: 128 << 20,
            }
        };
        if let Some(r) = args.rounds {
            plan.rounds = r as usize;
        }
        plan
    }
}
