//! Endpoint identities made of a process id (high 32 bits) and the low 32 bits of
//! its start time, for the OSes that tell start times (Windows) or only existence
//! (macOS, others: a reused pid is then mistaken for the peer).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{imp, Liveness, Probe};

fn token(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << 32) | (start & 0xffff_ffff)
}

/// This process's identity, cached per pid (a forked child has another).
pub(crate) fn process_identity() -> u64 {
    static ME: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let cached = ME.load(Ordering::Relaxed);
    if cached != 0 && cached >> 32 == u64::from(pid) {
        return cached;
    }
    let start = match imp::probe(pid) {
        Probe::Started(t) => t,
        Probe::Gone | Probe::Unknown => 0,
    };
    let tok = token(pid, start);
    ME.store(tok, Ordering::Relaxed);
    tok
}

/// Whether the process a token names runs and started when the token says.
pub(crate) fn process_liveness_of(tok: u64) -> Liveness {
    let Some(pid) = process_id(tok) else {
        return Liveness::Dead;
    };
    match imp::probe(pid) {
        Probe::Started(start) if token(pid, start) == tok => Liveness::Alive,
        Probe::Unknown => Liveness::Alive,
        Probe::Started(_) | Probe::Gone => Liveness::Dead,
    }
}

/// The process id in a token.
pub(crate) fn process_id(tok: u64) -> Option<u32> {
    u32::try_from(tok >> 32).ok().filter(|&p| p != 0)
}
