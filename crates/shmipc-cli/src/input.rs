//! Opening a file the user names to read from (`write --from FILE`) without
//! acting on whatever the path turns out to be.
//!
//! Opening runs a device driver's `open`: `/dev/watchdog` arms the watchdog (the
//! machine reboots unless it is fed), a tape rewinds, a terminal becomes the
//! controlling one, and a FIFO with no writer blocks the open for ever. So only
//! a regular file, or a pipe that is already open (`--from <(cmd)`, `/dev/stdin`
//! as a pipe: `/dev/fd/N`), is opened; a directory, device, socket or named FIFO
//! is refused, naming the path and what it is, before anything opens it.

use std::fs::File;
use std::path::Path;

/// What a path refused by [`open`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Windows tells only a directory from a file.
#[cfg_attr(not(unix), allow(dead_code))]
pub enum NotAFile {
    Directory,
    CharDevice,
    BlockDevice,
    Socket,
    /// A FIFO in the file system, which nobody may be about to write.
    NamedPipe,
    /// Anything else the OS may have (a Windows device, …).
    Other,
}

impl NotAFile {
    /// `a directory`, `a character device`, …
    pub fn words(self) -> &'static str {
        match self {
            NotAFile::Directory => "a directory",
            NotAFile::CharDevice => "a character device",
            NotAFile::BlockDevice => "a block device",
            NotAFile::Socket => "a socket",
            NotAFile::NamedPipe => "a named pipe (FIFO)",
            NotAFile::Other => "an unknown kind of file",
        }
    }
}

/// Why [`open`] gave no file.
#[derive(Debug)]
pub enum OpenError {
    /// The path names something that is not read by opening it.
    NotAFile(NotAFile),
    /// The OS refused (not found, permission denied, …).
    Io(std::io::Error),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Io(e)
    }
}

#[cfg(unix)]
impl From<rustix::io::Errno> for OpenError {
    fn from(e: rustix::io::Errno) -> Self {
        OpenError::Io(e.into())
    }
}

/// Opens `path` for reading if it is a regular file or an open pipe, with
/// `O_NOCTTY`. Linux: `path` is first opened with `O_PATH`, which runs no
/// driver's open and waits on no FIFO; what it names is checked, and reopened
/// through `/proc/self/fd` (so the file checked is the file opened).
#[cfg(target_os = "linux")]
pub fn open(path: &Path) -> Result<File, OpenError> {
    use rustix::fs::{self as rfs, Mode, OFlags};
    use std::os::fd::AsRawFd;

    let probe = rfs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let st = rfs::fstat(&probe)?;
    check_type(&st, || is_anonymous_pipe(&probe))?;
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let again = format!("/proc/self/fd/{}", probe.as_raw_fd());
    let fd = match rfs::open(again.as_str(), flags, Mode::empty()) {
        // Without /proc: by path again (checked to be the same file below).
        Err(rustix::io::Errno::NOENT) if rfs::stat("/proc/self/fd").is_err() => {
            rfs::open(path, flags, Mode::empty())?
        }
        r => r?,
    };
    let now = rfs::fstat(&fd)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        // Replaced between the looks (only possible without /proc).
        check_type(&now, || is_anonymous_pipe(&fd))?;
        return Err(OpenError::Io(std::io::Error::other(
            "it was replaced while being opened",
        )));
    }
    blocking(fd)
}

/// The same without `O_PATH`: `path` is looked at, opened with `O_NONBLOCK`
/// (which waits on no FIFO) and checked to be what was looked at. A pipe is one
/// already open when it is a `/dev/fd/N` (or `/dev/stdin`) of this process.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn open(path: &Path) -> Result<File, OpenError> {
    use rustix::fs::{self as rfs, Mode, OFlags};

    let st = rfs::stat(path)?;
    let open_pipe = || path.starts_with("/dev/fd") || path == Path::new("/dev/stdin");
    check_type(&st, open_pipe)?;
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::open(path, flags, Mode::empty())?;
    let now = rfs::fstat(&fd)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        check_type(&now, open_pipe)?;
        return Err(OpenError::Io(std::io::Error::other(
            "it was replaced while being opened",
        )));
    }
    blocking(fd)
}

/// Windows: no device is opened by a path of the file system, but `CON`, `COM1`,
/// `\\.\…`: what the path names is looked at first, and the file opened again.
#[cfg(not(unix))]
pub fn open(path: &Path) -> Result<File, OpenError> {
    let check = |m: &std::fs::Metadata| {
        if m.is_dir() {
            Err(OpenError::NotAFile(NotAFile::Directory))
        } else if !m.is_file() {
            Err(OpenError::NotAFile(NotAFile::Other))
        } else {
            Ok(())
        }
    };
    check(&std::fs::metadata(path)?)?;
    let file = File::open(path)?;
    check(&file.metadata()?)?;
    Ok(file)
}

/// Refuses all but a regular file and a pipe for which `open_pipe` says it is
/// one already open.
#[cfg(unix)]
fn check_type(st: &rustix::fs::Stat, open_pipe: impl FnOnce() -> bool) -> Result<(), OpenError> {
    use rustix::fs::FileType;
    let refused = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => return Ok(()),
        FileType::Fifo if open_pipe() => return Ok(()),
        FileType::Fifo => NotAFile::NamedPipe,
        FileType::Directory => NotAFile::Directory,
        FileType::CharacterDevice => NotAFile::CharDevice,
        FileType::BlockDevice => NotAFile::BlockDevice,
        FileType::Socket => NotAFile::Socket,
        _ => NotAFile::Other,
    };
    Err(OpenError::NotAFile(refused))
}

/// Whether the FIFO `fd` is an anonymous pipe (on pipefs: one `pipe(2)` made,
/// which some process holds open, as `<(cmd)` does), not a named one in a file
/// system. Opening an anonymous pipe never waits for a writer.
#[cfg(target_os = "linux")]
fn is_anonymous_pipe(fd: &impl std::os::fd::AsFd) -> bool {
    /// `PIPEFS_MAGIC` of `<linux/magic.h>`.
    const PIPEFS: u32 = 0x5049_5045;
    rustix::fs::fstatfs(fd).is_ok_and(|fs| {
        // `f_type` is a signed or unsigned word by architecture; the magics are 32-bit.
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.f_type as u32;
        magic == PIPEFS
    })
}

/// `fd` as a file whose reads wait for data (a pipe's writer may be slow).
#[cfg(unix)]
fn blocking(fd: rustix::fd::OwnedFd) -> Result<File, OpenError> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_setfl(&fd, fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
    Ok(File::from(fd))
}
