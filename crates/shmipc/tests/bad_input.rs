//! Bad input gives a clear error naming the thing, never a panic, a crash or a
//! leaked segment: names, sizes, map ranges, accesses past a view, writes through
//! read views, misaligned atomics. Portable.

mod common;

use common::{listed, Cleanup};
use shmipc::{
    AccessError, CreateError, FlushError, MapError, Name, NameError, OpenError, RemoveError,
    Segment,
};

/// Whether an error is the reason expected for a bad name.
type Reason = fn(&NameError) -> bool;

fn bad_names() -> Vec<(String, Reason)> {
    vec![
        (String::new(), |e| matches!(e, NameError::Empty)),
        ("/".into(), |e| matches!(e, NameError::Empty)),
        (".".into(), |e| matches!(e, NameError::Dots { .. })),
        ("..".into(), |e| matches!(e, NameError::Dots { .. })),
        ("/..".into(), |e| matches!(e, NameError::Dots { .. })),
        ("a/b".into(), |e| matches!(e, NameError::BadChar { .. })),
        ("../etc/passwd".into(), |e| {
            matches!(e, NameError::BadChar { .. })
        }),
        ("//a".into(), |e| matches!(e, NameError::BadChar { .. })),
        ("a\\b".into(), |e| matches!(e, NameError::BadChar { .. })),
        ("a\0b".into(), |e| matches!(e, NameError::BadChar { .. })),
        ("a\nb".into(), |e| matches!(e, NameError::BadChar { .. })),
        ("tab\there".into(), |e| {
            matches!(e, NameError::BadChar { .. })
        }),
        (".shmipc-tmp-1".into(), |e| {
            matches!(e, NameError::Reserved { .. })
        }),
        ("x".repeat(Name::MAX_LEN + 1), |e| {
            matches!(e, NameError::TooLong { .. })
        }),
        ("é".repeat(Name::MAX_LEN / 2 + 1), |e| {
            matches!(e, NameError::TooLong { .. })
        }),
    ]
}

/// Every operation that takes a name refuses every kind of bad name with the
/// matching reason, and leaves nothing behind.
#[test]
fn every_kind_of_bad_name_is_refused_everywhere() {
    for (name, is_expected) in bad_names() {
        let shown = format!("{name:?}");
        let check = |what: &str, e: &NameError| {
            assert!(is_expected(e), "{what}({shown}): wrong reason {e:?}");
            let msg = e.to_string();
            assert!(!msg.is_empty() && msg.len() < 400, "{what}({shown}): {msg}");
        };
        match Segment::create(&name, 4096) {
            Err(CreateError::InvalidName(e)) => check("create", &e),
            other => panic!("create({shown}) = {other:?}"),
        }
        match Segment::create_or_open(&name, 4096) {
            Err(CreateError::InvalidName(e)) => check("create_or_open", &e),
            other => panic!("create_or_open({shown}) = {other:?}"),
        }
        match Segment::open(&name, shmipc::Access::Read) {
            Err(OpenError::InvalidName(e)) => check("open", &e),
            other => panic!("open({shown}) = {other:?}"),
        }
        match Segment::remove(&name) {
            Err(RemoveError::InvalidName(e)) => check("remove", &e),
            other => panic!("remove({shown}) = {other:?}"),
        }
        match Segment::info(&name) {
            Err(OpenError::InvalidName(e)) => check("info", &e),
            other => panic!("info({shown}) = {other:?}"),
        }
    }
}

/// The longest allowed name works end to end; one byte more is refused.
#[test]
fn longest_name_works() {
    let base = common::unique_name("long");
    let name = format!("{base}{}", "x".repeat(Name::MAX_LEN - base.len()));
    assert_eq!(name.len(), Name::MAX_LEN);
    let guard = Cleanup::guard(&name);
    let seg = Segment::create(guard.name(), 100).unwrap();
    assert_eq!(seg.name(), Some(name.as_str()));
    assert!(Segment::open(&name, shmipc::Access::Read).is_ok());
    let longer = format!("{name}y");
    assert!(matches!(
        Segment::create(&longer, 100),
        Err(CreateError::InvalidName(NameError::TooLong { .. }))
    ));
}

/// A leading `/` is the POSIX spelling of the same name.
#[test]
fn leading_slash_is_the_same_name() {
    let guard = Cleanup::new("slash");
    let seg = Segment::create(&format!("/{}", guard.name()), 100).unwrap();
    assert_eq!(seg.name(), Some(guard.name()));
    assert!(Segment::open(guard.name(), shmipc::Access::Read).is_ok());
}

/// Sizes 0, `u64::MAX` and just past `i64::MAX` are refused before anything is made.
#[test]
fn impossible_sizes_are_refused() {
    let guard = Cleanup::new("size");
    for size in [0, u64::MAX, i64::MAX as u64 + 1] {
        match Segment::create(guard.name(), size) {
            Err(CreateError::InvalidSize { name, size: s, .. }) => {
                assert_eq!((name.as_str(), s), (guard.name(), size));
            }
            other => panic!("create(size {size}) = {other:?}"),
        }
        assert!(matches!(
            Segment::create_or_open(guard.name(), size),
            Err(CreateError::InvalidSize { .. })
        ));
        assert!(matches!(
            Segment::options().size(size).create_unnamed(),
            Err(CreateError::InvalidSize { .. })
        ));
        assert!(matches!(
            Segment::open(guard.name(), shmipc::Access::Read),
            Err(OpenError::NotFound { .. })
        ));
        if let Some(l) = listed(guard.name()) {
            assert!(!l);
        }
    }
}

/// A mode with bits beyond read/write (execute, set-id, sticky, or beyond 0o7777)
/// is refused at create time, naming the mode and the bits allowed, for a segment
/// (memory or file), an object and a channel, and nothing is made (before: the
/// bits were silently dropped and the segment made with the rest).
#[test]
fn modes_beyond_read_write_are_refused() {
    let guard = Cleanup::new("mode");
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o700, 0o755, 0o4600, 0o1600, 0o10600, u32::MAX] {
        let plain = Segment::options().size(4096).mode(mode);
        let file = dir.path().join("backing");
        for (what, r) in [
            ("create", plain.create(guard.name())),
            (
                "create_or_open",
                plain.create_or_open(guard.name()).map(|(s, _)| s),
            ),
            ("file", plain.clone().file(&file).create(guard.name())),
        ] {
            match r {
                Err(e @ CreateError::InvalidMode { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(guard.name())
                            && msg.contains(&format!("{mode:#o}"))
                            && msg.contains("0o666"),
                        "{what} {mode:#o}: {msg}"
                    );
                }
                other => panic!("{what} (mode {mode:#o}) = {other:?}"),
            }
        }
        assert!(!file.exists(), "mode {mode:#o}: a backing file was made");
        let opts = shmipc::sync::ObjectOptions::new().mode(mode);
        assert!(
            matches!(
                shmipc::sync::NamedSemaphore::create_with(guard.name(), 0, 1, &opts),
                Err(shmipc::sync::ObjectError::Create(
                    CreateError::InvalidMode { .. }
                ))
            ),
            "semaphore, mode {mode:#o}"
        );
        assert!(
            matches!(
                shmipc::channel::pubsub::Options::new()
                    .mode(mode)
                    .create_publisher(guard.name()),
                Err(shmipc::channel::ChannelError::Create(
                    CreateError::InvalidMode { .. }
                ))
            ),
            "pubsub, mode {mode:#o}"
        );
        assert!(matches!(
            Segment::open(guard.name(), shmipc::Access::Read),
            Err(OpenError::NotFound { .. })
        ));
    }
    // Every read/write bit is still taken.
    Segment::options()
        .size(4096)
        .mode(0o666)
        .create(guard.name())
        .unwrap();
}

/// `create` refuses a name that is live, and `create_or_open` refuses a live
/// segment smaller than asked (saying both sizes).
#[test]
fn existing_names_are_reported() {
    let guard = Cleanup::new("exists");
    let _seg = Segment::create(guard.name(), 4096).unwrap();
    match Segment::create(guard.name(), 4096) {
        Err(e @ CreateError::AlreadyExists { .. }) => {
            assert!(e.to_string().contains(guard.name()), "{e}");
        }
        other => panic!("second create = {other:?}"),
    }
    match Segment::create_or_open(guard.name(), 8192) {
        Err(CreateError::TooSmall {
            existing,
            requested,
            ..
        }) => assert_eq!((existing, requested), (4096, 8192)),
        other => panic!("create_or_open bigger = {other:?}"),
    }
    let (s, d) = Segment::create_or_open(guard.name(), 100).unwrap();
    assert_eq!((d, s.size()), (shmipc::Disposition::Opened, 4096));
    assert!(matches!(
        Segment::open(&common::unique_name("never"), shmipc::Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}

const SIZE: u64 = 3 * 4096 + 100;

/// Ranges past the end, empty ranges at the end, and overflowing `offset + len` are
/// errors that name the segment; everything inside maps, at any alignment.
#[test]
fn map_ranges_are_checked() {
    let guard = Cleanup::new("ranges");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let out_of_range = |offset: u64, len: usize| match seg.map(offset, len) {
        Err(e @ MapError::OutOfRange { .. }) => {
            assert!(e.to_string().contains(guard.name()), "{e}");
        }
        other => panic!("map({offset}, {len}) = {other:?}"),
    };
    out_of_range(SIZE, 0); // len 0 at the very end: nothing to map
    out_of_range(SIZE, 1);
    out_of_range(SIZE - 1, 2);
    out_of_range(0, SIZE as usize + 1);
    out_of_range(SIZE + 4096, 0);
    out_of_range(u64::MAX, 0);
    out_of_range(1 << 62, 1);
    let overflow = |offset: u64, len: usize| match seg.map(offset, len) {
        Err(e @ MapError::Overflow { .. }) => {
            assert!(e.to_string().contains(guard.name()), "{e}");
        }
        other => panic!("map({offset}, {len}) = {other:?}"),
    };
    overflow(u64::MAX, 1);
    overflow(u64::MAX - 10, 11);
    overflow(1, usize::MAX);
    // Inside: at the end, unaligned, whole.
    assert_eq!(seg.map(SIZE - 1, 0).unwrap().len(), 1);
    assert_eq!(seg.map(SIZE - 10, 10).unwrap().len(), 10);
    let v = seg.map(4097, 0).unwrap();
    assert_eq!((v.offset(), v.len() as u64), (4097, SIZE - 4097));
    assert_eq!(seg.map_all().unwrap().len() as u64, SIZE);
    assert_eq!(seg.map(0, SIZE as usize).unwrap().len() as u64, SIZE);
}

/// Reads, writes, plain data, atomics and flushes past the end of a view are
/// errors, including lengths that overflow.
#[test]
fn view_accesses_past_the_end_are_errors() {
    let guard = Cleanup::new("bounds");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let view = seg.map(100, 1000).unwrap();
    let n = view.len();
    assert_eq!(n, 1000);
    let oob = |r: Result<(), AccessError>| {
        assert!(
            matches!(r, Err(AccessError::OutOfBounds { view_len: 1000, .. })),
            "{r:?}"
        );
    };
    let mut two = [0u8; 2];
    oob(view.read_at(n - 1, &mut two));
    oob(view.read_at(n, &mut [0u8; 1]));
    oob(view.read_at(usize::MAX, &mut two));
    oob(view.write_at(n - 1, &two));
    oob(view.write_at(usize::MAX, &[1]));
    oob(view.fill(n - 10, 11, 0));
    oob(view.fill(1, usize::MAX, 0));
    oob(view.read_pod::<u64>(n - 7).map(|_| ()));
    oob(view.write_pod(n - 3, &0u32));
    oob(view.atomic_u64(n).map(|_| ()));
    oob(view.atomic_u32(usize::MAX - 1).map(|_| ()));
    assert!(matches!(
        view.flush_range(n, 1),
        Err(FlushError::Range(AccessError::OutOfBounds { .. }))
    ));
    // The last bytes are reachable; empty accesses at the end are fine.
    view.write_at(n - 2, &[7, 8]).unwrap();
    view.read_at(n - 2, &mut two).unwrap();
    assert_eq!(two, [7, 8]);
    view.read_at(n, &mut []).unwrap();
    view.flush_range(0, n).unwrap();
}

/// Writing through a read view is an error, not a crash; a read handle cannot map
/// a writable view but can map a private copy-on-write one.
#[test]
fn read_only_is_enforced_without_crashing() {
    let guard = Cleanup::new("ro");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    seg.map_all().unwrap().write_at(0, b"data").unwrap();

    let reader = Segment::open(guard.name(), shmipc::Access::Read).unwrap();
    assert_eq!(reader.access(), shmipc::Access::Read);
    let view = reader.map_all().unwrap();
    assert_eq!(view.write_at(0, b"x"), Err(AccessError::ReadOnly));
    assert_eq!(view.fill(0, 1, 0), Err(AccessError::ReadOnly));
    assert_eq!(view.write_pod(0, &1u64), Err(AccessError::ReadOnly));
    assert_eq!(view.atomic_u32(0).map(|_| ()), Err(AccessError::ReadOnly));
    assert_eq!(view.atomic_u64(8).map(|_| ()), Err(AccessError::ReadOnly));
    let mut buf = [0u8; 4];
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"data");

    match reader.map_with(0, 0, shmipc::Access::ReadWrite) {
        Err(e @ MapError::ReadOnly { .. }) => assert!(e.to_string().contains(guard.name())),
        other => panic!("map_with(ReadWrite) on a read handle = {other:?}"),
    }
    let cow = reader.map_with(0, 0, shmipc::Access::CopyOnWrite).unwrap();
    cow.write_at(0, b"mine").unwrap();
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"data");

    // A read view of a read-write handle is read-only too.
    let ro = seg.map_with(0, 0, shmipc::Access::Read).unwrap();
    assert_eq!(ro.write_at(0, b"x"), Err(AccessError::ReadOnly));
}

/// Atomics need their natural alignment in the segment, wherever the view starts.
#[test]
fn misaligned_atomics_are_refused() {
    let guard = Cleanup::new("align");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let view = seg.map_all().unwrap();
    assert_eq!(
        view.atomic_u64(4).map(|_| ()),
        Err(AccessError::Misaligned {
            offset: 4,
            align: 8
        })
    );
    assert_eq!(
        view.atomic_u32(2).map(|_| ()),
        Err(AccessError::Misaligned {
            offset: 2,
            align: 4
        })
    );
    assert!(view.atomic_u64(16).is_ok());
    // A view that starts at segment offset 1: its offset 7 is segment offset 8.
    let odd = seg.map(1, 0).unwrap();
    assert!(matches!(
        odd.atomic_u64(0),
        Err(AccessError::Misaligned { .. })
    ));
    odd.atomic_u64(7)
        .unwrap()
        .store(0xDEAD_BEEF, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        view.atomic_u64(8)
            .unwrap()
            .load(std::sync::atomic::Ordering::SeqCst),
        0xDEAD_BEEF
    );
    assert!(odd.atomic_u32(3).is_ok());
    assert!(odd.atomic_u32(1).is_err());
}

/// Error messages say what happened to which segment and what to do.
#[test]
fn error_messages_name_the_segment_and_a_remedy() {
    let name = common::unique_name("msg");
    let e = Segment::open(&name, shmipc::Access::Read).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&name) && msg.contains("create"), "{msg}");
    let e = Segment::remove(&name).unwrap_err();
    assert!(e.to_string().contains(&name), "{e}");
    let e = Segment::create(&name, 0).unwrap_err();
    assert!(e.to_string().contains(&name), "{e}");
}

/// A timeout too long to add to `Instant::now()` (`Duration::MAX`, as callers of
/// std's `recv_timeout` write for "no limit") waits without a limit, as std does:
/// never a panic on the overflow. Each call here finds its message or room at once,
/// so a panic is the only way for it to fail.
#[test]
fn a_timeout_too_long_to_represent_waits_without_a_limit() {
    use shmipc::channel::{mpmc, pubsub, rpc, spsc};
    use shmipc::sync::{EventReset, NamedEvent, NamedMutex, NamedSemaphore};
    use std::time::Duration;
    const FOREVER: Duration = Duration::MAX;

    let name = Cleanup::new("huge-timeout-spsc");
    let mut tx = spsc::Producer::create(name.name(), 4, 64).unwrap();
    let mut rx = spsc::Consumer::open(name.name()).unwrap();
    tx.send_timeout(b"one", FOREVER).unwrap();
    tx.loan_timeout(3, FOREVER).unwrap().send();
    assert_eq!(&*rx.recv_timeout(FOREVER).unwrap(), b"one");
    let mut buf = Vec::new();
    rx.recv_into_timeout(&mut buf, FOREVER).unwrap();
    assert_eq!(buf.len(), 3);

    let name = Cleanup::new("huge-timeout-tspsc");
    let mut tx = spsc::TypedProducer::<u64>::create(name.name(), 4).unwrap();
    let mut rx = spsc::TypedConsumer::<u64>::open(name.name()).unwrap();
    tx.send_timeout(7, FOREVER).unwrap();
    assert_eq!(rx.recv_timeout(FOREVER).unwrap(), 7);

    let name = Cleanup::new("huge-timeout-pubsub");
    let mut publisher = pubsub::Publisher::create(name.name(), 4, 64).unwrap();
    let sub = pubsub::Subscriber::open(name.name()).unwrap();
    publisher.send_timeout(b"two", FOREVER).unwrap();
    publisher.loan_timeout(3, FOREVER).unwrap().send();
    assert_eq!(&*sub.recv_timeout(FOREVER).unwrap(), b"two");
    sub.recv_into_timeout(&mut buf, FOREVER).unwrap();
    assert_eq!(buf.len(), 3);

    let name = Cleanup::new("huge-timeout-mpmc");
    let mut tx = mpmc::Producer::create(name.name(), 4, 64).unwrap();
    let rx = mpmc::Consumer::open(name.name()).unwrap();
    tx.send_timeout(b"three", FOREVER).unwrap();
    tx.loan_timeout(3, FOREVER).unwrap().send().unwrap();
    assert_eq!(&*rx.recv_timeout(FOREVER).unwrap(), b"three");
    rx.recv_into_timeout(&mut buf, FOREVER).unwrap();
    assert_eq!(buf.len(), 3);

    let name = Cleanup::new("huge-timeout-rpc");
    let server = rpc::Server::create(name.name(), 4, 64).unwrap();
    let mut client = rpc::Client::open(name.name()).unwrap();
    let id = client
        .loan_request_timeout(4, FOREVER)
        .map(|mut loan| {
            loan.copy_from_slice(b"ping");
            loan
        })
        .unwrap()
        .send()
        .unwrap();
    let req = server.recv_timeout(FOREVER).unwrap();
    server.respond_timeout(&req, b"pong", FOREVER).unwrap();
    drop(req);
    assert_eq!(&*client.recv_response(id, FOREVER).unwrap(), b"pong");
    let id = client.send_request(b"again").unwrap();
    let req = server.recv_timeout(FOREVER).unwrap();
    server.respond_timeout(&req, b"back", FOREVER).unwrap();
    drop(req);
    assert_eq!(&*client.recv_response(id, FOREVER).unwrap(), b"back");

    let name = Cleanup::new("huge-timeout-mutex");
    let m = NamedMutex::create(name.name()).unwrap();
    drop(m.lock_timeout(FOREVER).unwrap());
    let name = Cleanup::new("huge-timeout-sem");
    let s = NamedSemaphore::create(name.name(), 1, 1).unwrap();
    s.wait_timeout(FOREVER).unwrap();
    let name = Cleanup::new("huge-timeout-event");
    let e = NamedEvent::create(name.name(), EventReset::Manual, true).unwrap();
    e.wait_timeout(FOREVER).unwrap();
}
