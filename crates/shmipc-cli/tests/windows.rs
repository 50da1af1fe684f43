//! The `shmipc` command on Windows (under Wine in CI): what works the same, what
//! Windows cannot do and how the command says so, and the seed's own programs
//! (built from `interop/` by `ci/windows.sh`) sharing `MyFileMapping` with the command.
//!
//! On Windows a segment lives while a process holds it, so every test keeps one with
//! `shmipc create --hold` (killed at the end, which also removes the segment).
#![cfg(windows)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::*;

/// `shmipc create NAME ARGS --hold`, once it says it holds the segment.
fn hold(name: &str, args: &[&str]) -> Running {
    let mut all = vec!["create", name, "--hold"];
    all.extend_from_slice(args);
    let (holder, lines) = spawn_lines(&all);
    let first = next_line(&lines);
    assert!(first.starts_with("holding segment"), "{first}");
    holder
}

#[test]
fn held_segment_write_read_info_then_gone_with_its_holder() {
    let name = unique("win-rt");
    let mut holder = hold(&name, &["--size", "4K"]);
    ok(&["write", &name, "hello windows"]);
    assert_eq!(ok(&["read", &name]), "hello windows\n");
    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["size"], 4096, "{info}");
    assert_eq!(info["origin"], "shmipc", "{info}");
    holder.0.kill().unwrap(); // TerminateProcess: the kernel closes its handles
    wait_exit(&mut holder.0);
    let args = ["read", name.as_str()];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(line.contains("does not exist"), "{line}");
}

#[test]
fn offsets_past_the_64k_granularity() {
    let name = unique("win-off");
    let _holder = hold(&name, &["--size", "200K"]);
    ok(&["write", &name, "--offset", "70000", "past 64K"]);
    assert_eq!(ok(&["read", &name, "--offset", "70000"]), "past 64K\n");
}

#[test]
fn create_without_hold_says_what_to_do() {
    let name = unique("win-persist");
    let args = ["create", name.as_str(), "--size", "4K"];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(line.contains("--hold") && line.contains("file"), "{line}");
}

#[test]
fn ls_and_rm_say_what_windows_cannot_do() {
    let line = assert_fails(&run(&["ls"]), 1, &["ls"]);
    assert!(line.contains("info"), "{line}");

    let name = unique("win-rm");
    let _holder = hold(&name, &["--size", "4K"]);
    let args = ["rm", name.as_str()];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(line.contains("last handle"), "{line}");
    // Still there: rm changed nothing.
    ok(&["info", &name]);
    // Nothing can go stale on Windows: gc finds nothing.
    ok(&["gc"]);
}

#[test]
fn file_backed_hold_keeps_the_data_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.bin");
    let path_s = path.to_str().unwrap();
    let name = unique("win-file");
    let mut holder = hold(&name, &["--size", "4K", "--file", path_s]);
    ok(&["write", &name, "kept in the file"]);
    holder.0.kill().unwrap();
    wait_exit(&mut holder.0);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(bytes.starts_with(b"kept in the file\0"));
}

// ---------------------------------------------------------------------------------
// the seed's programs

/// The seed's name is shared by these tests: one at a time.
static SEED: Mutex<()> = Mutex::new(());

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
fn seed_process1_writes_cli_reads() {
    let Some(exe) = seed_program("process1") else {
        return;
    };
    let _one = SEED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut p1 = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(p1.stdout.take().unwrap());
    assert_eq!(next_line(&lines), "ready");
    let mut p1 = Running(p1);
    assert_eq!(
        ok(&["read", "MyFileMapping", "--len", "1024"]),
        "Hello from Process 1\n"
    );
    let info = json(&ok(&["info", "MyFileMapping", "--json"]));
    assert_eq!(info["origin"], "foreign", "{info}");
    p1.0.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(wait_exit(&mut p1.0).success());
}

#[test]
fn cli_writes_seed_process2_reads() {
    let Some(exe) = seed_program("process2") else {
        return;
    };
    let _one = SEED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _holder = hold("MyFileMapping", &["--size", "1024"]);
    ok(&["write", "MyFileMapping", "Hello from Process 1"]);
    let out = Command::new(exe).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "process2 failed: {text}");
    assert_eq!(
        text.trim_end(),
        "Received message from Process 1: Hello from Process 1"
    );
}

#[test]
fn lock_runs_a_command_and_sem_create_says_why_it_cannot_persist() {
    let name = unique("win-lock");
    let exe = env!("CARGO_BIN_EXE_shmipc");
    let out = ok(&["lock", name.as_str(), "--", exe, "--version"]);
    assert!(out.contains("shmipc"), "{out}");
    // The command's failure is passed on.
    let args = ["lock", name.as_str(), "--", exe, "info", "w-no-such-object"];
    assert_fails(&run(&args), 1, &args);
    // A CLI process cannot hold a semaphore for later commands on Windows.
    let sem = unique("win-sem");
    let args = ["sem", sem.as_str(), "create"];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(line.contains("last handle"), "{line}");
}

/// COMMAND never outlives `shmipc lock` (issue 10): killing the `lock` process
/// (TerminateProcess, which releases the mutex) kills COMMAND through the
/// kill-on-close job object. COMMAND here is `shmipc create --hold`, whose segment
/// lives exactly as long as it does.
#[test]
fn lock_command_dies_with_the_lock() {
    let name = unique("win-lock-job");
    let seg = unique("win-lock-job-seg");
    let exe = env!("CARGO_BIN_EXE_shmipc");
    let (mut lock, lines) = spawn_lines(&[
        "lock", &name, "--", exe, "create", &seg, "--size", "4K", "--hold",
    ]);
    let first = next_line(&lines);
    assert!(first.starts_with("holding segment"), "{first}");
    ok(&["info", &seg]);
    lock.0.kill().unwrap();
    wait_exit(&mut lock.0);
    wait_until("COMMAND to die with `shmipc lock`", || {
        !run(&["info", &seg]).status.success()
    });
}
