//! The iceoryx2 contenders (iceoryx2 0.10, its default `ipc` service), configured for
//! the one-to-one case: one publisher, one subscriber, two nodes, no history.
//!
//! * Round trip: two publish-subscribe services of `[u8]` slices, one per direction,
//!   a subscriber buffer of one sample; the sender loans a slice of the payload size,
//!   copies the payload into it and sends it; the receiver spins on `receive()` and
//!   copies the sample out.
//! * Stream: one service per payload size with a subscriber buffer of
//!   `slots_for(len)` samples (the floor ring's slot count), safe overflow off and the
//!   publisher's back-pressure strategy `RetryUntilDelivered`, so no sample is lost.
//!
//! The client creates every service and port first; the peer opens the services and
//! creates its ports during set-up, before the first message. A `send` that reaches
//! no subscriber is an error.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use crate::ctx::{Ctx, Side};
use crate::spin::Spinner;
use crate::throughput::{slots_for, Stream, PAYLOADS as TP_PAYLOADS};
use crate::{latency, Result};

type Svc = ipc::Service;
type Factory = PortFactory<Svc, [u8], ()>;
type Pub = Publisher<Svc, [u8], ()>;
type Sub = Subscriber<Svc, [u8], ()>;

/// Quiet iceoryx2's own logging unless `IOX2_LOG_LEVEL` asks for more.
fn quiet() {
    set_log_level_from_env_or(LogLevel::Error);
}

/// Carries the run's iceoryx2 file prefix from the harness to its peers (children
/// inherit it).
const PREFIX_ENV: &str = "SHMIPC_BENCH_IOX2_PREFIX";

/// Gives this run's iceoryx2 objects a prefix of their own,
/// `shmipc-bench-<harness pid>-iox2-`, instead of iceoryx2's default `iox2_`: the run
/// then never opens another application's iceoryx2 objects, and can find and remove
/// its own at the end ([`remove_run_files`]), including the global management segment
/// that iceoryx2 leaves in `/dev/shm` for the next node of the same configuration.
/// Call in the harness before anything starts a thread or a peer.
pub fn claim_run_prefix() -> String {
    let prefix = format!("shmipc-bench-{}-iox2-", std::process::id());
    // Single-threaded still (the harness's first step), as `set_var` needs.
    std::env::set_var(PREFIX_ENV, &prefix);
    prefix
}

/// The global iceoryx2 configuration with `prefix` for its files' names.
fn config_with(prefix: &str) -> Result<Config> {
    quiet();
    let mut c = Config::global_config().clone();
    c.global.prefix = FileName::new(prefix.as_bytes())
        .map_err(|e| format!("{prefix:?}: not a valid iceoryx2 prefix ({e:?})"))?;
    Ok(c)
}

/// iceoryx2's configuration for this process: the global one with the run's prefix
/// (from the harness, or inherited from it).
pub fn config() -> Result<&'static Config> {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c);
    }
    let c = match std::env::var(PREFIX_ENV) {
        Ok(prefix) => config_with(&prefix).map_err(|e| format!("{PREFIX_ENV}: {e}"))?,
        Err(_) => {
            quiet();
            Config::global_config().clone()
        }
    };
    Ok(CONFIG.get_or_init(|| c))
}

/// A node of the run's configuration.
pub fn new_node() -> Result<Node<Svc>> {
    quiet();
    Ok(NodeBuilder::new()
        .config(config()?)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()?)
}

/// Calls `f` with every entry (and whether it is a directory, not following
/// links) in `/dev/shm` and under iceoryx2's root directory, three levels deep at
/// most (iceoryx2 keeps `nodes/<id>/…` and `services/…` there); a directory that
/// `f` returns `true` for is not entered.
fn each_entry(mut f: impl FnMut(&std::fs::DirEntry, bool) -> bool) {
    quiet();
    let root = std::path::PathBuf::from(
        String::from_utf8_lossy(Config::global_config().global.root_path().as_bytes()).into_owned(),
    );
    let mut dirs = vec![(std::path::PathBuf::from("/dev/shm"), 1), (root, 3)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if !f(&e, is_dir) && is_dir && depth > 1 {
                dirs.push((e.path(), depth - 1));
            }
        }
    }
}

/// Removes what a run's iceoryx2 nodes left: first, through iceoryx2, the
/// resources of its nodes whose process died (a peer killed mid-run), then every
/// file named with `prefix`, in `/dev/shm` and under iceoryx2's root directory.
/// Call once the run's peers have exited.
pub fn remove_run_files(prefix: &str) {
    if let Ok(config) = config_with(prefix) {
        let _ = Node::<Svc>::list(&config, |state| {
            if let NodeState::Dead(view) = state {
                let _ = view.try_remove_stale_resources();
            }
            CallbackProgression::Continue
        });
    }
    each_entry(|e, is_dir| {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            return false;
        }
        // (`remove_dir_all` does not follow links; a link is removed as a file.)
        let _ = if is_dir {
            std::fs::remove_dir_all(e.path())
        } else {
            std::fs::remove_file(e.path())
        };
        true
    });
}

/// Removes what earlier runs left that were killed before their end (Ctrl-C, a
/// SIGKILL): the iceoryx2 files of every `shmipc-bench-<pid>-iox2-` prefix whose
/// harness no longer runs. A run has a prefix of its own, so no later run's nodes
/// would clean them up as iceoryx2 does for its default prefix.
pub fn sweep_dead_runs() {
    let mut dead = std::collections::BTreeSet::new();
    each_entry(|e, _| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some((pid, _)) = name
            .strip_prefix("shmipc-bench-")
            .and_then(|rest| rest.split_once("-iox2-"))
        else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            dead.insert(format!("shmipc-bench-{pid}-iox2-"));
        }
        false
    });
    for prefix in dead {
        remove_run_files(&prefix);
    }
}

/// Creates (client) or opens (server) the `[u8]` service `name`.
fn service(ctx: &Ctx, node: &Node<Svc>, name: &str, buffer: usize) -> Result<Factory> {
    let name = ServiceName::new(&ctx.name(name))?;
    let builder = node.service_builder(&name).publish_subscribe::<[u8]>();
    Ok(match ctx.side {
        Side::Client => builder
            .max_publishers(1)
            .max_subscribers(1)
            .max_nodes(2)
            .history_size(0)
            .subscriber_max_buffer_size(buffer)
            .subscriber_max_borrowed_samples(1)
            .enable_safe_overflow(false)
            .create()?,
        Side::Server => builder.open()?,
    })
}

fn send(publisher: &Pub, msg: &[u8]) -> Result<()> {
    let sample = publisher.loan_slice_uninit(msg.len())?;
    let sample = sample.write_from_slice(msg);
    if sample.send()? == 0 {
        return Err("iceoryx2: the sample reached no subscriber (peer not connected)".into());
    }
    Ok(())
}

#[inline]
fn recv(subscriber: &Sub, buf: &mut [u8], what: &'static str) -> Result<()> {
    let mut spinner = Spinner::new(what);
    loop {
        if let Some(sample) = subscriber.receive()? {
            let payload = sample.payload();
            if payload.len() != buf.len() {
                return Err(format!(
                    "iceoryx2: received {} bytes, expected {}",
                    payload.len(),
                    buf.len()
                )
                .into());
            }
            buf.copy_from_slice(payload);
            return Ok(());
        }
        spinner.tick()?;
    }
}

// ---------------------------------------------------------------- round trip

struct RoundTrip {
    // Ports first: they are dropped before their services and the node.
    publisher: Pub,
    subscriber: Sub,
    _services: [Factory; 2],
    _node: Node<Svc>,
}

impl std::fmt::Debug for RoundTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("iceoryx2::RoundTrip")
    }
}

/// This process's end of the `iceoryx2` latency contender.
pub fn open_round_trip(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    let node = new_node()?;
    let ping = service(ctx, &node, "iox-ping", 1)?;
    let pong = service(ctx, &node, "iox-pong", 1)?;
    let (tx, rx) = match ctx.side {
        Side::Client => (&ping, &pong),
        Side::Server => (&pong, &ping),
    };
    // Subscriber first, so the peer's publisher finds it.
    let subscriber = rx.subscriber_builder().buffer_size(1).create()?;
    let publisher = tx
        .publisher_builder()
        .initial_max_slice_len(latency::MAX_PAYLOAD)
        .max_loaned_samples(1)
        .create()?;
    Ok(Box::new(RoundTrip {
        publisher,
        subscriber,
        _services: [ping, pong],
        _node: node,
    }))
}

impl latency::RoundTrip for RoundTrip {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        send(&self.publisher, msg)?;
        recv(&self.subscriber, reply, "iceoryx2's reply")
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        recv(&self.subscriber, buf, "iceoryx2's ping")?;
        send(&self.publisher, buf)
    }
}

// ---------------------------------------------------------------- stream

enum Port {
    Pub(Pub),
    Sub(Sub),
}

struct StreamEnd {
    // Ports first: they are dropped before their services and the node.
    /// One port per entry of `throughput::PAYLOADS`, in that order.
    ports: Vec<Port>,
    current: usize,
    _services: Vec<Factory>,
    _node: Node<Svc>,
}

impl std::fmt::Debug for StreamEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("iceoryx2::StreamEnd")
    }
}

/// This process's end of the `iceoryx2` throughput contender: the client consumes,
/// the peer produces.
pub fn open_stream(ctx: &mut Ctx) -> Result<Box<dyn Stream>> {
    let node = new_node()?;
    let mut services = Vec::new();
    let mut ports = Vec::new();
    for len in TP_PAYLOADS {
        let slots = slots_for(len);
        let svc = service(ctx, &node, &format!("iox-stream-{len}"), slots)?;
        let port = match ctx.side {
            Side::Client => Port::Sub(svc.subscriber_builder().buffer_size(slots).create()?),
            Side::Server => Port::Pub(
                svc.publisher_builder()
                    .initial_max_slice_len(len)
                    .max_loaned_samples(1)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()?,
            ),
        };
        ports.push(port);
        services.push(svc);
    }
    Ok(Box::new(StreamEnd {
        ports,
        current: 0,
        _services: services,
        _node: node,
    }))
}

impl Stream for StreamEnd {
    fn begin(&mut self, len: usize) -> Result<()> {
        match TP_PAYLOADS.iter().position(|&l| l == len) {
            Some(i) if i < self.ports.len() => {
                self.current = i;
                Ok(())
            }
            _ => Err(format!("iceoryx2 stream: no service for {len}-byte messages").into()),
        }
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        match &self.ports[self.current] {
            Port::Pub(p) => send(p, msg),
            Port::Sub(_) => Err("iceoryx2 stream: the client end does not send".into()),
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        match &self.ports[self.current] {
            Port::Sub(s) => recv(s, buf, "iceoryx2's stream"),
            Port::Pub(_) => Err("iceoryx2 stream: the peer end does not receive".into()),
        }
    }
}
