//! `shmipc pub` and `shmipc sub` end to end, and what `ls` / `info` say about
//! channels: every test runs the real binary as separate processes, and waits for a
//! `sub` to show up as a connected subscriber (`info --json`) before publishing.
//!
//! Unix only: on Windows a topic cannot outlive the command that made it, and `ls`
//! cannot enumerate sections, so these flows differ there.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::sync::mpsc::Receiver;

use common::*;

/// The topic's state from `info --json`.
fn state(topic: &str) -> serde_json::Value {
    let info = json(&ok(&["info", topic, "--json"]));
    assert_eq!(info["kind"], "pubsub", "{info}");
    info["state"].clone()
}

/// Starts `shmipc sub TOPIC ARGS` and returns once it is a connected subscriber.
fn subscriber(topic: &str, args: &[&str]) -> (Running, Receiver<String>) {
    let before = subscribers(topic);
    let mut all = vec!["sub", topic];
    all.extend_from_slice(args);
    let (child, lines) = spawn_lines(&all);
    wait_until("the subscriber to connect", || subscribers(topic) > before);
    (child, lines)
}

/// Connected subscribers of the topic (0 while it does not exist).
fn subscribers(topic: &str) -> u64 {
    let out = run(&["info", topic, "--json"]);
    if !out.status.success() {
        return 0;
    }
    json(&String::from_utf8_lossy(&out.stdout))["state"]["subscribers"]
        .as_u64()
        .unwrap_or(0)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sub_started_first_prints_exactly_what_is_published_then_exits() {
    let topic = unique("ps-order");
    let _c = Cleanup(topic.clone());
    let (mut sub, lines) = subscriber(&topic, &["--count", "23", "--timeout", "20s"]);
    let s = state(&topic);
    assert_eq!(s["subscribers"], 1, "{s}");
    assert_eq!(s["publisher"], serde_json::Value::Null, "{s}");
    assert_eq!(s["overflow"], "block", "{s}");
    assert_eq!(s["capacity"], 256, "{s}");
    assert_eq!(s["max_message"], 4096, "{s}");

    let words: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    let mut args = vec!["pub", topic.as_str()];
    args.extend(words.iter().map(String::as_str));
    ok(&args);
    // Three more as stdin lines, one with a Windows line end, the last unterminated.
    let out = run_with_stdin(&["pub", &topic], b"line a\nline b\r\nline c");
    assert_success(&out, &["pub", &topic]);

    let want: Vec<String> = words
        .into_iter()
        .chain(["line a", "line b", "line c"].map(String::from))
        .collect();
    let got: Vec<String> = (0..want.len()).map(|_| next_line(&lines)).collect();
    assert_eq!(got, want);
    assert!(wait_exit(&mut sub.0).success());
    // Nothing more was printed.
    assert!(lines.recv().is_err(), "extra output");

    let s = state(&topic);
    assert_eq!(s["published"], 23, "{s}");
    assert_eq!(s["subscribers"], 0, "{s}");
}

#[test]
fn json_output_parses_and_carries_seq_lost_and_bytes() {
    let topic = unique("ps-json");
    let _c = Cleanup(topic.clone());
    // An earlier message, before the subscriber: it gets it only with --history.
    ok(&["pub", &topic, "early"]);
    let (mut sub, lines) = subscriber(
        &topic,
        &[
            "--json",
            "--history",
            "1",
            "--count",
            "3",
            "--timeout",
            "20s",
        ],
    );
    let mut args: Vec<std::ffi::OsString> = vec!["pub".into(), topic.clone().into()];
    args.push("two\nlines".into());
    {
        use std::os::unix::ffi::OsStringExt;
        args.push(std::ffi::OsString::from_vec(vec![0xff, b'a', 0xfe]));
    }
    let out = shmipc().args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let msgs: Vec<serde_json::Value> = (0..3).map(|_| json(&next_line(&lines))).collect();
    assert!(wait_exit(&mut sub.0).success());
    assert_eq!(msgs[0]["text"], "early", "{}", msgs[0]);
    assert_eq!(msgs[0]["seq"], 0);
    assert_eq!(msgs[1]["text"], "two\nlines");
    assert_eq!(msgs[1]["seq"], 1);
    assert_eq!(msgs[1]["len"], 9);
    assert_eq!(msgs[2]["text"], serde_json::Value::Null);
    assert_eq!(msgs[2]["hex"], "ff61fe");
    assert_eq!(msgs[2]["seq"], 2);
    for m in &msgs {
        assert_eq!(m["lost"], 0, "{m}");
    }
}

#[test]
fn text_output_escapes_newlines_so_one_message_is_one_line() {
    let topic = unique("ps-escape");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic, "a\nb\x1b[31m\tc"]);
    let out = run(&[
        "sub",
        &topic,
        "--history",
        "1",
        "--count",
        "1",
        "--timeout",
        "20s",
    ]);
    assert_success(&out, &["sub"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\\nb\\x1b[31m\tc\n");
}

#[test]
fn sub_timeout_with_nothing_fails_in_one_line() {
    let topic = unique("ps-timeout");
    let _c = Cleanup(topic.clone());
    let args = ["sub", topic.as_str(), "--timeout", "200ms"];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(line.contains("no message on topic"), "{line}");
    assert!(line.contains("200ms"), "{line}");
    // The topic was created and stays until removed.
    let info = json(&ok(&["info", &topic, "--json"]));
    assert_eq!(info["kind"], "pubsub");
    assert_eq!(info["persistence"], "until-removed");
    // With --count: says how many came.
    ok(&["pub", &topic, "one"]);
    let args = [
        "sub",
        topic.as_str(),
        "--history",
        "5",
        "--count",
        "2",
        "--timeout",
        "200ms",
    ];
    let out = run(&args);
    let line = assert_fails(&out, 1, &args);
    assert!(line.contains("1 of 2 messages"), "{line}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
}

#[test]
fn ls_and_info_show_the_channel_and_its_subscriber() {
    let topic = unique("ps-ls");
    let _c = Cleanup(topic.clone());
    let (sub, _lines) = subscriber(&topic, &["--timeout", "60s"]);
    let list = json(&ok(&["ls", "--json"]));
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == topic.as_str())
        .unwrap_or_else(|| panic!("{topic} not listed: {list}"))
        .clone();
    assert_eq!(entry["kind"], "pubsub", "{entry}");
    assert_eq!(entry["state"]["subscribers"], 1, "{entry}");
    assert_eq!(entry["state"]["max_subscribers"], 16, "{entry}");
    let human = ok(&["ls"]);
    let row = human
        .lines()
        .find(|l| l.starts_with(&topic))
        .unwrap_or_else(|| panic!("{human}"));
    assert!(
        row.contains("pubsub") && row.contains("1 of 16 subscribers"),
        "{row}"
    );
    let info = ok(&["info", &topic]);
    assert!(info.contains("1 of 16 subscribers"), "{info}");
    // A subscriber that is gone no longer counts.
    drop(sub);
    wait_until("the killed subscriber to stop counting", || {
        subscribers(&topic) == 0
    });
}

#[test]
fn wrong_kind_and_oversize_messages_fail_in_one_line() {
    let topic = unique("ps-size");
    let _c = Cleanup(topic.clone());
    // `pub` with empty stdin creates the topic and publishes nothing.
    let out = run_with_stdin(&["pub", &topic, "--max-size", "16"], b"");
    assert_success(&out, &["pub"]);
    let big = "x".repeat(17);
    let args = ["pub", topic.as_str(), "ok", big.as_str()];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(
        line.contains("message 2 is 17 bytes") && line.contains("16-byte maximum"),
        "{line}"
    );
    // All or nothing: "ok" was not published either.
    assert_eq!(state(&topic)["published"], 0);
    let out = run_with_stdin(&["pub", &topic], format!("ok\n{big}\nnever\n").as_bytes());
    let line = assert_fails(&out, 1, &["pub"]);
    assert!(line.contains("line 2 of stdin is 17 bytes"), "{line}");
    assert_eq!(state(&topic)["published"], 1);

    // A plain segment is not a topic.
    let plain = unique("ps-plain");
    let _p = Cleanup(plain.clone());
    ok(&["create", &plain, "--size", "4096"]);
    for verb in ["pub", "sub"] {
        let args = [verb, plain.as_str(), "x"];
        let args = if verb == "sub" { &args[..2] } else { &args[..] };
        let line = assert_fails(&run(args), 1, args);
        assert!(line.contains("is not a pubsub topic"), "{line}");
    }
}

#[cfg(target_os = "linux")] // semaphores are Linux-only for now; looks in /dev/shm
#[test]
fn another_kind_of_object_is_refused_and_rm_removes_the_topic() {
    let sem = unique("ps-sem");
    let _s = Cleanup(sem.clone());
    ok(&["sem", &sem, "create"]);
    for args in [
        ["pub", sem.as_str(), "x"].as_slice(),
        ["sub", sem.as_str()].as_slice(),
    ] {
        let line = assert_fails(&run(args), 1, args);
        assert!(
            line.contains("is a semaphore, not a pubsub topic"),
            "{line}"
        );
    }
    let topic = unique("ps-rm");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic, "x"]);
    assert!(left_behind(&topic));
    ok(&["rm", &topic]);
    assert!(!left_behind(&topic));
}

#[test]
fn help_names_the_defaults() {
    let help = ok(&["pub", "--help"]);
    for want in [
        "256 messages of up to 4 KiB",
        "overwrite",
        "shmipc rm TOPIC",
        "--history",
    ] {
        assert!(help.contains(want), "pub --help lacks {want:?}");
    }
    let help = ok(&["sub", "--help"]);
    for want in ["--count", "--timeout", "\"seq\"", "\"hex\"", "lost"] {
        assert!(help.contains(want), "sub --help lacks {want:?}");
    }
    let _ = std::io::stdout().flush();
}

/// A subscriber that falls a whole ring behind (its stdout is a pipe nobody reads
/// yet, so it stalls after a pipe's worth of output) loses the oldest messages and
/// says how many: every message is either printed or counted as lost, in order.
#[test]
fn a_slow_subscriber_is_told_how_many_it_lost() {
    const SENT: u64 = 300;
    let topic = unique("ps-lost");
    let _c = Cleanup(topic.clone());
    let out = run_with_stdin(&["pub", &topic, "--capacity", "4", "--overwrite"], b"");
    assert_success(&out, &["pub"]);
    let child = shmipc()
        .args(["sub", &topic, "--json", "--timeout", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shmipc sub");
    let mut sub = Running(child);
    wait_until("the subscriber to connect", || subscribers(&topic) == 1);
    // 4000-byte messages: a 64 KiB pipe holds about 16 of them as JSON lines.
    let body = "y".repeat(4000);
    let input: String = (0..SENT).map(|_| format!("{body}\n")).collect();
    let out = run_with_stdin(&["pub", &topic], input.as_bytes());
    assert_success(&out, &["pub"]);
    // Now read everything; it exits 1 after a second without messages.
    let mut stdout = String::new();
    std::io::Read::read_to_string(sub.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = wait_exit(&mut sub.0);
    assert_eq!(status.code(), Some(1));
    let mut next = 0u64;
    let mut lost_total = 0u64;
    for line in stdout.lines() {
        let m = json(line);
        let (seq, lost) = (m["seq"].as_u64().unwrap(), m["lost"].as_u64().unwrap());
        assert_eq!(seq, next + lost, "seq and lost disagree: {}", &line[..80]);
        assert_eq!(m["len"], 4000);
        lost_total += lost;
        next = seq + 1;
    }
    assert_eq!(next, SENT, "the last message was not printed");
    assert!(
        lost_total > 0,
        "nothing was lost: the test did not stall the subscriber"
    );
}

/// A topic made by the CLI is lossless: `seq 1 1000 | shmipc pub T` reaches a
/// live `shmipc sub T --count 1000` whole and in order, even through a ring of 4.
#[test]
fn seq_1_1000_reaches_a_live_sub_whole_and_in_order() {
    let topic = unique("ps-seq");
    let _c = Cleanup(topic.clone());
    let out = run_with_stdin(&["pub", &topic, "--capacity", "4"], b"");
    assert_success(&out, &["pub"]);
    let child = shmipc()
        .args(["sub", &topic, "--count", "1000", "--timeout", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shmipc sub");
    let mut sub = Running(child);
    wait_until("the subscriber to connect", || subscribers(&topic) == 1);
    let input: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let out = run_with_stdin(&["pub", &topic, "--timeout", "30s"], input.as_bytes());
    assert_success(&out, &["pub"]);
    let mut stdout = String::new();
    std::io::Read::read_to_string(sub.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(wait_exit(&mut sub.0).success());
    assert_eq!(stdout, input, "not all 1000, in order");
    let mut stderr = String::new();
    std::io::Read::read_to_string(sub.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("lost"), "{stderr}");
}

/// A subscriber killed with SIGKILL never holds a lossless topic's publisher up.
#[test]
fn a_dead_subscriber_never_blocks_the_publisher() {
    let topic = unique("ps-dead-sub");
    let _c = Cleanup(topic.clone());
    let out = run_with_stdin(&["pub", &topic, "--capacity", "4"], b"");
    assert_success(&out, &["pub"]);
    // A subscriber that never reads (its stdout a pipe nobody reads would only
    // stall it later; this one is killed while attached).
    let (mut sub, _lines) = subscriber(&topic, &[]);
    sub.0.kill().unwrap();
    wait_exit(&mut sub.0);
    let input: String = (0..200).map(|i| format!("{i}\n")).collect();
    let out = run_with_stdin(&["pub", &topic, "--timeout", "20s"], input.as_bytes());
    assert_success(&out, &["pub"]);
    assert_eq!(state(&topic)["published"], 200);
}

/// A failed `pub` leaves nothing behind (issue: `pub NEW --max-size 4 'hello
/// world'` failed but left NEW as a topic): arguments are checked before anything
/// is created, and a topic this command made is removed when it fails later.
#[test]
fn a_failed_pub_leaves_nothing_behind() {
    let topic = unique("ps-fail");
    let _c = Cleanup(topic.clone());
    let args = ["pub", topic.as_str(), "--max-size", "4", "hello world"];
    let line = assert_fails(&run(&args), 1, &args);
    assert!(
        line.contains("11 bytes") && line.contains("4-byte maximum"),
        "{line}"
    );
    assert!(!left_behind(&topic), "the failed pub left the topic behind");
    // Bad creation settings.
    for bad in [["--capacity", "0"], ["--max-subscribers", "0"]] {
        let mut args = vec!["pub", topic.as_str()];
        args.extend_from_slice(&bad);
        args.push("x");
        // A wrong command line: status 2.
        let line = assert_fails(&run(&args), 2, &args);
        assert!(line.contains("invalid"), "{line}");
        assert!(!left_behind(&topic), "{bad:?} left the topic behind");
    }
    // A line of stdin too large, after the topic was made: removed again.
    let out = run_with_stdin(&["pub", &topic, "--max-size", "4"], b"ok\nhello world\n");
    let line = assert_fails(&out, 1, &["pub"]);
    assert!(line.contains("line 2 of stdin"), "{line}");
    assert!(!left_behind(&topic), "the failed pub left the topic behind");
    // `sub` with bad settings creates nothing either.
    let args = ["sub", topic.as_str(), "--capacity", "0", "--timeout", "1s"];
    assert_fails(&run(&args), 2, &args);
    assert!(!left_behind(&topic));
}

/// A stdin line longer than the topic's largest message is refused once that much
/// has been read: `pub` read the whole line first, so an endless one (`cat
/// /dev/zero | shmipc pub T`) grew its memory until stdin ended or the OOM killer
/// came. Here stdin stays open after 64 MiB with no newline, which `pub` waited on
/// for ever, holding all of it.
#[test]
fn an_endless_stdin_line_is_refused_without_reading_it_whole() {
    let topic = unique("ps-endless");
    let _c = Cleanup(topic.clone());
    let mut child = spawn_piped(&["pub", &topic, "--max-size", "1K"]);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1024 {
            // A broken pipe: `pub` stopped reading and went (the fixed behaviour).
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
        // Keep the pipe open (no EOF) until the test is over.
        let _ = done_rx.recv();
        drop(stdin);
    });
    let status = wait_timeout::ChildExt::wait_timeout(&mut child, PATIENCE)
        .expect("waiting for pub")
        .unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            let _ = done_tx.send(());
            panic!("pub kept reading a line longer than the largest message");
        });
    let _ = done_tx.send(());
    writer.join().unwrap();
    let err = stderr_text(&mut child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "shmipc: line 1 of stdin is at least 1026 bytes, larger than the 1024-byte maximum"
        ),
        "{err}"
    );
    assert!(!left_behind(&topic), "the failed pub left the topic behind");
}

/// A corrupted shared index (`head` + 2^62) makes a running `sub` fail with one
/// line naming it, instead of going silently deaf.
#[test]
fn a_corrupt_head_makes_a_running_sub_fail_in_one_line() {
    let topic = unique("ps-corrupt");
    let _c = Cleanup(topic.clone());
    let child = shmipc()
        .args(["sub", &topic, "--timeout", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shmipc sub");
    let mut sub = Running(child);
    wait_until("the subscriber to connect", || subscribers(&topic) == 1);
    {
        let seg = shmipc::Segment::open(&topic, shmipc::Access::ReadWrite).unwrap();
        let view = seg.map_all().unwrap();
        let head = view.atomic_u64(128).unwrap();
        head.fetch_add(1 << 62, std::sync::atomic::Ordering::SeqCst);
        // Wake it: a publisher that attaches and leaves rings the subscribers.
    }
    let _ = run(&["pub", &topic, "x", "--timeout", "1s"]);
    let status = wait_exit(&mut sub.0);
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(sub.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("corrupt") && stderr.contains("head"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `sub --history N` gets at most the topic's capacity - 1 earlier messages (the
/// ring's last slot is the next message's), as its help says: none on a capacity 1
/// topic.
#[test]
fn history_holds_capacity_less_one() {
    for (capacity, want) in [("4", "c\nd\ne\n"), ("1", "")] {
        let topic = unique("ps-hist");
        let _c = Cleanup(topic.clone());
        ok(&[
            "pub",
            &topic,
            "--capacity",
            capacity,
            "a",
            "b",
            "c",
            "d",
            "e",
        ]);
        let out = run(&["sub", &topic, "--history", "10", "-n", "5", "-t", "200ms"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "capacity {capacity}"
        );
        assert_eq!(out.status.code(), Some(1), "capacity {capacity}");
    }
}

/// A topic removed (`shmipc rm`) under a running `sub` is reported within seconds,
/// whether or not a `pub` then makes another topic under the name: the `sub` waited
/// deaf for ever (or until --timeout, asking whether anything publishes) while
/// `pub` published on the new topic.
#[test]
fn a_topic_removed_under_a_running_sub_is_reported() {
    for republish in [true, false] {
        let topic = unique("ps-removed");
        let _c = Cleanup(topic.clone());
        let (mut sub, _lines) = subscriber(&topic, &[]);
        ok(&["rm", &topic]);
        if republish {
            ok(&["pub", &topic, "hello"]);
        }
        let status = wait_exit(&mut sub.0);
        let err = stderr_text(&mut sub.0);
        assert_eq!(status.code(), Some(1), "republish {republish}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "shmipc: topic `{topic}` was removed (`shmipc rm {topic}`) while this sub read it"
            )),
            "republish {republish}: {err}"
        );
        assert_eq!(
            err.contains("another object now has its name"),
            republish,
            "{err}"
        );
    }
}

/// The same, for a `sub` in another pid namespace (`unshare --pid`, root only;
/// skipped elsewhere), whose pid the kernel's lock list gives in the outer
/// namespace's numbers: `sub` compared holders' pids with its own, found itself
/// nowhere, and so noticed only a name that was gone, never one removed and made
/// again, and stayed deaf for ever. `sub` now asks whether the name names the very
/// object it mapped (device and inode), which no pid or timing can fool.
#[cfg(target_os = "linux")]
#[test]
fn a_topic_removed_and_made_again_under_a_sub_in_another_pid_namespace_is_reported() {
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a pid namespace here");
        return;
    }
    let topic = unique("ps-pidns");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic, "--capacity", "4"]);
    let mut sub = Running(
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_shmipc"))
            .args(["sub", &topic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("the subscriber to connect", || subscribers(&topic) > 0);
    ok(&["rm", &topic]);
    ok(&["pub", &topic, "hello"]);
    let status = wait_exit(&mut sub.0);
    let err = stderr_text(&mut sub.0);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("shmipc: topic `{topic}` was removed"))
            && err.contains("another object now has its name"),
        "{err}"
    );
}

/// `sub -n 0` receives nothing, so it does nothing: it created the topic (and
/// left it behind for ever) or attached to an existing one. A bad name or
/// settings are still refused.
#[test]
fn sub_count_zero_does_nothing_and_leaves_nothing() {
    let topic = unique("ps-n0");
    let _c = Cleanup(topic.clone());
    for args in [
        vec!["sub", topic.as_str(), "-n", "0"],
        vec!["sub", topic.as_str(), "--count", "0", "--json", "-t", "1s"],
    ] {
        let out = run(&args);
        assert_success(&out, &args);
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
        assert!(!left_behind(&topic), "{args:?} left the topic behind");
    }
    let args = ["sub", "bad/name", "-n", "0"];
    assert_fails(&run(&args), 2, &args);
}

/// A `pub` reading stdin whose topic is removed (`shmipc rm`), with or without a
/// new topic made under the name since, stops at its next line with one line
/// saying so (exit 1): it published on for ever into the removed topic, which no
/// later `sub` could open, while subs of the name's new topic got nothing.
#[test]
fn a_topic_removed_under_a_running_pub_is_reported() {
    for remade in [true, false] {
        let topic = unique("ps-pub-removed");
        let _c = Cleanup(topic.clone());
        let mut publisher = Running(
            shmipc()
                .args(["pub", &topic, "--capacity", "4", "--overwrite"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stdin = publisher.0.stdin.take().unwrap();
        stdin.write_all(b"first\n").unwrap();
        stdin.flush().unwrap();
        wait_until("the first line to be published", || {
            run(&["info", &topic, "--json"]).status.success()
                && state(&topic)["published"].as_u64() == Some(1)
        });
        ok(&["rm", &topic]);
        if remade {
            ok(&["pub", &topic, "--capacity", "4", "--overwrite", "new"]);
        }
        // Lines go on coming; the pub stops at one of them (it looks once a second).
        let deadline = std::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = publisher.0.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "the pub went on");
            if stdin
                .write_all(b"more\n")
                .and_then(|()| stdin.flush())
                .is_err()
            {
                break wait_exit(&mut publisher.0);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let err = stderr_text(&mut publisher.0);
        assert_eq!(status.code(), Some(1), "remade {remade}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "shmipc: topic `{topic}` was removed (`shmipc rm {topic}`) while this pub published on it"
            )) && err.contains("another object now has its name") == remade,
            "remade {remade}: {err}"
        );
    }
}

/// A `pub` whose stdin stays open and idle (no line comes) and whose topic is
/// removed (`shmipc rm`), with or without a new topic made under the name since,
/// ends with one line saying so (exit 1), as `sub` and `sem wait` do: it noticed
/// only at its next line, which may never come, and held the removed topic
/// meanwhile. It waits on stdin with poll(2), looking at the name each idle second.
#[test]
fn an_idle_pub_notices_its_topic_removed() {
    for remade in [false, true] {
        let topic = unique("ps-pub-idle");
        let _c = Cleanup(topic.clone());
        let mut publisher = Running(spawn_piped(&["pub", &topic]));
        let mut stdin = publisher.0.stdin.take().unwrap();
        stdin.write_all(b"first\n").unwrap();
        stdin.flush().unwrap();
        wait_until("the first line to be published", || {
            run(&["info", &topic, "--json"]).status.success()
                && state(&topic)["published"].as_u64() == Some(1)
        });
        // Stopped meanwhile: a look at the name between the `rm` and the new topic
        // would report the removal alone.
        signal(&publisher.0, "STOP");
        ok(&["rm", &topic]);
        if remade {
            ok(&["pub", &topic, "new"]);
        }
        signal(&publisher.0, "CONT");
        // Stdin stays open, and nothing more is written to it.
        let status = wait_exit(&mut publisher.0);
        let err = stderr_text(&mut publisher.0);
        assert_eq!(status.code(), Some(1), "remade {remade}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "shmipc: topic `{topic}` was removed (`shmipc rm {topic}`) while this pub published on it"
            )) && err.contains("(1 line was published before)")
                && err.contains("another object now has its name") == remade,
            "remade {remade}: {err}"
        );
        drop(stdin);
    }
}

/// A `pub` whose stdin goes idle for longer than its look at the name (a second),
/// even in the middle of a line, publishes on as before once lines come: the
/// idle wait loses no byte and splits no line.
#[cfg(target_os = "linux")] // counts the idle waits in /proc
#[test]
fn a_pub_idle_mid_line_publishes_on() {
    let topic = unique("ps-pub-pause");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic]);
    let (_sub, lines) = subscriber(&topic, &[]);
    let mut publisher = Running(spawn_piped(&["pub", &topic]));
    let mut stdin = publisher.0.stdin.take().unwrap();
    stdin.write_all(b"one\nhal").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_line(&lines), "one");
    // Stdin stays idle mid-line until the pub has slept in poll(2) and woken from
    // its timeout (a look at the name) at least once: each sleep there is one
    // voluntary context switch of its main thread, and nothing else makes any.
    let switches = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", publisher.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = switches();
    wait_until("the idle pub to time out of its poll", || {
        switches() >= before + 2
    });
    stdin.write_all(b"f\ntwo\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_line(&lines), "half");
    assert_eq!(next_line(&lines), "two");
    drop(stdin);
    let status = wait_exit(&mut publisher.0);
    let err = stderr_text(&mut publisher.0);
    assert!(status.success() && err.is_empty(), "{status}: {err}");
}

/// Sends SIG`name` (STOP, CONT, …) to a child, with kill(1).
fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {}", child.id());
}

/// A `sub` writing to a pipe prints what it received once no message is waiting,
/// also when the publisher has left meanwhile: every `pub` of a few arguments
/// ends before the `sub` goes idle, and the `sub` then waited for the next
/// publisher with those lines still in its buffer (a `shmipc sub T > file` stayed
/// empty, whatever was published, until 64 KiB had come).
#[test]
fn sub_prints_what_came_when_the_publisher_has_left() {
    let topic = unique("ps-left-flush");
    let _c = Cleanup(topic.clone());
    let (_sub, lines) = subscriber(&topic, &[]);
    ok(&["pub", &topic, "a", "b"]);
    assert_eq!(next_line(&lines), "a");
    assert_eq!(next_line(&lines), "b");
    // And again with the next publisher.
    ok(&["pub", &topic, "c"]);
    assert_eq!(next_line(&lines), "c");
}

/// `shmipc sub T | head -1`: once the reader has gone, the `sub` ends (status 0,
/// as for a closed stdout) although no message comes to write, and its place is
/// free: it stayed a subscriber until the next message showed it the broken pipe
/// (and a `pub` reading stdin on a removed topic kept publishing for it).
#[test]
fn sub_ends_when_its_reader_has_gone_while_no_message_comes() {
    use std::io::BufRead;

    let topic = unique("ps-reader-gone");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic]);
    let mut sub = Running(
        shmipc()
            .args(["sub", &topic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting shmipc sub"),
    );
    // `head -1`: reads one line, then closes the pipe.
    let stdout = sub.0.stdout.take().expect("piped stdout");
    let (tx, first) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    wait_until("the subscriber to connect", || subscribers(&topic) == 1);
    ok(&["pub", &topic, "only"]);
    let line = first.recv_timeout(PATIENCE).expect("the first line");
    assert_eq!(line, "only\n");
    let status = wait_exit(&mut sub.0);
    let err = stderr_text(&mut sub.0);
    assert!(status.success() && err.is_empty(), "{status}: {err}");
    assert_eq!(subscribers(&topic), 0);
}

/// A `pub` of several messages that times out part-way on a lossless topic says
/// how many it published before (they reached the subscribers: publishing them all
/// again would repeat them); before, the line said only that it timed out.
#[test]
fn a_pub_timed_out_part_way_says_what_it_published() {
    let topic = unique("ps-partial");
    let _c = Cleanup(topic.clone());
    ok(&["pub", &topic, "--capacity", "2"]);
    let (sub, _lines) = subscriber(&topic, &[]);
    signal(&sub.0, "STOP");
    let args = ["pub", &topic, "a", "b", "c", "--timeout", "100ms"];
    let line = assert_fails(&run(&args), 1, &args);
    signal(&sub.0, "CONT");
    assert!(
        line.contains("timed out after 100ms")
            && line.contains("the 2 messages before it were published"),
        "{line}"
    );
}
