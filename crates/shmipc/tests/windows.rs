//! Windows-specific behaviour of segments, with real processes (this test binary
//! re-run with a role, and the seed's own programs built from `interop/`).
//!
//! Run under Wine by `ci/windows.sh`. Windows removes a section with its last handle,
//! so these tests need no clean-up guards: every object goes when the test's handles
//! drop, or its process ends.
//!
//! The seed-interop tests need the C programs: `ci/windows.sh` builds them and sets
//! `SHMIPC_INTEROP_DIR` (and `SHMIPC_REQUIRE_INTEROP=1`, which turns a missing program
//! into a failure). Without the variable they say so and pass.
#![cfg(windows)]

#[path = "common/spawn.rs"]
#[allow(dead_code)]
mod spawn;
mod windows_support;
use spawn::SpawnRetrying;

use std::io::Write;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use shmipc::os::windows::{from_handle, from_handle_sized, SegmentExt};
use shmipc::{
    Access, Backing, CreateError, Disposition, ListError, MapError, OpenError, Origin, Persistence,
    RemoveError, Segment,
};
use windows_support::{child, unique, wait_exit, wait_until, Lines, ROLE};

const SEED_NAME: &str = "MyFileMapping";
const SEED_MESSAGE: &[u8] = b"Hello from Process 1";

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child role needs {key}"))
}

/// Text up to the first NUL.
fn c_str(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// The roles a child process plays; a no-op in a normal test run.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // Opens NAME read-write, checks the parent's message, answers at offset 4096.
        "answer" => {
            let seg = Segment::open(&env("SHM_NAME"), Access::ReadWrite).unwrap();
            assert_eq!(seg.size(), 10_000, "the opener learns the exact size");
            let view = seg.map_all().unwrap();
            let mut buf = [0u8; 5];
            view.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"hello");
            view.write_at(4096, b"answer").unwrap();
            println!("done");
        }
        // Tries to create NAME, which the parent holds.
        "create-existing" => {
            let name = env("SHM_NAME");
            match Segment::create(&name, 4096) {
                Err(CreateError::AlreadyExists { .. }) => {}
                other => panic!("expected AlreadyExists, got {other:?}"),
            }
            let (seg, disp) = Segment::create_or_open(&name, 4096).unwrap();
            assert_eq!(disp, Disposition::Opened);
            assert_eq!(seg.size(), 8192);
            println!("done");
        }
        // Creates NAME, says so, and holds it until killed.
        "hold" => {
            let seg = Segment::create(&env("SHM_NAME"), 4096).unwrap();
            seg.map_all().unwrap().write_at(0, b"held").unwrap();
            println!("ready");
            loop {
                std::thread::park();
            }
        }
        // Takes the inherited unnamed section, checks it, writes an answer.
        "inherited" => {
            let raw: usize = env("SHM_HANDLE").parse().unwrap();
            let size: u64 = env("SHM_SIZE").parse().unwrap();
            // SAFETY: the parent made this handle inheritable and passed its value; it
            // is open in this process and nothing else here owns it.
            let handle = unsafe { OwnedHandle::from_raw_handle(raw as *mut std::ffi::c_void) };
            let seg = from_handle_sized(handle, size, Access::ReadWrite).unwrap();
            assert_eq!(seg.size(), size);
            assert_eq!(seg.backing(), &Backing::Unnamed);
            let view = seg.map_all().unwrap();
            assert_eq!(view.read_pod::<u64>(70_000).unwrap(), 0xfeed_beef);
            view.write_pod(80_000, &0x1234_5678_u64).unwrap();
            println!("done");
        }
        // Writes through a raw pointer into a read-only view: the OS must stop it.
        "raw-write-read-only" => {
            let seg = Segment::open(&env("SHM_NAME"), Access::Read).unwrap();
            let view = seg.map_all().unwrap();
            println!("writing");
            // SAFETY: not sound on purpose: the view is read-only, and the test
            // checks that the OS kills this process with an access violation
            // rather than letting the write through.
            unsafe { view.as_mut_ptr().write_volatile(b'X') };
            println!("the write went through");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_processes_share_by_name() {
    let name = unique("share");
    let seg = Segment::create(&name, 10_000).unwrap();
    let view = seg.map_all().unwrap();
    view.write_at(0, b"hello").unwrap();
    let mut c = child("answer", &[("SHM_NAME", name.clone())]).spawn_retrying();
    let lines = Lines::of(&mut c);
    lines.expect("done");
    assert!(wait_exit(&mut c).success());
    let mut buf = [0u8; 6];
    view.read_at(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"answer");
}

#[test]
fn create_reports_already_exists_across_processes() {
    let name = unique("exists");
    let _seg = Segment::create(&name, 8192).unwrap();
    assert!(matches!(
        Segment::create(&name, 8192),
        Err(CreateError::AlreadyExists { .. })
    ));
    let mut c = child("create-existing", &[("SHM_NAME", name.clone())]).spawn_retrying();
    let lines = Lines::of(&mut c);
    lines.expect("done");
    assert!(wait_exit(&mut c).success());
}

#[test]
fn create_or_open_says_which() {
    let name = unique("which");
    let (a, da) = Segment::create_or_open(&name, 5000).unwrap();
    let (b, db) = Segment::create_or_open(&name, 100).unwrap();
    assert_eq!((da, db), (Disposition::Created, Disposition::Opened));
    assert_eq!(b.size(), 5000);
    assert!(matches!(
        Segment::create_or_open(&name, 6000),
        Err(CreateError::TooSmall { existing: 5000, .. })
    ));
    drop((a, b));
}

#[test]
fn racing_create_or_open_has_exactly_one_creator() {
    for _ in 0..20 {
        let name = unique("race");
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<(Disposition, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let (seg, disp) = Segment::create_or_open(&name, 12_345).unwrap();
                        let size = seg.size();
                        // Hold it until every thread is done, so nobody re-creates it.
                        barrier.wait();
                        (disp, size)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = results
            .iter()
            .filter(|(d, _)| *d == Disposition::Created)
            .count();
        assert_eq!(created, 1, "{results:?}");
        assert!(
            results.iter().all(|&(_, size)| size == 12_345),
            "{results:?}"
        );
    }
}

#[test]
fn gone_with_the_last_handle() {
    let name = unique("gone");
    let seg = Segment::create(&name, 4096).unwrap();
    let view = seg.map_all().unwrap();
    drop(seg);
    // The view still holds the section.
    let again = Segment::open(&name, Access::Read).unwrap();
    drop(again);
    drop(view);
    assert!(matches!(
        Segment::open(&name, Access::Read),
        Err(OpenError::NotFound { .. })
    ));
    // The name is free again.
    let _new = Segment::create(&name, 4096).unwrap();
}

#[test]
fn killed_holder_takes_the_segment_with_it() {
    let name = unique("killed");
    let mut c = child("hold", &[("SHM_NAME", name.clone())]).spawn_retrying();
    let lines = Lines::of(&mut c);
    lines.expect("ready");
    {
        let seg = Segment::open(&name, Access::Read).unwrap();
        let mut buf = [0u8; 4];
        seg.map_all().unwrap().read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"held");
    }
    c.kill().unwrap(); // TerminateProcess
    let _ = wait_exit(&mut c);
    wait_until("the killed child's segment to vanish", || {
        matches!(
            Segment::open(&name, Access::Read),
            Err(OpenError::NotFound { .. })
        )
    });
}

#[test]
fn unnamed_section_through_an_inherited_handle() {
    let size = 100_000u64;
    let seg = Segment::options().size(size).create_unnamed().unwrap();
    assert_eq!(seg.backing(), &Backing::Unnamed);
    let view = seg.map_all().unwrap();
    view.write_pod(70_000, &0xfeed_beef_u64).unwrap();
    let handle = seg.inheritable_handle().unwrap();
    let raw = handle.as_raw_handle() as usize;
    let mut c = child(
        "inherited",
        &[
            ("SHM_HANDLE", raw.to_string()),
            ("SHM_SIZE", size.to_string()),
        ],
    )
    .spawn_retrying();
    drop(handle); // the child has its copy
    let lines = Lines::of(&mut c);
    lines.expect("done");
    assert!(wait_exit(&mut c).success());
    assert_eq!(view.read_pod::<u64>(80_000).unwrap(), 0x1234_5678);
}

#[test]
fn from_handle_without_a_size_sees_whole_pages() {
    let seg = Segment::options().size(5000).create_unnamed().unwrap();
    let same = from_handle(seg.try_clone_handle().unwrap(), Access::Read).unwrap();
    assert_eq!(same.size() % 4096, 0);
    assert!(same.size() >= 5000);
    assert!(from_handle_sized(seg.try_clone_handle().unwrap(), 1 << 40, Access::Read).is_err());
}

#[test]
fn views_at_offsets_inside_the_64k_granularity() {
    let name = unique("gran");
    let seg = Segment::create(&name, 300_000).unwrap();
    let whole = seg.map_all().unwrap();
    for (i, off) in [
        0usize, 1, 4095, 65_535, 65_536, 65_537, 70_000, 131_071, 299_990,
    ]
    .into_iter()
    .enumerate()
    {
        let tag = [u8::try_from(i).unwrap() + 1; 10];
        let view = seg.map(off as u64, 10).unwrap();
        assert_eq!((view.offset(), view.len()), (off as u64, 10));
        view.write_at(0, &tag).unwrap();
        let mut back = [0u8; 10];
        whole.read_at(off, &mut back).unwrap();
        assert_eq!(back, tag, "offset {off}");
    }
    // A view across a 64 KiB boundary, seen through a second handle.
    let other = Segment::open(&name, Access::Read).unwrap();
    let across = other.map(65_530, 20).unwrap();
    let mut buf = [0u8; 20];
    across.read_at(0, &mut buf).unwrap();
    let mut expect = [0u8; 20];
    whole.read_at(65_530, &mut expect).unwrap();
    assert_eq!(buf, expect);
    assert!(matches!(
        seg.map(299_995, 10),
        Err(MapError::OutOfRange { .. })
    ));
}

#[test]
fn copy_on_write_stays_private() {
    let name = unique("cow");
    let seg = Segment::create(&name, 4096).unwrap();
    let shared = seg.map_all().unwrap();
    shared.write_at(0, b"orig").unwrap();
    let private = Segment::open(&name, Access::CopyOnWrite).unwrap();
    let cow = private.map_all().unwrap();
    cow.write_at(0, b"mine").unwrap();
    let mut buf = [0u8; 4];
    shared.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"orig");
    cow.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"mine");
    let cow2 = seg.map_with(0, 0, Access::CopyOnWrite).unwrap();
    cow2.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"orig");
}

#[test]
fn writing_a_read_only_view_is_an_error() {
    let name = unique("ro");
    let _seg = Segment::create(&name, 4096).unwrap();
    let ro = Segment::open(&name, Access::Read).unwrap();
    let view = ro.map_all().unwrap();
    assert!(view.write_at(0, b"x").is_err());
    assert!(matches!(
        ro.map_with(0, 0, Access::ReadWrite),
        Err(MapError::ReadOnly { .. })
    ));
}

#[test]
fn the_os_stops_a_raw_write_into_a_read_only_view() {
    const STATUS_ACCESS_VIOLATION: u32 = 0xC000_0005;
    let name = unique("ro-raw");
    let seg = Segment::create(&name, 4096).unwrap();
    let view = seg.map_all().unwrap();
    view.write_at(0, b"A").unwrap();
    let mut c = child("raw-write-read-only", &[("SHM_NAME", name.clone())]).spawn_retrying();
    let lines = Lines::of(&mut c);
    lines.expect("writing");
    let status = wait_exit(&mut c);
    let code = status.code().map(|c| u32::from_ne_bytes(c.to_ne_bytes()));
    assert_eq!(code, Some(STATUS_ACCESS_VIOLATION), "{status:?}");
    assert_eq!(view.read_pod::<u8>(0).unwrap(), b'A');
}

#[test]
fn what_windows_cannot_do_is_a_clear_error() {
    let name = unique("unsup");
    let err = Segment::options()
        .size(4096)
        .persistence(Persistence::UntilRemoved)
        .create(&name)
        .unwrap_err();
    assert!(matches!(err, CreateError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("file"), "{err}");

    let _seg = Segment::create(&name, 4096).unwrap();
    let err = Segment::remove(&name).unwrap_err();
    assert!(matches!(err, RemoveError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("last handle"), "{err}");
    assert!(matches!(
        Segment::remove(&unique("never")),
        Err(RemoveError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::list(),
        Err(ListError::Unsupported { .. })
    ));
    assert_eq!(
        Segment::collect_garbage(false).unwrap(),
        Vec::<String>::new()
    );
    let info = Segment::info(&name).unwrap();
    assert_eq!((info.size, info.origin), (Some(4096), Origin::Shmipc));
}

#[test]
fn file_backed_data_outlives_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let name = unique("file");
    {
        let seg = Segment::options()
            .size(10_000)
            .file(&path)
            .create(&name)
            .unwrap();
        let opened = Segment::open(&name, Access::Read).unwrap();
        assert_eq!(opened.size(), 10_000);
        let Backing::File(p) = opened.backing() else {
            panic!("expected file backing, got {:?}", opened.backing());
        };
        assert_eq!(p.file_name(), path.file_name());
        let view = seg.map(9_990, 10).unwrap();
        view.write_at(0, b"persisted!").unwrap();
        view.flush().unwrap();
    }
    assert!(matches!(
        Segment::open(&name, Access::Read),
        Err(OpenError::NotFound { .. })
    ));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 10_000);
    assert_eq!(&bytes[9_990..], b"persisted!");
    // Re-created from the file: the data is back.
    let seg = Segment::options().file(&path).create(&name).unwrap();
    assert_eq!(seg.size(), 10_000);
    let mut buf = [0u8; 10];
    seg.map(9_990, 10).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"persisted!");
}

#[test]
fn a_failed_file_backed_create_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("file-taken");
    let _held = Segment::create(&name, 4096).unwrap();
    let fresh = dir.path().join("fresh.bin");
    assert!(matches!(
        Segment::options().file(&fresh).size(4096).create(&name),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert!(!fresh.exists(), "a failed create left its new file");
    let short = dir.path().join("short.bin");
    std::fs::write(&short, b"short").unwrap();
    assert!(Segment::options()
        .file(&short)
        .size(4096)
        .create(&name)
        .is_err());
    assert_eq!(std::fs::read(&short).unwrap(), b"short");
    // No size and no file: refused, and no empty file made.
    let missing = dir.path().join("missing.bin");
    assert!(matches!(
        Segment::options()
            .file(&missing)
            .create(&unique("file-none")),
        Err(CreateError::InvalidSize { size: 0, .. })
    ));
    assert!(!missing.exists(), "a failed create left an empty file");
}

#[test]
fn global_namespace_round_trip() {
    // Wine grants `Global\` without SeCreateGlobalPrivilege; Windows may not.
    let name = unique("global");
    let seg = shmipc::os::windows::create_global(&name, 3000).unwrap();
    seg.map_all().unwrap().write_at(0, b"g").unwrap();
    let other = shmipc::os::windows::open_global(&name, Access::Read).unwrap();
    assert_eq!(other.size(), 3000);
    // A different namespace from `Local\`.
    assert!(matches!(
        Segment::open(&name, Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------------------
// the seed's programs

/// The seed-interop tests share the seed's name: one at a time.
static SEED: Mutex<()> = Mutex::new(());

/// The built C program, or `None` (with a note) when the interop build is absent.
fn seed_program(name: &str) -> Option<PathBuf> {
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

#[test]
fn seed_process1_writes_shmipc_reads() {
    let Some(exe) = seed_program("process1") else {
        return;
    };
    let _one = SEED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut p1 = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn_retrying();
    let lines = Lines::of(&mut p1);
    lines.expect("ready");

    // shmipc's Process 2: OpenFileMapping(FILE_MAP_READ) + MapViewOfFile(1024).
    let seg = Segment::open(SEED_NAME, Access::Read).unwrap();
    assert!(seg.size() >= 1024, "{}", seg.size());
    let mut buf = vec![0u8; 1024];
    seg.map(0, 1024).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(c_str(&buf), SEED_MESSAGE);
    // Made by another program: no shmipc record, and the name is taken.
    assert_eq!(Segment::info(SEED_NAME).unwrap().origin, Origin::Foreign);
    assert!(matches!(
        Segment::create(SEED_NAME, 1024),
        Err(CreateError::AlreadyExists { .. })
    ));
    let (_, disp) = Segment::create_or_open(SEED_NAME, 1024).unwrap();
    assert_eq!(disp, Disposition::Opened);

    p1.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(wait_exit(&mut p1).success());
}

#[test]
fn shmipc_writes_seed_process2_reads() {
    let Some(exe) = seed_program("process2") else {
        return;
    };
    let _one = SEED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // shmipc's Process 1: CreateFileMapping(1024, "MyFileMapping") + write.
    let seg = Segment::create(SEED_NAME, 1024).unwrap();
    seg.map_all()
        .unwrap()
        .write_at(0, b"Hello from Process 1\0")
        .unwrap();
    let out = Command::new(exe).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "process2 failed: {text}");
    assert_eq!(
        text.trim_end(),
        "Received message from Process 1: Hello from Process 1"
    );
}
