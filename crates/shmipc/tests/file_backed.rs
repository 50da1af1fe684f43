//! File-backed segments (the seed's `CreateFileMapping(hFile, …)`): the data lives
//! in the file, other processes open the segment by name, and removing the name
//! leaves the file. Portable.

mod common;

use common::{hear_exactly, say, Cleanup, Peer};
use shmipc::{Access, Backing, CreateError, OpenError, Persistence, RemoveError, Segment};

#[test]
fn file_backed_segment_shares_and_keeps_its_file() {
    if let Some(role) = common::role() {
        assert_eq!(role, "peer");
        let name = common::arg("NAME");
        let seg = Segment::open(&name, Access::ReadWrite).unwrap();
        assert!(matches!(seg.backing(), Backing::File(_)), "{seg:?}");
        let view = seg.map_all().unwrap();
        let mut buf = [0u8; 9];
        view.read_at(100, &mut buf).unwrap();
        say(&format!("read {}", String::from_utf8_lossy(&buf)));
        view.write_at(200, b"child was here").unwrap();
        view.flush().unwrap();
        say("written");
        hear_exactly("bye");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.bin");
    let guard = Cleanup::new("file");
    let seg = Segment::options()
        .file(&path)
        .size(8192)
        .create(guard.name())
        .unwrap();
    assert_eq!(seg.size(), 8192);
    // Windows: the name goes with its last handle (the data stays in the file).
    let named_until = if cfg!(windows) {
        Persistence::UntilLastClose
    } else {
        Persistence::UntilRemoved
    };
    assert_eq!(seg.persistence(), named_until);
    match seg.backing() {
        Backing::File(p) => assert_eq!(
            std::fs::canonicalize(p).unwrap(),
            std::fs::canonicalize(&path).unwrap()
        ),
        other => panic!("backing {other:?}"),
    }
    let view = seg.map_all().unwrap();
    view.write_at(100, b"file data").unwrap();
    view.flush().unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 8192, "the file was not sized");
    assert_eq!(
        &on_disk[100..109],
        b"file data",
        "flush did not reach the file"
    );

    let mut p = Peer::role(
        "file_backed_segment_shares_and_keeps_its_file",
        "peer",
        &[("NAME", guard.name())],
    );
    assert_eq!(p.expect("read"), "file data");
    p.expect("written");
    let mut buf = [0u8; 14];
    view.read_at(200, &mut buf).unwrap();
    assert_eq!(&buf, b"child was here");
    assert_eq!(&std::fs::read(&path).unwrap()[200..214], b"child was here");
    p.send("bye");
    p.finish();

    drop(view);
    drop(seg);
    if cfg!(windows) {
        assert!(matches!(
            Segment::open(guard.name(), Access::Read),
            Err(OpenError::NotFound { .. })
        ));
        let on_disk = std::fs::read(&path).expect("the file went with the name");
        assert_eq!(&on_disk[200..214], b"child was here");
        return;
    }
    // Not tied to its holders: the name stays until removed.
    let again = Segment::open(guard.name(), Access::Read).expect("a file-backed name vanished");
    assert_eq!(again.size(), 8192);
    drop(again);
    match Segment::remove(guard.name()) {
        Ok(()) => {
            assert!(matches!(
                Segment::open(guard.name(), Access::Read),
                Err(OpenError::NotFound { .. })
            ));
        }
        Err(RemoveError::Unsupported { .. }) => {
            eprintln!("note: this OS cannot remove a name; skipped that part");
        }
        Err(e) => panic!("remove: {e}"),
    }
    let on_disk = std::fs::read(&path).expect("removing the name removed the file");
    assert_eq!(&on_disk[100..109], b"file data");
    assert_eq!(&on_disk[200..214], b"child was here");
}

/// An existing file maps at its own size when no size is given, and is extended
/// (never truncated) when one is; an empty file with no size is refused.
#[test]
fn file_backed_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("existing.bin");
    std::fs::write(&path, vec![b'z'; 5000]).unwrap();

    let guard = Cleanup::new("file-size");
    let seg = Segment::options().file(&path).create(guard.name()).unwrap();
    assert_eq!(seg.size(), 5000);
    let mut buf = [0u8; 3];
    seg.map(4997, 0).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"zzz");
    drop(seg);
    Segment::remove(guard.name()).ok();

    let guard2 = Cleanup::new("file-grow");
    let seg = Segment::options()
        .file(&path)
        .size(10_000)
        .create(guard2.name())
        .unwrap();
    assert_eq!(seg.size(), 10_000);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10_000);
    seg.map(4999, 2).unwrap().read_at(0, &mut buf[..2]).unwrap();
    assert_eq!(&buf[..2], &[b'z', 0]);
    drop(seg);

    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let guard3 = Cleanup::new("file-empty");
    assert!(matches!(
        Segment::options().file(&empty).create(guard3.name()),
        Err(CreateError::InvalidSize { size: 0, .. })
    ));
    assert!(matches!(
        Segment::open(guard3.name(), Access::Read),
        Err(OpenError::NotFound { .. })
    ));
    // No size and no file: refused, and no empty file is left behind.
    let missing = dir.path().join("missing.bin");
    assert!(matches!(
        Segment::options().file(&missing).create(guard3.name()),
        Err(CreateError::InvalidSize { size: 0, .. })
    ));
    assert!(!missing.exists(), "a failed create left an empty file");
}

/// A file-backed name is taken like any other: a second create with that name
/// fails, and leaves no trace: no new file, no file extended, the other segment's
/// file untouched.
#[test]
fn file_backed_name_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let guard = Cleanup::new("file-dup");
    let _seg = Segment::options()
        .file(dir.path().join("a.bin"))
        .size(4096)
        .create(guard.name())
        .unwrap();
    assert!(matches!(
        Segment::create(guard.name(), 4096),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Segment::options()
            .file(dir.path().join("b.bin"))
            .size(4096)
            .create(guard.name()),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert_eq!(
        std::fs::metadata(dir.path().join("a.bin")).unwrap().len(),
        4096
    );
    assert!(
        !dir.path().join("b.bin").exists(),
        "a failed create left its new file behind"
    );
    std::fs::write(dir.path().join("c.bin"), b"short").unwrap();
    assert!(matches!(
        Segment::options()
            .file(dir.path().join("c.bin"))
            .size(4096)
            .create(guard.name()),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join("c.bin")).unwrap(),
        b"short",
        "a failed create extended an existing file"
    );
}
