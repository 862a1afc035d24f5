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
//! wasmcached-bench scale --n 1,2,4,8 --server-cpus 0-7 --load-cpus 8-15 --conns 64
//! ```
//!
//! With `--load-cpus` (or `--procs`), `scale` drives the servers from
//! separate generator processes, each pinned to a CPU of its own, and the
//! servers stay on `--server-cpus`: one generator process cannot keep up
//! with a server on eight cores, and generators sharing the servers' cores
//! would measure the scheduler rather than the servers (scripts/scale-device).
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
        /// Run as one of `scale`'s generator processes: no preload, the
        /// clock started and stopped by lines on stdin, one `result` line.
        #[arg(long, hide = true)]
        worker: bool,
        /// Index of this process's first connection among all the
        /// generator processes', so that no two connections draw the same
        /// keys.
        #[arg(long, hide = true, default_value_t = 0)]
        first_conn: usize,
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
        /// CPUs the servers run on, a taskset-style list (`0-7`, `0,2,4`);
        /// unpinned when absent.
        #[arg(long, value_parser = parse_cpus)]
        server_cpus: Option<Cpus>,
        /// CPUs the generator processes run on, one each, round robin.
        #[arg(long, value_parser = parse_cpus)]
        load_cpus: Option<Cpus>,
        /// Generator processes sharing --conns; 0 runs the generator as
        /// threads of this process. Default: one per --load-cpus CPU, else 0.
        #[arg(long)]
        procs: Option<usize>,
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

    /// The line a generator process reports to `scale`: operations,
    /// seconds, its own CPU seconds, and every latency as `µs:count` runs
    /// of the sorted samples. Runs keep the percentiles of the merged
    /// processes exact while staying a few thousand pairs long, where the
    /// raw samples would be millions.
    fn report_line(&self) -> String {
        let mut line = format!(
            "result ops={} secs={} cpu={} lat=",
            self.ops, self.secs, self.client_cpu
        );
        let mut runs = self.lat_us.chunk_by(|a, b| a == b).peekable();
        while let Some(run) = runs.next() {
            line.push_str(&format!("{}:{}", run[0], run.len()));
            if runs.peek().is_some() {
                line.push(',');
            }
        }
        line
    }

    /// Parses [`Measure::report_line`]; the generator's CPU time comes
    /// back as `client_cpu`.
    fn from_report_line(line: &str) -> Option<Measure> {
        let mut m = Measure::default();
        for field in line.strip_prefix("result ")?.split(' ') {
            let (name, value) = field.split_once('=')?;
            match name {
                "ops" => m.ops = value.parse().ok()?,
                "secs" => m.secs = value.parse().ok()?,
                "cpu" => m.client_cpu = value.parse().ok()?,
                "lat" => {
                    for run in value.split(',').filter(|r| !r.is_empty()) {
                        let (us, n) = run.split_once(':')?;
                        let us: u32 = us.parse().ok()?;
                        m.lat_us.extend(std::iter::repeat_n(us, n.parse().ok()?));
                    }
                }
                _ => return None,
            }
        }
        Some(m)
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
    let gens = Generators::connect(ports, w, 0);
    gens.go();
    let cpu0 = pid.map(cpu_secs).unwrap_or(0.0);
    let own0 = cpu_secs(std::process::id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(w.secs));
    gens.stop();
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = pid.map(cpu_secs).unwrap_or(0.0) - cpu0;
    let client_cpu = cpu_secs(std::process::id()) - own0;
    Measure {
        secs,
        server_cpu,
        client_cpu,
        ..gens.join()
    }
}

/// The generator threads of one process, connected and waiting for
/// [`Generators::go`].
struct Generators {
    stop: Arc<AtomicBool>,
    /// Passed twice by every thread and the caller: once all connections
    /// are established, and again when the clock starts.
    ready: Arc<std::sync::Barrier>,
    handles: Vec<std::thread::JoinHandle<Measure>>,
}

impl Generators {
    /// Starts the threads for `w.conns` clients (numbered from
    /// `first_conn`) and returns once every connection is established and
    /// answered once, so accept-queue ramp-up is not counted as request
    /// latency.
    fn connect(ports: &[u16], w: &Workload, first_conn: usize) -> Generators {
        let stop = Arc::new(AtomicBool::new(false));
        // Connections are spread over a few generator threads, each
        // polling its own: a thread per connection spent more CPU on
        // context switches than the servers spend per request, and on a
        // shared machine the generator's CPU is taken from the server
        // under test.
        let threads = w.threads.clamp(1, w.conns.max(1));
        let ready = Arc::new(std::sync::Barrier::new(threads + 1));
        let handles = (0..threads)
            .map(|t| {
                let (w, stop, ready) = (w.clone(), stop.clone(), ready.clone());
                let ports = ports.to_vec();
                let mine: Vec<usize> = (0..w.conns)
                    .filter(|c| c % threads == t)
                    .map(|c| first_conn + c)
                    .collect();
                std::thread::spawn(move || generate(&ports, &w, &mine, &stop, &ready))
            })
            .collect();
        ready.wait();
        Generators {
            stop,
            ready,
            handles,
        }
    }

    /// Starts the closed loops: the clock starts now.
    fn go(&self) {
        self.ready.wait();
    }

    /// Ends the closed loops; requests still in flight are not counted.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The threads' operations and latencies (sorted), once they ended.
    fn join(self) -> Measure {
        let mut total = Measure::default();
        for h in self.handles {
            if let Ok(m) = h.join() {
                total.ops += m.ops;
                total.lat_us.extend(m.lat_us);
            }
        }
        total.lat_us.sort_unstable();
        total
    }
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
    reset_on_close(&sock);
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

/// Makes closing `sock` reset the connection instead of leaving it in
/// TIME_WAIT. The generator closes first, so every connection it ends
/// would hold a loopback port for a minute; a run of many measurements
/// with hundreds of connections each would fill the port range until no
/// run of consecutive free ports is left for `wasmcached --instances N`.
fn reset_on_close(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value points at a live linger of the length given.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
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
    // Connected; now wait for the clock.
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

/// A list of CPU numbers, parsed from a taskset-style list.
#[derive(Clone, Debug, PartialEq)]
struct Cpus(Vec<usize>);

/// Parses `0-7`, `0,2,4` or `0-3,8-11`.
fn parse_cpus(list: &str) -> Result<Cpus, String> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&c| c < libc::CPU_SETSIZE as usize)
                .ok_or_else(|| format!("not a CPU number: {v:?}"))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("empty CPU range {part:?}"));
        }
        cpus.extend(lo..=hi);
    }
    Ok(Cpus(cpus))
}

/// The affinity mask holding `cpus`.
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `parse_cpus` keeps every CPU below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Sets the calling thread's affinity (a child forked from it inherits it).
fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a live cpu_set_t of the size given; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` (which starts a server) with this thread pinned to `cpus`,
/// then restores the thread's affinity. The servers are started by the
/// shared test helpers, which build their own commands; a child inherits
/// its parent's affinity, and every thread it creates inherits that, so
/// the whole server stays on `cpus` from its first instruction.
fn pinned<T>(cpus: Option<&Cpus>, f: impl FnOnce() -> T) -> T {
    let Some(cpus) = cpus else {
        return f();
    };
    // SAFETY: zeroed is a valid cpu_set_t, filled by sched_getaffinity.
    let mut was: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `was` is a live cpu_set_t of the size given.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&was), &mut was) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    set_affinity(&cpu_set(&cpus.0))
        .unwrap_or_else(|e| panic!("cannot pin to CPUs {:?}: {e}", cpus.0));
    let out = f();
    set_affinity(&was).expect("restore affinity");
    out
}

/// How `--conns` connections are split over `procs` generator processes:
/// each process's first connection and count, as even as can be, no
/// process without connections.
fn split_conns(conns: usize, procs: usize) -> Vec<(usize, usize)> {
    let procs = procs.clamp(1, conns.max(1));
    let mut first = 0;
    (0..procs)
        .map(|i| {
            let n = conns / procs + usize::from(i < conns % procs);
            first += n;
            (first - n, n)
        })
        .collect()
}

/// One generator process of [`load_procs`]: this binary's `load --worker`,
/// driven through its stdin and stdout, killed on drop.
struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Worker {
    /// Starts a generator for `conns` connections from `first_conn`,
    /// pinned to `cpu` when given.
    fn spawn(
        ports: &[u16],
        w: &Workload,
        (first_conn, conns): (usize, usize),
        cpu: Option<usize>,
    ) -> Worker {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().expect("path of this binary");
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["load", "--worker", "--port", &ports[0].to_string()])
            .args(["--servers", &ports.len().to_string()])
            .args(["--first-conn", &first_conn.to_string()])
            .args(workload_args(&Workload { conns, ..w.clone() }))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if let Some(cpu) = cpu {
            let set = cpu_set(&[cpu]);
            // SAFETY: sched_setaffinity is a plain system call, safe
            // between fork and exec.
            unsafe { cmd.pre_exec(move || set_affinity(&set)) };
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        Worker {
            child,
            stdin,
            stdout,
        }
    }

    /// The generator's next line; panics if it ended without one.
    fn line(&mut self) -> String {
        let mut line = String::new();
        match std::io::BufRead::read_line(&mut self.stdout, &mut line) {
            Ok(n) if n > 0 => line.trim_end().to_string(),
            _ => panic!(
                "a generator process ended early: {:?}",
                self.child.try_wait()
            ),
        }
    }

    fn say(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").expect("write to a generator process");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command-line options that give a generator process workload `w`.
fn workload_args(w: &Workload) -> Vec<String> {
    let mut args: Vec<String> = [
        ("--conns", w.conns.to_string()),
        ("--depth", w.depth.to_string()),
        ("--get-ratio", w.get_ratio.to_string()),
        ("--keys", w.keys.to_string()),
        ("--value", w.value.to_string()),
        ("--multi", w.multi.to_string()),
        ("--secs", w.secs.to_string()),
        ("--threads", w.threads.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    if w.binary {
        args.push("--binary".into());
    }
    args
}

/// `load --worker`: connects, says `ready`, runs the closed loop from the
/// first line on stdin to the next one (or its end), and prints its
/// [`Measure::report_line`]. The parent, not this process, times the
/// window, so that every generator process measures the same seconds as
/// the server's CPU time.
fn worker(ports: &[u16], w: &Workload, first_conn: usize) {
    let gens = Generators::connect(ports, w, first_conn);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.read_line(&mut line).expect("stdin");
    gens.go();
    let own0 = cpu_secs(std::process::id());
    let started = Instant::now();
    line.clear();
    let _ = stdin.read_line(&mut line);
    gens.stop();
    let secs = started.elapsed().as_secs_f64();
    let client_cpu = cpu_secs(std::process::id()) - own0;
    let m = Measure {
        secs,
        client_cpu,
        ..gens.join()
    };
    writeln!(out, "{}", m.report_line())
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// [`load`] from separate generator processes, one per entry of
/// `split_conns(w.conns, procs)`, pinned to `cpus` round robin: a load
/// that needs several cores, measured without the generators' threads
/// competing in one process or wandering onto the servers' cores. All
/// are connected before the window opens, and run the same window.
fn load_procs(ports: &[u16], w: &Workload, pid: u32, procs: usize, cpus: Option<&Cpus>) -> Measure {
    preload(ports, w);
    let mut workers: Vec<Worker> = split_conns(w.conns, procs)
        .into_iter()
        .enumerate()
        .map(|(i, share)| Worker::spawn(ports, w, share, cpus.map(|c| c.0[i % c.0.len()])))
        .collect();
    for wk in &mut workers {
        let said = wk.line();
        assert_eq!(said, "ready", "a generator process said {said:?}");
    }
    let cpu0 = cpu_secs(pid);
    let started = Instant::now();
    workers.iter_mut().for_each(|wk| wk.say("go"));
    std::thread::sleep(Duration::from_secs(w.secs));
    workers.iter_mut().for_each(|wk| wk.say("stop"));
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(pid) - cpu0;
    let mut total = Measure {
        secs,
        server_cpu,
        ..Measure::default()
    };
    for wk in &mut workers {
        let line = wk.line();
        let m = Measure::from_report_line(&line)
            .unwrap_or_else(|| panic!("a generator process reported {line:?}"));
        total.ops += m.ops;
        total.client_cpu += m.client_cpu;
        total.lat_us.extend(m.lat_us);
    }
    total.lat_us.sort_unstable();
    total
}

/// Where [`scale`] runs its servers and generators.
struct Placement {
    server_cpus: Option<Cpus>,
    load_cpus: Option<Cpus>,
    /// Generator processes; 0: threads of this process, as [`load`].
    procs: usize,
}

impl Placement {
    /// Loads the running `server` with `w`.
    fn measure(&self, server: &Running, w: &Workload) -> Measure {
        if self.procs == 0 {
            return load(&server.ports(), w, Some(server.pid()));
        }
        load_procs(
            &server.ports(),
            w,
            server.pid(),
            self.procs,
            self.load_cpus.as_ref(),
        )
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
fn scale(ns: &[u16], rounds: usize, w: &Workload, place: &Placement) {
    println!("| N | server | ops/s | p50 ms | p99 ms | server CPU µs/op | generator CPU µs/op | ops/s vs memcached -t N |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in ns {
        let subjects = scale_subjects(n);
        let mut results: Vec<Vec<Measure>> = subjects.iter().map(|_| Vec::new()).collect();
        alternate(subjects.len(), rounds, |at| {
            let server = pinned(place.server_cpus.as_ref(), || (subjects[at].1)());
            results[at].push(place.measure(&server, w));
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
        Cmd::Load {
            port,
            servers,
            worker: true,
            first_conn,
            w,
        } => worker(&(port..port + servers).collect::<Vec<_>>(), &w, first_conn),
        Cmd::Load {
            port, servers, w, ..
        } => {
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
        Cmd::Scale {
            n,
            rounds,
            server_cpus,
            load_cpus,
            procs,
            w,
        } => {
            let procs = procs.unwrap_or(load_cpus.as_ref().map_or(0, |c| c.0.len()));
            let place = Placement {
                server_cpus,
                load_cpus,
                procs,
            };
            scale(&n, rounds, &w, &place)
        }
        Cmd::Memory { items } => memory(items),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_cpus, split_conns, Cpus, Measure, Replies};

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(parse_cpus("0-3"), Ok(Cpus(vec![0, 1, 2, 3])));
        assert_eq!(parse_cpus("0,2,4"), Ok(Cpus(vec![0, 2, 4])));
        assert_eq!(parse_cpus("1,8-9"), Ok(Cpus(vec![1, 8, 9])));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("5000").is_err());
    }

    /// Every connection goes to exactly one process, shares differ by at
    /// most one, and no process is started without connections.
    #[test]
    fn connections_split_evenly_over_processes() {
        let eights: Vec<(usize, usize)> = (0..8).map(|i| (8 * i, 8)).collect();
        assert_eq!(split_conns(64, 8), eights);
        assert_eq!(split_conns(10, 4), vec![(0, 3), (3, 3), (6, 2), (8, 2)]);
        assert_eq!(split_conns(2, 8), vec![(0, 1), (1, 1)]);
    }

    /// A generator process's report carries its latencies exactly, so
    /// percentiles over several processes are those of all samples.
    #[test]
    fn report_lines_carry_every_latency() {
        let m = Measure {
            ops: 6,
            secs: 2.5,
            client_cpu: 0.25,
            lat_us: vec![7, 7, 9, 12, 12, 12],
            ..Measure::default()
        };
        let line = m.report_line();
        assert_eq!(line, "result ops=6 secs=2.5 cpu=0.25 lat=7:2,9:1,12:3");
        let back = Measure::from_report_line(&line).expect("parses");
        assert_eq!((back.ops, back.secs, back.client_cpu), (6, 2.5, 0.25));
        assert_eq!(back.lat_us, m.lat_us);
        let empty = Measure::from_report_line(&Measure::default().report_line()).expect("parses");
        assert!(empty.lat_us.is_empty());
        assert!(Measure::from_report_line("ready").is_none());
    }

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
