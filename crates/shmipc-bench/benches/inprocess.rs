//! `cargo bench -p shmipc-bench`: the in-process parts, timed with `Instant` over
//! batches (no cross-process peer): memcpy at the throughput payloads, and segment
//! create/open through shmipc against the bare system calls.
//!
//! The cross-process suites are in the `shmipc-bench` binary.

#[cfg(target_os = "linux")]
fn main() {
    use shmipc_bench::{segment_ops, throughput};

    // `cargo bench -- <filter>` passes the filter; `--bench` comes first.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    for len in throughput::PAYLOADS {
        let name = format!("memcpy/{len}");
        if !want(&name) {
            continue;
        }
        let per = throughput::msgs_per_batch(len, 16 << 20) as u64;
        let times = throughput::memcpy_batches(len, per, 51);
        let ns = median(times) / per as f64;
        println!(
            "{name:<28} {ns:>10.1} ns/copy  {:>8.1} GB/s",
            len as f64 / ns
        );
    }

    let prefix = format!("shmipc-bench-b{}", std::process::id());
    let fx = match segment_ops::Fixture::new(&prefix) {
        Ok(fx) => fx,
        Err(e) => {
            eprintln!("segment fixture: {e}");
            std::process::exit(1);
        }
    };
    for op in segment_ops::OPS {
        let name = format!("segment/{op}");
        if !want(&name) {
            continue;
        }
        match fx.measure(op, 20, 50) {
            Ok(means) => println!("{name:<28} {:>10.1} ns/op", median(means)),
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the in-process benchmarks run on Linux only");
}
