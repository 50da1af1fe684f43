//! End to end through the real binary, in the hidden tiny mode: the harness starts
//! its peer, runs every suite, and writes the documented JSON and an SVG. No timing
//! is asserted: only that it runs, cleans up, and reports what it documents.
#![cfg(target_os = "linux")]

use std::process::Command;

use serde_json::Value;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmipc-bench"))
}

fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn tiny_run_writes_the_documented_json_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let iox_before = leftovers("iox2_");
    let child = bench()
        .args(["--quick", "--tiny", "--only"])
        .arg("floor,pipe,iceoryx2,shmipc-spsc,shmipc-pubsub,shmipc-spsc-blocking,floor-ring,memcpy,segment")
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("== latency"), "{stdout}");
    assert!(stdout.contains("floor probe"), "{stdout}");

    // Every object the run named is gone.
    let prefix = format!("shmipc-bench-{pid}-");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    // iceoryx2's objects too: they carry the run's prefix, not iceoryx2's default
    // (whose global management segment outlives every node).
    let iox_new: Vec<String> = leftovers("iox2_")
        .into_iter()
        .filter(|n| !iox_before.contains(n))
        .collect();
    assert_eq!(
        iox_new,
        Vec::<String>::new(),
        "iceoryx2 objects left behind"
    );

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let machine = doc["machine"].as_object().expect("machine object");
    assert!(machine["rounds"].as_u64().unwrap() >= 5);
    let placement = machine["placement"].as_array().expect("placement array");
    assert!(!placement.is_empty());
    for p in placement {
        let v = p["placement"].as_str().unwrap();
        assert!(v == "near" || v == "far", "{p}");
    }

    let results = doc["results"].as_array().expect("results array");
    let mut seen = std::collections::HashSet::new();
    for r in results {
        let suite = r["suite"].as_str().expect("suite");
        let name = r["name"].as_str().expect("name").to_string();
        let payload = r["payload"].as_u64().expect("integer payload");
        assert!(r["ratio_to_floor"].is_number(), "{r}");
        assert!(r["rounds"].as_u64().unwrap() >= 5, "{r}");
        assert!(r["p99_ns"].is_number(), "{r}");
        match suite {
            "latency" | "segment" => {
                assert!(r["median_ns"].as_f64().unwrap() > 0.0, "{r}");
                assert!(r.get("per_sec").is_none(), "{r}");
            }
            "throughput" => {
                assert!(r["per_sec"].as_f64().unwrap() > 0.0, "{r}");
                assert!(r.get("median_ns").is_none(), "{r}");
            }
            other => panic!("unknown suite {other}"),
        }
        if name.starts_with("shmipc-") && suite != "segment" {
            assert!(r["ratio_to_iceoryx2"].is_number(), "{r}");
        }
        seen.insert((suite.to_string(), name, payload));
    }
    for len in [8u64, 64, 4096, 65536] {
        for name in [
            "floor",
            "pipe",
            "iceoryx2",
            "shmipc-spsc",
            "shmipc-pubsub",
            "shmipc-spsc-blocking",
        ] {
            assert!(
                seen.contains(&("latency".into(), name.into(), len)),
                "latency {name} {len} missing"
            );
        }
    }
    for len in [64u64, 4096, 65536, 1 << 20] {
        for name in ["floor-ring", "iceoryx2", "shmipc-spsc", "memcpy"] {
            assert!(
                seen.contains(&("throughput".into(), name.into(), len)),
                "throughput {name} {len} missing"
            );
        }
    }
    for name in ["shmipc-create", "bare-create", "shmipc-open", "bare-open"] {
        assert!(
            seen.iter().any(|(s, n, _)| s == "segment" && n == name),
            "segment {name} missing"
        );
    }
    // Not asked for: not there.
    assert!(!seen.iter().any(|(_, n, _)| n == "eventfd"));

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("<polyline"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn an_unknown_name_is_a_clear_error() {
    let out = bench().args(["--only", "floor,nope"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\""), "{stderr}");
    assert!(stderr.contains("choose from"), "{stderr}");
    assert!(stderr.contains("iceoryx2"), "{stderr}");
}

#[test]
fn fewer_than_five_rounds_is_refused() {
    let out = bench().args(["--rounds", "3"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn list_names_every_contender() {
    let out = bench().arg("--list").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in [
        "floor",
        "shmipc-spsc",
        "shmipc-pubsub",
        "shmipc-spsc-blocking",
        "iceoryx2",
        "eventfd",
        "unix-socket",
        "pipe",
        "floor-ring",
        "memcpy",
        "shmipc-create",
        "bare-open",
    ] {
        assert!(stdout.contains(name), "{name} missing from\n{stdout}");
    }
}

/// The fanout suite alone: every contender, payload and subscriber count gets a
/// row with the documented keys, every subscriber's checksum matched (or the run
/// fails), and nothing is left in /dev/shm.
#[test]
fn tiny_fanout_writes_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fanout.json");
    let out = bench()
        .args(["--tiny", "--only", "fanout", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fanout"), "{stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = doc["fanout"].as_array().expect("fanout rows");
    assert_eq!(rows.len(), 3 * 4 * 2);
    for r in rows {
        assert_eq!(r["suite"], "fanout");
        for key in [
            "name",
            "payload",
            "subscribers",
            "per_sec",
            "ratio_to_iceoryx2",
            "ratio_to_floor",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(leftovers("fo-"), Vec::<String>::new());
}
