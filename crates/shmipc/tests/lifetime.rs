//! Lifetime: a segment lives while a process holds it (a `Segment` or a `View`) and
//! is gone when the last holder closes it or dies; `Persistence::UntilRemoved` opts
//! out. Portable except where marked (`/dev/shm` inspection, garbage collection).

mod common;

use common::{hear_exactly, listed, say, Cleanup, Peer};
use shmipc::{Access, CreateError, OpenError, Persistence, Segment};

const SIZE: u64 = 3 * 4096 + 17;

fn assert_gone(name: &str, why: &str) {
    match Segment::open(name, Access::Read) {
        Err(OpenError::NotFound { name: n }) => assert_eq!(n, name),
        Ok(_) => panic!("{why}: `{name}` can still be opened"),
        Err(e) => panic!("{why}: open of `{name}` failed oddly: {e}"),
    }
    if let Some(l) = listed(name) {
        assert!(!l, "{why}: `{name}` is still listed");
    }
    assert!(
        matches!(
            Segment::info(name),
            Err(OpenError::NotFound { .. } | OpenError::Unsupported { .. })
        ),
        "{why}: info still finds `{name}`"
    );
}

/// After a clean close the name itself is gone at once (no stale object waiting
/// for the next opener to clear it); then as [`assert_gone`].
fn assert_unlinked(name: &str, why: &str) {
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new("/dev/shm").join(name).exists(),
        "{why}: /dev/shm/{name} is still there"
    );
    assert_gone(name, why);
}

/// Creating again gives a fresh segment: created (not opened) and all zero.
fn assert_fresh_create(name: &str) {
    let (seg, d) = Segment::create_or_open(name, SIZE).unwrap();
    assert_eq!(
        d,
        shmipc::Disposition::Created,
        "a new create opened a leftover"
    );
    assert_eq!(seg.size(), SIZE);
    let mut buf = vec![0xAAu8; SIZE as usize];
    seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "a fresh segment is not zeroed");
}

/// The child roles used by the tests below.
fn holder_role(role: &str) {
    let name = common::arg("NAME");
    match role {
        // Creates, writes, and holds it until told to go (or killed).
        "creator" => {
            let seg = Segment::create(&name, SIZE).unwrap();
            seg.map_all().unwrap().write_at(0, b"alive").unwrap();
            say("holding");
            hear_exactly("exit");
        }
        // Opens and holds it until told to go (or killed).
        "opener" => {
            let seg = Segment::open(&name, Access::ReadWrite).unwrap();
            let mut buf = [0u8; 5];
            seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
            say(&format!("holding {}", String::from_utf8_lossy(&buf)));
            hear_exactly("exit");
        }
        // Creates and exits at once without running destructors: a crash.
        "crasher" => {
            let seg = Segment::create(&name, SIZE).unwrap();
            seg.map_all().unwrap().write_at(0, b"crash").unwrap();
            std::process::exit(0);
        }
        // Creates a persistent segment, writes, and exits normally.
        "persister" => {
            let seg = Segment::options()
                .size(SIZE)
                .persistence(Persistence::UntilRemoved)
                .create(&name)
                .unwrap();
            assert_eq!(seg.persistence(), Persistence::UntilRemoved);
            seg.map_all().unwrap().write_at(0, b"kept").unwrap();
            say("created");
        }
        // Opens, reads, reports and exits.
        "reader" => {
            let seg = Segment::open(&name, Access::Read).unwrap();
            let mut buf = [0u8; 5];
            seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
            say(&format!("read {}", String::from_utf8_lossy(&buf)));
        }
        other => panic!("unknown role {other}"),
    }
}

macro_rules! child_roles {
    () => {
        if let Some(role) = common::role() {
            holder_role(&role);
            return;
        }
    };
}

/// The last holder exits normally (its `Segment` drops): open says not found, the
/// listing does not show it, and create makes a fresh, zeroed one.
#[test]
fn last_holder_exits_normally() {
    child_roles!();
    let guard = Cleanup::new("exit");
    let mut c = Peer::role(
        "last_holder_exits_normally",
        "creator",
        &[("NAME", guard.name())],
    );
    c.expect("holding");
    if let Some(l) = listed(guard.name()) {
        assert!(l, "a held segment is not listed");
    }
    c.send("exit");
    c.finish();
    assert_unlinked(guard.name(), "after its only holder exited");
    assert_fresh_create(guard.name());
}

/// This process opens a child's segment and outlives the child: the segment lives
/// on while we hold it, and goes when we drop it.
#[test]
fn parent_as_last_holder_removes_it() {
    child_roles!();
    let guard = Cleanup::new("parent-last");
    let mut c = Peer::role(
        "parent_as_last_holder_removes_it",
        "creator",
        &[("NAME", guard.name())],
    );
    c.expect("holding");
    let seg = Segment::open(guard.name(), Access::ReadWrite).unwrap();
    assert_eq!(seg.size(), SIZE);
    assert_eq!(seg.persistence(), Persistence::UntilLastClose);
    c.send("exit");
    c.finish();
    let mut buf = [0u8; 5];
    seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"alive", "the creator's exit took the data with it");
    assert!(Segment::open(guard.name(), Access::Read).is_ok());
    drop(seg);
    assert_unlinked(
        guard.name(),
        "after the last holder (this process) closed it",
    );
}

/// A `View` alone keeps its segment alive after the `Segment` is dropped; dropping
/// the view then removes it.
#[test]
fn a_view_alone_keeps_the_segment() {
    child_roles!();
    let guard = Cleanup::new("view");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let view = seg.map(4096, 100).unwrap();
    seg.map_all().unwrap().write_at(0, b"alive").unwrap();
    drop(seg);
    let mut r = Peer::role(
        "a_view_alone_keeps_the_segment",
        "reader",
        &[("NAME", guard.name())],
    );
    assert_eq!(r.expect("read"), "alive");
    r.finish();
    view.write_at(0, b"still usable").unwrap();
    drop(view);
    assert_unlinked(guard.name(), "after its last view dropped");
}

/// A holder killed with SIGKILL (`Child::kill`) leaves nothing usable behind: open
/// says not found, the listing does not show it, create makes a fresh one.
#[test]
fn killed_holder_leaves_nothing() {
    child_roles!();
    let guard = Cleanup::new("killed");
    let mut c = Peer::role(
        "killed_holder_leaves_nothing",
        "creator",
        &[("NAME", guard.name())],
    );
    c.expect("holding");
    c.kill();
    if let Some(l) = listed(guard.name()) {
        assert!(!l, "a segment whose holders all died is listed");
    }
    assert_gone(guard.name(), "after its only holder was killed");
    assert_fresh_create(guard.name());
}

/// A holder that exits without running destructors (`process::exit`) is a crash
/// too; `create` (not only `open`) clears what it left.
#[test]
fn crashed_holder_then_create() {
    child_roles!();
    let guard = Cleanup::new("crashed");
    let c = Peer::role(
        "crashed_holder_then_create",
        "crasher",
        &[("NAME", guard.name())],
    );
    c.finish();
    let seg = Segment::create(guard.name(), SIZE).expect("create over a crashed holder's leftover");
    let mut buf = [0xFFu8; 5];
    seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0; 5], "create reused the dead segment's memory");
}

/// While a second holder lives, killing the creator changes nothing; killing the
/// second (last) holder too removes it.
#[test]
fn a_second_holder_keeps_it_alive() {
    child_roles!();
    let guard = Cleanup::new("second");
    let test = "a_second_holder_keeps_it_alive";
    let mut creator = Peer::role(test, "creator", &[("NAME", guard.name())]);
    creator.expect("holding");
    let mut opener = Peer::role(test, "opener", &[("NAME", guard.name())]);
    assert_eq!(opener.expect("holding"), "alive");
    let opener_pid = opener.id();
    creator.kill();
    // The opener still holds it: it is there, listed, with its data.
    if let Some(l) = listed(guard.name()) {
        assert!(l, "a held segment is not listed");
    }
    #[cfg(target_os = "linux")]
    assert_eq!(
        Segment::info(guard.name()).unwrap().holders,
        Some(vec![opener_pid]),
        "the live holders are the opener alone"
    );
    let _ = opener_pid;
    let mut r = Peer::role(test, "reader", &[("NAME", guard.name())]);
    assert_eq!(r.expect("read"), "alive");
    r.finish();
    opener.kill();
    assert_gone(guard.name(), "after both holders were killed");
}

/// `Persistence::UntilRemoved` survives its creator's exit, and is gone after
/// `remove`.
#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a memory segment cannot outlive its last handle (Unsupported; tests/windows.rs checks the error)"
)]
fn persistent_segment_survives_until_removed() {
    child_roles!();
    let guard = Cleanup::new("persist");
    let mut c = Peer::role(
        "persistent_segment_survives_until_removed",
        "persister",
        &[("NAME", guard.name())],
    );
    c.expect("created");
    c.finish();
    {
        let seg = Segment::open(guard.name(), Access::Read)
            .expect("a persistent segment died with its creator");
        assert_eq!(seg.persistence(), Persistence::UntilRemoved);
        let mut buf = [0u8; 4];
        seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"kept");
    }
    // Our close did not remove it either, nor does garbage collection.
    assert!(Segment::open(guard.name(), Access::Read).is_ok());
    if let Some(l) = listed(guard.name()) {
        assert!(l, "a persistent segment is not listed");
    }
    assert!(matches!(
        Segment::create(guard.name(), SIZE),
        Err(CreateError::AlreadyExists { .. })
    ));
    Segment::remove(guard.name()).unwrap();
    assert_unlinked(guard.name(), "after remove");
    assert!(matches!(
        Segment::remove(guard.name()),
        Err(shmipc::RemoveError::NotFound { .. })
    ));
}

/// `remove` takes the name away at once, but holders keep their memory (POSIX
/// `shm_unlink`); a new segment under the name is a different one.
#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a name cannot be removed, it goes with its last handle (tests/windows.rs checks the error)"
)]
fn remove_while_held_keeps_memory_of_holders() {
    child_roles!();
    let guard = Cleanup::new("rm-held");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let view = seg.map_all().unwrap();
    view.write_at(0, b"old").unwrap();
    Segment::remove(guard.name()).unwrap();
    assert_unlinked(guard.name(), "after remove");
    let new = Segment::create(guard.name(), SIZE).unwrap();
    new.map_all().unwrap().write_at(0, b"new").unwrap();
    let mut buf = [0u8; 3];
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"old");
    // Dropping the old, unnamed holder must not remove the new segment's name.
    drop(view);
    drop(seg);
    let again = Segment::open(guard.name(), Access::Read)
        .expect("closing the old segment removed the new one");
    again.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"new");
}

/// Garbage collection finds a segment whose holders all died (`dry_run` only
/// reports it) and removes it; it leaves live and persistent ones alone.
#[cfg(target_os = "linux")]
#[test]
fn collect_garbage_finds_and_removes_stale() {
    child_roles!();
    let live = Cleanup::new("gc-live");
    let kept = Cleanup::new("gc-kept");
    let _live_seg = Segment::create(live.name(), SIZE).unwrap();
    let _kept_seg = Segment::options()
        .size(SIZE)
        .persistence(Persistence::UntilRemoved)
        .create(kept.name())
        .unwrap();
    // Garbage collection is machine-wide: another program's `gc` may collect our
    // stale segment first. That can only make it vanish early, which is noticed
    // and the round repeated; a round undisturbed must show every step.
    let mut clean_rounds = 0;
    for _ in 0..5 {
        let stale = Cleanup::new("gc-stale");
        let path = std::path::Path::new("/dev/shm").join(stale.name());
        let mut c = Peer::role(
            "collect_garbage_finds_and_removes_stale",
            "creator",
            &[("NAME", stale.name())],
        );
        c.expect("holding");
        c.kill();
        assert_eq!(
            listed(stale.name()),
            Some(false),
            "a stale segment is listed"
        );
        let found = Segment::collect_garbage(true).unwrap();
        assert!(!found.iter().any(|n| n == live.name() || n == kept.name()));
        if !found.iter().any(|n| n == stale.name()) {
            assert!(!path.exists(), "dry run missed it: {found:?}");
            eprintln!("note: someone else collected our stale segment; again");
            continue;
        }
        let removed = Segment::collect_garbage(false).unwrap();
        assert!(!removed.iter().any(|n| n == live.name() || n == kept.name()));
        assert!(!path.exists(), "gc did not remove it");
        if removed.iter().any(|n| n == stale.name()) {
            let again = Segment::collect_garbage(true).unwrap();
            assert!(!again.iter().any(|n| n == stale.name()), "found twice");
            clean_rounds += 1;
            break;
        }
        eprintln!("note: someone else collected our stale segment; again");
    }
    assert_eq!(clean_rounds, 1, "no undisturbed round in five");
    assert!(Segment::open(live.name(), Access::Read).is_ok());
    assert!(Segment::open(kept.name(), Access::Read).is_ok());
}

/// A dry-run garbage collection running all the time must never let an opener join
/// a segment whose holders died: open says not found every time. (A dry run that
/// tested for holders by taking the exclusive lock made a waiting opener join the
/// dead segment once the lock was released.)
#[cfg(target_os = "linux")]
#[test]
fn dry_run_gc_never_revives_a_dead_segment() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    child_roles!();
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::clone(&stop);
    let gc = std::thread::spawn(move || {
        let mut runs = 0u64;
        while !spinning.load(Ordering::Relaxed) {
            Segment::collect_garbage(true).unwrap();
            runs += 1;
        }
        runs
    });
    let mut revived = 0;
    for _ in 0..100 {
        let guard = Cleanup::new("revive");
        let mut c = Peer::role(
            "dry_run_gc_never_revives_a_dead_segment",
            "creator",
            &[("NAME", guard.name())],
        );
        c.expect("holding");
        c.kill();
        for _ in 0..20 {
            match Segment::open(guard.name(), Access::Read) {
                Ok(_) => revived += 1,
                Err(OpenError::NotFound { .. }) => break,
                Err(e) => panic!("open: {e}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let runs = gc.join().unwrap();
    assert!(runs > 0);
    assert_eq!(revived, 0, "opened a dead segment {revived} times");
}
