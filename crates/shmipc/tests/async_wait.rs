//! Async receives and the WaitSet across real processes: a child (this test binary
//! re-run with a role) sends, the parent awaits on a current-thread tokio runtime.
//! The same tests run under Wine (where the reactor waits on the words' doorbells:
//! see `sys/wait/reactor.rs`).
//!
//! No sleeping to wait: where a receive or lock must be pending when the peer acts,
//! the parent polls it once (pending) before it tells the peer to act; where a
//! stream must run dry now and then, the child stops at fixed points until the
//! parent, having drained it and dropped a pending receive, says "more".

mod common;

use std::time::Duration;

use common::{arg, hear_exactly, role, say, unique_name, Peer};
use shmipc::channel::spsc::{Consumer, Producer};
use shmipc::channel::RecvError;
use shmipc::WaitSet;

const CAP: usize = 8;
const SLOT: usize = 64;

/// Child roles: open the producer of `NAME`, then act.
fn child() -> bool {
    let Some(role) = role() else { return false };
    let name = arg("NAME");
    if let Some(r) = mutex_child(&role, &name) {
        return r;
    }
    let mut p = Producer::open(&name).expect("open producer");
    match role.as_str() {
        // Tell the parent we are attached, wait for its go, pause, send one.
        "send-later" => {
            say("ready");
            hear_exactly("go");
            p.send(b"hello").expect("send");
            hear_exactly("bye");
        }
        // Send COUNT numbered messages; after each stop point (see `stops_after`)
        // wait for the parent's "more" (it drains the ring and drops a pending
        // receive meanwhile).
        "stream" => {
            let n: u64 = arg("COUNT").parse().unwrap();
            say("ready");
            for i in 0..n {
                p.send(&i.to_le_bytes()).expect("send");
                if stops_after(i, n) {
                    hear_exactly("more");
                }
            }
            hear_exactly("bye");
        }
        // Attach and wait to be killed.
        "idle" => {
            say("ready");
            let _ = common::hear();
        }
        other => panic!("unknown role {other}"),
    }
    true
}

/// Whether the streaming child stops after message `i` of `n` until told "more".
fn stops_after(i: u64, n: u64) -> bool {
    i % 23 == 0 && i + 1 < n
}

#[tokio::test(flavor = "current_thread")]
async fn recv_async_returns_a_later_message_while_a_timer_ticks() {
    if child() {
        return;
    }
    let name = unique_name("async-later");
    let mut c = Consumer::create(&name, CAP, SLOT).unwrap();
    let mut peer = Peer::role(
        "recv_async_returns_a_later_message_while_a_timer_ticks",
        "send-later",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let mut recv = std::pin::pin!(c.recv_async());
    // The receive is pending (asleep) before the child is told to send.
    assert!(poll_once(recv.as_mut()).await.is_none(), "nothing sent yet");
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut ticks = 0u32;
    // The timer ticks while the receive is pending on the same thread.
    while ticks < 3 {
        tokio::select! {
            _ = ticker.tick() => ticks += 1,
            r = recv.as_mut() => panic!("a receive completed before anything was sent: {}", r.is_ok()),
        }
    }
    peer.send("go");
    let got = loop {
        tokio::select! {
            _ = ticker.tick() => ticks += 1,
            r = recv.as_mut() => break r.map(|s| s.to_vec()),
        }
    };
    assert_eq!(got.unwrap(), b"hello");
    // The runtime ran the timer while the receive waited.
    assert!(ticks >= 1);
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn select_over_three_channels_picks_the_one_written() {
    if child() {
        return;
    }
    let names: Vec<String> = (0..3)
        .map(|i| unique_name(&format!("async-sel{i}")))
        .collect();
    let mut cs: Vec<Consumer> = names
        .iter()
        .map(|n| Consumer::create(n, CAP, SLOT).unwrap())
        .collect();
    let mut peer = Peer::role(
        "select_over_three_channels_picks_the_one_written",
        "send-later",
        &[("NAME", &names[1])],
    );
    peer.expect("ready");
    let [a, b, c] = &mut cs[..] else {
        unreachable!()
    };
    let mut pick = std::pin::pin!(async {
        tokio::select! {
            r = a.recv_async() => (0, r.map(|s| s.to_vec())),
            r = b.recv_async() => (1, r.map(|s| s.to_vec())),
            r = c.recv_async() => (2, r.map(|s| s.to_vec())),
        }
    });
    // All three receives are pending before the child is told to send.
    assert!(poll_once(pick.as_mut()).await.is_none(), "nothing sent yet");
    peer.send("go");
    let (which, data) = pick.await;
    assert_eq!(which, 1);
    assert_eq!(data.unwrap(), b"hello");
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_pending_receives_loses_nothing() {
    if child() {
        return;
    }
    const N: u64 = 3000;
    let name = unique_name("async-cancel");
    let mut c = Consumer::create(&name, CAP, SLOT).unwrap();
    let mut peer = Peer::role(
        "dropping_pending_receives_loses_nothing",
        "stream",
        &[("NAME", &name), ("COUNT", &N.to_string())],
    );
    peer.expect("ready");
    let mut next = 0u64;
    let mut cancelled = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while next < N {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Race each receive against a timer of 0-2 ms (tokio's timer ticks in
        // milliseconds).
        let pause = Duration::from_micros(rng % 3000);
        let mut got = None;
        tokio::select! {
            r = c.recv_async() => {
                let s = r.expect("recv");
                got = Some(u64::from_le_bytes(s[..8].try_into().unwrap()));
            }
            () = tokio::time::sleep(pause) => cancelled += 1,
        }
        let Some(v) = got else { continue };
        assert_eq!(v, next, "a message was lost or reordered");
        next += 1;
        if stops_after(v, N) {
            // The child sends nothing until it hears "more": a receive now is
            // pending; drop it so, then let the child go on.
            {
                let mut f = std::pin::pin!(c.recv_async());
                assert!(poll_once(f.as_mut()).await.is_none(), "the ring is drained");
            }
            cancelled += 1;
            peer.send("more");
        }
    }
    eprintln!("{N} received in order, {cancelled} receives dropped pending");
    assert!(
        cancelled > 0,
        "no receive was dropped pending: the test tested nothing"
    );
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn a_killed_producer_gives_disconnected() {
    if child() {
        return;
    }
    let name = unique_name("async-kill");
    let mut c = Consumer::create(&name, CAP, SLOT).unwrap();
    let mut peer = Peer::role(
        "a_killed_producer_gives_disconnected",
        "idle",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let recv = c.recv_async();
    let kill = async {
        tokio::task::yield_now().await;
        peer.kill();
        std::future::pending::<()>().await;
    };
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            r = recv => r.map(|s| s.len()),
            () = kill => unreachable!(),
        }
    })
    .await
    .expect("no Disconnected within 30 s");
    assert!(matches!(r, Err(RecvError::Disconnected)), "{r:?}");
}

#[test]
fn a_wait_set_over_1000_channels_wakes_for_the_one_written() {
    if child() {
        return;
    }
    const N: usize = 1000;
    const HIT: usize = 737;
    let base = unique_name("ws");
    let names: Vec<String> = (0..N).map(|i| format!("{base}-{i}")).collect();
    let mut cs: Vec<Consumer> = names
        .iter()
        .map(|n| Consumer::create(n, 2, SLOT).unwrap())
        .collect();
    let mut set = WaitSet::new();
    {
        let mut members: Vec<&mut dyn shmipc::Waitable> = cs
            .iter_mut()
            .map(|c| c as &mut dyn shmipc::Waitable)
            .collect();
        // Nothing written yet: a short wait times out with nobody ready.
        assert!(set
            .wait(&mut members, Some(Duration::from_millis(20)))
            .is_empty());
    }
    let mut peer = Peer::role(
        "a_wait_set_over_1000_channels_wakes_for_the_one_written",
        "send-later",
        &[("NAME", &names[HIT])],
    );
    peer.expect("ready");
    peer.send("go");
    let ready = {
        let mut members: Vec<&mut dyn shmipc::Waitable> = cs
            .iter_mut()
            .map(|c| c as &mut dyn shmipc::Waitable)
            .collect();
        set.wait(&mut members, Some(Duration::from_secs(30)))
            .to_vec()
    };
    assert_eq!(ready, vec![HIT]);
    assert_eq!(&*cs[HIT].try_recv().unwrap(), b"hello");
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn semaphore_and_event_waits_as_futures() {
    use shmipc::sync::{EventReset, NamedEvent, NamedSemaphore};
    if role().is_some() {
        return;
    }
    let sname = unique_name("async-sem");
    let ename = unique_name("async-ev");
    let (sem, _) = NamedSemaphore::create_or_open(&sname, 0, 10).unwrap();
    let (ev, _) = NamedEvent::create_or_open(&ename, EventReset::Auto, false).unwrap();
    let s2 = NamedSemaphore::open(&sname).unwrap();
    let e2 = NamedEvent::open(&ename).unwrap();
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        gone.recv().unwrap();
        s2.post().unwrap();
        gone.recv().unwrap();
        e2.set();
    });
    // Each wait is pending before the other thread is told to post / set.
    let mut w = std::pin::pin!(sem.wait_async());
    assert!(poll_once(w.as_mut()).await.is_none(), "nothing posted yet");
    go.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), w)
        .await
        .expect("semaphore");
    let mut w = std::pin::pin!(ev.wait_async());
    assert!(poll_once(w.as_mut()).await.is_none(), "not set yet");
    go.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), w)
        .await
        .expect("event");
    assert!(!ev.is_set(), "auto reset: the wait took it");
    t.join().unwrap();
}

/// Polls `fut` once: `Some` if it finished, `None` if it is pending (its waker is
/// registered, so a later event wakes the task that awaits it next).
async fn poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| {
        let mut f = fut.take().expect("polled once");
        std::task::Poll::Ready(match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// Mutex roles.
fn mutex_child(role: &str, name: &str) -> Option<bool> {
    use shmipc::NamedMutex;
    match role {
        // On "lock": take the lock, say "held", and hold it until "release"; then
        // say "released". Until "bye".
        "mutex-churn" => {
            let m = NamedMutex::open(name).expect("open mutex");
            say("ready");
            loop {
                match common::hear().as_deref() {
                    Some("lock") => {
                        let g = m.lock().expect("lock");
                        say("held");
                        hear_exactly("release");
                        drop(g);
                        say("released");
                    }
                    Some("bye") | None => break,
                    Some(other) => panic!("mutex-churn: unexpected {other:?}"),
                }
            }
        }
        // Take the lock and wait to be killed holding it.
        "mutex-hold" => {
            let m = NamedMutex::open(name).expect("open mutex");
            let _g = m.lock().expect("lock");
            say("ready");
            let _ = common::hear();
        }
        // Publish one message on a pubsub topic after the parent's go.
        "publish-later" => {
            let mut p = shmipc::channel::pubsub::Publisher::open(name).expect("open publisher");
            say("ready");
            hear_exactly("go");
            p.send(b"shmipc sub").expect("publish");
            hear_exactly("bye");
        }
        // Publish COUNT numbered messages (block mode: none lost), stopping as
        // "stream" does.
        "pubsub-stream" => {
            let mut p = shmipc::channel::pubsub::Publisher::open(name).expect("open publisher");
            let n: u64 = arg("COUNT").parse().unwrap();
            say("ready");
            for i in 0..n {
                p.send(&i.to_le_bytes()).expect("publish");
                if stops_after(i, n) {
                    hear_exactly("more");
                }
            }
            hear_exactly("bye");
        }
        // Subscribe; after the parent's go, count messages until Disconnected.
        "pubsub-drain" => {
            let sub = shmipc::channel::pubsub::Subscriber::open(name).expect("open subscriber");
            say("ready");
            hear_exactly("go");
            let mut n = 0u32;
            loop {
                match sub.recv_timeout(Duration::from_secs(30)) {
                    Ok(_) => n += 1,
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            say(&format!("got {n}"));
        }
        // mpmc: send one message after the parent's go.
        "mpmc-send-later" => {
            let mut p = shmipc::channel::mpmc::Producer::open(name).expect("open mpmc");
            say("ready");
            hear_exactly("go");
            p.send(b"mpmc").expect("send");
            hear_exactly("bye");
        }
        // rpc: answer one request after the parent's go.
        "rpc-server" => {
            let srv = shmipc::channel::rpc::Server::create(name, CAP, SLOT).expect("create server");
            say("ready");
            let req = srv.recv().expect("request");
            hear_exactly("go");
            let mut answer = req.to_vec();
            answer.reverse();
            srv.respond(&req, &answer).expect("respond");
            hear_exactly("bye");
        }
        // Typed spsc of u64: send 42 after the parent's go.
        "typed-send-later" => {
            let mut p = shmipc::channel::spsc::TypedProducer::<u64>::open(name).expect("open");
            say("ready");
            hear_exactly("go");
            p.send(42).expect("send");
            hear_exactly("bye");
        }
        // Typed spsc of u64: after the parent's go, sum everything until
        // Disconnected.
        "typed-drain" => {
            let mut c = shmipc::channel::spsc::TypedConsumer::<u64>::open(name).expect("open");
            say("ready");
            hear_exactly("go");
            let (mut n, mut sum) = (0u32, 0u64);
            loop {
                match c.recv_timeout(Duration::from_secs(30)) {
                    Ok(v) => {
                        n += 1;
                        sum += v;
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            say(&format!("got {n} {sum}"));
        }
        // spsc: drain everything after the parent's go, until Disconnected.
        "spsc-drain" => {
            let mut c = Consumer::open(name).expect("open consumer");
            say("ready");
            hear_exactly("go");
            let mut n = 0u32;
            loop {
                match c.recv_timeout(Duration::from_secs(30)) {
                    Ok(_) => n += 1,
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            say(&format!("got {n}"));
        }
        _ => return None,
    }
    Some(true)
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_pending_locks_leaks_nothing() {
    use shmipc::NamedMutex;
    if child() {
        return;
    }
    let name = unique_name("async-mutex");
    let (m, _) = NamedMutex::create_or_open(&name).unwrap();
    let mut peer = Peer::role(
        "dropping_pending_locks_leaks_nothing",
        "mutex-churn",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let within = Duration::from_secs(30);
    let mut cancelled = [0u32; 3];
    for round in 0..150u32 {
        // The child holds the lock: every lock future below is pending when polled.
        peer.send("lock");
        peer.expect("held");
        match round % 3 {
            // Dropped asleep, while the lock is held; then the lock is free for us.
            0 => {
                {
                    let mut f = std::pin::pin!(m.lock_async());
                    assert!(poll_once(f.as_mut()).await.is_none(), "the child holds it");
                }
                peer.send("release");
                peer.expect("released");
                let g = tokio::time::timeout(within, m.lock_async())
                    .await
                    .expect("no lock within 30 s");
                drop(g.expect("lock"));
            }
            // Dropped after the unlock woke it, unpolled: it must not keep the
            // lock or its wake-up.
            1 => {
                let mut f = Box::pin(m.lock_async());
                assert!(poll_once(f.as_mut()).await.is_none(), "the child holds it");
                peer.send("release");
                peer.expect("released");
                drop(f);
                drop(m.try_lock().expect("a dropped lock future kept the lock"));
            }
            // Two pending; the first is dropped after the unlock: the second must
            // still get the lock (a wake-one spent on the first is passed on).
            _ => {
                let mut a = Box::pin(m.lock_async());
                let mut b = Box::pin(m.lock_async());
                assert!(poll_once(a.as_mut()).await.is_none(), "the child holds it");
                assert!(poll_once(b.as_mut()).await.is_none(), "the child holds it");
                peer.send("release");
                peer.expect("released");
                drop(a);
                let g = tokio::time::timeout(within, b)
                    .await
                    .expect("the second lock future was never woken");
                drop(g.expect("lock"));
            }
        }
        cancelled[(round % 3) as usize] += 1;
    }
    // No dropped future left the lock held.
    drop(m.try_lock().expect("the lock is free at the end"));
    eprintln!("lock futures dropped: {cancelled:?} (asleep, woken, one of two)");
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn a_killed_holder_gives_owner_died() {
    use shmipc::sync::LockError;
    use shmipc::NamedMutex;
    if child() {
        return;
    }
    let name = unique_name("async-owner");
    let (m, _) = NamedMutex::create_or_open(&name).unwrap();
    let mut peer = Peer::role(
        "a_killed_holder_gives_owner_died",
        "mutex-hold",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let lock = m.lock_async();
    let kill = async {
        tokio::task::yield_now().await;
        peer.kill();
        std::future::pending::<()>().await;
    };
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            r = lock => r,
            () = kill => unreachable!(),
        }
    })
    .await
    .expect("no OwnerDied within 30 s");
    match r {
        Err(LockError::OwnerDied(g)) => g.mark_consistent(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pubsub_recv_async_gets_a_later_message() {
    use shmipc::channel::pubsub::Options;
    if child() {
        return;
    }
    let name = unique_name("async-pubsub");
    let sub = Options::default().create_or_open_subscriber(&name).unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut peer = Peer::role(
        "pubsub_recv_async_gets_a_later_message",
        "publish-later",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut ticks = 0u32;
    let mut recv = std::pin::pin!(sub.recv_async());
    assert!(poll_once(recv.as_mut()).await.is_none(), "nothing sent yet");
    // The timer ticks while the receive is pending on the same thread.
    while ticks < 3 {
        tokio::select! {
            _ = ticker.tick() => ticks += 1,
            r = recv.as_mut() => panic!("a receive completed before anything was sent: {}", r.is_ok()),
        }
    }
    peer.send("go");
    let msg = loop {
        tokio::select! {
            _ = ticker.tick() => ticks += 1,
            r = recv.as_mut() => break r.expect("recv"),
        }
    };
    assert_eq!(&msg[..], b"shmipc sub");
    assert_eq!(msg.lost(), 0);
    assert_eq!(msg.seq(), 0);
    drop(msg);
    assert_eq!(sub.held(), 0, "the sample's hold is released with it");
    assert!(ticks >= 1);
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn mpmc_recv_async_gets_a_later_message() {
    if child() {
        return;
    }
    let name = unique_name("async-mpmc");
    let c = shmipc::channel::mpmc::Consumer::create(&name, CAP, SLOT).unwrap();
    let mut peer = Peer::role(
        "mpmc_recv_async_gets_a_later_message",
        "mpmc-send-later",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let mut recv = std::pin::pin!(c.recv_async());
    assert!(poll_once(recv.as_mut()).await.is_none(), "nothing sent yet");
    peer.send("go");
    let got = tokio::time::timeout(Duration::from_secs(30), recv)
        .await
        .expect("no message within 30 s");
    assert_eq!(got.unwrap(), b"mpmc");
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn rpc_response_async() {
    use shmipc::channel::rpc::Client;
    if child() {
        return;
    }
    let name = unique_name("async-rpc");
    // The child creates the channel and serves.
    let mut peer = Peer::role("rpc_response_async", "rpc-server", &[("NAME", &name)]);
    peer.expect("ready");
    let mut client = Client::open(&name).unwrap();
    let id = client.send_request(b"abc").unwrap();
    let mut resp = std::pin::pin!(client.recv_response_async(id));
    assert!(poll_once(resp.as_mut()).await.is_none(), "not answered yet");
    peer.send("go");
    let got = tokio::time::timeout(Duration::from_secs(30), resp)
        .await
        .expect("no response within 30 s");
    assert_eq!(got.unwrap(), b"cba");
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn spsc_send_async_waits_for_room() {
    if child() {
        return;
    }
    let name = unique_name("async-full");
    let mut p = Producer::create(&name, 2, SLOT).unwrap();
    let mut peer = Peer::role(
        "spsc_send_async_waits_for_room",
        "spsc-drain",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let mut sent = 0u32;
    while p.try_send(b"x").is_ok() {
        sent += 1;
    }
    peer.send("go");
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(30), p.send_async(b"y"))
            .await
            .expect("no room within 30 s")
            .unwrap();
        sent += 1;
    }
    drop(p);
    assert_eq!(peer.expect("got"), sent.to_string());
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn pubsub_dropping_pending_receives_loses_nothing_and_holds_nothing() {
    use shmipc::channel::pubsub::{Options, Overflow};
    if child() {
        return;
    }
    const N: u64 = 3000;
    let name = unique_name("async-pubsub-cancel");
    let sub = Options::new()
        .capacity(CAP)
        .slot_size(SLOT)
        .overflow(Overflow::Block)
        .create_or_open_subscriber(&name)
        .unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut peer = Peer::role(
        "pubsub_dropping_pending_receives_loses_nothing_and_holds_nothing",
        "pubsub-stream",
        &[("NAME", &name), ("COUNT", &N.to_string())],
    );
    peer.expect("ready");
    let mut next = 0u64;
    let mut cancelled = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while next < N {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pause = Duration::from_micros(rng % 3000);
        let mut got = None;
        tokio::select! {
            r = sub.recv_async() => {
                let s = r.expect("recv");
                let v = u64::from_le_bytes(s[..8].try_into().unwrap());
                assert_eq!(v, next, "a message was lost or reordered");
                assert_eq!(s.seq(), next);
                assert_eq!(s.lost(), 0);
                next += 1;
                got = Some(v);
            }
            () = tokio::time::sleep(pause) => cancelled += 1,
        }
        assert_eq!(sub.held(), 0, "a dropped receive or sample kept a hold");
        if got.is_some_and(|v| stops_after(v, N)) {
            // As in the spsc test: a receive now is pending; drop it so.
            {
                let mut f = std::pin::pin!(sub.recv_async());
                assert!(poll_once(f.as_mut()).await.is_none(), "the ring is drained");
            }
            cancelled += 1;
            assert_eq!(sub.held(), 0, "a dropped receive kept a hold");
            peer.send("more");
        }
    }
    eprintln!("{N} received in order, {cancelled} receives dropped pending");
    assert!(
        cancelled > 0,
        "no receive was dropped pending: the test tested nothing"
    );
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn pubsub_send_async_waits_for_room_in_block_mode() {
    use shmipc::channel::pubsub::{Options, Overflow};
    if child() {
        return;
    }
    let name = unique_name("async-pubsub-full");
    let mut p = Options::new()
        .capacity(2)
        .slot_size(SLOT)
        .overflow(Overflow::Block)
        .create_publisher(&name)
        .unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut peer = Peer::role(
        "pubsub_send_async_waits_for_room_in_block_mode",
        "pubsub-drain",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    // The child's subscriber is registered once `subscribers` counts it.
    assert_eq!(p.subscribers(), 1);
    let mut sent = 0u32;
    while p.try_send(b"x").is_ok() {
        sent += 1;
    }
    assert_eq!(
        sent, 2,
        "block mode: the ring is full for the idle subscriber"
    );
    peer.send("go");
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(30), p.send_async(b"y"))
            .await
            .expect("no room within 30 s")
            .unwrap();
        sent += 1;
    }
    drop(p);
    assert_eq!(peer.expect("got"), sent.to_string());
    peer.finish();
}

/// A subscriber in a WaitSet: ready exactly while a message is there, and the
/// wait consumes nothing.
#[test]
fn a_wait_set_sees_a_pubsub_subscriber() {
    use shmipc::channel::pubsub::Options;
    if child() {
        return;
    }
    let name = unique_name("ws-pubsub");
    let mut p = Options::new().create_publisher(&name).unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut sub = shmipc::channel::pubsub::Subscriber::open(&name).unwrap();
    let other = unique_name("ws-pubsub-spsc");
    let mut c = Consumer::create(&other, CAP, SLOT).unwrap();
    let _producer = Producer::open(&other).unwrap();
    let mut set = WaitSet::new();
    assert!(set
        .wait(&mut [&mut c, &mut sub], Some(Duration::from_millis(20)))
        .is_empty());
    p.send(b"here").unwrap();
    assert_eq!(
        set.wait(&mut [&mut c, &mut sub], Some(Duration::from_secs(30))),
        &[1]
    );
    // Level-triggered: still there.
    assert_eq!(set.wait(&mut [&mut c, &mut sub], None), &[1]);
    assert_eq!(&sub.try_recv().unwrap()[..], b"here");
    assert!(set
        .wait(&mut [&mut c, &mut sub], Some(Duration::from_millis(20)))
        .is_empty());
}

/// `recv_into_async` (and the other `&mut self` futures) can move between threads.
#[test]
fn copying_receive_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    if child() {
        return;
    }
    let name = unique_name("async-send");
    let mut sub = shmipc::channel::pubsub::Options::new()
        .create_or_open_subscriber(&name)
        .unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut buf = Vec::new();
    send(&sub.recv_into_async(&mut buf));
}

/// An mpmc consumer in a WaitSet: ready exactly while a message is there (not
/// while the head is only loaned), the wait consumes nothing, and a queue whose
/// producers all left is ready (the receive says `Disconnected`).
#[test]
fn a_wait_set_sees_an_mpmc_consumer() {
    use shmipc::channel::mpmc;
    if child() {
        return;
    }
    let name = unique_name("ws-mpmc");
    let mut c = mpmc::Consumer::create(&name, CAP, SLOT).unwrap();
    let _cleanup = common::Cleanup::guard(&name);
    let mut p = mpmc::Producer::open(&name).unwrap();
    let mut set = WaitSet::new();
    assert!(set
        .wait(&mut [&mut c], Some(Duration::from_millis(20)))
        .is_empty());
    let mut loan = p.loan(4).unwrap();
    loan.copy_from_slice(b"here");
    assert!(
        set.wait(&mut [&mut c], Some(Duration::from_millis(20)))
            .is_empty(),
        "a loan not sent yet is not a message"
    );
    loan.send().unwrap();
    assert_eq!(set.wait(&mut [&mut c], Some(Duration::from_secs(30))), &[0]);
    // Level-triggered: still there.
    assert_eq!(set.wait(&mut [&mut c], None), &[0]);
    assert_eq!(c.try_recv().unwrap(), b"here");
    assert!(set
        .wait(&mut [&mut c], Some(Duration::from_millis(20)))
        .is_empty());
    drop(p);
    assert_eq!(set.wait(&mut [&mut c], Some(Duration::from_secs(30))), &[0]);
    assert_eq!(c.try_recv(), Err(shmipc::channel::RecvError::Disconnected));
}

#[tokio::test(flavor = "current_thread")]
async fn typed_spsc_recv_async_gets_a_later_message() {
    use shmipc::channel::spsc::TypedConsumer;
    if child() {
        return;
    }
    let name = unique_name("async-typed");
    let mut c = TypedConsumer::<u64>::create(&name, 2).unwrap();
    let mut peer = Peer::role(
        "typed_spsc_recv_async_gets_a_later_message",
        "typed-send-later",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let mut recv = std::pin::pin!(c.recv_async());
    assert!(poll_once(recv.as_mut()).await.is_none(), "nothing sent yet");
    peer.send("go");
    let got = tokio::time::timeout(Duration::from_secs(30), recv)
        .await
        .expect("no message within 30 s");
    assert_eq!(got.unwrap(), 42);
    peer.send("bye");
    peer.finish();
}

#[tokio::test(flavor = "current_thread")]
async fn typed_spsc_send_async_waits_for_room() {
    use shmipc::channel::spsc::TypedProducer;
    use shmipc::channel::TrySendError;
    if child() {
        return;
    }
    let name = unique_name("async-typed-send");
    let mut p = TypedProducer::<u64>::create(&name, 2).unwrap();
    let mut peer = Peer::role(
        "typed_spsc_send_async_waits_for_room",
        "typed-drain",
        &[("NAME", &name)],
    );
    peer.expect("ready");
    let (mut n, mut sum) = (0u32, 0u64);
    for v in 1.. {
        match p.try_send(v) {
            Ok(()) => {
                n += 1;
                sum += v;
            }
            Err(TrySendError::Full(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    {
        let mut send = std::pin::pin!(p.send_async(1000));
        assert!(poll_once(send.as_mut()).await.is_none(), "the ring is full");
        peer.send("go");
        tokio::time::timeout(Duration::from_secs(30), send)
            .await
            .expect("no room within 30 s")
            .expect("send");
    }
    n += 1;
    sum += 1000;
    drop(p);
    let line = peer.next_line();
    assert_eq!(line, format!("got {n} {sum}"));
    peer.finish();
}
