//! `cargo bench -p shmipc --bench sync`: the cost of shmipc's robust mutex as a ratio
//! to a raw futex lock (std's algorithm on a plain `AtomicU32` in the same shared
//! memory, no owner, no robustness), measured in the same run, interleaved (A B A B…),
//! several rounds, medians. Absolute times on shared two-vCPU machines swing between
//! minutes; the same-run ratio is the figure to read.
//!
//! * uncontended: lock + unlock in one thread;
//! * contended hand-off: two processes take turns through the lock: each locks, and
//!   if the turn word in the segment says it is its turn, passes the turn to the
//!   other and counts it; then unlocks. Every turn moves the lock (and the data)
//!   from one process to the other; the figure is time per turn.
//!
//! The second process is this binary re-run with `SHMIPC_BENCH_ROLE=peer`; the two
//! are pinned to CPUs 0 and 1.

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!("sync bench: Linux only for now (the futex baseline is Linux's)");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use rustix::thread::futex;
    use shmipc::sync::{LockError, Mutex};
    use shmipc::{Access, Segment, View};

    const ROLE: &str = "SHMIPC_BENCH_ROLE";
    const SEG: &str = "SHMIPC_BENCH_SEG";

    // Segment layout.
    const MUTEX: usize = 0;
    const COUNTER: usize = Mutex::SIZE; // u64: whose turn (0 parent, 1 peer)
    const RAW: usize = COUNTER + 64; // u32, own cache line
    const GO: usize = RAW + 64; // u32: round number the peer should run
    const VARIANT: usize = GO + 4; // u32: 0 raw, 1 shmipc, 2 stop
    const DONE: usize = GO + 8; // u32: rounds the peer finished
    const SIZE: u64 = 4096;

    const UNCONTENDED_OPS: u64 = 2_000_000;
    const CONTENDED_OPS: u64 = 100_000;
    const ROUNDS: usize = 11;

    /// std's futex mutex, as the floor: 0 unlocked, 1 locked, 2 contended.
    mod raw {
        use super::*;

        #[inline]
        pub fn lock(w: &AtomicU32) {
            if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                lock_contended(w);
            }
        }

        #[cold]
        fn lock_contended(w: &AtomicU32) {
            let mut state = spin(w);
            if state == 0 {
                match w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(s) => state = s,
                }
            }
            loop {
                if state != 2 && w.swap(2, Ordering::Acquire) == 0 {
                    return;
                }
                let _ = futex::wait(w, futex::Flags::empty(), 2, None);
                state = spin(w);
            }
        }

        fn spin(w: &AtomicU32) -> u32 {
            let mut spins = 100;
            loop {
                let s = w.load(Ordering::Relaxed);
                if s != 1 || spins == 0 {
                    return s;
                }
                std::hint::spin_loop();
                spins -= 1;
            }
        }

        #[inline]
        pub fn unlock(w: &AtomicU32) {
            if w.swap(0, Ordering::Release) == 2 {
                let _ = futex::wake(w, futex::Flags::empty(), 1);
            }
        }
    }

    #[inline]
    fn locked<'a>(m: &Mutex<'a>) -> shmipc::sync::MutexGuard<'a> {
        match m.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(g)) => {
                g.mark_consistent();
                g
            }
            Err(e) => panic!("lock: {e}"),
        }
    }

    /// Takes `ops` turns as player `me` (0 or 1) through the chosen lock: a turn is
    /// taken when, holding the lock, the turn word (`COUNTER`) says `me`; it is passed
    /// by writing the other player.
    fn work(view: &View, m: &Mutex<'_>, variant: u32, me: u64, ops: u64) {
        let rawl = view.atomic_u32(RAW).unwrap();
        let mut taken = 0;
        while taken < ops {
            let take = |taken: &mut u64| {
                let turn: u64 = view.read_pod(COUNTER).unwrap();
                if turn == me {
                    view.write_pod(COUNTER, &(1 - me)).unwrap();
                    *taken += 1;
                }
            };
            if variant == 0 {
                raw::lock(rawl);
                take(&mut taken);
                raw::unlock(rawl);
            } else {
                let g = locked(m);
                take(&mut taken);
                drop(g);
            }
        }
    }

    fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "the peer process stopped answering"
            );
            std::thread::yield_now();
        }
    }

    /// Pins this process to one CPU (the DESIGN's CPUs 0 and 1), where allowed.
    fn pin(cpu: usize) {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }

    fn peer() {
        pin(1);
        let seg = Segment::open(&std::env::var(SEG).unwrap(), Access::ReadWrite).unwrap();
        let view = seg.map_all().unwrap();
        let m = Mutex::open_at(&view, MUTEX).unwrap();
        let go = view.atomic_u32(GO).unwrap();
        let done = view.atomic_u32(DONE).unwrap();
        let mut round = 0;
        loop {
            wait_until(|| go.load(Ordering::Acquire) != round);
            round = go.load(Ordering::Acquire);
            match view.atomic_u32(VARIANT).unwrap().load(Ordering::Acquire) {
                2 => return,
                v => work(&view, &m, v, 1, CONTENDED_OPS),
            }
            done.fetch_add(1, Ordering::Release);
        }
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    pub fn main() {
        if std::env::var(ROLE).as_deref() == Ok("peer") {
            peer();
            return;
        }
        // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful:
        // then run a quick smoke version.
        let quick = !std::env::args().any(|a| a == "--bench");
        let (unc_ops, con_ops, rounds) = if quick {
            (10_000, 0, 1)
        } else {
            (UNCONTENDED_OPS, CONTENDED_OPS, ROUNDS)
        };

        pin(0);
        let name = format!("bench-sync-{}", std::process::id());
        let seg = Segment::create(&name, SIZE).unwrap();
        let view = seg.map_all().unwrap();
        let m = Mutex::init_at(&view, MUTEX).unwrap();
        let rawl = view.atomic_u32(RAW).unwrap();

        // Uncontended: A B A B…
        let (mut raw_ns, mut shm_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..unc_ops {
                raw::lock(black_box(rawl));
                raw::unlock(black_box(rawl));
            }
            let a = t.elapsed().as_secs_f64() * 1e9 / unc_ops as f64;
            let t = Instant::now();
            for _ in 0..unc_ops {
                drop(black_box(locked(black_box(&m))));
            }
            let b = t.elapsed().as_secs_f64() * 1e9 / unc_ops as f64;
            raw_ns.push(a);
            shm_ns.push(b);
            ratios.push(b / a);
        }
        println!(
            "uncontended lock+unlock: raw futex {:.1} ns, shmipc {:.1} ns, ratio {:.2} (median of {rounds} interleaved rounds)",
            median(raw_ns),
            median(shm_ns),
            median(ratios)
        );
        if quick {
            return;
        }

        // Contended, two processes.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "peer")
            .env(SEG, &name)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let go = view.atomic_u32(GO).unwrap();
        let done = view.atomic_u32(DONE).unwrap();
        let variant = view.atomic_u32(VARIANT).unwrap();
        let run = |v: u32| -> f64 {
            view.write_pod(COUNTER, &0u64).unwrap(); // player 0 (us) starts
            let before = done.load(Ordering::Acquire);
            variant.store(v, Ordering::Release);
            let t = Instant::now();
            go.fetch_add(1, Ordering::Release);
            work(&view, &m, v, 0, con_ops);
            wait_until(|| done.load(Ordering::Acquire) != before);
            t.elapsed().as_secs_f64() * 1e9 / (2 * con_ops) as f64
        };
        let (mut raw_ns, mut shm_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let a = run(0);
            let b = run(1);
            raw_ns.push(a);
            shm_ns.push(b);
            ratios.push(b / a);
        }
        variant.store(2, Ordering::Release);
        go.fetch_add(1, Ordering::Release);
        let _ = child.wait();
        println!(
            "contended hand-off between 2 processes: raw futex {:.1} ns/turn, shmipc {:.1} ns/turn, ratio {:.2} (median of {rounds} interleaved rounds)",
            median(raw_ns),
            median(shm_ns),
            median(ratios)
        );
    }
}
