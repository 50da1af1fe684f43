//! `shmipc lock NAME [--timeout DUR] -- COMMAND [ARGS...]`: flock(1) with a named
//! mutex. The command's exit status becomes ours (128+N for a signal N, as shells
//! report it); 126/127 when it cannot be run or is not found (as `env` and
//! `timeout` use); 1 with one line for our own failures.

use std::io;
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use shmipc::sync::{LockError, LockTimeoutError, MutexGuard, NamedMutex};

use super::object;
use crate::cli::LockArgs;
use crate::output::{self, Result};
use crate::units;

const KIND: &str = "mutex";

/// Exit status when the command exists but cannot be run.
const CANNOT_RUN: u8 = 126;
/// Exit status when the command is not found.
const NOT_FOUND: u8 = 127;

pub fn run(args: &LockArgs) -> Result<ExitCode> {
    let name = &args.name;
    // Windows kernel objects cannot outlive their handles: there the mutex lives while
    // any `lock` (or other holder) has it, which is all that `lock` needs.
    let opts = if cfg!(windows) {
        shmipc::sync::ObjectOptions::new().mode(0o600)
    } else {
        object::persistent(0o600)
    };
    // Arguments first: a failed command creates nothing.
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("no command given: `shmipc lock NAME -- COMMAND [ARGS...]`")?;
    // A command that cannot be found or run is told before the mutex is made, so
    // that it leaves nothing behind (once made, the mutex stays: see below).
    if let Err((code, e)) = runnable(program) {
        output::warn(format!("cannot run `{}`: {e}", program.to_string_lossy()));
        return Ok(ExitCode::from(code));
    }
    let (mutex, _) = NamedMutex::create_or_open_with(name, &opts)
        .map_err(|e| object::error(e, name, KIND, None))?;
    let (guard, owner_died) = acquire(&mutex, args)?;
    if owner_died {
        output::warn(format!(
            "the previous holder of mutex `{name}` died while holding it: running the command anyway with SHMIPC_OWNER_DIED=1 (the mutex is marked consistent if it exits 0)"
        ));
    }

    let mut command = Command::new(program);
    command.args(rest);
    if owner_died {
        command.env("SHMIPC_OWNER_DIED", "1");
    }
    die_with_us(&mut command);
    forward_signals();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            // The mutex stays, as after any command: another locker may have opened
            // it meanwhile and be waiting on it, and removing it now would let the
            // next locker make a new one and run beside that one.
            drop(guard);
            let code = if e.kind() == io::ErrorKind::NotFound {
                NOT_FOUND
            } else {
                CANNOT_RUN
            };
            output::warn(format!("cannot run `{}`: {e}", program.to_string_lossy()));
            return Ok(ExitCode::from(code));
        }
    };
    #[cfg(windows)]
    kill_with_us(&child);
    CHILD.store(child.id(), Ordering::SeqCst);
    if STOP.load(Ordering::SeqCst) {
        terminate(child.id());
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the command: {e}"))?;
    if owner_died && status.success() {
        guard.mark_consistent();
    }
    drop(guard);
    Ok(ExitCode::from(exit_code(status)))
}

/// Whether `program` names a file this process may execute: as a path where it
/// has a `/`, else the first such file in `PATH` (as `execvp` looks). The exit
/// status and why, where not: 127 not found, 126 found but not runnable. A
/// pre-check only (the spawn can still fail, and is reported then).
#[cfg(unix)]
fn runnable(program: &std::ffi::OsStr) -> std::result::Result<(), (u8, io::Error)> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    let check = |p: &Path| -> std::result::Result<(), (u8, io::Error)> {
        let meta = std::fs::metadata(p).map_err(|e| {
            let code = if e.kind() == io::ErrorKind::NotFound {
                NOT_FOUND
            } else {
                CANNOT_RUN
            };
            (code, e)
        })?;
        if meta.is_dir() {
            return Err((CANNOT_RUN, io::Error::other("it is a directory")));
        }
        match rustix::fs::access(p, rustix::fs::Access::EXEC_OK) {
            Ok(()) => Ok(()),
            Err(e) => Err((CANNOT_RUN, e.into())),
        }
    };
    if program.as_bytes().contains(&b'/') {
        return check(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let mut first_err = None;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        match check(&dir.join(program)) {
            Ok(()) => return Ok(()),
            Err((NOT_FOUND, _)) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| {
        (
            NOT_FOUND,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not found in any directory of PATH",
            ),
        )
    }))
}

/// Elsewhere the spawn itself tells (and Windows' kernel mutex goes with its
/// handles: nothing is left behind).
#[cfg(not(unix))]
fn runnable(_program: &std::ffi::OsStr) -> std::result::Result<(), (u8, io::Error)> {
    Ok(())
}

/// The command must not outlive the lock: if this process dies (even by SIGKILL,
/// which releases the mutex), the kernel kills the command too
/// (`PR_SET_PDEATHSIG`), so that the next locker never runs beside it. Set in the
/// child between fork and exec; if this process died before it took effect, the
/// child's parent is no longer us and it does not run the command.
#[cfg(target_os = "linux")]
fn die_with_us(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // system calls (prctl, getppid, getpid, kill), all async-signal-safe; it
    // allocates nothing (an `io::Error` from an errno is not boxed) and touches no
    // lock.
    unsafe {
        command.pre_exec(move || {
            use rustix::process::{getpid, getppid, kill_process, Signal};
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if getppid() != Some(parent) {
                // We died before COMMAND started: the child goes too, and quietly.
                // Returning an error would have std report it through a pipe whose
                // reader is gone, and abort (SIGABRT, a core dump) when that fails.
                let _ = kill_process(getpid(), Signal::KILL);
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// Elsewhere on Unix there is no parent-death signal: documented in `--help`.
#[cfg(all(unix, not(target_os = "linux")))]
fn die_with_us(_command: &mut Command) {}

/// Windows: the command goes into a job object that kills it when its last handle,
/// ours, closes (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`): when this process ends, by
/// any means, so does the command.
#[cfg(windows)]
fn die_with_us(_command: &mut Command) {}

#[cfg(windows)]
fn kill_with_us(child: &std::process::Child) {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    // SAFETY: plain Win32 calls with valid arguments: a fresh unnamed job, a
    // zeroed limit structure with one flag set (its documented size), and the
    // child's process handle, which `child` keeps open. The job handle is never
    // closed: it must live as long as this process, and closes when it ends.
    unsafe {
        let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
        if job.is_null() {
            return;
        }
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        );
        AssignProcessToJobObject(job, child.as_raw_handle());
    }
}

/// Takes the lock (waiting at most `--timeout`); says whether a holder had died.
fn acquire<'m>(mutex: &'m NamedMutex, args: &LockArgs) -> Result<(MutexGuard<'m>, bool)> {
    let name = &args.name;
    match args.timeout {
        None => match mutex.lock() {
            Ok(g) => Ok((g, false)),
            Err(LockError::OwnerDied(g)) => Ok((g, true)),
            Err(e) => Err(format!("mutex `{name}`: {e}").into()),
        },
        Some(timeout) => match mutex.lock_timeout(timeout) {
            Ok(g) => Ok((g, false)),
            Err(LockTimeoutError::OwnerDied(g)) => Ok((g, true)),
            Err(LockTimeoutError::Timeout(_)) => Err(format!(
                "timed out after {} waiting for mutex `{name}`: a live process holds it; wait longer or find the holder (`{info}`)",
                units::human_duration(timeout), info = crate::output::suggest("info", name))
            .into()),
            Err(e) => Err(format!("mutex `{name}`: {e}").into()),
        },
    }
}

/// Our exit status for the command's: its code, or 128+N for a signal N.
fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

/// The running command's process id (0 before it starts).
static CHILD: AtomicU32 = AtomicU32::new(0);
/// A terminating signal arrived.
static STOP: AtomicBool = AtomicBool::new(false);

/// From now on Ctrl-C, SIGTERM and SIGHUP do not end this process (which would leave
/// the mutex to be taken over as from a dead owner): they are passed on to the
/// command as SIGTERM, and we release the mutex when it has ended. A signal that
/// arrives before the command starts is passed on as soon as it does (`run` checks
/// `STOP` after publishing `CHILD`; SeqCst on both sides, so one of the two sees
/// the other).
fn forward_signals() {
    // If the handler cannot be installed, the signals keep their default action:
    // the command still runs, and the next locker would be told the holder died.
    let _ = ctrlc::set_handler(|| {
        STOP.store(true, Ordering::SeqCst);
        let pid = CHILD.load(Ordering::SeqCst);
        if pid != 0 {
            terminate(pid);
        }
    });
}

#[cfg(unix)]
fn terminate(pid: u32) {
    use rustix::process::{kill_process, Pid, Signal};
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::TERM);
    }
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {
    // The console delivers Ctrl-C to the command itself.
}
