//! The segment suite's operations: shmipc's `Segment` against the bare system calls
//! it stands on (POSIX shm through rustix).
//!
//! * create: create a segment of `size` bytes, map all of it, unmap it, remove it.
//!   shmipc: `Segment::create` + `map_all` + drop both (the last holder removes a
//!   transient segment). Bare: `shm_open(O_CREAT|O_EXCL|O_RDWR, 0600)`, `ftruncate`,
//!   `mmap`, `munmap`, `close`, `shm_unlink`.
//! * open: open an existing segment, map all of it, unmap it. shmipc:
//!   `Segment::open` + `map_all` + drop both. Bare: `shm_open(O_RDWR)`, `fstat` (an
//!   opener must learn the size), `mmap`, `munmap`, `close`.
//!
//! No page is touched: these are the costs of the calls, not of page faults.
#![allow(unsafe_code)] // The bare `mmap`/`munmap` calls.

use std::time::Instant;

use rustix::fs::{fstat, ftruncate, Mode};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use rustix::shm;
use shmipc::{Access, Segment};

use crate::Result;

/// The operations, in running order: `(name, is_floor)`. Each shmipc operation is
/// followed by its bare counterpart, which is its floor.
pub const OPS: [&str; 4] = ["shmipc-create", "bare-create", "shmipc-open", "bare-open"];

/// The segment size the suite uses.
pub const SIZE: usize = 64 * 1024;

/// The floor of an operation: the bare row it is compared with.
pub fn floor_of(op: &str) -> &'static str {
    if op.ends_with("create") {
        "bare-create"
    } else {
        "bare-open"
    }
}

/// shmipc create + map + unmap + remove.
pub fn shmipc_create(name: &str, size: usize) -> Result<()> {
    let seg = Segment::create(name, u64::try_from(size)?)?;
    let view = seg.map_all()?;
    drop(view);
    drop(seg);
    Ok(())
}

/// shmipc open + map + unmap.
pub fn shmipc_open(name: &str) -> Result<()> {
    let seg = Segment::open(name, Access::ReadWrite)?;
    let view = seg.map_all()?;
    drop(view);
    drop(seg);
    Ok(())
}

fn map_unmap(fd: &std::os::fd::OwnedFd, size: usize) -> Result<()> {
    // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of a descriptor
    // we own; nothing else refers to the range, which is unmapped just below with the
    // address and length `mmap` returned, and never touched.
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: `ptr..ptr+size` is exactly the mapping made above, and no reference
    // into it exists.
    unsafe { munmap(ptr, size) }?;
    Ok(())
}

/// Bare create + map + unmap + remove (`name` as for shmipc: no leading slash).
pub fn bare_create(name: &str, size: usize) -> Result<()> {
    let path = format!("/{name}");
    let fd = shm::open(
        path.as_str(),
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    let made = ftruncate(&fd, u64::try_from(size)?)
        .map_err(crate::Error::from)
        .and_then(|()| map_unmap(&fd, size));
    drop(fd);
    shm::unlink(path.as_str())?;
    made
}

/// Bare open + map + unmap of a segment made by [`bare_keep`].
pub fn bare_open(name: &str) -> Result<()> {
    let path = format!("/{name}");
    let fd = shm::open(path.as_str(), shm::OFlags::RDWR, Mode::empty())?;
    let size = usize::try_from(fstat(&fd)?.st_size)?;
    map_unmap(&fd, size)
}

/// A bare segment to open, removed on drop.
#[derive(Debug)]
pub struct BareKeep {
    path: String,
}

/// Creates the bare segment `name` of `size` bytes that [`bare_open`] opens.
pub fn bare_keep(name: &str, size: usize) -> Result<BareKeep> {
    let path = format!("/{name}");
    let fd = shm::open(
        path.as_str(),
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    let keep = BareKeep { path };
    ftruncate(&fd, u64::try_from(size)?)?;
    Ok(keep)
}

impl Drop for BareKeep {
    fn drop(&mut self) {
        let _ = shm::unlink(self.path.as_str());
    }
}

/// The objects the open operations open, alive while this lives.
#[derive(Debug)]
pub struct Fixture {
    create_shmipc: String,
    create_bare: String,
    open_shmipc: String,
    open_bare: String,
    _shmipc: Segment,
    _bare: BareKeep,
}

impl Fixture {
    /// Names from `prefix` (unique to the run) and the segments to open.
    pub fn new(prefix: &str) -> Result<Fixture> {
        let open_shmipc = format!("{prefix}-seg-open-shmipc");
        let open_bare = format!("{prefix}-seg-open-bare");
        let shmipc = Segment::create(&open_shmipc, u64::try_from(SIZE)?)?;
        let bare = bare_keep(&open_bare, SIZE)?;
        Ok(Fixture {
            create_shmipc: format!("{prefix}-seg-create-shmipc"),
            create_bare: format!("{prefix}-seg-create-bare"),
            open_shmipc,
            open_bare,
            _shmipc: shmipc,
            _bare: bare,
        })
    }

    /// Runs operation `op` (one of [`OPS`]) once.
    pub fn run(&self, op: &str) -> Result<()> {
        match op {
            "shmipc-create" => shmipc_create(&self.create_shmipc, SIZE),
            "bare-create" => bare_create(&self.create_bare, SIZE),
            "shmipc-open" => shmipc_open(&self.open_shmipc),
            "bare-open" => bare_open(&self.open_bare),
            _ => Err(format!("unknown segment operation {op}").into()),
        }
    }

    /// `batches` batches of `per_batch` runs of `op`, after one untimed warm-up
    /// batch; returns the mean time of one operation in each batch, in ns.
    pub fn measure(&self, op: &str, per_batch: u32, batches: usize) -> Result<Vec<f64>> {
        for _ in 0..per_batch {
            self.run(op)?;
        }
        let mut means = Vec::with_capacity(batches);
        for _ in 0..batches {
            let t = Instant::now();
            for _ in 0..per_batch {
                self.run(op)?;
            }
            means.push(t.elapsed().as_nanos() as f64 / f64::from(per_batch));
        }
        Ok(means)
    }
}
