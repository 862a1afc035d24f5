//! The cache server host: the production host policy — the core's sans-io
//! [`Driver`] and [`Gate`] — over `turmoil` sockets, so every simulated
//! run exercises the same read/process/write/close decisions as the WASI
//! server.
//!
//! One event-loop task owns the cache (a [`Cache`]: one [`Store`], or
//! several shards of one, as the native server splits it), the `Driver`,
//! the `Gate` and every accepted socket, and runs passes in the order documented on
//! [`Driver`]: `begin_pass` → accept (asking the gate) → read what the
//! driver allows → `take_runnable` + `process` → write what it wants
//! written, among the connections `take_changed` lists and those whose
//! socket became writable → `on_written` → `poll_close` → sleep until the
//! next readiness
//! event or the earliest of the driver's, the shards' and the gate's
//! deadlines.
//!
//! turmoil sockets are async; readiness is bridged to the loop the way an
//! OS bridges it to `poll`. Each socket has two wakers (readable,
//! writable). The loop reads with `poll_read` and writes with `poll_write`
//! under those wakers: a `Pending` result registers the waker with the
//! simulated socket, and when the network later delivers data or returns
//! send credit the waker records an event and rings the loop's bell. So:
//!
//! * a socket is only polled when the driver wants to read from or write to
//!   it, with the sizes it asks for (`read_len`; gathered writes of at
//!   most 64 KiB as under WASI, a few per pass);
//! * a client that does not read fills its simulated send buffer and only
//!   that socket stalls (`Pending`); the loop serves everyone else;
//! * the loop sleeps unless something is known to be ready: an event, a
//!   socket that may still hold data the driver will take, an accepted
//!   socket, or a deadline. Passes with nothing to do are counted
//!   ([`HostProbe::empty_passes`]) so tests can see there is no busy
//!   polling.
//!
//! Everything runs on the host's single-threaded runtime; the order of
//! events is the simulation's, sockets are visited in table order, and no
//! hash map is iterated, so a seed replays exactly. Time is turmoil's
//! simulated clock and a fixed simulated epoch, never the OS.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use turmoil::net::{TcpListener, TcpStream};
use wasmcached_core::driver::{AcceptError, Admission, DriverStats, TOO_MANY_CONNECTIONS};
use wasmcached_core::shards::MAX_SHARDS;
use wasmcached_core::{Clock, Config, ConnId, Driver, DriverConfig, Gate};

use crate::cache::Cache;

#[cfg(doc)]
use wasmcached_core::Store;

use crate::plant::{Plant, Planted};
use crate::trace::{now, Shared};
use crate::warm::Disk;

/// Port the cache listens on.
pub const PORT: u16 = 11211;
/// Unix time the simulated world starts at.
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// Largest single write by default: what one WASI write takes.
pub const WRITE_MAX: usize = 64 * 1024;
/// Writes per connection per pass (the WASI server's bound: a large reply
/// goes out in a few writes before other connections get their turn).
const WRITES_PER_PASS: usize = 4;

/// The host's clocks, as the core wants them: the monotonic clock is sim
/// time, the unix clock the simulated epoch plus sim time plus the host's
/// offset (a skewed or jumped wall clock; the clients' clocks have none).
fn clock(unix_offset: i64) -> Clock {
    let el = now();
    let unix = (EPOCH_SECS + el.as_secs()).saturating_add_signed(unix_offset);
    Clock::new(el.as_millis() as u64, unix)
}

/// A server's wall-clock offset from the clients' (seconds), shared with
/// the scenario so it can move the clock mid-run. The store reads the unix
/// clock once, when it starts (memcached converts absolute exptimes with
/// the time it started and its monotonic clock since), so a jump shows at
/// the next restart.
pub type ClockOffset = Rc<std::cell::Cell<i64>>;

/// What one server host saw, for scenarios that check the host itself.
/// Updated at the end of every pass.
#[derive(Clone, Debug, Default)]
pub struct HostProbe {
    /// Event-loop passes run.
    pub passes: u64,
    /// Passes that found nothing to do (no event, read, request, write,
    /// close, accept or expiry). Many of them would mean busy polling.
    pub empty_passes: u64,
    /// Largest [`Driver::held_bytes`] sampled: after `begin_pass` (where
    /// the driver enforces its limit), after processing (the pass's peak)
    /// and at the end of the pass.
    pub peak_held: usize,
    /// Samples (three per pass, as for `peak_held`) above the driver's
    /// memory limit.
    pub over_limit: u64,
    /// Samples after `begin_pass`, where the driver enforces its limit,
    /// above it. Within a pass processing may take the driver over until
    /// the next pass sheds; at a pass's start it must be within.
    pub over_limit_at_start: u64,
    /// The driver's memory limit.
    pub memory_limit: usize,
    /// Connections refused at the connection limit.
    pub refused: u64,
    /// Connections admitted.
    pub admitted: u64,
    /// The driver's counters, as of the last pass.
    pub stats: DriverStats,
}

/// Shared handle to a [`HostProbe`].
pub type Probe = Rc<RefCell<HostProbe>>;

/// How a server host is set up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The whole cache's settings (each shard gets its share, see
    /// [`Config::for_shard`]).
    pub store: Config,
    /// Shards the cache is split into, 1 to [`MAX_SHARDS`] (others are
    /// taken as the nearest): 1 is one plain store.
    pub shards: usize,
    /// The driver's settings (connection memory, read sizes, idle timeout).
    pub driver: DriverConfig,
    /// Most connections served at once (`-c`).
    pub max_connections: usize,
    /// A planted bug (see [`Plant`]).
    pub plant: Option<Plant>,
    /// Largest single write. The simulated network carries each write as
    /// one segment and bounds the segments in flight per connection (the
    /// simulation's `tcp_capacity`), so the two together are the socket
    /// send buffer: how much a client that stops reading can park in the
    /// network before the server's writes stall.
    pub write_max: usize,
    /// Where to publish what the host saw.
    pub probe: Option<Probe>,
    /// The wall clock's offset, if it is skewed.
    pub clock_offset: Option<ClockOffset>,
    /// Storage that survives bounces, for warm restarts (see [`Disk`]):
    /// the host starts from the snapshot on it, and writes one and stops
    /// serving when a graceful stop is asked for.
    pub disk: Option<Disk>,
}

impl HostConfig {
    /// memcached's defaults (`-m 64`, `-c 1024`, 64 MiB of connection
    /// memory) with a fixed hash seed, so runs replay.
    pub fn standard(plant: Option<Plant>) -> HostConfig {
        HostConfig {
            store: Config {
                hash_seed: 7,
                memory_limit: 64 << 20,
                ..Config::default()
            },
            shards: 1,
            driver: DriverConfig::default(),
            max_connections: 1024,
            plant,
            write_max: WRITE_MAX,
            probe: None,
            clock_offset: None,
            disk: None,
        }
    }
}

/// Runs a cache server named `name` with the standard settings until the
/// simulation ends or bounces it.
pub async fn serve(name: &'static str, rec: Shared, plant: Option<Plant>) -> turmoil::Result {
    serve_with(name, rec, HostConfig::standard(plant)).await
}

/// Runs a cache server named `name` with `cfg` until the simulation ends
/// or bounces it.
pub async fn serve_with(name: &'static str, rec: Shared, cfg: HostConfig) -> turmoil::Result {
    let offset = cfg.clock_offset.as_ref().map_or(0, |o| o.get());
    rec.borrow_mut().restart(name, now(), offset);
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    let ready = Arc::new(Readiness::default());
    let backlog: Backlog = Rc::new(RefCell::new(VecDeque::new()));
    let (r, b) = (ready.clone(), backlog.clone());
    // turmoil has no non-blocking accept: this task is the listen backlog.
    // The loop takes from it only while the gate wants to accept.
    tokio::task::spawn_local(async move {
        loop {
            let got = listener.accept().await.map(|(s, _)| s);
            b.borrow_mut().push_back(got);
            r.bell.notify_one();
        }
    });
    // Outside tokio's cooperative budget, like the WASI runner's guest:
    // one task doing every socket's I/O would run out of budget mid-pass,
    // and a socket would report `Pending` with data queued.
    tokio::task::unconstrained(EventLoop::new(cfg, ready, backlog, name, rec).run()).await
}

/// Accepted sockets (or accept failures) not yet taken by the loop.
type Backlog = Rc<RefCell<VecDeque<std::io::Result<TcpStream>>>>;

/// Readiness events recorded by socket wakers, and the loop's bell.
#[derive(Default)]
struct Readiness {
    events: Mutex<Vec<Event>>,
    bell: Notify,
}

/// A socket became readable or writable. `token` names the socket, so an
/// event for a closed one (whose table slot was reused) is ignored.
#[derive(Clone, Copy, Debug)]
struct Event {
    slot: usize,
    token: u64,
    write: bool,
}

/// One direction of one socket's readiness, as a waker: waking it records
/// its event and rings the loop's bell.
struct SockWaker {
    ready: Arc<Readiness>,
    event: Event,
}

impl Wake for SockWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.ready.events).push(self.event);
        self.ready.bell.notify_one();
    }
}

/// Adds a connection to the pass's writes, once.
fn queue_write(to_write: &mut Vec<ConnId>, s: &mut Sock) {
    if !s.queued {
        s.queued = true;
        to_write.push(s.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An accepted socket and what the loop knows about it.
struct Sock {
    id: ConnId,
    token: u64,
    stream: TcpStream,
    /// Data may be waiting: no read has returned `Pending` since the last
    /// readable event (a new socket starts readable).
    readable: bool,
    /// The last write returned `Pending`: wait for a writable event.
    stalled: bool,
    /// In the loop's `to_write`.
    queued: bool,
    read_waker: Waker,
    write_waker: Waker,
    /// The planted bug's request framing, when it is on.
    framer: Option<Vec<u8>>,
    /// The client's end, for the record of closed connections.
    peer: Option<std::net::SocketAddr>,
}

/// The server's one event loop: the cache, the driver, the gate and the
/// socket table, run one pass at a time (see the module documentation).
struct EventLoop {
    cfg: HostConfig,
    cache: Cache,
    driver: Driver,
    gate: Gate,
    ready: Arc<Readiness>,
    backlog: Backlog,
    /// Sockets by [`ConnId::index`].
    socks: Vec<Option<Sock>>,
    next_token: u64,
    buf: Vec<u8>,
    gather: Vec<u8>,
    events: Vec<Event>,
    runnable: Vec<ConnId>,
    /// From [`Driver::take_changed`]: as the WASI server does, a pass
    /// writes only the connections the driver lists and those whose
    /// socket became writable, so a change the driver fails to list shows
    /// here as a client that waits for ever.
    changed: Vec<ConnId>,
    to_write: Vec<ConnId>,
    /// The planted bug, when there is one.
    planted: Option<Planted>,
    name: &'static str,
    rec: Shared,
    /// Evictions already recorded as disruptions.
    evictions: u64,
    /// The plant's firings already recorded.
    fired: u64,
    /// The wall clock's offset this start (seconds).
    unix_offset: i64,
}

impl EventLoop {
    fn new(
        cfg: HostConfig,
        ready: Arc<Readiness>,
        backlog: Backlog,
        name: &'static str,
        rec: Shared,
    ) -> EventLoop {
        let unix_offset = cfg.clock_offset.as_ref().map_or(0, |o| o.get());
        let shards = cfg.shards.clamp(1, MAX_SHARDS);
        let mut cache = match &cfg.disk {
            Some(disk) => disk.restore(cfg.store.clone(), shards, clock(unix_offset)),
            None => Cache::new(cfg.store.clone(), shards, clock(unix_offset)),
        };
        for s in cache.stores_mut() {
            s.host_stats_mut().conn_memory_limit = cfg.driver.memory_limit as u64;
        }
        let driver = Driver::new(cfg.driver.clone(), &cfg.store);
        let gate = Gate::new(cfg.max_connections);
        let chunk = cfg.driver.read_chunk.max(cfg.driver.first_read);
        if let Some(p) = &cfg.probe {
            *p.borrow_mut() = HostProbe {
                memory_limit: cfg.driver.memory_limit,
                ..HostProbe::default()
            };
        }
        EventLoop {
            cache,
            driver,
            gate,
            ready,
            backlog,
            socks: Vec::new(),
            next_token: 0,
            buf: vec![0; chunk],
            gather: Vec::new(),
            events: Vec::new(),
            runnable: Vec::new(),
            changed: Vec::new(),
            to_write: Vec::new(),
            planted: cfg.plant.map(Planted::new),
            cfg,
            name,
            rec,
            evictions: 0,
            fired: 0,
            unix_offset,
        }
    }

    async fn run(mut self) -> turmoil::Result {
        loop {
            let now = clock(self.unix_offset);
            if let Some(disk) = &self.cfg.disk {
                if disk.stop_requested() {
                    disk.save(&mut self.cache, now);
                    let line = format!("{} wrote its snapshot", self.name);
                    self.rec.borrow_mut().event(crate::trace::now(), &line);
                    // Stopped: nothing more is served until the scenario
                    // bounces the host.
                    return std::future::pending().await;
                }
            }
            if self.work_now(now.mono_ms) {
                // Back-to-back passes need no yield: the network delivers
                // between the host's turns, so while this task runs no
                // socket or the backlog can gain anything; each pass ends
                // the work it found (reads reach `Pending`, writes stall
                // or finish) and the loop soon sleeps below.
                self.pass();
                continue;
            }
            // Nothing is ready: sleep until a socket or the backlog rings
            // the bell, or the next deadline. A ring with nothing behind it
            // (a stale permit) only leads back here.
            let bell = self.ready.bell.notified();
            let stop = async {
                match &self.cfg.disk {
                    Some(disk) => disk.stop_asked().await,
                    None => std::future::pending().await,
                }
            };
            match self.deadline() {
                Some(t) => {
                    let wait = Duration::from_millis(t.saturating_sub(now.mono_ms));
                    tokio::select! {
                        () = bell => {}
                        () = stop => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => tokio::select! {
                    () = bell => {}
                    () = stop => {}
                },
            }
        }
    }

    /// The earliest of the driver's, the shards' and the gate's deadlines.
    fn deadline(&self) -> Option<u64> {
        [
            self.driver.poll_timeout(),
            self.cache.poll_timeout(),
            self.gate.poll_timeout(),
            self.planted.as_ref().and_then(Planted::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the next pass has work without waiting: a deadline has
    /// passed, events or accepted sockets are waiting, or a socket may
    /// still hold data the driver wants (no read has returned `Pending`
    /// since it became readable: level-triggered, as `poll` reports it), or
    /// has output it can still write.
    fn work_now(&self, now_ms: u64) -> bool {
        if self.deadline().is_some_and(|t| t <= now_ms)
            || !lock(&self.ready.events).is_empty()
            || (!self.backlog.borrow().is_empty() && self.gate.wants_accept(now_ms))
        {
            return true;
        }
        self.socks.iter().flatten().any(|s| {
            (s.readable && self.driver.interest(s.id).read) || (!s.stalled && self.has_output(s.id))
        })
    }

    /// The driver wants the connection's output written and some of it
    /// can be sent now (replies are held back while a rejected data block
    /// is discarded).
    fn has_output(&self, id: ConnId) -> bool {
        self.driver.wants_write(id) && self.driver.output(id).next().is_some()
    }

    /// One pass, in the order documented on [`Driver`].
    fn pass(&mut self) {
        let now = clock(self.unix_offset);
        let mut busy = false;
        self.driver.begin_pass(now.mono_ms);
        let after_begin = self.driver.held_bytes();
        busy |= self.take_events();
        busy |= self.accept(now.mono_ms);
        for i in 0..self.socks.len() {
            busy |= self.read(i);
        }
        busy |= self.process(now);
        let after_process = self.driver.held_bytes();
        busy |= self.write_listed();
        busy |= self.close_finished();
        if let Some(p) = &self.planted {
            if p.fired > self.fired {
                self.rec.borrow_mut().plant_fired += p.fired - self.fired;
                self.fired = p.fired;
            }
        }
        self.publish([after_begin, after_process], busy);
    }

    /// Applies readiness events to the socket table.
    fn take_events(&mut self) -> bool {
        std::mem::swap(&mut self.events, &mut lock(&self.ready.events));
        let any = !self.events.is_empty();
        for e in self.events.drain(..) {
            let Some(s) = self.socks.get_mut(e.slot).and_then(Option::as_mut) else {
                continue;
            };
            if s.token != e.token {
                continue;
            }
            if e.write {
                s.stalled = false;
                queue_write(&mut self.to_write, s);
            } else {
                s.readable = true;
                if !self.driver.interest(s.id).read && peer_reset(s) {
                    // What `poll` reports as POLLERR, and the WASI server
                    // learns from its next write: the peer reset the
                    // connection. turmoil wakes no writer on a reset, so
                    // without this a stalled connection would never close.
                    self.driver.on_closed(s.id);
                }
            }
        }
        any
    }

    /// Takes accepted sockets from the backlog while the gate accepts:
    /// admitted ones enter the driver, refused ones get memcached's
    /// refusal (best effort) and are closed.
    fn accept(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        while self.gate.wants_accept(now_ms) {
            let Some(got) = self.backlog.borrow_mut().pop_front() else {
                break;
            };
            any = true;
            let stream = match got {
                Ok(s) => s,
                Err(_) => {
                    self.gate.accept_failed(AcceptError::Other, now_ms);
                    break;
                }
            };
            if self.gate.admit(self.driver.len()) == Admission::Refuse {
                let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                continue;
            }
            let id = self.driver.open(now_ms);
            let token = self.next_token;
            self.next_token += 1;
            let waker = |write| {
                Waker::from(Arc::new(SockWaker {
                    ready: self.ready.clone(),
                    event: Event {
                        slot: id.index(),
                        token,
                        write,
                    },
                }))
            };
            let peer = stream.peer_addr().ok();
            if let Some(p) = peer {
                self.rec.borrow_mut().accepted(self.name, p);
            }
            let sock = Sock {
                id,
                token,
                peer,
                stream,
                readable: true,
                stalled: false,
                queued: false,
                read_waker: waker(false),
                write_waker: waker(true),
                framer: self.planted.as_ref().map(|_| Vec::new()),
            };
            let i = id.index();
            if self.socks.len() <= i {
                self.socks.resize_with(i + 1, || None);
            }
            self.socks[i] = Some(sock);
        }
        any
    }

    /// Reads what the socket holds, as much as the driver allows: stops
    /// at `Pending` (the waker will say when more arrives), at a short read
    /// (the next pass reads on), or at end of stream.
    fn read(&mut self, i: usize) -> bool {
        let Some(s) = self.socks[i].as_mut() else {
            return false;
        };
        let id = s.id;
        let mut any = false;
        while s.readable {
            let want = self.driver.read_len(id).min(self.buf.len());
            if want == 0 {
                break;
            }
            any = true;
            let mut rb = ReadBuf::new(&mut self.buf[..want]);
            let mut cx = Context::from_waker(&s.read_waker);
            match Pin::new(&mut s.stream).poll_read(&mut cx, &mut rb) {
                Poll::Pending => s.readable = false,
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.driver.on_closed(id);
                        break;
                    }
                    match (s.framer.as_mut(), self.planted.as_mut()) {
                        (Some(pending), Some(p)) => {
                            let bytes = p.frame(
                                pending,
                                &self.buf[..n],
                                &mut self.cache,
                                clock(self.unix_offset),
                            );
                            if !bytes.is_empty() {
                                self.driver.on_read(id, &bytes);
                            }
                        }
                        _ => self.driver.on_read(id, &self.buf[..n]),
                    }
                    if n < want {
                        break;
                    }
                }
                Poll::Ready(Err(_)) => {
                    self.driver.on_closed(id);
                    break;
                }
            }
        }
        any
    }

    /// Runs the core for every connection the driver lists, then the
    /// expiry step of each shard that is due.
    fn process(&mut self, now: Clock) -> bool {
        self.driver.take_runnable(&mut self.runnable);
        let any = !self.runnable.is_empty();
        if any {
            self.refresh_host_stats(now);
        }
        for &id in &self.runnable {
            self.driver.process(id, &mut self.cache, now);
        }
        // One loop owns every shard: watchers are served in the pass that
        // produced their lines, so the wake-up masks are not needed.
        if self.driver.watching() {
            self.driver.pump_watchers(&mut self.cache);
            crate::cache::clear_log_wakeups(&mut self.cache);
        }
        let mut any = any;
        if let Some(p) = self.planted.as_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
                any |= p.handle_timeout(&mut self.cache, now);
            }
        }
        any |= self.cache.handle_timeout(now);
        // Evictions (in any shard) make any item of this server vanish
        // legally: the checkers learn when.
        let evicted = crate::cache::evictions(&self.cache);
        if evicted > self.evictions {
            self.evictions = evicted;
            let mut rec = self.rec.borrow_mut();
            let first = rec.seq();
            rec.disrupt(
                self.name,
                crate::trace::now(),
                first,
                crate::trace::Cause::Eviction,
            );
        }
        any
    }

    /// Writes the connections the driver lists as changed and those whose
    /// socket became writable.
    fn write_listed(&mut self) -> bool {
        self.changed.clear();
        self.driver.take_changed(&mut self.changed);
        for &id in &self.changed {
            if let Some(s) = self.socks[id.index()].as_mut() {
                queue_write(&mut self.to_write, s);
            }
        }
        let mut any = false;
        let mut queue = std::mem::take(&mut self.to_write);
        for &id in &queue {
            if let Some(s) = self.socks[id.index()].as_mut() {
                s.queued = false;
                any |= self.write(id.index());
            }
        }
        queue.clear();
        self.to_write = queue;
        any
    }

    /// Writes the connection's pending output, gathered into writes of at
    /// most [`HostConfig::write_max`], until it is written, the socket stalls, or
    /// [`WRITES_PER_PASS`] writes were made.
    fn write(&mut self, i: usize) -> bool {
        let Some(s) = self.socks[i].as_mut() else {
            return false;
        };
        let id = s.id;
        let mut any = false;
        for _ in 0..WRITES_PER_PASS {
            if s.stalled || !self.driver.wants_write(id) {
                break;
            }
            gather(
                &self.driver,
                id,
                self.cfg.write_max.max(1),
                &mut self.gather,
            );
            if self.gather.is_empty() {
                break;
            }
            any = true;
            let mut cx = Context::from_waker(&s.write_waker);
            match Pin::new(&mut s.stream).poll_write(&mut cx, &self.gather) {
                Poll::Pending => s.stalled = true,
                Poll::Ready(Ok(n)) => self.driver.on_written(id, n),
                Poll::Ready(Err(_)) => {
                    self.driver.on_closed(id);
                    break;
                }
            }
        }
        any
    }

    /// Closes the sockets of connections the driver is done with.
    fn close_finished(&mut self) -> bool {
        let mut any = false;
        while let Some(id) = self.driver.poll_close() {
            // Dropping both halves sends FIN (RST when unread data is left,
            // as a real stack does).
            if let Some(peer) = self.socks[id.index()].take().and_then(|s| s.peer) {
                self.rec.borrow_mut().closed(self.name, peer);
            }
            self.gate.connection_closed();
            any = true;
        }
        any
    }

    /// Copies the connection figures into every shard, so `stats` is
    /// exact whichever shard reports them.
    fn refresh_host_stats(&mut self, now: Clock) {
        let d = self.driver.stats();
        let open = d.connections as u64;
        let accepting = !self.gate.is_paused(now.mono_ms);
        for s in self.cache.stores_mut() {
            let h = s.host_stats_mut();
            h.curr_connections = open;
            h.connection_structures = h.connection_structures.max(open);
            h.total_connections = self.gate.accepted();
            h.rejected_connections = self.gate.rejected();
            h.listen_disabled_num = self.gate.listen_disabled_num();
            h.accepting_conns = accepting;
            h.conn_input_bytes = d.input_bytes as u64;
            h.conn_output_bytes = d.output_bytes as u64;
            h.conn_closed_for_memory = d.closed_for_memory;
        }
    }

    /// Publishes the pass's figures; `samples` are the driver's held bytes
    /// after `begin_pass` and after processing (the pass's peak: writes
    /// and closes only lower it).
    fn publish(&mut self, samples: [usize; 2], busy: bool) {
        let Some(p) = &self.cfg.probe else {
            return;
        };
        let mut p = p.borrow_mut();
        let held = self.driver.held_bytes();
        let limit = self.cfg.driver.memory_limit;
        p.passes += 1;
        p.empty_passes += u64::from(!busy);
        for h in samples.into_iter().chain([held]) {
            p.peak_held = p.peak_held.max(h);
            p.over_limit += u64::from(h > limit);
        }
        p.over_limit_at_start += u64::from(samples[0] > limit);
        p.refused = self.gate.rejected();
        p.admitted = self.gate.accepted();
        p.stats = self.driver.stats();
    }
}

/// Whether the peer reset the connection, asked without consuming input
/// (a peek; it registers the read waker again when nothing is there).
/// End of stream does not count: the driver learns of it from a read, once
/// it wants to read again, as from a real socket. A peek that finds data
/// sets one segment aside, which frees one send credit of the client: a
/// receive buffer one segment larger, nothing more.
fn peer_reset(s: &mut Sock) -> bool {
    let mut byte = [0u8; 1];
    let mut rb = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(&s.read_waker);
    matches!(s.stream.poll_peek(&mut cx, &mut rb), Poll::Ready(Err(_)))
}

/// Gathers the connection's pending output into `out`: up to `max` bytes,
/// copied in order across chunks.
fn gather(driver: &Driver, id: ConnId, max: usize, out: &mut Vec<u8>) {
    out.clear();
    for c in driver.output(id) {
        let room = max - out.len();
        if room == 0 {
            break;
        }
        out.extend_from_slice(&c[..c.len().min(room)]);
    }
}
