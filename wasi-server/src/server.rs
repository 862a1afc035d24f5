//! The non-blocking event loop hosting the core, on one or more threads.
//!
//! It only moves bytes: it accepts sockets, reads what arrived into each
//! connection's [`Connection`], runs the core, writes each connection's
//! pending output in one write per pass, and closes connections the core
//! or the peer ended. `std::net` with `set_nonblocking` and `libc::poll`
//! behave the same on wasm32-wasip2 and natively.
//!
//! Natively the server can run several workers (memcached's `-t`). The
//! first worker accepts and hands each new connection to the least loaded
//! worker, which owns and polls it from then on; the one [`Store`] sits behind a mutex that a worker takes per
//! connection, for the core's work only. Reads, writes and the poll, where
//! a request's CPU time goes, run in parallel. A wasm guest has no threads
//! and runs one worker.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmcached_core::{Clock, Config, Connection, Progress, Store};

/// Most bytes read from one socket per call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked for by a pass's first read from a socket. Under wasmtime a
/// read allocates and zeroes a host buffer of the size asked for, so asking
/// for 64 KiB to receive one 30-byte request costs more than the request;
/// only a read that fills this asks for [`READ_CHUNK`] next.
const FIRST_READ: usize = 4 * 1024;
/// Reads per connection per pass, so one busy client cannot starve others.
const READS_PER_PASS: usize = 4;
/// Writes per connection per pass (each continuing a partial one).
const WRITES_PER_PASS: usize = 4;
/// What a rejected client is told (memcached's wording).
const TOO_MANY: &[u8] = b"ERROR Too many open connections\r\n";
/// How often CPU time is sampled for `stats` (a syscall per pass would be
/// measurable).
const RUSAGE_EVERY_MS: u64 = 100;

struct Client {
    sock: TcpStream,
    conn: Connection,
    /// The core yielded with complete requests still buffered.
    has_work: bool,
    /// Bytes arrived in this pass and have not been processed.
    fresh: bool,
    /// The peer closed its side or the socket failed.
    dead: bool,
}

/// What the workers share.
struct Shared {
    listener: TcpListener,
    /// Connections handed to each worker and not yet taken (index 0, the
    /// accepting worker, stays empty).
    inboxes: Vec<Inbox>,
    /// Connections each worker serves, for choosing where a new one goes.
    loads: Vec<AtomicUsize>,
    store: Mutex<Store>,
    /// The store's configuration, readable without the lock.
    cfg: Config,
    conn_limit: usize,
    verbose: u8,
    started: Instant,
    unix_at_start: u64,
    /// Open connections over all workers.
    conns: AtomicUsize,
    total_conns: AtomicU64,
    rejected_conns: AtomicU64,
    /// Monotonic millisecond of the last CPU-time sample.
    rusage_ms: AtomicU64,
}

impl Shared {
    fn clock(&self) -> Clock {
        let el = self.started.elapsed();
        Clock::new(el.as_millis() as u64, self.unix_at_start + el.as_secs())
    }

    /// The store. A worker that panicked while holding it cannot have left
    /// it half-updated by an input-driven path (those do not panic), so a
    /// poisoned lock is taken over rather than propagated.
    ///
    /// A worker waits for the store by yielding its core, never by sleeping
    /// in the kernel: the store is held for one connection's requests (a
    /// microsecond or two), and a waiter put to sleep was woken only at the
    /// next scheduler tick when workers and clients share the cores (with
    /// 2 workers on 2 cores: p99 1.1 ms and p999 4.2 ms sleeping, 0.34 ms
    /// and 1.0–1.7 ms yielding).
    fn store(&self) -> MutexGuard<'_, Store> {
        loop {
            match self.store.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
            }
        }
    }
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
    /// Binds `addr` and creates the store. `threads` workers serve
    /// connections; it is 1 where threads are unavailable (wasm).
    pub fn bind(
        addr: &str,
        cfg: Config,
        conn_limit: usize,
        threads: usize,
        verbose: u8,
    ) -> io::Result<Server> {
        let threads = threads.max(1);
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
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
        let started = Instant::now();
        let unix_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let clock = Clock::new(0, unix_at_start);
        let mut store = Store::new(cfg.clone(), clock);
        store.host_stats_mut().pid = host_pid();
        let shared = Arc::new(Shared {
            listener,
            inboxes,
            loads: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            store: Mutex::new(store),
            cfg,
            conn_limit,
            verbose,
            started,
            unix_at_start,
            conns: AtomicUsize::new(0),
            total_conns: AtomicU64::new(0),
            rejected_conns: AtomicU64::new(0),
            rusage_ms: AtomicU64::new(0),
        });
        let main = Worker::new(shared.clone(), 0, None);
        let others = bells
            .into_iter()
            .enumerate()
            .map(|(i, bell)| Worker::new(shared.clone(), i + 1, Some(bell)))
            .collect();
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
                    if let Err(e) = w.run_forever() {
                        eprintln!("error: worker {id} failed: {e}");
                        std::process::exit(70);
                    }
                })?;
        }
        while !stop.load(Ordering::Relaxed) {
            self.main.pass()?;
        }
        Ok(())
    }
}

/// One event loop: its own connections, polled together.
struct Worker {
    shared: Arc<Shared>,
    id: usize,
    clients: Vec<Client>,
    buf: Vec<u8>,
    pollfds: Vec<libc::pollfd>,
    /// The store's next expiry step, as of this worker's last pass (only
    /// the first worker drives expiry).
    deadline: Option<u64>,
    /// Readable when connections were handed to this worker (all but the
    /// first, which polls the listener instead).
    bell: Option<Bell>,
}

impl Worker {
    fn new(shared: Arc<Shared>, id: usize, bell: Option<Bell>) -> Worker {
        Worker {
            shared,
            id,
            clients: Vec::new(),
            buf: vec![0; READ_CHUNK],
            pollfds: Vec::new(),
            deadline: None,
            bell,
        }
    }

    fn run_forever(&mut self) -> io::Result<()> {
        loop {
            self.pass()?;
        }
    }

    /// One pass: poll, accept, read, process, write, reap.
    fn pass(&mut self) -> io::Result<()> {
        let now = self.shared.clock();
        let timeout = self.poll_timeout(now);
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd {
            fd: match &self.bell {
                Some(b) => b.fd(),
                None => self.shared.listener.as_raw_fd(),
            },
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &self.clients {
            let mut events = 0;
            if c.conn.wants_input(&self.shared.cfg) {
                events |= libc::POLLIN;
            }
            if !c.conn.pending_output().is_empty() {
                events |= libc::POLLOUT;
            }
            self.pollfds.push(libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // SAFETY: `pollfds` is a valid, exclusively borrowed array of
        // `pollfd` for the duration of the call, and its length is passed.
        let n = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        if self.pollfds[0].revents != 0 {
            match &self.bell {
                Some(b) => {
                    b.drain();
                    self.take_handed();
                }
                None => self.accept_all(),
            }
        }
        for i in 0..self.clients.len() {
            let revents = self.pollfds.get(i + 1).map(|p| p.revents).unwrap_or(0);
            if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read(i);
            }
        }
        self.process();
        for c in &mut self.clients {
            write(c, &self.shared.cfg);
        }
        self.reap();
        Ok(())
    }

    /// Milliseconds to wait in poll: 0 when a connection has buffered work,
    /// until the store's next expiry step otherwise (first worker), or
    /// forever.
    fn poll_timeout(&self, now: Clock) -> libc::c_int {
        if self.clients.iter().any(|c| c.has_work) {
            return 0;
        }
        match self.deadline {
            None => -1,
            Some(t) => t.saturating_sub(now.mono_ms).min(i32::MAX as u64) as libc::c_int,
        }
    }

    fn accept_all(&mut self) {
        let shared = &*self.shared;
        loop {
            match shared.listener.accept() {
                Ok((mut sock, peer)) => {
                    if shared.conns.load(Ordering::Relaxed) >= shared.conn_limit {
                        // memcached's maxconns_fast: tell the client and hang up.
                        let _ = sock.set_nonblocking(true);
                        let _ = sock.write(TOO_MANY);
                        shared.rejected_conns.fetch_add(1, Ordering::Relaxed);
                        if shared.verbose > 0 {
                            eprintln!(
                                "rejected connection from {peer}: limit {}",
                                shared.conn_limit
                            );
                        }
                        continue;
                    }
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    if shared.verbose > 1 {
                        eprintln!("<{} new client connection from {peer}", sock.as_raw_fd());
                    }
                    shared.conns.fetch_add(1, Ordering::Relaxed);
                    shared.total_conns.fetch_add(1, Ordering::Relaxed);
                    let to = least_loaded(&shared.loads);
                    shared.loads[to].fetch_add(1, Ordering::Relaxed);
                    if to == self.id {
                        self.clients.push(Client::new(sock));
                    } else {
                        shared.inboxes[to].hand(sock);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if shared.verbose > 0 {
                        eprintln!("accept: {e}");
                    }
                    break;
                }
            }
        }
    }

    /// Adopts the connections the first worker handed to this one.
    fn take_handed(&mut self) {
        let handed = std::mem::take(&mut *lock(&self.shared.inboxes[self.id].queue));
        self.clients.extend(handed.into_iter().map(Client::new));
    }

    /// Reads what client `i` sent, as much as the core wants.
    fn read(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let mut want = FIRST_READ;
        for _ in 0..READS_PER_PASS {
            if !c.conn.wants_input(&self.shared.cfg) {
                break;
            }
            match c.sock.read(&mut self.buf[..want]) {
                Ok(0) => {
                    c.dead = true;
                    break;
                }
                Ok(n) => {
                    c.conn.receive(&self.buf[..n]);
                    c.fresh = true;
                    if n < want {
                        break;
                    }
                    want = READ_CHUNK;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.dead = true;
                    break;
                }
            }
        }
    }

    /// Runs the core for each connection with new bytes or buffered work.
    ///
    /// The store is taken per connection, not per pass: with more runnable
    /// threads than cores (workers plus clients on the same machine), a
    /// worker preempted while holding the store stalls the others for a
    /// whole time slice, and the chance of that grows with the time held
    /// (holding it for a whole pass doubled p99 with 2 workers on 2 cores).
    fn process(&mut self) {
        let shared = &*self.shared;
        let now = shared.clock();
        for c in &mut self.clients {
            if !(c.fresh || c.has_work) {
                continue;
            }
            c.fresh = false;
            let mut store = shared.store();
            refresh_host_stats(shared, &mut store, now);
            c.has_work = matches!(c.conn.process(&mut store, now), Progress::Yielded);
        }
        if self.id == 0 {
            let mut store = shared.store();
            refresh_host_stats(shared, &mut store, now);
            if store.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
                store.handle_timeout(now);
            }
            self.deadline = store.poll_timeout();
        }
    }

    /// Drops clients that are finished.
    fn reap(&mut self) {
        let shared = &*self.shared;
        let id = self.id;
        self.clients.retain(|c| {
            let done = c.dead || (c.conn.is_closing() && c.conn.pending_output().is_empty());
            if done {
                shared.conns.fetch_sub(1, Ordering::Relaxed);
                shared.loads[id].fetch_sub(1, Ordering::Relaxed);
                if shared.verbose > 1 {
                    eprintln!("<{} connection closed.", c.sock.as_raw_fd());
                }
            }
            !done
        });
    }
}

impl Client {
    fn new(sock: TcpStream) -> Client {
        Client {
            sock,
            conn: Connection::new(),
            has_work: false,
            fresh: false,
            dead: false,
        }
    }
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
    queue: Mutex<Vec<TcpStream>>,
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

    fn hand(&self, sock: TcpStream) {
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
        let _ = (&self.0).write(&[1]);
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
    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// Empties the bell so the next poll waits for a new ring.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.0).read(&mut buf), Ok(n) if n > 0) {}
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
    fn fd(&self) -> libc::c_int {
        match self.0 {}
    }

    fn drain(&self) {
        match self.0 {}
    }
}

/// Writes only once the connection has caught up with its buffered
/// requests (or is backed up): replies to one pipelined batch split over
/// several writes would wait for a delayed ACK where TCP_NODELAY is
/// unavailable (WASI). What is pending then goes out at once; a partial
/// write is continued in the same pass (a WASI write takes at most 64 KiB,
/// and waiting a pass for each 64 KiB of a large value costs a poll each).
fn write(c: &mut Client, cfg: &Config) {
    if c.dead || c.has_work {
        return;
    }
    for _ in 0..WRITES_PER_PASS {
        let out = c.conn.pending_output();
        if out.is_empty() {
            break;
        }
        match c.sock.write(out) {
            Ok(n) => {
                let all = n == out.len();
                c.conn.consume_output(n);
                if all || n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                c.dead = true;
                break;
            }
        }
    }
    // Output drained below the high-water mark: parse what is already
    // buffered on the next pass.
    if c.conn.wants_input(cfg) {
        c.has_work = true;
    }
}

/// Copies the connection counters into the store (so `stats` is exact)
/// and samples CPU time every [`RUSAGE_EVERY_MS`].
fn refresh_host_stats(shared: &Shared, store: &mut Store, now: Clock) {
    let n = shared.conns.load(Ordering::Relaxed) as u64;
    let sample = now.mono_ms >= shared.rusage_ms.load(Ordering::Relaxed) + RUSAGE_EVERY_MS;
    if sample {
        shared.rusage_ms.store(now.mono_ms, Ordering::Relaxed);
    }
    let h = store.host_stats_mut();
    h.curr_connections = n;
    h.connection_structures = h.connection_structures.max(n);
    h.total_connections = shared.total_conns.load(Ordering::Relaxed);
    h.rejected_connections = shared.rejected_conns.load(Ordering::Relaxed);
    if sample {
        let (user, sys) = rusage_us();
        h.rusage_user_us = user;
        h.rusage_system_us = sys;
    }
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
