//! Interop with Python's `multiprocessing.shared_memory`, both ways: a name is the
//! same POSIX shm object for both. The Python side talks the same line protocol
//! over its stdin/stdout. Skipped, with a note, where `python3` is missing.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::{Cleanup, Peer};
use shmipc::{Access, OpenError, Origin, Segment};

fn python() -> Option<Command> {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let mut cmd = Command::new("python3");
            cmd.arg("-u").arg("-c");
            Some(cmd)
        }
        _ => {
            eprintln!("note: python3 not found; skipping the Python interop test");
            None
        }
    }
}

/// Python creates and writes; shmipc opens the same name, reads, writes back and
/// closes without removing it (it is Python's); Python sees the write and unlinks.
const PYTHON_CREATES: &str = r#"
import sys
from multiprocessing import shared_memory
name = sys.argv[1]
shm = shared_memory.SharedMemory(name=name, create=True, size=5000)
try:
    shm.buf[:18] = b"Hello from Python\0"
    print("@shmipc ready", flush=True)
    assert sys.stdin.readline().strip() == "check"
    print("@shmipc reply " + bytes(shm.buf[100:117]).decode(), flush=True)
    assert sys.stdin.readline().strip() == "bye"
finally:
    shm.close()
    shm.unlink()
print("@shmipc unlinked", flush=True)
"#;

#[test]
fn python_creates_shmipc_reads_and_writes_back() {
    let Some(mut cmd) = python() else { return };
    let guard = Cleanup::new("py-creates");
    cmd.arg(PYTHON_CREATES).arg(guard.name());
    let mut py = Peer::spawn(cmd, "python (creator)");
    py.expect("ready");
    {
        let seg = Segment::open(guard.name(), Access::ReadWrite).unwrap();
        assert_eq!(seg.size(), 5000, "an opener learns Python's size");
        let view = seg.map_all().unwrap();
        let mut buf = [0u8; 18];
        view.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"Hello from Python\0");
        view.write_at(100, b"Hello from shmipc").unwrap();
        let info = Segment::info(guard.name()).unwrap();
        assert_eq!(info.origin, Origin::Foreign);
    }
    // Closing Python's segment did not remove it.
    assert!(Segment::open(guard.name(), Access::Read).is_ok());
    py.send("check");
    assert_eq!(py.expect("reply"), "Hello from shmipc");
    py.send("bye");
    py.expect("unlinked");
    let err = py.finish_with_stderr();
    assert!(err.trim().is_empty(), "Python complained:\n{err}");
    assert!(matches!(
        Segment::open(guard.name(), Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}

/// shmipc creates and writes; Python attaches by name, reads, writes back. The
/// snippet stops Python's resource tracker from unlinking a segment it only
/// attached to (Python < 3.13 registers attached segments too).
const PYTHON_ATTACHES: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name = sys.argv[1]
try:
    shm = shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
except TypeError:
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")
try:
    print("@shmipc size %d" % shm.size, flush=True)
    text = bytes(shm.buf[:64]).split(b"\0")[0].decode()
    print("@shmipc read " + text, flush=True)
    shm.buf[200:218] = b"Hello from Python\0"
    print("@shmipc wrote", flush=True)
    assert sys.stdin.readline().strip() == "bye"
finally:
    shm.close()
"#;

#[test]
fn shmipc_creates_python_reads_and_writes_back() {
    let Some(mut cmd) = python() else { return };
    let guard = Cleanup::new("py-attaches");
    let seg = Segment::create(guard.name(), 5000).unwrap();
    let view = seg.map_all().unwrap();
    view.write_at(0, b"Hello from shmipc\0").unwrap();
    cmd.arg(PYTHON_ATTACHES).arg(guard.name());
    let mut py = Peer::spawn(cmd, "python (attacher)");
    assert_eq!(py.expect("size"), "5000");
    assert_eq!(py.expect("read"), "Hello from shmipc");
    py.expect("wrote");
    let mut buf = [0u8; 18];
    view.read_at(200, &mut buf).unwrap();
    assert_eq!(&buf, b"Hello from Python\0");
    py.send("bye");
    // Wait for Python and its resource tracker (which shares its stderr) to end:
    // had the tracker unlinked the segment, that would have happened by now.
    let err = py.finish_with_stderr();
    assert!(err.trim().is_empty(), "Python complained:\n{err}");
    assert!(
        Segment::open(guard.name(), Access::Read).is_ok(),
        "Python's exit removed a segment shmipc still holds"
    );
    drop(view);
    drop(seg);
    assert!(matches!(
        Segment::open(guard.name(), Access::Read),
        Err(OpenError::NotFound { .. })
    ));
}
