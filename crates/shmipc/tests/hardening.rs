//! Issue 10 in the library: objects are never seen half made, however their
//! creator dies; segments are backed at creation; reads and inspection never map
//! (so never die by SIGBUS); and the SIGBUS handler names the segment when a
//! mapping loses its memory under the program.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::{role, unique_name, wait_until, Cleanup, Peer};
use shmipc::channel::spsc;
use shmipc::sync::{EventReset, ObjectOptions};
use shmipc::{
    inspect, Access, Contents, NamedEvent, NamedMutex, NamedSemaphore, Persistence, Segment,
};

fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

fn names_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Creates persistent objects of every kind, one after another, until killed.
fn create_forever(prefix: &str) {
    let opts = ObjectOptions::new().persistence(Persistence::UntilRemoved);
    let chan = spsc::Options::new().persistence(Persistence::UntilRemoved);
    for i in 0u64.. {
        let name = format!("{prefix}{i}");
        match i % 4 {
            0 => drop(NamedMutex::create_with(&name, &opts).unwrap()),
            1 => drop(NamedSemaphore::create_with(&name, 1, 9, &opts).unwrap()),
            2 => drop(NamedEvent::create_with(&name, EventReset::Manual, false, &opts).unwrap()),
            _ => drop(chan.create_producer(&name).unwrap()),
        }
        if i == 8 {
            common::say("creating");
        }
    }
}

/// A creator killed at any moment leaves every name either absent or a complete
/// object of its kind: never a zero-filled one that later users refuse (before:
/// about half the kills aimed at creation left one).
#[test]
fn objects_never_appear_half_made_whenever_the_creator_dies() {
    if let Some(r) = role() {
        assert_eq!(r, "creator");
        create_forever(&common::arg("PREFIX"));
        return;
    }
    let base = unique_name("halfmade");
    let clean = || {
        for n in names_with(&base) {
            let _ = Segment::remove(&n);
        }
    };
    for round in 0..12 {
        let prefix = format!("{base}-{round}-");
        let mut child = Peer::role(
            "objects_never_appear_half_made_whenever_the_creator_dies",
            "creator",
            &[("PREFIX", &prefix)],
        );
        child.expect("creating");
        // Let it run into a later creation, a different point each round.
        let target = 9 + round * 3;
        wait_until("more creations", || names_with(&prefix).len() >= target);
        child.kill();
        for name in names_with(&prefix) {
            let i: u64 = name[prefix.len()..].parse().unwrap_or(u64::MAX);
            let ok = match i % 4 {
                0 => NamedMutex::open(&name).map(drop).map_err(|e| e.to_string()),
                1 => NamedSemaphore::open(&name)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                2 => NamedEvent::open(&name).map(drop).map_err(|e| e.to_string()),
                _ => spsc::Consumer::open(&name)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = ok {
                clean();
                panic!("round {round}: `{name}` is half made: {e}");
            }
        }
    }
    clean();
}

/// Segments are backed at creation (pages allocated), so a full /dev/shm is an
/// error then, never a SIGBUS at a later touch; `reserve(false)` stays sparse.
#[test]
fn segments_are_backed_at_creation_unless_sparse_is_asked() {
    let guard = Cleanup::new("backed");
    let size = 1u64 << 20;
    let _seg = Segment::create(guard.name(), size).unwrap();
    let st = rustix::fs::stat(shm_path(guard.name())).unwrap();
    assert!(
        st.st_blocks as u64 * 512 >= size,
        "{} bytes allocated of {size}",
        st.st_blocks * 512
    );
    let sparse = Cleanup::new("sparse");
    let _seg = Segment::options()
        .size(size)
        .reserve(false)
        .create(sparse.name())
        .unwrap();
    let st = rustix::fs::stat(shm_path(sparse.name())).unwrap();
    assert!((st.st_blocks as u64 * 512) < size);
}

/// `read_at`, `write_at` and `inspect` never map: on a segment truncated under an
/// open handle they report a short read or an error, and inspection still works.
#[test]
fn reads_writes_and_inspection_of_a_truncated_segment_never_fault() {
    let guard = Cleanup::new("truncated");
    let seg = Segment::create(guard.name(), 1 << 16).unwrap();
    seg.write_at(100, b"hello").unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(seg.read_at(100, &mut buf).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(guard.name()))
        .unwrap()
        .set_len(50)
        .unwrap();
    assert_eq!(seg.read_at(100, &mut buf).unwrap(), 0);
    // A write past the new end is refused and does not grow the object back.
    let err = seg.write_at(100, b"x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(guard.name()) && msg.contains("truncated"),
        "{msg}"
    );
    let st = rustix::fs::stat(shm_path(guard.name())).unwrap();
    assert_eq!(st.st_size, 50, "the refused write grew the object");
    seg.write_at(40, b"0123456789").unwrap();
    assert_eq!(inspect(guard.name()).unwrap(), Contents::Plain);
    let reader = Segment::open(guard.name(), Access::Read).unwrap();
    assert_eq!(reader.size(), 50);
    assert!(reader.write_at(0, b"x").is_err(), "read-only handle wrote");
    assert!(seg.read_at(1 << 17, &mut buf).is_err());
}

/// Touches a mapping of a segment truncated meanwhile, with or without the handler.
fn touch_truncated(name: &str, handler: bool) {
    if handler {
        shmipc::os::unix::install_sigbus_handler().unwrap();
    }
    let seg = Segment::create(name, 1 << 16).unwrap();
    let view = seg.map_all().unwrap();
    view.write_at(8192, b"before").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut buf = [0u8; 6];
    let _ = view.read_at(8192, &mut buf); // SIGBUS here
    std::process::exit(3);
}

/// With the handler installed, a SIGBUS in a shmipc mapping is one line naming the
/// segment and exit status 1; without it, the process dies by SIGBUS (the hazard
/// the handler exists for).
#[test]
fn sigbus_handler_names_the_segment() {
    if let Some(r) = role() {
        touch_truncated(&common::arg("NAME"), r == "with-handler");
        return;
    }
    for (role, handler) in [("with-handler", true), ("without", false)] {
        let guard = Cleanup::new("sigbus");
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["sigbus_handler_names_the_segment", "--exact", "--nocapture"])
            .env(common::ROLE_ENV, role)
            .env("SHMIPC_TEST_NAME", guard.name())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if handler {
            assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
            let line = stderr
                .lines()
                .find(|l| l.contains("SIGBUS"))
                .unwrap_or_else(|| panic!("no SIGBUS line: {stderr}"));
            assert!(
                line.contains(&format!("segment `{}`", guard.name())) && line.contains("byte 8192"),
                "{line}"
            );
        } else {
            assert_eq!(out.status.signal(), Some(7), "{:?}: {stderr}", out.status);
        }
    }
}

/// What an older shmipc left when its creator was killed between naming an object
/// and writing its header (shmipc's mark, persistent, zero-filled, without the mark
/// of a shmipc that names objects complete).
fn plant_half_made(name: &str) {
    use rustix::fs::{self as rfs, Mode, OFlags};
    let fd = rfs::open(
        shm_path(name),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .unwrap();
    rfs::fchmod(&fd, Mode::from_raw_mode(0o1600)).unwrap();
    rfs::ftruncate(&fd, 1 << 20).unwrap();
}

type CreateChannel = dyn Fn(&str) -> Result<(), shmipc::channel::ChannelError>;

/// Every channel kind's creator, like the sync objects', recognises an older
/// shmipc's half-made leftover under its name and replaces it; gc finds it too.
#[test]
fn channel_creators_replace_half_made_leftovers() {
    let kinds: [(&str, &CreateChannel); 4] = [
        ("spsc", &|n| {
            spsc::Options::new()
                .persistence(Persistence::UntilRemoved)
                .create_producer(n)
                .map(drop)
        }),
        ("pubsub", &|n| {
            shmipc::channel::pubsub::Options::new()
                .persistence(Persistence::UntilRemoved)
                .create_publisher(n)
                .map(drop)
        }),
        ("mpmc", &|n| {
            shmipc::channel::mpmc::Options::new()
                .persistence(Persistence::UntilRemoved)
                .create_producer(n)
                .map(drop)
        }),
        ("rpc", &|n| {
            shmipc::channel::rpc::Options::new()
                .persistence(Persistence::UntilRemoved)
                .create_server(n)
                .map(drop)
        }),
    ];
    for (kind, create) in kinds {
        let guard = Cleanup::new(&format!("halfmade-{kind}"));
        plant_half_made(guard.name());
        create(guard.name()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(matches!(
            inspect(guard.name()).unwrap(),
            Contents::Object { .. }
        ));
    }
    let guard = Cleanup::new("halfmade-gc");
    plant_half_made(guard.name());
    let name = guard.name().to_owned();
    assert!(Segment::collect_garbage(true).unwrap().contains(&name));
    assert!(Segment::collect_garbage(false).unwrap().contains(&name));
    assert!(!shm_path(&name).exists());
}

/// `create_or_open` racing with the last holder leaving: a create that finds the
/// name taken at its end (after initialising its new object) and an open that then
/// finds it gone create again, and succeed. Threads stand in for processes (each
/// has its own descriptors and locks). Before: the second create of a mutex,
/// semaphore or event failed "inter-process mutex objects are not supported on this
/// OS", and of a channel "read-only", because the initialisation ran only once.
#[test]
fn create_or_open_survives_the_last_holder_leaving_meanwhile() {
    let names: Vec<String> = ["mutex", "semaphore", "event", "topic"]
        .iter()
        .map(|k| unique_name(&format!("race-{k}")))
        .collect();
    let _cleanup: Vec<Cleanup> = names.iter().map(|n| Cleanup::guard(n)).collect();
    let [mutex, semaphore, event, topic] = [&names[0], &names[1], &names[2], &names[3]];
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..300 {
                    drop(NamedMutex::create_or_open(mutex).expect("mutex"));
                    drop(NamedSemaphore::create_or_open(semaphore, 0, 1).expect("semaphore"));
                    drop(
                        NamedEvent::create_or_open(event, EventReset::Manual, false)
                            .expect("event"),
                    );
                    drop(
                        shmipc::channel::pubsub::Options::new()
                            .capacity(4)
                            .slot_size(64)
                            .create_or_open_subscriber(topic)
                            .expect("subscriber"),
                    );
                }
            });
        }
    });
}

/// In the private mount namespace of `sparse_objects_on_a_full_store`: objects of
/// every kind made as shmipc makes them, their pages past the first punched out
/// (as another program with write access can), the store then filled.
fn sparse_objects_child() {
    use shmipc::channel::pubsub;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs", "/dev/shm"])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("SKIP no tmpfs of our own");
        return;
    }
    let opts = ObjectOptions::new().persistence(Persistence::UntilRemoved);
    drop(
        pubsub::Options::new()
            .capacity(4)
            .slot_size(64 * 1024)
            .max_subscribers(2)
            .persistence(Persistence::UntilRemoved)
            .create_publisher("topic")
            .unwrap(),
    );
    drop(
        spsc::Options::new()
            .capacity(4)
            .slot_size(64 * 1024)
            .persistence(Persistence::UntilRemoved)
            .create_producer("ring")
            .unwrap(),
    );
    drop(NamedSemaphore::create_with("sem", 0, 9, &opts).unwrap());
    for name in ["topic", "ring", "sem"] {
        let path = shm_path(name);
        let len = std::fs::metadata(&path).unwrap().len();
        // Everything but the first page (the header, which an opener reads with
        // pread first) loses its memory.
        if len > 4096 {
            let ok = Command::new("fallocate")
                .args(["--punch-hole", "--offset", "4096", "--length"])
                .arg((len - 4096).to_string())
                .arg(&path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "fallocate --punch-hole {name}");
        }
    }
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/shm/filler", "bs=4096"])
        .stderr(Stdio::null())
        .status();
    fn show<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {
        match r {
            Ok(_) => println!("OPENED {what}"),
            Err(e) => println!("REFUSED {what}: {e}"),
        }
    }
    show("publisher", pubsub::Publisher::open("topic"));
    show("subscriber", pubsub::Subscriber::open("topic"));
    show("consumer", spsc::Consumer::open("ring"));
    show("semaphore", NamedSemaphore::open("sem"));
    // With room again, the objects work.
    std::fs::remove_file("/dev/shm/filler").unwrap();
    let mut publisher = pubsub::Publisher::open("topic").unwrap();
    let sub = pubsub::Subscriber::open("topic").unwrap();
    publisher.send(&[7; 60_000]).unwrap();
    assert_eq!(sub.try_recv().unwrap().len(), 60_000);
    println!("WORKS again");
    // A topic whose file another program made far larger than its layout (sparse):
    // an opener gives memory to what the layout uses, not to the whole file (which
    // this 8 MiB store could not hold).
    drop(
        pubsub::Options::new()
            .capacity(4)
            .slot_size(4096)
            .persistence(Persistence::UntilRemoved)
            .create_publisher("wide")
            .unwrap(),
    );
    let wide = shm_path("wide");
    let made = std::fs::metadata(&wide).unwrap().len();
    // Its own pages past the header punched out too, so the opener allocates.
    let ok = Command::new("fallocate")
        .args(["--punch-hole", "--offset", "4096", "--length"])
        .arg((made - 4096).to_string())
        .arg(&wide)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "fallocate --punch-hole wide");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wide)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    show("wide publisher", pubsub::Publisher::open("wide"));
    use std::os::unix::fs::MetadataExt;
    let backed = std::fs::metadata(&wide).unwrap().blocks() * 512;
    println!("WIDE backed {backed} of {made} made");
}

/// An object whose memory another program took away (its pages punched out, or a
/// sparse file given a shmipc header) on a full /dev/shm: opening it is a clear
/// error naming it, never a SIGBUS when the opener first writes a page there (the
/// publisher's attach marks every chunk; before: killed by SIGBUS).
#[test]
fn sparse_objects_on_a_full_store_are_refused_not_a_sigbus() {
    if role().is_some() {
        sparse_objects_child();
        return;
    }
    let is_root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    if !is_root {
        eprintln!("skipped: needs root (a private mount namespace with a tmpfs)");
        return;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sparse_objects_on_a_full_store_are_refused_not_a_sigbus",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(common::ROLE_ENV, "sparse")
        .stdin(Stdio::null())
        .output()
        .expect("running unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("SKIP") || out.status.code() == Some(1) && text.is_empty() {
        eprintln!("skipped: no private mount namespace here");
        return;
    }
    assert!(
        out.status.success(),
        "the child failed ({:?}, signal {:?}): {text}\n{}",
        out.status,
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr)
    );
    // A semaphore is one page, the header's, which keeps its memory.
    assert!(text.contains("OPENED semaphore"), "{text}");
    for (what, name) in [
        ("publisher", "topic"),
        ("subscriber", "topic"),
        ("consumer", "ring"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("ED {what}")))
            .unwrap_or_else(|| panic!("no line for {what}: {text}"));
        assert!(
            line.contains(&format!("REFUSED {what}: "))
                && line.contains(&format!("`{name}`"))
                && line.contains("no memory"),
            "{line}"
        );
    }
    assert!(text.contains("WORKS again"), "{text}");
    assert!(text.contains("OPENED wide publisher"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("WIDE"))
        .unwrap_or_default();
    let nums: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(
        nums.len() == 2 && nums[0] <= nums[1] + 4096,
        "the opener backed more than the layout: {line}"
    );
}
