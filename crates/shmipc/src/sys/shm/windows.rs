//! Windows backend: the seed's own calls. `CreateFileMappingW` / `OpenFileMappingW`
//! for the section, `MapViewOfFile` / `UnmapViewOfFile` / `FlushViewOfFile` for views,
//! `CloseHandle` (through [`OwnedHandle`]) when a holder lets go.
//!
//! # Objects
//!
//! * A memory segment is a paging-file section (`CreateFileMappingW(INVALID_HANDLE_VALUE, …)`),
//!   a file-backed one a section of the file (`CreateFileW` + `CreateFileMappingW(hFile, …)`),
//!   an unnamed one a section without a name, handed to a child by handle inheritance
//!   (see `shmipc::os::windows`).
//! * Name `demo` is the kernel object `Local\demo` (the session namespace that the seed's
//!   unprefixed `L"MyFileMapping"` also lands in), so programs calling the Win32 API
//!   directly share segments with shmipc. `shmipc::os::windows::{create_global,
//!   open_global}` use `Global\demo` instead. Win32 object names are case-insensitive:
//!   `Demo` and `demo` are the same segment here.
//!
//! # Lifetime
//!
//! Native Win32: the kernel removes a section with its last handle, whether the holder
//! closed it, exited or was killed, so nothing can go stale and there is nothing to
//! collect. Persistence until removed is impossible for paging-file sections (an
//! `Unsupported` error points to file backing, whose data outlives every handle), and
//! removing a name is impossible (it goes with its last handle). Listing is
//! `Unsupported`: the only way, `NtQueryDirectoryObject` on the session's
//! `BaseNamedObjects`, is undocumented and not implemented in Wine 8 (so CI could not
//! test it). `reserve` changes nothing: paging-file sections are committed at creation.
//!
//! # Exact sizes
//!
//! The OS rounds a section to whole pages and tells an opener only the rounded size
//! (`VirtualQuery`; `NtQuerySection` is no better: under Wine it needs `SECTION_QUERY`,
//! which a `FILE_MAP_READ` opener lacks, and reports the rounded size too). So that an
//! opener learns the size the creator asked for, shmipc
//! keeps a tiny companion section `Local\.shmipc-meta-NAME` (one page) that holds a
//! validated record: magic, version, exact size, and the backing file's path.
//!
//! * The creator makes the companion **first**, then opens the backing file (if any),
//!   fills the record, and makes the data section last; if either section exists
//!   already, it closes what it got and reports `AlreadyExists` (so `create` fails on
//!   an existing name, and of racing creators exactly one wins). A taken name is found
//!   before the backing file is touched, and a file the failed creation made is deleted.
//! * Every holder keeps both handles and closes the data section first.
//! * An opener opens the companion, then the data section, then (if it had found no
//!   companion) the companion once more. A companion without a data section is a
//!   segment being created or closed: the opener lets go and looks again, for at most
//!   two seconds (then `Busy`). Otherwise, a shmipc segment's companion exists before its
//!   data section and outlives it, so an opener that holds the data section and finds
//!   no companion is looking at a section another program made. Its size is then the
//!   page-rounded size, the most the OS tells (as `Segment::size` documents).
//! * The record is copied out of the mapping before it is validated, and its size must
//!   fit inside the data section: a corrupt or hostile record is an error, never a
//!   view past the end.
//!
//! # Permissions
//!
//! Sections get an explicit DACL: full access for the creating user only (like 0600),
//! plus read (or read and write) for Everyone when the Unix mode asks for group or
//! other bits.
//!
//! # Safety
//!
//! This module holds the Win32 calls of the Windows backend; each `unsafe` block says
//! why it is sound. Handles are owned by [`OwnedHandle`] as soon as they are returned,
//! so every path closes them.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    GetLastError, LocalFree, SetHandleInformation, SetLastError, ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT, ERROR_DISK_FULL, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_PATH_NOT_FOUND,
    GENERIC_READ, GENERIC_WRITE, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, GetFileSizeEx, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, OPEN_ALWAYS,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FlushViewOfFile, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile,
    VirtualQuery, FILE_MAP, FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{
    GetSystemInfo, GlobalMemoryStatusEx, MEMORYSTATUSEX, SYSTEM_INFO,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::Error;
use crate::name::{Name, RESERVED_PREFIX};
use crate::vocab::{Access, Backing, CreateParams, Origin, Persistence, SegmentInfo};

/// Longest name: `MAX_PATH` (260, with its NUL) less the longest prefix shmipc adds,
/// `Global\.shmipc-meta-` (20). Counted in UTF-8 bytes, never fewer than UTF-16 units.
pub(crate) const MAX_NAME_LEN: usize = 239;

/// How long an opener waits for a segment that is being created or closed.
const PATIENCE: Duration = Duration::from_secs(2);

/// Which kernel namespace a name lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// `Local\`: this logon session (the default, and where unprefixed names go).
    Local,
    /// `Global\`: every session (creating needs `SeCreateGlobalPrivilege` on Windows).
    Global,
}

impl Namespace {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Local => "Local\\",
            Self::Global => "Global\\",
        }
    }
}

/// The allocation granularity (64 KiB): view offsets must be multiples of it.
pub(crate) fn granularity() -> usize {
    static GRANULARITY: OnceLock<usize> = OnceLock::new();
    *GRANULARITY.get_or_init(|| {
        let mut info = MaybeUninit::<SYSTEM_INFO>::zeroed();
        // SAFETY: `GetSystemInfo` fills the struct it is given and cannot fail; a zeroed
        // `SYSTEM_INFO` (plain integers and pointers) is a valid value either way.
        let info = unsafe {
            GetSystemInfo(info.as_mut_ptr());
            info.assume_init()
        };
        usize::try_from(info.dwAllocationGranularity)
            .ok()
            .filter(|g| g.is_power_of_two())
            .unwrap_or(1 << 16)
    })
}

pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

fn data_name(name: &Name, ns: Namespace) -> Vec<u16> {
    wide(&format!("{}{}", ns.prefix(), name.as_str()))
}

fn meta_name(name: &Name, ns: Namespace) -> Vec<u16> {
    wide(&format!(
        "{}{RESERVED_PREFIX}meta-{}",
        ns.prefix(),
        name.as_str()
    ))
}

pub(crate) fn is_error(e: &io::Error, code: u32) -> bool {
    e.raw_os_error()
        .and_then(|c| u32::try_from(c).ok())
        .is_some_and(|c| c == code)
}

/// Splits a 64-bit size or offset into the high and low `DWORD`s Win32 wants.
fn split(v: u64) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = v.to_le_bytes();
    (
        u32::from_le_bytes([e, f, g, h]),
        u32::from_le_bytes([a, b, c, d]),
    )
}

// ---------------------------------------------------------------------------------
// security

/// A self-relative security descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`.
/// Also used by the named synchronization objects (`sync/windows.rs`).
pub(crate) struct Security(PSECURITY_DESCRIPTOR);

impl Drop for Security {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by the conversion function with
        // `LocalAlloc`, which documents `LocalFree` as its release; freed only here.
        unsafe { LocalFree(self.0) };
    }
}

impl Security {
    /// Owner-only full access, plus Everyone read (and write) for the group/other
    /// bits of `mode`.
    pub(crate) fn for_mode(mode: u32) -> io::Result<Self> {
        Self::for_mode_with(mode, "GRGW", "GR")
    }

    /// Owner-only full access, plus Everyone `rw` (SDDL generic rights) when `mode`
    /// has group/other write bits, or `ro` when it has only read bits.
    pub(crate) fn for_mode_with(mode: u32, rw: &str, ro: &str) -> io::Result<Self> {
        let sid = user_sid()?;
        let mut sddl = format!("D:P(A;;GA;;;{sid})");
        if mode & 0o022 != 0 {
            sddl.push_str(&format!("(A;;{rw};;;WD)"));
        } else if mode & 0o044 != 0 {
            sddl.push_str(&format!("(A;;{ro};;;WD)"));
        }
        let text = wide(&sddl);
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated UTF-16 that outlives the call; `sd` is a valid
        // out pointer; the size out pointer may be null.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        };
        if ok == 0 || sd.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(sd))
    }

    pub(crate) fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(24),
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

/// The current user's SID as a string (`S-1-5-21-…`), read once from the process token.
pub(crate) fn user_sid() -> io::Result<String> {
    static SID: OnceLock<Result<String, i32>> = OnceLock::new();
    SID.get_or_init(|| read_user_sid().map_err(|e| e.raw_os_error().unwrap_or(-1)))
        .clone()
        .map_err(io::Error::from_raw_os_error)
}

fn read_user_sid() -> io::Result<String> {
    let mut raw: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing; `raw` is a
    // valid out pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut raw) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `raw` is a fresh token handle that nothing else owns.
    let token = unsafe { OwnedHandle::from_raw_handle(raw) };
    let mut len = 0u32;
    // SAFETY: a null buffer of length 0 asks only for the needed length.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            ptr::null_mut(),
            0,
            &mut len,
        )
    };
    // u64 elements: the buffer is aligned for TOKEN_USER's pointer.
    let words = usize::try_from(len).unwrap_or(0).div_ceil(8).max(1);
    let mut buf = vec![0u64; words];
    let cap = u32::try_from(words * 8).map_err(|_| io::Error::other("token too large"))?;
    // SAFETY: `buf` is writable for `cap` bytes and outlives the call.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            cap,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER (aligned: u64 storage)
    // whose SID pointer points inside the same buffer, which is still alive.
    let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID (see above); `text` is a valid out pointer.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `text` is a NUL-terminated UTF-16 string allocated with
    // `LocalAlloc`: read up to the NUL, then free it once.
    let s = unsafe {
        let mut n = 0usize;
        while *text.add(n) != 0 {
            n += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
        LocalFree(text.cast());
        s
    };
    Ok(s)
}

// ---------------------------------------------------------------------------------
// raw section calls

/// `CreateFileMappingW`; returns the handle and whether the object existed already.
pub(crate) fn create_section(
    file: HANDLE,
    sa: Option<&SECURITY_ATTRIBUTES>,
    size: u64,
    name: Option<&[u16]>,
) -> io::Result<(OwnedHandle, bool)> {
    let (hi, lo) = split(size);
    let sa_ptr = sa.map_or(ptr::null(), ptr::from_ref);
    let name_ptr = name.map_or(ptr::null(), <[u16]>::as_ptr);
    // SAFETY: `file` is a file handle or INVALID_HANDLE_VALUE, borrowed for the call;
    // `sa_ptr` and `name_ptr` are null or point to live values (the name is
    // NUL-terminated by `wide`). The last error is cleared first so that success
    // without ERROR_ALREADY_EXISTS reads as "created".
    let (h, err) = unsafe {
        SetLastError(0);
        let h = CreateFileMappingW(file, sa_ptr, PAGE_READWRITE, hi, lo, name_ptr);
        (h, GetLastError())
    };
    if h.is_null() {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(err).unwrap_or(-1),
        ));
    }
    // SAFETY: a non-null return is a fresh section handle that nothing else owns.
    let owned = unsafe { OwnedHandle::from_raw_handle(h) };
    Ok((owned, err == ERROR_ALREADY_EXISTS))
}

/// `OpenFileMappingW`; `Ok(None)` when no object has the name.
pub(crate) fn open_section(access: FILE_MAP, name: &[u16]) -> io::Result<Option<OwnedHandle>> {
    // SAFETY: `name` is NUL-terminated UTF-16 (from `wide`) that outlives the call.
    let h = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
    if h.is_null() {
        let e = io::Error::last_os_error();
        if is_error(&e, ERROR_FILE_NOT_FOUND) || is_error(&e, ERROR_INVALID_HANDLE) {
            // Not found, or a kernel object of another type (an event…) has the name.
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: a non-null return is a fresh section handle that nothing else owns.
    Ok(Some(unsafe { OwnedHandle::from_raw_handle(h) }))
}

/// The section's size as the OS tells it: its view size, rounded up to whole pages.
fn section_extent(section: &OwnedHandle) -> io::Result<u64> {
    let view = map_raw(section.as_raw_handle(), FILE_MAP_READ, 0, 0)?;
    let mut info = MaybeUninit::<MEMORY_BASIC_INFORMATION>::zeroed();
    // SAFETY: `view` is a live mapping; `info` is writable for its own size.
    let n = unsafe {
        VirtualQuery(
            view.ptr.as_ptr().cast_const().cast(),
            info.as_mut_ptr(),
            size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if n == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: VirtualQuery filled the struct (it returned its size, not 0).
    let info = unsafe { info.assume_init() };
    u64::try_from(info.RegionSize).map_err(|_| io::Error::other("region size overflows u64"))
}

// ---------------------------------------------------------------------------------
// the companion record

/// Size of the companion section.
const META_SIZE: usize = 4096;
const META_MAGIC: u64 = u64::from_le_bytes(*b"SHMIPCmw");
const META_VERSION: u32 = 1;
const META_FILE: u32 = 1;

/// The record at the start of the companion section, followed by the UTF-8 path of
/// the backing file (`path_len` bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MetaRecord {
    magic: u64,
    version: u32,
    flags: u32,
    size: u64,
    path_len: u32,
    reserved: u32,
}

const RECORD_LEN: usize = size_of::<MetaRecord>();
const MAX_PATH_BYTES: usize = META_SIZE - RECORD_LEN;

fn write_meta(meta: &OwnedHandle, size: u64, backing: &Backing) -> io::Result<()> {
    let path = match backing {
        Backing::File(p) => p.to_str().map(str::as_bytes).unwrap_or_default(),
        _ => &[],
    };
    // A path that does not fit (or is not UTF-8) is left out: openers then see
    // `Backing::File` with an empty path.
    let path = if path.len() <= MAX_PATH_BYTES {
        path
    } else {
        &[]
    };
    let record = MetaRecord {
        magic: META_MAGIC,
        version: META_VERSION,
        flags: if matches!(backing, Backing::File(_)) {
            META_FILE
        } else {
            0
        },
        size,
        path_len: u32::try_from(path.len()).unwrap_or(0),
        reserved: 0,
    };
    let view = map_raw(
        meta.as_raw_handle(),
        FILE_MAP_READ | FILE_MAP_WRITE,
        0,
        META_SIZE,
    )?;
    let bytes = bytemuck::bytes_of(&record);
    // SAFETY: the view is META_SIZE writable bytes, and RECORD_LEN + path.len() <=
    // META_SIZE; nobody else can have opened the companion yet (no data section
    // exists), so the memory is not being accessed concurrently.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), view.ptr.as_ptr(), RECORD_LEN);
        ptr::copy_nonoverlapping(path.as_ptr(), view.ptr.as_ptr().add(RECORD_LEN), path.len());
    }
    Ok(())
}

/// Reads and validates the companion record: the exact size (at most `extent`) and
/// the backing.
fn read_meta(meta: &OwnedHandle, extent: u64) -> io::Result<(u64, Backing)> {
    let view = map_raw(meta.as_raw_handle(), FILE_MAP_READ, 0, META_SIZE)?;
    let mut copy = vec![0u8; META_SIZE];
    // SAFETY: the view is META_SIZE readable bytes; copying them out as bytes is sound
    // whatever another process writes meanwhile, and everything is validated after.
    unsafe { ptr::copy_nonoverlapping(view.ptr.as_ptr(), copy.as_mut_ptr(), META_SIZE) };
    drop(view);
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the segment's shmipc size record is corrupt ({what})"),
        )
    };
    let record: MetaRecord = bytemuck::pod_read_unaligned(&copy[..RECORD_LEN]);
    if record.magic != META_MAGIC {
        return Err(bad("bad magic"));
    }
    if record.version != META_VERSION {
        return Err(bad("unknown version"));
    }
    if record.size == 0 || record.size > extent {
        return Err(bad("size outside the section"));
    }
    let path_len = usize::try_from(record.path_len).map_err(|_| bad("path length"))?;
    if path_len > MAX_PATH_BYTES {
        return Err(bad("path length"));
    }
    let backing = if record.flags & META_FILE != 0 {
        let path = std::str::from_utf8(&copy[RECORD_LEN..RECORD_LEN + path_len])
            .map_err(|_| bad("path not UTF-8"))?;
        Backing::File(PathBuf::from(path))
    } else {
        Backing::Memory
    };
    Ok((record.size, backing))
}

// ---------------------------------------------------------------------------------
// Handle

/// An open segment: the section handle, and for shmipc's named segments the
/// companion handle (kept so the record lives as long as any holder).
#[derive(Debug)]
pub(crate) struct Handle {
    // Declared first: dropped (closed) before the companion, which must outlive it.
    section: OwnedHandle,
    meta: Option<OwnedHandle>,
    size: u64,
    backing: Backing,
}

/// Whether `name` still names the section `h` holds: always, as a section's
/// name goes only with its last handle (this one included), and no other
/// section can take it meanwhile.
pub(crate) fn still_named(_h: &Handle, _name: &Name) -> Option<bool> {
    Some(true)
}

impl Handle {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn backing(&self) -> &Backing {
        &self.backing
    }
    pub(crate) fn persistence(&self) -> Persistence {
        // The name always goes with the last handle on Windows; a file-backed
        // segment's data stays in its file.
        Persistence::UntilLastClose
    }

    /// The section handle.
    pub(crate) fn section(&self) -> BorrowedHandle<'_> {
        use std::os::windows::io::AsHandle;
        self.section.as_handle()
    }

    /// Wraps a section handle received from elsewhere (e.g. inherited). Without a
    /// `size`, the size is the page-rounded one the OS tells; a given size is checked
    /// against it.
    pub(crate) fn from_handle(section: OwnedHandle, size: Option<u64>) -> io::Result<Self> {
        let extent = section_extent(&section)?;
        let size = match size {
            None => extent,
            Some(s) if s > 0 && s <= extent => s,
            Some(s) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("size {s} is not inside the section's {extent} bytes"),
                ))
            }
        };
        Ok(Self {
            section,
            meta: None,
            size,
            backing: Backing::Unnamed,
        })
    }
}

/// Lets child processes inherit `h` (`SetHandleInformation(HANDLE_FLAG_INHERIT)`).
pub(crate) fn set_inheritable(h: &OwnedHandle) -> io::Result<()> {
    // SAFETY: `h` is a live handle owned by the caller; only its inherit flag changes.
    let ok = unsafe {
        SetHandleInformation(h.as_raw_handle(), HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// create

const HINT_PERSIST: &str = ": Windows removes a paging-file section with its last handle; \
keep a holder while it is in use, or back it by a file \
(`SegmentOptions::file`) to keep its data after every handle closes";

pub(crate) fn create(name: &Name, p: &CreateParams<'_>) -> Result<Handle, Error> {
    create_in(name, p, Namespace::Local)
}

fn available_memory() -> u64 {
    let mut st = MaybeUninit::<MEMORYSTATUSEX>::zeroed();
    // SAFETY: `dwLength` is set as the API requires before the call; the struct is
    // plain integers, so a zeroed one is valid if the call fails.
    unsafe {
        (*st.as_mut_ptr()).dwLength = u32::try_from(size_of::<MEMORYSTATUSEX>()).unwrap_or(64);
        if GlobalMemoryStatusEx(st.as_mut_ptr()) == 0 {
            return 0;
        }
        st.assume_init().ullAvailPageFile
    }
}

pub(crate) fn create_in(name: &Name, p: &CreateParams<'_>, ns: Namespace) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |source: io::Error| {
            if is_error(&source, ERROR_ACCESS_DENIED) {
                Error::PermissionDenied(source)
            } else {
                Error::Os { op, source }
            }
        }
    };
    if p.file.is_none() && p.persistence == Persistence::UntilRemoved {
        return Err(Error::Unsupported {
            what: "a memory segment that outlives its last handle",
            hint: HINT_PERSIST,
        });
    }
    // Paging-file sections are committed at creation (SEC_COMMIT): `reserve` is what
    // Windows does anyway.
    let _ = p.reserve;
    let security = Security::for_mode(p.mode).map_err(os("building the security descriptor"))?;
    let sa = security.attributes();

    // 1. The companion: whoever creates it owns the name. Made before the backing
    //    file is touched, so that a taken name leaves no file created or extended.
    let (meta, existed) = create_section(
        INVALID_HANDLE_VALUE,
        Some(&sa),
        META_SIZE as u64,
        Some(&meta_name(name, ns)),
    )
    .map_err(os("CreateFileMappingW (size record)"))?;
    if existed {
        return Err(Error::AlreadyExists);
    }
    let dname = data_name(name, ns);

    // 2. The backing file, if any: opened (created if missing), sized by the section.
    let (file, size, backing) = match p.file {
        None => (None, p.size, Backing::Memory),
        Some(path) => {
            // A section of another program with this name: refuse before the file
            // is touched (the check below, after creating, still decides).
            if !matches!(open_section(FILE_MAP_READ, &dname), Ok(None)) {
                return Err(Error::AlreadyExists);
            }
            let file = BackingFile::open(path, p.size)?;
            let (size, backing) = (file.size, Backing::File(file.path.clone()));
            (Some(file), size, backing)
        }
    };
    write_meta(&meta, size, &backing).map_err(os("writing the size record"))?;

    // 3. The data section.
    let file_handle = file
        .as_ref()
        .map_or(INVALID_HANDLE_VALUE, |f| f.handle.as_raw_handle());
    let (section, existed) =
        create_section(file_handle, Some(&sa), size, Some(&dname)).map_err(|source| {
            let code = source
                .raw_os_error()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0);
            match code {
                ERROR_NOT_ENOUGH_MEMORY
                | ERROR_OUTOFMEMORY
                | ERROR_COMMITMENT_LIMIT
                | ERROR_DISK_FULL => Error::NoSpace {
                    size,
                    available: if file.is_some() {
                        0
                    } else {
                        available_memory()
                    },
                    store: match &backing {
                        Backing::File(p) => p.display().to_string(),
                        _ => "the paging file".into(),
                    },
                },
                // A kernel object of another type (event, mutex…) has the name.
                ERROR_INVALID_HANDLE => Error::AlreadyExists,
                _ => os("CreateFileMappingW")(source),
            }
        })?;
    if existed {
        // Made by another program (shmipc's own would have had a companion).
        return Err(Error::AlreadyExists);
    }
    // The section holds its own reference to the file: keep the file.
    if let Some(f) = file {
        f.keep();
    }
    Ok(Handle {
        section,
        meta: Some(meta),
        size,
        backing,
    })
}

/// The backing file while a segment is being created: deleted on drop if this
/// creation made it, unless [`BackingFile::keep`] is called.
struct BackingFile {
    handle: OwnedHandle,
    path: PathBuf,
    size: u64,
    created: bool,
}

impl BackingFile {
    fn open(path: &Path, size: u64) -> Result<Self, Error> {
        let (handle, size, path, created) = open_backing_file(path, size)?;
        Ok(Self {
            handle,
            path,
            size,
            created,
        })
    }

    fn keep(mut self) {
        self.created = false;
    }
}

impl Drop for BackingFile {
    fn drop(&mut self) {
        if self.created {
            // A failed create leaves no file it made behind. (Windows deletes it once
            // the handle closes: it was opened with FILE_SHARE_DELETE.)
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn open_backing_file(path: &Path, size: u64) -> Result<(OwnedHandle, u64, PathBuf, bool), Error> {
    let abs = std::path::absolute(path).map_err(|source| Error::Os {
        op: "resolving the file path",
        source,
    })?;
    let wpath: Vec<u16> = abs.as_os_str().encode_wide().chain(Some(0)).collect();
    // SAFETY: `wpath` is NUL-terminated UTF-16 that outlives the call; no security
    // attributes and no template. With OPEN_ALWAYS the last error says whether the
    // file existed (ERROR_ALREADY_EXISTS) or was created (0).
    let (h, err) = unsafe {
        SetLastError(0);
        let h = CreateFileW(
            wpath.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            ptr::null(),
            OPEN_ALWAYS,
            FILE_ATTRIBUTE_NORMAL,
            ptr::null_mut(),
        );
        (h, GetLastError())
    };
    if h == INVALID_HANDLE_VALUE {
        let source = io::Error::from_raw_os_error(i32::try_from(err).unwrap_or(-1));
        return Err(if is_error(&source, ERROR_ACCESS_DENIED) {
            Error::PermissionDenied(source)
        } else {
            Error::Os {
                op: if is_error(&source, ERROR_PATH_NOT_FOUND) {
                    "opening the backing file (its folder does not exist)"
                } else {
                    "opening the backing file"
                },
                source,
            }
        });
    }
    let created = err != ERROR_ALREADY_EXISTS;
    // SAFETY: a valid return is a fresh file handle that nothing else owns.
    let file = unsafe { OwnedHandle::from_raw_handle(h) };
    let discard = |file: OwnedHandle| {
        drop(file);
        if created {
            let _ = std::fs::remove_file(&abs);
        }
    };
    let mut current = 0i64;
    // SAFETY: `file` is open; `current` is a valid out pointer.
    if unsafe { GetFileSizeEx(file.as_raw_handle(), &mut current) } == 0 {
        let source = io::Error::last_os_error();
        discard(file);
        return Err(Error::Os {
            op: "GetFileSizeEx",
            source,
        });
    }
    let current = u64::try_from(current).unwrap_or(0);
    let size = if size == 0 { current } else { size };
    if size == 0 {
        discard(file);
        return Err(Error::InvalidSize {
            size: 0,
            reason: "the backing file is empty: give a size to extend it to",
        });
    }
    Ok((file, size, abs, created))
}

/// Names an object made with `defer_publish`: here objects are named when they
/// are made (the OS cannot name one later), so there is nothing left to do.
pub(crate) fn publish(_h: &Handle) -> Result<(), Error> {
    Ok(())
}

pub(crate) fn create_unnamed(size: u64, _reserve: bool) -> Result<Handle, Error> {
    // Paging-file sections are committed at creation (SEC_COMMIT): `reserve` is what
    // Windows does anyway.
    let (section, _) =
        create_section(INVALID_HANDLE_VALUE, None, size, None).map_err(|source| Error::Os {
            op: "CreateFileMappingW",
            source,
        })?;
    Ok(Handle {
        section,
        meta: None,
        size,
        backing: Backing::Unnamed,
    })
}

// ---------------------------------------------------------------------------------
// open

pub(crate) fn open(name: &Name, access: Access) -> Result<Handle, Error> {
    open_in(name, access, Namespace::Local)
}

pub(crate) fn open_in(name: &Name, access: Access, ns: Namespace) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |source: io::Error| {
            if is_error(&source, ERROR_ACCESS_DENIED) {
                Error::PermissionDenied(source)
            } else {
                Error::Os { op, source }
            }
        }
    };
    let rights = match access {
        Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        // FILE_MAP_COPY needs only read access to the section.
        Access::Read | Access::CopyOnWrite => FILE_MAP_READ,
    };
    let mname = meta_name(name, ns);
    let dname = data_name(name, ns);
    // A companion without a data section is a segment being created (companion
    // first) or closed (data section first): wait, briefly, for either to finish.
    let deadline = Instant::now() + PATIENCE;
    let mut spins = 0u32;
    let (first, section) = loop {
        let first =
            open_section(FILE_MAP_READ, &mname).map_err(os("OpenFileMappingW (size record)"))?;
        match open_section(rights, &dname).map_err(os("OpenFileMappingW"))? {
            Some(section) => break (first, section),
            None if first.is_none() => return Err(Error::NotFound),
            None if Instant::now() > deadline => return Err(Error::Busy),
            None => {
                // Let go of the companion, so that a closing segment can vanish.
                drop(first);
                spins += 1;
                if spins < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    };
    let meta = match first {
        Some(m) => Some(m),
        // The companion comes before the data section: look once more.
        None => {
            open_section(FILE_MAP_READ, &mname).map_err(os("OpenFileMappingW (size record)"))?
        }
    };
    let extent = section_extent(&section).map_err(os("MapViewOfFile (size probe)"))?;
    let (size, backing) = match &meta {
        Some(m) => read_meta(m, extent).map_err(os("reading the size record"))?,
        None => (extent, Backing::Memory),
    };
    Ok(Handle {
        section,
        meta,
        size,
        backing,
    })
}

// ---------------------------------------------------------------------------------
// remove, list, info, gc

pub(crate) fn remove(name: &Name) -> Result<(), Error> {
    let exists = [
        data_name(name, Namespace::Local),
        meta_name(name, Namespace::Local),
    ]
    .iter()
    .any(|w| !matches!(open_section(FILE_MAP_READ, w), Ok(None)));
    if !exists {
        return Err(Error::NotFound);
    }
    Err(Error::Unsupported {
        what: "removing a name",
        hint: ": on Windows a segment goes away with its last handle; drop every Segment and \
View of it, or end the processes that hold it",
    })
}

pub(crate) fn list() -> Result<Vec<SegmentInfo>, Error> {
    Err(Error::Unsupported {
        what: "listing segments",
        hint: "Windows has no documented way to enumerate named sections; \
ask about a name you know with `Segment::info`",
    })
}

pub(crate) fn info(name: &Name) -> Result<SegmentInfo, Error> {
    let h = open(name, Access::Read)?;
    Ok(SegmentInfo {
        name: name.to_string(),
        size: Some(h.size),
        backing: h.backing.clone(),
        origin: if h.meta.is_some() {
            Origin::Shmipc
        } else {
            Origin::Foreign
        },
        persistence: Persistence::UntilLastClose,
        mode: None,
        owner: None,
        holders: None,
        stale: false,
    })
}

/// Nothing to collect: the kernel removes a section with its last handle, even when
/// its holders were killed.
pub(crate) fn gc(_dry_run: bool) -> Result<Vec<String>, Error> {
    Ok(Vec::new())
}

// ---------------------------------------------------------------------------------
// mappings

/// One mapped view; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
}

impl Mapping {
    /// Names the range for a fault report: nothing to do here (no SIGBUS).
    pub(crate) fn label(&self, _name: &str) {}

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }
}

// SAFETY: a `Mapping` is an address range owned by this value; nothing about it is
// tied to the thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` has no interior state; shared access goes through raw pointers
// whose users follow the rules of `View`.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the base address `MapViewOfFile` returned, unmapped only
        // here, once; `View` guarantees no reference into it outlives the `Mapping`.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast::<c_void>(),
            })
        };
    }
}

pub(crate) fn map_raw(
    section: HANDLE,
    access: FILE_MAP,
    offset: u64,
    len: usize,
) -> io::Result<Mapping> {
    let (hi, lo) = split(offset);
    // SAFETY: `section` is a live section handle borrowed for the call; the OS picks a
    // fresh address range, so no existing memory is replaced; it checks the range
    // against the section and the access against the handle.
    let addr = unsafe { MapViewOfFile(section, access, hi, lo, len) };
    let ptr = NonNull::new(addr.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
    Ok(Mapping { ptr })
}

/// Maps `len` bytes at `offset` (a multiple of [`granularity`]).
pub(crate) fn map(h: &Handle, offset: u64, len: usize, access: Access) -> io::Result<Mapping> {
    let rights = match access {
        Access::Read => FILE_MAP_READ,
        Access::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        Access::CopyOnWrite => FILE_MAP_COPY,
    };
    // (The layer above tells `sys::wait` about the view, so that words in it get
    // kernel doorbells: see `wait::view_mapped`.)
    map_raw(h.section.as_raw_handle(), rights, offset, len)
}

/// Writes dirty pages of `start..start+len` (inside `m`) back to the backing file.
/// (`FlushViewOfFile` starts the writes; the file system finishes them.)
pub(crate) fn flush(m: &Mapping, start: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        // FlushViewOfFile would take 0 as "to the end of the view".
        return Ok(());
    }
    // SAFETY: `start..start+len` lies inside `m` (checked by the caller), which stays
    // mapped while `m` is borrowed.
    let ok = unsafe { FlushViewOfFile(m.ptr.as_ptr().add(start).cast_const().cast(), len) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unique(tag: &str) -> Name {
        static N: AtomicU32 = AtomicU32::new(0);
        Name::new(&format!(
            "u-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
        .unwrap()
    }

    fn params(size: u64) -> CreateParams<'static> {
        CreateParams {
            size,
            mode: 0o600,
            persistence: Persistence::UntilLastClose,
            file: None,
            reserve: false,
            defer_publish: false,
        }
    }

    #[test]
    fn granularity_is_the_allocation_granularity() {
        assert_eq!(granularity(), 64 * 1024);
    }

    #[test]
    fn split_is_high_then_low() {
        assert_eq!(split(0x1_2345_6789), (1, 0x2345_6789));
        assert_eq!(split(u64::MAX), (u32::MAX, u32::MAX));
    }

    #[test]
    fn opener_learns_the_exact_size_not_the_rounded_one() {
        let name = unique("size");
        let _created = create(&name, &params(1000)).unwrap();
        let opened = open(&name, Access::Read).unwrap();
        assert_eq!(opened.size(), 1000);
        assert!(section_extent(&opened.section).unwrap() >= 4096);
    }

    #[test]
    fn the_os_refuses_a_write_view_of_a_read_handle() {
        // Below the View layer's own check: the section handle itself lacks the right.
        let name = unique("ro");
        let _created = create(&name, &params(4096)).unwrap();
        let ro = open(&name, Access::Read).unwrap();
        let err = map(&ro, 0, 4096, Access::ReadWrite).unwrap_err();
        assert!(is_error(&err, ERROR_ACCESS_DENIED), "{err}");
        assert!(map(&ro, 0, 4096, Access::CopyOnWrite).is_ok());
    }

    #[test]
    fn a_corrupt_record_is_an_error() {
        let (meta, _) = create_section(INVALID_HANDLE_VALUE, None, META_SIZE as u64, None).unwrap();
        assert!(read_meta(&meta, 1 << 20).is_err()); // all zero: bad magic
        write_meta(&meta, 1 << 30, &Backing::Memory).unwrap();
        assert!(read_meta(&meta, 1 << 20).is_err()); // size beyond the section
        write_meta(&meta, 100, &Backing::File(PathBuf::from("C:\\x"))).unwrap();
        let (size, backing) = read_meta(&meta, 4096).unwrap();
        assert_eq!(
            (size, backing),
            (100, Backing::File(PathBuf::from("C:\\x")))
        );
    }

    /// The DACL the OS keeps for `h`, in SDDL (also used by `sync/windows.rs`).
    pub(crate) fn dacl_of(h: &OwnedHandle) -> String {
        use windows_sys::Win32::Security::Authorization::{
            ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SE_KERNEL_OBJECT,
        };
        use windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `h` is a live handle; the out pointers are valid or null.
        let rc = unsafe {
            GetSecurityInfo(
                h.as_raw_handle(),
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut sd,
            )
        };
        assert_eq!(rc, 0, "GetSecurityInfo");
        let sd = Security(sd); // freed on drop
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `sd` is the descriptor just returned; `text` is a valid out pointer.
        let ok = unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd.0,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                ptr::null_mut(),
            )
        };
        assert_ne!(
            ok, 0,
            "ConvertSecurityDescriptorToStringSecurityDescriptorW"
        );
        // SAFETY: on success `text` is a NUL-terminated LocalAlloc'd UTF-16 string.
        unsafe {
            let mut n = 0usize;
            while *text.add(n) != 0 {
                n += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        }
    }

    #[test]
    fn sections_are_owner_only_unless_the_mode_says_otherwise() {
        let sid = user_sid().unwrap();
        let name = unique("dacl");
        let h = create(&name, &params(4096)).unwrap();
        let dacl = dacl_of(&h.section);
        assert!(dacl.starts_with("D:P"), "{dacl}");
        assert_eq!(dacl.matches("(A;").count(), 1, "{dacl}");
        assert!(dacl.contains(&sid), "{dacl}");
        assert!(!dacl.contains(";WD)"), "{dacl}");
        // The companion record is protected the same way.
        assert_eq!(dacl_of(h.meta.as_ref().unwrap()), dacl);

        let shared = unique("dacl");
        let mut p = params(4096);
        p.mode = 0o644;
        let h = create(&shared, &p).unwrap();
        let dacl = dacl_of(&h.section);
        assert_eq!(dacl.matches("(A;").count(), 2, "{dacl}");
        assert!(dacl.contains(";WD)"), "{dacl}");
    }

    #[test]
    fn owner_only_descriptor_builds() {
        assert!(user_sid().unwrap().starts_with("S-1-"));
        for mode in [0o600, 0o640, 0o666] {
            Security::for_mode(mode).unwrap();
        }
    }
}
