//! Several real processes sharing segments: the seed (one writes, the other reads),
//! plain-data and atomic access across processes, N processes racing
//! `create_or_open`, create/open/close churn, and copy-on-write isolation.
//! Portable: nothing here is Linux-specific.

mod common;

use bytemuck::{Pod, Zeroable};
use common::{c_str, hear, hear_exactly, hex, say, unhex, Cleanup, Peer};
use shmipc::{Access, Disposition, OpenError, Segment};

const HELLO: &[u8] = b"Hello from Process 1\0";

/// The seed, for real: Process 1 creates and writes, Process 2 opens read-only and
/// reads; then the other way round (the child writes through its own handle).
#[test]
fn seed_one_writes_the_other_reads() {
    if let Some(role) = common::role() {
        let name = common::arg("NAME");
        match role.as_str() {
            "process2" => {
                let seg = Segment::open(&name, Access::Read).unwrap();
                assert_eq!(seg.size(), 256, "an opener learns the creator's size");
                let view = seg.map(0, 256).unwrap();
                let mut buf = [0u8; 256];
                view.read_at(0, &mut buf).unwrap();
                say(&format!("received {}", c_str(&buf)));
            }
            "replier" => {
                let seg = Segment::open(&name, Access::ReadWrite).unwrap();
                seg.map(128, 0)
                    .unwrap()
                    .write_at(0, b"Hello from Process 2\0")
                    .unwrap();
                say("written");
                hear_exactly("bye");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let guard = Cleanup::new("seed");
    let seg = Segment::create(guard.name(), 256).unwrap();
    seg.map_all().unwrap().write_at(0, HELLO).unwrap();

    let mut p2 = Peer::role(
        "seed_one_writes_the_other_reads",
        "process2",
        &[("NAME", guard.name())],
    );
    assert_eq!(p2.expect("received"), "Hello from Process 1");
    p2.finish();

    let mut p = Peer::role(
        "seed_one_writes_the_other_reads",
        "replier",
        &[("NAME", guard.name())],
    );
    p.expect("written");
    let mut buf = [0u8; 21];
    seg.map_all().unwrap().read_at(128, &mut buf).unwrap();
    assert_eq!(&buf, b"Hello from Process 2\0");
    p.send("bye");
    p.finish();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
struct Record {
    id: u64,
    temperature: i32,
    flags: u16,
    tag: [u8; 2],
}

const COUNTER_AT: usize = 64;
const RECORD_AT: usize = 3; // unaligned on purpose: read_pod/write_pod need no alignment
const INCREMENTS: u64 = 50_000;

/// Plain-data values copied in and out across processes, and an `AtomicU64` that
/// three processes increment at once: the total is exact.
#[test]
fn pod_and_atomics_across_processes() {
    if let Some(role) = common::role() {
        let name = common::arg("NAME");
        let seg = Segment::open(&name, Access::ReadWrite).unwrap();
        let view = seg.map_all().unwrap();
        match role.as_str() {
            "adder" => {
                let rec: Record = view.read_pod(RECORD_AT).unwrap();
                say(&format!(
                    "record {} {} {}",
                    rec.id, rec.temperature, rec.flags
                ));
                let counter = view.atomic_u64(COUNTER_AT).unwrap();
                hear_exactly("go");
                for _ in 0..INCREMENTS {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                view.write_pod(
                    RECORD_AT + 100,
                    &Record {
                        id: u64::from(std::process::id()),
                        temperature: -40,
                        flags: 0xBEEF,
                        tag: *b"ok",
                    },
                )
                .unwrap();
                say("done");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let guard = Cleanup::new("pod");
    let seg = Segment::create(guard.name(), 4096).unwrap();
    let view = seg.map_all().unwrap();
    let rec = Record {
        id: 0x0123_4567_89AB_CDEF,
        temperature: -273,
        flags: 7,
        tag: *b"hi",
    };
    view.write_pod(RECORD_AT, &rec).unwrap();
    assert_eq!(view.read_pod::<Record>(RECORD_AT).unwrap(), rec);

    let name = guard.name();
    let mut a = Peer::role(
        "pod_and_atomics_across_processes",
        "adder",
        &[("NAME", name)],
    );
    let mut b = Peer::role(
        "pod_and_atomics_across_processes",
        "adder",
        &[("NAME", name)],
    );
    for p in [&mut a, &mut b] {
        assert_eq!(
            p.expect("record"),
            format!("{} -273 7", 0x0123_4567_89AB_CDEF_u64)
        );
    }
    a.send("go");
    b.send("go");
    let counter = view.atomic_u64(COUNTER_AT).unwrap();
    for _ in 0..INCREMENTS {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    a.expect("done");
    b.expect("done");
    let (a_id, b_id) = (a.id(), b.id());
    a.finish();
    b.finish();
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::SeqCst),
        3 * INCREMENTS
    );
    let theirs: Record = view.read_pod(RECORD_AT + 100).unwrap();
    assert!(theirs.id == u64::from(a_id) || theirs.id == u64::from(b_id));
    assert_eq!(
        (theirs.temperature, theirs.flags, theirs.tag),
        (-40, 0xBEEF, *b"ok")
    );
}

const RACERS: usize = 8;
const RACE_SIZE: u64 = 8192;
const SLOTS_AT: usize = 64;

/// N processes race `create_or_open` on one name: exactly one creates, all see the
/// creator's size, and after each wrote its slot all read the same bytes. Two rounds:
/// the second on the same name after everyone closed, which must start fresh.
#[test]
fn racing_create_or_open_exactly_one_creates() {
    if let Some(role) = common::role() {
        assert_eq!(role, "racer");
        let name = common::arg("NAME");
        let slot: usize = common::arg("SLOT").parse().unwrap();
        say("ready");
        hear_exactly("go");
        let (seg, disposition) = Segment::create_or_open(&name, RACE_SIZE).unwrap();
        let view = seg.map_all().unwrap();
        // Whoever created it, this process's slot must still be zero: a fresh segment
        // is zeroed, and nobody else writes this slot.
        let before: u64 = view.read_pod(SLOTS_AT + 8 * slot).unwrap();
        view.write_pod(SLOTS_AT + 8 * slot, &(slot as u64 + 1))
            .unwrap();
        view.atomic_u64(0)
            .unwrap()
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        say(&format!("{disposition:?} {} {before}", seg.size()));
        hear_exactly("read");
        let mut all = vec![0u8; seg.size() as usize];
        view.read_at(0, &mut all).unwrap();
        say(&format!("bytes {}", hex(&all[..SLOTS_AT + 8 * RACERS])));
        say(&format!(
            "rest-zero {}",
            all[SLOTS_AT + 8 * RACERS..].iter().all(|&b| b == 0)
        ));
        hear_exactly("quit");
        return;
    }
    let guard = Cleanup::new("race");
    for round in 0..2 {
        let mut racers: Vec<Peer> = (0..RACERS)
            .map(|i| {
                Peer::role(
                    "racing_create_or_open_exactly_one_creates",
                    "racer",
                    &[("NAME", guard.name()), ("SLOT", &i.to_string())],
                )
            })
            .collect();
        for r in &mut racers {
            r.expect("ready");
        }
        for r in &mut racers {
            r.send("go");
        }
        let mut created = 0;
        for r in &mut racers {
            let line = r.next_line();
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "round {round}: `{line}`");
            match parts[0] {
                "Created" => created += 1,
                "Opened" => {}
                other => panic!("round {round}: unexpected disposition {other}"),
            }
            assert_eq!(parts[1], RACE_SIZE.to_string(), "round {round}: size");
            assert_eq!(parts[2], "0", "round {round}: a fresh slot was not zero");
        }
        assert_eq!(created, 1, "round {round}: exactly one process creates");
        for r in &mut racers {
            r.send("read");
        }
        let mut expected = vec![0u8; SLOTS_AT + 8 * RACERS];
        expected[..8].copy_from_slice(&(RACERS as u64).to_ne_bytes());
        for i in 0..RACERS {
            expected[SLOTS_AT + 8 * i..SLOTS_AT + 8 * i + 8]
                .copy_from_slice(&(i as u64 + 1).to_ne_bytes());
        }
        for r in &mut racers {
            let bytes = unhex(&r.expect("bytes"));
            assert_eq!(bytes, expected, "round {round}: all agree on the bytes");
            assert_eq!(r.expect("rest-zero"), "true");
        }
        for mut r in racers {
            r.send("quit");
            r.finish();
        }
        // Everyone closed: the segment is gone, and the next round starts fresh.
        assert!(matches!(
            Segment::open(guard.name(), Access::Read),
            Err(OpenError::NotFound { .. })
        ));
    }
}

const CHURNERS: usize = 4;
const CHURN_ROUNDS: u32 = 300;

/// Processes repeatedly `create_or_open`, check, and close one name, so that creates,
/// opens and last-closes overlap in every order. While a process holds the segment,
/// the name must lead to the very memory it holds: a token it wrote through its own
/// handle is read back through a second handle opened by name. An opener that joined
/// an object a closing holder had just unlinked would fail this.
#[test]
fn create_open_close_churn_keeps_name_and_memory_together() {
    if let Some(role) = common::role() {
        assert_eq!(role, "churner");
        let name = common::arg("NAME");
        let slot: usize = common::arg("SLOT").parse().unwrap();
        let with_gc = common::arg("GC") == "1";
        say("ready");
        hear_exactly("go");
        let mut counts = [0u32; 2];
        for round in 0..CHURN_ROUNDS {
            if round == CHURN_ROUNDS / 3 {
                say("progress");
            }
            let (seg, disposition) = Segment::create_or_open(&name, 4096).unwrap();
            counts[usize::from(disposition == Disposition::Opened)] += 1;
            let view = seg.map_all().unwrap();
            if disposition == Disposition::Created {
                // Only this process writes its slot: a fresh segment has it zero.
                let old: u64 = view.read_pod(8 * slot).unwrap();
                assert_eq!(old, 0, "round {round}: created over old memory");
            }
            let token = (u64::from(std::process::id()) << 32) | u64::from(round + 1);
            view.write_pod(8 * slot, &token).unwrap();
            let again = match Segment::open(&name, Access::Read) {
                Ok(s) => s,
                Err(e) => panic!("round {round}: held by us, yet open by name failed: {e}"),
            };
            let seen: u64 = again.map_all().unwrap().read_pod(8 * slot).unwrap();
            assert_eq!(
                seen, token,
                "round {round} ({disposition:?}): the name leads to other memory than ours"
            );
            if with_gc && round % 25 == 0 {
                // Collecting dead segments (or looking for them) and inspecting a
                // live one never disturb a holder.
                let _ = Segment::collect_garbage(round % 50 == 0);
                match Segment::info(&name) {
                    Ok(_) | Err(OpenError::Unsupported { .. }) => {}
                    Err(e) => panic!("round {round}: info of a held segment: {e}"),
                }
            }
        }
        say(&format!("counts {} {}", counts[0], counts[1]));
        return;
    }
    churn_parent("create_open_close_churn_keeps_name_and_memory_together", 0);
}

/// As above, while the parent kills churners (SIGKILL / `TerminateProcess`) at
/// arbitrary points of their loop and starts new ones, and the churners now and
/// then collect garbage and inspect the segment: dead holders' segments must never
/// trap or mislead the living, and collecting them must never touch a live one.
#[test]
fn churn_with_killed_processes() {
    if common::role().is_some() {
        create_open_close_churn_keeps_name_and_memory_together();
        return;
    }
    churn_parent("churn_with_killed_processes", 6);
}

fn churn_parent(test: &str, kills: usize) {
    let guard = Cleanup::new("churn");
    let start = |i: usize| {
        let mut p = Peer::role(
            test,
            "churner",
            &[
                ("NAME", guard.name()),
                ("SLOT", &i.to_string()),
                ("GC", if kills > 0 { "1" } else { "0" }),
            ],
        );
        p.expect("ready");
        p
    };
    let mut peers: Vec<Peer> = (0..CHURNERS).map(start).collect();
    for p in &mut peers {
        p.send("go");
    }
    for k in 0..kills {
        // Kill one in the middle of its loop, and put a fresh one in its slot.
        let slot = k % CHURNERS;
        let fresh = start(slot);
        peers[slot].expect("progress");
        std::mem::replace(&mut peers[slot], fresh).kill();
        // Only now: the slot is the new process's alone.
        peers[slot].send("go");
    }
    for mut p in peers {
        p.expect("progress");
        let counts = p.expect("counts");
        let total: u32 = counts.split(' ').map(|c| c.parse::<u32>().unwrap()).sum();
        assert_eq!(total, CHURN_ROUNDS);
        p.finish();
    }
    assert!(matches!(
        Segment::open(guard.name(), Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}

/// Writes through a copy-on-write view stay in that view: another process and a
/// fresh view in this one see the original bytes, and another process's
/// copy-on-write writes never reach us.
#[test]
fn copy_on_write_stays_private() {
    if let Some(role) = common::role() {
        let name = common::arg("NAME");
        match role.as_str() {
            "reader" => {
                let seg = Segment::open(&name, Access::Read).unwrap();
                let mut buf = [0u8; 8];
                seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
                say(&format!("sees {}", c_str(&buf)));
            }
            "cow-writer" => {
                let seg = Segment::open(&name, Access::CopyOnWrite).unwrap();
                let view = seg.map_all().unwrap();
                assert_eq!(view.access(), Access::CopyOnWrite);
                view.write_at(0, b"child!\0").unwrap();
                let mut buf = [0u8; 8];
                view.read_at(0, &mut buf).unwrap();
                say(&format!("wrote {}", c_str(&buf)));
                // Stay mapped until the parent has looked.
                let _ = hear();
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let guard = Cleanup::new("cow");
    let seg = Segment::create(guard.name(), 4096).unwrap();
    seg.map_all().unwrap().write_at(0, b"origin\0").unwrap();

    let cow = seg.map_with(0, 0, Access::CopyOnWrite).unwrap();
    cow.write_at(0, b"privat\0").unwrap();
    let mut buf = [0u8; 8];
    cow.read_at(0, &mut buf).unwrap();
    assert_eq!(c_str(&buf), "privat", "a CoW view sees its own writes");
    seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(
        c_str(&buf),
        "origin",
        "a fresh view does not see CoW writes"
    );

    let mut r = Peer::role(
        "copy_on_write_stays_private",
        "reader",
        &[("NAME", guard.name())],
    );
    assert_eq!(r.expect("sees"), "origin");
    r.finish();

    let mut w = Peer::role(
        "copy_on_write_stays_private",
        "cow-writer",
        &[("NAME", guard.name())],
    );
    assert_eq!(w.expect("wrote"), "child!");
    seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(c_str(&buf), "origin", "another process's CoW writes leaked");
    w.send("bye");
    w.finish();
    // Our own CoW view still has its private bytes.
    cow.read_at(0, &mut buf).unwrap();
    assert_eq!(c_str(&buf), "privat");
}
