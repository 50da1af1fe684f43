//! rpc across real processes: a server and clients in separate processes, every
//! response matched to its request; the server killed; a client killed.

mod chan_common;

use std::time::Duration;

use chan_common::*;
use shmipc::channel::rpc::{Client, Options, Server};
use shmipc::channel::{CallError, RecvError, SendError};
use shmipc::{Access, Segment};

const ENTRY: &str = "child_entry";
const LIMIT: Duration = Duration::from_secs(60);

/// The server's answer to a request: its bytes reversed.
fn answer(req: &[u8]) -> Vec<u8> {
    req.iter().rev().copied().collect()
}

/// Not a test on its own: the body of the child processes.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).expect("name");
    let count: u64 = std::env::var(COUNT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match role.as_str() {
        "server" => {
            // Serves until killed (or `count` requests, if given).
            let server = Server::open(&name).expect("open server");
            let mut served = 0;
            while count == 0 || served < count {
                let req = server.recv_timeout(LIMIT).expect("request");
                match server.respond_timeout(&req, &answer(&req), LIMIT) {
                    Ok(()) | Err(SendError::Disconnected(())) => {}
                    Err(e) => panic!("respond: {e}"),
                }
                served += 1;
            }
        }
        "client" => {
            let mut client = Client::open(&name).expect("open client");
            assert!(wait_until(LIMIT, || client.server_present()));
            let mut rng = Rng::new(u64::from(std::process::id()));
            for seq in 0..count {
                let len = 16 + (rng.next() % 100) as usize;
                let mut req = vec![0u8; len];
                fill(&mut req, seq);
                let resp = client.call(&req, LIMIT).expect("call");
                assert_eq!(resp, answer(&req), "response to another request");
            }
        }
        "hung-client" => {
            // Sends requests and never reads the responses, until killed.
            let mut client = Client::open(&name).expect("open client");
            loop {
                let _ = client.send_request(b"never read");
                std::thread::yield_now();
            }
        }
        // Loans requests (some dropped unsent, some held across a yield) and reads
        // responses in place, until killed.
        "storm-client" => {
            let mut client = Client::open(&name).expect("open client");
            let mut rng = Rng::new(u64::from(std::process::id()));
            loop {
                let len = 16 + (rng.next() % 40) as usize;
                let Ok(mut loan) = client.loan_request_timeout(len, Duration::from_millis(20))
                else {
                    continue;
                };
                fill(&mut loan, rng.next());
                if rng.next() % 6 == 0 {
                    drop(loan);
                    continue;
                }
                if rng.next() % 3 == 0 {
                    std::thread::yield_now();
                }
                let Ok(id) = loan.send() else { continue };
                if let Ok(r) = client.recv_response(id, Duration::from_millis(20)) {
                    check(&r).expect("intact response");
                }
            }
        }
        // Takes requests and holds up to three while answering them in place,
        // until killed.
        "storm-server" => {
            let server = Server::open(&name).expect("open server");
            let mut rng = Rng::new(u64::from(std::process::id()));
            let mut held = std::collections::VecDeque::new();
            loop {
                match server.recv_timeout(Duration::from_millis(20)) {
                    Ok(req) => {
                        check(&req).expect("intact request");
                        if let Ok(mut loan) =
                            server.loan_response(&req, req.len(), Duration::from_millis(20))
                        {
                            loan.copy_from_slice(&req);
                            let _ = loan.send();
                        }
                        held.push_back(req);
                    }
                    Err(_) => held.clear(),
                }
                while held.len() > (rng.next() % 4) as usize {
                    held.pop_front();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn clients_in_two_processes_get_their_own_answers() {
    let name = Name::new("rpc");
    let n = stress_count(5_000, 100_000);
    // The creator is a plain holder here (of the segment, which keeps the channel
    // alive, on every OS): the server runs in a child.
    let server = Options::new()
        .capacity(16)
        .slot_size(128)
        .create_server(&name.0)
        .unwrap();
    let _holder = Segment::open(&name.0, Access::ReadWrite).unwrap();
    drop(server);
    let srv = Kid::spawn(ENTRY, "server", &name.0, &[(COUNT, (3 * n).to_string())]);
    let kids: Vec<Kid> = (0..2)
        .map(|_| Kid::spawn(ENTRY, "client", &name.0, &[(COUNT, n.to_string())]))
        .collect();
    // And one client here, with pipelined requests, once the server is there.
    let mut client = Client::open(&name.0).unwrap();
    assert!(wait_until(LIMIT, || client.server_present()));
    let mut pending = std::collections::VecDeque::new();
    for seq in 0..n {
        let mut req = vec![0u8; 40];
        fill(&mut req, seq);
        pending.push_back((client.send_request(&req).unwrap(), req));
        if pending.len() == 4 {
            let (id, req) = pending.pop_front().unwrap();
            assert_eq!(client.recv_response(id, LIMIT).unwrap(), answer(&req));
        }
    }
    while let Some((id, req)) = pending.pop_front() {
        assert_eq!(client.recv_response(id, LIMIT).unwrap(), answer(&req));
    }
    for k in kids {
        k.join(LIMIT);
    }
    srv.join(LIMIT);
}

#[test]
fn killed_server_disconnects_clients() {
    let name = Name::new("rpc-kill-srv");
    // A plain holder of the segment keeps the channel alive (on every OS).
    let server = Options::new().create_server(&name.0).unwrap();
    let _holder = Segment::open(&name.0, Access::ReadWrite).unwrap();
    drop(server);
    // The segment lives while the client holds it.
    let srv = Kid::spawn(ENTRY, "server", &name.0, &[]);
    let mut client = Client::open(&name.0).unwrap();
    assert!(wait_until(LIMIT, || client.server_present()));
    assert_eq!(client.call(b"abc", LIMIT).unwrap(), b"cba");
    srv.kill();
    assert!(matches!(
        client.call(b"abc", LIMIT),
        Err(CallError::ServerGone { .. })
    ));
    // A new server is picked up.
    let server = Server::open(&name.0).unwrap();
    let id = client.send_request(b"xyz").unwrap();
    // It first gets the request sent while no server lived (the client has
    // given up on it and drops its answer by id).
    loop {
        let req = server.recv_timeout(LIMIT).unwrap();
        server.respond(&req, &answer(&req)).unwrap();
        if req.id() == id {
            break;
        }
    }
    assert_eq!(client.recv_response(id, LIMIT).unwrap(), b"zyx");
}

#[test]
fn killed_client_does_not_stop_the_server() {
    let name = Name::new("rpc-kill-cli");
    let server = Options::new()
        .capacity(8)
        .responses(2)
        .max_clients(2)
        .create_server(&name.0)
        .unwrap();
    let hung = Kid::spawn(ENTRY, "hung-client", &name.0, &[]);
    // Its responses fill its ring; answering more times out rather than hang.
    let mut answered = 0;
    while answered < 2 {
        let req = server.recv_timeout(LIMIT).unwrap();
        server
            .respond(&req, b"ok")
            .unwrap_or_else(|e| panic!("response {answered} to {req:?}: {e}"));
        answered += 1;
    }
    // A held request holds its slot: answer by its caller after dropping it.
    let req = server.recv_timeout(LIMIT).unwrap().caller();
    assert_eq!(
        server.respond_timeout(req, b"ok", Duration::from_millis(50)),
        Err(SendError::Timeout(()))
    );
    hung.kill();
    // Its place is free again; responses to it are refused.
    assert_eq!(
        server.respond_timeout(req, b"ok", LIMIT),
        Err(SendError::Disconnected(()))
    );
    let mut a = Client::open(&name.0).unwrap();
    let mut b = Client::open(&name.0).unwrap();
    // Drain what the dead client queued.
    while server.try_recv().is_ok() {}
    let ia = a.send_request(b"a").unwrap();
    let ib = b.send_request(b"b").unwrap();
    for _ in 0..2 {
        let req = server.recv_timeout(LIMIT).unwrap();
        let data = answer(&req);
        server.respond(&req, &data).unwrap();
    }
    assert_eq!(b.recv_response(ib, LIMIT).unwrap(), b"b");
    assert_eq!(a.recv_response(ia, LIMIT).unwrap(), b"a");
}

/// A corrupted request dequeue position is reported by the server, never waited
/// on for ever (the class of issue 10's deaf pubsub subscriber).
#[test]
fn corrupt_request_position_is_reported() {
    let name = Name::new("rpc-corrupt");
    let server = Server::create(&name.0, 8, 64).unwrap();
    let mut client = Client::open(&name.0).unwrap();
    client.send_request(b"q").unwrap();
    assert_eq!(server.recv_timeout(LIMIT).unwrap(), b"q");
    let seg = Segment::open(&name.0, Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // 192: the request dequeue position (rpc.rs layout).
    view.atomic_u64(192)
        .unwrap()
        .fetch_add(1 << 62, std::sync::atomic::Ordering::SeqCst);
    let e = server.recv_timeout(LIMIT).unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
}

/// Clients and servers SIGKILLed at random moments, with request loans out,
/// requests held and response loans out: once all are gone and the queue drained,
/// every request slot is free again (a crash never leaks one), and a new server
/// and client talk as before.
#[test]
fn kill_storm_never_leaks_a_request_slot() {
    let name = Name::new("rpc-storm");
    let rounds = stress_count(30, 150);
    let server = Options::new()
        .capacity(8)
        .slot_size(64)
        .max_clients(8)
        .responses(2)
        .create_server(&name.0)
        .unwrap();
    let roles = [
        "storm-server",
        "storm-client",
        "storm-client",
        "storm-client",
    ];
    let spawn = |role: &str| Kid::spawn(ENTRY, role, &name.0, &[]);
    // This client keeps the channel; the first server hands over by leaving.
    let mut me = Client::open(&name.0).unwrap();
    drop(server);
    let mut kids: Vec<Kid> = roles.iter().map(|r| spawn(r)).collect();
    let mut rng = Rng::new(11);
    let mut answered = 0u64;
    for round in 0..rounds {
        assert!(wait_until(LIMIT, || me.server_present()), "no server came");
        // A random moment: after a random number of calls from this client.
        for _ in 0..1 + rng.next() % 10 {
            let mut req = [0u8; 24];
            fill(&mut req, round);
            match me.call(&req, Duration::from_millis(200)) {
                Ok(r) => {
                    assert_eq!(r, req, "another request's response");
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        let k = (rng.next() % roles.len() as u64) as usize;
        // A server is replaced only after the old one is dead (one at a time).
        kids[k] = {
            let old = std::mem::replace(&mut kids[k], Kid(None));
            old.kill();
            spawn(roles[k])
        };
    }
    for kid in kids {
        kid.kill();
    }
    assert!(answered > 0, "no call was answered");
    let server = Server::open(&name.0).unwrap();
    drop(me);
    loop {
        match server.try_recv() {
            Ok(req) => {
                check(&req).expect("intact");
            }
            Err(RecvError::Empty) => break,
            Err(e) => panic!("drain: {e}"),
        }
    }
    assert_eq!(server.free_request_slots(), 8, "request slots leaked");
    let mut client = Client::open(&name.0).unwrap();
    let id = client.send_request(b"after the storm").unwrap();
    let req = server.recv_timeout(LIMIT).unwrap();
    server.respond(&req, &answer(&req)).unwrap();
    drop(req);
    assert_eq!(
        client.recv_response(id, LIMIT).unwrap(),
        answer(b"after the storm")
    );
}

/// A client is told what happened in rpc terms, naming the channel: no response
/// within its timeout, the server gone, a request too large.
#[test]
fn a_client_is_told_in_rpc_terms_what_happened() {
    let name = Name::new("rpc-words");
    let n = &name.0;
    let server = Options::new()
        .capacity(4)
        .slot_size(64)
        .create_server(n)
        .unwrap();
    let _holder = Segment::open(n, Access::ReadWrite).unwrap();
    let mut client = Client::open(n).unwrap();
    // The server takes no request.
    let e = client.call(b"abc", Duration::from_millis(50)).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.starts_with(&format!(
            "no response from the server of `{n}` within 50ms: "
        )),
        "{e}"
    );
    // The queue full (the server takes none): nothing is sent, and the error says
    // so rather than that no response came.
    {
        let other = Name::new("rpc-full");
        let m = &other.0;
        let _server = Options::new()
            .capacity(4)
            .slot_size(64)
            .create_server(m)
            .unwrap();
        let mut client = Client::open(m).unwrap();
        while client.try_send_request(b"q").is_ok() {}
        let full = format!("the request queue of `{m}` stayed full for 20ms: nothing was sent");
        let e = client
            .loan_request_timeout(3, Duration::from_millis(20))
            .err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with(&full), "{e}");
        let e = client.call(b"abc", Duration::from_millis(20)).err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with(&full), "{e}");
    }
    let e = client.call(&[0; 100_000], LIMIT).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.starts_with("a request of 100000 bytes does not fit a slot of "),
        "{e}"
    );
    assert!(e.contains(&format!("`{n}`")), "{e}");
    // Sent while the server lived; it leaves before answering.
    let id = client.send_request(b"q").unwrap();
    drop(server);
    let gone = format!(
        "the server of `{n}` is not running (it left or died, or none has started): start one"
    );
    let e = client.recv_response(id, LIMIT).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with(&gone), "{e}");
    let e = client.call(b"abc", LIMIT).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with(&gone), "{e}");
    // Sends and loans say the same (before: "the receiving side of the channel has
    // gone", in a channel's terms, naming nothing).
    let e = client.send_request(b"abc").err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with(&gone), "{e}");
    let e = client.loan_request(3).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with(&gone), "{e}");
    let e = client.loan_request_timeout(3, LIMIT).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with(&gone), "{e}");
}
