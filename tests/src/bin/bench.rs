//! `wasmcached-bench`: a load generator and the side-by-side comparison of
//! wasmcached (wasm under the runner), wasmcached-server (native) and
//! memcached 1.6.18, started fresh for every measurement, in alternating
//! rounds so machine drift cancels out.
//!
//! ```sh
//! cargo run --release -p wasmcached-tests --bin wasmcached-bench -- compare
//! cargo run --release -p wasmcached-tests --bin wasmcached-bench -- memory
//! cargo run --release -p wasmcached-tests --bin wasmcached-bench -- load --port 11211 --conns 16
//! cargo run --release -p wasmcached-tests --bin wasmcached-bench -- load --port 11211 --servers 4
//! cargo run --release -p wasmcached-tests --bin wasmcached-bench -- scale --n 1,2
//! ```
//!
//! Against several servers (`--servers`, `scale`), each generator
//! connection is a hashing client: it holds a socket to every server and
//! sends each key to the server its hash picks, splitting multigets, the
//! way pymemcache's `HashClient` or twemproxy do.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use wasmcached_tests::instances::{start_instances, Instances};
use wasmcached_tests::{rss_bytes, start, Client, Kind, Server};

#[derive(Parser)]
#[command(name = "wasmcached-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load one running server, or several on consecutive ports.
    Load {
        #[arg(long)]
        port: u16,
        /// Servers on ports --port .. --port+N-1, keys hashed over them
        /// (e.g. `wasmcached --instances N`).
        #[arg(long, default_value_t = 1)]
        servers: u16,
        #[command(flatten)]
        w: Workload,
    },
    /// Scaling out: memcached -t N, wasmcached-server -t N and wasmcached
    /// --instances N (keys hashed over the instances), for each N.
    Scale {
        /// Values of N.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        n: Vec<u16>,
        /// Rounds per N and server.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[command(flatten)]
        w: Workload,
    },
    /// Every workload against the three servers, alternating rounds.
    Compare {
        /// Rounds per workload and server.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// Only workloads whose name contains this (e.g. "16 conns").
        #[arg(long, default_value = "")]
        only: String,
        /// Skip the memaslap cross-check.
        #[arg(long)]
        no_memaslap: bool,
    },
    /// RSS growth per item for 1,000,000 items (10-byte keys, 64-byte values).
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        items: usize,
    },
}

/// A closed-loop workload.
#[derive(clap::Args, Clone, Debug)]
struct Workload {
    /// Connections.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Fraction of gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Distinct keys (preloaded).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    value: usize,
    /// Keys per get (100 = multiget).
    #[arg(long, default_value_t = 1)]
    multi: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Generator threads; connections are spread over them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Speak the binary protocol: get (a multiget: getkq per key, then a
    /// noop) and set packets.
    #[arg(long)]
    binary: bool,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Measure {
    ops: u64,
    secs: f64,
    lat_us: Vec<u32>,
    /// Server CPU seconds (user + system) during the measured window.
    server_cpu: f64,
    /// The load generator's own CPU seconds in the same window: on a
    /// shared machine, server and generator split the cores.
    client_cpu: f64,
}

/// CPU seconds a process has used (Linux `/proc/<pid>/stat`).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; index from after the comm field.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs Debian's memcaslap (90/10 get/set, 64-byte values, 16
/// concurrency, 2 threads) against `port`, in the binary protocol with
/// `binary`; returns its TPS.
fn memcaslap(port: u16, secs: u64, binary: bool) -> Option<f64> {
    let out = std::process::Command::new("memcaslap")
        .args(binary.then_some("--binary"))
        .args([
            "-s",
            &format!("127.0.0.1:{port}"),
            "-T",
            "2",
            "-c",
            "16",
            "-X",
            "64",
            "-t",
            &format!("{secs}s"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text.lines().rev().find_map(|l| l.split("TPS: ").nth(1))?;
    tps.split_whitespace().next()?.parse().ok()
}

impl Measure {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.lat_us[i]) / 1000.0
    }
    /// Server CPU µs per operation.
    fn server_us_per_op(&self) -> f64 {
        self.server_cpu * 1e6 / self.ops.max(1) as f64
    }
    /// Load generator CPU µs per operation.
    fn client_us_per_op(&self) -> f64 {
        self.client_cpu * 1e6 / self.ops.max(1) as f64
    }
}

/// Runs `each(at)` for every one of `n` subjects in each of `rounds`
/// rounds, each round starting one subject later, so that none always
/// runs first.
fn alternate(n: usize, rounds: usize, mut each: impl FnMut(usize)) {
    for r in 0..rounds {
        for i in 0..n {
            each((i + r) % n);
        }
    }
}

/// One subject's measurements over the rounds: the mean ops/s, and all of
/// them merged into one (latencies sorted, operations and CPU summed).
fn summarize(ms: Vec<Measure>) -> (f64, Measure) {
    let ops = ms.iter().map(Measure::ops_per_sec).sum::<f64>() / ms.len().max(1) as f64;
    let mut all = Measure::default();
    for m in ms {
        all.lat_us.extend(m.lat_us);
        all.ops += m.ops;
        all.server_cpu += m.server_cpu;
        all.client_cpu += m.client_cpu;
    }
    all.lat_us.sort_unstable();
    (ops, all)
}

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

/// The server (index into the ports) a hashing client sends `key` to.
fn route(key: &[u8], servers: usize) -> usize {
    if servers == 1 {
        return 0;
    }
    // SipHash with fixed keys: the same spread in every run.
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % servers as u64) as usize
}

/// Stores every key of the workload on the server it routes to.
fn preload(ports: &[u16], w: &Workload) {
    let mut clients: Vec<Client> = ports.iter().map(|&p| Client::connect(p)).collect();
    let mut batches = vec![Vec::new(); ports.len()];
    let value = "v".repeat(w.value);
    for i in 0..w.keys {
        let k = key(i);
        let to = route(k.as_bytes(), ports.len());
        let batch = &mut batches[to];
        batch.extend(format!("set {k} 0 0 {} noreply\r\n{value}\r\n", w.value).bytes());
        if batch.len() > 256 * 1024 {
            clients[to].send(batch);
            batch.clear();
        }
    }
    for (c, batch) in clients.iter_mut().zip(&mut batches) {
        batch.extend(b"mn\r\n");
        c.send(batch);
        let got = c.read_until(b"MN\r\n", Duration::from_secs(120));
        assert!(got.ends_with(b"MN\r\n"), "preload did not finish");
    }
}

/// Frames the replies of a closed-loop run by their lengths: a `VALUE`
/// line announces how many data bytes to skip, `END` ends a get and any
/// other line answers a set. Value bodies are never scanned or copied, so
/// the generator's cost does not grow with the value size.
///
/// Binary replies are framed by their headers' body lengths the same way:
/// a get or noop reply ends a get, a set reply answers a set, and getkq
/// hits are skipped.
#[derive(Default)]
struct Replies {
    /// A reply line (or binary header) split across reads.
    line: Vec<u8>,
    /// Data bytes (and their CRLF) still to skip.
    skip: usize,
    /// The replies are binary packets.
    binary: bool,
}

impl Replies {
    /// Consumes `data`; returns the gets and sets completed in it.
    fn scan(&mut self, mut data: &[u8]) -> (usize, usize) {
        if self.binary {
            return self.scan_binary(data);
        }
        let (mut ends, mut sets) = (0, 0);
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(data);
                break;
            };
            self.line.extend_from_slice(&data[..=nl]);
            data = &data[nl + 1..];
            let line = &self.line[..];
            if let Some(rest) = line.strip_prefix(b"VALUE ") {
                let len = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|r| r.split_whitespace().nth(2))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                self.skip = len + 2;
            } else if line == b"END\r\n" {
                ends += 1;
            } else {
                sets += 1;
            }
            self.line.clear();
        }
        (ends, sets)
    }
}

impl Replies {
    fn scan_binary(&mut self, mut data: &[u8]) -> (usize, usize) {
        let (mut ends, mut sets) = (0, 0);
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            let k = (24 - self.line.len()).min(data.len());
            self.line.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.line.len() < 24 {
                break;
            }
            let h = &self.line;
            match h[1] {
                BIN_GET | BIN_NOOP => ends += 1,
                BIN_SET => sets += 1,
                _ => {}
            }
            self.skip = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            self.line.clear();
        }
        (ends, sets)
    }
}

const BIN_GET: u8 = 0x00;
const BIN_SET: u8 = 0x01;
const BIN_NOOP: u8 = 0x0a;
const BIN_GETKQ: u8 = 0x0d;

/// A binary request packet.
fn bin_packet(out: &mut Vec<u8>, opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) {
    out.extend_from_slice(&[0x80, opcode]);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Runs the workload against 127.0.0.1 at `ports` (keys hashed over
/// them); `pid` is the server process whose CPU time is measured.
fn load(ports: &[u16], w: &Workload, pid: Option<u32>) -> Measure {
    preload(ports, w);
    let stop = Arc::new(AtomicBool::new(false));
    // Connections are spread over a few generator threads, each polling
    // its own: a thread per connection spent more CPU on context switches
    // than the servers spend per request, and on a shared machine the
    // generator's CPU is taken from the server under test.
    let threads = w.threads.clamp(1, w.conns.max(1));
    // Every connection is established and answered once before the clock
    // starts, so accept-queue ramp-up is not counted as request latency.
    let ready = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (w, stop, ready) = (w.clone(), stop.clone(), ready.clone());
            let ports = ports.to_vec();
            let mine: Vec<usize> = (0..w.conns).filter(|c| c % threads == t).collect();
            std::thread::spawn(move || generate(&ports, &w, &mine, &stop, &ready))
        })
        .collect();
    ready.wait();
    let cpu0 = pid.map(cpu_secs).unwrap_or(0.0);
    let own0 = cpu_secs(std::process::id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(w.secs));
    stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = pid.map(cpu_secs).unwrap_or(0.0) - cpu0;
    let client_cpu = cpu_secs(std::process::id()) - own0;
    let mut total = Measure {
        secs,
        server_cpu,
        client_cpu,
        ..Measure::default()
    };
    for h in handles {
        if let Ok(m) = h.join() {
            total.ops += m.ops;
            total.lat_us.extend(m.lat_us);
        }
    }
    total.lat_us.sort_unstable();
    total
}

/// A generator client's connection to one server, and the part of the
/// current batch sent on it.
struct Conn {
    sock: TcpStream,
    replies: Replies,
    /// Request bytes not yet written.
    out: Vec<u8>,
    written: usize,
    /// `get` lines and sets sent in this batch, and their replies so far.
    gets: usize,
    sets: usize,
    ends: usize,
    stored: usize,
}

impl Conn {
    /// Writes what the socket takes; false if the connection failed.
    fn flush(&mut self) -> bool {
        while self.written < self.out.len() {
            match self.sock.write(&self.out[self.written..]) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    fn done(&self) -> bool {
        self.ends >= self.gets && self.stored >= self.sets
    }

    /// Reads the replies that arrived; false if the connection ended.
    fn receive(&mut self, buf: &mut [u8]) -> bool {
        loop {
            match self.sock.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let (e, s) = self.replies.scan(&buf[..n]);
                    self.ends += e;
                    self.stored += s;
                    if n < buf.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// One closed-loop client of the generator: a connection to each server,
/// `depth` requests in flight, each key sent to the server it routes to.
struct Gen {
    conns: Vec<Conn>,
    rng: u64,
    /// Requests in the current batch (a multiget counts once).
    ops: usize,
    sent_at: Instant,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Builds the next batch of `depth` requests. A multiget is split into
    /// one `get` per server holding some of its keys.
    fn start_batch(&mut self, w: &Workload, value: &[u8]) {
        let servers = self.conns.len();
        for c in &mut self.conns {
            c.out.clear();
            c.written = 0;
            (c.gets, c.sets, c.ends, c.stored) = (0, 0, 0, 0);
        }
        for _ in 0..w.depth {
            if w.binary {
                self.add_binary(w, value);
                continue;
            }
            if (self.next() % 10_000) as f64 / 10_000.0 < w.get_ratio {
                for _ in 0..w.multi {
                    let k = key(self.next() as usize % w.keys);
                    let c = &mut self.conns[route(k.as_bytes(), servers)];
                    if c.out.is_empty() || c.out.ends_with(b"\r\n") {
                        c.out.extend(b"get");
                        c.gets += 1;
                    }
                    c.out.push(b' ');
                    c.out.extend(k.bytes());
                }
                for c in &mut self.conns {
                    if !c.out.is_empty() && !c.out.ends_with(b"\r\n") {
                        c.out.extend(b"\r\n");
                    }
                }
            } else {
                let k = key(self.next() as usize % w.keys);
                let c = &mut self.conns[route(k.as_bytes(), servers)];
                c.out
                    .extend(format!("set {k} 0 0 {}\r\n", value.len()).bytes());
                c.out.extend_from_slice(value);
                c.out.extend(b"\r\n");
                c.sets += 1;
            }
        }
        self.ops = w.depth;
        self.sent_at = Instant::now();
    }

    /// Adds one binary request to the batch: a get (a multiget as getkq
    /// per key and a noop to each server holding some of the keys) or a set.
    fn add_binary(&mut self, w: &Workload, value: &[u8]) {
        let servers = self.conns.len();
        if (self.next() % 10_000) as f64 / 10_000.0 >= w.get_ratio {
            let k = key(self.next() as usize % w.keys);
            let c = &mut self.conns[route(k.as_bytes(), servers)];
            bin_packet(&mut c.out, BIN_SET, k.as_bytes(), &[0; 8], value);
            c.sets += 1;
            return;
        }
        if w.multi == 1 {
            let k = key(self.next() as usize % w.keys);
            let c = &mut self.conns[route(k.as_bytes(), servers)];
            bin_packet(&mut c.out, BIN_GET, k.as_bytes(), &[], &[]);
            c.gets += 1;
            return;
        }
        let mut asked = vec![false; servers];
        for _ in 0..w.multi {
            let k = key(self.next() as usize % w.keys);
            let to = route(k.as_bytes(), servers);
            bin_packet(&mut self.conns[to].out, BIN_GETKQ, k.as_bytes(), &[], &[]);
            asked[to] = true;
        }
        for (c, _) in self.conns.iter_mut().zip(asked).filter(|(_, a)| *a) {
            bin_packet(&mut c.out, BIN_NOOP, &[], &[], &[]);
            c.gets += 1;
        }
    }

    fn flush(&mut self) -> bool {
        self.conns.iter_mut().all(Conn::flush)
    }

    fn done(&self) -> bool {
        self.conns.iter().all(Conn::done)
    }
}

/// Connects to 127.0.0.1:`port` and waits for one reply, so the
/// connection is established and accepted before the clock starts. The
/// probe's first byte also sets the connection's protocol.
fn connect(port: u16, binary: bool) -> Option<Conn> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_nodelay(true).ok();
    if binary {
        let mut noop = Vec::new();
        bin_packet(&mut noop, BIN_NOOP, &[], &[], &[]);
        let mut reply = [0u8; 24];
        sock.write_all(&noop).ok()?;
        sock.read_exact(&mut reply).ok()?;
    } else {
        let mut probe = [0u8; 4];
        sock.write_all(b"mn\r\n").ok()?;
        sock.read_exact(&mut probe).ok()?;
    }
    sock.set_nonblocking(true).ok()?;
    Some(Conn {
        sock,
        replies: Replies {
            binary,
            ..Replies::default()
        },
        out: Vec::new(),
        written: 0,
        gets: 0,
        sets: 0,
        ends: 0,
        stored: 0,
    })
}

/// A generator thread: runs the closed loop on clients `mine` until
/// `stop`, polling all their connections together.
fn generate(
    ports: &[u16],
    w: &Workload,
    mine: &[usize],
    stop: &AtomicBool,
    ready: &std::sync::Barrier,
) -> Measure {
    let mut gens = Vec::new();
    for &c in mine {
        let Some(conns) = ports.iter().map(|&p| connect(p, w.binary)).collect() else {
            continue;
        };
        gens.push(Gen {
            conns,
            rng: 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64 + 1),
            ops: 0,
            sent_at: Instant::now(),
        });
    }
    ready.wait();
    let value = vec![b'v'; w.value];
    let mut m = Measure::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(gens.len());
    for g in &mut gens {
        g.start_batch(w, &value);
        if !g.flush() {
            return m;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        fds.clear();
        for c in gens.iter().flat_map(|g| &g.conns) {
            let mut events = libc::POLLIN;
            if c.written < c.out.len() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&c.sock),
                events,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if n <= 0 {
            continue;
        }
        let mut polled = fds.iter();
        for g in &mut gens {
            let mut heard = false;
            for (c, p) in g.conns.iter_mut().zip(polled.by_ref()) {
                if p.revents & libc::POLLOUT != 0 && !c.flush() {
                    return m;
                }
                if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
                    continue;
                }
                if !c.receive(&mut buf) {
                    return m;
                }
                heard = true;
            }
            if heard && g.done() {
                let us = g.sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let ops = g.ops;
                m.ops += ops as u64;
                m.lat_us.extend(std::iter::repeat_n(us, ops));
                g.start_batch(w, &value);
                if !g.flush() {
                    return m;
                }
            }
        }
    }
    m
}

const KINDS: [Kind; 3] = [Kind::Memcached, Kind::Native, Kind::Wasm];

/// A server as the comparison starts it.
struct Subject {
    kind: Kind,
    name: &'static str,
    opts: &'static [&'static str],
}

/// The servers compared, the reference first. On a 2-core machine one
/// generator thread leaves one core to the server, so each server also
/// runs with one thread; memcached is measured with its defaults too,
/// which is what it runs as installed.
const SUBJECTS: [Subject; 4] = [
    Subject {
        kind: Kind::Memcached,
        name: "memcached 1.6.18 (defaults, 4 threads)",
        opts: &["-m", "1024", "-c", "4096"],
    },
    Subject {
        kind: Kind::Memcached,
        name: "memcached 1.6.18 -t 1",
        opts: &["-m", "1024", "-c", "4096", "-t", "1"],
    },
    Subject {
        kind: Kind::Native,
        name: "wasmcached-server (native) -t 1",
        opts: &["-m", "1024", "-c", "4096", "-t", "1"],
    },
    Subject {
        kind: Kind::Wasm,
        name: "wasmcached (wasm)",
        opts: &["-m", "1024", "-c", "4096"],
    },
];

fn compare(rounds: usize, secs: u64, only: &str, memaslap: bool) {
    let base = Workload {
        conns: 16,
        depth: 1,
        get_ratio: 0.9,
        keys: 10_000,
        value: 64,
        multi: 1,
        secs,
        threads: 1,
        binary: false,
    };
    let workloads: Vec<(&str, Workload)> = vec![
        ("90/10 get/set, 64 B, 16 conns", base.clone()),
        (
            "90/10 get/set, 64 B, 256 conns",
            Workload {
                conns: 256,
                ..base.clone()
            },
        ),
        (
            "100-key multiget, 16 conns",
            Workload {
                multi: 100,
                get_ratio: 1.0,
                ..base.clone()
            },
        ),
        (
            "pipelined, depth 64, 16 conns",
            Workload {
                depth: 64,
                ..base.clone()
            },
        ),
        (
            "binary 90/10 get/set, 64 B, 16 conns",
            Workload {
                binary: true,
                ..base.clone()
            },
        ),
        (
            "binary 100-key multiget (getkq), 16 conns",
            Workload {
                binary: true,
                multi: 100,
                get_ratio: 1.0,
                ..base.clone()
            },
        ),
        (
            "90/10, 100 KB values, 16 conns",
            Workload {
                value: 100_000,
                keys: 500,
                ..base.clone()
            },
        ),
    ];
    println!("| workload | server | ops/s | p50 ms | p99 ms | p999 ms | server CPU µs/op | generator CPU µs/op | ops/s vs memcached | p99 vs memcached |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, w) in workloads.iter().filter(|(n, _)| n.contains(only)) {
        let mut results: Vec<Vec<Measure>> = SUBJECTS.iter().map(|_| Vec::new()).collect();
        alternate(SUBJECTS.len(), rounds, |at| {
            let sub = &SUBJECTS[at];
            let server = start(sub.kind, sub.opts);
            results[at].push(load(&[server.port], w, Some(server.pid())));
        });
        let summary: Vec<(f64, Measure)> = results.into_iter().map(summarize).collect();
        let (mc_ops, mc_p99) = (summary[0].0.max(1.0), summary[0].1.pct(0.99).max(0.001));
        for (sub, (ops, m)) in SUBJECTS.iter().zip(&summary) {
            println!(
                "| {name} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2}x | {:.2}x |",
                sub.name,
                ops,
                m.pct(0.5),
                m.pct(0.99),
                m.pct(0.999),
                m.server_us_per_op(),
                m.client_us_per_op(),
                ops / mc_ops,
                m.pct(0.99) / mc_p99
            );
        }
    }
    if !memaslap {
        return;
    }
    // The same 90/10 workload from Debian's memaslap, text and binary, as
    // a cross-check of this load generator.
    for binary in [false, true] {
        let mut tps = [0.0f64; SUBJECTS.len()];
        alternate(SUBJECTS.len(), rounds, |at| {
            let sub = &SUBJECTS[at];
            let server = start(sub.kind, sub.opts);
            tps[at] += memcaslap(server.port, secs, binary).unwrap_or(0.0) / rounds as f64;
        });
        let proto = if binary { ", binary" } else { "" };
        for (sub, t) in SUBJECTS.iter().zip(tps) {
            println!(
                "| memaslap 90/10, 64 B, 16 conc{proto} | {} | {t:.0} | | | | | | {:.2}x | |",
                sub.name,
                t / tps[0].max(1.0)
            );
        }
    }
}

/// A server started for [`scale`]: one process, one or more ports.
enum Running {
    One(Server),
    Many(Instances),
}

impl Running {
    fn ports(&self) -> Vec<u16> {
        match self {
            Running::One(s) => vec![s.port],
            Running::Many(i) => i.ports.clone(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Running::One(s) => s.pid(),
            Running::Many(i) => i.pid(),
        }
    }
}

/// The servers [`scale`] compares at `n`: memcached and the native server
/// with `n` threads on one port, the wasm server as `n` instances on `n`
/// ports (the generator hashes keys over them).
fn scale_subjects(n: u16) -> [(String, Box<dyn Fn() -> Running>); 3] {
    let t = n.to_string();
    let (t1, t2) = (t.clone(), t.clone());
    [
        (
            format!("memcached 1.6.18 -t {n}"),
            Box::new(move || {
                Running::One(start(
                    Kind::Memcached,
                    &["-m", "1024", "-c", "4096", "-t", &t1],
                ))
            }),
        ),
        (
            format!("wasmcached-server (native) -t {n}"),
            Box::new(move || {
                Running::One(start(
                    Kind::Native,
                    &["-m", "1024", "-c", "4096", "-t", &t2],
                ))
            }),
        ),
        (
            format!("wasmcached (wasm) --instances {n}"),
            Box::new(move || Running::Many(start_instances(n, &["-m", "1024", "-c", "4096"]))),
        ),
    ]
}

/// Scaling out: for each N, memcached -t N, wasmcached-server -t N and
/// wasmcached --instances N under the same hashing generator, each started
/// fresh per measurement, in alternating rounds.
fn scale(ns: &[u16], rounds: usize, w: &Workload) {
    println!("| N | server | ops/s | p50 ms | p99 ms | server CPU µs/op | generator CPU µs/op | ops/s vs memcached -t N |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in ns {
        let subjects = scale_subjects(n);
        let mut results: Vec<Vec<Measure>> = subjects.iter().map(|_| Vec::new()).collect();
        alternate(subjects.len(), rounds, |at| {
            let server = (subjects[at].1)();
            results[at].push(load(&server.ports(), w, Some(server.pid())));
        });
        let mut base = 0.0;
        for ((name, _), ms) in subjects.iter().zip(results) {
            let (ops, all) = summarize(ms);
            if base == 0.0 {
                base = ops.max(1.0);
            }
            println!(
                "| {n} | {name} | {ops:.0} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2}x |",
                all.pct(0.5),
                all.pct(0.99),
                all.server_us_per_op(),
                all.client_us_per_op(),
                ops / base
            );
        }
    }
}

fn memory(items: usize) {
    println!("| server | RSS before | RSS after | bytes per item | vs memcached |");
    println!("|---|---|---|---|---|");
    let mut base = 0.0;
    for kind in KINDS {
        let server = start(kind, &["-m", "1024"]);
        let mut c = server.connect();
        c.call(b"mn\r\n", b"MN\r\n");
        let before = rss_bytes(server.pid());
        let value = "v".repeat(64);
        let mut batch = Vec::new();
        for i in 0..items {
            batch.extend(format!("set k{i:09} 0 0 64 noreply\r\n{value}\r\n").bytes());
            if batch.len() > 256 * 1024 {
                c.send(&batch);
                batch.clear();
            }
        }
        batch.extend(b"mn\r\n");
        c.send(&batch);
        let got = c.read_until(b"MN\r\n", Duration::from_secs(300));
        assert!(got.ends_with(b"MN\r\n"));
        let stats = wasmcached_tests::parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        let stored = wasmcached_tests::stat(&stats, "curr_items");
        assert_eq!(
            stored as usize,
            items,
            "{} evicted items; raise -m",
            kind.name()
        );
        let after = rss_bytes(server.pid());
        let per = (after.saturating_sub(before)) as f64 / items as f64;
        if kind == Kind::Memcached {
            base = per;
        }
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} | {:.2}x |",
            kind.name(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per,
            per / base
        );
    }
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Load { port, servers, w } => {
            let ports: Vec<u16> = (0..servers).map(|i| port + i).collect();
            let m = load(&ports, &w, None);
            println!(
                "{:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms ({} ops in {:.1} s)",
                m.ops_per_sec(),
                m.pct(0.5),
                m.pct(0.99),
                m.pct(0.999),
                m.ops,
                m.secs
            );
        }
        Cmd::Compare {
            rounds,
            secs,
            only,
            no_memaslap,
        } => compare(rounds, secs, &only, !no_memaslap),
        Cmd::Scale { n, rounds, w } => scale(&n, rounds, &w),
        Cmd::Memory { items } => memory(items),
    }
}

#[cfg(test)]
mod tests {
    use super::Replies;

    /// Any split of the reply stream frames the same replies, and value
    /// bodies that look like terminators are skipped, not counted.
    #[test]
    fn replies_are_framed_by_length_across_any_split() {
        let stream: &[u8] =
            b"VALUE k 0 5\r\nEND\r\n\r\nEND\r\nSTORED\r\nVALUE a 1 3\r\nabc\r\nVALUE b 2 0\r\n\r\nEND\r\n";
        for cut in 0..=stream.len() {
            let mut r = Replies::default();
            let (e1, s1) = r.scan(&stream[..cut]);
            let (e2, s2) = r.scan(&stream[cut..]);
            assert_eq!((e1 + e2, s1 + s2), (2, 1), "split at {cut}");
        }
    }
}
