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
    /// requests can also be sent as one pipelined stream.
    pub fn is_pipelinable(&self) -> bool {
        self.steps
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

/// Parses a transcript file.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let err = |m: &str| alloc::format!("line {}: {}", lineno + 1, m);
        if line.is_empty() || line.starts_with('#') {
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
                    request: unescape(body).map_err(|e| err(&e))?,
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
                        reply.extend_from_slice(&unescape(body).map_err(|e| err(&e))?);
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
    "dump_enabled",
    "temp_lru",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "read_buf_mem_limit",
    "hashpower_init",
    "tail_repair_time",
    "lru_crawler",
    "shutdown_command",
    "maxconns",
    "binding_protocol",
    "tcp_backlog",
    "inline_ascii_response",
    "lrutail_reflocked",
];

/// Masks the values of volatile `STAT` lines so replies can be compared
/// byte for byte everywhere else.
pub fn normalize(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    for line in reply.split_inclusive(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"STAT ") {
            if let Some(sp) = rest.iter().position(|&b| b == b' ') {
                let name = &rest[..sp];
                if VOLATILE_STATS.iter().any(|v| v.as_bytes() == name) {
                    out.extend_from_slice(b"STAT ");
                    out.extend_from_slice(name);
                    out.extend_from_slice(b" *\r\n");
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
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
    let out = normalize(reply);
    if !case.steps.iter().any(|s| matches!(s, Step::Sleep { .. })) {
        return out;
    }
    let mut masked = Vec::with_capacity(out.len());
    for line in out.split_inclusive(|&b| b == b'\n') {
        let name = line
            .strip_prefix(b"STAT ")
            .and_then(|r| r.split(|&b| b == b' ').next())
            .filter(|n| SWEEP_TIMING.iter().any(|s| s.as_bytes() == *n));
        match name {
            Some(n) => {
                masked.extend_from_slice(b"STAT ");
                masked.extend_from_slice(n);
                masked.extend_from_slice(b" *\r\n");
            }
            None => masked.extend_from_slice(line),
        }
    }
    masked
}

/// Describes how two replies differ: the first differing line of each,
/// or the length difference.
pub fn describe_difference(want: &[u8], got: &[u8]) -> String {
    let w: Vec<&[u8]> = want.split_inclusive(|&b| b == b'\n').collect();
    let g: Vec<&[u8]> = got.split_inclusive(|&b| b == b'\n').collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let mut raw = alloc::vec::Vec::from(&b"a\r\n\t\\\x00\xff z"[..]);
        raw.extend_from_slice(&[b'q'; 40]);
        assert_eq!(unescape(&escape(&raw)).unwrap(), raw);
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
