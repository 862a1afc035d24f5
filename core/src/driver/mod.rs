//! The policy of a socket host, sans-io: which connections to read,
//! process and write, how much, when to wake up, when to stop accepting,
//! and how much memory connections may hold.
//!
//! A host owns sockets, a clock and a [`Store`](crate::Store); it turns readiness into
//! calls on a [`Driver`] (one per event loop) and a [`Gate`] (one per
//! listener) and performs the I/O they ask for. The WASI server (wasm and
//! native workers) and the simulation's server host run this same code,
//! so a simulation exercises the production policy.

mod gate;
mod spares;
mod stats_id;
mod watchers;

use alloc::vec::Vec;

use crate::clock::Clock;
use crate::config::Config;
use crate::conn::{Connection, Progress};
use crate::observe::{CloseReason, Sampler};
use crate::shards::Shards;
use spares::Spares;

pub use gate::{AcceptError, Admission, Gate, ACCEPT_RETRY_MS, TOO_MANY_CONNECTIONS};

/// The reply a connection gets when it is shed to keep the server within
/// its connection memory budget (memcached's wording for allocation
/// failures).
const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory";

/// A connection never counts as one of the heaviest while it holds less
/// than this, however many connections share the budget.
const HEAVY_FLOOR: usize = 64 * 1024;

/// How long the driver may stay above three quarters of its memory limit
/// before it closes the heaviest connection.
const SHED_AFTER_MS: u64 = 1000;

/// How often idle connections are looked for, when `idle_timeout_ms` is set.
const IDLE_CHECK_MS: u64 = 1000;

/// Settings of a [`Driver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Bytes all connections of this driver may hold together: buffered
    /// input (including partly received values) and pending output. At
    /// three quarters of it the heaviest connections stop being read and
    /// processed; above it the heaviest is closed.
    pub memory_limit: usize,
    /// Bytes asked for by the first read from a socket in a pass. Under
    /// wasmtime-wasi's own streams a read allocates and zeroes a host
    /// buffer of the size asked for, so small requests are read with a
    /// small buffer and only a read that fills it asks for
    /// [`read_chunk`](DriverConfig::read_chunk) next.
    pub first_read: usize,
    /// Bytes asked for by later reads in the same pass.
    pub read_chunk: usize,
    /// Reads per connection per pass, so one busy client cannot starve the
    /// others.
    pub reads_per_pass: u32,
    /// Close connections that neither sent nor received anything for this
    /// long (memcached's `idle_timeout`); 0 keeps them forever.
    pub idle_timeout_ms: u64,
    /// Which of the host's event loops this driver serves (0 for the
    /// first), so the store can tell whom to wake for a watcher's log
    /// lines ([`Store::take_log_wakeups`](crate::Store::take_log_wakeups)).
    pub worker: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            memory_limit: 64 * 1024 * 1024,
            first_read: 4 * 1024,
            read_chunk: 64 * 1024,
            reads_per_pass: 4,
            idle_timeout_ms: 0,
            worker: 0,
        }
    }
}

/// Names one connection of a [`Driver`]. Valid from
/// [`Driver::open`] until [`Driver::poll_close`] returns it; the index may
/// be reused after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u32);

impl ConnId {
    /// A small dense index, for the host's socket table.
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Which readiness a host should wait for on a connection's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Wait until it is readable.
    pub read: bool,
    /// Wait until it is writable.
    pub write: bool,
}

/// Where a connection is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for (more of) a request.
    Reading,
    /// Complete requests are buffered and will run in the next pass.
    Processing,
    /// Held back by the memory limit: neither read nor run until the
    /// driver is back under three quarters of it; its output still drains.
    Paused,
    /// Its pending output reached the high-water mark: nothing is read or
    /// run until the client has taken some of it.
    BlockedOnOutput,
    /// Ending (`quit`, a fatal error, shed for memory): its last output is
    /// being written, then it closes.
    Draining,
    /// Closed; the host closes its socket at the end of the pass.
    Closing,
}

/// Counters a driver keeps, for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Connections served now.
    pub connections: usize,
    /// Bytes held by buffered input, over all connections.
    pub input_bytes: usize,
    /// Bytes held by pending output, over all connections.
    pub output_bytes: usize,
    /// Connections closed to stay within the memory limit.
    pub closed_for_memory: u64,
    /// Times a connection was held back because the driver was over
    /// three quarters of its memory limit.
    pub paused_for_memory: u64,
    /// Connections closed for being idle.
    pub closed_idle: u64,
}

struct Slot {
    conn: Connection,
    live: bool,
    /// `process` has work to do (new input, a yield, output drained).
    ready: bool,
    /// In `runnable`.
    queued: bool,
    /// In `parked`: ready, but held back by the memory limit.
    parked: bool,
    /// The last `process` stopped at the output high-water mark.
    blocked: bool,
    /// Must be closed now; in `to_close`.
    doomed: bool,
    /// Bytes this connection holds, as last measured.
    held: usize,
    /// The pass its `reads` count belongs to.
    read_pass: u64,
    reads: u32,
    last_active_ms: u64,
    /// A watcher whose log lines did not all fit its output.
    watch_backlog: bool,
    /// Why it is closed, once doomed.
    reason: CloseReason,
    /// In `changed`.
    listed: bool,
}

/// The connections of one event loop and the policy for serving them.
///
/// A `Driver` owns each connection's [`Connection`] (the protocol state and
/// its buffers) but no socket, store or clock. Call order, once per
/// event-loop pass:
///
/// 1. wait for readiness (`poll`) on every connection with its
///    [`interest`](Driver::interest), for at most until
///    [`poll_timeout`](Driver::poll_timeout) (combined with the store's and
///    the [`Gate`]'s deadlines); a poller that keeps interest between waits
///    is told only about the connections
///    [`take_changed`](Driver::take_changed) lists;
/// 2. [`begin_pass`](Driver::begin_pass) with the current time;
/// 3. for every readable connection, read while
///    [`read_len`](Driver::read_len) is non-zero: hand what arrived to
///    [`on_read`](Driver::on_read), and stop at a short read or
///    `WouldBlock`; end of stream or a socket error goes to
///    [`on_closed`](Driver::on_closed);
/// 4. [`take_runnable`](Driver::take_runnable) and
///    [`process`](Driver::process) each connection it lists with the store
///    or its shards ([`Shards`]: the connection takes them one at a time);
/// 5. for every connection where [`wants_write`](Driver::wants_write),
///    write the [`output`](Driver::output) chunks, gathered into one write,
///    and report what was written with [`on_written`](Driver::on_written)
///    (the candidates: those [`take_changed`](Driver::take_changed) lists
///    now, and those whose socket became writable);
/// 6. close the socket of every connection [`poll_close`](Driver::poll_close)
///    returns, and tell the [`Gate`].
///
/// New connections enter with [`open`](Driver::open). The driver sheds
/// memory on its own: over three quarters of
/// [`DriverConfig::memory_limit`] the connections holding the most are
/// neither read nor processed (their output still drains), and above it
/// the heaviest is closed, with `SERVER_ERROR out of memory` where nothing
/// else is pending. Stored items are never touched. The reply buffers of
/// connections gone idle are kept (a few, counted in that memory, the
/// first to go under pressure) and lent to the next connections to run, so
/// steady traffic allocates no reply buffers (`spares`).
pub struct Driver {
    cfg: DriverConfig,
    store_cfg: Config,
    slots: Vec<Slot>,
    free: Vec<u32>,
    runnable: Vec<u32>,
    /// Ready connections held back by the memory limit.
    parked: Vec<u32>,
    to_close: Vec<u32>,
    live: usize,
    held: usize,
    pass: u64,
    now_ms: u64,
    /// Since when the driver has been above its soft limit.
    over_soft_since: Option<u64>,
    next_idle_check: u64,
    stats: DriverStats,
    /// Connections that became watchers (`watch`).
    watchers: Vec<u32>,
    /// Watchers closed, to be removed from the store's log.
    unwatch: Vec<crate::log::WatchId>,
    /// Connections whose interest or output may have changed since the
    /// host last asked ([`Driver::take_changed`]).
    changed: Vec<u32>,
    /// The driver was over its soft limit (or at its limit) when the host
    /// last asked: every connection's interest may have changed since.
    pressure_seen: bool,
    /// Output buffers of connections gone idle, lent to the next ones to
    /// run; their bytes count in `held`.
    spares: Spares,
    /// The `stats topkeys` sampling sequence, lent to each connection run.
    sampler: Sampler,
}

impl Driver {
    /// A driver with no connections. `store_cfg` is the configuration of
    /// the store its connections will use ([`Store::config`](crate::Store::config)).
    pub fn new(cfg: DriverConfig, store_cfg: &Config) -> Driver {
        Driver {
            cfg,
            store_cfg: store_cfg.clone(),
            slots: Vec::new(),
            free: Vec::new(),
            runnable: Vec::new(),
            parked: Vec::new(),
            to_close: Vec::new(),
            live: 0,
            held: 0,
            pass: 0,
            now_ms: 0,
            over_soft_since: None,
            next_idle_check: 0,
            stats: DriverStats::default(),
            watchers: Vec::new(),
            unwatch: Vec::new(),
            changed: Vec::new(),
            pressure_seen: false,
            spares: Spares::default(),
            sampler: Sampler::default(),
        }
    }

    /// Starts serving a new connection.
    pub fn open(&mut self, now_ms: u64) -> ConnId {
        let mut conn = Connection::new();
        let idx = self.free.last().copied().unwrap_or(self.slots.len() as u32);
        conn.set_log_identity(idx as i32, self.cfg.worker);
        let slot = Slot {
            conn,
            live: true,
            ready: false,
            queued: false,
            parked: false,
            blocked: false,
            doomed: false,
            held: 0,
            read_pass: 0,
            reads: 0,
            last_active_ms: now_ms,
            watch_backlog: false,
            reason: CloseReason::Normal,
            listed: false,
        };
        self.live += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                // A slot still in `changed` stays listed once.
                let listed = self.slots[i as usize].listed;
                self.slots[i as usize] = Slot { listed, ..slot };
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.touch(idx);
        ConnId(idx)
    }

    /// Connections served now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no connection is served.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes all connections hold together, and the reply buffers kept
    /// for the next ones to run (at most 16 of 64 KiB, none once the last
    /// connection closed).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// The counters, with the current connection count and buffer use.
    #[must_use]
    pub fn stats(&self) -> DriverStats {
        let mut s = self.stats.clone();
        s.connections = self.live;
        s.input_bytes = 0;
        s.output_bytes = 0;
        for slot in self.slots.iter().filter(|s| s.live) {
            let out = slot.conn.pending_len();
            s.output_bytes += out;
            s.input_bytes += slot.held.saturating_sub(out);
        }
        s
    }

    /// The protocol state of a connection, for inspection.
    #[must_use]
    pub fn connection(&self, id: ConnId) -> &Connection {
        &self.slots[id.index()].conn
    }

    /// Where a connection is in its lifecycle.
    #[must_use]
    pub fn state(&self, id: ConnId) -> ConnState {
        let s = &self.slots[id.index()];
        if !s.live || s.doomed {
            ConnState::Closing
        } else if s.conn.is_closing() {
            ConnState::Draining
        } else if s.parked || self.is_heavy(id.0) {
            ConnState::Paused
        } else if s.blocked {
            ConnState::BlockedOnOutput
        } else if s.ready {
            ConnState::Processing
        } else {
            ConnState::Reading
        }
    }

    /// What to wait for on a connection's socket.
    #[must_use]
    pub fn interest(&self, id: ConnId) -> Interest {
        let s = &self.slots[id.index()];
        Interest {
            read: self.may_read(s),
            write: !s.doomed && s.conn.pending_len() > 0,
        }
    }

    /// Appends to `out` the connections whose [`interest`](Driver::interest)
    /// or [`wants_write`](Driver::wants_write) may have changed since the
    /// last call, each once: a host that tells its poller and writes only
    /// these does work in proportion to the active connections, not to all
    /// of them. While the driver is near its memory limit, whose shedding
    /// weighs every connection against the others, it lists every live
    /// connection.
    pub fn take_changed(&mut self, out: &mut Vec<ConnId>) {
        let pressure = self.held >= self.cfg.memory_limit || self.over_soft();
        let all = pressure || self.pressure_seen;
        self.pressure_seen = pressure;
        for i in self.changed.drain(..) {
            let s = &mut self.slots[i as usize];
            s.listed = false;
            if s.live && !all {
                out.push(ConnId(i));
            }
        }
        if all {
            let live = self.slots.iter().enumerate().filter(|(_, s)| s.live);
            out.extend(live.map(|(i, _)| ConnId(i as u32)));
        }
    }

    /// Starts a pass at `now_ms` (after the poll returned): resets the
    /// per-pass read allowance and runs the driver's timers (idle
    /// connections, the memory limit).
    pub fn begin_pass(&mut self, now_ms: u64) {
        self.pass += 1;
        self.now_ms = self.now_ms.max(now_ms);
        if self.cfg.idle_timeout_ms > 0 && self.now_ms >= self.next_idle_check {
            self.next_idle_check = self.now_ms + IDLE_CHECK_MS;
            self.close_idle();
        }
        self.enforce_limit();
        self.unpark();
    }

    /// How many bytes the host may read from the connection now; 0 means
    /// do not read (it is not wanted yet, or this pass's allowance is
    /// spent).
    #[must_use]
    pub fn read_len(&self, id: ConnId) -> usize {
        let s = &self.slots[id.index()];
        if !self.may_read(s) {
            return 0;
        }
        let reads = if s.read_pass == self.pass { s.reads } else { 0 };
        match reads {
            0 => self.cfg.first_read,
            n if n < self.cfg.reads_per_pass => self.cfg.read_chunk,
            _ => 0,
        }
    }

    /// Bytes read from the connection's socket.
    pub fn on_read(&mut self, id: ConnId, bytes: &[u8]) {
        let now = self.now_ms;
        let pass = self.pass;
        let s = &mut self.slots[id.index()];
        if !s.live || s.doomed {
            return;
        }
        if s.read_pass != pass {
            s.read_pass = pass;
            s.reads = 0;
        }
        s.reads += 1;
        s.last_active_ms = now;
        s.conn.receive(bytes);
        self.mark_ready(id.0);
        self.remeasure(id.0);
        if self.held > self.cfg.memory_limit {
            self.enforce_limit();
        }
    }

    /// The peer closed the connection: it is closed without sending what
    /// is pending (memcached does the same).
    pub fn on_closed(&mut self, id: ConnId) {
        self.doom(id.0, CloseReason::Normal);
    }

    /// The connection's socket failed (a reset, a write error): closed as
    /// [`on_closed`](Driver::on_closed), reported as an error.
    pub fn on_failed(&mut self, id: ConnId) {
        self.doom(id.0, CloseReason::Error);
    }

    /// Moves the connections to process this pass into `out` (cleared
    /// first), in the order they became ready.
    pub fn take_runnable(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        for idx in self.runnable.drain(..) {
            let s = &mut self.slots[idx as usize];
            s.queued = false;
            if s.live && s.ready && !s.doomed {
                out.push(ConnId(idx));
            }
        }
    }

    /// Runs the core for a connection listed by
    /// [`take_runnable`](Driver::take_runnable).
    /// `cache` is the [`Store`](crate::Store), or the host's [`Shards`] of one.
    pub fn process<S: Shards>(&mut self, id: ConnId, cache: &mut S, clock: Clock) {
        let i = id.0;
        {
            let s = &self.slots[i as usize];
            if !s.live || s.doomed || !s.ready {
                return;
            }
        }
        if self.is_heavy(i) {
            self.park(i);
            return;
        }
        self.lend_spare(i);
        let s = &mut self.slots[i as usize];
        s.ready = false;
        s.conn.swap_sampler(&mut self.sampler);
        let progress = s.conn.process(cache, clock);
        s.conn.swap_sampler(&mut self.sampler);
        self.note_watcher(i);
        let s = &mut self.slots[i as usize];
        s.blocked = progress == Progress::Blocked;
        if progress == Progress::Yielded {
            self.mark_ready(i);
        }
        self.after_output_change(i);
        // The replies just produced may not fit: the limit holds after
        // every call, not only from the next pass on.
        if self.held > self.cfg.memory_limit {
            self.shed_over_limit();
        }
    }

    /// Whether the host should write the connection's output now. Output
    /// waits while the connection still has requests to run, so replies to
    /// one pipelined batch go out in one write (WASI has no TCP_NODELAY,
    /// and a second write would wait for a delayed ACK).
    #[must_use]
    pub fn wants_write(&self, id: ConnId) -> bool {
        let s = &self.slots[id.index()];
        s.live && !s.doomed && s.conn.pending_len() > 0 && (!s.ready || s.parked)
    }

    /// The pending output, in order. A host gathers as much of it as it can
    /// into one write.
    pub fn output(&self, id: ConnId) -> impl Iterator<Item = &[u8]> {
        self.slots[id.index()].conn.output_chunks()
    }

    /// `n` bytes of the output were written.
    pub fn on_written(&mut self, id: ConnId, n: usize) {
        let now = self.now_ms;
        let hwm = self.store_cfg.output_high_water;
        let s = &mut self.slots[id.index()];
        if !s.live || s.doomed {
            return;
        }
        s.conn.consume_output(n);
        if n > 0 {
            s.last_active_ms = now;
        }
        if s.blocked && s.conn.pending_len() < hwm {
            // The core stopped at the high-water mark with requests still
            // buffered; they can run again.
            s.blocked = false;
            self.mark_ready(id.0);
        }
        self.after_output_change(id.0);
    }

    /// The next connection the host must close and forget. Its id is free
    /// for reuse once returned.
    pub fn poll_close(&mut self) -> Option<ConnId> {
        self.poll_closed().map(|(id, _)| id)
    }

    /// [`poll_close`](Driver::poll_close), with why the connection ends
    /// (for `watch connevents`: the host tells the store through
    /// [`Store::conn_closed`](crate::Store::conn_closed)).
    pub fn poll_closed(&mut self) -> Option<(ConnId, CloseReason)> {
        let idx = self.to_close.pop()?;
        let reason = self.slots[idx as usize].reason;
        self.forget_watcher(idx);
        let s = &mut self.slots[idx as usize];
        self.held -= s.held;
        s.held = 0;
        s.live = false;
        s.conn = Connection::new();
        self.live -= 1;
        self.free.push(idx);
        if self.live == 0 {
            // Nothing left to lend them to: a server without clients
            // holds nothing for them.
            self.held -= self.spares.clear();
        }
        Some((ConnId(idx), reason))
    }

    /// When the driver needs the host back without readiness, in the
    /// host's monotonic milliseconds: now when connections are ready to
    /// run; otherwise the next idle check (when idle timeouts are on) or
    /// the moment a stay above the soft memory limit ends in shedding,
    /// whichever is first; otherwise never (`None`). An idle server sleeps.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.runnable.is_empty() || !self.to_close.is_empty() || self.watch_due() {
            return Some(self.now_ms);
        }
        let idle = (self.cfg.idle_timeout_ms > 0 && self.live > 0).then_some(self.next_idle_check);
        let shed = self.over_soft_since.map(|t| t + SHED_AFTER_MS);
        idle.into_iter().chain(shed).min()
    }

    fn may_read(&self, s: &Slot) -> bool {
        s.live
            && !s.doomed
            && !s.blocked
            && self.held < self.cfg.memory_limit
            && s.conn.wants_input(&self.store_cfg)
            && !self.is_heavy_slot(s)
    }

    fn mark_ready(&mut self, i: u32) {
        self.touch(i);
        let s = &mut self.slots[i as usize];
        s.ready = true;
        if !s.queued {
            s.queued = true;
            self.runnable.push(i);
        }
    }

    fn park(&mut self, i: u32) {
        self.touch(i);
        let s = &mut self.slots[i as usize];
        if !s.parked {
            s.parked = true;
            self.parked.push(i);
            self.stats.paused_for_memory += 1;
        }
    }

    /// Lists a connection for [`take_changed`](Driver::take_changed).
    fn touch(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        if !s.listed {
            s.listed = true;
            self.changed.push(i);
        }
    }

    /// Parked connections that are no longer among the heaviest (the
    /// driver went back under its soft limit, or others grew) run again.
    fn unpark(&mut self) {
        for i in core::mem::take(&mut self.parked) {
            if self.slots[i as usize].live && self.is_heavy(i) {
                self.parked.push(i);
                continue;
            }
            self.slots[i as usize].parked = false;
            if self.slots[i as usize].live {
                self.mark_ready(i);
            }
        }
    }

    /// After output was produced or written: close a finished connection,
    /// shrink an idle one, and remeasure.
    fn after_output_change(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        let empty = s.conn.pending_len() == 0;
        if empty && s.conn.is_closing() {
            let reason = s.conn.close_reason();
            self.remeasure(i);
            self.doom(i, reason);
            return;
        }
        if empty && !s.ready {
            if let Some(buf) = s.conn.shrink_keeping() {
                if !self.over_soft() {
                    self.held += self.spares.give(buf);
                }
            }
        }
        self.remeasure(i);
        if !self.parked.is_empty() && !self.over_soft() {
            self.unpark();
        }
    }

    /// Gives connection `i`, about to run with nothing pending, the
    /// largest spare buffer if it is larger than its own.
    fn lend_spare(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        if s.conn.pending_len() != 0 {
            return;
        }
        if let Some(buf) = self.spares.take_larger(s.conn.output_capacity()) {
            self.held -= buf.capacity();
            drop(s.conn.adopt_output(buf));
        }
    }

    fn remeasure(&mut self, i: u32) {
        self.touch(i);
        let s = &mut self.slots[i as usize];
        let now = s.conn.held_bytes();
        self.held = self.held - s.held + now;
        s.held = now;
        if self.over_soft() {
            // Spare buffers are the first memory to go: every growth of
            // `held` comes through here, so none are kept while the driver
            // is over its soft limit.
            self.held -= self.spares.clear();
        }
    }

    fn doom(&mut self, i: u32, reason: CloseReason) {
        self.touch(i);
        let s = &mut self.slots[i as usize];
        if s.live && !s.doomed {
            s.doomed = true;
            s.reason = reason;
            self.to_close.push(i);
        }
    }

    fn soft_limit(&self) -> usize {
        self.cfg.memory_limit / 4 * 3
    }

    fn over_soft(&self) -> bool {
        self.held > self.soft_limit()
    }

    /// While the driver is over its soft limit, the heaviest connections
    /// are those holding more than the average. Strictly more: connections
    /// holding the same (six half-received values of one size, say) would
    /// otherwise all pause, and none could ever complete its request and
    /// give its memory back.
    fn is_heavy_slot(&self, s: &Slot) -> bool {
        self.over_soft() && s.held > (self.held / self.live.max(1)).max(HEAVY_FLOOR)
    }

    fn is_heavy(&self, i: u32) -> bool {
        self.is_heavy_slot(&self.slots[i as usize])
    }

    /// Keeps the driver within its limit: above the limit it closes the
    /// heaviest connections until the limit is met; above the soft limit
    /// for [`SHED_AFTER_MS`] without getting below it, it closes the
    /// heaviest one (paused connections whose requests cannot complete
    /// would otherwise hold their memory, and hide their clients' hang-ups,
    /// for ever).
    fn enforce_limit(&mut self) {
        self.shed_over_limit();
        if !self.over_soft() {
            self.over_soft_since = None;
            return;
        }
        match self.over_soft_since {
            None => self.over_soft_since = Some(self.now_ms),
            Some(t) if self.now_ms >= t + SHED_AFTER_MS => {
                self.shed_heaviest();
                self.over_soft_since = Some(self.now_ms);
            }
            Some(_) => {}
        }
    }

    /// Closes the heaviest connections until the driver is within its
    /// limit.
    fn shed_over_limit(&mut self) {
        while self.held > self.cfg.memory_limit {
            if !self.shed_heaviest() {
                break;
            }
        }
    }

    /// Closes the connection holding the most; false when there is none.
    fn shed_heaviest(&mut self) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live && !s.doomed)
            .max_by_key(|(_, s)| s.held)
            .map(|(i, _)| i as u32);
        let Some(i) = victim else { return false };
        self.stats.closed_for_memory += 1;
        let s = &mut self.slots[i as usize];
        if s.conn.pending_len() == 0 && !s.conn.is_closing() {
            // Nothing half-sent: the client can be told why, and the
            // connection closes once that is written. Should the reply be
            // the last thing over the limit, the next round closes the
            // connection outright.
            s.conn.fail(OUT_OF_MEMORY);
            s.ready = false;
            self.remeasure(i);
        } else {
            self.doom(i, CloseReason::Error);
            self.release(i);
        }
        true
    }

    /// Frees a doomed connection's buffers at once (the host closes it at
    /// the end of the pass).
    fn release(&mut self, i: u32) {
        self.forget_watcher(i);
        let s = &mut self.slots[i as usize];
        s.conn = Connection::new();
        self.held -= s.held;
        s.held = 0;
    }

    fn close_idle(&mut self) {
        let limit = self.cfg.idle_timeout_ms;
        let now = self.now_ms;
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.live && !s.doomed && now.saturating_sub(s.last_active_ms) >= limit {
                self.stats.closed_idle += 1;
                self.doom(i as u32, CloseReason::IdleTimeout);
            }
        }
    }
}
