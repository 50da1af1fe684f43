//! `shmipc lock`, `sem` and `event` end to end, and what `ls` / `info` say about
//! sync objects: every test runs the real binary as separate processes. The sync
//! objects are Linux-only for now; elsewhere the verbs must fail in one line.

mod common;

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Write;
    use std::process::{Output, Stdio};

    use super::common::*;

    /// `shmipc lock NAME -- sh -c 'echo locked; read x'`: holds the mutex until its
    /// stdin closes. Returns the child (stdin piped) once it holds the lock.
    fn holder(name: &str) -> Running {
        let mut child = shmipc()
            .args([
                "lock",
                name,
                "--",
                "sh",
                "-c",
                "echo locked; read x || true",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting shmipc lock");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        let child = Running(child);
        assert_eq!(next_line(&lines), "locked");
        child
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn stdout(out: &Output) -> String {
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(name: &str) -> serde_json::Value {
        let info = json(&ok(&["info", name, "--json"]));
        info["state"].clone()
    }

    #[test]
    fn lock_runs_the_command_and_passes_on_its_status() {
        let name = unique("lock-code");
        let _c = Cleanup(name.clone());
        assert_eq!(
            ok(&["lock", &name, "--", "echo", "hello", "-n"]),
            "hello -n\n"
        );
        let out = run(&["lock", &name, "--", "sh", "-c", "exit 7"]);
        assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
        // Killed by a signal: 128 + N, as shells report it.
        let out = run(&["lock", &name, "--", "sh", "-c", "kill -9 $$"]);
        assert_eq!(out.status.code(), Some(128 + 9), "{}", stderr(&out));
        // Without `--`, and with the timeout option.
        assert_eq!(ok(&["lock", "--timeout", "5s", &name, "echo", "x"]), "x\n");
        // A command that cannot be found or run.
        let args = ["lock", name.as_str(), "--", "/nonexistent/command"];
        let line = assert_fails(&run(&args), 127, &args);
        assert!(line.contains("cannot run `/nonexistent/command`"), "{line}");
        // Found out before the mutex is made: nothing is left under a new name.
        let fresh = unique("lock-fresh");
        let _f = Cleanup(fresh.clone());
        for (cmd, code) in [("/nonexistent/command", 127), ("no-such-command-x", 127)] {
            let args = ["lock", fresh.as_str(), "--", cmd];
            let line = assert_fails(&run(&args), code, &args);
            assert!(line.contains(&format!("cannot run `{cmd}`")), "{line}");
            assert!(!left_behind(&fresh), "{cmd}: the mutex was left");
        }
        let dir = tempfile::tempdir().unwrap();
        let dir_path = dir.path().to_str().unwrap();
        let args = ["lock", name.as_str(), "--", dir_path];
        assert_fails(&run(&args), 126, &args);
        // The mutex was created and persists, unlocked, until removed.
        let info = json(&ok(&["info", &name, "--json"]));
        assert_eq!(info["kind"], "mutex");
        assert_eq!(info["persistence"], "until-removed");
        assert_eq!(info["state"]["locked"], false);
        assert_eq!(info["state"]["consistent"], true);
        ok(&["rm", &name]);
        assert!(!left_behind(&name));
    }

    #[test]
    fn concurrent_locks_run_their_commands_one_at_a_time() {
        const RUNS: usize = 4;
        const LINES: usize = 100;
        let name = unique("lock-serial");
        let _c = Cleanup(name.clone());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        // Each critical section appends LINES lines, one write each: without the
        // lock, concurrent runs interleave them.
        let script = format!(
            "i=0; while [ $i -lt {LINES} ]; do echo \"$ID $i\" >> \"$FILE\"; i=$((i+1)); done"
        );
        let children: Vec<Running> = (0..RUNS)
            .map(|id| {
                Running(
                    shmipc()
                        .args(["lock", &name, "--", "sh", "-c", &script])
                        .env("ID", id.to_string())
                        .env("FILE", &file)
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("starting shmipc lock"),
                )
            })
            .collect();
        for mut child in children {
            assert!(wait_exit(&mut child.0).success());
        }
        let log = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), RUNS * LINES, "{log}");
        let mut seen = Vec::new();
        for block in lines.chunks(LINES) {
            let id = block[0].split(' ').next().unwrap();
            for (i, line) in block.iter().enumerate() {
                assert_eq!(
                    *line,
                    format!("{id} {i}"),
                    "interleaved critical sections:\n{log}"
                );
            }
            seen.push(id.to_owned());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), RUNS, "{log}");
    }

    /// `rm` of a mutex a `lock` holds removes the name only (as deleting a flock(1)
    /// lock file): the next `lock` makes a new mutex and runs beside the holder.
    /// `rm` says so on stderr (it said nothing), and says nothing for a free one.
    #[test]
    fn rm_of_a_held_mutex_warns_that_the_next_lock_runs_beside() {
        let name = unique("lock-rm");
        let _c = Cleanup(name.clone());
        let mut held = holder(&name);
        let out = run(&["rm", &name]);
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() == 1
                && err.contains(&format!("mutex `{name}` was locked by a live process"))
                && err.contains("runs beside it"),
            "{err}"
        );
        // As documented: the next lock makes a new mutex and runs at once.
        assert_eq!(
            ok(&["lock", "--timeout", "5s", &name, "--", "echo", "ran"]),
            "ran\n"
        );
        drop(held.0.stdin.take());
        assert!(wait_exit(&mut held.0).success());
        let out = run(&["rm", &name]);
        assert_success(&out, &["rm"]);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether process `pid` has `path` open.
    fn has_open(pid: u32, path: &std::path::Path) -> bool {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
        })
    }

    /// A `sem wait` or `event wait` (without --timeout) whose object is removed
    /// (`shmipc rm`), with or without a new one made under the name and posted or
    /// set, ends with one line saying so (exit 1): it waited for ever on the
    /// removed object, which no post or set through the name could reach.
    #[test]
    fn a_wait_on_a_removed_semaphore_or_event_is_reported() {
        for (verb, create, wake, kind) in [
            ("sem", "create", "post", "semaphore"),
            ("event", "create", "set", "event"),
        ] {
            for remade in [true, false] {
                let name = unique(&format!("{verb}-removed"));
                let _c = Cleanup(name.clone());
                ok(&[verb, &name, create]);
                let mut waiter = Running(
                    shmipc()
                        .args([verb, &name, "wait"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap(),
                );
                let (pid, path) = (
                    waiter.0.id(),
                    std::path::PathBuf::from("/dev/shm").join(&name),
                );
                wait_until("the waiter to open it", || has_open(pid, &path));
                ok(&["rm", &name]);
                if remade {
                    ok(&[verb, &name, create]);
                    ok(&[verb, &name, wake]);
                }
                let status = wait_exit(&mut waiter.0);
                let err = stderr_text(&mut waiter.0);
                assert_eq!(status.code(), Some(1), "{verb} remade {remade}: {err}");
                assert!(
                    err.lines().count() == 1
                        && err.starts_with(&format!(
                            "shmipc: {kind} `{name}` was removed (`shmipc rm {name}`) while this command waited on it"
                        ))
                        && err.contains("another object now has its name") == remade,
                    "{verb} remade {remade}: {err}"
                );
            }
        }
    }

    #[test]
    fn lock_timeout_while_held_and_info_shows_the_holder() {
        let name = unique("lock-held");
        let _c = Cleanup(name.clone());
        let mut held = holder(&name);
        let pid = held.0.id();
        let s = state(&name);
        assert_eq!(s["locked"], true, "{s}");
        assert_eq!(s["owner_process"], pid, "{s}");
        assert_eq!(s["owner_thread"], pid, "{s}");
        assert_eq!(s["owner_alive"], true, "{s}");
        let human = ok(&["info", &name]);
        assert!(
            human.contains(&format!("locked by process {pid}")),
            "{human}"
        );
        assert!(ok(&["ls"])
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("mutex")));

        let args = [
            "lock",
            "--timeout",
            "100ms",
            name.as_str(),
            "--",
            "echo",
            "ran",
        ];
        let out = run(&args);
        let line = assert_fails(&out, 1, &args);
        assert!(line.contains("timed out after 100ms"), "{line}");
        assert!(out.stdout.is_empty(), "the command ran: {}", stdout(&out));

        drop(held.0.stdin.take()); // the holder's command ends
        assert!(wait_exit(&mut held.0).success());
        assert_eq!(state(&name)["locked"], false);
        assert_eq!(
            ok(&["lock", "-t", "1s", &name, "--", "echo", "ran"]),
            "ran\n"
        );
    }

    #[test]
    fn a_holder_killed_with_sigkill_is_reported_and_taken_over() {
        let name = unique("lock-died");
        let _c = Cleanup(name.clone());
        let mut held = holder(&name);
        held.0.kill().unwrap(); // SIGKILL to shmipc, inside the critical section
        held.0.wait().unwrap();
        drop(held.0.stdin.take()); // its orphaned command ends too
        let s = state(&name);
        assert_eq!(s["locked"], true, "{s}");
        assert_eq!(s["owner_alive"], false, "{s}");
        assert!(ok(&["info", &name]).contains("died"));

        // The next locker is told, in one line, and runs its command (told too).
        let args = [
            "lock",
            name.as_str(),
            "--",
            "sh",
            "-c",
            "echo \"[$SHMIPC_OWNER_DIED]\"",
        ];
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "[1]\n");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("shmipc: ") && err.contains("died"), "{err}");

        // It exited 0, so the mutex was marked consistent: the next one is clean.
        let s = state(&name);
        assert_eq!(s["locked"], false, "{s}");
        assert_eq!(s["consistent"], true, "{s}");
        let out = run(&args);
        assert_success(&out, &args);
        assert_eq!(stdout(&out), "[]\n");
    }

    #[test]
    fn sigterm_to_lock_is_passed_on_and_the_mutex_released_cleanly() {
        let name = unique("lock-term");
        let _c = Cleanup(name.clone());
        let mut held = holder(&name);
        let pid = rustix::process::Pid::from_raw(i32::try_from(held.0.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        // The command (sh) got SIGTERM; lock waited for it, released, and exits 128+15.
        let status = wait_exit(&mut held.0);
        assert_eq!(status.code(), Some(128 + 15), "{status:?}");
        let s = state(&name);
        assert_eq!(
            (s["locked"].clone(), s["consistent"].clone()),
            (false.into(), true.into()),
            "{s}"
        );
        let args = ["lock", name.as_str(), "--", "true"];
        assert_success(&run(&args), &args); // no "died" line
    }

    #[test]
    fn a_failing_command_after_owner_death_leaves_it_inconsistent() {
        let name = unique("lock-incons");
        let _c = Cleanup(name.clone());
        let mut held = holder(&name);
        held.0.kill().unwrap();
        held.0.wait().unwrap();
        drop(held.0.stdin.take());
        let out = run(&["lock", &name, "--", "false"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(state(&name)["consistent"], false);
        let out = run(&["lock", &name, "--", "true"]);
        assert!(out.status.success());
        assert!(
            stderr(&out).contains("died"),
            "told again: {}",
            stderr(&out)
        );
        assert_eq!(state(&name)["consistent"], true);
    }

    #[test]
    fn semaphore_create_post_wait_and_timeout() {
        let name = unique("sem");
        let _c = Cleanup(name.clone());
        assert!(ok(&["sem", &name, "create", "--initial", "1", "--max", "2"]).contains("created"));
        let s = state(&name);
        assert_eq!((s["value"].as_u64(), s["max"].as_u64()), (Some(1), Some(2)));
        ok(&["sem", &name, "wait"]);
        let args = ["sem", name.as_str(), "wait", "--timeout", "50ms"];
        assert!(assert_fails(&run(&args), 1, &args).contains("timed out"));
        ok(&["sem", &name, "post"]);
        ok(&["sem", &name, "post"]);
        let args = ["sem", name.as_str(), "post"];
        assert!(assert_fails(&run(&args), 1, &args).contains("maximum"));
        assert_eq!(state(&name)["value"], 2);
        ok(&["sem", &name, "wait", "-t", "1s"]);
        ok(&["sem", &name, "wait"]);
        assert_eq!(state(&name)["value"], 0);

        // A waiter in another process is released by a post.
        let mut waiter = Running(
            shmipc()
                .args(["sem", &name, "wait"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        ok(&["sem", &name, "post"]);
        assert!(wait_exit(&mut waiter.0).success());
        assert_eq!(state(&name)["value"], 0);

        let args = ["sem", name.as_str(), "create"];
        assert!(assert_fails(&run(&args), 1, &args).contains("exists"));
        let args = [
            "sem",
            name.as_str(),
            "create",
            "--initial",
            "3",
            "--max",
            "2",
        ];
        // Values nothing can be made with: a wrong command line (status 2).
        assert!(assert_fails(&run(&args), 2, &args).contains("exceeds the maximum"));
        ok(&["rm", &name]);
        assert!(!left_behind(&name));
    }

    #[test]
    fn manual_event_releases_every_waiter_and_stays_set() {
        let name = unique("event");
        let _c = Cleanup(name.clone());
        assert!(ok(&["event", &name, "create"]).contains("manual-reset"));
        assert_eq!(
            state(&name),
            serde_json::json!({"set": false, "reset": "manual"})
        );
        let args = ["event", name.as_str(), "wait", "--timeout", "50ms"];
        assert!(assert_fails(&run(&args), 1, &args).contains("timed out"));
        let mut waiters: Vec<Running> = (0..2)
            .map(|_| {
                Running(
                    shmipc()
                        .args(["event", &name, "wait"])
                        .stdin(Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        ok(&["event", &name, "set"]);
        for w in &mut waiters {
            assert!(wait_exit(&mut w.0).success());
        }
        ok(&["event", &name, "wait", "-t", "1s"]); // still set
        assert_eq!(state(&name)["set"], true);
        ok(&["event", &name, "reset"]);
        assert_eq!(state(&name)["set"], false);
        assert_fails(&run(&args), 1, &args);
    }

    #[test]
    fn auto_event_releases_one_waiter_and_resets() {
        let name = unique("event-auto");
        let _c = Cleanup(name.clone());
        assert!(ok(&["event", &name, "create", "--auto"]).contains("auto-reset"));
        ok(&["event", &name, "set"]);
        assert_eq!(
            state(&name),
            serde_json::json!({"set": true, "reset": "auto"})
        );
        ok(&["event", &name, "wait"]);
        assert_eq!(state(&name)["set"], false);
        let args = ["event", name.as_str(), "wait", "--timeout", "50ms"];
        assert!(assert_fails(&run(&args), 1, &args).contains("timed out"));
        ok(&["rm", &name]);
        assert!(!left_behind(&name));
    }

    #[test]
    fn wrong_kinds_and_missing_objects_fail_in_one_line() {
        let (m, s, e, p, missing) = (
            unique("kind-m"),
            unique("kind-s"),
            unique("kind-e"),
            unique("kind-p"),
            unique("kind-missing"),
        );
        let _c: Vec<Cleanup> = [&m, &s, &e, &p, &missing]
            .iter()
            .map(|n| Cleanup((*n).clone()))
            .collect();
        ok(&["lock", &m, "--", "true"]);
        ok(&["sem", &s, "create"]);
        ok(&["event", &e, "create"]);
        ok(&["create", &p, "--size", "4K"]);
        let cases: [(&[&str], i32, &str); 9] = [
            (&["sem", &m, "post"], 1, "is a mutex, not a semaphore"),
            (
                &["sem", &e, "wait", "-t", "1s"],
                1,
                "is an event, not a semaphore",
            ),
            (&["event", &s, "set"], 1, "is a semaphore, not an event"),
            (
                &["lock", &s, "--", "true"],
                1,
                "is a semaphore, not a mutex",
            ),
            (&["event", &p, "set"], 1, "plain segment"),
            (&["sem", &missing, "post"], 1, "create it first"),
            (&["event", &missing, "wait"], 1, "create it first"),
            (&["event", &e, "create"], 1, "exists"),
            (&["sem", &m, "create"], 1, "exists"),
        ];
        for (args, code, needle) in cases {
            let line = assert_fails(&run(args), code, args);
            assert!(line.contains(needle), "{args:?}: {line}");
        }
        assert!(!left_behind(&missing));
        // Nothing was changed by the refused commands.
        let list = json(&ok(&["ls", "--json"]));
        let kind_of = |name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name)
                .unwrap_or_else(|| panic!("{name} not listed: {list}"))["kind"]
                .clone()
        };
        assert_eq!(kind_of(&m), "mutex");
        assert_eq!(kind_of(&s), "semaphore");
        assert_eq!(kind_of(&e), "event");
        assert_eq!(kind_of(&p), "segment");
        let info = json(&ok(&["info", &p, "--json"]));
        assert_eq!(info["kind"], "segment");
        assert_eq!(info["state"], serde_json::Value::Null);
        ok(&["rm", &m, &s, &e, &p]);
    }

    #[test]
    fn help_documents_the_sync_verbs() {
        let top = ok(&["--help"]);
        for verb in ["lock", "sem", "event"] {
            assert!(top.contains(verb), "--help lacks {verb}");
        }
        let lock = ok(&["lock", "--help"]);
        assert!(
            lock.contains("128+N") && lock.contains("SHMIPC_OWNER_DIED"),
            "{lock}"
        );
        let info = ok(&["info", "--help"]);
        assert!(
            info.contains("  kind ") && info.contains("  state "),
            "{info}"
        );
        assert!(ok(&["sem", "--help"]).contains("shmipc rm NAME"));
        assert!(ok(&["event", "--help"]).contains("--auto"));
        let _ = std::io::stdout().flush();
    }
}

// Windows has the objects (tests/windows.rs: `lock` works, `sem`/`event create`
// explain that a kernel object cannot outlive the CLI process).
#[cfg(not(any(target_os = "linux", windows)))]
#[test]
fn sync_verbs_say_unsupported_in_one_line() {
    use common::*;
    let name = unique("unsupported");
    let _c = Cleanup(name.clone());
    for args in [
        vec!["sem", name.as_str(), "create"],
        vec!["event", name.as_str(), "create"],
        vec!["lock", name.as_str(), "--", "true"],
    ] {
        let line = assert_fails(&run(&args), 1, &args);
        assert!(line.contains("not supported"), "{args:?}: {line}");
    }
}
