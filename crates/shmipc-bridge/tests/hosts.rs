//! Two hosts joined by shmipc-bridge: each in its own network namespace with its own
//! /dev/shm where permitted (skipped with a message where not), and the main case on
//! loopback too. Real processes: the built `shmipc-bridge`, the `shmipc` CLI, Python.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{feed, numbers, wait_lines, Hosts, DEADLINE};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Bridge A (listening) exporting topic `ta` to `key`, and bridge B (connecting to A)
/// importing `key` into topic `tb`, each with its `extra` arguments; returned once
/// both say they run.
fn export_import(
    h: &Hosts,
    (ta, a_extra): (&str, &[&str]),
    key: &str,
    (tb, b_extra): (&str, &[&str]),
) -> (common::Proc, common::Proc) {
    let export = format!("{ta}={key}");
    let import = format!("{key}={tb}");
    let a = [&["--listen", &h.a.addr, "--export", &export][..], a_extra].concat();
    let b = [&["--connect", &h.a.addr, "--import", &import][..], b_extra].concat();
    let mut ba = h.a.bridge("bridge-a", &s(&a));
    let mut bb = h.b.bridge("bridge-b", &s(&b));
    ba.wait_log(0, &["exporting"]);
    bb.wait_log(0, &["importing"]);
    (ba, bb)
}

/// `seq 1 10000 | shmipc pub news` on A reaches `shmipc sub news --count 10000` on
/// B, all of it, in order; `shmipc info` shows the bridges as subscriber/publisher.
fn main_case(h: &Hosts) {
    let (ta, tb) = (h.a.topic("news"), h.b.topic("news"));
    let (ba, mut bb) = export_import(
        h,
        (&ta, &["--lossless"]),
        "demo/news",
        (&tb, &["--lossless"]),
    );
    let (mut sub, out) = h.b.subscriber(&tb, 10_000);
    let mut publ = h.a.publisher(&ta);
    feed(&mut publ, 1, 10_000);
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    assert_eq!(numbers(&out), (1..=10_000).collect::<Vec<u64>>());
    // B heard A's samples packed, and so withdrew its subscription to the plain key
    // (where A would otherwise put each sample once more, for zenoh's clients).
    bb.wait_log(0, &["send it packed"]);

    let ia = h.a.info(&ta);
    assert!(
        ia.contains(&format!("{} (shmipc-bridge)", ba.child.id())) && ia.contains("1 of "),
        "the exporting bridge should show as a subscriber on A:\n{ia}"
    );
    let ib = h.b.info(&tb);
    assert!(
        ib.contains(&format!("publisher process {}", bb.child.id())),
        "the importing bridge should show as the publisher on B:\n{ib}"
    );
    assert!(ba.log_text().contains("connected"), "{}", ba.log_text());
}

#[test]
fn loopback_pub_to_sub_in_order() {
    main_case(&Hosts::loopback());
}

/// The slowest subscriber's lag on `topic` (`shmipc info --json`'s `max_lag`).
fn max_lag(host: &common::Host, topic: &str) -> Option<u64> {
    let o = host.shmipc(&["info", topic, "--json"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let at = text.find("\"max_lag\": ")? + "\"max_lag\": ".len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Backpressure end to end: with the subscriber on B stopped (SIGSTOP), B's topic
/// fills, the import waits, zenoh and TCP fill, the export waits, and A's topic
/// fills, so the publisher on A waits; let go, the subscriber gets every sample, in
/// order. A bridge that dropped anywhere would never fill A's topic (and lose
/// samples).
#[test]
fn loopback_a_stopped_subscriber_holds_the_publisher_back() {
    const N: u64 = 40_000;
    const CAPACITY: u64 = 16;
    let h = Hosts::loopback();
    let (ta, tb) = (h.a.topic("slow"), h.b.topic("slow"));
    let small = ["--capacity", "16", "--lossless"];
    let (ba, bb) = export_import(&h, (&ta, &small), "demo/slow", (&tb, &small));
    let (mut sub, out) = h.b.subscriber(&tb, N as usize);
    h.b.wait_info(&tb, "1 of ");
    let signal = |sig: &str, pid: u32| {
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid}");
    };
    signal("-STOP", sub.child.id());
    // Lines of 1000 bytes: 40 MB, more than every buffer on the way (TCP's too).
    let mut publ = h.a.publisher(&ta);
    let mut stdin = publ.child.stdin.take().expect("a piped stdin");
    let feeder = std::thread::spawn(move || {
        let pad = "x".repeat(990);
        let mut text = String::new();
        for i in 1..=N {
            text.push_str(&format!("{i:08} {pad}\n"));
        }
        // Blocks while the publisher waits; an error means it exited early.
        let r = stdin.write_all(text.as_bytes());
        drop(stdin);
        r
    });
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while !(max_lag(&h.b, &tb).is_some_and(|l| l + 1 >= CAPACITY)
        && max_lag(&h.a, &ta).is_some_and(|l| l + 1 >= CAPACITY))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the topics never filled: lag on B {:?}, on A {:?} (capacity {CAPACITY})\n{}\n{}",
            max_lag(&h.b, &tb),
            max_lag(&h.a, &ta),
            ba.log_text(),
            bb.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal("-CONT", sub.child.id());
    feeder
        .join()
        .expect("feeder")
        .expect("the publisher read all its input");
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    let got = std::fs::read_to_string(&out).expect("the subscriber's output");
    let mut n = 0u64;
    for (i, line) in (1..=N).zip(got.lines()) {
        assert!(
            line.starts_with(&format!("{i:08} ")),
            "line {i}: {line:.20}"
        );
        n += 1;
    }
    assert_eq!(n, N, "samples received");
    assert!(!bb.log_text().contains("gap:"), "{}", bb.log_text());
}

/// `shmipc rm` of the topics under running bridges (publisher and subscriber gone):
/// the bridges follow the names (to topics they make again), so the next `pub` on
/// A reaches the next `sub` on B; they kept reading and writing the removed topics
/// before, and nothing arrived.
#[test]
fn loopback_removed_topics_are_followed_by_name() {
    let h = Hosts::loopback();
    let (ta, tb) = (h.a.topic("gone"), h.b.topic("gone"));
    let (mut ba, mut bb) = export_import(
        &h,
        (&ta, &["--lossless"]),
        "demo/gone",
        (&tb, &["--lossless"]),
    );
    for (round, from) in [(0, 1u64), (1, 101)] {
        if round == 1 {
            for (host, topic) in [(&h.a, &ta), (&h.b, &tb)] {
                let rm = host.shmipc(&["rm", topic]);
                assert!(rm.status.success(), "rm {topic}: {rm:?}");
            }
            ba.wait_log(0, &["removed", "exporting what its name names now"]);
            bb.wait_log(0, &["removed", "importing into what its name names now"]);
        }
        let (mut sub, out) = h.b.subscriber(&tb, 100);
        h.b.wait_info(&tb, "1 of ");
        let mut publ = h.a.publisher(&ta);
        feed(&mut publ, from, from + 99);
        publ.close_stdin();
        assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
        assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
        assert_eq!(
            numbers(&out),
            (from..from + 100).collect::<Vec<u64>>(),
            "round {round}"
        );
    }
}

/// A bridge that exports and imports one topic (both ways) follows its name once it
/// is removed: its own export does not count as a reader of what it imports, nor its
/// import as a publisher others still use. Then a third bridge's samples reach subs
/// on both hosts, each once, in order (no loop through the new topic).
#[test]
fn loopback_both_ways_bridge_follows_a_removed_topic() {
    let h = Hosts::loopback();
    let (ta, tb, src) = (h.a.topic("bw"), h.b.topic("bw"), h.a.topic("bw-src"));
    let both = |t: &str| {
        s(&[
            "--export",
            &format!("{t}=demo/bw"),
            "--import",
            &format!("demo/bw={t}"),
            "--lossless",
        ])
    };
    let mut ba = h.a.bridge(
        "bridge-a",
        &[s(&["--listen", &h.a.addr]), both(&ta)].concat(),
    );
    let mut bb = h.b.bridge(
        "bridge-b",
        &[
            s(&["--listen", &h.b.addr, "--connect", &h.a.addr]),
            both(&tb),
        ]
        .concat(),
    );
    for b in [&mut ba, &mut bb] {
        b.wait_log(0, &["importing"]);
        b.wait_log(0, &["exporting"]);
    }
    let rm = h.a.shmipc(&["rm", &ta]);
    assert!(rm.status.success(), "rm {ta}: {rm:?}");
    ba.wait_log(0, &["removed", "importing into what its name names now"]);
    ba.wait_log(0, &["removed", "exporting what its name names now"]);
    let (mut sa, out_a) = h.a.subscriber(&ta, 100);
    let (mut sb, out_b) = h.b.subscriber(&tb, 100);
    let mut bc = h.a.bridge(
        "bridge-c",
        &s(&[
            "--connect",
            &h.a.addr,
            "--connect",
            &h.b.addr,
            "--export",
            &format!("{src}=demo/bw"),
            "--lossless",
        ]),
    );
    bc.wait_log(0, &["exporting"]);
    let first = bc.wait_log(0, &["connected"]);
    bc.wait_log(first + 1, &["connected"]);
    // Each sub and its host's bridge export: two readers of each topic.
    h.a.wait_info(&ta, "2 of ");
    h.b.wait_info(&tb, "2 of ");
    let mut publ = h.a.publisher(&src);
    feed(&mut publ, 1, 100);
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    for (sub, out) in [(&mut sa, &out_a), (&mut sb, &out_b)] {
        assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
        assert_eq!(numbers(out), (1..=100).collect::<Vec<u64>>());
    }
}

/// A lossless import waiting for a subscriber with samples in hand (its sub left)
/// when the topic is removed: it follows the name all the same (it waited on the
/// removed topic for ever, holding what the name's check needed), and a new sub
/// gets the rest, in order.
#[test]
fn loopback_waiting_lossless_import_follows_a_removed_topic() {
    let h = Hosts::loopback();
    let (ta, tb) = (h.a.topic("fl"), h.b.topic("fl"));
    let (_ba, mut bb) = export_import(
        &h,
        (&ta, &["--lossless"]),
        "demo/fl",
        (&tb, &["--lossless", "--capacity", "4"]),
    );
    let (mut sub, out) = h.b.subscriber(&tb, 5);
    h.b.wait_info(&tb, "1 of ");
    let mut publ = h.a.publisher(&ta);
    // More than B's ring holds: the import still has samples once the sub is gone.
    feed(&mut publ, 1, 50);
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    assert_eq!(numbers(&out), (1..=5).collect::<Vec<u64>>());
    let rm = h.b.shmipc(&["rm", &tb]);
    assert!(rm.status.success(), "rm {tb}: {rm:?}");
    bb.wait_log(0, &["removed", "importing into what its name names now"]);
    let (mut sub, out) = h.b.subscriber(&tb, 10);
    feed(&mut publ, 51, 100);
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    let got = numbers(&out);
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1) && got[0] > 5,
        "in order, after what the first sub read: {got:?}"
    );
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
}

/// Samples larger than a zenoh batch (64 KiB) travel in fragments and come out of
/// zenoh as several slices, which the import copies one after the other into one
/// loaned chunk: every byte arrives, in order, at the right place.
#[test]
fn loopback_large_samples_arrive_whole() {
    const LEN: usize = 200_000;
    const N: u64 = 12;
    let h = Hosts::loopback();
    let (ta, tb) = (h.a.topic("big"), h.b.topic("big"));
    let big = ["--slot-size", "262144", "--capacity", "8", "--lossless"];
    let (_ba, _bb) = export_import(&h, (&ta, &big), "demo/big", (&tb, &big));
    // Line i: its number, then letters that change along the line and with i.
    let line = |i: u64| -> String {
        let mut l = format!("{i:06}:");
        l.extend((l.len()..LEN).map(|k| (b'a' + ((k as u64 * 7 + i) % 26) as u8) as char));
        l
    };
    let (mut sub, out) = h.b.subscriber(&tb, N as usize);
    let mut publ = h.a.publisher(&ta);
    let text: String = (1..=N).map(|i| line(i) + "\n").collect();
    publ.stdin()
        .write_all(text.as_bytes())
        .expect("write to shmipc pub");
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    let got = std::fs::read_to_string(&out).expect("the subscriber's output");
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), N as usize, "samples received");
    for (i, g) in (1..=N).zip(got) {
        assert!(g == line(i), "sample {i} differs ({} bytes)", g.len());
    }
}

#[test]
fn netns_pub_to_sub_in_order() {
    if let Some(h) = Hosts::namespaces_or_skip("netns_pub_to_sub_in_order") {
        main_case(&h);
    }
}

/// The exporting bridge (host A) is killed mid-stream and started again: the stream
/// resumes, and the importing bridge reports the samples published meanwhile as a gap.
#[test]
fn netns_exporter_restart_resumes_and_reports_the_gap() {
    let Some(h) = Hosts::namespaces_or_skip("netns_exporter_restart_resumes_and_reports_the_gap")
    else {
        return;
    };
    let args = s(&[
        "--listen",
        &h.a.addr,
        "--export",
        "news=demo/news",
        "--lossless",
    ]);
    let mut ba = h.a.bridge("bridge-a", &args);
    let mut bb = h.b.bridge(
        "bridge-b",
        &s(&[
            "--connect",
            &h.a.addr,
            "--import",
            "demo/news=news",
            "--lossless",
        ]),
    );
    ba.wait_log(0, &["exporting"]);
    bb.wait_log(0, &["importing"]);
    let (mut sub, out) = h.b.subscriber("news", 8_000);
    let mut publ = h.a.publisher("news");
    feed(&mut publ, 1, 3_000);
    wait_lines(&out, 3_000);
    ba.kill();
    // Published while no bridge is there: lost, and to be reported.
    feed(&mut publ, 3_001, 5_000);
    h.a.wait_info("news", "5000 published");
    let mut ba2 = h.a.bridge("bridge-a2", &args);
    ba2.wait_log(0, &["export to bridges", "remote_subscribers=true"]);
    feed(&mut publ, 5_001, 10_000);
    publ.close_stdin();
    assert!(sub.wait_exit().success(), "sub: {}", sub.log_text());
    let want: Vec<u64> = (1..=3_000).chain(5_001..=10_000).collect();
    assert_eq!(numbers(&out), want);
    let line = bb.wait_log(0, &["gap", "lost=2000"]);
    let log = bb.log_text();
    let gap = log.lines().nth(line).unwrap_or_default();
    assert!(
        gap.contains("from_seq=3000") && gap.contains("new_origin=true"),
        "{gap}"
    );
}

/// The importing bridge (host B) is killed mid-stream and started again: B's
/// subscriber (never restarted) gets the rest in order; the new bridge logs where it
/// joined the stream, which accounts for exactly what B's subscriber missed.
#[test]
fn netns_importer_restart_resumes() {
    let Some(h) = Hosts::namespaces_or_skip("netns_importer_restart_resumes") else {
        return;
    };
    let args = s(&[
        "--connect",
        &h.a.addr,
        "--import",
        "demo/news=news",
        "--lossless",
    ]);
    let mut ba = h.a.bridge(
        "bridge-a",
        &s(&[
            "--listen",
            &h.a.addr,
            "--export",
            "news=demo/news",
            "--lossless",
        ]),
    );
    let mut bb = h.b.bridge("bridge-b", &args);
    ba.wait_log(0, &["exporting"]);
    bb.wait_log(0, &["importing"]);
    let (mut sub, out) = h.b.subscriber("news", 1_000_000);
    let mut publ = h.a.publisher("news");
    feed(&mut publ, 1, 3_000);
    wait_lines(&out, 3_000);
    // The mark before the kill: A may log the lost subscriber right away.
    let mark = ba.log_text().lines().count();
    bb.kill();
    ba.wait_log(mark, &["export to bridges", "remote_subscribers=false"]);
    feed(&mut publ, 3_001, 5_000);
    let mut bb2 = h.b.bridge("bridge-b2", &args);
    let joined = bb2.wait_log(0, &["stream joined"]);
    let line = bb2
        .log_text()
        .lines()
        .nth(joined)
        .unwrap_or_default()
        .to_owned();
    let seq: u64 = line
        .rsplit("seq=")
        .next()
        .and_then(|x| x.trim().parse().ok())
        .unwrap_or_else(|| panic!("no seq in {line:?}"));
    feed(&mut publ, 5_001, 10_000);
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    let end = std::time::Instant::now() + DEADLINE;
    while numbers_upto_last_full_line(&out).last() != Some(&10_000) {
        assert!(std::time::Instant::now() < end, "B never got 10000");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sub.kill();
    let got = numbers(&out);
    // seq is the topic's number of the sample (0-based): value seq + 1.
    let want: Vec<u64> = (1..=3_000).chain(seq + 1..=10_000).collect();
    assert!(seq >= 3_000, "joined at {seq}, before what B already had");
    assert_eq!(got, want, "joined at seq {seq}");
    eprintln!(
        "importer restart: {} samples in flight were lost",
        seq - 3_000
    );
}

/// The link between the hosts goes down mid-stream (no reset: as a pulled cable) and
/// comes back, with neither bridge restarted: both notice the peer gone (zenoh's lease,
/// shortened here to 1 s), find each other again by themselves, and the stream goes on
/// in order; whatever was in flight when the link went is reported as a gap, to the
/// sample, and nothing published after the bridges saw the peer go is lost (the lossless
/// export holds it in the topic until someone listens again).
#[test]
fn netns_link_drop_reconnects_and_reports_the_gap() {
    let Some(h) = Hosts::namespaces_or_skip("netns_link_drop_reconnects_and_reports_the_gap")
    else {
        return;
    };
    let lease = ["--lossless", "--zenoh", "transport/link/tx/lease=1000"];
    let (mut ba, mut bb) = export_import(&h, ("news", &lease), "demo/news", ("news", &lease));
    let (mut sub, out) = h.b.subscriber("news", 1_000_000);
    let mut publ = h.a.publisher("news");
    feed(&mut publ, 1, 3_000);
    wait_lines(&out, 3_000);
    let (mark_a, mark_b) = (ba.log_text().lines().count(), bb.log_text().lines().count());
    h.set_link(false);
    // In flight, or published before the bridges notice: lost or delivered, each
    // loss to be reported.
    feed(&mut publ, 3_001, 4_000);
    let gone_a = ba.wait_log(mark_a, &["disconnected"]);
    let gone_b = bb.wait_log(mark_b, &["disconnected"]);
    // (zenoh may say so before the peer is gone from the bridge's list)
    ba.wait_log(mark_a, &["export to bridges", "remote_subscribers=false"]);
    feed(&mut publ, 4_001, 6_000);
    h.set_link(true);
    ba.wait_log(gone_a, &["connected"]);
    bb.wait_log(gone_b, &["connected"]);
    feed(&mut publ, 6_001, 10_000);
    publ.close_stdin();
    assert!(publ.wait_exit().success(), "pub: {}", publ.log_text());
    let end = std::time::Instant::now() + DEADLINE;
    while numbers_upto_last_full_line(&out).last() != Some(&10_000) {
        assert!(
            std::time::Instant::now() < end,
            "B never got 10000 after the link came back; bridge B's log:\n{}",
            bb.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sub.kill();
    let got = numbers(&out);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated after the link came back"
    );
    assert_eq!(&got[..3_000], &(1..=3_000).collect::<Vec<u64>>()[..]);
    let missing: Vec<u64> = (1..=10_000)
        .filter(|n| got.binary_search(n).is_err())
        .collect();
    assert!(
        missing.iter().all(|&n| (3_001..=4_000).contains(&n)),
        "lost samples published after the bridges saw the link go: {missing:?}"
    );
    // Every loss is reported, to the sample.
    let reported: u64 = bb
        .log_text()
        .lines()
        .skip(mark_b)
        .filter(|l| l.contains("gap"))
        .map(|l| {
            l.split("lost=")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no lost= in {l:?}"))
        })
        .sum();
    assert_eq!(
        reported,
        missing.len() as u64,
        "bridge B's log:\n{}",
        bb.log_text()
    );
    eprintln!("link drop: {} samples in flight were lost", missing.len());
}

fn numbers_upto_last_full_line(out: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let full = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    full.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Two bridges export and import the same topic both ways; a third puts to the key:
/// each host's subscriber gets every sample once, and nothing loops back.
#[test]
fn netns_both_ways_no_loop() {
    let Some(h) = Hosts::namespaces_or_skip("netns_both_ways_no_loop") else {
        return;
    };
    let both = [
        "--export",
        "news=shmipc/news",
        "--import",
        "shmipc/news=news",
        "--lossless",
    ];
    let mut ba = h.a.bridge(
        "bridge-a",
        &s(&[&["--listen", &h.a.addr][..], &both].concat()),
    );
    let mut bb = h.b.bridge(
        "bridge-b",
        &s(&[&["--listen", &h.b.addr, "--connect", &h.a.addr][..], &both].concat()),
    );
    for b in [&mut ba, &mut bb] {
        b.wait_log(0, &["importing"]);
        b.wait_log(0, &["exporting"]);
    }
    let (mut sa, out_a) = h.a.subscriber("news", 100);
    let (mut sb, out_b) = h.b.subscriber("news", 100);
    let mut bc = h.a.bridge(
        "bridge-c",
        &s(&[
            "--connect",
            &h.a.addr,
            "--connect",
            &h.b.addr,
            "--export",
            "src=shmipc/news",
            "--lossless",
        ]),
    );
    bc.wait_log(0, &["exporting"]);
    let first = bc.wait_log(0, &["connected"]);
    bc.wait_log(first + 1, &["connected"]);
    let mut publ = h.a.publisher("src");
    feed(&mut publ, 1, 100);
    publ.close_stdin();
    assert!(sa.wait_exit().success(), "{}", sa.log_text());
    assert!(sb.wait_exit().success(), "{}", sb.log_text());
    let want: Vec<u64> = (1..=100).collect();
    assert_eq!(numbers(&out_a), want, "host A");
    assert_eq!(numbers(&out_b), want, "host B");
    // Each bridge published exactly the 100 samples on its topic, and exported none.
    for (host, b) in [(&h.a, &ba), (&h.b, &bb)] {
        let info = host.info("news");
        assert!(
            info.contains(" 100 published"),
            "host {}:\n{info}",
            host.label
        );
        assert!(
            !b.log_text().contains("export news -> shmipc/news:"),
            "{}",
            b.log_text()
        );
    }
}

/// A Python program using zenoh's own package on host B receives the samples of a
/// topic exported on host A by key, one zenoh sample per shmipc sample, while a
/// bridge on B imports the same key (packed): both get every sample once, in order.
/// The program's puts arrive on a topic imported on A, and its malformed puts on the
/// bridges' packed key are refused there without harm.
#[test]
fn netns_python_zenoh_client() {
    let python = std::env::var("SHMIPC_BRIDGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import zenoh"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        if std::env::var_os("SHMIPC_REQUIRE_PYTHON").is_some() {
            panic!("{python} cannot import zenoh (pip install eclipse-zenoh==1.10.2)");
        }
        eprintln!("SKIPPED netns_python_zenoh_client: {python} has no zenoh module (pip install eclipse-zenoh)");
        return;
    }
    let Some(h) = Hosts::namespaces_or_skip("netns_python_zenoh_client") else {
        return;
    };
    // A exports `back` too, to the key it imports `back` from: its own exporter
    // token must not stop it from importing the Python client's puts there.
    let mut ba = h.a.bridge(
        "bridge-a",
        &s(&[
            "--listen",
            &h.a.addr,
            "--export",
            "news",
            "--import",
            "shmipc/back",
            "--export",
            "back=shmipc/back",
            "--lossless",
        ]),
    );
    ba.wait_log(0, &["exporting"]);
    ba.wait_log(0, &["importing"]);
    let (mut back, back_out) = h.a.subscriber("back", 10);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zenoh_client.py");
    let py_out = h.b.dir.join("python.out");
    let mut cmd = h.b.command(&python);
    cmd.arg(&script).args([
        "--connect",
        &h.a.addr,
        "--sub",
        "shmipc/news",
        "--count",
        "100",
        "--put",
        "shmipc/back",
        "--puts",
        "10",
        "--garbage",
    ]);
    cmd.stdout(std::fs::File::create(&py_out).expect("python output"))
        .stderr(std::fs::File::create(h.b.dir.join("python.log")).expect("python log"));
    let mut py = common::Proc {
        name: "python zenoh client on host B".into(),
        child: cmd.spawn().expect("start python"),
        log: h.b.dir.join("python.log"),
    };
    py.wait_log(0, &["subscribed"]);
    // Nobody else subscribes to the plain key yet: this is the Python client.
    ba.wait_log(
        0,
        &[
            "export to zenoh clients",
            "key=shmipc/news ",
            "remote_subscribers=true",
        ],
    );
    // B imports every key under shmipc/ (a wildcard: it keeps its plain
    // subscription, so A puts news both ways and B drops the second copies).
    let mut bb = h.b.bridge(
        "bridge-b",
        &s(&[
            "--connect",
            &h.a.addr,
            "--import",
            "shmipc/**=all",
            "--lossless",
        ]),
    );
    bb.wait_log(0, &["importing"]);
    ba.wait_log(
        0,
        &[
            "export to bridges",
            "key=shmipc/news/",
            "remote_subscribers=true",
        ],
    );
    let (mut sb, out_b) = h.b.subscriber("all", 110);
    let mut publ = h.a.publisher("news");
    feed(&mut publ, 1, 100);
    publ.close_stdin();
    let st = py.wait_exit();
    assert!(st.success(), "python: {st}\n{}", py.log_text());
    assert_eq!(numbers(&py_out), (1..=100).collect::<Vec<u64>>());
    assert!(
        py.log_text().contains("100 with a bridge attachment"),
        "{}",
        py.log_text()
    );
    assert!(back.wait_exit().success(), "{}", back.log_text());
    let got = std::fs::read_to_string(&back_out).unwrap_or_default();
    let want: String = (1..=10).map(|i| format!("py-{i}\n")).collect();
    assert_eq!(got, want);
    // B's wildcard import: A's 100 samples once each, in order (the one-by-one
    // copies dropped), and the Python client's 10 puts, in order.
    assert!(sb.wait_exit().success(), "{}", sb.log_text());
    let all = std::fs::read_to_string(&out_b).unwrap_or_default();
    let news: Vec<u64> = all.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(
        news,
        (1..=100).collect::<Vec<u64>>(),
        "host B's bridge:\n{}",
        bb.log_text()
    );
    let py_lines: Vec<&str> = all.lines().filter(|l| l.starts_with("py-")).collect();
    let want: Vec<String> = (1..=10).map(|i| format!("py-{i}")).collect();
    assert_eq!(py_lines, want, "host B's bridge");
    let log = ba.log_text();
    assert!(
        log.contains("malformed packed put"),
        "the cut-short and the too-long record:\n{log}"
    );
    assert!(
        log.contains("without a bridge's attachment"),
        "the put with no attachment:\n{log}"
    );
}
