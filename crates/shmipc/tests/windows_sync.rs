//! Windows-specific behaviour of the synchronization objects: the named ones are
//! Win32 kernel objects (`Local\NAME`), shared with programs that use the Win32 API
//! directly (`interop/sync_peer.c`, built by `ci/windows.sh`, which sets
//! `SHMIPC_INTEROP_DIR`; without it the interop test says so and passes, unless
//! `SHMIPC_REQUIRE_INTEROP` is set). The portable multi-process tests are in
//! `tests/sync.rs`, which runs here too.
#![cfg(windows)]

#[path = "common/spawn.rs"]
#[allow(dead_code)]
mod spawn;
#[allow(dead_code)] // shared with tests/windows.rs, which uses all of it
mod windows_support;
use spawn::SpawnRetrying;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use shmipc::sync::{
    EventReset, LockTimeoutError, NamedEvent, NamedMutex, NamedSemaphore, ObjectError,
    ObjectOptions,
};
use shmipc::{
    inspect, Contents, CreateError, Disposition, Kind, LayoutError, ObjectState, Persistence,
    Segment,
};
use windows_support::{unique, wait_exit, Lines, PATIENCE};

fn interop_program(name: &str) -> Option<PathBuf> {
    let Ok(dir) = std::env::var("SHMIPC_INTEROP_DIR") else {
        assert!(
            std::env::var_os("SHMIPC_REQUIRE_INTEROP").is_none(),
            "SHMIPC_INTEROP_DIR is not set"
        );
        eprintln!("skipped: set SHMIPC_INTEROP_DIR to the folder of the built interop/ programs (ci/windows.sh does)");
        return None;
    };
    let path = PathBuf::from(dir).join(format!("{name}.exe"));
    assert!(path.is_file(), "{} is missing", path.display());
    Some(path)
}

/// A C program takes a unit of our semaphore, locks our mutex (after we let go),
/// sets our event and exits holding the mutex: Win32 abandons it, and our next
/// locker hears `OwnerDied` (`WAIT_ABANDONED`) with the lock held.
#[test]
fn a_win32_program_shares_the_objects_and_its_abandoned_mutex_is_owner_died() {
    let Some(exe) = interop_program("sync_peer") else {
        return;
    };
    let base = unique("peer");
    let m = NamedMutex::create(&format!("{base}-mutex")).unwrap();
    let ev = NamedEvent::create(&format!("{base}-event"), EventReset::Manual, false).unwrap();
    let sem = NamedSemaphore::create(&format!("{base}-sem"), 0, 1).unwrap();
    let guard = m.lock().unwrap();
    let mut peer = Command::new(exe)
        .arg(&base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn_retrying();
    let lines = Lines::of(&mut peer);
    sem.post().unwrap();
    // While we hold the mutex the peer cannot have set the event.
    assert!(ev.wait_timeout(Duration::from_millis(50)).is_err());
    assert!(!ev.is_set());
    drop(guard);
    ev.wait_timeout(PATIENCE).expect("the peer sets the event");
    lines.expect("locked");
    assert!(wait_exit(&mut peer).success());
    assert_eq!(sem.value(), 0, "the peer took the unit");
    match m.lock_timeout(PATIENCE) {
        Err(LockTimeoutError::OwnerDied(g)) => g.mark_consistent(),
        other => panic!("expected OwnerDied from the abandoned mutex, got {other:?}"),
    }
    drop(m.lock().expect("consistent again"));
}

#[test]
fn persistence_until_removed_is_refused_with_a_reason() {
    let opts = ObjectOptions::new().persistence(Persistence::UntilRemoved);
    let name = unique("persist");
    let err = NamedMutex::create_with(&name, &opts).unwrap_err();
    assert!(
        matches!(err, ObjectError::Create(CreateError::Unsupported { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("last handle"), "{err}");
    assert!(NamedSemaphore::create_with(&name, 0, 1, &opts).is_err());
    assert!(NamedEvent::create_with(&name, EventReset::Auto, false, &opts).is_err());
    // Nothing was left behind under the name.
    assert!(matches!(NamedMutex::open(&name), Err(ObjectError::Open(_))));
}

#[test]
fn kernel_limits_and_kinds_are_reported() {
    let name = unique("limits");
    assert!(matches!(
        NamedSemaphore::create(&name, 0, u32::MAX),
        Err(ObjectError::InvalidParameter { .. })
    ));
    let sem = NamedSemaphore::create(&name, 2, 5).unwrap();
    assert_eq!((sem.value(), sem.max()), (2, 5));
    let (opened, disp) = NamedSemaphore::create_or_open(&name, 0, 5).unwrap();
    assert_eq!(disp, Disposition::Opened);
    assert_eq!(opened.value(), 2);
    // The name is a semaphore: a mutex, an event or a segment cannot have it.
    match NamedMutex::open(&name) {
        Err(ObjectError::Invalid {
            source: LayoutError::Kind { found, .. },
            ..
        }) => assert_eq!(found, "semaphore"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        NamedMutex::create(&name),
        Err(ObjectError::Create(CreateError::AlreadyExists { .. }))
    ));
    assert!(matches!(
        NamedEvent::create_or_open(&name, EventReset::Auto, false),
        Err(ObjectError::Invalid { .. })
    ));
    assert!(Segment::create(&name, 4096).is_err());

    // An event's mode and state come from the kernel, without consuming it.
    let ev_name = unique("limits-ev");
    let ev = NamedEvent::create(&ev_name, EventReset::Auto, true).unwrap();
    let opened = NamedEvent::open(&ev_name).unwrap();
    assert_eq!(opened.reset_mode(), EventReset::Auto);
    assert!(opened.is_set());
    assert!(ev.is_set(), "is_set must not take an auto-reset event");
    opened.wait_timeout(PATIENCE).unwrap();
    assert!(!ev.is_set());
}

#[test]
fn inspect_reads_kernel_objects_without_taking_them() {
    let name = unique("inspect-m");
    let m = NamedMutex::create(&name).unwrap();
    let state = |n: &str| match inspect(n).unwrap() {
        Contents::Object { state: Some(s), .. } => s,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        state(&name),
        ObjectState::Mutex {
            locked: false,
            consistent: true,
            ..
        }
    ));
    let g = m.lock().unwrap();
    assert!(matches!(
        state(&name),
        ObjectState::Mutex {
            locked: true,
            owner_alive: Some(true),
            consistent: true,
            ..
        }
    ));
    drop(g);
    let ev = unique("inspect-e");
    let e = NamedEvent::create(&ev, EventReset::Auto, true).unwrap();
    assert_eq!(
        state(&ev),
        ObjectState::Event {
            set: true,
            reset: EventReset::Auto
        }
    );
    assert!(e.is_set(), "inspect must not take an auto-reset event");
    assert!(matches!(
        inspect(&ev).unwrap(),
        Contents::Object {
            kind: Kind::Event,
            ..
        }
    ));
}
