//! Helpers for end-to-end tests: starting the servers under test on free
//! loopback ports (polling for readiness, never sleeping), and a minimal
//! blocking client that reads exact byte counts.

pub mod instances;
pub mod replay;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The wasm component under the `wasmcached` runner.
    Wasm,
    /// The same server built natively (`wasmcached-server`).
    Native,
    /// Debian's memcached 1.6.18, the reference.
    Memcached,
}

impl Kind {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wasm => "wasmcached (wasm)",
            Kind::Native => "wasmcached-server (native)",
            Kind::Memcached => "memcached 1.6.18",
        }
    }
}

/// The repository's root: `conformance/`, `tests/python/` and `.venv` lie
/// below it.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's `.venv` Python, which `scripts/setup` creates with the
/// client libraries the tests drive; panics, saying so, where it is missing.
pub fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup",
        python.display()
    );
    python
}

/// Directory holding the release binaries (`WASMCACHED_BIN_DIR` overrides).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMCACHED_BIN_DIR") {
        return PathBuf::from(d);
    }
    repo_root().join("target/release")
}

/// Builds the sandbox probe (tests/sandbox-probe), a guest component that
/// tries everything the server must not be able to do and prints one
/// `name: allowed|denied ...` line a try; returns the path of its `.wasm`.
pub fn build_sandbox_probe() -> PathBuf {
    let root = repo_root();
    let target_dir = root.join("target/sandbox-probe");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "wasmcached-sandbox-probe",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building the probe failed (rustup target add wasm32-wasip2)"
    );
    target_dir.join("wasm32-wasip2/release/wasmcached-sandbox-probe.wasm")
}

fn binary(kind: Kind) -> PathBuf {
    match kind {
        Kind::Wasm => bin_dir().join("wasmcached"),
        Kind::Native => bin_dir().join("wasmcached-server"),
        Kind::Memcached => PathBuf::from("memcached"),
    }
}

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// What it is.
    pub kind: Kind,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects a new client.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` and returns the exit status once the server exited.
    pub fn stop_with(mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let status = self.child.wait().expect("wait for server");
        std::mem::forget(self);
        status
    }
}

/// A free loopback port (bound and released; `start` retries on a race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Starts a server of `kind` with extra memcached-style options, on a free
/// port, and waits until it answers `version`.
pub fn start(kind: Kind, opts: &[&str]) -> Server {
    start_with_fd_limit(kind, opts, None)
}

/// [`start`], with the server's open-file limit (soft and hard) set to
/// `nofile` when given, so running out of descriptors can be tested.
pub fn start_with_fd_limit(kind: Kind, opts: &[&str], nofile: Option<u64>) -> Server {
    launch(kind, opts, nofile, None, &[])
}

/// [`start`], with `env` added to the server's environment (for example
/// `MEMCACHED_SASL_PWDB` for `-S`).
pub fn start_with_env(kind: Kind, opts: &[&str], env: &[(&str, &str)]) -> Server {
    launch(kind, opts, None, None, env)
}

/// [`start`], with the server's stderr appended to the file `log` (for
/// tests of what it logs).
pub fn start_logging(kind: Kind, opts: &[&str], log: &std::path::Path) -> Server {
    launch(kind, opts, None, Some(log), &[])
}

fn launch(
    kind: Kind,
    opts: &[&str],
    nofile: Option<u64>,
    log: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> Server {
    let bin = binary(kind);
    if kind != Kind::Memcached && !bin.exists() {
        panic!(
            "{} is missing: build it with `cargo build --release -p wasmcached -p wasmcached-server` (scripts/test does)",
            bin.display()
        );
    }
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["-p", &port.to_string(), "-l", "127.0.0.1"]);
        if kind == Kind::Memcached {
            cmd.args(["-U", "0", "-u", "root"]);
        }
        let stderr = match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
            None => Stdio::inherit(),
        };
        cmd.args(opts)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the
            // child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server { child, port, kind };
        // A server that speaks only the binary protocol (-S, -B binary)
        // is asked for its version in binary; one with -Y refuses it.
        let greeting = if opts.contains(&"-S") || opts.windows(2).any(|w| w == ["-B", "binary"]) {
            Greeting::Binary
        } else if opts.contains(&"-Y") {
            Greeting::AsciiAuth
        } else {
            Greeting::Text
        };
        if wait_ready(&mut server, Duration::from_secs(30), &greeting) {
            return server;
        }
    }
    panic!("{} did not become ready", kind.name());
}

/// A binary-protocol `version` request.
const BINARY_VERSION: [u8; 24] = [
    0x80, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// How a starting server is asked whether it is up.
enum Greeting {
    /// `version`, then `stats` for the pid.
    Text,
    /// A binary `version`.
    Binary,
    /// `-Y`: a `version` the server must refuse as unauthenticated. No
    /// `stats` for the pid: logging in to ask would count in the
    /// `auth_cmds` that tests compare with memcached's.
    AsciiAuth,
}

fn wait_ready(server: &mut Server, timeout: Duration, greeting: &Greeting) -> bool {
    let (request, reply, check_pid): (&[u8], &[u8], bool) = match greeting {
        Greeting::Binary => (&BINARY_VERSION, &[0x81, 0x0b], false),
        Greeting::Text => (b"version\r\n", b"VERSION", true),
        Greeting::AsciiAuth => (b"version\r\n", b"CLIENT_ERROR unauthenticated", false),
    };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 64];
            if s.write_all(request).is_ok()
                && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(reply))
            {
                // Tests start servers in parallel on ports found free a
                // moment earlier: make sure the server answering is this
                // one, not another test's that took the same port (a
                // server that lost the race exits; this one must not be
                // talked to in its place).
                return !check_pid || answers_with_pid(&mut s, server.child.id());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether the server on `s` reports process id `pid` in `stats` (the
/// wasm runner reports its own).
fn answers_with_pid(s: &mut TcpStream, pid: u32) -> bool {
    if s.write_all(b"stats\r\n").is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"END\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    let want = format!("STAT pid {pid}\r\n");
    got.windows(want.len()).any(|w| w == want.as_bytes())
}

/// A blocking test client.
pub struct Client {
    /// The socket.
    pub sock: TcpStream,
}

impl Client {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Client {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_nodelay(true).expect("nodelay");
        Client { sock }
    }

    /// Sends bytes.
    pub fn send(&mut self, b: &[u8]) {
        self.sock.write_all(b).expect("send");
    }

    /// Reads until `n` bytes arrived, EOF, or `timeout`.
    pub fn read_n(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; 256 * 1024];
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.sock
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .expect("timeout");
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Reads until the reply ends with `suffix` (or `timeout`).
    pub fn read_until(&mut self, suffix: &[u8], timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        while !out.ends_with(suffix) && Instant::now() < deadline {
            self.sock
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(_) => {}
            }
        }
        out
    }

    /// Sends a request and reads the reply up to `suffix`.
    pub fn call(&mut self, req: &[u8], suffix: &[u8]) -> Vec<u8> {
        self.send(req);
        self.read_until(suffix, Duration::from_secs(10))
    }

    /// True if the server closes the connection within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            self.sock
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Parses `STAT name value` lines into pairs.
pub fn parse_stats(reply: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("STAT ")?.splitn(2, ' ');
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// One stat as a number.
pub fn stat(stats: &[(String, String)], name: &str) -> u64 {
    stats
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("stat {name} missing"))
}

/// Resident set size of a process in bytes (Linux).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Server {
    /// The exit status if the server has stopped (crashed, trapped or was
    /// killed), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `within` for the server to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, within)
    }
}

/// Waits up to `within` for `child` to exit; its status, `None` if it
/// still runs.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) a process has used so far, in clock ticks
/// (`/proc/PID/stat` fields 14 and 15; see [`clock_ticks_per_sec`]).
/// `None` once the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces:
    // count fields from the last ')'. After it come state (field 3), ...,
    // utime (14) and stime (15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of [`cpu_ticks`] (100 on Linux).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// Raises this process's soft limit on open files towards `want` (capped
/// at the hard limit) and returns the soft limit now in force. Servers
/// started afterwards inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < want as libc::rlim_t {
        let raised = libc::rlimit {
            rlim_cur: (want as libc::rlim_t).min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur
}

/// Connects to 127.0.0.1:`port` with the receive buffer set to
/// `rcvbuf` bytes before the handshake, so the window the peer sees is
/// small from the start (setting it after connect does not shrink an
/// advertised window).
pub fn connect_with_rcvbuf(port: u16, rcvbuf: usize) -> std::io::Result<TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = rcvbuf as libc::c_int;
    // SAFETY: the option value points at a live c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    loop {
        // SAFETY: `addr` is a valid sockaddr_in of the length given.
        let rc = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(TcpStream::from(owned));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Request latencies of one client, for reporting percentiles.
#[derive(Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// Records one request's latency.
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// Requests recorded.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The slowest request (zero if none).
    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }

    /// The `p`-th percentile (0..=100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }

    /// `n=… p50=… p99=… max=…`, for reports.
    pub fn summary(&self) -> String {
        format!(
            "n={} p50={:.1?} p99={:.1?} max={:.1?}",
            self.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.max()
        )
    }
}

/// Pages of memory all TCP sockets on the host hold now (`/proc/net/sockstat`).
pub fn tcp_mem_pages() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

/// The host's TCP memory thresholds in pages (`net.ipv4.tcp_mem`: low,
/// pressure, max). Past "pressure" the kernel throttles every TCP socket.
pub fn tcp_mem_limits() -> Option<[u64; 3]> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem").ok()?;
    let v: Vec<u64> = s
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some([*v.first()?, *v.get(1)?, *v.get(2)?])
}

/// Bytes per page, the unit of [`tcp_mem_pages`].
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Connections the host's listening sockets dropped because their accept
/// queue was full (`TcpExt: ListenOverflows` in `/proc/net/netstat`); each
/// costs the client a SYN retransmission, 1 s or more.
pub fn listen_overflows() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = tcp_ext.next()?;
    let values = tcp_ext.next()?;
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Runs `tests/python/<script>` with `args` under the project's `.venv`
/// Python (`scripts/setup` creates it), printing its output; panics,
/// naming `what`, unless it exits 0. Returns its standard output.
pub fn run_python(script: &str, args: &[String], what: &str) -> String {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{what}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{script} checks failed against {what}"
    );
    text
}
