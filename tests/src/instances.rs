//! Starting `wasmcached --instances N` for tests and benchmarks: N
//! consecutive free loopback ports, ready once every instance answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin_dir, free_port, Kind, Server};

/// A running `wasmcached --instances N`, killed on drop.
pub struct Instances {
    /// The runner process; its `port` is the first instance's.
    pub server: Server,
    /// Every instance's port, in order (`-p` .. `-p`+N-1).
    pub ports: Vec<u16>,
}

impl Instances {
    /// OS process id of the runner (all instances live in it).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// The first of `n` consecutive loopback ports that were all free a moment
/// ago (a server started on them may still lose a race: retry).
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if u32::from(base) + u32::from(n) > 65535 {
            continue;
        }
        let free = (1..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// True once 127.0.0.1:`port` answers `version` (with `-Y`, with the
/// error that asks for a login first).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    s.write_all(b"version\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n)
            if buf[..n].starts_with(b"VERSION") || buf[..n].starts_with(b"CLIENT_ERROR"))
}

/// Starts `wasmcached --instances n` with extra options on `n` consecutive
/// free ports and waits until every instance answers `version`.
pub fn start_instances(n: u16, opts: &[&str]) -> Instances {
    for _ in 0..5 {
        if let Some(inst) = try_start(free_ports(n), n, opts) {
            return inst;
        }
    }
    panic!("wasmcached --instances {n} did not become ready");
}

/// [`start_instances`] on the ports from `base` (a restart on the ports
/// of an earlier run). Retries for a while: another test's client may
/// hold one of the ports for a moment.
pub fn start_instances_on(base: u16, n: u16, opts: &[&str]) -> Instances {
    for _ in 0..10 {
        if let Some(inst) = try_start(base, n, opts) {
            return inst;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("wasmcached --instances {n} -p {base} did not become ready")
}

/// Starts the runner on the ports from `base`; `None` when it exits or
/// some instance does not answer within 30 s.
fn try_start(base: u16, n: u16, opts: &[&str]) -> Option<Instances> {
    let bin = bin_dir().join("wasmcached");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p wasmcached` (scripts/test does)",
        bin.display()
    );
    let child = Command::new(&bin)
        .args(["-p", &base.to_string(), "-l", "127.0.0.1"])
        .args(["--instances", &n.to_string()])
        .args(opts)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut server = Server {
        child,
        port: base,
        kind: Kind::Wasm,
    };
    let ports: Vec<u16> = (0..n).map(|i| base + i).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waiting = ports.clone();
    while Instant::now() < deadline && server.exit_status().is_none() {
        waiting.retain(|&p| !answers(p));
        if waiting.is_empty() {
            return Some(Instances { server, ports });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
