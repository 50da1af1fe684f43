//! The CLI as a hostile user, a crashing peer or a full disk would try it: each test
//! is one class of failure from issue 10 (half-made objects, SIGBUS, symlinks,
//! stalls on another user's lock, a `lock` command that outlives its lock, bad
//! arguments that leave things behind, `read --len`). Tests that need root or a
//! private mount namespace say so and pass without running where they cannot.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write as _;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use common::*;
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// What an older shmipc left when its creator was killed between naming an object
/// and writing its header: shmipc's mark (the sticky bit), persistent, zero-filled,
/// and without the mark of a shmipc that names objects only once complete.
fn plant_half_made(name: &str, head: &[u8]) -> rustix::fd::OwnedFd {
    let fd = rfs::open(
        shm_path(name),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .unwrap();
    rfs::fchmod(&fd, Mode::from_raw_mode(0o1600)).unwrap();
    rfs::ftruncate(&fd, 4096).unwrap();
    rustix::io::pwrite(&fd, head, 0).unwrap();
    fd
}

fn names_in(listing: &serde_json::Value) -> Vec<String> {
    listing
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// 1. half-made objects

/// A name left half made by a killed creator of an older shmipc is usable again:
/// the next creator of a mutex, semaphore or event recognises and replaces it
/// (before: every use failed "is not a mutex: it is a plain segment").
#[test]
fn half_made_leftovers_are_replaced_by_the_next_creator() {
    let verbs: &[&[&str]] = &[
        &["lock", "NAME", "--timeout", "10s", "--", "true"],
        &["sem", "NAME", "create", "--initial", "1"],
        &["event", "NAME", "create"],
    ];
    for (i, verb) in verbs.iter().enumerate() {
        for head in [&[0u8; 8][..], b"shmipc\0\x01"] {
            let name = unique(&format!("halfmade{i}"));
            let _cleanup = Cleanup(name.clone());
            drop(plant_half_made(&name, head));
            let args: Vec<&str> = verb
                .iter()
                .map(|a| if *a == "NAME" { name.as_str() } else { a })
                .collect();
            ok(&args);
            let info = json(&ok(&["info", &name, "--json"]));
            assert_ne!(info["kind"], "segment", "{args:?}: {info}");
            ok(&["rm", &name]);
        }
    }
}

/// `gc` finds and removes half-made leftovers, and never a live one (held), a plain
/// persistent segment (zero-filled too), or another program's segment.
#[test]
fn gc_removes_half_made_leftovers_and_nothing_else() {
    let zero = unique("gc-zero");
    let magic = unique("gc-magic");
    let held = unique("gc-held");
    let foreign = unique("gc-foreign");
    let plain = unique("gc-plain");
    let _guards: Vec<Cleanup> = [&zero, &magic, &held, &foreign, &plain]
        .iter()
        .map(|n| Cleanup((*n).clone()))
        .collect();
    drop(plant_half_made(&zero, &[0; 64]));
    drop(plant_half_made(&magic, b"shmipc\0\x01\x01\0\0\0\x01\0\0\0"));
    let live = plant_half_made(&held, &[0; 64]);
    rfs::flock(&live, FlockOperation::LockShared).unwrap();
    std::fs::write(shm_path(&foreign), [0u8; 4096]).unwrap();
    ok(&["create", &plain, "-s", "4096", "--persist"]);

    let dry = json(&ok(&["gc", "--dry-run", "--json"]));
    let listed: Vec<&str> = dry["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(listed.contains(&zero.as_str()), "{dry}");
    assert!(listed.contains(&magic.as_str()), "{dry}");
    for kept in [&held, &foreign, &plain] {
        assert!(!listed.contains(&kept.as_str()), "{kept}: {dry}");
    }
    assert!(left_behind(&zero), "a dry run removed something");
    ok(&["gc"]);
    assert!(!left_behind(&zero) && !left_behind(&magic));
    for kept in [&held, &foreign, &plain] {
        assert!(left_behind(kept), "gc removed {kept}");
    }
    drop(live);
}

/// Another user's files carrying shmipc's marks of an object that dies with its
/// last holder (anyone can set them on their own files), with no holder: even
/// root's `gc`, `create`, `read`, `info` and `ls` treat them as foreign, never as
/// stale, and never remove them; a temporary creation file of another user's is
/// left alone too (before: root's `gc` removed them, `info` said "does not exist"
/// and `create` replaced them).
#[test]
fn another_users_marked_objects_are_never_taken_for_stale() {
    if !is_root() {
        return skip(
            "another_users_marked_objects_are_never_taken_for_stale",
            "needs root",
        );
    }
    let nobody = rustix::process::Uid::from_raw(65534);
    let marked = unique("marked-by-other");
    let _marked_cleanup = Cleanup(marked.clone());
    let temp = format!(".shmipc-tmp-{}", unique("other"));
    let temp_path = shm_path(&temp);
    struct RemoveFile(std::path::PathBuf);
    impl Drop for RemoveFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _temp_cleanup = RemoveFile(temp_path.clone());
    for (path, mode) in [(shm_path(&marked), 0o3700), (temp_path.clone(), 0o600)] {
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(4096).unwrap();
        // Old enough for a creator's leftover.
        file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
        rfs::fchown(&file, Some(nobody), None).unwrap();
        rfs::fchmod(&file, Mode::from_raw_mode(mode)).unwrap();
    }

    let dry = json(&ok(&["gc", "--dry-run", "--json"]));
    let listed: Vec<&str> = dry["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!listed.contains(&marked.as_str()), "{dry}");
    ok(&["gc"]);
    let info = json(&ok(&["info", &marked, "--json"]));
    assert_eq!(info["origin"], "foreign", "{info}");
    let all = json(&ok(&["ls", "--all", "--json"]));
    assert!(names_in(&all).contains(&marked), "not listed: {all}");
    let args = ["create", marked.as_str(), "-s", "4K"];
    assert!(assert_fails(&run(&args), 1, &args).contains("exists"));
    let args = ["sem", marked.as_str(), "create"];
    assert!(assert_fails(&run(&args), 1, &args).contains("exists"));
    let _ = run(&["read", &marked, "--hex"]);
    for path in [shm_path(&marked), temp_path] {
        let meta = path
            .metadata()
            .unwrap_or_else(|_| panic!("{} was removed", path.display()));
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    }
}

// ---------------------------------------------------------------------------------
// 2. SIGBUS from a truncation under a mapping

/// Another program truncates the mutex `shmipc lock` holds mapped: at unlock the
/// CLI touches the missing page. It prints one line naming the segment and exits
/// 1, instead of dying by signal 7.
#[test]
fn truncation_under_a_mapping_is_one_line_not_a_signal_death() {
    let name = unique("sigbus-lock");
    let _cleanup = Cleanup(name.clone());
    let script = format!("truncate -s 0 {}", shm_path(&name).display());
    let args = ["lock", &name, "--", "sh", "-c", &script];
    let out = run(&args);
    assert_eq!(
        out.status.signal(),
        None,
        "died by a signal: {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = assert_fails(&out, 1, &args);
    assert!(
        line.contains(&format!("segment `{name}`")) && line.contains("SIGBUS"),
        "{line}"
    );
}

/// The same for a running `sub` whose topic another program truncates: when it
/// next looks at the ring it reports the topic by name, not a raw SIGBUS death.
#[test]
fn truncated_topic_under_a_running_sub_is_reported() {
    use std::io::Read as _;
    let topic = unique("sigbus-sub");
    let _cleanup = Cleanup(topic.clone());
    let (mut running, _lines) = spawn_lines(&["sub", &topic, "--timeout", "2s"]);
    wait_until("the subscriber to attach", || {
        let out = run(&["info", &topic, "--json"]);
        out.status.success()
            && json(&String::from_utf8_lossy(&out.stdout))["state"]["subscribers"] == 1
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&topic))
        .unwrap()
        .set_len(0)
        .unwrap();
    let status = wait_exit(&mut running.0);
    let mut stderr = String::new();
    running
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.signal(),
        None,
        "died by a signal: {status:?}, {stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("segment `{topic}`")) && stderr.contains("SIGBUS"),
        "{stderr}"
    );
}

/// Reading or writing a segment truncated by another program is a message naming
/// it, never a SIGBUS (read and write do not map).
#[test]
fn read_and_write_of_a_truncated_segment_fail_cleanly() {
    let name = unique("trunc-rw");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "-s", "64K"]);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    file.set_len(0).unwrap();
    for args in [
        &["read", &name, "--raw"][..],
        &["read", &name, "--hex"],
        &["write", &name, "hello"],
    ] {
        let out = run(args);
        assert_eq!(out.status.signal(), None, "{args:?}: {:?}", out.status);
        let line = assert_fails(&out, 1, args);
        assert!(line.contains(&name), "{args:?}: {line}");
        assert!(!line.contains("creator has not sized it yet;"), "{line}");
    }
}

// ---------------------------------------------------------------------------------
// 3. a full /dev/shm

/// In a private mount namespace with a tiny, full /dev/shm: creating is a clean
/// "no space" naming the segment; `ls`, `info`, `read` and `write` on a sparse
/// segment never die by SIGBUS (before: every one of them did).
/// Runs `script` (`sh`, with `$1` the shmipc binary) in a private mount namespace,
/// where it mounts a small tmpfs of its own on /dev/shm (exiting 77 where it
/// cannot): its stdout, or `None` (the test skipped, saying why) where this machine
/// has no such namespace.
fn in_private_dev_shm(test: &str, script: &str) -> Option<String> {
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_shmipc"))
        .stdin(Stdio::null())
        .output()
        .expect("running unshare");
    if matches!(out.status.code(), Some(77)) || !out.status.success() && out.stdout.is_empty() {
        skip(
            test,
            &format!(
                "no private mount namespace with a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn full_dev_shm_never_kills_with_sigbus() {
    if !is_root() {
        return skip("full_dev_shm_never_kills_with_sigbus", "needs root");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=256k tmpfs /dev/shm 2>/dev/null || exit 77
# A sparse segment (made as shmipc would, where --sparse is missing).
"$B" create sparse -s 128K --sparse >/dev/null 2>&1 ||
  { truncate -s 128K /dev/shm/sparse && chmod 3600 /dev/shm/sparse; } || exit 78
dd if=/dev/zero of=/dev/shm/filler bs=4096 2>/dev/null
for cmd in "ls" "ls --all --json" "info sparse" "info sparse --json" "read sparse" \
           "read sparse --hex" "read sparse --raw" "write sparse hello" "sem sparse post" \
           "create more -s 64K"; do
  "$B" $cmd >/dev/null 2>/tmp/shmipc-full-err
  echo "rc=$? $cmd :: $(head -c 400 /tmp/shmipc-full-err | tr '\n' ' ')"
done
"#;
    let Some(text) = in_private_dev_shm("full_dev_shm_never_kills_with_sigbus", script) else {
        return;
    };
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(lines.len(), 10, "{text}");
    for line in &lines {
        let rc: i32 = line[3..line.find(' ').unwrap()].parse().unwrap();
        assert!(rc == 0 || rc == 1, "killed or crashed: {line}");
    }
    let create = lines.last().unwrap();
    assert!(
        create.starts_with("rc=1") && create.contains("`more`") && create.contains("free"),
        "{create}"
    );
    let write = lines.iter().find(|l| l.contains(" write sparse")).unwrap();
    assert!(
        write.starts_with("rc=1") && write.contains("sparse"),
        "{write}"
    );
}

/// A write into a sparse segment that the full store cannot hold fails whole: no
/// byte of it is written (before: the first 224 KiB of 300 KB were, and the error
/// did not say so).
#[test]
fn a_write_the_full_store_cannot_hold_writes_nothing() {
    let test = "a_write_the_full_store_cannot_hold_writes_nothing";
    if !is_root() {
        return skip(test, "needs root");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=1m tmpfs /dev/shm 2>/dev/null || exit 77
"$B" create sp -s 900K --sparse >/dev/null || exit 78
# 300 000 bytes with no zero byte, from outside the store.
head -c 300000 /dev/urandom | tr '\000' '\001' >/tmp/shmipc-full-write-$$
dd if=/dev/zero of=/dev/shm/filler bs=4096 count=200 2>/dev/null
"$B" write sp --from /tmp/shmipc-full-write-$$ >/dev/null 2>/tmp/shmipc-full-write-err-$$
echo "rc=$? $(cat /tmp/shmipc-full-write-err-$$)"
echo "nonzero=$("$B" read sp --raw | tr -d '\000' | wc -c)"
rm -f /tmp/shmipc-full-write-$$ /tmp/shmipc-full-write-err-$$
"#;
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    assert!(
        text.contains("rc=1 ") && text.contains("no space left"),
        "{text}"
    );
    assert!(
        text.contains("nonzero=0"),
        "part of the write was written: {text}"
    );
}

/// A file-backed segment on a full file system is a clean "no space" naming the
/// file's file system at `create`, as a memory segment is, and leaves no file (nor
/// an extended one) behind; a file with holes gets its blocks at create too. Only
/// `--sparse` keeps holes, and then a `write` that finds no space names the file
/// (before: `create` made a sparse file that did not fit, and a later `write` blamed
/// "/dev/shm is full" and `--sparse`; a mapping would have died of SIGBUS).
#[test]
fn file_backed_segments_on_a_full_file_system() {
    if !is_root() {
        return skip("file_backed_segments_on_a_full_file_system", "needs root");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=256k tmpfs /dev/shm 2>/dev/null || exit 77
D=$(mktemp -d /tmp/shmipc-fullfs-XXXXXX) || exit 78
E=$(mktemp /tmp/shmipc-fullfs-err-XXXXXX) || exit 78
trap 'umount "$D"; rmdir "$D"; rm -f "$E"' EXIT
mount -t tmpfs -o size=128k tmpfs "$D" || exit 77
dd if=/dev/zero of="$D/filler" bs=4096 count=30 2>/dev/null
try() {  # LABEL ARGS...: one line with the exit status and the error
  label=$1; shift
  "$B" "$@" >/dev/null 2>"$E"
  echo "$label rc=$? :: $(head -c 400 "$E" | tr '\n' ' ')"
}
try new create new -s 64K --file "$D/new"
printf 'hello' > "$D/small"
try extend create extend -s 64K --file "$D/small"
echo "small=$(stat -c %s "$D/small") $(cat "$D/small")"
truncate -s 64K "$D/holes"
try holes create holes --file "$D/holes"
try sparse create sparse -s 64K --sparse --file "$D/sparse"
dd if=/dev/zero of="$D/filler2" bs=4096 2>/dev/null
try write write sparse --offset 32K hello
echo "files=$(ls "$D" | tr '\n' ' ')"
echo "shm=$(ls /dev/shm | tr '\n' ' ')"
"#;
    let test = "file_backed_segments_on_a_full_file_system";
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    for key in ["new ", "extend ", "holes "] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains("do not fit") && l.contains("file system of /tmp/"),
            "{l}\n{text}"
        );
    }
    // A failed create leaves the user's file as it was, and makes none.
    assert_eq!(line("small="), "small=5 hello", "{text}");
    let files = line("files=");
    assert!(!files.contains(" new "), "{text}");
    assert!(files.contains(" holes "), "{text}");
    let l = line("sparse ");
    assert!(l.contains(" rc=0 "), "{l}");
    let l = line("write ");
    assert!(
        l.contains(" rc=1 ")
            && l.contains("`sparse`")
            && l.contains("/tmp/shmipc-fullfs-")
            && !l.contains("/dev/shm is full"),
        "{l}"
    );
    assert_eq!(line("shm="), "shm=sparse ", "{text}");
}

/// A backing file that cannot be made because its file system has no file left
/// (a tmpfs's `nr_inodes`, a full inode table) is a "no room" naming that file
/// system, as a full /dev/shm is, with no advice about /dev/shm's commands
/// (before: "opening the backing file failed: ...: No space left on device (os
/// error 28)").
#[test]
fn a_backing_file_on_a_file_system_with_no_file_left() {
    let test = "a_backing_file_on_a_file_system_with_no_file_left";
    if !is_root() {
        return skip(test, "needs root");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=256k tmpfs /dev/shm 2>/dev/null || exit 77
D=$(mktemp -d /tmp/shmipc-noinode-XXXXXX) || exit 78
trap 'umount "$D"; rmdir "$D"' EXIT
mount -t tmpfs -o size=1m,nr_inodes=2 tmpfs "$D" || exit 77
touch "$D/taken" || exit 78
"$B" create new -s 4K --file "$D/new" >/dev/null 2>/tmp/shmipc-noinode-err-$$
echo "rc=$? :: $(cat /tmp/shmipc-noinode-err-$$)"
rm -f /tmp/shmipc-noinode-err-$$
echo "shm=$(ls /dev/shm | tr '\n' ' ')"
"#;
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    assert!(
        text.contains("rc=1 ")
            && text.contains("`new`")
            && text.contains("file system of /tmp/shmipc-noinode-")
            && text.contains("limit of files"),
        "{text}"
    );
    assert!(
        !text.contains("os error") && !text.contains("shmipc gc"),
        "{text}"
    );
    assert!(
        text.contains("shm= \n") || text.contains("shm=\n"),
        "{text}"
    );
}

/// Every kind of object, failing to be created on a full /dev/shm or opened by a
/// user its mode keeps out, is named as what it is (mutex, semaphore, event,
/// topic) with a remedy that fits the command, and leaves nothing behind (before:
/// "segment `x`: 128 bytes do not fit" for a semaphore, and "permission denied:
/// ... or open it read-only" for `lock`, `sem`, `pub` and even `read`).
#[test]
fn every_kind_is_named_as_what_it_is_when_create_or_open_fails() {
    if !is_root() {
        return skip(
            "every_kind_is_named_as_what_it_is_when_create_or_open_fails",
            "needs root",
        );
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=2M,mode=1777 tmpfs /dev/shm 2>/dev/null || exit 77
command -v setpriv >/dev/null || exit 77
E=$(mktemp /tmp/shmipc-kinds-err-XXXXXX) || exit 78
trap 'rm -f "$E"' EXIT
try() {  # LABEL ARGS...: one line with the exit status and the error
  label=$1; shift
  "$@" >/dev/null 2>"$E" </dev/null
  echo "$label rc=$? :: $(head -c 400 "$E" | tr '\n' ' ')"
}
# Root's objects, owner-only; `nobody` may not use them.
"$B" lock m -- true && "$B" sem s create && "$B" event e create &&
  "$B" pub t hello && "$B" create g -s 4K >/dev/null || exit 78
AS="setpriv --reuid=65534 --regid=65534 --clear-groups"
try denied-lock $AS "$B" lock m --timeout 1s -- true
try denied-sem $AS "$B" sem s post
try denied-event $AS "$B" event e set
try denied-pub $AS "$B" pub t --timeout 1s hello
try denied-sub $AS "$B" sub t --count 1 --timeout 100ms
try denied-read $AS "$B" read g
try denied-write $AS "$B" write g hello
try denied-file $AS "$B" create g2 -s 4K --file "$E"
echo "g2=$([ -e /dev/shm/g2 ] && echo left || echo none)"
try taken-sem "$B" sem m create
try taken-event "$B" event e create
# A full store.
dd if=/dev/zero of=/dev/shm/filler bs=4096 2>/dev/null
before=$(ls /dev/shm | tr '\n' ' ')
try full-lock "$B" lock m2 -- true
try full-sem "$B" sem s2 create
try full-event "$B" event e2 create
try full-pub "$B" pub t2 hello
try full-sub "$B" sub t3 --count 1 --timeout 100ms
echo "same=$([ "$before" = "$(ls /dev/shm | tr '\n' ' ')" ] && echo yes || echo no)"
"#;
    let test = "every_kind_is_named_as_what_it_is_when_create_or_open_fails";
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    for (key, what) in [
        ("denied-lock", "mutex `m`"),
        ("denied-sem", "semaphore `s`"),
        ("denied-event", "event `e`"),
        ("denied-pub", "topic `t`"),
        ("denied-sub", "topic `t`"),
        ("denied-read", "segment `g`"),
        ("denied-write", "segment `g`"),
        ("denied-file", "its file /tmp/shmipc-kinds-err-"),
    ] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains(what) && l.contains("permission denied"),
            "{l}"
        );
        assert!(
            !l.contains("read-only"),
            "a remedy the command has not: {l}"
        );
    }
    for (key, what) in [("taken-sem", "semaphore `m`"), ("taken-event", "event `e`")] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains(what) && l.contains("exists"),
            "{l}"
        );
    }
    for (key, what) in [
        ("full-lock", "mutex `m2`"),
        ("full-sem", "semaphore `s2`"),
        ("full-event", "event `e2`"),
        ("full-pub", "topic `t2`"),
        ("full-sub", "topic `t3`"),
    ] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains(what) && l.contains("free"),
            "{l}"
        );
    }
    assert!(
        text.contains("same=yes"),
        "a failed create left something: {text}"
    );
    assert!(text.contains("g2=none"), "{text}");
}

/// A /dev/shm whose limit of files is reached (a tmpfs's `nr_inodes`), with bytes
/// to spare: a killed holder's stale object is reclaimed by the next create, and
/// then every create path says there is no room for another object, naming it,
/// and leaves nothing behind (before: a raw "open(/dev/shm, O_TMPFILE) failed: No
/// space left on device (os error 28)", and no reclaim).
#[test]
fn a_dev_shm_out_of_files_is_reported_and_reclaimed() {
    if !is_root() {
        return skip(
            "a_dev_shm_out_of_files_is_reported_and_reclaimed",
            "needs root",
        );
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=4M,nr_inodes=8 tmpfs /dev/shm 2>/dev/null || exit 77
E=$(mktemp /tmp/shmipc-inodes-err-XXXXXX) || exit 78
F=$(mktemp -u /tmp/shmipc-inodes-file-XXXXXX)
P=$(mktemp -u /tmp/shmipc-inodes-fifo-XXXXXX) && mkfifo "$P" || exit 78
trap 'rm -f "$E" "$F" "$P"' EXIT
try() {  # LABEL ARGS...: one line with the exit status and the error
  label=$1; shift
  "$B" "$@" >/dev/null 2>"$E" </dev/null
  echo "$label rc=$? :: $(head -c 400 "$E" | tr '\n' ' ')"
}
"$B" create dead -s 4K --hold > "$P" 2>/dev/null &
dead=$!
read -r line < "$P"
kill -9 "$dead"; wait "$dead" 2>/dev/null
i=0; while touch /dev/shm/filler$i 2>/dev/null; do i=$((i+1)); done
echo "before=$(ls /dev/shm | tr '\n' ' ')"
try reclaim create fresh -s 4K
i=0; while touch /dev/shm/more$i 2>/dev/null; do i=$((i+1)); done
full=$(ls /dev/shm | tr '\n' ' ')
try segment create seg -s 4K
try file create fb -s 4K --file "$F"
try mutex lock mtx -- true
try semaphore sem sm create
try event event ev create
try topic pub top hello
echo "file=$([ -e "$F" ] && echo left || echo none)"
echo "same=$([ "$full" = "$(ls /dev/shm | tr '\n' ' ')" ] && echo yes || echo no)"
"#;
    let test = "a_dev_shm_out_of_files_is_reported_and_reclaimed";
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    assert!(text.contains("before=dead "), "{text}");
    assert!(line("reclaim").contains(" rc=0 "), "{text}");
    for (key, what) in [
        ("segment", "segment `seg`"),
        ("file", "segment `fb`"),
        ("mutex", "mutex `mtx`"),
        ("semaphore", "semaphore `sm`"),
        ("event", "event `ev`"),
        ("topic", "topic `top`"),
    ] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains(what) && l.contains("no room for another object"),
            "{l}"
        );
    }
    assert!(
        text.contains("file=none"),
        "a failed create left its file: {text}"
    );
    assert!(
        text.contains("same=yes"),
        "a failed create left something: {text}"
    );
}

/// On a full /dev/shm, existing objects stay usable by every verb, and creating
/// one that exists says it exists (before: `lock` of an existing mutex, which
/// creates it when missing, failed with "needs 128 bytes, only 0 free", because
/// create checked the space before the name).
#[test]
fn existing_objects_stay_usable_on_a_full_dev_shm() {
    if !is_root() {
        return skip(
            "existing_objects_stay_usable_on_a_full_dev_shm",
            "needs root",
        );
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=4M tmpfs /dev/shm 2>/dev/null || exit 77
E=$(mktemp /tmp/shmipc-existing-err-XXXXXX) || exit 78
trap 'rm -f "$E"' EXIT
try() {  # LABEL ARGS...: one line with the exit status and the error
  label=$1; shift
  "$B" "$@" >/dev/null 2>"$E" </dev/null
  echo "$label rc=$? :: $(head -c 400 "$E" | tr '\n' ' ')"
}
"$B" lock m -- true && "$B" sem s create && "$B" event e create &&
  "$B" pub t --capacity 4 --max-size 64 hello && "$B" create g -s 4K >/dev/null || exit 78
dd if=/dev/zero of=/dev/shm/filler bs=4096 2>/dev/null
full=$(ls /dev/shm | tr '\n' ' ')
try lock lock m --timeout 5s -- true
try post sem s post
try wait sem s wait --timeout 5s
try set event e set
try pub pub t --timeout 5s again
try sub sub t --history 2 --count 2 --timeout 5s
try read read g
try write write g hello
try create create g -s 4K
try sem-create sem s create
try event-create event m create
echo "same=$([ "$full" = "$(ls /dev/shm | tr '\n' ' ')" ] && echo yes || echo no)"
"#;
    let test = "existing_objects_stay_usable_on_a_full_dev_shm";
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    for key in ["lock", "post", "wait", "set", "pub", "sub", "read", "write"] {
        assert!(line(key).contains(" rc=0 "), "{}", line(key));
    }
    for key in ["create", "sem-create", "event-create"] {
        let l = line(key);
        assert!(
            l.contains(" rc=1 ") && l.contains("exists") && !l.contains("free"),
            "{l}"
        );
    }
    assert!(text.contains("same=yes"), "{text}");
}

/// On a full /dev/shm, space held by a segment whose last holder was killed is
/// reclaimed by the next `create`, with no `shmipc gc` in between: a crashed holder
/// never leaves the store full. A live holder's segment, another program's file
/// and an older build's persistent segment are never touched.
#[test]
fn a_killed_holders_space_is_reclaimed_by_the_next_create() {
    if !is_root() {
        return skip(
            "a_killed_holders_space_is_reclaimed_by_the_next_create",
            "needs root",
        );
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=512k tmpfs /dev/shm 2>/dev/null || exit 77
F=$(mktemp -u /tmp/shmipc-reclaim-XXXXXX) && mkfifo "$F" || exit 78
hold() {  # NAME SIZE: holds a segment; returns once it is created (its first line)
  "$B" create "$1" -s "$2" --hold > "$F" 2>/dev/null &
  read -r line < "$F"
}
hold live 128K; live=$!
hold dead 256K; dead=$!
printf 'not shmipc' > /dev/shm/other
# An older build's persistent segment that looks half made (zero header): only an
# explicit `shmipc gc` may judge it, never a create that needs space.
truncate -s 4096 /dev/shm/olderbuild && chmod 1600 /dev/shm/olderbuild
kill -9 "$dead"; wait "$dead" 2>/dev/null
rm -f "$F"
echo "stale=$(ls /dev/shm | tr '\n' ' ')"
"$B" create fresh -s 256K >/dev/null 2>/tmp/shmipc-reclaim-err
echo "rc=$? :: $(head -c 400 /tmp/shmipc-reclaim-err | tr '\n' ' ')"
echo "after=$(ls /dev/shm | tr '\n' ' ')"
kill "$live"; wait "$live" 2>/dev/null
"#;
    let test = "a_killed_holders_space_is_reclaimed_by_the_next_create";
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // The killed holder's segment is still there (nothing swept it yet)...
    assert!(line("stale=").contains(&"dead"), "{text}");
    // ...and the create that needs its space succeeds.
    assert!(
        text.contains("rc=0 "),
        "create on the full store failed: {text}"
    );
    let after = line("after=");
    assert!(!after.contains(&"dead"), "{text}");
    for kept in ["live", "other", "olderbuild", "fresh"] {
        assert!(after.contains(&kept), "{kept} is gone: {text}");
    }
}

// ---------------------------------------------------------------------------------
// 5. symlinks

/// Another user's link planted in /dev/shm is never followed: root's `write`
/// through it does not reach the file it points at, `read` refuses it, and `info`
/// calls it foreign (before: the write overwrote the file, and info said "shmipc").
#[test]
fn another_users_link_is_never_followed() {
    if !is_root() {
        return skip(
            "another_users_link_is_never_followed",
            "needs root (lchown)",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"SECRET\0").unwrap();
    let name = unique("evil-link");
    let _cleanup = Cleanup(name.clone());
    std::os::unix::fs::symlink(&secret, shm_path(&name)).unwrap();
    let nobody = rustix::process::Uid::from_raw(65534);
    rfs::chownat(
        rfs::CWD,
        shm_path(&name),
        Some(nobody),
        None,
        rfs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();

    let write = ["write", &name, "PWNED"];
    let line = assert_fails(&run(&write), 1, &write);
    assert!(line.contains("another user"), "{line}");
    assert_eq!(std::fs::read(&secret).unwrap(), b"SECRET\0");
    let read = ["read", &name];
    assert_fails(&run(&read), 1, &read);
    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["origin"], "foreign", "{info}");
    let listed = json(&ok(&["ls", "--json"]));
    assert!(!names_in(&listed).contains(&name), "{listed}");

    // The same one step further: a backing-file path that is another user's link
    // in a shared (sticky, world-writable) directory, as in /tmp, is not followed
    // whatever fs.protected_symlinks says, by `create --file` nor through our own
    // link in /dev/shm.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    rfs::chmod(&shared, Mode::from_raw_mode(0o1777)).unwrap();
    let planted = shared.join("planted");
    std::os::unix::fs::symlink(&secret, &planted).unwrap();
    rfs::chownat(
        rfs::CWD,
        &planted,
        Some(nobody),
        None,
        rfs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let other = unique("evil-file");
    let _cleanup = Cleanup(other.clone());
    let create = [
        "create",
        &other,
        "-s",
        "1M",
        "--file",
        planted.to_str().unwrap(),
    ];
    let line = assert_fails(&run(&create), 1, &create);
    assert!(line.contains("not followed"), "{line}");
    std::os::unix::fs::symlink(&planted, shm_path(&other)).unwrap();
    let write = ["write", &other, "PWNED"];
    let line = assert_fails(&run(&write), 1, &write);
    assert!(line.contains("not followed"), "{line}");
    assert_eq!(std::fs::read(&secret).unwrap(), b"SECRET\0");
}

/// Text another user chose reaches the terminal with its control characters
/// escaped: a link target in /dev/shm, the name of a process holding a segment or
/// a mutex, a name echoed in an error. (Before: `info` printed a link target's
/// escape sequences and newlines raw, which could clear or retitle the terminal
/// and forge lines of the report.)
#[test]
fn text_another_user_chose_never_reaches_the_terminal_raw() {
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\nforged line";
    // A link whose target is the text.
    let link = unique("evil-link");
    let _link_cleanup = Cleanup(link.clone());
    std::os::unix::fs::symlink(format!("/tmp/{evil}"), shm_path(&link)).unwrap();
    // A holder, and a mutex owner, whose process name is the text (a process is
    // named after the file it runs).
    let dir = std::env::temp_dir().join(unique("evil-exe"));
    std::fs::create_dir(&dir).unwrap();
    let exe = dir.join("\u{1b}[2Jevil");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shmipc"), &exe).unwrap();
    let held = unique("evil-holder");
    let _held_cleanup = Cleanup(held.clone());
    let mutex = unique("evil-owner");
    let _mutex_cleanup = Cleanup(mutex.clone());
    let spawn = |args: &[&str]| {
        let mut child = std::process::Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        (Running(child), lines)
    };
    let (_holder, lines) = spawn(&["create", &held, "-s", "4K", "--hold"]);
    next_line(&lines);
    let (_owner, lines) = spawn(&[
        "lock",
        &mutex,
        "--",
        "sh",
        "-c",
        "echo locked; exec sleep 120",
    ]);
    assert_eq!(next_line(&lines), "locked");
    let _ = std::fs::remove_file(&exe);
    let _ = std::fs::remove_dir(&dir);

    let bad_name = "x\u{1b}[31my";
    for args in [
        vec!["info", link.as_str()],
        vec!["info", held.as_str()],
        vec!["info", mutex.as_str()],
        vec!["ls"],
        vec!["ls", "--all"],
        vec!["create", bad_name, "-s", "4K"],
        vec!["read", bad_name],
    ] {
        let out = run(&args);
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.contains(&0x1b) && !text.contains(&0x07),
                "shmipc {args:?}: a raw control character on {stream}: {}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("\nforged line"),
            "shmipc {args:?}: a forged line"
        );
    }
    let info = ok(&["info", &held]);
    assert!(
        info.contains("[2Jevil"),
        "the holder is still shown: {info}"
    );
    // Linux does tell holders: an unfollowed link's are unknown for that reason.
    let info = ok(&["info", &link]);
    assert!(!info.contains("on this OS"), "{info}");
}

// ---------------------------------------------------------------------------------
// 5b. things that are no shared-memory object

/// Removes a directory or FIFO planted in /dev/shm when dropped.
struct Planted(std::path::PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory, FIFO or socket someone put in /dev/shm under a name: every verb says it
/// is no shared-memory object, naming it, in one line with exit status 1, and
/// none removes or replaces it (before: `info` said "does not exist: create it
/// first" while `create` said "already exists: remove it", and `rm` printed a raw
/// "Is a directory (os error 21)").
#[test]
fn every_verb_on_a_directory_fifo_or_socket_says_it_is_no_segment() {
    let dir = std::env::temp_dir().join(unique("nonseg-file"));
    let _dir_cleanup = Planted(dir.clone());
    for kind in ["directory", "fifo", "socket"] {
        let name = unique(&format!("nonseg-{kind}"));
        let path = shm_path(&name);
        let _planted = Planted(path.clone());
        // (A socket's listener is dropped at once; its file stays.)
        if kind == "directory" {
            std::fs::create_dir(&path).unwrap();
        } else if kind == "socket" {
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        } else {
            mkfifo(&path);
        }
        let file = dir.to_str().unwrap();
        let verbs: &[&[&str]] = &[
            &["info", "NAME"],
            &["info", "NAME", "--json"],
            &["read", "NAME"],
            &["read", "NAME", "--hex"],
            &["write", "NAME", "hello"],
            &["rm", "NAME"],
            &["create", "NAME", "-s", "4K"],
            &["create", "NAME", "-s", "4K", "--file", file],
            &["lock", "NAME", "--timeout", "1s", "--", "true"],
            &["sem", "NAME", "create"],
            &["sem", "NAME", "post"],
            &["sem", "NAME", "wait", "--timeout", "100ms"],
            &["event", "NAME", "create"],
            &["event", "NAME", "set"],
            &["event", "NAME", "wait", "--timeout", "100ms"],
            &["pub", "NAME", "--timeout", "1s", "hello"],
            &["sub", "NAME", "--count", "1", "--timeout", "100ms"],
        ];
        for verb in verbs {
            let args: Vec<&str> = verb
                .iter()
                .map(|a| if *a == "NAME" { name.as_str() } else { a })
                .collect();
            let line = assert_fails(&run(&args), 1, &args);
            assert!(
                line.contains(&format!("`{name}`")) && line.contains("not a shared-memory object"),
                "{kind}, shmipc {args:?}: {line}"
            );
            // The way out is not `shmipc rm`, which just refused.
            assert!(
                line.contains("the system's `rm`"),
                "{kind}, shmipc {args:?}: {line}"
            );
            let meta = path
                .symlink_metadata()
                .expect("the planted entry was removed");
            assert_eq!(meta.is_dir(), kind == "directory", "{args:?} replaced it");
        }
        assert!(!dir.exists(), "create --file left its file behind");
        ok(&["gc"]);
        assert!(path.symlink_metadata().is_ok(), "gc removed the {kind}");
    }
}

/// Objects whose names shmipc does not take (a control character, bytes that are
/// not UTF-8: a hostile user's) cannot be listed or named, but `ls --all` says in a
/// last line that they are there and how to see and remove them (before: nothing
/// at all, while a full /dev/shm's error pointed at `ls --all` for what uses the
/// space); its JSON stays the list. In a private /dev/shm: the other tests list
/// the real one meanwhile.
#[test]
fn ls_all_tells_of_objects_whose_names_it_cannot_show() {
    let test = "ls_all_tells_of_objects_whose_names_it_cannot_show";
    if !is_root() {
        return skip(test, "needs root (a private mount namespace)");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=1m tmpfs /dev/shm 2>/dev/null || exit 77
"$B" create plain -s 4K >/dev/null || exit 78
touch "/dev/shm/odd-$(printf '\033[2J')" "/dev/shm/odd-$(printf 'nl\nfake')" \
      "/dev/shm/odd-$(printf '\377')"
"$B" ls --all >/tmp/shmipc-odd-out-$$ 2>/tmp/shmipc-odd-err-$$
echo "rc=$?"
cat /tmp/shmipc-odd-out-$$
echo "--- stderr"
cat /tmp/shmipc-odd-err-$$
echo "--- json"
"$B" ls --all --json 2>&1
rm -f /tmp/shmipc-odd-out-$$ /tmp/shmipc-odd-err-$$
"#;
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let (out, rest) = text.split_once("--- stderr").expect("all parts");
    let (err, json_text) = rest.split_once("--- json").expect("all parts");
    assert!(out.starts_with("rc=0") && out.contains("plain"), "{text}");
    assert!(!out.contains("odd-"), "{text}");
    let last = out.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("3 more objects") && last.contains("ls -b /dev/shm"),
        "{text}"
    );
    assert!(err.trim().is_empty(), "{text}");
    let json: serde_json::Value = serde_json::from_str(json_text.trim()).expect("JSON alone");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
}

/// `create --file` with a FIFO or a device as the file says it is no regular file
/// and leaves no name behind (before: "extending the backing file failed: Invalid
/// argument (os error 22)").
#[test]
fn create_file_on_a_fifo_or_device_says_it_is_no_regular_file() {
    let fifo = std::env::temp_dir().join(unique("backing-fifo"));
    let _fifo_cleanup = Planted(fifo.clone());
    mkfifo(&fifo);
    for file in [fifo.to_str().unwrap(), "/dev/null", "/dev/zero"] {
        let name = unique("backing-special");
        let _cleanup = Cleanup(name.clone());
        let args = ["create", name.as_str(), "-s", "4K", "--file", file];
        let line = assert_fails(&run(&args), 1, &args);
        assert!(
            line.contains(&format!("`{name}`"))
                && line.contains(file)
                && line.contains("not a regular file"),
            "{line}"
        );
        assert!(!left_behind(&name), "{args:?} left its name");
    }
    assert!(
        fifo.symlink_metadata().unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );
}

/// A file-backed segment whose file was deleted: every verb says the file is gone,
/// naming it, where `read` and `write` said "does not exist: create it first" (while
/// `create` said it exists) and `lock` said "mutex objects are not supported on
/// this OS"; `rm` removes the name.
#[test]
fn a_file_backed_segment_whose_file_is_gone_says_so() {
    let name = unique("file-gone");
    let _cleanup = Cleanup(name.clone());
    let file = std::env::temp_dir().join(unique("file-gone-data"));
    let file_text = file.to_str().unwrap();
    ok(&["create", &name, "-s", "4K", "--file", file_text]);
    std::fs::remove_file(&file).unwrap();
    let verbs: &[&[&str]] = &[
        &["read", "NAME"],
        &["write", "NAME", "hello"],
        &["lock", "NAME", "--timeout", "1s", "--", "true"],
        &["sem", "NAME", "post"],
        &["event", "NAME", "set"],
        &["pub", "NAME", "--timeout", "1s", "hello"],
        &["sub", "NAME", "--count", "1", "--timeout", "100ms"],
    ];
    for verb in verbs {
        let args: Vec<&str> = verb
            .iter()
            .map(|a| if *a == "NAME" { name.as_str() } else { a })
            .collect();
        let line = assert_fails(&run(&args), 1, &args);
        assert!(
            line.contains(&format!("`{name}`"))
                && line.contains(file_text)
                && line.contains("is gone"),
            "{args:?}: {line}"
        );
    }
    assert!(!file.exists(), "a verb made the file again");
    ok(&["rm", &name]);
    assert!(!left_behind(&name));
}

// ---------------------------------------------------------------------------------
// 6. another user's lock

/// An object with shmipc's marks held exclusively by another user: `ls` and `info`
/// look at it without waiting for the lock (before: 2 s each, then "?"), and show
/// it as another's.
#[test]
fn another_users_lock_never_stalls_ls_or_info() {
    let name = unique("foreign-lock");
    let _cleanup = Cleanup(name.clone());
    let fd = plant_half_made(&name, b"hello");
    rfs::fchmod(&fd, Mode::from_raw_mode(0o3644)).unwrap();
    if is_root() {
        rfs::fchown(&fd, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
    }
    rfs::flock(&fd, FlockOperation::LockExclusive).unwrap();

    let info = json(&ok(&["info", &name, "--json"]));
    assert_eq!(info["kind"], "segment", "{info}");
    if is_root() {
        assert_eq!(info["origin"], "foreign", "{info}");
    }
    // Permission bits only, whoever owns it: shmipc's marks are not shown.
    assert_eq!(info["mode"], "0644", "{info}");
    let all = json(&ok(&["ls", "--all", "--json"]));
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap_or_else(|| panic!("not listed: {all}"));
    assert_eq!(entry["kind"], "segment", "{entry}");
    ok(&["gc"]);
    assert!(left_behind(&name), "gc removed a held object");
    drop(fd);
}

// ---------------------------------------------------------------------------------
// 7. lock: COMMAND never outlives the lock

fn alive(pid: i32) -> bool {
    // A zombie (dead, not yet reaped by whoever adopted it) is not running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Killing `shmipc lock` with SIGKILL (which releases the mutex) kills COMMAND too,
/// so the next locker never runs beside it (before: COMMAND ran on).
#[test]
fn lock_command_dies_with_the_lock() {
    let name = unique("lock-pdeath");
    let _cleanup = Cleanup(name.clone());
    let (mut running, lines) =
        spawn_lines(&["lock", &name, "--", "sh", "-c", "echo $$; exec sleep 120"]);
    let pid: i32 = next_line(&lines).trim().parse().unwrap();
    assert!(alive(pid));
    running.0.kill().unwrap();
    wait_exit(&mut running.0);
    wait_until("COMMAND to die with `shmipc lock`", || !alive(pid));
    let args = ["lock", &name, "--timeout", "10s", "--", "true"];
    let out = run(&args);
    assert!(out.status.success(), "{out:?}");
}

// ---------------------------------------------------------------------------------
// 9. bad arguments leave nothing behind

/// Every verb but pub/sub, given bad arguments, fails with one line and leaves no
/// new name in /dev/shm (nor in `ls --all`).
#[test]
fn bad_arguments_leave_nothing_behind() {
    let tag = unique("badargs");
    let n = |i: u32| format!("{tag}-{i}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let empty = empty.to_str().unwrap().to_owned();
    let missing = dir.path().join("no/such/dir/f");
    let missing = missing.to_str().unwrap().to_owned();
    let dir_path = dir.path().to_str().unwrap().to_owned();
    let (n1, n2, n3, n4, n5, n6) = (n(1), n(2), n(3), n(4), n(5), n(6));
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", &n1, "-s", "0"],
        vec!["create", &n1, "-s", "1000T"],
        vec!["create", &n1, "-s", "4K", "--mode", "0777"],
        vec!["create", &n1, "-s", "4K", "--file", &missing],
        vec!["create", &n1, "-s", "4K", "--file", &dir_path],
        vec!["create", &n1, "--file", &empty],
        vec!["create", &n1, "-s", "4K", "--hold", "--persist"],
        vec!["lock", &n2, "--", "/nonexistent/shmipc-test-command"],
        vec!["lock", &n2, "--timeout", "soon", "--", "true"],
        vec!["lock", &n2],
        vec!["sem", &n3, "create", "--initial", "5", "--max", "2"],
        vec!["sem", &n3, "create", "--mode", "9"],
        vec!["sem", &n3, "post"],
        vec!["sem", &n3, "wait", "--timeout", "1ms"],
        vec!["event", &n4, "create", "--mode", "0800"],
        vec!["event", &n4, "set"],
        vec!["event", &n4, "wait", "--timeout", "1ms"],
        vec!["write", &n5, "hello"],
        vec!["write", &n5, "--from", &missing],
        vec!["read", &n5],
        vec!["info", &n5],
        vec!["rm", &n5],
        vec!["demo", "--name", "a/b"],
        vec!["demo", "--name", &n6, "--timeout", "never"],
    ];
    for args in &cases {
        let out = run(args);
        assert!(
            !out.status.success() && out.status.signal().is_none(),
            "{args:?} did not fail cleanly: {out:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains(&tag))
        .collect();
    for name in &left {
        let _ = shmipc::Segment::remove(name);
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    let all = json(&ok(&["ls", "--all", "--json"]));
    assert!(
        !names_in(&all).iter().any(|s| s.contains(&tag)),
        "listed: {all}"
    );
    assert!(!std::path::Path::new(&missing).exists());
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
}

// ---------------------------------------------------------------------------------
// 10. read --len

/// `--len` is "at most", as the help says: a range past the end stops at the end.
#[test]
fn read_len_past_the_end_stops_at_the_end() {
    let name = unique("readlen");
    let _cleanup = Cleanup(name.clone());
    ok(&["create", &name, "-s", "16"]);
    ok(&["write", &name, "hello"]);
    let out = run(&["read", &name, "--len", "1000", "--raw"]);
    assert_success(&out, &["read", "--len", "1000", "--raw"]);
    assert_eq!(out.stdout, b"hello\0\0\0\0\0\0\0\0\0\0\0");
    let out = run(&["read", &name, "--offset", "10", "--len", "1M", "--hex"]);
    assert_success(&out, &["read", "--offset", "10", "--len", "1M", "--hex"]);
    let mut expected = Vec::new();
    writeln!(
        expected,
        "0000000a  00 00 00 00 00 00                                 |......|\n00000010"
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected)
    );
}

/// A lossless topic never frees what a live subscriber has not read, so a loss
/// there means something else wrote its memory: the subscriber says so, instead
/// of advising "a lossless topic" (it is one). The scribble: one byte of the
/// third chunk's message number (capacity 4, 64-byte slots).
#[test]
fn a_loss_on_a_lossless_topic_is_called_corruption_not_advice() {
    let name = unique("lossless-scribble");
    let _cleanup = Cleanup(name.clone());
    let script = r#"
set -u
B="$1"; T="$2"
"$B" pub --capacity 4 --max-size 64 --max-subscribers 2 "$T" init >/dev/null || exit 78
"$B" sub -t 1s "$T" >/dev/null 2>"/tmp/shmipc-scribble-$$" & SP=$!
i=0
until "$B" info "$T" | grep -q ' 1 of '; do
  i=$((i + 1)); [ "$i" -lt 400 ] || { kill "$SP"; exit 79; }; sleep 0.05
done
kill -STOP "$SP"
"$B" pub "$T" a b c >/dev/null
printf '\005' | dd of="/dev/shm/$T" conv=notrunc bs=1 seek=$((4096 + 256)) 2>/dev/null
kill -CONT "$SP"
wait "$SP"
cat "/tmp/shmipc-scribble-$$"
rm -f "/tmp/shmipc-scribble-$$"
"#;
    let out = std::process::Command::new("sh")
        .args(["-c", script, "sh", env!("CARGO_BIN_EXE_shmipc"), &name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("lost 1 message"), "{text}");
    assert!(
        text.contains("although the topic is lossless") && !text.contains("a larger --capacity"),
        "{text}"
    );
}

/// A topic whose header holds a value no creator writes (here a capacity of 375,
/// not a power of two) is called damaged by every verb, with what to do: it was
/// reported as "created with a different capacity … open it with the parameters it
/// was created with", which no parameters would do.
#[test]
fn a_scribbled_topic_header_is_called_damaged_not_different() {
    use std::os::unix::fs::FileExt as _;
    let name = unique("hdr-scribble");
    let _cleanup = Cleanup(name.clone());
    ok(&["pub", &name, "hello"]);
    // The header's first parameter word (capacity) is at byte 24.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    file.write_all_at(&375u64.to_le_bytes(), 24).unwrap();
    drop(file);
    for args in [
        vec!["sub", &name, "-n", "1", "-t", "200ms"],
        vec!["pub", &name, "x"],
    ] {
        let line = assert_fails(&run(&args), 1, &args);
        assert!(
            line.contains("header is damaged: capacity 375") && !line.contains("different"),
            "{args:?}: {line}"
        );
        assert!(line.contains("shmipc rm"), "{args:?}: {line}");
    }
    let info = ok(&["info", &name]);
    assert!(info.contains("header is damaged"), "{info}");
    ok(&["rm", &name]);
}

// ---------------------------------------------------------------------------------
// 11. write onto a sync object or a channel

/// `write` onto a mutex, semaphore, event or topic is refused, naming what the name
/// holds: it wrote raw bytes over the object's header ("wrote 3 bytes to segment"),
/// after which every user of it failed and `info` called it plain bytes. A plain
/// segment is still written.
#[test]
fn write_refuses_to_overwrite_a_shmipc_object() {
    let tag = unique("writeobj");
    let (mx, sem, ev, topic, plain) = (
        format!("{tag}-mx"),
        format!("{tag}-sem"),
        format!("{tag}-ev"),
        format!("{tag}-tp"),
        format!("{tag}-plain"),
    );
    let _guards: Vec<Cleanup> = [&mx, &sem, &ev, &topic, &plain]
        .iter()
        .map(|n| Cleanup((*n).clone()))
        .collect();
    ok(&["lock", &mx, "--", "true"]);
    ok(&["sem", &sem, "create"]);
    ok(&["event", &ev, "create"]);
    ok(&["pub", &topic, "first"]);
    ok(&["create", &plain, "-s", "4K"]);
    for (name, kind) in [
        (&mx, "a mutex"),
        (&sem, "a semaphore"),
        (&ev, "an event"),
        (&topic, "a pubsub"),
    ] {
        let before = json(&ok(&["info", name, "--json"]));
        for args in [
            vec!["write", name.as_str(), "hi"],
            vec!["write", name.as_str(), "--offset", "100", "--no-nul", "x"],
        ] {
            let line = assert_fails(&run(&args), 1, &args);
            assert!(
                line.contains(&format!("`{name}` is {kind}"))
                    && line.contains("not a plain segment")
                    && line.contains(&format!("shmipc rm {name}")),
                "{args:?}: {line}"
            );
        }
        let after = json(&ok(&["info", name, "--json"]));
        assert_eq!(before["kind"], after["kind"], "{name}: {after}");
    }
    // Each still works as what it is.
    ok(&["lock", &mx, "--timeout", "5s", "--", "true"]);
    ok(&["sem", &sem, "post"]);
    ok(&["sem", &sem, "wait", "--timeout", "5s"]);
    ok(&["event", &ev, "set"]);
    ok(&["event", &ev, "wait", "--timeout", "5s"]);
    ok(&["pub", &topic, "second"]);
    ok(&["write", &plain, "hello"]);
    assert_eq!(ok(&["read", &plain]).trim_end(), "hello");
}

// ---------------------------------------------------------------------------------
// 12. stdout that cannot be written

/// A stdout that refuses writes (a full disk; here /dev/full) is named: every verb
/// said a bare `shmipc: No space left on device (os error 28)`, which reads as if
/// shared memory were full. A closed pipe still ends a command quietly.
#[test]
fn a_full_stdout_is_named_as_stdout() {
    let seg = unique("fullout");
    let topic = format!("{seg}-tp");
    let _c = (Cleanup(seg.clone()), Cleanup(topic.clone()));
    ok(&["create", &seg, "-s", "64K"]);
    ok(&["pub", &topic, "--capacity", "4", "one", "two"]);
    let cases: Vec<Vec<&str>> = vec![
        vec!["info", &seg],
        vec!["info", &seg, "--json"],
        vec!["ls", "--json"],
        vec!["ls", "--all"],
        vec!["read", &seg, "--raw"],
        vec!["read", &seg, "--hex"],
        vec!["write", &seg, "x"],
        vec!["sub", &topic, "--history", "2", "-n", "2", "-t", "5s"],
        vec![
            "sub",
            &topic,
            "--history",
            "2",
            "-n",
            "2",
            "-t",
            "5s",
            "--json",
        ],
    ];
    for args in &cases {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = shmipc()
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .unwrap();
        let line = assert_fails(&out, 1, args);
        assert!(
            line.starts_with("shmipc: cannot write to stdout: "),
            "{args:?}: {line}"
        );
    }
    // A reader that has seen enough is no failure.
    let mut child = shmipc()
        .args(["read", &seg, "--hex"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_exit(&mut child);
    let err = stderr_text(&mut child);
    assert!(status.success() && err.is_empty(), "{status:?}: {err}");
}

/// Whether anything opened `path` since the watch began (inotify `IN_OPEN`; an
/// `O_PATH` look is no open).
struct OpenWatch(std::os::fd::OwnedFd);

impl OpenWatch {
    fn new(path: &std::path::Path) -> Self {
        use rfs::inotify;
        let fd =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(&fd, path, inotify::WatchFlags::OPEN).unwrap();
        Self(fd)
    }

    fn opened(&self) -> bool {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut reader = rfs::inotify::Reader::new(&self.0, &mut buf);
        match reader.next() {
            Ok(e) => e.events().contains(rfs::inotify::ReadFlags::OPEN),
            Err(rustix::io::Errno::AGAIN) => false,
            Err(e) => panic!("reading inotify: {e}"),
        }
    }
}

/// `create --file` on a device or FIFO is refused without ever opening it: it was
/// opened read-write (without `O_NOCTTY`) and only then refused, and as root
/// opening a watchdog device arms it, a tape device rewinds, a FIFO's blocked
/// writer is let go. Every verb on a file-backed segment whose file was replaced
/// by a FIFO or device is refused the same way. (Devices need root for `mknod`;
/// skipped otherwise.)
#[test]
fn a_device_or_fifo_as_backing_file_is_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let mut specials = vec![fifo];
    let null = dir.path().join("null");
    // /dev/null's numbers (1, 3): opening it does nothing, but inotify sees it.
    if rfs::mknodat(
        rfs::CWD,
        &null,
        rfs::FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        rfs::makedev(1, 3),
    )
    .is_ok()
    {
        specials.push(null);
    } else {
        eprintln!("no device node (not root): FIFO only");
    }
    for special in &specials {
        let text = special.to_str().unwrap();
        let name = unique("never-opened");
        let _cleanup = Cleanup(name.clone());
        let watch = OpenWatch::new(special);
        let args = ["create", name.as_str(), "-s", "4K", "--file", text];
        let line = assert_fails(&run(&args), 1, &args);
        assert!(line.contains("not a regular file"), "{line}");
        assert!(!watch.opened(), "{args:?} opened {text}");
        assert!(!left_behind(&name), "{args:?} left its name");

        // A segment on a regular file, then the file replaced by the special one.
        let file = dir.path().join("data");
        ok(&[
            "create",
            &name,
            "-s",
            "4K",
            "--file",
            file.to_str().unwrap(),
        ]);
        std::fs::rename(special, &file).unwrap();
        let watch = OpenWatch::new(&file);
        for verb in [
            vec!["read", name.as_str()],
            vec!["write", name.as_str(), "x"],
            vec!["info", name.as_str()],
            vec!["lock", name.as_str(), "--", "true"],
            vec!["sub", name.as_str(), "-t", "1ms"],
        ] {
            // `info` describes it as not openable; the others fail.
            let out = run(&verb);
            assert_eq!(out.status.success(), verb[0] == "info", "{verb:?}: {out:?}");
            assert!(!watch.opened(), "{verb:?} opened {text}");
        }
        ok(&["rm", &name]);
        std::fs::rename(&file, special).unwrap();
    }
}

/// `create --file` on a file of /proc or /sys (regular-looking, but writing one
/// sets kernel state) is refused, naming the file system, before it is opened:
/// as root it was opened read-write and, where the size fitted, mapped.
#[test]
fn a_proc_or_sys_file_as_backing_file_is_refused() {
    for (file, fs) in [
        ("/proc/self/comm", "procfs"),
        ("/sys/kernel/uevent_seqnum", "sysfs"),
    ] {
        if std::path::Path::new(file).symlink_metadata().is_err() {
            continue;
        }
        let name = unique("pseudo");
        let _cleanup = Cleanup(name.clone());
        let args = ["create", name.as_str(), "--file", file];
        let line = assert_fails(&run(&args), 1, &args);
        assert!(
            line.contains(file) && line.contains(fs) && line.contains("kernel interface"),
            "{line}"
        );
        assert!(!left_behind(&name), "{args:?} left its name");
    }
}

/// A file-backed create whose link in /dev/shm finds no room: out of files, a
/// killed holder's stale object is swept and the create succeeds, as every other
/// create path does; out of bytes (a long file path needs a page for its link),
/// it says so, where it said "no room for another object" either way and swept
/// nothing. Nothing is left behind.
#[test]
fn a_file_backed_create_on_a_full_dev_shm_sweeps_and_names_what_is_full() {
    let test = "a_file_backed_create_on_a_full_dev_shm_sweeps_and_names_what_is_full";
    if !is_root() {
        return skip(test, "needs root");
    }
    let script = r#"
set -u
B="$1"
mount -t tmpfs -o size=1M,nr_inodes=8 tmpfs /dev/shm 2>/dev/null || exit 77
D=$(mktemp -d /tmp/shmipc-fblink-XXXXXX) || exit 78
P="$D/fifo"; mkfifo "$P" || exit 78
L="$D/$(printf 'long%.0s' $(seq 1 60))"
E="$D/err"
trap 'rm -rf "$D"' EXIT
try() {  # LABEL ARGS...: one line with the exit status and the error
  label=$1; shift
  "$B" "$@" >/dev/null 2>"$E" </dev/null
  echo "$label rc=$? :: $(head -c 400 "$E" | tr '\n' ' ')"
}
"$B" create dead -s 4K --hold > "$P" 2>/dev/null &
dead=$!
read -r line < "$P"
kill -9 "$dead"; wait "$dead" 2>/dev/null
i=0; while touch /dev/shm/filler$i 2>/dev/null; do i=$((i+1)); done
try files create fb -s 4K --file "$D/data"
echo "dead=$([ -e /dev/shm/dead ] && echo left || echo gone)"
umount /dev/shm
mount -t tmpfs -o size=64K tmpfs /dev/shm || exit 78
dd if=/dev/zero of=/dev/shm/filler bs=4096 2>/dev/null
try bytes create fb2 -s 4K --file "$L"
echo "left=$(ls /dev/shm | tr '\n' ' ')"
umount /dev/shm
mount -t tmpfs -o size=64K,nr_inodes=0 tmpfs /dev/shm || exit 78
dd if=/dev/zero of=/dev/shm/filler bs=4096 2>/dev/null
try unlimited create fb3 -s 4K --file "$L"
echo "file=$([ -e "$L" ] && echo left || echo none)"
"#;
    let Some(text) = in_private_dev_shm(test, script) else {
        return;
    };
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    assert!(line("files").contains(" rc=0 "), "{text}");
    assert!(text.contains("dead=gone"), "{text}");
    let l = line("bytes");
    assert!(
        l.contains(" rc=1 ")
            && l.contains("segment `fb2`")
            && l.contains("free in /dev/shm")
            && !l.contains("no room for another object"),
        "{l}"
    );
    assert!(text.contains("left=filler "), "{text}");
    // A tmpfs without a limit of files (nr_inodes=0) reports none free: no
    // "no room for another object" there either.
    let l = line("unlimited");
    assert!(
        l.contains(" rc=1 ")
            && l.contains("free in /dev/shm")
            && !l.contains("no room for another object"),
        "{l}"
    );
    assert!(text.contains("file=none"), "{text}");
}

/// Every bidirectional-text control (embeddings, overrides, isolates, marks).
const BIDI: [char; 12] = [
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}',
];

/// Bidirectional-text controls that another user chose (in a name, a link
/// target, a process name, a message) never reach the terminal raw, where they
/// reorder what follows so that one name reads as another: they are escaped as
/// control characters are, and `--json` writes them as `\uXXXX` (the same value).
/// (Before: only C0/C1 controls were escaped.)
#[test]
fn bidi_controls_never_reach_the_terminal_raw() {
    let evil: String = BIDI.iter().collect();
    // A name made of them (a valid name), a link target, a holder's process name.
    let name = format!("{}-{evil}", unique("bidi"));
    let _name_cleanup = Cleanup(name.clone());
    ok(&["create", &name, "-s", "4K"]);
    let link = unique("bidi-link");
    let _link_cleanup = Cleanup(link.clone());
    std::os::unix::fs::symlink(format!("/tmp/{evil}"), shm_path(&link)).unwrap();
    let dir = std::env::temp_dir().join(unique("bidi-exe"));
    std::fs::create_dir(&dir).unwrap();
    // A process name is at most 15 bytes: three of the controls.
    let exe = dir.join("\u{202e}\u{2066}\u{061c}x");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shmipc"), &exe).unwrap();
    let held = unique("bidi-holder");
    let _held_cleanup = Cleanup(held.clone());
    let mut child = std::process::Command::new(&exe)
        .args(["create", &held, "-s", "4K", "--hold"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let _holder = Running(child);
    next_line(&lines);
    let _ = std::fs::remove_file(&exe);
    let _ = std::fs::remove_dir(&dir);
    let topic = unique("bidi-topic");
    let _topic_cleanup = Cleanup(topic.clone());
    ok(&["pub", &topic, "--capacity", "4", &format!("m{evil}")]);

    let raw = |text: &[u8]| {
        String::from_utf8_lossy(text)
            .chars()
            .any(|c| BIDI.contains(&c))
    };
    for args in [
        vec!["info", name.as_str()],
        vec!["info", link.as_str()],
        vec!["info", held.as_str()],
        vec!["ls"],
        vec!["ls", "--all"],
        vec!["read", name.as_str(), "--hex"],
        vec!["rm", name.as_str(), "--nonexistent-flag"],
        vec!["sem", name.as_str(), "post"],
        vec!["create", name.as_str(), "-s", "4K"],
        vec!["sub", topic.as_str(), "--history", "1", "-n", "1"],
    ] {
        let out = run(&args);
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !raw(text),
                "shmipc {args:?}: a raw bidi control on {stream}: {}",
                String::from_utf8_lossy(text).escape_debug()
            );
        }
    }
    let info = ok(&["info", &held]);
    assert!(
        info.contains("\\u{202e}"),
        "the holder is still shown: {info}"
    );
    // JSON: escaped, and the same value.
    for args in [
        vec!["ls", "--all", "--json"],
        vec!["info", name.as_str(), "--json"],
    ] {
        let out = ok(&args);
        assert!(!raw(out.as_bytes()), "{args:?}: {}", out.escape_debug());
        assert!(out.contains(&json_name(&name)), "{args:?}: {out}");
    }
    let args = ["sub", topic.as_str(), "--history", "1", "-n", "1", "--json"];
    let out = ok(&args);
    assert!(!raw(out.as_bytes()), "{args:?}: {}", out.escape_debug());
    assert_eq!(json(&out)["text"], format!("m{evil}"), "{out}");
}

/// `name` as serde_json writes it, bidi controls as `\uXXXX`.
fn json_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if BIDI.contains(&c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Every `shmipc …` command a message suggests, for a name with spaces, quotes,
/// shell metacharacters or bidi controls, is one a shell runs with exactly that
/// name (checked by running it through bash with `printf` in place of shmipc):
/// `shmipc rm my topic` removed `my` and `topic`, `shmipc rm $(…)` ran the `…`.
#[test]
fn suggested_commands_quote_the_name_for_the_shell() {
    let names = [
        "a b",
        "x;y&z|w",
        "q'uo\"te",
        "$(echo pwned)",
        "{brace},#hash!bang",
        "star*?[x]",
        "-dash ~home",
        "t\u{202e}xt",
    ];
    for tag in names {
        let name = format!("{}-{tag}", unique("sh"));
        let _c = Cleanup(name.clone());
        let mut said = String::new();
        // stdout: create's "stays until `shmipc rm NAME`", info's persistence.
        said += &ok(&["create", &name, "-s", "4K"]);
        said += &ok(&["info", &name]);
        // stderr: create of an existing name, sub on a non-topic, write to objects.
        for args in [
            vec!["create", name.as_str(), "-s", "4K"],
            vec!["sub", name.as_str(), "-t", "1ms"],
        ] {
            said += &String::from_utf8_lossy(&run(&args).stderr);
        }
        ok(&["rm", &name]);
        for args in [
            vec!["read", name.as_str()],
            vec!["sub", name.as_str(), "-t", "1ms"],
        ] {
            said += &String::from_utf8_lossy(&run(&args).stderr);
        }
        ok(&["rm", &name]);
        ok(&["lock", &name, "--", "true"]);
        said += &String::from_utf8_lossy(&run(&["write", &name, "x"]).stderr);
        ok(&["rm", &name]);

        let suggested: Vec<&str> = said
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("shmipc ") && s.len() > "shmipc xx ".len())
            .filter(|s| !s.starts_with("shmipc ls") && !s.starts_with("shmipc gc"))
            .collect();
        assert!(suggested.len() >= 6, "{name:?}: {said}");
        for cmd in suggested {
            let words = cmd.trim_start_matches("shmipc ");
            let out = std::process::Command::new("bash")
                .args(["-c", &format!("printf '%s\\n' {words}")])
                .output()
                .unwrap();
            let args = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                args.lines().nth(1),
                Some(name.as_str()),
                "`{cmd}` does not name {name:?} to a shell (it gives {args:?}) in: {said}"
            );
        }
    }
}

/// Whether process `pid` has `path` open read-write.
fn has_open_rw(pid: u32, path: &std::path::Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let target = std::fs::read_link(fd.path()).ok();
        let flags = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("flags:"))?.to_owned();
            u32::from_str_radix(line.trim_start_matches("flags:").trim(), 8).ok()
        });
        target.as_deref() == Some(path) && flags.is_some_and(|f| f & 3 == 2)
    })
}

/// `write` checks what it writes into on the object it opened, not only on the
/// name before opening: a name that comes to hold a mutex between the look and the
/// open (here: the open waits on a closing holder's lock while the plain segment is
/// removed and a mutex made under its name) was written into, breaking the mutex.
#[test]
fn write_checks_the_object_it_opened() {
    let name = unique("write-race");
    let _c = Cleanup(name.clone());
    ok(&["create", &name, "-s", "4K"]);
    let path = shm_path(&name);
    // Hold the plain segment exclusively, as a closing holder does for a moment.
    let old = rfs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    rfs::flock(&old, FlockOperation::NonBlockingLockExclusive).unwrap();
    let mut writer = Running(
        shmipc()
            .args(["write", &name, "hello"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = writer.0.id();
    wait_until("write to open the segment", || has_open_rw(pid, &path));
    // The name now holds a mutex; the old object goes with its last holder.
    ok(&["rm", &name]);
    ok(&["lock", &name, "--", "true"]);
    let before = json(&ok(&["info", &name, "--json"]));
    drop(old);
    let status = wait_exit(&mut writer.0);
    let err = stderr_text(&mut writer.0);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("`{name}` is a mutex, not a plain segment")),
        "{err}"
    );
    let after = json(&ok(&["info", &name, "--json"]));
    assert_eq!(before, after, "the mutex changed");
    ok(&["lock", &name, "--timeout", "5s", "--", "true"]);
}

/// Runs a command a message suggested, as pasted into `sh` (with our `shmipc`
/// first on PATH; SIZE, COMMAND and MESSAGE filled in), and returns its stdout;
/// it must succeed, within [`PATIENCE`].
fn paste(cmd: &str) -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_shmipc"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let line = cmd
        .replace("SIZE", "4K")
        .replace("COMMAND", "true")
        .replace("MESSAGE", "hello");
    let mut child = std::process::Command::new("sh")
        .args(["-c", &line])
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "the suggested `{cmd}` (run as {line:?}) failed ({status}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `shmipc …` commands in what a command said (between backquotes), but
/// `ls` and `gc`, which name nothing.
fn suggestions(said: &str) -> Vec<String> {
    said.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("shmipc ") && s.len() > "shmipc xx ".len())
        .filter(|s| !s.starts_with("shmipc ls") && !s.starts_with("shmipc gc"))
        .map(str::to_owned)
        .collect()
}

/// Everything a run said, stdout and stderr.
fn said(args: &[&str]) -> String {
    let out = run(args);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Every command a message suggests works when pasted into a shell, for names
/// that clap would take for something else: one starting with `-` (`shmipc rm
/// -x`: "unexpected argument '-x'"; `-h` and `--help` printed the help, `--`
/// ended the options) and, for `sem` and `event`, one that is also an action
/// (`shmipc sem post post` took the name for the action). Each suggestion is run
/// and must do what it says to the object of that name: `rm` removes it, `info`
/// shows it, `create`, `sem … create` and `event … create` make it, `lock`, `sem
/// … post`/`wait`, `event … set` and `pub` use it.
#[test]
fn suggested_commands_work_for_names_that_look_like_options_or_actions() {
    let mine = unique("dash");
    let tagged = [
        format!("-{mine}"),
        format!("--{mine}"),
        format!("-x {mine}"),
    ];
    let exact = [
        "-", "--", "-h", "--help", "post", "set", "help", "wait", "create",
    ];
    let names = tagged.iter().map(String::as_str).chain(exact);
    for name in names {
        if left_behind(name) {
            skip(
                "suggested_commands_work_for_names_that_look_like_options_or_actions",
                &format!("{name:?} exists in /dev/shm"),
            );
            continue;
        }
        let _c = Cleanup(name.to_owned());
        let exists = || run(&["info", "--", name]).status.success();
        let kind = || json(&ok(&["info", "--json", "--", name]))["kind"].clone();

        // A plain segment: `rm` and `info` suggestions.
        let mut said_all = ok(&["create", "-s", "4K", "--", name]);
        said_all += &ok(&["info", "--", name]);
        said_all += &said(&["create", "-s", "4K", "--", name]);
        said_all += &said(&["sub", "-t", "1ms", "--", name]);
        let found = suggestions(&said_all);
        assert!(found.len() >= 5, "{name:?}: {said_all}");
        // (`info` shows a name with a blank in quotes, as `ls` does.)
        let quoted = if name.contains(' ') {
            format!("'{name}'")
        } else {
            name.to_owned()
        };
        for cmd in found.iter().filter(|c| c.starts_with("shmipc info")) {
            let shown = paste(cmd);
            assert!(
                shown.lines().next() == Some(&format!("name         {quoted}")),
                "`{cmd}` showed {shown}"
            );
        }
        let rm = found.iter().find(|c| c.starts_with("shmipc rm")).unwrap();
        paste(rm);
        assert!(!exists(), "`{rm}` left {name:?}");

        // Nothing: `create … --size SIZE`.
        let said_all = said(&["read", "--", name]);
        for cmd in suggestions(&said_all) {
            paste(&cmd);
            assert_eq!(kind(), "segment", "`{cmd}`");
            ok(&["rm", "--", name]);
        }

        // A mutex: `lock … -- COMMAND` and `rm`.
        ok(&["lock", "--", name, "--", "true"]);
        let said_all = said(&["write", "--", name, "x"]);
        let found = suggestions(&said_all);
        assert!(found.len() == 2, "{name:?}: {said_all}");
        paste(&found[0]);
        assert_eq!(kind(), "mutex", "`{}`", found[0]);
        paste(&found[1]);
        assert!(!exists(), "`{}` left {name:?}", found[1]);

        // A semaphore and an event: `VERB … create`, then the actions `write`
        // suggests, then `VERB … wait` after a removal under a waiter.
        for (verb, act, kind_of) in [("sem", "post", "semaphore"), ("event", "set", "event")] {
            let said_all = said(&[verb, "--", name, act]);
            let found = suggestions(&said_all);
            assert!(found.len() == 1, "{name:?}: {said_all}");
            said_all_rm(&paste(&found[0]), name);
            assert_eq!(kind(), kind_of, "`{}`", found[0]);
            let said_all = said(&["write", "--", name, "x"]);
            let found = suggestions(&said_all);
            assert!(found.len() == 2, "{name:?}: {said_all}");
            paste(&found[0]);
            // Take the post, or reset the event: the next wait waits.
            ok(&[
                verb,
                "--",
                name,
                if verb == "sem" { "wait" } else { "reset" },
            ]);
            let mut waiter = Running(
                shmipc()
                    .args([verb, "--", name, "wait"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let pid = waiter.0.id();
            wait_until("the waiter to open it", || {
                has_open_rw(pid, &shm_path(name))
            });
            paste(&found[1]);
            assert!(!exists(), "`{}` left {name:?}", found[1]);
            assert_eq!(wait_exit(&mut waiter.0).code(), Some(1));
            let err = stderr_text(&mut waiter.0);
            let found = suggestions(&err);
            assert!(found.len() == 2, "{name:?}: {err}");
            // `VERB … wait` again, on a new object that lets it through at once.
            match verb {
                "sem" => ok(&["sem", "--", name, "create", "--initial", "1"]),
                _ => ok(&["event", "--", name, "create"]),
            };
            if verb == "event" {
                ok(&["event", "--", name, "set"]);
            }
            paste(&found[1]);
            ok(&["rm", "--", name]);
        }

        // A topic: `pub … MESSAGE`.
        ok(&["pub", "--", name, "first"]);
        let said_all = said(&["write", "--", name, "x"]);
        let found = suggestions(&said_all);
        assert!(found.len() == 2, "{name:?}: {said_all}");
        paste(&found[0]);
        assert_eq!(state_of(name)["published"], 2, "`{}`", found[0]);
        paste(&found[1]);
        assert!(!exists(), "`{}` left {name:?}", found[1]);
    }
}

/// A create's notice suggests `rm` of the name it made.
fn said_all_rm(notice: &str, name: &str) {
    let found = suggestions(notice);
    assert!(
        found.len() == 1 && found[0].starts_with("shmipc rm "),
        "{name:?}: {notice}"
    );
}

/// The `state` of `info --json` for `name`.
fn state_of(name: &str) -> serde_json::Value {
    json(&ok(&["info", "--json", "--", name]))["state"].clone()
}

/// `write --from PATH` opens only a regular file or a pipe already open
/// (`--from <(cmd)`, `/dev/stdin` as a pipe), and `-` reads stdin. It opened
/// whatever PATH named: a named pipe with no writer hung it for ever, `/dev/null`
/// "wrote 0 bytes" (and a device such as `/dev/watchdog` would have been armed, a
/// terminal made the controlling one). Each is refused, before it is opened, with
/// one line naming the path and what it is, and the segment is left as it was.
#[test]
fn write_from_opens_only_files_and_open_pipes() {
    let name = unique("from");
    let _c = Cleanup(name.clone());
    ok(&["create", &name, "-s", "4K"]);
    ok(&["write", &name, "before"]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let refused = [
        (fifo.clone(), "is a named pipe (FIFO)"),
        ("/dev/null".into(), "is a character device"),
        ("/dev/zero".into(), "is a character device"),
        (socket.clone(), "is a socket"),
        (dir.path().to_path_buf(), "is a directory"),
    ];
    for (path, what) in refused {
        let path = path.to_str().unwrap();
        let args = ["write", &name, "--from", path];
        // Waited on with a deadline: the FIFO's open never returned.
        let mut writer = Running(
            shmipc()
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let out = output_within(&mut writer.0);
        let line = assert_fails(&out, 1, &args);
        assert!(
            line.contains(&format!("`{path}` {what}"))
                || line.contains(&format!("`{path}`: it {what}")),
            "{args:?}: {line}"
        );
        assert_eq!(ok(&["read", &name]), "before\n", "{args:?} wrote");
    }
    // What is read: a file, `<(cmd)`, stdin (`-`, and `/dev/stdin` as a pipe).
    let file = dir.path().join("file");
    std::fs::write(&file, "from a file").unwrap();
    ok(&["write", &name, "--from", file.to_str().unwrap()]);
    assert_eq!(ok(&["read", &name]), "from a file\n");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' write '{name}' --from <(printf 'from a pipe\\0')",
            env!("CARGO_BIN_EXE_shmipc")
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "<(cmd): {out:?}");
    assert_eq!(ok(&["read", &name]), "from a pipe\n");
    for from in ["-", "/dev/stdin"] {
        let args = ["write", &name, "--from", from];
        let out = run_with_stdin(&args, format!("from {from}\0").as_bytes());
        assert_success(&out, &args);
        assert_eq!(ok(&["read", &name]), format!("from {from}\n"));
    }
}

/// The output of a child with piped stderr (and stdout, unless taken) once it
/// exits, waited on at most [`PATIENCE`].
fn output_within(child: &mut std::process::Child) -> std::process::Output {
    use std::io::Read as _;
    let status = wait_exit(child);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // Stdout may be read elsewhere (`spawn_lines`).
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout).unwrap();
    }
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// A `create --hold` whose segment is removed (`shmipc rm`), with or without a
/// new one made under the name since, ends within about a second with one line
/// saying so (exit 1), and leaves the name's new object alone: it held the
/// removed segment, which no one could open any more, until killed, and then (a
/// file-backed one) removed whatever the name had come to name.
#[test]
fn a_held_segment_that_is_removed_ends_the_hold() {
    for remade in [false, true] {
        let name = unique("hold-removed");
        let _c = Cleanup(name.clone());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backing");
        let (mut hold, lines) = spawn_lines(&[
            "create",
            &name,
            "-s",
            "4K",
            "--file",
            file.to_str().unwrap(),
            "--hold",
        ]);
        assert!(next_line(&lines).starts_with("holding segment"));
        // Stopped meanwhile: a look at the name between the `rm` and the new segment
        // would report the removal alone.
        let pid = hold.0.id().to_string();
        let kill = |sig: &str| {
            let st = std::process::Command::new("kill")
                .args([sig, &pid])
                .status();
            assert!(st.is_ok_and(|s| s.success()), "kill {sig} {pid}");
        };
        kill("-STOP");
        ok(&["rm", &name]);
        if remade {
            ok(&["create", &name, "-s", "4K"]);
        }
        kill("-CONT");
        let out = output_within(&mut hold.0);
        let args = ["create", "--hold"];
        let line = assert_fails(&out, 1, &args);
        assert!(
            line.starts_with(&format!(
                "shmipc: segment `{name}` was removed (`shmipc rm {name}`) while this command held it"
            )) && line.contains("another object now has its name") == remade,
            "remade {remade}: {line}"
        );
        assert_eq!(run(&["info", &name]).status.success(), remade);
    }
}

/// Makes a FIFO (mode 0600) at `path`.
fn mkfifo(path: &std::path::Path) {
    rfs::mknodat(
        rfs::CWD,
        path,
        rfs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------
// names as `ls` and `info` show them

/// `ls` shows a name of only blanks, and one with leading or trailing blanks, in
/// quotes (as `ls` does), and aligns its columns by the cells a terminal gives
/// each character (a CJK character or an emoji takes two). Before: a name of one
/// space showed as nothing, and a wide name pushed its row's columns right.
#[test]
fn ls_shows_blank_names_quoted_and_aligns_wide_names() {
    use unicode_width::UnicodeWidthStr;
    // Only blanks, yet this process's own: the pid in binary, as space and
    // no-break space.
    let pid = std::process::id();
    let blank: String = (0..32)
        .rev()
        .skip_while(|b| pid >> b == 0)
        .map(|b| if pid >> b & 1 == 1 { '\u{a0}' } else { ' ' })
        .collect();
    let tag = unique("wide");
    let trailing = format!("{tag}-trailing ");
    let wide = format!("{tag}-漢字🎉");
    let plain = format!("{tag}-plain");
    let names = [
        blank.as_str(),
        trailing.as_str(),
        wide.as_str(),
        plain.as_str(),
    ];
    let _cleanup: Vec<Cleanup> = names.iter().map(|n| Cleanup((*n).to_owned())).collect();
    for name in names {
        ok(&["create", "--size", "1K", "--", name]);
    }
    let listing = ok(&["ls"]);
    let header = listing.lines().next().unwrap();
    let size_end = |line: &str, size: &str| {
        let at = line
            .find(size)
            .unwrap_or_else(|| panic!("no {size} in {line}"));
        line[..at + size.len()].width()
    };
    let column = size_end(header, "SIZE");
    for name in names {
        let shown = if name == plain || name == wide {
            name.to_owned()
        } else {
            format!("'{name}'")
        };
        let row = listing
            .lines()
            .find(|l| l.starts_with(&format!("{shown} ")))
            .unwrap_or_else(|| panic!("{shown:?} not shown in\n{listing}"));
        assert_eq!(size_end(row, "1 KiB"), column, "{row:?} in\n{listing}");
    }
    let info = ok(&["info", "--", &blank]);
    assert!(
        info.starts_with(&format!("name         '{blank}'\n")),
        "{info}"
    );
}

/// `info` and `ls` of another user's link to a backing file (which is not
/// followed) say its size is unknown, not 0 bytes; in JSON it is null.
#[test]
fn the_size_of_another_users_link_is_unknown() {
    let test = "the_size_of_another_users_link_is_unknown";
    if !is_root() {
        return skip(test, "needs root");
    }
    let name = unique("foreign-link");
    let _cleanup = Cleanup(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data");
    std::fs::write(&target, vec![1u8; 5000]).unwrap();
    let made = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(&target)
        .arg(shm_path(&name))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        return skip(
            test,
            "`setpriv` is missing, or nobody cannot make a link in /dev/shm",
        );
    }
    let _unlink = scopeguard(shm_path(&name));
    let info = ok(&["info", &name]);
    let size = info.lines().find(|l| l.starts_with("size ")).unwrap();
    assert!(
        size.contains("unknown") && !size.contains("0 bytes"),
        "{info}"
    );
    let info = json(&ok(&["info", &name, "--json"]));
    assert!(info["size"].is_null(), "{info}");
    let listing = ok(&["ls", "--all"]);
    let row = listing.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(row.contains(" ?  "), "{row}");
}

/// Removes `path` when dropped.
fn scopeguard(path: std::path::PathBuf) -> impl Drop {
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    Unlink(path)
}
