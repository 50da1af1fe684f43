//! The `shmipc` command end to end: every test runs the real binary as separate
//! processes and checks what it prints, its exit code and what it leaves in the OS.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::Mutex;

use common::*;

// ---------------------------------------------------------------------------------
// demo

#[test]
fn demo_tells_the_seed_story_and_leaves_nothing() {
    let name = unique("demo");
    let _cleanup = Cleanup(name.clone());
    let out = run(&["demo", "--name", &name]);
    assert_success(&out, &["demo"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    let created = at("Process 1: created segment");
    let wrote = at("Process 1: wrote \"Hello from Process 1\"");
    let opened = at("Process 2: opened segment");
    let received = lines
        .iter()
        .position(|l| *l == "Received message from Process 1: Hello from Process 1")
        .unwrap_or_else(|| panic!("no received line in:\n{text}"));
    let p2_closed = at("Process 2: unmapped");
    let p1_closed = at("Process 1: unmapped");
    let gone = at("is gone");
    assert!(
        created < wrote
            && wrote < opened
            && opened < received
            && received < p2_closed
            && p2_closed < p1_closed
            && p1_closed < gone,
        "story out of order:\n{text}"
    );
    assert!(
        !text.contains("shmipc-demo: ready"),
        "protocol line leaked:\n{text}"
    );
    assert!(!left_behind(&name), "{name} left in /dev/shm");
}

/// A name that looks like an option is still the name: after `--name`, and in the
/// commands the demo runs for its two processes.
#[test]
fn demo_takes_a_name_that_starts_with_a_dash() {
    let name = format!("-{}", unique("demo-dash"));
    let _cleanup = Cleanup(name.clone());
    let out = run(&["demo", "--name", &name]);
    assert_success(&out, &["demo", "--name", &name]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Received message from Process 1: Hello from Process 1\n"),
        "{text}"
    );
    assert!(!left_behind(&name), "{name} left in /dev/shm");
}

/// `demo --name --help` (or `-h`) prints the demo's help, as `--help` does
/// anywhere else, and makes nothing (before: it ran the demo on a segment called
/// `--help`); `--name -x` still names `-x`.
#[test]
fn demo_name_help_asks_for_help() {
    for flag in ["--help", "-h"] {
        let args = ["demo", "--name", flag];
        let out = run(&args);
        assert_success(&out, &args);
        let text = String::from_utf8_lossy(&out.stdout);
        // `shmipc.exe demo` on Windows.
        assert!(
            text.contains("Usage: shmipc") && text.contains(" demo [OPTIONS]"),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains("Process 1: created"),
            "{args:?} ran the demo: {text}"
        );
    }
}

#[test]
fn demo_default_name_is_the_seed_name_made_unique() {
    let mut child = shmipc()
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = format!("MyFileMapping-{}", child.id());
    let _cleanup = Cleanup(name.clone());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = wait_exit(&mut child);
    assert!(status.success(), "demo failed:\n{stdout}");
    assert!(stdout.contains(&format!("`{name}`")), "{stdout}");
    assert!(stdout.contains("Received message from Process 1: Hello from Process 1\n"));
    assert!(!left_behind(&name));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn demo_with_a_taken_name_fails_in_one_line_and_leaves_the_segment_alone() {
    let name = unique("demo-taken");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "--size", "64"]);
    let args = ["demo", "--name", name.as_str()];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(
        line.contains("Process 1 failed") && line.contains("already exists"),
        "{line}"
    );
    // The existing segment is untouched.
    assert!(ok(&["info", &name]).contains("64 bytes"));
}

/// Process 1 holds the segment exactly until its stdin closes, which also happens
/// when the demo dies: it never outlives the demo, and never leaves a stale segment.
#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: the OS does not tell which processes hold a section"
)]
fn demo_process1_lets_go_when_its_stdin_closes() {
    let name = unique("p1");
    let _cleanup = Cleanup(name.clone());
    let mut child = spawn_piped(&["demo-process1", &name]);
    let stdin = child.stdin.take();
    let mut child = Running(child);
    let lines = lines_of(child.0.stdout.take().unwrap());
    while next_line(&lines) != "shmipc-demo: ready" {}
    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["holders"], serde_json::json!([child.0.id()]));
    assert_eq!(ok(&["read", &name]), "Hello from Process 1\n");
    drop(stdin);
    assert!(wait_exit(&mut child.0).success());
    assert!(!left_behind(&name));
}

// ---------------------------------------------------------------------------------
// create / write / read / info / ls / rm

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn round_trip_create_write_read_info_ls_rm() {
    let name = unique("rt");
    let _cleanup = Cleanup(name.clone());

    let created = ok(&["create", &name, "--size", "4K"]);
    assert!(
        created.contains("4096 bytes") && created.contains(&format!("shmipc rm {name}")),
        "{created}"
    );

    ok(&["write", &name, "Hello from Process 1"]);
    assert_eq!(ok(&["read", &name]), "Hello from Process 1\n");
    // The NUL written after TEXT ends the text, whatever was there before.
    ok(&["write", &name, "Hi"]);
    assert_eq!(ok(&["read", &name]), "Hi\n");
    ok(&["write", &name, "abc", "--offset", "0x100"]);
    assert_eq!(ok(&["read", &name, "--offset", "256"]), "abc\n");
    assert_eq!(
        ok(&["read", &name, "--offset", "256", "--len", "2"]),
        "ab\n"
    );
    ok(&["write", &name, "tail", "--offset", "4091"]); // 4 bytes + NUL: exactly fits
    assert_eq!(ok(&["read", &name, "--offset", "4091"]), "tail\n");

    let hex = ok(&["read", &name, "--hex", "--len", "32"]);
    let mut hex_lines = hex.lines();
    assert_eq!(
        hex_lines.next(),
        Some("00000000  48 69 00 6c 6f 20 66 72  6f 6d 20 50 72 6f 63 65  |Hi.lo from Proce|")
    );
    assert_eq!(
        hex_lines.next(),
        Some("00000010  73 73 20 31 00 00 00 00  00 00 00 00 00 00 00 00  |ss 1............|")
    );
    assert_eq!(hex_lines.next(), Some("00000020"));
    // Offsets count from the start of the segment; repeated lines collapse to `*`.
    let hex = ok(&["read", &name, "-x", "--offset", "0x200", "--len", "64"]);
    assert_eq!(
        hex.lines().collect::<Vec<_>>(),
        [
            "00000200  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|",
            "*",
            "00000240",
        ]
    );

    let raw = run(&["read", &name, "--raw", "--len", "5"]);
    assert_success(&raw, &["read --raw"]);
    assert_eq!(raw.stdout, b"Hi\0lo");

    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["name"], name.as_str());
    assert_eq!(info["size"], 4096);
    assert_eq!(info["backing"], "memory");
    assert_eq!(info["file"], serde_json::Value::Null);
    assert_eq!(info["origin"], "shmipc");
    assert_eq!(info["persistence"], "until-removed");
    assert_eq!(info["mode"], "0600");
    assert!(info["owner"].is_u64());
    assert_eq!(info["holders"], serde_json::json!([]));
    let human = ok(&["info", &name]);
    assert!(
        human.contains("4096 bytes (4 KiB)") && human.contains("0600"),
        "{human}"
    );

    let list = json(&ok(&["ls", "--json"]));
    let mine: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["size"], 4096);
    assert!(ok(&["ls"]).lines().any(|l| l.starts_with(&name)));
    assert!(ok(&["ls", "--all"]).lines().any(|l| l.starts_with(&name)));

    assert!(ok(&["rm", &name]).contains(&name));
    let args = ["info", name.as_str()];
    assert!(assert_fails(&run(&args), 1, &args).contains("does not exist"));
    assert!(!left_behind(&name));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn create_with_mode_and_persist() {
    let name = unique("mode");
    let _cleanup = Cleanup(name.clone());
    ok(&[
        "create",
        &name,
        "-s",
        "64K",
        "--mode",
        "0640",
        "--persist",
        "--reserve",
    ]);
    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["mode"], "0640");
    assert_eq!(info["size"], 65536);
    ok(&["rm", &name]);
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn write_from_stdin_and_from_a_file() {
    let name = unique("stdin");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "--size", "64"]);

    let out = run_with_stdin(&["write", &name, "-"], b"from stdin");
    assert_success(&out, &["write -"]);
    assert_eq!(ok(&["read", &name]), "from stdin\n");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    let bytes: Vec<u8> = (0..=255u8).rev().take(40).collect();
    std::fs::write(&file, &bytes).unwrap();
    ok(&[
        "write",
        &name,
        "--from",
        file.to_str().unwrap(),
        "--offset",
        "16",
    ]);
    let raw = run(&["read", &name, "--raw", "--offset", "16", "--len", "40"]);
    assert_success(&raw, &["read --raw"]);
    assert_eq!(raw.stdout, bytes);

    // Too much on stdin: refused, nothing written, one line.
    let args = ["write", name.as_str(), "-"];
    let line = assert_fails(&run_with_stdin(&args, &[b'x'; 100_000]), 1, &args);
    assert!(line.contains("does not fit"), "{line}");
    assert_eq!(ok(&["read", &name]), "from stdin\n");
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn text_that_is_not_utf8_is_shown_lossily_with_a_hint() {
    let name = unique("utf8");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "--size", "16"]);
    let out = run_with_stdin(&["write", &name, "-"], b"a\xffb");
    assert_success(&out, &["write -"]);
    let out = run(&["read", &name]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a\u{fffd}b\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--hex"), "{stderr}");
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: the name of a file-backed segment goes with the `create` command (tests/windows.rs covers --file --hold)"
)]
fn file_backed_segment_keeps_its_data_in_the_file() {
    let name = unique("file");
    let _cleanup = Cleanup(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backing");
    let p = path.to_str().unwrap();
    ok(&["create", &name, "--file", p, "--size", "8K"]);
    ok(&["write", &name, "kept in the file"]);
    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["backing"], "file");
    assert_eq!(info["file"], p);
    assert_eq!(info["size"], 8192);
    ok(&["rm", &name]);
    assert!(!left_behind(&name));
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), 8192);
    assert!(data.starts_with(b"kept in the file\0"));

    // Without --size, a file-backed segment takes the file's size.
    ok(&["create", &name, "--file", p]);
    assert_eq!(json(&ok(&["info", &name, "--json"]))["size"], 8192);
    assert_eq!(ok(&["read", &name]), "kept in the file\n");
    ok(&["rm", &name]);
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn len_zero_means_to_the_end() {
    let name = unique("len0");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "--size", "8"]);
    ok(&["write", &name, "1234567"]);
    let raw = run(&["read", &name, "--raw", "--len", "0", "--offset", "2"]);
    assert_success(&raw, &["read"]);
    assert_eq!(raw.stdout, b"34567\0");
}

// ---------------------------------------------------------------------------------
// --hold and gc

#[test]
#[cfg(unix)] // sends SIGTERM / SIGINT
fn hold_keeps_the_segment_until_sigterm() {
    let name = unique("hold");
    let _cleanup = Cleanup(name.clone());
    let (mut held, lines) = spawn_lines(&["create", &name, "--size", "1M", "--hold"]);
    let line = next_line(&lines);
    assert!(
        line.starts_with(&format!("holding segment `{name}`")),
        "{line}"
    );
    assert!(line.contains("Ctrl-C"), "{line}");

    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["persistence"], "until-last-close");
    assert_eq!(info["holders"], serde_json::json!([held.0.id()]));
    // Another process can use it meanwhile.
    ok(&["write", &name, "while held"]);
    assert_eq!(ok(&["read", &name]), "while held\n");

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&held.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = wait_exit(&mut held.0);
    assert!(status.success(), "{status:?}");
    assert!(next_line(&lines).contains("released"));
    let args = ["info", name.as_str()];
    assert_fails(&run(&args), 1, &args);
    assert!(!left_behind(&name), "{name} left in /dev/shm");
}

#[test]
#[cfg(unix)] // sends SIGTERM / SIGINT
fn hold_of_a_file_backed_segment_removes_the_name_and_keeps_the_file() {
    let name = unique("holdfile");
    let _cleanup = Cleanup(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let (mut held, lines) = spawn_lines(&[
        "create",
        &name,
        "--file",
        path.to_str().unwrap(),
        "-s",
        "4K",
        "--hold",
    ]);
    assert!(next_line(&lines).starts_with("holding"));
    ok(&["write", &name, "stays"]);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&held.0),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert!(wait_exit(&mut held.0).success());
    assert!(!left_behind(&name));
    assert!(std::fs::read(&path).unwrap().starts_with(b"stays\0"));
}

/// Tests that run `gc` for real take turns: one's `gc` would collect the stale
/// segment that another has made on purpose.
static GC: Mutex<()> = Mutex::new(());

#[test]
#[cfg(target_os = "linux")] // looks for the stale object in /dev/shm
fn gc_removes_a_segment_whose_holder_was_killed() {
    let _turn = GC.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("gc");
    let _cleanup = Cleanup(name.clone());
    let (mut held, lines) = spawn_lines(&["create", &name, "--size", "4K", "--hold"]);
    assert!(next_line(&lines).starts_with("holding"));
    held.0.kill().unwrap(); // SIGKILL: no chance to clean up
    wait_exit(&mut held.0);

    // Stale: the object is still in /dev/shm, but nobody can open or list it.
    assert!(left_behind(&name), "the stale segment vanished before gc");
    let listed = json(&ok(&["ls", "--json"]));
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == name.as_str()),
        "stale segment listed: {listed}"
    );

    let dry = json(&ok(&["gc", "--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == name.as_str()),
        "{dry}"
    );
    assert!(left_behind(&name), "--dry-run removed it");

    let human = ok(&["gc"]);
    assert!(
        human.contains(&format!("removed stale segment `{name}`")),
        "{human}"
    );
    assert!(!left_behind(&name));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn gc_never_touches_live_or_persistent_segments() {
    let _turn = GC.lock().unwrap_or_else(|e| e.into_inner());
    let live = unique("gc-live");
    let kept = unique("gc-kept");
    let _c1 = Cleanup(live.clone());
    let _c2 = Cleanup(kept.clone());
    let (_held, lines) = spawn_lines(&["create", &live, "--size", "4K", "--hold"]);
    assert!(next_line(&lines).starts_with("holding"));
    ok(&["create", &kept, "--size", "4K"]);
    let gc = json(&ok(&["gc", "--json"]));
    let names = gc["segments"].as_array().unwrap();
    assert!(
        !names
            .iter()
            .any(|s| s == live.as_str() || s == kept.as_str()),
        "{gc}"
    );
    ok(&["info", &live]);
    ok(&["info", &kept]);
}

// ---------------------------------------------------------------------------------
// bad input

/// A name no object can have (a `/`, a control character, too long, `..`) is a
/// wrong command line for every verb that takes one: exit status 2, as every other
/// bad value, one line naming the rule, and nothing done (before: status 1, from
/// wherever the library refused it; `rm GOOD BAD` removed GOOD first).
#[test]
fn a_bad_name_is_a_usage_error_for_every_verb() {
    let good = unique("badname");
    let _cleanup = Cleanup(good.clone());
    let long = "x".repeat(300);
    for bad in ["a/b", "a\u{1b}b", long.as_str(), ".."] {
        let cases: &[&[&str]] = &[
            &["create", bad, "-s", "4K"],
            &["write", bad, "x"],
            &["read", bad],
            &["info", bad],
            &["rm", bad],
            &["lock", bad, "--", "true"],
            &["sem", bad, "create"],
            &["sem", "--", bad, "post"],
            &["event", bad, "set"],
            &["pub", bad, "m"],
            &["sub", bad, "--count", "1", "--timeout", "10ms"],
            &["sub", bad, "--count", "0"],
            &["demo", "--name", bad],
        ];
        for args in cases {
            let out = run(args);
            let line = assert_fails(&out, 2, args);
            assert!(line.contains("the name"), "{args:?}: {line}");
        }
    }
    // Every name is checked before any is acted on (Windows: no segment outlives
    // `shmipc create` without --hold, and `rm` has nothing to remove).
    if cfg!(unix) {
        ok(&["create", &good, "-s", "4K"]);
        let args = ["rm", &good, "a/b"];
        let line = assert_fails(&run(&args), 2, &args);
        assert!(line.contains("nothing was done"), "{line}");
        assert!(shm_path(&good).exists(), "`rm` removed the good name");
    }
}

/// Every kind of bad input: a non-zero exit code, one line on stderr, no panic, and
/// nothing left under the name.
#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn bad_input_fails_in_one_line_and_leaks_nothing() {
    let name = unique("bad");
    let _cleanup = Cleanup(name.clone());
    let n = name.as_str();
    let long = "x".repeat(300);
    let dir = tempfile::tempdir().unwrap();
    let missing_dir_file = dir.path().join("no/such/dir/f");
    let missing_dir_file = missing_dir_file.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        // names: a wrong command line, as any other bad value
        (&["create", "a/b", "-s", "1"], 2, "`/`"),
        (&["create", "..", "-s", "1"], 2, "directory reference"),
        (&["create", "", "-s", "1"], 2, "empty"),
        (&["create", &long, "-s", "1"], 2, "at most"),
        (&["create", ".shmipc-x", "-s", "1"], 2, "reserves"),
        (&["read", "a/b"], 2, "`/`"),
        // sizes
        // A value that parses but that nothing can be made with is a wrong command
        // line (2); one this machine cannot hold now is a failure (1).
        (&["create", n, "-s", "0"], 2, "at least one byte"),
        (&["create", n, "-s", "1000T"], 1, "do not fit"),
        (
            &["create", n, "-s", "18446744073709551615"],
            2,
            "larger than any OS",
        ),
        (
            &["pub", n, "--capacity", "0", "m"],
            2,
            "--capacity 0 is invalid",
        ),
        (
            &["pub", n, "--capacity", "4294967296", "m"],
            2,
            "--capacity 4294967296 is invalid",
        ),
        (
            &["sub", n, "--max-subscribers", "1025", "-n", "1"],
            2,
            "--max-subscribers 1025 is invalid",
        ),
        (&["pub", n, "--max-size", "3G", "m"], 2, "--max-size"),
        (
            &["sem", n, "create", "--initial", "5", "--max", "3"],
            2,
            "exceeds the maximum",
        ),
        (&["sem", n, "create", "--max", "0"], 2, "at least 1"),
        (&["create", n, "-s", "99999999999999999999"], 2, "too large"),
        (&["create", n, "-s", "16384P"], 2, "too large"),
        (&["create", n, "-s", "12Q"], 2, "unknown unit"),
        (&["create", n, "-s", "64KB"], 2, "ambiguous"),
        (&["create", n, "-s", "1.3K"], 2, "whole number"),
        (&["create", n, "--size=-1"], 2, "not a size"),
        (&["create", n, "-s", "-1"], 2, "not a size"),
        (&["read", n, "--offset", "-5"], 2, "not a size"),
        (&["demo", "--timeout", "-5s"], 2, "not a duration"),
        (&["sub", n, "--count", "-3"], 2, "not a count"),
        (&["sub", n, "--history", "x"], 2, "not a count"),
        (&["pub", n, "--capacity", "-1", "m"], 2, "not a count"),
        (
            &["pub", n, "--max-subscribers", "99999999999999999999", "m"],
            2,
            "too large",
        ),
        (&["lock", n, "--timeout", "-1s"], 2, "not a duration"),
        (&["sem", n, "create", "--initial", "-1"], 2, "not a count"),
        (&["sem", n, "create", "--max", "4294967296"], 2, "too large"),
        (&["create", n], 2, "--size"),
        // modes and flags
        (
            &["create", n, "-s", "1", "--mode", "755"],
            2,
            "execute bits",
        ),
        (&["create", n, "-s", "1", "--mode", "9"], 2, "octal"),
        (&["create", n, "-s", "1", "--mode", "17777"], 2, "beyond"),
        (
            &["create", n, "-s", "1", "--hold", "--persist"],
            2,
            "cannot be used",
        ),
        (
            &["create", n, "--file", missing_dir_file],
            1,
            "backing file",
        ),
        // missing segments
        (&["read", n], 1, "does not exist"),
        (&["write", n, "x"], 1, "does not exist"),
        (&["info", n], 1, "does not exist"),
        (&["info", n, "--json"], 1, "does not exist"),
        (&["rm", n], 1, "does not exist"),
        (&["rm", n, n], 1, "2 of 2"),
        // command line
        (&["write", n], 2, "required"),
        (&["write", n, "x", "--from", "f"], 2, "cannot be used"),
        (&["read", n, "--hex", "--raw"], 2, "cannot be used"),
        (&["rm"], 2, "required"),
        (&["bogus"], 2, "unrecognized subcommand"),
        (&["read", n, "--offset", "1e9"], 2, "unknown unit"),
        (&["demo", "--timeout", "5"], 2, "no unit"),
        (&["demo", "--name", "a/b"], 2, "`/`"),
    ];
    for (args, code, says) in cases {
        let line = assert_fails(&run(args), *code, args);
        assert!(
            line.contains(says),
            "shmipc {args:?}: {line:?} does not say {says:?}"
        );
        assert!(!left_behind(n), "shmipc {args:?} left {n} behind");
    }
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn bad_ranges_on_an_existing_segment_fail_in_one_line() {
    let name = unique("range");
    let _cleanup = Cleanup(name.clone());
    let n = name.as_str();
    ok(&["create", n, "--size", "1K"]);
    ok(&["write", n, "intact"]);
    let cases: &[(&[&str], &str)] = &[
        (&["create", n, "-s", "1"], "already exists"),
        (
            &["write", n, "too long for the end", "--offset", "1020"],
            "does not fit",
        ),
        (&["write", n, "x", "--offset", "2K"], "past the end"),
        (
            &["write", n, "x", "--offset", "18446744073709551615"],
            "past the end",
        ),
        (&["read", n, "--offset", "1024"], "past the end"),
        (
            &["read", n, "--offset", "18446744073709551615"],
            "past the end",
        ),
        // (`read --len` past the end is not an error: it reads to the end, as the
        // help says "at most"; see tests/hardening.rs.)
    ];
    for (args, says) in cases {
        let line = assert_fails(&run(args), 1, args);
        assert!(
            line.contains(says),
            "shmipc {args:?}: {line:?} does not say {says:?}"
        );
    }
    // A taken name with --file: refused before the file is created.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new");
    let args = ["create", n, "--file", file.to_str().unwrap(), "-s", "4K"];
    assert!(assert_fails(&run(&args), 1, &args).contains("already exists"));
    assert!(!file.exists(), "a failed create left its backing file");

    let too_big = run_with_stdin(&["write", n, "-", "--offset", "1023"], b"xy");
    assert!(assert_fails(&too_big, 1, &["write -"]).contains("does not fit"));
    // Nothing was written by the failures.
    assert_eq!(ok(&["read", n]), "intact\n");
    assert_eq!(json(&ok(&["info", n, "--json"]))["size"], 1024);
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows: a segment cannot outlive `shmipc create` without --hold (tests/windows.rs covers --hold)"
)]
fn a_closed_stdout_is_not_a_crash() {
    let name = unique("pipe");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "--size", "4M"]);
    let mut child = shmipc()
        .args(["read", &name, "--raw"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `shmipc read … | head -0`
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn help_documents_lifetime_and_json_keys() {
    let create = ok(&["create", "--help"]);
    assert!(
        create.contains("shmipc rm NAME") && create.contains("--hold"),
        "{create}"
    );
    let info = ok(&["info", "--help"]);
    for key in [
        "name",
        "size",
        "backing",
        "file",
        "origin",
        "persistence",
        "mode",
        "owner",
        "holders",
    ] {
        assert!(
            info.contains(&format!("  {key} ")),
            "info --help lacks {key}"
        );
    }
    let top = ok(&["--help"]);
    for verb in ["demo", "create", "write", "read", "info", "ls", "rm", "gc"] {
        assert!(top.contains(&format!("  {verb} ")), "--help lacks {verb}");
    }
    assert!(!top.contains("demo-process"), "hidden verbs shown");
}

/// A timeout under a millisecond (or not a whole number of them) is named exactly
/// in the message: `500us` was "for 0ms", `1500us` "for 1ms".
#[test]
fn sub_timeouts_are_named_exactly() {
    let topic = unique("dur");
    let _c = Cleanup(topic.clone());
    for (given, shown) in [("500us", "500µs"), ("1500us", "1500µs"), ("750ns", "750ns")] {
        let args = ["sub", topic.as_str(), "-t", given];
        let line = assert_fails(&run(&args), 1, &args);
        assert!(line.contains(&format!(" for {shown}")), "{given}: {line}");
    }
}
