//! Differential test: seeded random command streams are sent to a real
//! memcached 1.6.18 started by the test and to the core; every reply must
//! be byte-identical. Three kinds of stream: text and meta (with noreply,
//! quiet mode and malformed input); binary (quiet forms, CAS, counters,
//! unknown opcodes, requests that close); and mixed, over one text and two
//! binary connections sharing the store.
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
        let mut mc = Memcached { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = mc.child.try_wait() {
                break;
            }
            if answers_as(port, mc.child.id()) {
                return mc;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    panic!("memcached did not start");
}

/// Whether the server on `port` is the memcached with process id `pid`:
/// a port picked by binding to 0 may be taken by another test's memcached
/// before ours binds it, and ours then exits while the other answers.
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let want = format!("STAT pid {pid}\r\n");
    if sock.write_all(b"stats\r\n").is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while !got.ends_with(b"END\r\n") && Instant::now() < deadline {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got.windows(want.len()).any(|w| w == want.as_bytes())
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

// Binary protocol streams, and mixed streams over several connections of
// either protocol sharing one store.

/// The protocol of one connection of a stream (fixed by its first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Text,
    Binary,
}

/// One client, connected to memcached and to the core at once.
struct Peer {
    proto: Proto,
    sock: TcpStream,
    conn: Connection,
    /// A request drawn for this peer but left for its next batch.
    carry: Option<Vec<u8>>,
}

impl Peer {
    fn connect(port: u16, proto: Proto) -> Peer {
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_nodelay(true).unwrap();
        Peer {
            proto,
            sock,
            conn: Connection::new(),
            carry: None,
        }
    }
}

/// Binary exptimes whose effect does not depend on when a second ticks:
/// never, far ahead, relative 30 days, an absolute time long past, and
/// `0xffffffff` (a date in 2106, or "do not create" for incr/decr).
const BIN_EXPTIMES: &[u32] = &[0, 0, 0, 1000, 2_592_000, 2_592_001, u32::MAX];
/// Keys only a binary client can write (the text protocol splits on
/// spaces and lines).
const BIN_ONLY_KEYS: &[&str] = &["sp ace", "line\r\nbreak", "nul\0byte"];

/// One random binary request. Like the text generator, nothing in it makes
/// a reply depend on the clock, and append/prepend never touch counters.
fn binary_request(rng: &mut Rng, casses: &[u64]) -> Vec<u8> {
    use common::binary::{arith_extras, op, packet, store_extras};
    let key = if rng.chance(10) {
        rng.pick(BIN_ONLY_KEYS)
    } else {
        rng.pick(KEYS)
    }
    .as_bytes();
    let opaque = if rng.chance(50) { rng.next() as u32 } else { 0 };
    let cas = match rng.below(10) {
        0..=5 => 0,
        6..=8 if !casses.is_empty() => casses[rng.below(casses.len() as u64) as usize],
        _ => rng.below(50),
    };
    let exp = rng.pick(BIN_EXPTIMES);
    match rng.below(40) {
        0..=7 => {
            let opcode = rng.pick(&[
                op::SET,
                op::SET,
                op::SETQ,
                op::ADD,
                op::ADDQ,
                op::REPLACE,
                op::REPLACEQ,
            ]);
            let flags = rng.pick(&[0, 0, 7, u32::MAX]);
            let v = value(rng);
            packet(opcode, key, &store_extras(flags, exp), &v, cas, opaque)
        }
        8..=9 => {
            let opcode = rng.pick(&[op::APPEND, op::APPENDQ, op::PREPEND, op::PREPENDQ]);
            let key = rng.pick(TEXT_KEYS).as_bytes();
            packet(opcode, key, &[], &value(rng), cas, opaque)
        }
        10..=16 => {
            let opcode = rng.pick(&[op::GET, op::GETQ, op::GETK, op::GETKQ]);
            packet(opcode, key, &[], &[], 0, opaque)
        }
        17..=19 => {
            let opcode = rng.pick(&[op::TOUCH, op::GAT, op::GATQ, op::GATK, op::GATKQ]);
            packet(opcode, key, &exp.to_be_bytes(), &[], 0, opaque)
        }
        20..=22 => {
            let opcode = rng.pick(&[op::DELETE, op::DELETEQ]);
            packet(opcode, key, &[], &[], cas, opaque)
        }
        23..=27 => {
            let opcode = rng.pick(&[op::INCREMENT, op::INCREMENTQ, op::DECREMENT, op::DECREMENTQ]);
            let key = rng.pick(COUNTER_KEYS).as_bytes();
            let delta = rng.pick(&[1, 5, 0, u64::MAX]);
            let initial = rng.pick(&[0, 10, u64::MAX]);
            let exp = rng.pick(&[0, 1000, u32::MAX, u32::MAX]);
            let cas = if rng.chance(80) { 0 } else { cas };
            packet(
                opcode,
                key,
                &arith_extras(delta, initial, exp),
                &[],
                cas,
                opaque,
            )
        }
        28 => {
            // A delay in the past would undo an earlier flush, bringing
            // back the items memcached's background crawler has not
            // reclaimed yet: timing, not protocol. Only immediate flushes.
            let opcode = rng.pick(&[op::FLUSH, op::FLUSHQ]);
            let extras: &[u8] = rng.pick(&[&[][..], &[0, 0, 0, 0]]);
            packet(opcode, &[], extras, &[], 0, opaque)
        }
        29..=31 => packet(
            rng.pick(&[op::NOOP, op::VERSION]),
            &[],
            &[],
            &[],
            cas,
            opaque,
        ),
        32 => {
            // Unknown to memcached (verbosity, the range commands, SASL
            // without -S): with an empty body nothing is swallowed.
            let opcode = rng.pick(&[0x1b, 0x30, 0x3c, 0xf0, op::SASL_LIST_MECHS]);
            packet(opcode, &[], &[], &[], 0, opaque)
        }
        33 => packet(op::SASL_AUTH, b"PLAIN", &[], b"\0u\0p", 0, opaque),
        _ => {
            // Hits and misses on freshly written keys.
            let v = value(rng);
            packet(op::SET, key, &store_extras(0, 0), &v, 0, opaque)
        }
    }
}

/// A request that makes memcached answer "Invalid arguments" and close.
fn binary_closing_request(rng: &mut Rng) -> Vec<u8> {
    use common::binary::{op, packet};
    match rng.below(3) {
        0 => packet(op::GET, b"k", &[0, 0, 0, 0], &[], 0, 1),
        1 => packet(op::DELETE, &[], &[], &[], 0, 2),
        _ => packet(op::NOOP, b"x", &[], &[], 0, 3),
    }
}

/// Whether `p` (a binary request) reads an item into its reply: memcached
/// then holds the item until the reply is sent, which changes how a later
/// incr/decr in the same read stores its number (see `COUNTER_KEYS`).
fn holds_item(p: &[u8]) -> bool {
    use common::binary::op;
    matches!(
        p[1],
        op::GET
            | op::GETQ
            | op::GETK
            | op::GETKQ
            | op::TOUCH
            | op::GAT
            | op::GATQ
            | op::GATK
            | op::GATKQ
    )
}

fn is_binary_arith(p: &[u8]) -> bool {
    use common::binary::op;
    matches!(
        p[1],
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ
    )
}

/// Up to 16 binary requests, closed by a noop whose reply ends the batch's
/// replies; now and then the last request closes the connection instead.
/// Returns the bytes and how many requests they hold.
fn binary_batch(rng: &mut Rng, casses: &[u64], carry: &mut Option<Vec<u8>>) -> (Vec<u8>, usize) {
    let want = 1 + rng.below(16) as usize;
    let mut batch = Vec::new();
    let mut n = 0;
    let mut held = false;
    while n < want {
        let req = carry.take().unwrap_or_else(|| binary_request(rng, casses));
        if held && is_binary_arith(&req) {
            *carry = Some(req);
            break;
        }
        held |= holds_item(&req);
        batch.extend_from_slice(&req);
        n += 1;
    }
    if rng.chance(2) {
        batch.extend_from_slice(&binary_closing_request(rng));
        n += 1;
    }
    batch.extend_from_slice(&common::binary::packet(
        common::binary::op::NOOP,
        &[],
        &[],
        &[],
        0,
        0xfeed,
    ));
    (batch, n)
}

/// Up to 16 text requests closed by `mn`, split as in
/// `random_streams_match_memcached`.
fn text_batch(rng: &mut Rng, casses: &[u64], carry: &mut Option<Vec<u8>>) -> (Vec<u8>, usize) {
    let want = 1 + rng.below(16) as usize;
    let mut batch = Vec::new();
    let mut n = 0;
    let mut has_mg = false;
    while n < want {
        let req = carry.take().unwrap_or_else(|| request(rng, casses));
        let arith = req.starts_with(b"incr") || req.starts_with(b"decr") || req.starts_with(b"ma ");
        if n > 0 && ((has_mg && arith) || req.starts_with(b"get a yyy")) {
            *carry = Some(req);
            break;
        }
        has_mg |= req.starts_with(b"mg ");
        batch.extend_from_slice(&req);
        n += 1;
    }
    batch.extend_from_slice(b"mn\r\n");
    (batch, n)
}

/// Binary replies with counters' space padding removed (see
/// `COUNTER_KEYS`): the value of a successful get-family reply that is a
/// number followed by spaces becomes the number.
fn strip_binary_padding(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    for p in wasmcached_core::transcript::binary_packets(reply) {
        let is_hit = p.len() >= 28 && holds_item(p) && p[4] == 4 && p[6..8] == [0, 0];
        if !is_hit {
            out.extend_from_slice(p);
            continue;
        }
        let klen = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let start = (28 + klen).min(p.len());
        let value = &p[start..];
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        let padded =
            digits > 0 && digits < value.len() && value[digits..].iter().all(|&b| b == b' ');
        if !padded {
            out.extend_from_slice(p);
            continue;
        }
        let body = (start - 24 + digits) as u32;
        out.extend_from_slice(&p[..8]);
        out.extend_from_slice(&body.to_be_bytes());
        out.extend_from_slice(&p[12..start + digits]);
    }
    out
}

/// CAS values of successful binary replies, to reuse in later requests.
fn harvest_binary_cas(reply: &[u8], casses: &mut Vec<u64>) {
    for p in wasmcached_core::transcript::binary_packets(reply) {
        if p.len() >= 24 && common::binary::status(p) == 0 && common::binary::cas(p) != 0 {
            casses.push(common::binary::cas(p));
        }
    }
    if casses.len() > 16 {
        casses.drain(..casses.len() - 16);
    }
}

/// Runs one seeded stream over connections speaking `protos`, each batch
/// on a randomly chosen one, against memcached and the core sharing one
/// store; every reply must match. Returns the requests sent.
fn run_stream(seed: u64, commands: usize, protos: &[Proto]) -> usize {
    let mc = start_memcached();
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(Config::default(), clock);
    let mut peers: Vec<Peer> = protos.iter().map(|&p| Peer::connect(mc.port, p)).collect();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9) ^ 0xb1);
    let mut casses = Vec::new();
    let mut sent = 0;
    while sent < commands {
        let which = rng.below(peers.len() as u64) as usize;
        let peer = &mut peers[which];
        let (batch, n) = match peer.proto {
            Proto::Text => text_batch(&mut rng, &casses, &mut peer.carry),
            Proto::Binary => binary_batch(&mut rng, &casses, &mut peer.carry),
        };
        let (mine, closed) = feed(&mut peer.conn, &mut store, clock, &[&batch]);
        peer.sock.write_all(&batch).unwrap();
        let theirs = read_up_to(&mut peer.sock, mine.len());
        let strip = |r: &[u8]| match peer.proto {
            Proto::Text => strip_counter_padding(r),
            Proto::Binary => strip_binary_padding(r),
        };
        if strip(&mine) != strip(&theirs) {
            panic!(
                "seed {seed} ({protos:?}) connection {which}, requests {sent}..{}: {}\nmemcached: {}\ncore:      {}\nbatch: {}",
                sent + n,
                describe_difference(&strip(&theirs), &strip(&mine)),
                escape(&theirs),
                escape(&mine),
                escape(&batch)
            );
        }
        store.check_invariants().unwrap();
        match peer.proto {
            Proto::Text => harvest_cas(&mine, &mut casses),
            Proto::Binary => harvest_binary_cas(&mine, &mut casses),
        }
        if closed {
            let mut buf = [0u8; 64];
            peer.sock
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            assert!(
                matches!(peer.sock.read(&mut buf), Ok(0) | Err(_)),
                "seed {seed}: memcached kept a connection the core closed"
            );
            *peer = Peer::connect(mc.port, peer.proto);
        }
        sent += n;
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        let extra = read_up_to(&mut peer.sock, 0);
        assert!(
            extra.is_empty(),
            "seed {seed}: memcached sent more on connection {i}: {}",
            escape(&extra)
        );
    }
    sent
}

fn stream_size() -> (u64, usize) {
    let seeds = std::env::var("DIFF_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let commands = std::env::var("DIFF_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    (seeds, commands)
}

#[test]
fn random_binary_streams_match_memcached() {
    let (seeds, commands) = stream_size();
    let total: usize = (0..seeds)
        .map(|seed| run_stream(seed, commands, &[Proto::Binary]))
        .sum();
    eprintln!("differential (binary): {seeds} seeds, {total} requests matched");
}

#[test]
fn random_mixed_protocol_streams_match_memcached() {
    let (seeds, commands) = stream_size();
    let protos = [Proto::Text, Proto::Binary, Proto::Binary];
    let total: usize = (0..seeds)
        .map(|seed| run_stream(seed, commands, &protos))
        .sum();
    eprintln!(
        "differential (mixed: one text, two binary connections): {seeds} seeds, {total} requests matched"
    );
}
