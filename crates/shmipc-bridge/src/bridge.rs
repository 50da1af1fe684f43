//! The bridge: a zenoh peer session, one thread per exported topic (local topic →
//! zenoh key) and one per imported key (zenoh key → local topic), and a thread that
//! logs connections and rates.
//!
//! * Lossless mode: zenoh's reliable channel with blocking congestion control, local
//!   topics created in block mode, and nothing read from a local topic while no remote
//!   subscriber matches its key nor published on a local topic while it has no
//!   subscriber. Backpressure so runs end to end: a slow subscriber on host B fills its
//!   topic, which holds the importing bridge's zenoh receiving task, which stops the
//!   TCP stream, which blocks the exporting bridge's put, which stops it reading its
//!   topic, which blocks the publisher on host A.
//! * No loops: puts go to remote subscribers only and imports hear remote puts only
//!   (zenoh localities), every put carries the bridge's id (`wire.rs`) and an import
//!   drops its own, and an export never re-exports what the same bridge published on
//!   that topic (a topic has one publisher: from the first number the bridge publishes
//!   on, every sample there is its own).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;
use zenoh::{Session, Wait};

use crate::local::{Next, Received, Sent, Sink, Source, TopicSettings};
use crate::wire::{Gaps, Origin, Seen, Tag};

/// How often a blocked loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait before retrying a local topic that cannot be opened.
const RETRY: Duration = Duration::from_millis(200);

/// Everything the bridge was asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// zenoh locators to listen on.
    pub listen: Vec<String>,
    /// zenoh locators to connect to.
    pub connect: Vec<String>,
    /// UDP multicast scouting on.
    pub scout: bool,
    /// (local topic, zenoh key) pairs to export.
    pub exports: Vec<(String, String)>,
    /// (zenoh key, local topic) pairs to import.
    pub imports: Vec<(String, String)>,
    /// How local topics are created, and whether lossless.
    pub topics: TopicSettings,
    /// Period of the rate logs (zero: none).
    pub stats: Duration,
    /// How long an export polls its topic after a sample before it sleeps.
    pub spin: Duration,
    /// zenoh configuration entries (path, JSON5 value) set after the bridge's own.
    pub zenoh: Vec<(String, String)>,
}

/// Counters of one direction of one topic.
#[derive(Debug, Default)]
struct Counters {
    samples: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    fn add(&self, bytes: usize) {
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Per local topic: from which sample number on the samples are this bridge's own
/// (`u64::MAX`: none yet).
type Own = Arc<AtomicU64>;

/// Builds the zenoh configuration: a peer with the given endpoints, multicast
/// scouting only when asked.
///
/// # Errors
/// An endpoint zenoh does not accept.
pub fn config(plan: &Plan) -> Result<zenoh::Config, String> {
    let mut c = zenoh::Config::default();
    let set = |c: &mut zenoh::Config, key: &str, json: String| {
        c.insert_json5(key, &json)
            .map_err(|e| format!("zenoh setting {key} = {json}: {e}"))
    };
    let list = |v: &[String]| {
        let quoted: Vec<String> = v
            .iter()
            .map(|s| format!("\"{}\"", s.replace('"', "")))
            .collect();
        format!("[{}]", quoted.join(","))
    };
    set(&mut c, "mode", "\"peer\"".into())?;
    if !plan.listen.is_empty() {
        set(&mut c, "listen/endpoints", list(&plan.listen))?;
    }
    if !plan.connect.is_empty() {
        set(&mut c, "connect/endpoints", list(&plan.connect))?;
    }
    // A peer that went away (restarted) is looked for again soon.
    set(
        &mut c,
        "connect/retry",
        "{period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2}".into(),
    )?;
    set(&mut c, "scouting/multicast/enabled", plan.scout.to_string())?;
    for (key, value) in &plan.zenoh {
        set(&mut c, key, value.clone())?;
    }
    Ok(c)
}

/// Runs the bridge until `stop` is set.
///
/// # Errors
/// The zenoh session cannot be opened, or a key cannot be declared.
pub fn run(plan: &Plan, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let session = zenoh::open(config(plan)?)
        .wait()
        .map_err(|e| format!("cannot open the zenoh session: {e}"))?;
    let origin: Origin = session.zid().to_le_bytes();
    tracing::info!(
        zid = %session.zid(),
        listen = ?plan.listen,
        connect = ?plan.connect,
        scout = plan.scout,
        lossless = plan.topics.lossless,
        "bridge started"
    );

    // Topics this bridge both publishes (imports into) and reads (exports).
    let own: HashMap<String, Own> = plan
        .imports
        .iter()
        .map(|(_, topic)| (topic.clone(), Arc::new(AtomicU64::new(u64::MAX))))
        .collect();

    // Declare everything first: a key zenoh refuses stops the bridge before any
    // thread runs.
    let mut rates: Vec<(String, Arc<Counters>)> = Vec::new();
    let mut exports = Vec::new();
    for (topic, key) in &plan.exports {
        let publisher = session
            .declare_publisher(key.clone())
            .congestion_control(if plan.topics.lossless {
                CongestionControl::Block
            } else {
                CongestionControl::Drop
            })
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(|e| format!("--export {topic}={key}: cannot declare the key: {e}"))?;
        let matching = Arc::new(AtomicBool::new(false));
        let m = matching.clone();
        let (t, k) = (topic.clone(), key.clone());
        publisher
            .matching_listener()
            .callback(move |status| {
                let now = status.matching();
                if m.swap(now, Ordering::Relaxed) != now {
                    tracing::info!(topic = %t, key = %k, remote_subscribers = now, "export");
                }
            })
            .background()
            .wait()
            .map_err(|e| format!("--export {topic}={key}: {e}"))?;
        let counters = Arc::new(Counters::default());
        rates.push((format!("export {topic} -> {key}"), counters.clone()));
        let ctx = Export {
            topic,
            key,
            settings: &plan.topics,
            origin,
            own: own.get(topic).cloned(),
            counters,
            stop,
            spin: plan.spin,
        };
        exports.push((ctx, publisher, matching));
    }
    let mut imports = Vec::new();
    for (key, topic) in &plan.imports {
        let counters = Arc::new(Counters::default());
        rates.push((format!("import {key} -> {topic}"), counters.clone()));
        imports.push(Import {
            key: key.clone(),
            topic: topic.clone(),
            settings: plan.topics,
            origin,
            own: own[topic].clone(),
            counters,
            stop: stop.clone(),
        });
    }
    let failed = AtomicBool::new(false);
    thread::scope(|s| {
        for (ctx, publisher, matching) in exports {
            // Named, for profilers and `top -H`.
            thread::Builder::new()
                .name(format!("export {}", ctx.topic))
                .spawn_scoped(s, move || ctx.run(&publisher, &matching))
                .unwrap_or_else(|e| panic!("cannot start a thread: {e}"));
        }
        for ctx in imports {
            let (session, failed) = (&session, &failed);
            s.spawn(move || {
                if let Err(e) = ctx.run(session) {
                    tracing::error!("{e}; stopping");
                    failed.store(true, Ordering::Relaxed);
                    ctx_stop(stop);
                }
            });
        }
        watch(&session, &rates, plan.stats, stop);
    });
    session
        .close()
        .wait()
        .map_err(|e| format!("closing the zenoh session: {e}"))?;
    tracing::info!("bridge stopped");
    if failed.load(Ordering::Relaxed) {
        return Err("an import could not be declared (see the log)".into());
    }
    Ok(())
}

fn ctx_stop(stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
}

/// Logs peers as they come and go, and each topic's rates.
fn watch(session: &Session, rates: &[(String, Arc<Counters>)], every: Duration, stop: &AtomicBool) {
    let mut peers = BTreeSet::new();
    let mut last: Vec<(u64, u64, u64)> = vec![(0, 0, 0); rates.len()];
    // None: never (no rate lines, or a period too long to add to now).
    let mut next_stats = Instant::now()
        .checked_add(every)
        .filter(|_| !every.is_zero());
    while !stop.load(Ordering::Relaxed) {
        let now: BTreeSet<String> = session
            .info()
            .peers_zid()
            .wait()
            .map(|z| z.to_string())
            .collect();
        for p in now.difference(&peers) {
            tracing::info!(peer = %p, "connected");
        }
        for p in peers.difference(&now) {
            tracing::info!(peer = %p, "disconnected");
        }
        peers = now;
        if next_stats.is_some_and(|t| Instant::now() >= t) {
            let secs = every.as_secs_f64();
            for ((name, c), prev) in rates.iter().zip(last.iter_mut()) {
                let cur = (
                    c.samples.load(Ordering::Relaxed),
                    c.bytes.load(Ordering::Relaxed),
                    c.lost.load(Ordering::Relaxed),
                );
                if cur != *prev {
                    tracing::info!(
                        "{name}: {:.0} samples/s, {:.3} MB/s, {} samples in all, {} lost in all",
                        (cur.0 - prev.0) as f64 / secs,
                        (cur.1 - prev.1) as f64 / secs / 1e6,
                        cur.0,
                        cur.2
                    );
                }
                *prev = cur;
            }
            next_stats = next_stats.and_then(|t| t.checked_add(every));
        }
        thread::sleep(TICK);
    }
}

/// Retries `open` until it works or the bridge stops, logging the first failure.
fn open_retrying<T>(
    what: &str,
    stop: &AtomicBool,
    mut open: impl FnMut() -> Result<T, shmipc::channel::ChannelError>,
) -> Option<T> {
    let mut said = false;
    while !stop.load(Ordering::Relaxed) {
        match open() {
            Ok(t) => {
                if said {
                    tracing::info!("{what}: opened");
                }
                return Some(t);
            }
            Err(e) => {
                if !said {
                    tracing::warn!("{what}: {e}; retrying");
                    said = true;
                }
                thread::sleep(RETRY);
            }
        }
    }
    None
}

/// The next sample of `source`: polls for up to `spin` (yielding the CPU between
/// polls), then sleeps on the topic's bell for up to [`TICK`]. A sleeping export
/// costs each sample a wake-up across processes (a futex wake by the publisher, a
/// context switch here: tens of microseconds on a busy machine); a stream of samples
/// closer together than `spin` finds the export awake.
fn next_spinning(source: &Source, spin: Duration) -> Result<Next<'_>, shmipc::channel::RecvError> {
    if spin.is_zero() {
        return source.next(TICK);
    }
    let until = Instant::now() + spin;
    loop {
        match source.next(Duration::ZERO)? {
            Next::Idle if Instant::now() < until => thread::yield_now(),
            Next::Idle => return source.next(TICK),
            got => return Ok(got),
        }
    }
}

struct Export<'a> {
    topic: &'a str,
    key: &'a str,
    settings: &'a TopicSettings,
    origin: Origin,
    own: Option<Own>,
    counters: Arc<Counters>,
    stop: &'a AtomicBool,
    spin: Duration,
}

/// Most samples an export takes from its topic before it puts them.
const BURST_SAMPLES: usize = 64;
/// Most payload bytes an export takes from its topic before it puts them: one zenoh
/// batch's worth (a 64 KiB sample is put alone; its copy would delay the next put).
const BURST_BYTES: usize = 64 * 1024;
/// The buffer the export copies samples (and their attachments) into, one
/// allocation for many samples: each put hands zenoh a reference-counted slice of
/// it (zenoh copies a put's bytes into its batches during the put and drops the
/// slice), and each burst starts again at its beginning when nothing holds a slice
/// any more, so the same memory, mapped and in the cache, serves every burst.
const ARENA: usize = 256 * 1024;

/// One sample taken from the topic, copied out, waiting for its put.
struct Staged {
    payload: Bytes,
    attachment: Bytes,
}

/// What an export holds between wake-ups: the samples of one burst and the buffer
/// they are copied into.
struct Burst {
    staged: Vec<Staged>,
    bytes: usize,
    arena: BytesMut,
}

impl Burst {
    fn new() -> Self {
        Self {
            staged: Vec::with_capacity(BURST_SAMPLES),
            bytes: 0,
            arena: BytesMut::new(),
        }
    }

    fn full(&self) -> bool {
        self.staged.len() >= BURST_SAMPLES || self.bytes >= BURST_BYTES
    }

    /// After the burst's puts: empties it, and rewinds the arena to its beginning
    /// where no slice of it is held any more.
    fn done(&mut self) {
        self.staged.clear();
        self.bytes = 0;
        let _ = self.arena.try_reclaim(ARENA);
    }

    /// Copies `bytes` into the arena and returns them as a slice of it (in a fresh
    /// arena when this one has no room left and slices of it are still held).
    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.arena.capacity() < bytes.len() && !self.arena.try_reclaim(ARENA.max(bytes.len())) {
            self.arena = BytesMut::with_capacity(ARENA.max(bytes.len()));
        }
        self.arena.extend_from_slice(bytes);
        self.arena.split().freeze()
    }
}

impl Export<'_> {
    fn run(self, publisher: &zenoh::pubsub::Publisher<'_>, matching: &AtomicBool) {
        let what = format!("export {} -> {}", self.topic, self.key);
        let Some(source) =
            open_retrying(&what, self.stop, || Source::open(self.topic, self.settings))
        else {
            return;
        };
        tracing::info!(topic = self.topic, key = self.key, "exporting");
        let mut idle_pause = Duration::from_millis(1);
        let mut burst = Burst::new();
        while !self.stop.load(Ordering::Relaxed) {
            // Lossless: leave the samples in the topic (and so hold its publisher back)
            // while nobody on the network would receive them.
            if self.settings.lossless && !matching.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            match next_spinning(&source, self.spin) {
                Ok(Next::Sample(got)) => self.stage(&mut burst, &got),
                Ok(Next::Idle) => continue,
                Ok(Next::NoPublisher) => {
                    // Wait for the next publisher, looking now and then.
                    thread::sleep(idle_pause);
                    idle_pause = (idle_pause * 2).min(Duration::from_millis(10));
                    continue;
                }
                Err(e) => {
                    tracing::error!(topic = self.topic, "{e}; export stopped");
                    return;
                }
            }
            idle_pause = Duration::from_millis(1);
            // Everything else the topic holds now, without waiting: the puts then go
            // to zenoh back to back, as fast as an application's own put loop, so
            // zenoh's transmission task finds several in a batch instead of being
            // woken for each one.
            let mut failed = None;
            while !burst.full() {
                match source.next(Duration::ZERO) {
                    Ok(Next::Sample(got)) => self.stage(&mut burst, &got),
                    Ok(Next::Idle | Next::NoPublisher) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // The samples were released as they were copied (a block-mode publisher
            // has its room back before the puts may block).
            for s in burst.staged.drain(..) {
                let len = s.payload.len();
                if let Err(e) = publisher
                    .put(ZBytes::from(s.payload))
                    .attachment(ZBytes::from(s.attachment))
                    .wait()
                {
                    tracing::warn!(topic = self.topic, key = self.key, "put failed: {e}");
                    continue;
                }
                self.counters.add(len);
            }
            burst.done();
            if let Some(e) = failed {
                tracing::error!(topic = self.topic, "{e}; export stopped");
                return;
            }
        }
    }

    /// Accounts for one sample read from the topic and, unless this bridge published
    /// it, copies it into the burst (the one copy: zenoh's `put` must own its
    /// payload; the sample is released by the caller right after).
    fn stage(&self, burst: &mut Burst, got: &Received<'_>) {
        let (seq, lost) = (got.seq(), got.lost());
        if lost > 0 {
            self.counters.lost.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(
                topic = self.topic,
                lost,
                "samples overwritten in the local topic before the bridge read them"
            );
        }
        if let Some(own) = &self.own {
            // Acquire pairs with the import's Release store before its first send.
            if seq >= own.load(Ordering::Acquire) {
                return; // published by this bridge's import: never sent back
            }
        }
        let tag = Tag {
            origin: self.origin,
            seq,
        };
        let payload = burst.copy(got);
        let attachment = burst.copy(&tag.encode());
        burst.bytes += payload.len();
        burst.staged.push(Staged {
            payload,
            attachment,
        });
    }
}

struct Import {
    key: String,
    topic: String,
    settings: TopicSettings,
    origin: Origin,
    own: Own,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// What an import's callback changes.
struct ImportState {
    sink: Sink,
    gaps: Gaps,
    dropped_too_large: bool,
}

impl Import {
    /// Becomes the local topic's publisher, then subscribes to the key with a callback
    /// that publishes each sample from zenoh's receiving task (no thread hop; in
    /// lossless mode a full topic holds that task, and so the network, back).
    fn run(self, session: &Session) -> Result<(), String> {
        let what = format!("import {} -> {}", self.key, self.topic);
        let Some((sink, first)) = open_retrying(&what, &self.stop, || {
            Sink::open(&self.topic, &self.settings)
        }) else {
            return Ok(());
        };
        // Release pairs with the export's Acquire load.
        self.own.store(first, Ordering::Release);
        let state = Mutex::new(ImportState {
            sink,
            gaps: Gaps::default(),
            dropped_too_large: false,
        });
        let key = self.key.clone();
        let me = Arc::new(self);
        let ctx = me.clone();
        let subscriber = session
            .declare_subscriber(key.clone())
            .allowed_origin(Locality::Remote)
            .callback(move |sample| {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                ctx.on_sample(&mut st, &sample);
            })
            .wait()
            .map_err(|e| format!("--import {key}: cannot subscribe to the key: {e}"))?;
        tracing::info!(key = me.key, topic = me.topic, "importing");
        while !me.stop.load(Ordering::Relaxed) {
            thread::sleep(TICK);
        }
        let _ = subscriber.undeclare().wait();
        Ok(())
    }

    fn on_sample(&self, st: &mut ImportState, sample: &zenoh::sample::Sample) {
        let tag = sample.attachment().and_then(|a| Tag::decode(&a.to_bytes()));
        if let Some(tag) = tag {
            if tag.origin == self.origin {
                return; // our own put (zenoh routed it back): never re-published
            }
            let key = sample.key_expr().as_str();
            match st.gaps.see(key, tag) {
                Seen::First => {
                    tracing::info!(key, seq = tag.seq, "stream joined");
                }
                Seen::InOrder => {}
                Seen::Gap {
                    lost,
                    expected,
                    new_origin,
                } => {
                    self.counters.lost.fetch_add(lost, Ordering::Relaxed);
                    tracing::warn!(
                        key,
                        topic = self.topic,
                        lost,
                        from_seq = expected,
                        to_seq = tag.seq - 1,
                        new_origin,
                        "gap: samples lost on the way"
                    );
                }
                Seen::Restarted { expected } => {
                    tracing::warn!(
                        key,
                        expected,
                        seq = tag.seq,
                        "numbering went back: the exporting topic was recreated"
                    );
                }
            }
        }
        let payload = sample.payload();
        let len = payload.len();
        // Lossless: nobody to read it here yet; wait (and so hold the network back).
        while self.settings.lossless
            && st.sink.subscribers() == 0
            && !self.stop.load(Ordering::Relaxed)
        {
            thread::sleep(Duration::from_millis(5));
        }
        loop {
            // zenoh's slices (one, unless the sample came in fragments) are copied
            // straight into a loaned chunk: the only copy on this side.
            match st.sink.send(len, payload.slices(), TICK) {
                Ok(Sent::Yes) => {
                    self.counters.add(len);
                    return;
                }
                Ok(Sent::Full) if !self.stop.load(Ordering::Relaxed) => {}
                Ok(Sent::Full) => return,
                Ok(Sent::TooLarge { max }) => {
                    self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    if !st.dropped_too_large {
                        tracing::error!(
                            topic = self.topic,
                            len,
                            max,
                            "sample larger than the topic's slots: dropped; recreate the topic with larger slots (--slot-size)"
                        );
                        st.dropped_too_large = true;
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(topic = self.topic, "{e}; sample dropped");
                    return;
                }
            }
        }
    }
}
