//! The conformance transcript format shared by every host's tests.
//!
//! A transcript is a list of cases captured from a real memcached 1.6.18.
//! Each case is a sequence of steps on numbered client connections against
//! one fresh server:
//!
//! ```text
//! === case name
//! opts -I 2m
//! 1> set a 0 0 1\r\nx\r\n
//! 1< STORED\r\n
//! sleep 2
//! 2> get a\r\n
//! 2< VALUE a 0 1\r\nx\r\nEND\r\n
//! 2! closed
//! ```
//!
//! `N>` sends bytes on connection N, `N<` is everything the server replied
//! to that step, `N!` records that the server closed the connection. Bytes
//! use `\r`, `\n`, `\t`, `\\` and `\xHH` escapes. `sleep S` advances time by
//! S seconds. `opts` lists the memcached options the case was captured with.
//!
//! A `format hex` line switches the steps after it to hex, for the binary
//! protocol: pairs of hex digits, with spaces, `|` and `;` ignored (the
//! capture script separates header fields, extras, key and value with `|`
//! and packets with `;`), and `"..."` for bytes in the escaped notation:
//!
//! ```text
//! format hex
//! === get_miss
//! 1> 80 00 0003 00 00 0000 00000003 00000000 0000000000000000 | "foo"
//! 1< 81 00 0000 00 00 0001 00000009 00000000 0000000000000000 | "Not found"
//! ```
//!
//! This module only parses and normalises; each host drives its own I/O.

use alloc::string::String;
use alloc::vec::Vec;

/// One step of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Bytes sent on a connection, with the reply captured for them and
    /// whether the server closed the connection afterwards.
    Send {
        /// Client connection number (1-based).
        conn: usize,
        /// Request bytes.
        request: Vec<u8>,
        /// Reply bytes the reference server sent.
        reply: Vec<u8>,
        /// The reference server closed the connection after this step.
        closed: bool,
    },
    /// Time passes.
    Sleep {
        /// Seconds.
        secs: u64,
    },
}

/// A named case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Name, unique within its file.
    pub name: String,
    /// memcached command-line options the case needs (e.g. `-I 2m`).
    pub opts: Vec<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
}

impl Case {
    /// Whether the case uses a single connection and no sleeps, so its
    /// requests can also be sent as one pipelined stream. Cases with `-Y`
    /// cannot: before a connection authenticates memcached sends only the
    /// last reply of each read, so joining requests drops replies.
    pub fn is_pipelinable(&self) -> bool {
        !self.opts.iter().any(|o| o == "-Y")
            && self
                .steps
                .iter()
                .all(|s| matches!(s, Step::Send { conn: 1, .. }))
    }

    /// Highest connection number used.
    pub fn connections(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Send { conn, .. } => *conn,
                Step::Sleep { .. } => 0,
            })
            .max()
            .unwrap_or(0)
    }
}

/// Decodes the escaped byte notation.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'{') => {
                let close = s[i..]
                    .find('}')
                    .ok_or_else(|| String::from("unclosed \\{"))?
                    + i;
                let n: usize = s[i + 2..close]
                    .parse()
                    .map_err(|_| String::from("bad repeat count"))?;
                let c = *b
                    .get(close + 1)
                    .ok_or_else(|| String::from("repeat without byte"))?;
                out.resize(out.len() + n, c);
                i = close + 2;
                continue;
            }
            Some(b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .ok_or_else(|| String::from("short \\x escape"))?;
                let v = u8::from_str_radix(hex, 16).map_err(|_| String::from("bad \\x escape"))?;
                out.push(v);
                i += 4;
                continue;
            }
            _ => return Err(String::from("unknown escape")),
        }
        i += 2;
    }
    Ok(out)
}

/// Encodes bytes in the escaped notation.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let run = bytes[i..].iter().take_while(|&&b| b == c).count();
        if run >= 32 && (0x20..=0x7e).contains(&c) && c != b'\\' {
            s.push_str(&alloc::format!("\\{{{run}}}"));
            s.push(char::from(c));
            i += run;
            continue;
        }
        i += 1;
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                s.push_str("\\x");
                s.push(char::from(HEX[usize::from(c >> 4)]));
                s.push(char::from(HEX[usize::from(c & 15)]));
            }
        }
    }
    s
}

/// Decodes the hex notation of `format hex` steps.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| String::from("unclosed quote"))?;
            out.extend_from_slice(&unescape(&quoted[..close])?);
            rest = &quoted[close + 1..];
        } else if c.is_ascii_whitespace() || c == '|' || c == ';' {
            rest = &rest[1..];
        } else {
            let pair = rest
                .get(..2)
                .ok_or_else(|| String::from("odd number of hex digits"))?;
            let v = u8::from_str_radix(pair, 16).map_err(|_| String::from("bad hex digit"))?;
            out.push(v);
            rest = &rest[2..];
        }
    }
    Ok(out)
}

/// Parses a transcript file.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    let mut decode: fn(&str) -> Result<Vec<u8>, String> = unescape;
    for (lineno, line) in text.lines().enumerate() {
        let err = |m: &str| alloc::format!("line {}: {}", lineno + 1, m);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "format hex" {
            decode = unhex;
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: String::from(name.trim()),
                opts: Vec::new(),
                steps: Vec::new(),
            });
            continue;
        }
        let case = cases
            .last_mut()
            .ok_or_else(|| err("step before first case"))?;
        if let Some(o) = line.strip_prefix("opts ") {
            case.opts = o
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        } else if let Some(secs) = line.strip_prefix("sleep ") {
            let secs = secs.trim().parse().map_err(|_| err("bad sleep"))?;
            case.steps.push(Step::Sleep { secs });
        } else {
            let digits = line.bytes().take_while(u8::is_ascii_digit).count();
            let conn: usize = line[..digits]
                .parse()
                .map_err(|_| err("expected connection number"))?;
            let rest = &line[digits..];
            let kind = rest
                .as_bytes()
                .first()
                .copied()
                .ok_or_else(|| err("empty step"))?;
            let body = rest.get(1..).unwrap_or("").strip_prefix(' ').unwrap_or("");
            match kind {
                b'>' => case.steps.push(Step::Send {
                    conn,
                    request: decode(body).map_err(|e| err(&e))?,
                    reply: Vec::new(),
                    closed: false,
                }),
                b'<' | b'!' => {
                    let Some(Step::Send {
                        conn: c,
                        reply,
                        closed,
                        ..
                    }) = case.steps.last_mut()
                    else {
                        return Err(err("reply without request"));
                    };
                    if *c != conn {
                        return Err(err("reply on another connection"));
                    }
                    if kind == b'<' {
                        reply.extend_from_slice(&decode(body).map_err(|e| err(&e))?);
                    } else {
                        *closed = true;
                    }
                }
                _ => return Err(err("unknown step kind")),
            }
        }
    }
    Ok(cases)
}

/// `stats` fields whose values depend on the host, the process or timing
/// rather than on protocol behaviour; compared by presence only.
const VOLATILE_STATS: &[&str] = &[
    "pid",
    "uptime",
    "pointer_size",
    "time",
    "libevent",
    "rusage_user",
    "rusage_system",
    "curr_connections",
    "total_connections",
    "connection_structures",
    "response_obj_count",
    "response_obj_bytes",
    "read_buf_count",
    "read_buf_bytes",
    "read_buf_bytes_free",
    "reserved_fds",
    "bytes_read",
    "bytes_written",
    "threads",
    "hash_power_level",
    "hash_bytes",
    "lru_crawler_starts",
    "lru_maintainer_juggles",
    "crawler_items_checked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "log_worker_written",
    "log_watcher_sent",
    "max_connections",
    "tcpport",
    "inter",
    "num_threads",
    "num_threads_per_udp",
    "hash_algorithm",
    "lru_maintainer_thread",
    "lru_segmented",
    "slab_reassign",
    "slab_automove",
    "temp_lru",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "read_buf_mem_limit",
    "hashpower_init",
    "tail_repair_time",
    "lru_crawler",
    "shutdown_command",
    "maxconns",
    "tcp_backlog",
    "inline_ascii_response",
    "lrutail_reflocked",
];

/// Per-class `stats items` fields that depend on when memcached's LRU
/// maintainer thread last ran (which segment an item sits in), not on the
/// commands: masked in every class.
const LRU_TIMING_ITEM_STATS: &[&str] = &[
    "number_hot",
    "number_warm",
    "number_cold",
    "age_hot",
    "age_warm",
    "age",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "hits_to_hot",
    "hits_to_warm",
    "hits_to_cold",
    "hits_to_temp",
];

fn is_volatile(name: &[u8]) -> bool {
    let listed = |list: &[&str], n: &[u8]| list.iter().any(|v| v.as_bytes() == n);
    if listed(VOLATILE_STATS, name) {
        return true;
    }
    name.strip_prefix(b"items:")
        .and_then(|r| r.rsplit(|&b| b == b':').next())
        .is_some_and(|field| listed(LRU_TIMING_ITEM_STATS, field))
}

/// Masks the values of volatile stats so replies can be compared byte for
/// byte everywhere else: `STAT` lines of the text protocol, stat packets
/// of the binary protocol.
pub fn normalize(reply: &[u8]) -> Vec<u8> {
    mask_stats(reply, &is_volatile)
}

/// Replaces the value of every stat whose name `hide` selects with `*`.
fn mask_stats(reply: &[u8], hide: &dyn Fn(&[u8]) -> bool) -> Vec<u8> {
    if reply.first() == Some(&BINARY_RESPONSE) {
        return mask_binary_stats(reply, hide);
    }
    let mut out = Vec::with_capacity(reply.len());
    for line in reply.split_inclusive(|&b| b == b'\n') {
        let name = line
            .strip_prefix(b"STAT ")
            .and_then(|r| r.split(|&b| b == b' ').next())
            .filter(|n| hide(n));
        match name {
            Some(n) => {
                out.extend_from_slice(b"STAT ");
                out.extend_from_slice(n);
                out.extend_from_slice(b" *\r\n");
            }
            None => mask_dump_times(line, &mut out),
        }
    }
    out
}

/// Copies one reply line, masking the absolute times of key dumps with
/// `*`: `exp=` (unless `-1`) and `la=` of metadump lines, and a non-zero
/// exptime of cachedump `ITEM` lines. They count from when the server
/// started; hosts check them against their own clock instead.
fn mask_dump_times(line: &[u8], out: &mut Vec<u8>) {
    if line.starts_with(b"key=") {
        for (i, word) in line.split(|&b| b == b' ').enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let timed = word.starts_with(b"la=") || word.starts_with(b"exp=");
            match word.iter().position(|&b| b == b'=') {
                Some(eq) if timed && &word[eq + 1..] != b"-1" => {
                    out.extend_from_slice(&word[..=eq]);
                    out.push(b'*');
                }
                _ => out.extend_from_slice(word),
            }
        }
        return;
    }
    let tail = line.strip_prefix(b"ITEM ").and_then(|r| {
        let semi = r.windows(2).rposition(|w| w == b"; ")?;
        let rest = &r[semi + 2..];
        (rest.ends_with(b" s]\r\n") && rest != b"0 s]\r\n").then_some(5 + semi + 2)
    });
    match tail {
        Some(at) => {
            out.extend_from_slice(&line[..at]);
            out.extend_from_slice(b"* s]\r\n");
        }
        None => out.extend_from_slice(line),
    }
}

/// The binary protocol's response magic, the first byte of every reply.
const BINARY_RESPONSE: u8 = 0x81;
/// The binary protocol's stat opcode.
const BINARY_STAT: u8 = 0x10;

/// Splits binary replies into packets (header and body); an incomplete
/// packet at the end is returned whole.
pub fn binary_packets(mut reply: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !reply.is_empty() {
        let len = if reply.len() >= 24 {
            let body = u32::from_be_bytes([reply[8], reply[9], reply[10], reply[11]]);
            (24 + body as usize).min(reply.len())
        } else {
            reply.len()
        };
        out.push(&reply[..len]);
        reply = &reply[len..];
    }
    out
}

fn mask_binary_stats(reply: &[u8], hide: &dyn Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    for p in binary_packets(reply) {
        let keylen = p
            .get(2..4)
            .map_or(0, |k| usize::from(u16::from_be_bytes([k[0], k[1]])));
        let name = p
            .get(24..24 + keylen)
            .filter(|_| p[1] == BINARY_STAT && keylen > 0);
        match name.filter(|n| hide(n)) {
            Some(n) => {
                out.extend_from_slice(&p[..8]);
                out.extend_from_slice(&(keylen as u32 + 1).to_be_bytes());
                out.extend_from_slice(&p[12..24]);
                out.extend_from_slice(n);
                out.push(b'*');
            }
            None => out.extend_from_slice(p),
        }
    }
    out
}

/// Stats that depend on when a server's background expiry sweep ran.
/// memcached's reclaim timing differs from ours, so hosts that replay a
/// case in real or simulated time mask them in cases that wait.
const SWEEP_TIMING: &[&str] = &[
    "get_expired",
    "get_flushed",
    "reclaimed",
    "expired_unfetched",
    "curr_items",
    "bytes",
];

/// [`normalize`], plus masking of sweep-timing stats when `case` waits.
/// For hosts that run an expiry sweep alongside the requests.
pub fn normalize_for_host(case: &Case, reply: &[u8]) -> Vec<u8> {
    if !case.steps.iter().any(|s| matches!(s, Step::Sleep { .. })) {
        return normalize(reply);
    }
    mask_stats(reply, &|n| {
        is_volatile(n) || SWEEP_TIMING.iter().any(|s| s.as_bytes() == n)
    })
}

/// Describes how two replies differ: the first differing line of each,
/// or the length difference.
pub fn describe_difference(want: &[u8], got: &[u8]) -> String {
    let (w, g): (Vec<&[u8]>, Vec<&[u8]>) = if want.first() == Some(&BINARY_RESPONSE) {
        (binary_packets(want), binary_packets(got))
    } else {
        (
            want.split_inclusive(|&b| b == b'\n').collect(),
            got.split_inclusive(|&b| b == b'\n').collect(),
        )
    };
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (
            w.get(i).copied().unwrap_or(b""),
            g.get(i).copied().unwrap_or(b""),
        );
        if a != b {
            return alloc::format!(
                "line {i}: want {:?} got {:?} ({} vs {} lines)",
                escape(&a[..a.len().min(200)]),
                escape(&b[..b.len().min(200)]),
                w.len(),
                g.len()
            );
        }
    }
    String::from("identical")
}

/// Panics listing every failure, one a line, if there are any: a harness
/// runs all its cases before it fails, so that one run shows them all.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_times_are_masked() {
        let m = normalize(
            b"key=a exp=1795775482 la=1795775382 cas=1 fetch=yes cls=1 size=67\n\
              key=b exp=-1 la=9 cas=2 fetch=no cls=1 size=64\nEND\r\n\
              ITEM a [3 b; 1795775519 s]\r\nITEM b [1 b; 0 s]\r\n",
        );
        assert_eq!(
            m,
            b"key=a exp=* la=* cas=1 fetch=yes cls=1 size=67\n\
              key=b exp=-1 la=* cas=2 fetch=no cls=1 size=64\nEND\r\n\
              ITEM a [3 b; * s]\r\nITEM b [1 b; 0 s]\r\n"
        );
    }

    #[test]
    fn escapes_round_trip() {
        let mut raw = alloc::vec::Vec::from(&b"a\r\n\t\\\x00\xff z"[..]);
        raw.extend_from_slice(&[b'q'; 40]);
        assert_eq!(unescape(&escape(&raw)).unwrap(), raw);
    }

    #[test]
    fn hex_steps_and_binary_stats() {
        let t = "format hex\n=== b\n1> 80 0a 0000 | \"k\\r\" ; 0a\n";
        let cases = parse(t).unwrap();
        let Step::Send { request, .. } = &cases[0].steps[0] else {
            panic!("not a send")
        };
        assert_eq!(request, b"\x80\x0a\x00\x00k\r\x0a");
        let mut stat = alloc::vec![0x81, 0x10, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5];
        stat.extend_from_slice(&[0; 12]);
        stat.extend_from_slice(b"pid42");
        let masked = normalize(&stat);
        assert_eq!(&masked[8..12], &[0, 0, 0, 4]);
        assert_eq!(&masked[24..], b"pid*");
    }

    #[test]
    fn parses_steps_replies_and_closes() {
        let t = "=== x\nopts -I 2m\n1> get a\\r\\n\n1< END\\r\\nsleep\n2> quit\\r\\n\n2! closed\nsleep 3\n";
        let cases = parse(t).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].opts, ["-I", "2m"]);
        assert_eq!(cases[0].steps.len(), 3);
        assert!(matches!(
            &cases[0].steps[1],
            Step::Send {
                conn: 2,
                closed: true,
                ..
            }
        ));
    }
}
