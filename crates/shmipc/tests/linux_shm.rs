//! Linux-only checks: permissions as stored in `/dev/shm`, segments made by other
//! programs (plain `shm_open`), a size `/dev/shm` cannot hold, and unnamed (memfd)
//! segments handed to a child by an inherited descriptor.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{say, Cleanup, Peer};
use rustix::fs::Mode;
use rustix::io::Errno;
use shmipc::os::unix::{from_fd, SegmentExt};
use shmipc::{Access, Backing, CreateError, Disposition, OpenError, Origin, Persistence, Segment};

fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

fn mode_of(name: &str) -> u32 {
    rustix::fs::stat(shm_path(name)).unwrap().st_mode & 0o7777
}

/// Owner-only by default: read and write for the owner, nothing for anyone else.
#[test]
fn default_mode_is_owner_only() {
    let guard = Cleanup::new("mode-default");
    let _seg = Segment::create(guard.name(), 4096).unwrap();
    let mode = mode_of(guard.name());
    assert_eq!(mode & 0o666, 0o600, "mode {mode:o}");
    assert_eq!(mode & 0o077, 0, "group/others have access: {mode:o}");
    assert_eq!(Segment::info(guard.name()).unwrap().mode, Some(0o600));
}

/// A chosen mode is honoured exactly (umask does not apply, as with Win32 DACLs).
#[test]
fn chosen_mode_is_honoured_exactly() {
    for wanted in [0o640, 0o604, 0o666, 0o400] {
        let guard = Cleanup::new("mode");
        let seg = Segment::options()
            .size(4096)
            .mode(wanted)
            .create(guard.name())
            .unwrap();
        let mode = mode_of(guard.name());
        assert_eq!(mode & 0o666, wanted, "asked {wanted:o}, got {mode:o}");
        assert_eq!(
            mode & 0o077,
            wanted & 0o077,
            "asked {wanted:o}, got {mode:o}"
        );
        assert_eq!(Segment::info(guard.name()).unwrap().mode, Some(wanted));
        // The creator keeps read-write access whatever the mode says.
        seg.map_all().unwrap().write_at(0, b"x").unwrap();
    }
}

/// A file-backed segment's new file gets the chosen mode too.
#[test]
fn file_backed_mode_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    for (i, wanted) in [0o600, 0o640, 0o666].into_iter().enumerate() {
        let guard = Cleanup::new("mode-file");
        let path = dir.path().join(format!("f{i}"));
        let _seg = Segment::options()
            .file(&path)
            .size(4096)
            .mode(wanted)
            .create(guard.name())
            .unwrap();
        let mode = rustix::fs::stat(&path).unwrap().st_mode & 0o7777;
        assert_eq!(mode, wanted, "asked {wanted:o}, got {mode:o}");
    }
}

/// A segment made by another program with plain `shm_open` (no marks of ours).
struct Foreign(Cleanup);

impl Foreign {
    fn new(size: u64) -> Self {
        let guard = Cleanup::new("foreign");
        let fd = rustix::shm::open(
            guard.name(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        rustix::fs::ftruncate(&fd, size).unwrap();
        Self(guard)
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn exists(&self) -> bool {
        shm_path(self.name()).exists()
    }
}

/// shmipc opens other programs' segments and lists them as foreign, but never
/// removes them on open, close, create or garbage collection.
#[test]
fn foreign_segments_are_never_removed() {
    let f = Foreign::new(5000);
    {
        let seg = Segment::open(f.name(), Access::ReadWrite).unwrap();
        assert_eq!(seg.size(), 5000);
        assert_eq!(seg.persistence(), Persistence::UntilRemoved);
        seg.map_all().unwrap().write_at(0, b"ours too").unwrap();
        let info = Segment::info(f.name()).unwrap();
        assert_eq!(info.origin, Origin::Foreign);
        assert_eq!(info.backing, Backing::Memory);
        assert_eq!(info.size, Some(5000));
        let listed = Segment::list().unwrap();
        let entry = listed
            .iter()
            .find(|s| s.name == f.name())
            .expect("not listed");
        assert_eq!(entry.origin, Origin::Foreign);
    }
    assert!(f.exists(), "closing a foreign segment removed it");
    assert!(matches!(
        Segment::create(f.name(), 4096),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert!(f.exists(), "create removed a foreign segment");
    let (seg, d) = Segment::create_or_open(f.name(), 4096).unwrap();
    assert_eq!((d, seg.size()), (Disposition::Opened, 5000));
    drop(seg);
    for dry_run in [true, false] {
        let found = Segment::collect_garbage(dry_run).unwrap();
        assert!(
            !found.iter().any(|n| n == f.name()),
            "gc({dry_run}) took it"
        );
    }
    assert!(f.exists(), "gc removed a foreign segment");
    let mut buf = [0u8; 8];
    Segment::open(f.name(), Access::Read)
        .unwrap()
        .map_all()
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"ours too");
    // Only an explicit remove takes it away.
    Segment::remove(f.name()).unwrap();
    assert!(!f.exists());
}

/// A foreign object its creator has not sized yet is reported as such, and left
/// alone.
#[test]
fn unsized_foreign_object_is_reported() {
    let f = Foreign::new(0);
    assert!(matches!(
        Segment::open(f.name(), Access::Read),
        Err(OpenError::Empty { .. })
    ));
    // create_or_open finds it taken and cannot open it: the error names it.
    match Segment::create_or_open(f.name(), 4096) {
        Err(CreateError::Os { name, .. }) => assert_eq!(name, f.name()),
        other => panic!("create_or_open of an unsized object = {other:?}"),
    }
    assert!(f.exists());
}

/// A size `/dev/shm` cannot hold is a clear `NoSpace` error, and nothing is left
/// in `/dev/shm`, not even a temporary object.
#[test]
fn size_beyond_dev_shm_is_no_space_and_leaks_nothing() {
    let st = rustix::fs::statvfs("/dev/shm").unwrap();
    let free = st.f_bavail * st.f_frsize;
    let too_big = free + (1 << 30);
    let guard = Cleanup::new("nospace");
    let before = leftovers();
    for reserve in [false, true] {
        match Segment::options()
            .size(too_big)
            .reserve(reserve)
            .create(guard.name())
        {
            Err(e @ CreateError::NoSpace { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(guard.name()) && msg.contains("/dev/shm"),
                    "{msg}"
                );
                if let CreateError::NoSpace { size, .. } = e {
                    assert_eq!(size, too_big);
                }
            }
            other => panic!("create({too_big} bytes, reserve {reserve}) = {other:?}"),
        }
        assert!(matches!(
            Segment::create_or_open(guard.name(), too_big),
            Err(CreateError::NoSpace { .. })
        ));
        // The largest size the OS allows in principle: still no space.
        assert!(matches!(
            Segment::create(guard.name(), i64::MAX as u64),
            Err(CreateError::NoSpace { .. })
        ));
    }
    assert!(!shm_path(guard.name()).exists());
    assert_eq!(
        leftovers(),
        before,
        "a failed create left something in /dev/shm"
    );
}

/// This process's entries in /dev/shm other than live test segments: temporary
/// objects of a create.
fn leftovers() -> Vec<String> {
    let pid = std::process::id();
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".shmipc-") && n.contains(&format!("-{pid}-")))
        .collect()
}

/// Segments this process created appear in `/dev/shm` under their plain name, as
/// `shm_open` would make them.
#[test]
fn segments_are_posix_shm_objects() {
    let guard = Cleanup::new("posix");
    let seg = Segment::create(guard.name(), 4096).unwrap();
    seg.map_all().unwrap().write_at(0, b"posix").unwrap();
    let fd = rustix::shm::open(guard.name(), rustix::shm::OFlags::RDONLY, Mode::empty()).unwrap();
    assert_eq!(rustix::fs::fstat(&fd).unwrap().st_size, 4096);
    let info = Segment::info(guard.name()).unwrap();
    assert_eq!(info.origin, Origin::Shmipc);
    assert_eq!(info.persistence, Persistence::UntilLastClose);
    assert_eq!(info.owner, Some(rustix::process::getuid().as_raw()));
    assert_eq!(info.holders, Some(vec![std::process::id()]));
}

/// An unnamed (memfd) segment handed to a child by an inherited descriptor: the
/// child writes, the parent reads; the descriptor is sealed against resizing.
#[test]
fn unnamed_segment_through_an_inherited_descriptor() {
    if let Some(role) = common::role() {
        assert_eq!(role, "fd-child");
        let raw: i32 = common::arg("FD").parse().unwrap();
        // SAFETY: the parent passed this descriptor open and inheritable, for us alone
        // to own; nothing else in this process uses that number.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let seg = from_fd(fd, Access::ReadWrite).unwrap();
        assert_eq!(seg.size(), 8192);
        assert_eq!(seg.backing(), &Backing::Unnamed);
        assert_eq!(
            rustix::fs::ftruncate(seg.as_fd(), 100),
            Err(Errno::PERM),
            "the child could shrink it"
        );
        let view = seg.map_all().unwrap();
        let mut buf = [0u8; 11];
        view.read_at(0, &mut buf).unwrap();
        say(&format!("read {}", String::from_utf8_lossy(&buf)));
        view.write_at(4096, b"from child").unwrap();
        view.atomic_u32(8000)
            .unwrap()
            .store(42, std::sync::atomic::Ordering::Release);
        say("written");
        return;
    }
    let seg = Segment::options().size(8192).create_unnamed().unwrap();
    assert_eq!(seg.name(), None);
    assert_eq!(seg.backing(), &Backing::Unnamed);
    let view = seg.map_all().unwrap();
    view.write_at(0, b"from parent").unwrap();
    for size in [0, 100, 8191, 8193, 1 << 20] {
        assert_eq!(
            rustix::fs::ftruncate(seg.as_fd(), size),
            Err(Errno::PERM),
            "resizing the sealed memfd to {size} worked"
        );
    }
    let inherit = seg.inheritable_fd().unwrap();
    let flags = rustix::io::fcntl_getfd(&inherit).unwrap();
    assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC));
    let cloexec = seg.try_clone_fd().unwrap();
    assert!(rustix::io::fcntl_getfd(&cloexec)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));
    let raw = inherit.as_raw_fd().to_string();
    let mut child = Peer::role(
        "unnamed_segment_through_an_inherited_descriptor",
        "fd-child",
        &[("FD", &raw)],
    );
    drop(inherit);
    assert_eq!(child.expect("read"), "from parent");
    child.expect("written");
    child.finish();
    let mut buf = [0u8; 10];
    view.read_at(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"from child");
    assert_eq!(
        view.atomic_u32(8000)
            .unwrap()
            .load(std::sync::atomic::Ordering::Acquire),
        42
    );
}

/// A memfd received from elsewhere without read-write access maps read-only.
#[test]
fn from_fd_read_only() {
    let seg = Segment::options().size(4096).create_unnamed().unwrap();
    seg.map_all().unwrap().write_at(0, b"ro").unwrap();
    let ro = from_fd(seg.try_clone_fd().unwrap(), Access::Read).unwrap();
    let view = ro.map_all().unwrap();
    assert_eq!(view.write_at(0, b"x"), Err(shmipc::AccessError::ReadOnly));
    assert!(matches!(
        ro.map_with(0, 0, Access::ReadWrite),
        Err(shmipc::MapError::ReadOnly { .. })
    ));
    let mut buf = [0u8; 2];
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"ro");
}

/// While other segments come and go (their holders' locks with them), `info` and
/// `list` keep seeing a segment this process holds. (`/proc/locks` read in small
/// pieces could miss our holder's line, and the segment looked stale.)
#[test]
fn info_and_list_never_hide_a_held_segment() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let guard = Cleanup::new("held");
    let _seg = Segment::create(guard.name(), 4096).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = Cleanup::new("held-churn");
                    let held: Vec<_> = (0..8)
                        .map(|i| Segment::create(&format!("{}-{i}", g.name()), 4096).unwrap())
                        .collect();
                    drop(held);
                }
            })
        })
        .collect();
    let mut misses = Vec::new();
    for i in 0..1000 {
        match Segment::info(guard.name()) {
            Ok(info) if info.holders == Some(vec![std::process::id()]) => {}
            Ok(info) => misses.push(format!("holders {:?}", info.holders)),
            Err(e) => misses.push(e.to_string()),
        }
        if i % 8 == 0 && common::listed(guard.name()) != Some(true) {
            misses.push("not listed".into());
        }
    }
    // Stop the churn before judging, so a failure leaves nothing behind.
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    assert!(
        misses.is_empty(),
        "a held segment was misreported: {misses:?}"
    );
}

/// Something other than a shared-memory object under a name (a directory, a FIFO,
/// put there by someone else) is refused with an error, promptly: opening a FIFO
/// for reading must not wait for a writer. Nothing removes it.
#[test]
fn odd_objects_under_a_name_are_refused_without_hanging() {
    struct Odd(PathBuf);
    impl Drop for Odd {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let dir_name = common::unique_name("odd-dir");
    let fifo_name = common::unique_name("odd-fifo");
    let _dir = Odd(shm_path(&dir_name));
    let _fifo = Odd(shm_path(&fifo_name));
    std::fs::create_dir(shm_path(&dir_name)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        shm_path(&fifo_name),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let names = [dir_name.clone(), fifo_name.clone()];
    std::thread::spawn(move || {
        for name in &names {
            for access in [Access::Read, Access::ReadWrite, Access::CopyOnWrite] {
                let r = Segment::open(name, access).map(|_| ());
                tx.send(format!("open {access:?} {name}: {r:?}")).unwrap();
            }
            let r = Segment::create(name, 4096).map(|_| ());
            tx.send(format!("create {name}: {r:?}")).unwrap();
            let r = Segment::create_or_open(name, 4096).map(|_| ());
            tx.send(format!("create_or_open {name}: {r:?}")).unwrap();
        }
    });
    for _ in 0..10 {
        let line = rx
            .recv_timeout(common::PATIENCE)
            .expect("an operation on a directory or FIFO hung");
        assert!(line.contains(": Err("), "accepted: {line}");
    }
    for name in [&dir_name, &fifo_name] {
        assert!(shm_path(name).exists(), "{name} was removed");
        assert_eq!(common::listed(name), Some(false), "{name} is listed");
    }
    let gc = Segment::collect_garbage(false).unwrap();
    assert!(!gc.contains(&dir_name) && !gc.contains(&fifo_name));
}

/// A forked child shares its parent's descriptors, locks included. When the child
/// drops its copy of a segment (here: in `pre_exec`, between fork and exec), that
/// must not act as the parent's last close: the parent still holds the segment
/// and its name.
#[test]
fn a_forked_child_dropping_its_copy_leaves_the_parent_holding() {
    use std::os::unix::process::CommandExt;

    let guard = Cleanup::new("fork");
    let seg = Segment::create(guard.name(), 4096).unwrap();
    seg.map_all().unwrap().write_at(0, b"parent's").unwrap();
    // The command owns the parent's only handle; the child drops its copy.
    let mut copy = Some(seg);
    let mut cmd = Command::new("true");
    // SAFETY: the closure runs in the child between fork and exec. It only drops a
    // Segment: a few system calls (flock, fstat, lstat, unlink) and frees, which
    // glibc's fork handlers make safe in the child.
    unsafe {
        cmd.pre_exec(move || {
            drop(copy.take());
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert!(status.success());
    // The parent still holds it (inside `cmd`): the name must still lead to it.
    let again = Segment::open(guard.name(), Access::Read)
        .expect("a forked child's drop removed the parent's segment");
    let mut buf = [0u8; 8];
    again.map_all().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"parent's");
    drop(again);
    drop(cmd);
    assert!(
        !shm_path(guard.name()).exists(),
        "the parent's last close left it"
    );
}

/// A descriptor handed out for a named segment is a holder of its own: dropping the
/// `Segment` it came from does not remove the name while the descriptor is open, and
/// closing the descriptor last leaves the segment stale (so it is gone).
#[test]
fn handed_out_descriptor_of_a_named_segment_is_a_holder() {
    let c = Cleanup::new("fd-holder");
    let seg = Segment::create(c.name(), 4096).unwrap();
    seg.map_all().unwrap().write_at(0, b"kept").unwrap();
    let fd = seg.inheritable_fd().unwrap();
    drop(seg);
    let again = Segment::open(c.name(), Access::Read).expect("the descriptor still holds it");
    let mut buf = [0u8; 4];
    again.map(0, 4).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    drop(again);
    drop(fd);
    assert!(matches!(
        Segment::open(c.name(), Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}

/// `is_still_named` compares the object, not the name: a segment removed and made
/// again under its name (memory or file-backed, persistent or not) is no longer
/// named, though the name exists; a holder's own name, or another holder's open
/// of it, still is, and so is a file-backed name made again on the same file (an
/// opener reaches the same bytes); an unnamed segment cannot tell.
#[test]
fn is_still_named_compares_the_object() {
    let dir = tempfile::tempdir().unwrap();
    for (i, persistence) in [Persistence::UntilLastClose, Persistence::UntilRemoved]
        .into_iter()
        .enumerate()
    {
        let guard = Cleanup::new("still-named");
        let name = guard.name();
        let (file, file2) = (
            dir.path().join(format!("f{i}")),
            dir.path().join(format!("g{i}")),
        );
        let memory = || {
            Segment::options()
                .size(4096)
                .persistence(persistence)
                .create(name)
                .unwrap()
        };
        let on = |f: &Path| Segment::options().size(4096).file(f).create(name).unwrap();
        let makers: [(&dyn Fn() -> Segment, &str); 3] = [
            (&memory, "memory"),
            (&|| on(&file), "file"),
            (&|| on(&file2), "file2"),
        ];
        for (first, a) in makers {
            for (again, b) in makers {
                let seg = first();
                assert_eq!(seg.is_still_named(), Some(true));
                let other = Segment::open(name, Access::Read).unwrap();
                assert_eq!(other.is_still_named(), Some(true));
                Segment::remove(name).unwrap();
                assert_eq!(seg.is_still_named(), Some(false), "{a} removed");
                let new = again();
                assert_eq!(new.is_still_named(), Some(true));
                let same = a == b && a != "memory";
                assert_eq!(seg.is_still_named(), Some(same), "{a} made again as {b}");
                assert_eq!(other.is_still_named(), Some(same), "{a} made again as {b}");
                drop(new);
                let _ = Segment::remove(name);
            }
        }
    }
    let unnamed = Segment::options().size(4096).create_unnamed().unwrap();
    assert_eq!(unnamed.is_still_named(), None);
}

/// `Segment::contents` tells what the held object holds, whatever its name names
/// since: a plain segment removed and replaced by a semaphore under its name is
/// still plain through the old handle, while `inspect` of the name and a new
/// open see the semaphore.
#[test]
fn contents_is_of_the_object_held() {
    let guard = Cleanup::new("contents-held");
    let name = guard.name();
    let plain = Segment::create(name, 4096).unwrap();
    assert_eq!(plain.contents(), shmipc::Contents::Plain);
    Segment::remove(name).unwrap();
    let _sem = shmipc::NamedSemaphore::create(name, 1, 4).unwrap();
    assert_eq!(plain.contents(), shmipc::Contents::Plain);
    assert_eq!(shmipc::inspect(name).unwrap().kind_name(), "semaphore");
    let again = Segment::open(name, Access::Read).unwrap();
    assert_eq!(again.contents(), shmipc::inspect(name).unwrap());
}
