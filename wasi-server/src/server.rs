//! The non-blocking event loop hosting the core, on one or more threads.
//!
//! It only performs I/O: every decision (what to read and how much, what to
//! run, when to write, when to sleep, when to stop accepting, which
//! connection to shed) is the core's [`Driver`] and [`Gate`]. The sockets
//! and the poller ([`crate::net`], [`crate::poller`]) have one API on
//! wasm32-wasip2 and natively.
//!
//! Natively the server can run several workers (memcached's `-t`). The
//! first worker accepts and hands each new connection to the least loaded
//! worker, which owns and polls it from then on. The store is split into
//! shards, each behind its own mutex ([`crate::cache`]); a request holds
//! only its key's shard, for the core's work only. Reads, writes and the
//! poll, where a request's CPU time goes, run in parallel. A wasm guest has
//! no threads and runs one worker over one shard.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cache::SharedCache;
use crate::net::{Listener, Source, Stream};
use crate::poller::{Event, Poller};
use wasmcached_core::driver::{
    AcceptError, Admission, DriverStats, Interest, TOO_MANY_CONNECTIONS,
};
use wasmcached_core::shards::{join, shard_configs};
use wasmcached_core::{Clock, Config, ConnId, Driver, DriverConfig, Gate, Shards, Shutdown, Store};

/// Largest write: a WASI write takes at most 64 KiB, and gathering more
/// than that into one buffer would only be copied again.
const WRITE_MAX: usize = 64 * 1024;
/// Output chunks gathered into one vectored write natively.
#[cfg(not(target_os = "wasi"))]
const IOV_MAX: usize = 64;
/// How often CPU time and buffer use are sampled for `stats` (a syscall
/// and a walk over the connections per pass would be measurable).
const SAMPLE_EVERY_MS: u64 = 100;
/// The poller token of the listener (or a worker's bell); connection `i`
/// is token `i + FIRST_CONN`.
const LISTENER: usize = 0;
/// The poller token of a worker's log bell, rung when a watcher it serves
/// has new log lines (several workers only).
const LOG_BELL: usize = 1;
const FIRST_CONN: usize = 2;

/// What the workers share.
struct Shared {
    listener: Listener,
    /// Connections handed to each worker and not yet taken (index 0, the
    /// accepting worker, stays empty).
    inboxes: Vec<Inbox>,
    /// Connections each worker serves, for choosing where a new one goes.
    loads: Vec<AtomicUsize>,
    cache: SharedCache,
    /// The store's configuration, readable without a lock.
    cfg: Config,
    driver_cfg: DriverConfig,
    verbose: u8,
    started: Instant,
    unix_at_start: u64,
    /// Open connections over all workers.
    conns: AtomicUsize,
    /// Each worker's latest driver counters.
    worker_stats: Vec<Mutex<DriverStats>>,
    /// Gate counters, published by the accepting worker.
    total_conns: AtomicU64,
    rejected_conns: AtomicU64,
    listen_disabled: AtomicU64,
    accepting: AtomicBool,
    /// Monotonic millisecond of the last CPU-time sample.
    rusage_ms: AtomicU64,
    /// The last sample (see [`Shared::sample`]).
    sampled: [AtomicU64; 6],
    /// Each worker's log bell (several workers only; see `watch_wake`).
    log_rings: Vec<Option<Ring>>,
}

impl Shared {
    /// CPU time and the connections' buffer figures, for `stats`: sampled
    /// at most every [`SAMPLE_EVERY_MS`] by whichever worker asks first,
    /// and kept here so every worker's home shard reports the same.
    /// Returns user and system CPU µs, input and output bytes held,
    /// connections closed for memory, idle kicks.
    fn sample(&self, now: Clock) -> [u64; 6] {
        let last = self.rusage_ms.load(Ordering::Relaxed);
        let due = now.mono_ms >= last + SAMPLE_EVERY_MS;
        let claimed = due
            && self
                .rusage_ms
                .compare_exchange(last, now.mono_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if claimed {
            let (user, sys) = rusage_us();
            let (mut input, mut output, mut oom, mut idle) = (0u64, 0u64, 0u64, 0u64);
            for w in &self.worker_stats {
                let s = lock(w);
                input += s.input_bytes as u64;
                output += s.output_bytes as u64;
                oom += s.closed_for_memory;
                idle += s.closed_idle;
            }
            for (slot, v) in self
                .sampled
                .iter()
                .zip([user, sys, input, output, oom, idle])
            {
                slot.store(v, Ordering::Relaxed);
            }
        }
        let mut out = [0u64; 6];
        for (o, slot) in out.iter_mut().zip(&self.sampled) {
            *o = slot.load(Ordering::Relaxed);
        }
        out
    }

    fn clock(&self) -> Clock {
        let el = self.started.elapsed();
        Clock::new(el.as_millis() as u64, self.unix_at_start + el.as_secs())
            .with_micros(el.subsec_micros())
    }
}

/// Settings of a [`Server`] beyond the store's.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub addr: String,
    /// The store's configuration.
    pub store: Config,
    /// Most connections served at once (`-c`).
    pub conn_limit: usize,
    /// Bytes all connections may hold together, split evenly between
    /// workers.
    pub conn_memory: usize,
    /// Close connections idle this long (ms); 0 never.
    pub idle_timeout_ms: u64,
    /// Worker threads; 1 where threads are unavailable (wasm).
    pub threads: usize,
    /// `-v` count.
    pub verbose: u8,
    /// Warm restart (`-e`): the store starts from the snapshot in this
    /// file, if there is a valid one.
    pub memory_file: Option<std::path::PathBuf>,
}

/// A server: the listener, the shared store and its workers.
///
/// Call order: [`Server::bind`], then [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    /// The worker run by the calling thread.
    main: Worker,
    /// The workers [`Server::run`] starts on threads of their own.
    others: Vec<Worker>,
}

impl Server {
    /// Binds the address and creates the store and the workers.
    pub fn bind(sc: ServerConfig) -> io::Result<Server> {
        let threads = sc.threads.max(1);
        // `-b`: memcached's default 1024, so a burst of connections is not
        // dropped into SYN retries.
        let listener = Listener::bind(&sc.addr, sc.store.host.tcp_backlog)?;
        let mut inboxes = vec![Inbox {
            queue: Mutex::new(Vec::new()),
            ring: None,
        }];
        let mut bells = Vec::new();
        for _ in 1..threads {
            let (inbox, bell) = Inbox::new()?;
            inboxes.push(inbox);
            bells.push(bell);
        }
        let (log_rings, mut log_bells) = log_bells(threads)?;
        let started = Instant::now();
        let unix_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let clock = Clock::new(0, unix_at_start);
        let n = SharedCache::shards_for(&sc.store, threads);
        let cfgs = shard_configs(&sc.store, n);
        let mut stores: Vec<Store> = match &sc.memory_file {
            Some(path) => crate::warm::load(path, cfgs, clock),
            None => cfgs.into_iter().map(|c| Store::new(c, clock)).collect(),
        };
        join(&mut stores);
        let cache = SharedCache::new(sc.store.clone(), stores);
        for i in 0..cache.count() {
            let mut store = cache.lock(i);
            store.host_stats_mut().pid = host_pid();
            store.host_stats_mut().conn_memory_limit = sc.conn_memory as u64;
        }
        // The accepting worker's home shard (shard 0) lists the listener.
        crate::conn_facts::listener(&mut cache.lock(0), &listener, 0);
        let driver_cfg = DriverConfig {
            memory_limit: sc.conn_memory / threads,
            idle_timeout_ms: sc.idle_timeout_ms,
            ..DriverConfig::default()
        };
        let shared = Arc::new(Shared {
            listener,
            inboxes,
            loads: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            cache,
            cfg: sc.store,
            driver_cfg,
            verbose: sc.verbose,
            started,
            unix_at_start,
            conns: AtomicUsize::new(0),
            worker_stats: (0..threads)
                .map(|_| Mutex::new(DriverStats::default()))
                .collect(),
            total_conns: AtomicU64::new(0),
            rejected_conns: AtomicU64::new(0),
            listen_disabled: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            rusage_ms: AtomicU64::new(0),
            sampled: Default::default(),
            log_rings,
        });
        let mut main = Worker::new(shared.clone(), 0, None, Some(Gate::new(sc.conn_limit)))?;
        main.log_bell = log_bells[0].take();
        let others = bells
            .into_iter()
            .enumerate()
            .map(|(i, bell)| {
                let mut w = Worker::new(shared.clone(), i + 1, Some(bell), None)?;
                w.log_bell = log_bells[i + 1].take();
                Ok(w)
            })
            .collect::<io::Result<_>>()?;
        Ok(Server {
            main,
            others,
            shared,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.shared.listener.local_addr()
    }

    /// Starts the other workers, then runs the first one on this thread
    /// until `stop` becomes true (checked after every pass; a signal
    /// interrupts this thread's poll) or an unrecoverable error. The other
    /// workers end with the process.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        for mut w in self.others.drain(..) {
            let id = w.id;
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    block_stop_signals();
                    if let Err(e) = w.run_forever() {
                        eprintln!("error: worker {id} failed: {e}");
                        std::process::exit(70);
                    }
                })?;
        }
        #[cfg(target_os = "wasi")]
        let mut passes = 0u32;
        while !stop.load(Ordering::Relaxed) {
            self.main.pass()?;
            crate::ascii_auth::reload_if_requested(&self.shared.cache);
            // The runner's stop request wakes the poll (see `stop`); a
            // check every few passes costs a busy server next to nothing.
            #[cfg(target_os = "wasi")]
            {
                passes = passes.wrapping_add(1);
                if passes.is_multiple_of(16) {
                    crate::stop::poll_host();
                }
            }
        }
        Ok(())
    }

    /// Every shard of the store, held until the guards are dropped: for
    /// writing the snapshot after [`Server::run`] returned. Workers that
    /// are still running wait for them. Taken in order, by the only thread
    /// that ever holds more than one.
    pub fn lock_all(&self) -> Vec<impl std::ops::DerefMut<Target = Store> + '_> {
        (0..self.shared.cache.count())
            .map(|i| self.shared.cache.lock(i))
            .collect()
    }

    /// The clocks as the store reads them.
    pub fn clock(&self) -> Clock {
        self.shared.clock()
    }
}

/// A connection's socket and what the host remembers about it.
struct Sock {
    id: ConnId,
    stream: Stream,
    /// The last write found the socket full: skip writing until poll
    /// reports it writable, instead of a failing write every pass.
    stalled: bool,
    /// In the worker's `to_write`.
    queued: bool,
}

/// One event loop: its own connections, polled together.
///
/// Field order is drop order, and `poller` goes first: in the guest its
/// subscriptions are children of the listener (in `shared`) and of the
/// sockets' streams (in `socks`), which cannot be dropped before them.
struct Worker {
    poller: Poller,
    shared: Arc<Shared>,
    id: usize,
    driver: Driver,
    /// The accept policy; only the worker that polls the listener has one.
    gate: Option<Gate>,
    /// Sockets by [`ConnId::index`].
    socks: Vec<Option<Sock>>,
    buf: Vec<u8>,
    /// Gathers output chunks into one write where vectored writes are not
    /// available (WASI).
    gather: Vec<u8>,
    events: Vec<Event>,
    runnable: Vec<ConnId>,
    /// Connections whose interest may have changed, for the poller
    /// ([`Driver::take_changed`]): a pass costs the active connections,
    /// not all of them.
    changed: Vec<ConnId>,
    /// Connections to write this pass: output was produced, or the socket
    /// became writable.
    to_write: Vec<ConnId>,
    /// A client asked for `shutdown` (graceful or not) in this pass.
    shutdown: Option<bool>,
    /// Readable when connections were handed to this worker (all but the
    /// first, which polls the listener instead).
    bell: Option<Bell>,
    /// Readable when a watcher this worker serves has new log lines.
    log_bell: Option<Bell>,
    /// Log lines for this worker's watchers arrived after its pump: the
    /// next poll does not wait.
    log_pending: bool,
    sampled_ms: u64,
    /// The monotonic clock (ms) when the last wait ended: the time the
    /// last pass worked at.
    pass_ms: u64,
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        id: usize,
        bell: Option<Bell>,
        gate: Option<Gate>,
    ) -> io::Result<Worker> {
        let driver_cfg = DriverConfig {
            worker: id as u32,
            ..shared.driver_cfg.clone()
        };
        let driver = Driver::new(driver_cfg, &shared.cfg);
        let chunk = shared.driver_cfg.read_chunk;
        Ok(Worker {
            poller: Poller::new()?,
            shared,
            id,
            driver,
            gate,
            socks: Vec::new(),
            buf: vec![0; chunk],
            gather: Vec::with_capacity(WRITE_MAX),
            events: Vec::new(),
            runnable: Vec::new(),
            changed: Vec::new(),
            to_write: Vec::new(),
            shutdown: None,
            bell,
            log_bell: None,
            log_pending: false,
            sampled_ms: 0,
            pass_ms: 0,
        })
    }

    fn run_forever(&mut self) -> io::Result<()> {
        loop {
            self.pass()?;
        }
    }

    /// One pass: wait, accept, read, process, write, close.
    ///
    /// The clock is read once, when the wait ends (in the guest every read
    /// is a host call): the interest set before the wait goes by the last
    /// pass's time, which can only reopen a paused listener a pass late.
    fn pass(&mut self) -> io::Result<()> {
        let timeout = self.poll_timeout();
        // This pass pumps whatever made the poll not wait.
        self.log_pending = false;
        self.update_interest(self.pass_ms)?;
        self.poller.wait(timeout, &mut self.events)?;
        let now = self.shared.clock();
        self.pass_ms = now.mono_ms;
        self.driver.begin_pass(now.mono_ms);
        for k in 0..self.events.len() {
            let ev = self.events[k];
            if ev.token == LISTENER {
                match &self.bell {
                    Some(b) => {
                        b.drain();
                        self.take_handed(now.mono_ms);
                    }
                    None => self.accept_all(now.mono_ms),
                }
                continue;
            }
            if ev.token == LOG_BELL {
                // The pump in `process` delivers the lines.
                if let Some(b) = &self.log_bell {
                    b.drain();
                }
                continue;
            }
            let Some(s) = self
                .socks
                .get_mut(ev.token - FIRST_CONN)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            let id = s.id;
            if ev.writable {
                s.stalled = false;
                queue_write(&mut self.to_write, s);
            }
            if self.driver.interest(id).read {
                if ev.readable || ev.hangup {
                    self.read(id);
                }
            } else if ev.hangup {
                // Reset or failed while not being read (paused, or blocked
                // on output): nothing more can be delivered.
                self.driver.on_closed(id);
            }
        }
        self.process(now);
        self.write_all();
        self.close_finished(now);
        self.wake_watchers();
        self.sample(now);
        if let Some(graceful) = self.shutdown.take() {
            crate::stop::requested_by_client(graceful);
        }
        Ok(())
    }

    /// Wakes the workers whose watchers got log lines since their last
    /// pump (accepts and closes log after this pass's pump): the others by
    /// their bells, this one by not sleeping in the next poll.
    fn wake_watchers(&mut self) {
        let wake = self.shared.cache.take_wakeups();
        watch_wake(&self.shared, self.id, wake);
        self.log_pending |= wake & (1 << (self.id % 64)) != 0;
    }

    /// Milliseconds to wait in poll: until the earliest of the driver's,
    /// the gate's and the store's deadlines, or forever (-1). The clock is
    /// read only for a deadline after the last pass's time (connections
    /// ready to run are due at it).
    fn poll_timeout(&self) -> libc::c_int {
        if self.log_pending {
            return 0;
        }
        let due = [
            self.driver.poll_timeout(),
            self.gate.as_ref().and_then(Gate::poll_timeout),
            self.shared.cache.next_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        match due {
            None => -1,
            Some(t) if t <= self.pass_ms => 0,
            Some(t) => {
                let now_ms = self.shared.clock().mono_ms;
                t.saturating_sub(now_ms).min(i32::MAX as u64) as libc::c_int
            }
        }
    }

    /// Tells the poller what to wait for: the listener while the gate
    /// accepts (or the bell), and each connection's interest.
    fn update_interest(&mut self, now_ms: u64) -> io::Result<()> {
        let (src, read) = match (&self.bell, &self.gate) {
            (Some(b), _) => (b.source(), true),
            (None, g) => (
                self.shared.listener.source(),
                g.as_ref().is_none_or(|g| g.wants_accept(now_ms)),
            ),
        };
        self.poller.set(LISTENER, src, read, false)?;
        if let Some(b) = &self.log_bell {
            self.poller.set(LOG_BELL, b.source(), true, false)?;
        }
        self.driver.take_changed(&mut self.changed);
        for &id in &self.changed {
            let Some(s) = self.socks.get(id.index()).and_then(Option::as_ref) else {
                continue;
            };
            let Interest { read, write } = self.driver.interest(id);
            self.poller
                .set(id.index() + FIRST_CONN, s.stream.source(), read, write)?;
        }
        self.changed.clear();
        Ok(())
    }

    fn accept_all(&mut self, now_ms: u64) {
        let shared = &*self.shared;
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        while gate.wants_accept(now_ms) {
            match shared.listener.accept() {
                Ok((mut sock, peer)) => {
                    if gate.admit(shared.conns.load(Ordering::Relaxed)) == Admission::Refuse {
                        // Counted before the client can read its refusal and
                        // ask another worker for `stats`.
                        shared
                            .rejected_conns
                            .store(gate.rejected(), Ordering::Relaxed);
                        let _ = sock.write(TOO_MANY_CONNECTIONS);
                        if shared.verbose > 0 {
                            eprintln!("rejected connection from {peer}: too many open connections");
                        }
                        continue;
                    }
                    if shared.verbose > 1 {
                        eprintln!("<{} new client connection from {peer}", sock.number());
                    }
                    shared.conns.fetch_add(1, Ordering::Relaxed);
                    let to = least_loaded(&shared.loads);
                    shared.loads[to].fetch_add(1, Ordering::Relaxed);
                    if to == self.id {
                        let id = self.driver.open(now_ms);
                        self.driver.set_log_fd(id, log_fd(&sock));
                        let home = shared.cache.view(self.id).home();
                        let store = &mut *shared.cache.lock(home);
                        crate::conn_facts::opened(
                            store,
                            &mut self.driver,
                            id,
                            &sock,
                            shared.clock(),
                        );
                        put(&mut self.socks, id, sock);
                    } else {
                        shared.inboxes[to].hand(sock);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = match (e.kind(), e.raw_os_error()) {
                        (_, Some(libc::EMFILE | libc::ENFILE)) => AcceptError::OutOfDescriptors,
                        (ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset, _) => {
                            AcceptError::Aborted
                        }
                        _ => AcceptError::Other,
                    };
                    gate.accept_failed(kind, now_ms);
                    if kind == AcceptError::Aborted {
                        continue;
                    }
                    if shared.verbose > 0 {
                        eprintln!("accept: {e}; pausing accepts");
                    }
                    break;
                }
            }
        }
        shared.total_conns.store(gate.accepted(), Ordering::Relaxed);
        shared
            .rejected_conns
            .store(gate.rejected(), Ordering::Relaxed);
        shared
            .listen_disabled
            .store(gate.listen_disabled_num(), Ordering::Relaxed);
        shared
            .accepting
            .store(!gate.is_paused(now_ms), Ordering::Relaxed);
    }

    /// The shard that lists this worker's connections for `stats conns`
    /// and takes their counters that belong to no key.
    fn home(&self) -> usize {
        self.shared.cache.view(self.id).home()
    }

    /// Adopts the connections the first worker handed to this one.
    fn take_handed(&mut self, now_ms: u64) {
        let handed = std::mem::take(&mut *lock(&self.shared.inboxes[self.id].queue));
        for sock in handed {
            let id = self.driver.open(now_ms);
            self.driver.set_log_fd(id, log_fd(&sock));
            let now = self.shared.clock();
            let store = &mut *self.shared.cache.lock(self.home());
            crate::conn_facts::opened(store, &mut self.driver, id, &sock, now);
            put(&mut self.socks, id, sock);
        }
    }

    /// Reads what the connection sent, as much as the driver allows.
    fn read(&mut self, id: ConnId) {
        let Some(s) = self.socks[id.index()].as_mut() else {
            return;
        };
        loop {
            let want = self.driver.read_len(id).min(self.buf.len());
            if want == 0 {
                break;
            }
            match s.stream.read(&mut self.buf[..want]) {
                Ok(b) if b.is_empty() => {
                    self.driver.on_closed(id);
                    break;
                }
                Ok(b) => {
                    self.driver.on_read(id, &b);
                    if b.len() < want {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.driver.on_failed(id);
                    break;
                }
            }
        }
    }

    /// Runs the core for every connection the driver lists, then any
    /// expiry step that is due.
    ///
    /// The core takes one shard at a time, per request (per key of a
    /// multiget), never for a whole pass: with more runnable threads than
    /// cores (workers plus clients on the same machine), a worker preempted
    /// while holding a shard stalls the others that want it for a whole
    /// time slice, and the chance of that grows with the time held.
    fn process(&mut self, now: Clock) {
        let shared = &*self.shared;
        self.driver.take_runnable(&mut self.runnable);
        let mut view = shared.cache.view(self.id);
        if !self.runnable.is_empty() {
            // What `stats` reports about the host, in the shard where this
            // worker's connections read it.
            refresh_host_stats(shared, &mut shared.cache.lock(view.home()), now);
        }
        for &id in &self.runnable {
            self.driver.process(id, &mut view, now);
        }
        if shared.cfg.shutdown_enabled && !self.runnable.is_empty() {
            if let Some(how) = shared.cache.lock(view.home()).poll_shutdown() {
                // Raised after this pass's writes, so the replies to the
                // requests before `shutdown` reach the client first.
                self.shutdown = Some(how == Shutdown::Graceful);
            }
        }
        shared.cache.sweep(now);
        if self.driver.watching() {
            self.driver.pump_watchers(&mut view);
        }
        self.wake_watchers();
    }

    /// Writes every connection that has output to send: those whose
    /// output changed in this pass (kept in `changed` for the next
    /// interest update too) and those whose socket became writable.
    fn write_all(&mut self) {
        let start = self.changed.len();
        self.driver.take_changed(&mut self.changed);
        for &id in &self.changed[start..] {
            if let Some(s) = self.socks.get_mut(id.index()).and_then(Option::as_mut) {
                if self.driver.wants_write(id) {
                    queue_write(&mut self.to_write, s);
                }
            }
        }
        let mut queue = std::mem::take(&mut self.to_write);
        for &id in &queue {
            if let Some(s) = self.socks.get_mut(id.index()).and_then(Option::as_mut) {
                s.queued = false;
                self.write(id);
            }
        }
        queue.clear();
        self.to_write = queue;
    }

    /// Writes the connection's pending output, gathered into one write; a
    /// partial write is continued in the same pass (a WASI write takes at
    /// most 64 KiB, and waiting a pass for each 64 KiB of a large value
    /// costs a poll each).
    fn write(&mut self, id: ConnId) {
        for _ in 0..4 {
            let Some(s) = self.socks[id.index()].as_mut() else {
                return;
            };
            if s.stalled || !self.driver.wants_write(id) {
                return;
            }
            match write_gathered(&mut s.stream, &self.driver, id, &mut self.gather) {
                Ok(n) if n > 0 => self.driver.on_written(id, n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Nothing written or WouldBlock (the stream has no room):
                // wait until the poller reports it writable.
                Ok(_) => {
                    s.stalled = true;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    s.stalled = true;
                    return;
                }
                Err(_) => {
                    self.driver.on_failed(id);
                    return;
                }
            }
        }
    }

    /// Closes the sockets of connections the driver is done with.
    /// `now` is the pass's time: reading the clock again would cost every
    /// pass a host call in the guest, for a close time later only by the
    /// pass's own reads and writes.
    fn close_finished(&mut self, now: Clock) {
        let shared = &*self.shared;
        while let Some((id, reason)) = self.driver.poll_closed() {
            if let Some(s) = self.socks[id.index()].take() {
                let home = &mut shared.cache.lock(self.home());
                crate::conn_facts::closed(home, &s.stream, reason, now);
                self.poller
                    .remove(id.index() + FIRST_CONN, s.stream.source());
                if shared.verbose > 1 {
                    eprintln!("<{} connection closed.", s.stream.number());
                }
            }
            shared.conns.fetch_sub(1, Ordering::Relaxed);
            shared.loads[self.id].fetch_sub(1, Ordering::Relaxed);
            if let Some(g) = self.gate.as_mut() {
                g.connection_closed();
            }
        }
    }

    /// Publishes this worker's driver counters every [`SAMPLE_EVERY_MS`].
    fn sample(&mut self, now: Clock) {
        if now.mono_ms < self.sampled_ms + SAMPLE_EVERY_MS {
            return;
        }
        self.sampled_ms = now.mono_ms;
        *lock(&self.shared.worker_stats[self.id]) = self.driver.stats();
    }
}

/// Writes as much of a connection's output as one call takes: the
/// chunks copied into `gather`, up to 64 KiB, unless the first chunk alone
/// is that large (a WASI write takes one buffer).
#[cfg(target_os = "wasi")]
fn write_gathered(
    stream: &mut Stream,
    driver: &Driver,
    id: ConnId,
    gather: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut chunks = driver.output(id);
    let Some(first) = chunks.next() else {
        return Ok(0);
    };
    if first.len() >= WRITE_MAX {
        return stream.write(&first[..WRITE_MAX]);
    }
    gather.clear();
    gather.extend_from_slice(first);
    for c in chunks {
        let room = WRITE_MAX - gather.len();
        if room == 0 {
            break;
        }
        gather.extend_from_slice(&c[..c.len().min(room)]);
    }
    stream.write(gather)
}

/// Writes as much of a connection's output as one call takes: a vectored
/// write of its chunks.
#[cfg(not(target_os = "wasi"))]
fn write_gathered(
    stream: &mut Stream,
    driver: &Driver,
    id: ConnId,
    _gather: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut slices = [std::io::IoSlice::new(&[]); IOV_MAX];
    let mut n = 0;
    for (slot, c) in slices.iter_mut().zip(driver.output(id)) {
        *slot = std::io::IoSlice::new(c);
        n += 1;
    }
    stream.write_vectored(&slices[..n])
}

/// The number a connection's verbose log lines start with.
fn log_fd(s: &Stream) -> i32 {
    i32::try_from(s.number()).unwrap_or(i32::MAX)
}

/// Adds a connection to the pass's writes, once.
fn queue_write(to_write: &mut Vec<ConnId>, s: &mut Sock) {
    if !s.queued {
        s.queued = true;
        to_write.push(s.id);
    }
}

/// Records a socket under its connection's id.
fn put(socks: &mut Vec<Option<Sock>>, id: ConnId, stream: Stream) {
    let i = id.index();
    if socks.len() <= i {
        socks.resize_with(i + 1, || None);
    }
    socks[i] = Some(Sock {
        id,
        stream,
        stalled: false,
        queued: false,
    });
}

/// The worker serving the fewest connections (the first on ties, so a
/// single-worker server never hands anything over).
fn least_loaded(loads: &[AtomicUsize]) -> usize {
    let mut best = 0;
    for (i, l) in loads.iter().enumerate() {
        if l.load(Ordering::Relaxed) < loads[best].load(Ordering::Relaxed) {
            best = i;
        }
    }
    best
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the accepting worker leaves connections for another worker, and
/// the bell it rings so that worker's poll wakes up.
struct Inbox {
    queue: Mutex<Vec<Stream>>,
    ring: Option<Ring>,
}

impl Inbox {
    fn new() -> io::Result<(Inbox, Bell)> {
        let (ring, bell) = bell_pair()?;
        Ok((
            Inbox {
                queue: Mutex::new(Vec::new()),
                ring,
            },
            bell,
        ))
    }

    fn hand(&self, sock: Stream) {
        lock(&self.queue).push(sock);
        if let Some(r) = &self.ring {
            r.ring();
        }
    }
}

/// The sending end of an [`Inbox`]'s bell.
#[cfg(not(target_os = "wasi"))]
struct Ring(std::os::unix::net::UnixStream);

#[cfg(not(target_os = "wasi"))]
impl Ring {
    fn ring(&self) {
        // A bell with unread bytes already wakes its worker: a full one
        // loses nothing.
        let _ = std::io::Write::write(&mut &self.0, &[1]);
    }
}

/// The receiving end of an [`Inbox`]'s bell.
#[cfg(not(target_os = "wasi"))]
struct Bell(std::os::unix::net::UnixStream);

#[cfg(not(target_os = "wasi"))]
fn bell_pair() -> io::Result<(Option<Ring>, Bell)> {
    let (ring, bell) = std::os::unix::net::UnixStream::pair()?;
    ring.set_nonblocking(true)?;
    bell.set_nonblocking(true)?;
    Ok((Some(Ring(ring)), Bell(bell)))
}

#[cfg(not(target_os = "wasi"))]
impl Bell {
    fn source(&self) -> Source {
        use std::os::fd::AsRawFd;
        Source(self.0.as_raw_fd())
    }

    /// Empties the bell so the next poll waits for a new ring.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut &self.0, &mut buf), Ok(n) if n > 0) {}
    }
}

/// A wasm guest runs one worker, which never hands connections over.
#[cfg(target_os = "wasi")]
struct Ring(std::convert::Infallible);

#[cfg(target_os = "wasi")]
impl Ring {
    fn ring(&self) {
        match self.0 {}
    }
}

#[cfg(target_os = "wasi")]
struct Bell(std::convert::Infallible);

#[cfg(target_os = "wasi")]
fn bell_pair() -> io::Result<(Option<Ring>, Bell)> {
    Err(io::Error::new(ErrorKind::Unsupported, "no threads"))
}

#[cfg(target_os = "wasi")]
impl Bell {
    fn source(&self) -> Source<'_> {
        match self.0 {}
    }

    fn drain(&self) {
        match self.0 {}
    }
}

/// Rings the log bell of every other worker whose bit (`worker % 64`) is
/// in `wake` (see `Store::take_log_wakeups`); this worker pumps its own
/// watchers in the same pass.
fn watch_wake(shared: &Shared, me: usize, wake: u64) {
    if wake == 0 {
        return;
    }
    for (w, ring) in shared.log_rings.iter().enumerate() {
        if w != me && wake & (1 << (w % 64)) != 0 {
            if let Some(r) = ring {
                r.ring();
            }
        }
    }
}

/// One log bell per worker where there are several (a single worker
/// pumps its own watchers in the pass that produced the lines).
/// Each worker's ring and bell, by worker.
type LogBells = (Vec<Option<Ring>>, Vec<Option<Bell>>);

fn log_bells(threads: usize) -> io::Result<LogBells> {
    let (mut rings, mut bells) = (Vec::new(), Vec::new());
    for _ in 0..threads {
        if threads > 1 {
            let (ring, bell) = bell_pair()?;
            rings.push(ring);
            bells.push(Some(bell));
        } else {
            rings.push(None);
            bells.push(None);
        }
    }
    Ok((rings, bells))
}

/// Copies the connection and buffer figures into the store (so `stats` is
/// exact) and samples CPU time every [`SAMPLE_EVERY_MS`].
fn refresh_host_stats(shared: &Shared, store: &mut Store, now: Clock) {
    let n = shared.conns.load(Ordering::Relaxed) as u64;
    let h = store.host_stats_mut();
    h.curr_connections = n;
    h.connection_structures = h.connection_structures.max(n);
    h.total_connections = shared.total_conns.load(Ordering::Relaxed);
    h.rejected_connections = shared.rejected_conns.load(Ordering::Relaxed);
    h.listen_disabled_num = shared.listen_disabled.load(Ordering::Relaxed);
    h.accepting_conns = shared.accepting.load(Ordering::Relaxed);
    let s = shared.sample(now);
    h.rusage_user_us = s[0];
    h.rusage_system_us = s[1];
    h.conn_input_bytes = s[2];
    h.conn_output_bytes = s[3];
    h.conn_closed_for_memory = s[4];
    h.idle_kicks = s[5];
}

/// The process id to report: the runner passes its own (a wasm guest has
/// none); natively it is ours.
fn host_pid() -> u32 {
    if let Some(pid) = std::env::var("WASMCACHED_PID")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return pid;
    }
    #[cfg(not(target_os = "wasi"))]
    {
        std::process::id()
    }
    #[cfg(target_os = "wasi")]
    {
        0
    }
}

/// CPU time used by the whole process, where the platform can tell.
fn rusage_us() -> (u64, u64) {
    #[cfg(not(target_os = "wasi"))]
    {
        // SAFETY: getrusage fills the zero-initialised struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
            return (us(ru.ru_utime), us(ru.ru_stime));
        }
        (0, 0)
    }
    #[cfg(target_os = "wasi")]
    {
        (0, 0)
    }
}

/// Keeps SIGTERM, SIGINT and SIGUSR1 away from this thread, so they
/// interrupt the first worker's poll, which checks the stop flag (a signal
/// taken by another worker would set the flag while the first sleeps on).
fn block_stop_signals() {
    #[cfg(not(target_os = "wasi"))]
    // SAFETY: the signal set is initialised by sigemptyset before use and
    // only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
