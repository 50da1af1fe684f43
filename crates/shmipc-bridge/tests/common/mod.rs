//! Test hosts for the bridge: real processes (the built `shmipc-bridge` and `shmipc`
//! binaries, Python), each "host" either a network namespace joined to the other by a
//! veth pair with a private `/dev/shm` (a tmpfs bound over it in each process's own
//! mount namespace), or plain loopback with host-specific topic names.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// Generous: two shared cores, and a debug build of zenoh.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The `shmipc` CLI: `$SHMIPC_CLI`, or the main workspace's debug build (built here
/// once if missing).
pub fn shmipc_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        if let Some(p) = std::env::var_os("SHMIPC_CLI") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "shmipc-cli", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo to build the shmipc CLI");
        assert!(status.success(), "building the shmipc CLI failed");
        root.join("target/debug/shmipc")
    })
}

pub fn bridge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shmipc-bridge")
}

/// A unique small number per test in this process (names, subnets).
pub fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child
            .stdin
            .as_mut()
            .expect("started with a piped stdin")
    }

    /// Closes stdin (the end of the input for `shmipc pub`).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `words` after line
    /// `from`; returns that line's index.
    pub fn wait_log(&mut self, from: usize, words: &[&str]) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.log_text();
            if let Some(i) = text
                .lines()
                .enumerate()
                .skip(from)
                .find(|(_, l)| words.iter().all(|w| l.contains(w)))
                .map(|(i, _)| i)
            {
                return i;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} exited ({st}) before logging {words:?}:\n{text}",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {words:?} in time:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (deadline: [`DEADLINE`]); its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        match self.child.wait_timeout(DEADLINE).expect("wait") {
            Some(st) => st,
            None => panic!(
                "{} did not finish in {DEADLINE:?}; its log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One host: where its processes run.
#[derive(Debug)]
pub struct Host {
    pub label: &'static str,
    /// The network namespace, if any.
    pub netns: Option<String>,
    /// The tmpfs that is this host's /dev/shm (network namespace hosts).
    pub shm: Option<PathBuf>,
    /// Address peers reach this host's bridge at.
    pub addr: String,
    /// Suffix of this host's topic names (loopback hosts share /dev/shm).
    pub suffix: String,
    pub dir: PathBuf,
}

impl Host {
    /// A local topic name on this host.
    pub fn topic(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    /// `program args` as run on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match (&self.netns, &self.shm) {
            (Some(ns), Some(shm)) => {
                // `ip netns exec` gives the process its own mount namespace; a bind of
                // the host's tmpfs over /dev/shm there is private to it.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sh", "-c"])
                    .arg("mount --bind \"$0\" /dev/shm && exec \"$@\"")
                    .arg(shm)
                    .arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    fn spawn(&self, name: &str, mut cmd: Command, stdin: bool, stdout: Option<&Path>) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        let err = fs::File::create(&log).expect("log file");
        cmd.stderr(err)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        match stdout {
            Some(p) => cmd.stdout(fs::File::create(p).expect("output file")),
            None => cmd.stdout(Stdio::null()),
        };
        cmd.env("RUST_LOG", "info,zenoh=warn");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: format!("{name} on host {}", self.label),
            child,
            log,
        }
    }

    /// Starts `shmipc-bridge args` on this host.
    pub fn bridge(&self, name: &str, args: &[String]) -> Proc {
        let mut c = self.command(bridge_bin());
        c.args(args).args(["--stats", "1"]);
        self.spawn(name, c, false, None)
    }

    /// Starts `shmipc pub TOPIC` reading lines from a pipe.
    pub fn publisher(&self, topic: &str) -> Proc {
        let mut c = self.command(shmipc_cli());
        c.args(["pub", topic, "--timeout", "120s"]);
        self.spawn(&format!("pub-{topic}"), c, true, None)
    }

    /// Starts `shmipc sub TOPIC --count N`, its output in a file.
    pub fn subscriber(&self, topic: &str, count: usize) -> (Proc, PathBuf) {
        let out = self.dir.join(format!("sub-{topic}-{}.out", unique()));
        let mut c = self.command(shmipc_cli());
        c.args([
            "sub",
            topic,
            "--count",
            &count.to_string(),
            "--timeout",
            "120s",
        ]);
        (
            self.spawn(&format!("sub-{topic}"), c, false, Some(&out)),
            out,
        )
    }

    /// Runs `shmipc ARGS` to the end.
    pub fn shmipc(&self, args: &[&str]) -> Output {
        let mut c = self.command(shmipc_cli());
        c.args(args);
        c.output().expect("run shmipc")
    }

    /// `shmipc info TOPIC` as text.
    pub fn info(&self, topic: &str) -> String {
        let o = self.shmipc(&["info", topic]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Waits until `shmipc info TOPIC` contains `what`.
    pub fn wait_info(&self, topic: &str, what: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            let info = self.info(topic);
            if info.contains(what) {
                return;
            }
            assert!(
                Instant::now() < end,
                "`shmipc info {topic}` on host {} never said {what:?}:\n{info}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Two hosts: A and B.
#[derive(Debug)]
pub struct Hosts {
    pub a: Host,
    pub b: Host,
    _dir: tempfile::TempDir,
    namespaces: Vec<String>,
    mounts: Vec<PathBuf>,
    /// The veth pair's ends: (namespace, device), A's first (namespace hosts).
    links: Vec<(String, String)>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl Hosts {
    /// Both hosts on loopback, one /dev/shm, topics told apart by a suffix.
    pub fn loopback() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = format!("{}-{}", std::process::id(), unique());
        let host = |label, suffix: String| Host {
            label,
            netns: None,
            shm: None,
            addr: format!("tcp/127.0.0.1:{}", free_port()),
            suffix,
            dir: dir.path().to_owned(),
        };
        Self {
            a: host("A", format!("-a-{id}")),
            b: host("B", format!("-b-{id}")),
            _dir: dir,
            namespaces: Vec::new(),
            mounts: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Two network namespaces joined by a veth pair (10.213.N.1 and .2), each with
    /// its own /dev/shm. `Err` says why they cannot be made here.
    pub fn namespaces() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let n = unique();
        let pid = std::process::id() % 100_000;
        let mut me = Self {
            a: placeholder("A", &dir),
            b: placeholder("B", &dir),
            _dir: dir,
            namespaces: Vec::new(),
            mounts: Vec::new(),
            links: Vec::new(),
        };
        let (na, nb) = (format!("shb-{pid}-{n}-a"), format!("shb-{pid}-{n}-b"));
        let (va, vb) = (format!("shb{pid}x{n}a"), format!("shb{pid}x{n}b"));
        let subnet = format!("10.213.{}", n % 250);
        for ns in [&na, &nb] {
            run(&["ip", "netns", "add", ns])?;
            me.namespaces.push(ns.clone());
        }
        run(&[
            "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
        ])?;
        run(&["ip", "link", "set", &va, "netns", &na])?;
        run(&["ip", "link", "set", &vb, "netns", &nb])?;
        me.links = vec![(na.clone(), va.clone()), (nb.clone(), vb.clone())];
        for (ns, dev, ip) in [(&na, &va, "1"), (&nb, &vb, "2")] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{subnet}.{ip}/24"),
                "dev",
                dev,
            ])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        for (host, ns, ip) in [(&mut me.a, &na, "1"), (&mut me.b, &nb, "2")] {
            let shm = host.dir.join(format!("shm-{}", host.label));
            fs::create_dir_all(&shm).map_err(|e| e.to_string())?;
            run(&[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=256m",
                "tmpfs",
                path_str(&shm),
            ])?;
            me.mounts.push(shm.clone());
            host.netns = Some(ns.clone());
            host.shm = Some(shm);
            host.addr = format!("tcp/{subnet}.{ip}:7447");
            host.suffix = String::new();
        }
        Ok(me)
    }

    /// Takes the link between the hosts down (no carrier: nothing passes and no
    /// connection is reset, as when a cable is pulled) or brings it back up.
    /// Namespace hosts only.
    pub fn set_link(&self, up: bool) {
        assert!(!self.links.is_empty(), "only namespace hosts have a link");
        for (ns, dev) in &self.links {
            let state = if up { "up" } else { "down" };
            run(&["ip", "-n", ns, "link", "set", dev, state]).expect("set the link");
        }
    }

    /// Namespaces where permitted; `None` (after saying why) where not.
    pub fn namespaces_or_skip(test: &str) -> Option<Self> {
        match Self::namespaces() {
            Ok(h) => Some(h),
            Err(e) => {
                if std::env::var_os("SHMIPC_REQUIRE_NETNS").is_some() {
                    panic!("{test}: network namespaces are required here but: {e}");
                }
                eprintln!("SKIPPED {test}: network namespaces are not permitted here ({e})");
                None
            }
        }
    }
}

fn placeholder(label: &'static str, dir: &tempfile::TempDir) -> Host {
    Host {
        label,
        netns: None,
        shm: None,
        addr: String::new(),
        suffix: String::new(),
        dir: dir.path().to_owned(),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Processes are dropped (killed) by the tests before their hosts. Deleting a
        // namespace deletes its end of the veth pair, and so the pair.
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        for m in &self.mounts {
            let _ = run(&["umount", "-l", path_str(m)]);
        }
        // On loopback the topics live in the machine's /dev/shm. The bridges and
        // CLI processes were killed, so their topics are stale (invisible to `ls`,
        // removed by the next create or `gc`): collect them now rather than leave
        // their pages allocated. `gc` never removes a live object of a parallel test.
        if self.namespaces.is_empty() {
            let _ = Command::new(shmipc_cli()).arg("gc").output();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Writes lines `from..=to` (decimal) to a pipe.
pub fn feed(p: &mut Proc, from: u64, to: u64) {
    let mut s = String::new();
    for i in from..=to {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    p.stdin()
        .write_all(s.as_bytes())
        .expect("write to shmipc pub");
    p.stdin().flush().expect("flush");
}

/// The numbers a `shmipc sub` printed.
pub fn numbers(out: &Path) -> Vec<u64> {
    fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l:?}"))
        })
        .collect()
}

/// Waits until the file has at least `n` lines.
pub fn wait_lines(out: &Path, n: usize) {
    let end = Instant::now() + DEADLINE;
    loop {
        let have = fs::read_to_string(out).unwrap_or_default().lines().count();
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} has {have} lines, {n} expected in time",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
