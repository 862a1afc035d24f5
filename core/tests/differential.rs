//! Differential test: seeded random command streams (text and meta, with
//! noreply, quiet mode and malformed input) are sent to a real memcached
//! 1.6.18 started by the test and to the core; every reply must be
//! byte-identical.
//!
//! Needs Debian's `memcached` on PATH (`scripts/test` installs it).
//! `DIFF_SEEDS` (default 40) and `DIFF_COMMANDS` (default 400) set the size.

// This test waits on a real socket; its timeouts need the wall clock. The
// core under test still only gets the explicit `Clock`.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{feed, Rng};
use wasmcached_core::transcript::{describe_difference, escape};
use wasmcached_core::{Clock, Config, Connection, Store};

struct Memcached {
    child: Child,
    port: u16,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_memcached() -> Memcached {
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-u",
            "root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("memcached 1.6.18 must be installed (apt-get install memcached); scripts/test does this");
        let mc = Memcached { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return mc;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    panic!("memcached did not start");
}

const KEYS: &[&str] = &["a", "b", "c", "n", "k1", "k2", "Zm9v", "foo"];
/// Keys incr/decr/ma may touch. Whether memcached updates a counter in
/// place (padding it with spaces) or replaces it depends on background
/// reference counts (its asynchronous LRU bumps), so replies show counters
/// with padding stripped, and append/prepend never touch these keys.
const COUNTER_KEYS: &[&str] = &["a", "b", "n"];
const TEXT_KEYS: &[&str] = &["c", "k1", "k2", "Zm9v", "foo"];

fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => rng.below(100_000).to_string().into_bytes(),
        1 => Vec::new(),
        2 => format!("{:>5}", rng.below(999)).into_bytes(),
        _ => (0..rng.below(20))
            .map(|_| b'a' + rng.below(26) as u8)
            .collect(),
    }
}

fn exptime(rng: &mut Rng) -> &'static str {
    rng.pick(&["0", "0", "0", "1000", "-1", "2592000", "abc"])
}

/// One random request. Exptimes, TTL and last-access outputs are chosen so
/// no reply depends on when a clock second ticks.
fn request(rng: &mut Rng, casses: &[u64]) -> Vec<u8> {
    let key = rng.pick(KEYS);
    let nr = if rng.chance(10) { " noreply" } else { "" };
    let cas = if !casses.is_empty() && rng.chance(70) {
        casses[rng.below(casses.len() as u64) as usize].to_string()
    } else {
        rng.below(50).to_string()
    };
    let mut out = Vec::new();
    // Oversized values are covered by the transcripts: memcached only
    // answers them after the whole data block has been swallowed.
    match rng.below(24) {
        0..=3 => {
            let cmd = rng.pick(&["set", "set", "add", "replace", "append", "prepend"]);
            let key = if cmd.ends_with("pend") {
                rng.pick(TEXT_KEYS)
            } else {
                key
            };
            let v = value(rng);
            let flags = rng.pick(&["0", "0", "7", "4294967296", "-1"]);
            let len = if rng.chance(5) { v.len() + 1 } else { v.len() };
            out.extend(format!("{cmd} {key} {flags} {} {len}{nr}\r\n", exptime(rng)).bytes());
            out.extend(&v);
            out.extend(b"\r\n");
        }
        4 => {
            let v = value(rng);
            out.extend(format!("cas {key} 0 0 {} {cas}{nr}\r\n", v.len()).bytes());
            out.extend(&v);
            out.extend(b"\r\n");
        }
        5..=7 => {
            let cmd = rng.pick(&["get", "gets", "gets", "bget"]);
            let n = 1 + rng.below(4);
            let keys: Vec<&str> = (0..n).map(|_| rng.pick(KEYS)).collect();
            out.extend(format!("{cmd} {}\r\n", keys.join(" ")).bytes());
        }
        8 => {
            let cmd = rng.pick(&["gat", "gats"]);
            out.extend(format!("{cmd} {} {key} {}\r\n", exptime(rng), rng.pick(KEYS)).bytes());
        }
        9 => out.extend(format!("delete {key}{nr}\r\n").bytes()),
        10 => {
            let key = rng.pick(COUNTER_KEYS);
            let cmd = rng.pick(&["incr", "decr"]);
            let d = rng.pick(&["1", "5", "0", "18446744073709551615", "abc", "-1"]);
            out.extend(format!("{cmd} {key} {d}{nr}\r\n").bytes());
        }
        11 => out.extend(format!("touch {key} {}{nr}\r\n", exptime(rng)).bytes()),
        12..=14 => {
            // `h` on a counter would show whether memcached replaced it.
            let flags: &[&str] = if COUNTER_KEYS.contains(&key) {
                &[
                    "v", "c", "f", "k", "q", "O42", "N30", "R30", "T100", "u", "b", "E1",
                ]
            } else {
                &[
                    "v", "c", "f", "k", "q", "O42", "N30", "R30", "T100", "h", "u", "b", "E1",
                ]
            };
            let n = rng.below(5);
            let mut f: Vec<&str> = Vec::new();
            for _ in 0..n {
                let x = rng.pick(flags);
                if !f.contains(&x) || rng.chance(5) {
                    f.push(x);
                }
            }
            out.extend(format!("mg {key} {}\r\n", f.join(" ")).bytes());
        }
        15 | 16 => {
            let key = rng.pick(TEXT_KEYS);
            let flags = [
                "c", "k", "q", "O7", "T100", "F3", "I", "MS", "ME", "MA", "MP", "MR", "MZ", "b",
                "s",
            ];
            let mut f: Vec<String> = Vec::new();
            for _ in 0..rng.below(4) {
                let x = rng.pick(&flags).to_string();
                if !f.iter().any(|y| y.as_bytes()[0] == x.as_bytes()[0]) {
                    f.push(x);
                }
            }
            if rng.chance(40) {
                f.push(format!("C{cas}"));
            }
            let v = value(rng);
            let len = if rng.chance(4) { v.len() + 2 } else { v.len() };
            out.extend(format!("ms {key} {len} {}\r\n", f.join(" ")).bytes());
            out.extend(&v);
            out.extend(b"\r\n");
        }
        17 => {
            let flags = ["q", "k", "O1", "I", "T30", "b", "x"];
            let mut f: Vec<String> = vec![];
            for _ in 0..rng.below(3) {
                f.push(rng.pick(&flags).to_string());
            }
            if rng.chance(30) {
                f.push(format!("C{cas}"));
            }
            out.extend(format!("md {key} {}\r\n", f.join(" ")).bytes());
        }
        18 | 19 => {
            let key = rng.pick(COUNTER_KEYS);
            let flags = [
                "v", "c", "q", "k", "N0", "J5", "D3", "MD", "M-", "MI", "T100", "O3", "MX",
            ];
            let mut f: Vec<String> = vec![];
            for _ in 0..rng.below(4) {
                let x = rng.pick(&flags).to_string();
                if !f.iter().any(|y| y.as_bytes()[0] == x.as_bytes()[0]) {
                    f.push(x);
                }
            }
            if rng.chance(20) {
                f.push(format!("C{cas}"));
            }
            out.extend(format!("ma {key} {}\r\n", f.join(" ")).bytes());
        }
        20 => out.extend_from_slice(rng.pick(&[
            &b"flush_all\r\n"[..],
            b"flush_all noreply\r\n",
            b"version\r\n",
            b"verbosity 1\r\n",
            b"mn\r\n",
        ])),
        21 => out.extend_from_slice(rng.pick(&[
            &b"bogus\r\n"[..],
            b"GET a\r\n",
            b"set a 0 0\r\n",
            b"get\r\n",
            b"delete a b c d\r\n",
            b"incr\r\n",
            b"\r\n",
            b"mz\r\n",
            b"set a b c d\r\n",
        ])),
        22 => {
            let long = "y".repeat(251);
            out.extend(format!("get a {long}\r\n").bytes());
        }
        _ => {
            let cmd = rng.pick(&["me", "mg", "md", "ma"]);
            let long = "z".repeat(251);
            out.extend(format!("{cmd} {long} v\r\n").bytes());
        }
    }
    out
}

/// Rewrites `VALUE`/`VA` data blocks that are a number padded with spaces
/// to the bare number (see `COUNTER_KEYS`).
fn strip_counter_padding(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    let mut rest = reply;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            out.extend_from_slice(rest);
            break;
        };
        let line = &rest[..=nl];
        rest = &rest[nl + 1..];
        let text = String::from_utf8_lossy(line);
        let words: Vec<&str> = text.trim_end().split(' ').collect();
        let len_at = match words.first() {
            Some(&"VALUE") if words.len() >= 4 => Some(3),
            Some(&"VA") if words.len() >= 2 => Some(1),
            _ => None,
        };
        let Some(len) = len_at.and_then(|i| words[i].parse::<usize>().ok()) else {
            out.extend_from_slice(line);
            continue;
        };
        if rest.len() < len + 2 {
            out.extend_from_slice(line);
            continue;
        }
        let data = &rest[..len];
        let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
        let padded = digits > 0 && digits < len && data[digits..].iter().all(|&b| b == b' ');
        let data = if padded { &data[..digits] } else { data };
        let mut w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        w[len_at.unwrap_or(0)] = data.len().to_string();
        out.extend_from_slice(w.join(" ").as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        rest = &rest[len + 2..];
    }
    out
}

/// Extracts CAS values the clients have seen, to reuse in cas/ms C.
fn harvest_cas(reply: &[u8], casses: &mut Vec<u64>) {
    for line in reply.split(|&b| b == b'\n') {
        let s = String::from_utf8_lossy(line);
        let words: Vec<&str> = s.trim_end().split(' ').collect();
        if words.first() == Some(&"VALUE") && words.len() == 5 {
            if let Ok(c) = words[4].parse() {
                casses.push(c);
            }
        }
        for w in &words {
            if let Some(c) = w.strip_prefix('c').and_then(|c| c.parse().ok()) {
                casses.push(c);
            }
        }
    }
    if casses.len() > 16 {
        casses.drain(..casses.len() - 16);
    }
}

/// Reads until `want` bytes arrived or two seconds passed; with `want ==
/// 0`, waits briefly to catch unexpected bytes.
fn read_up_to(sock: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let patience = if want == 0 { 50 } else { 2000 };
    let deadline = Instant::now() + Duration::from_millis(patience);
    let mut buf = [0u8; 65536];
    while got.len() < want.max(1) && Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

#[test]
fn random_streams_match_memcached() {
    let seeds: u64 = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let commands: usize = std::env::var("DIFF_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let mut total = 0;
    for seed in 0..seeds {
        let mc = start_memcached();
        let mut sock = TcpStream::connect(("127.0.0.1", mc.port)).unwrap();
        sock.set_nodelay(true).unwrap();
        let clock = Clock::new(0, 1_700_000_000);
        let mut store = Store::new(Config::default(), clock);
        let mut conn = Connection::new();
        let mut rng = Rng(seed);
        let mut casses = Vec::new();
        let mut sent = Vec::new();
        let mut carry: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < commands {
            // A batch of requests closed by `mn`, whose `MN` marks the end
            // of the replies; the core's reply tells how many bytes to read.
            let batch_len = (1 + rng.below(16) as usize).min(commands - i);
            let mut batch = Vec::new();
            let mut reqs: Vec<Vec<u8>> = Vec::new();
            let mut has_mg = false;
            while reqs.len() < batch_len {
                let req = carry.take().unwrap_or_else(|| request(&mut rng, &casses));
                // memcached keeps a reference to an item while an `mg`
                // reply naming it is unsent, and then does incr/decr by
                // replacing the item instead of updating it in place (no
                // space padding). It also drops the unsent replies of
                // earlier pipelined commands when a get has an over-long
                // key. Both depend on read boundaries and are not copied by
                // the core, so such requests start a new batch here.
                let arith =
                    req.starts_with(b"incr") || req.starts_with(b"decr") || req.starts_with(b"ma ");
                if !reqs.is_empty() && ((has_mg && arith) || req.starts_with(b"get a yyy")) {
                    carry = Some(req);
                    break;
                }
                has_mg |= req.starts_with(b"mg ");
                batch.extend_from_slice(&req);
                reqs.push(req);
            }
            let batch_len = reqs.len();
            batch.extend_from_slice(b"mn\r\n");
            let (mine, _) = feed(&mut conn, &mut store, clock, &[&batch]);
            sent.extend_from_slice(&batch);
            sock.write_all(&batch).unwrap();
            let theirs = read_up_to(&mut sock, mine.len());
            if strip_counter_padding(&mine) != strip_counter_padding(&theirs) {
                if let Ok(path) = std::env::var("DIFF_DUMP") {
                    std::fs::write(path, &sent).unwrap();
                }
                let shown: Vec<String> = reqs
                    .iter()
                    .map(|r| escape(&r[..r.len().min(100)]))
                    .collect();
                panic!(
                    "seed {seed} commands {i}..{}: {}\nmemcached: {}\ncore:      {}\nbatch:\n  {}",
                    i + batch_len,
                    describe_difference(&theirs, &mine),
                    escape(&theirs),
                    escape(&mine),
                    shown.join("\n  ")
                );
            }
            store.check_invariants().unwrap();
            harvest_cas(&mine, &mut casses);
            i += batch_len;
            total += batch_len;
        }
        let extra = read_up_to(&mut sock, 0);
        assert!(
            extra.is_empty(),
            "seed {seed}: memcached sent more: {}",
            escape(&extra)
        );
    }
    eprintln!("differential: {seeds} seeds x {commands} commands = {total} requests matched");
}
