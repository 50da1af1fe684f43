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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, SampleKind};
use zenoh::{Session, Wait};

use crate::local::{Next, Received, Sent, Sink, Source, TopicSettings};
use crate::wire::{self, Gaps, Origin, PackedSeen, Seen, Tag};

/// How often a blocked loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait before retrying a local topic that cannot be opened.
const RETRY: Duration = Duration::from_millis(200);
/// How often a bridge looks whether a local topic it uses was removed (`shmipc rm`),
/// and so whether its name now names another topic, or none.
const NAME_CHECK: Duration = Duration::from_secs(1);

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
        let declare = |key: String, whom: &'static str| {
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
                        tracing::info!(
                            topic = %t,
                            key = %k,
                            remote_subscribers = now,
                            "export to {whom}"
                        );
                    }
                })
                .background()
                .wait()
                .map_err(|e| format!("--export {topic}={key}: {e}"))?;
            Ok::<_, String>((publisher, matching))
        };
        let (plain, plain_matching) = declare(key.clone(), "zenoh clients")?;
        let (packed, packed_matching) = declare(wire::packed_key(key), "bridges")?;
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
        let outlets = Outlets {
            plain,
            plain_matching,
            packed,
            packed_matching,
            packed_tag: Bytes::copy_from_slice(&wire::packed_tag(&origin)),
        };
        exports.push((ctx, outlets));
    }
    let mut imports = Vec::new();
    for (key, topic) in &plan.imports {
        let counters = Arc::new(Counters::default());
        rates.push((format!("import {key} -> {topic}"), counters.clone()));
        imports.push(Import {
            siblings: plan.exports.iter().filter(|(t, _)| t == topic).count(),
            packed_from: Mutex::new(HashSet::new()),
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
        for (ctx, outlets) in exports {
            let session = &session;
            // Named, for profilers and `top -H`.
            thread::Builder::new()
                .name(format!("export {}", ctx.topic))
                .spawn_scoped(s, move || ctx.run(session, &outlets))
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
const BURST_SAMPLES: usize = 256;
/// Bytes copied into the burst's buffer after which an export stops taking samples
/// and puts them: about one zenoh batch.
const BURST_BYTES: usize = 60 * 1024;
/// Payload bytes, kept samples included, after which an export puts what it took.
/// Large samples are kept, not copied (at most the topic's holds less one), so a
/// burst of 64 KiB samples carries up to four of them in one packed put: one put,
/// one wake of zenoh's transmission task and one import callback for four samples,
/// instead of one each (64 KiB throughput through two bridges 0.73x → 0.83x of
/// zenoh's own in alternating runs here; see BENCH.md).
const KEPT_BURST_BYTES: usize = 256 * 1024;
/// The buffer the export copies small samples into, one allocation for many: the
/// burst's packed records back to back (see `wire.rs`), the one-by-one puts' payloads
/// being slices of them. Each put hands zenoh a reference-counted slice (zenoh copies
/// a put's bytes into its batches during the put and drops the slice), and each burst
/// starts again at the buffer's beginning when nothing holds a slice any more, so the
/// same memory, mapped and in the cache, serves every burst.
const ARENA: usize = 256 * 1024;
/// Samples of at least this many bytes are not copied into the buffer: zenoh is
/// handed the topic's chunk itself ([`Received::into_bytes`]), held until zenoh has
/// copied it into its batches. Smaller ones cost less to copy than to keep.
const KEEP_FROM: usize = 2048;

/// One sample taken from the topic: its number, and where its bytes are (in which
/// of the burst's parts, from where).
struct Staged {
    seq: u64,
    part: usize,
    start: usize,
    len: usize,
}

/// What an export holds between wake-ups: the samples of one burst, their bytes
/// (the packed put is `parts` in order), and a buffer for the one-by-one puts'
/// attachments.
struct Burst {
    staged: Vec<Staged>,
    bytes: usize,
    /// Of `bytes`, those copied into the arena.
    copied: usize,
    /// The open part: records copied since the last kept sample, and a kept
    /// sample's record header.
    arena: BytesMut,
    /// Closed parts, in order: runs of the arena, and kept samples.
    parts: Vec<Bytes>,
    tags: BytesMut,
}

impl Burst {
    fn new() -> Self {
        Self {
            staged: Vec::with_capacity(BURST_SAMPLES),
            bytes: 0,
            copied: 0,
            arena: BytesMut::new(),
            parts: Vec::new(),
            tags: BytesMut::new(),
        }
    }

    fn full(&self) -> bool {
        self.staged.len() >= BURST_SAMPLES
            || self.copied >= BURST_BYTES
            || self.bytes >= KEPT_BURST_BYTES
    }

    /// Room for `more` bytes in the open part.
    fn reserve(&mut self, more: usize) {
        let need = self.arena.len() + more;
        if self.arena.capacity() < need && !self.arena.try_reclaim(need.max(ARENA)) {
            // Slices of the old buffer are still held (by zenoh, or by this burst's
            // closed parts): a fresh one, with the open part's records so far.
            let mut fresh = BytesMut::with_capacity(need.max(ARENA));
            fresh.extend_from_slice(&self.arena);
            self.arena = fresh;
        }
    }

    /// Copies one sample into the open part, as a packed record.
    fn push(&mut self, seq: u64, payload: &[u8]) {
        self.reserve(wire::RECORD_HEADER + payload.len());
        self.arena
            .extend_from_slice(&wire::record_header(seq, payload.len()));
        let start = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.bytes += payload.len();
        self.copied += payload.len();
        self.staged.push(Staged {
            seq,
            // The open part's index once it is closed.
            part: self.parts.len(),
            start,
            len: payload.len(),
        });
    }

    /// Adds one sample as it is, without a copy: its record header ends the open
    /// part, which is closed, and the sample is a part of its own.
    fn keep(&mut self, seq: u64, payload: Bytes) {
        self.reserve(wire::RECORD_HEADER);
        self.arena
            .extend_from_slice(&wire::record_header(seq, payload.len()));
        self.parts.push(self.arena.split().freeze());
        self.bytes += payload.len();
        self.staged.push(Staged {
            seq,
            part: self.parts.len(),
            start: 0,
            len: payload.len(),
        });
        self.parts.push(payload);
    }

    /// Closes the open part (before the puts).
    fn close(&mut self) {
        if !self.arena.is_empty() {
            self.parts.push(self.arena.split().freeze());
        }
    }

    /// The packed put's payload: every part, in order (once closed).
    fn packed(&self) -> ZBytes {
        if let [one] = &self.parts[..] {
            return ZBytes::from(one.clone());
        }
        let mut w = ZBytes::writer();
        for part in &self.parts {
            w.append(ZBytes::from(part.clone()));
        }
        w.finish()
    }

    /// A staged sample's bytes (once closed).
    fn payload(&self, s: &Staged) -> Bytes {
        self.parts[s.part].slice(s.start..s.start + s.len)
    }

    /// A one-by-one put's attachment, as a slice of the tags buffer.
    fn tag(&mut self, tag: &Tag) -> Bytes {
        let bytes = tag.encode();
        if self.tags.capacity() < bytes.len() && !self.tags.try_reclaim(16 * 1024) {
            self.tags = BytesMut::with_capacity(16 * 1024);
        }
        self.tags.extend_from_slice(&bytes);
        self.tags.split().freeze()
    }

    /// After the burst's puts: empties it (a kept sample goes back to its topic
    /// once zenoh has dropped its clones too), and rewinds the buffers to their
    /// beginnings where no slice of them is held any more.
    fn done(&mut self) {
        self.staged.clear();
        self.parts.clear();
        self.bytes = 0;
        self.copied = 0;
        let _ = self.arena.try_reclaim(ARENA);
        let _ = self.tags.try_reclaim(16 * 1024);
    }
}

/// An export's two zenoh publishers and whether anyone listens to each.
struct Outlets<'s> {
    /// One sample per put, on the key: zenoh's own clients.
    plain: zenoh::pubsub::Publisher<'s>,
    plain_matching: Arc<AtomicBool>,
    /// Packed, on the key's packed form: other bridges.
    packed: zenoh::pubsub::Publisher<'s>,
    packed_matching: Arc<AtomicBool>,
    /// The packed puts' attachment.
    packed_tag: Bytes,
}

impl Outlets<'_> {
    fn plain(&self) -> bool {
        self.plain_matching.load(Ordering::Relaxed)
    }

    fn packed(&self) -> bool {
        self.packed_matching.load(Ordering::Relaxed)
    }
}

impl Export<'_> {
    fn run(self, session: &Session, out: &Outlets<'_>) {
        let what = format!("export {} -> {}", self.topic, self.key);
        let Some(mut source) =
            open_retrying(&what, self.stop, || Source::open(self.topic, self.settings))
        else {
            return;
        };
        let mut name_checked = Instant::now();
        // Tells importing bridges that this key's samples come packed (see `Import`),
        // from the moment there is a topic to read; gone with this thread, or with the
        // session (so with this bridge).
        let _token = session
            .liveliness()
            .declare_token(wire::exporter_token(self.key, &self.origin))
            .wait()
            .map_err(|e| {
                tracing::warn!(key = self.key, "cannot declare the exporter's token: {e}");
            });
        tracing::info!(topic = self.topic, key = self.key, "exporting");
        let mut idle_pause = Duration::from_millis(1);
        let mut burst = Burst::new();
        while !self.stop.load(Ordering::Relaxed) {
            // Lossless: leave the samples in the topic (and so hold its publisher back)
            // while nobody on the network would receive them.
            if self.holds(out) {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            let removed = match next_spinning(&source, self.spin) {
                Ok(Next::Sample(got)) => {
                    self.stage(&mut burst, &source, got);
                    false
                }
                Ok(Next::Idle) => continue,
                // A topic removed while the bridge read it: its publishers are gone,
                // and new ones publish on whatever the name names now (a topic made
                // again, or one this makes). A removed topic whose publisher lives on
                // is still read: it may have subscribers left.
                Ok(Next::NoPublisher)
                    if name_checked.elapsed() >= NAME_CHECK && {
                        name_checked = Instant::now();
                        source.is_still_named() == Some(false)
                    } =>
                {
                    true
                }
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
            };
            if removed {
                drop(source);
                let Some(again) =
                    open_retrying(&what, self.stop, || Source::open(self.topic, self.settings))
                else {
                    return;
                };
                source = again;
                tracing::info!(
                    topic = self.topic,
                    "the topic was removed: exporting what its name names now"
                );
                continue;
            }
            idle_pause = Duration::from_millis(1);
            // Everything else the topic holds now, without waiting: one packed put
            // for the other bridges, and the one-by-one puts back to back, as fast as
            // an application's own put loop, so zenoh's transmission task finds
            // several in a batch instead of being woken for each one.
            let mut failed = None;
            while !burst.full() {
                match source.next(Duration::ZERO) {
                    Ok(Next::Sample(got)) => self.stage(&mut burst, &source, got),
                    Ok(Next::Idle | Next::NoPublisher) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // The samples taken are no longer in the topic's ring (a block-mode
            // publisher has its room back before the puts may block); the kept ones
            // are still held, until zenoh has copied them.
            self.put(out, &mut burst);
            if let Some(e) = failed {
                tracing::error!(topic = self.topic, "{e}; export stopped");
                return;
            }
        }
    }

    /// Lossless, and nobody on the network would receive a sample now: samples are
    /// held (in the topic, or in the burst taken) rather than put.
    fn holds(&self, out: &Outlets<'_>) -> bool {
        self.settings.lossless && !out.plain() && !out.packed()
    }

    /// Puts one burst: packed where bridges listen, one by one where zenoh clients
    /// do (both, or either, or neither: a lossy export drops what nobody hears).
    fn put(&self, out: &Outlets<'_>, burst: &mut Burst) {
        if burst.staged.is_empty() {
            return;
        }
        burst.close();
        // Lossless: a burst taken while someone listened (the check before the
        // wait for the first sample) that nobody hears now (a link went down
        // meanwhile) is held until someone does again: put now, it would be lost
        // with nobody told. What was put before zenoh saw the peer go is reported
        // as a gap by the importing side.
        while self.holds(out) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let (packed, plain) = (out.packed(), out.plain());
        let mut put = false;
        if packed {
            match out
                .packed
                .put(burst.packed())
                .attachment(ZBytes::from(out.packed_tag.clone()))
                .wait()
            {
                Ok(()) => put = true,
                Err(e) => tracing::warn!(topic = self.topic, key = self.key, "put failed: {e}"),
            }
        }
        if plain {
            let staged = std::mem::take(&mut burst.staged);
            for s in &staged {
                let attachment = burst.tag(&Tag {
                    origin: self.origin,
                    seq: s.seq,
                });
                match out
                    .plain
                    .put(ZBytes::from(burst.payload(s)))
                    .attachment(ZBytes::from(attachment))
                    .wait()
                {
                    Ok(()) => put = true,
                    Err(e) => {
                        tracing::warn!(topic = self.topic, key = self.key, "put failed: {e}");
                    }
                }
            }
            burst.staged = staged;
        }
        if put {
            for s in &burst.staged {
                self.counters.add(s.len);
            }
        }
        burst.done();
    }

    /// Accounts for one sample read from the topic and, unless this bridge published
    /// it, adds it to the burst: a large one as it is (zenoh is handed the topic's
    /// chunk) while the topic leaves a hold for the next receive, any other copied
    /// (the one copy: zenoh's `put` must own its payload).
    fn stage(&self, burst: &mut Burst, source: &Source, got: Received<'_>) {
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
        if got.len() >= KEEP_FROM && source.can_keep() {
            burst.keep(seq, got.into_bytes());
        } else {
            burst.push(seq, &got);
        }
    }
}

struct Import {
    /// This bridge's exports of the same topic: subscribers of it that are not
    /// readers of what this imports.
    siblings: usize,
    /// Ids (hex) of the bridges whose packed puts reached this import.
    packed_from: Mutex<HashSet<String>>,
    key: String,
    topic: String,
    settings: TopicSettings,
    origin: Origin,
    own: Own,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// What an import's callbacks change.
struct ImportState {
    sink: Sink,
    gaps: Gaps,
    /// What was published from each bridge's packed puts: the one-by-one copies of
    /// those samples (for zenoh's clients) are not published again.
    packed: PackedSeen,
    dropped_too_large: bool,
    malformed: Quiet,
    unattributed: Quiet,
}

type Shared = Arc<Mutex<ImportState>>;

/// Whether an import of `key` withdraws its subscription to the plain key: never for
/// a key with wildcards (it may match keys no bridge exports, which zenoh clients put
/// to); otherwise when some bridge other than this one (`own`) exports the key and
/// every such bridge has already sent packed puts here (so it knows of this import's
/// packed subscription, and withdrawing loses none of its one-by-one puts).
fn withdraws<'a>(
    key: &str,
    exporters: impl IntoIterator<Item = &'a str>,
    own: &str,
    packed_from: &HashSet<String>,
) -> bool {
    if wire::has_wildcards(key) {
        return false;
    }
    let mut any = false;
    for origin in exporters {
        if origin == own {
            continue;
        }
        if !packed_from.contains(origin) {
            return false;
        }
        any = true;
    }
    any
}

/// Replaces the exporting bridges an import knows of with what zenoh's liveliness
/// tokens say now (a token's update may come after a later one: each is delivered
/// by a task of its own).
fn reconcile(session: &Session, key: &str, own: &str, exporters: &Mutex<HashMap<String, String>>) {
    let Ok(replies) = session
        .liveliness()
        .get(wire::exporter_tokens(key))
        .timeout(Duration::from_secs(1))
        .wait()
    else {
        return;
    };
    let mut now = HashMap::new();
    while let Ok(reply) = replies.recv() {
        if let Ok(token) = reply.result() {
            let name = token.key_expr().as_str();
            let origin = wire::token_origin(name);
            if origin != own {
                now.insert(name.to_owned(), origin.to_owned());
            }
        }
    }
    *exporters.lock().unwrap_or_else(|p| p.into_inner()) = now;
}

/// Logs a recurring complaint at most once a second, with how many were not logged.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<Instant>,
    held: u64,
}

impl Quiet {
    /// Whether to log now, and how many were held back since the last log.
    fn now(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// Most bridges an import remembers as having sent it packed puts.
const PACKED_FROM_MAX: usize = 1024;

/// How often an import asks zenoh for the exporting bridges' tokens afresh (the
/// liveliness subscription's updates come by separate tasks, not always in order).
const RECONCILE: Duration = Duration::from_secs(2);

impl Import {
    /// Becomes the local topic's publisher, then subscribes with callbacks that
    /// publish each sample from zenoh's receiving task (no thread hop; in lossless
    /// mode a full topic holds that task, and so the network, back):
    ///
    /// * to the key's packed form, always: other bridges' samples;
    /// * to the key itself: zenoh clients' own puts, and the samples of a bridge
    ///   that does not pack. For a key without wildcards this subscription is
    ///   withdrawn while every bridge that exports the key (their liveliness tokens
    ///   tell) has already sent packed puts here: each then sees nobody on the plain
    ///   key and puts only packed. zenoh clients' own puts to the key are not
    ///   imported meanwhile. (A wildcard import keeps it: it may match keys no
    ///   bridge exports; bridges exporting into it then put both forms, and the
    ///   second copies are dropped by number.)
    fn run(self, session: &Session) -> Result<(), String> {
        let what = format!("import {} -> {}", self.key, self.topic);
        let Some((sink, first)) = open_retrying(&what, &self.stop, || {
            Sink::open(&self.topic, &self.settings)
        }) else {
            return Ok(());
        };
        // Release pairs with the export's Acquire load.
        self.own.store(first, Ordering::Release);
        let state: Shared = Arc::new(Mutex::new(ImportState {
            sink,
            gaps: Gaps::default(),
            packed: PackedSeen::default(),
            dropped_too_large: false,
            malformed: Quiet::default(),
            unattributed: Quiet::default(),
        }));
        let key = self.key.clone();
        let me = Arc::new(self);
        let (ctx, st) = (me.clone(), state.clone());
        let packed = session
            .declare_subscriber(wire::packed_key(&key))
            .allowed_origin(Locality::Remote)
            .callback(move |sample| ctx.on_packed(&st, &sample))
            .wait()
            .map_err(|e| format!("--import {key}: cannot subscribe to the key: {e}"))?;
        // The exporting bridges of the key (token name -> bridge id), not this one.
        let own = wire::origin_hex(&me.origin);
        let exporters = Arc::new(Mutex::new(HashMap::<String, String>::new()));
        let tokens = if wire::has_wildcards(&key) {
            None
        } else {
            let (ex, own) = (exporters.clone(), own.clone());
            let declared = session
                .liveliness()
                .declare_subscriber(wire::exporter_tokens(&key))
                .history(true)
                .callback(move |token| {
                    let name = token.key_expr().as_str();
                    let origin = wire::token_origin(name);
                    if origin == own {
                        return;
                    }
                    let mut ex = ex.lock().unwrap_or_else(|p| p.into_inner());
                    match token.kind() {
                        SampleKind::Put => ex.insert(name.to_owned(), origin.to_owned()),
                        SampleKind::Delete => ex.remove(name),
                    };
                })
                .wait()
                .map_err(|e| format!("--import {key}: cannot subscribe to the key: {e}"))?;
            Some(declared)
        };
        let mut plain: Option<zenoh::pubsub::Subscriber<()>> = None;
        // Whether the plain subscription was withdrawn at the last look (None: not yet).
        let mut before: Option<bool> = None;
        let mut reconciled = Instant::now();
        let mut name_checked = Instant::now();
        while !me.stop.load(Ordering::Relaxed) {
            if tokens.is_some() && reconciled.elapsed() >= RECONCILE {
                reconciled = Instant::now();
                reconcile(session, &key, &own, &exporters);
            }
            if name_checked.elapsed() >= NAME_CHECK {
                name_checked = Instant::now();
                me.follow_the_name(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
            }
            let withdraw = {
                let ex = exporters.lock().unwrap_or_else(|p| p.into_inner());
                let from = me.packed_from.lock().unwrap_or_else(|p| p.into_inner());
                withdraws(&key, ex.values().map(String::as_str), &own, &from)
            };
            if before != Some(withdraw) {
                if withdraw {
                    if let Some(s) = plain.take() {
                        let _ = s.undeclare().wait();
                    }
                    tracing::info!(
                        key,
                        "the bridges that export the key send it packed: zenoh clients' \
                         puts to it are not imported while they do"
                    );
                } else {
                    let (ctx, st) = (me.clone(), state.clone());
                    match session
                        .declare_subscriber(key.clone())
                        .allowed_origin(Locality::Remote)
                        .callback(move |sample| ctx.on_plain(&st, &sample))
                        .wait()
                    {
                        Ok(s) => plain = Some(s),
                        Err(e) => {
                            tracing::warn!(key, "cannot subscribe to the key: {e}; retrying");
                            thread::sleep(RETRY);
                            continue;
                        }
                    }
                    if before.is_some() {
                        tracing::info!(
                            key,
                            "no bridge sends the key packed now: zenoh clients' puts to \
                             it are imported again"
                        );
                    }
                }
                if before.is_none() {
                    tracing::info!(key = me.key, topic = me.topic, "importing");
                }
                before = Some(withdraw);
            }
            thread::sleep(TICK);
        }
        if let Some(s) = plain {
            let _ = s.undeclare().wait();
        }
        if let Some(t) = tokens {
            let _ = t.undeclare().wait();
        }
        let _ = packed.undeclare().wait();
        Ok(())
    }

    /// Looks whether the topic this publishes on was removed (`shmipc rm`) with no
    /// subscriber left but this bridge's own exports of it; if so becomes the
    /// publisher of what its name names now (made if missing), since new
    /// subscribers open the name and would otherwise hear nothing. One try; the
    /// next look tries again.
    fn follow_the_name(&self, st: &mut ImportState) {
        if st.sink.is_still_named() != Some(false) || st.sink.subscribers() > self.siblings {
            return;
        }
        match Sink::open(&self.topic, &self.settings) {
            Ok((sink, first)) => {
                // Before the first send on the new topic: an export of the same topic
                // in this bridge skips from here on. It may still be reading the old
                // topic, whose samples of ours are numbered from the old threshold
                // on: the lower of the two covers both (at worst a sample published
                // on the new topic before we became its publisher is not exported).
                // Release pairs with the export's Acquire load.
                let old = self.own.load(Ordering::Relaxed);
                self.own.store(first.min(old), Ordering::Release);
                st.sink = sink;
                tracing::info!(
                    topic = self.topic,
                    "the topic was removed: importing into what its name names now"
                );
            }
            Err(e) => tracing::debug!(topic = self.topic, "cannot follow the topic's name: {e}"),
        }
    }

    /// Lossless, and nobody here to read what comes: waits (and so holds the network
    /// back), following the topic's name meanwhile (the callbacks hold the state:
    /// the import's own looks wait for this one). Out of the per-sample path, which
    /// reads no clock.
    #[cold]
    fn wait_for_a_subscriber(&self, st: &mut ImportState) {
        let mut name_checked = Instant::now();
        while st.sink.subscribers() == 0 && !self.stop.load(Ordering::Relaxed) {
            if name_checked.elapsed() >= NAME_CHECK {
                name_checked = Instant::now();
                self.follow_the_name(st);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Accounts for a bridge's sample number, reporting gaps.
    fn account(&self, st: &mut ImportState, key: &str, tag: Tag) {
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

    /// A packed put of another bridge: every record, in order.
    fn on_packed(&self, state: &Shared, sample: &zenoh::sample::Sample) {
        let Some(origin) = sample
            .attachment()
            .and_then(|a| wire::packed_origin(&a.to_bytes()))
        else {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(held) = st.unattributed.now() {
                tracing::warn!(
                    key = sample.key_expr().as_str(),
                    held_back = held,
                    "a put on a bridges' key without a bridge's attachment: dropped"
                );
            }
            return;
        };
        if origin == self.origin {
            return; // our own put (zenoh routed it back): never re-published
        }
        let key = sample
            .key_expr()
            .as_str()
            .strip_suffix(wire::PACKED)
            .and_then(|k| k.strip_suffix('/'))
            .unwrap_or_else(|| sample.key_expr().as_str());
        let packed = wire::Packed::new(sample.payload().slices());
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        match packed.check() {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                if let Some(held) = st.malformed.now() {
                    tracing::error!(
                        key,
                        held_back = held,
                        "{e}: a malformed packed put, dropped whole"
                    );
                }
                return;
            }
        }
        {
            let mut from = self.packed_from.lock().unwrap_or_else(|p| p.into_inner());
            if from.len() >= PACKED_FROM_MAX {
                from.clear();
            }
            from.insert(wire::origin_hex(&origin));
        }
        let mut last = None;
        for r in packed.records() {
            self.account(&mut st, key, Tag { origin, seq: r.seq });
            last = Some(r.seq);
            // Straight from zenoh's slices into a loaned chunk: the only copy here.
            if !self.publish(&mut st, r.len, || packed.parts(r.start, r.len)) {
                break;
            }
        }
        if let Some(seq) = last {
            st.packed.record(key, origin, seq);
        }
    }

    /// A put on the key itself: a zenoh client's, or a bridge's that does not pack.
    fn on_plain(&self, state: &Shared, sample: &zenoh::sample::Sample) {
        let tag = sample.attachment().and_then(|a| Tag::decode(&a.to_bytes()));
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tag) = tag {
            let key = sample.key_expr().as_str();
            if tag.origin == self.origin {
                return; // ours, routed back
            }
            // The second copy of a sample this import published from the bridge's
            // packed put (`PackedSeen`). Not every one-by-one put of a bridge that
            // packs: it may see this import's plain subscription before its packed
            // one (after a reconnection) and put a burst one by one only.
            if st.packed.covers(key, &tag) {
                return;
            }
            self.account(&mut st, key, tag);
        }
        let payload = sample.payload();
        // zenoh's slices (one, unless the sample came in fragments) are copied
        // straight into a loaned chunk: the only copy on this side.
        self.publish(&mut st, payload.len(), || payload.slices());
    }

    /// Publishes one sample on the local topic; `false` when the bridge is stopping.
    fn publish<'p, I: IntoIterator<Item = &'p [u8]>>(
        &self,
        st: &mut ImportState,
        len: usize,
        parts: impl Fn() -> I,
    ) -> bool {
        if self.settings.lossless && st.sink.subscribers() == 0 {
            self.wait_for_a_subscriber(st);
        }
        loop {
            match st.sink.send(len, parts(), TICK) {
                Ok(Sent::Yes) => {
                    self.counters.add(len);
                    return true;
                }
                Ok(Sent::Full) if !self.stop.load(Ordering::Relaxed) => {}
                Ok(Sent::Full) => return false,
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
                    return true;
                }
                Err(e) => {
                    tracing::error!(topic = self.topic, "{e}; sample dropped");
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_subscription_is_withdrawn_only_when_nothing_is_lost() {
        let from = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        // No exporter, or only this bridge's own export: keep it.
        assert!(!withdraws("k", [], "me", &from(&[])));
        assert!(!withdraws("k", ["me"], "me", &from(&["me"])));
        // An exporter that has not sent packed puts here yet might still put a
        // burst one by one only: keep it.
        assert!(!withdraws("k", ["a"], "me", &from(&[])));
        assert!(withdraws("k", ["a"], "me", &from(&["a"])));
        assert!(withdraws("k", ["a", "me"], "me", &from(&["a"])));
        assert!(!withdraws("k", ["a", "b"], "me", &from(&["a"])));
        assert!(withdraws("k", ["a", "b"], "me", &from(&["a", "b"])));
        // A wildcard import may cover keys nobody exports: never.
        assert!(!withdraws("k/**", ["a"], "me", &from(&["a"])));
        assert!(!withdraws("k/*", ["a"], "me", &from(&["a"])));
    }

    /// Copied and kept samples, in every order, make one packed payload whose
    /// records are the samples in order, and each one-by-one payload is its sample;
    /// a kept sample is not copied, and the buffers are reused after `done`.
    #[test]
    fn a_burst_mixes_copied_and_kept_samples() {
        let sample = |seq: u64, len: usize| -> Vec<u8> {
            (0..len).map(|i| (seq as usize * 7 + i) as u8).collect()
        };
        let mut burst = Burst::new();
        for round in 0..3u64 {
            // Every pattern of copied (false) and kept (true) for 4 samples.
            for pattern in 0..16u32 {
                let mut kept_ptrs = Vec::new();
                let mut expect = Vec::new();
                for i in 0..4u64 {
                    let seq = round * 1000 + u64::from(pattern) * 10 + i;
                    let bytes = sample(seq, 1 + (i as usize * 37) % 90);
                    if pattern & (1 << i) != 0 {
                        let owned = Bytes::from(bytes.clone());
                        kept_ptrs.push(owned.as_ptr());
                        burst.keep(seq, owned);
                    } else {
                        burst.push(seq, &bytes);
                    }
                    expect.push((seq, bytes));
                }
                burst.close();
                let packed = burst.packed();
                let flat = packed.to_bytes().into_owned();
                let got = wire::unpack(&flat).expect("a well-formed packed payload");
                let got: Vec<_> = got.into_iter().map(|(q, b)| (q, b.to_vec())).collect();
                assert_eq!(got, expect, "pattern {pattern:04b}");
                for p in &kept_ptrs {
                    assert!(
                        packed.slices().any(|s| s.as_ptr() == *p),
                        "a kept sample was copied (pattern {pattern:04b})"
                    );
                }
                for (s, (seq, bytes)) in burst.staged.iter().zip(&expect) {
                    assert_eq!((s.seq, &burst.payload(s)[..]), (*seq, &bytes[..]));
                }
                drop(packed);
                burst.done();
                assert!(burst.parts.is_empty() && burst.staged.is_empty());
            }
        }
    }
}
