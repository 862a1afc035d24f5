//! Helpers for end-to-end tests: starting the servers under test on free
//! loopback ports (polling for readiness, never sleeping), and a minimal
//! blocking client that reads exact byte counts.

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

/// Directory holding the release binaries (`WASMCACHED_BIN_DIR` overrides).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMCACHED_BIN_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release")
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
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
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
        cmd.args(opts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server { child, port, kind };
        if wait_ready(&mut server, Duration::from_secs(30)) {
            return server;
        }
    }
    panic!("{} did not become ready", kind.name());
}

fn wait_ready(server: &mut Server, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 64];
            if s.write_all(b"version\r\n").is_ok()
                && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"VERSION"))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
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
