//! The single-threaded, non-blocking event loop hosting the core.
//!
//! It only moves bytes: it accepts sockets, reads what arrived into each
//! connection's [`Connection`], runs the core, writes each connection's
//! pending output in one write per pass, and closes connections the core
//! or the peer ended. The clock is read once per pass; the store's expiry
//! deadline becomes the poll timeout. `std::net` with `set_nonblocking`
//! and `libc::poll` behave the same on wasm32-wasip2 and natively.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
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
/// What a rejected client is told (memcached's wording).
const TOO_MANY: &[u8] = b"ERROR Too many open connections\r\n";

struct Client {
    sock: TcpStream,
    conn: Connection,
    /// The core yielded with complete requests still buffered.
    has_work: bool,
    /// The peer closed its side or the socket failed.
    dead: bool,
}

/// A server: the listener, the shared store and the clients.
pub struct Server {
    listener: TcpListener,
    store: Store,
    clients: Vec<Client>,
    conn_limit: usize,
    verbose: u8,
    started: Instant,
    unix_at_start: u64,
    buf: Vec<u8>,
    pollfds: Vec<libc::pollfd>,
    stats_refreshed_ms: u64,
}

impl Server {
    /// Binds `addr` and creates the store.
    pub fn bind(addr: &str, cfg: Config, conn_limit: usize, verbose: u8) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let started = Instant::now();
        let unix_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let clock = Clock::new(0, unix_at_start);
        let mut store = Store::new(cfg, clock);
        store.host_stats_mut().pid = host_pid();
        Ok(Server {
            listener,
            store,
            clients: Vec::new(),
            conn_limit,
            verbose,
            started,
            unix_at_start,
            buf: vec![0; READ_CHUNK],
            pollfds: Vec::new(),
            stats_refreshed_ms: 0,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    fn clock(&self) -> Clock {
        let el = self.started.elapsed();
        Clock::new(el.as_millis() as u64, self.unix_at_start + el.as_secs())
    }

    /// Runs until `stop` becomes true (checked after every pass; a signal
    /// interrupts the poll) or an unrecoverable error.
    pub fn run(&mut self, stop: &std::sync::atomic::AtomicBool) -> io::Result<()> {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            self.pass()?;
        }
        Ok(())
    }

    /// One event-loop pass: poll, accept, read, process, write, reap.
    pub fn pass(&mut self) -> io::Result<()> {
        let now = self.clock();
        let timeout = self.poll_timeout(now);
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &self.clients {
            let mut events = 0;
            if c.conn.wants_input(&self.store) {
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
        let now = self.clock();
        if self.pollfds[0].revents != 0 {
            self.accept_all();
        }
        for i in 0..self.clients.len() {
            let revents = self.pollfds.get(i + 1).map(|p| p.revents).unwrap_or(0);
            self.serve(i, revents, now);
        }
        self.reap();
        if self.store.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
            self.store.handle_timeout(now);
        }
        // Connection counts change only here; CPU time is sampled at most
        // every 100 ms (a syscall per pass would be measurable).
        if now.mono_ms >= self.stats_refreshed_ms + 100
            || self.clients.len() as u64 != self.store.host_stats_mut().curr_connections
        {
            self.refresh_host_stats();
            self.stats_refreshed_ms = now.mono_ms;
        }
        Ok(())
    }

    /// Milliseconds to wait in poll: 0 when a connection has buffered work,
    /// until the store's next expiry step otherwise, or forever.
    fn poll_timeout(&self, now: Clock) -> libc::c_int {
        if self.clients.iter().any(|c| c.has_work) {
            return 0;
        }
        match self.store.poll_timeout() {
            None => -1,
            Some(t) => t.saturating_sub(now.mono_ms).min(i32::MAX as u64) as libc::c_int,
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, peer)) => {
                    if self.clients.len() >= self.conn_limit {
                        // memcached's maxconns_fast: tell the client and hang up.
                        let _ = sock.set_nonblocking(true);
                        let _ = sock.write(TOO_MANY);
                        self.store.host_stats_mut().rejected_connections += 1;
                        if self.verbose > 0 {
                            eprintln!("rejected connection from {peer}: limit {}", self.conn_limit);
                        }
                        continue;
                    }
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    if self.verbose > 1 {
                        eprintln!("<{} new client connection from {peer}", sock.as_raw_fd());
                    }
                    self.store.host_stats_mut().total_connections += 1;
                    self.clients.push(Client {
                        sock,
                        conn: Connection::new(),
                        has_work: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.verbose > 0 {
                        eprintln!("accept: {e}");
                    }
                    break;
                }
            }
        }
    }

    /// Reads, processes and writes for client `i`.
    fn serve(&mut self, i: usize, revents: libc::c_short, now: Clock) {
        let Server {
            clients,
            store,
            buf,
            ..
        } = self;
        let c = &mut clients[i];
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let mut want = FIRST_READ;
            for _ in 0..READS_PER_PASS {
                if !c.conn.wants_input(store) {
                    break;
                }
                match c.sock.read(&mut buf[..want]) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(n) => {
                        c.conn.receive(&buf[..n]);
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
        c.has_work = matches!(c.conn.process(store, now), Progress::Yielded);
        // At most one write per pass, and only once the connection has
        // caught up with its buffered requests (or is backed up): replies
        // to one pipelined batch split over several writes would wait for a
        // delayed ACK where TCP_NODELAY is unavailable (WASI).
        let out = c.conn.pending_output();
        if !out.is_empty() && !c.dead && !c.has_work {
            match c.sock.write(out) {
                Ok(n) => c.conn.consume_output(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => c.dead = true,
            }
            // Output drained below the high-water mark: parse what is
            // already buffered on the next pass.
            if c.conn.wants_input(store) {
                c.has_work = true;
            }
        }
    }

    /// Drops clients that are finished.
    fn reap(&mut self) {
        let verbose = self.verbose;
        self.clients.retain(|c| {
            let done = c.dead || (c.conn.is_closing() && c.conn.pending_output().is_empty());
            if done && verbose > 1 {
                eprintln!("<{} connection closed.", c.sock.as_raw_fd());
            }
            !done
        });
    }

    fn refresh_host_stats(&mut self) {
        let n = self.clients.len() as u64;
        let (user, sys) = rusage_us();
        let h = self.store.host_stats_mut();
        h.curr_connections = n;
        h.connection_structures = h.connection_structures.max(n);
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

/// CPU time used, where the platform can tell.
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
