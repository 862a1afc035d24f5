//! Planted bugs: deliberately broken servers, to prove the checkers catch
//! what they claim to.
//!
//! Each plant is a wrapper the server host puts around the core: it frames
//! the requests a connection sends before the driver sees them (a whole
//! request at a time), may rewrite them, and may read or change the store
//! through a private side [`Connection`] of its own. The core itself is
//! never modified, so a correct run and a planted run differ only by the
//! wrapper.
//!
//! The side connection works on the whole cache, whatever its number of
//! shards: like a client's connection it takes each key's shard through
//! [`Shards`], so a plant reads and writes the shard of the key it
//! touches (a shadow key may live in another shard than its original;
//! nothing depends on that).

use std::collections::BTreeMap;

use wasmcached_core::{Clock, Connection, Shards};

/// A deliberately broken server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// Of the storage requests to each key, every `every`-th is
    /// acknowledged without being applied (its data block is stored under
    /// a key nobody reads).
    LostWrite {
        /// One in this many, per key.
        every: u64,
    },
    /// Of the reads of each key, every `every`-th is served the value the
    /// key held before its latest write.
    StaleRead {
        /// One in this many, per key.
        every: u64,
    },
    /// A conditional write (`cas`, `ms C`) whose token is stale is
    /// accepted, once per server start: the first one whose item is gone,
    /// last changed at least 5 ms before, or changed twice since the token
    /// was handed out (a token that went stale in a race with one write
    /// could be explained by the other order of the two).
    DoubleCas,
    /// A deleted item comes back (with its old value) before the key's
    /// next read.
    Resurrect,
    /// Items stored with a TTL of 2 s or more vanish 100 ms later.
    EarlyExpiry,
}

/// Every plant, by CLI name.
pub const PLANTS: &[&str] = &[
    "lost-write",
    "stale-read",
    "double-cas",
    "resurrect",
    "early-expiry",
];

impl Plant {
    /// The plant named `name` (see [`PLANTS`]) with its default rate.
    pub fn named(name: &str) -> Option<Plant> {
        Some(match name {
            "lost-write" => Plant::LostWrite { every: 7 },
            "stale-read" => Plant::StaleRead { every: 5 },
            "double-cas" => Plant::DoubleCas,
            "resurrect" => Plant::Resurrect,
            "early-expiry" => Plant::EarlyExpiry,
            _ => return None,
        })
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Plant::LostWrite { .. } => "lost-write",
            Plant::StaleRead { .. } => "stale-read",
            Plant::DoubleCas => "double-cas",
            Plant::Resurrect => "resurrect",
            Plant::EarlyExpiry => "early-expiry",
        }
    }
}

/// The key lost writes are redirected to; nobody reads it.
const DROPPED_KEY: &str = "__dropped_by_the_planted_bug__";
/// Prefix of the keys holding the values stale reads are served from.
const PREV_PREFIX: &str = "__prev__";
/// How long after being stored a TTL'd item vanishes with `early-expiry`.
const EARLY_MS: u64 = 100;
/// How long an item must have been unchanged for `double-cas` to accept
/// a stale token on it.
const SETTLED_MS: u64 = 5;

/// One server's planted bug: its counters and its side connection.
pub struct Planted {
    plant: Plant,
    side: Connection,
    /// Requests seen per key (lost writes, stale reads).
    counts: BTreeMap<Vec<u8>, u64>,
    /// Keys with a previous value kept for stale reads.
    prev: BTreeMap<Vec<u8>, ()>,
    /// Deleted items waiting to come back: key → (value, flags).
    deleted: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    /// The stale CAS was accepted already.
    cas_used: bool,
    /// Early deletions due: (sim ms, key).
    expiries: Vec<(u64, Vec<u8>)>,
    /// When each key was last written (sim ms), for `double-cas`.
    changed: BTreeMap<Vec<u8>, u64>,
    /// The CAS values each key's writes replaced, latest last, for
    /// `double-cas`.
    replaced: BTreeMap<Vec<u8>, Vec<u64>>,
    /// Times the bug changed what the server did.
    pub fired: u64,
}

impl Planted {
    /// The wrapper for `plant`, for one server start.
    pub fn new(plant: Plant) -> Planted {
        Planted {
            plant,
            side: Connection::new(),
            counts: BTreeMap::new(),
            prev: BTreeMap::new(),
            deleted: BTreeMap::new(),
            cas_used: false,
            expiries: Vec::new(),
            changed: BTreeMap::new(),
            replaced: BTreeMap::new(),
            fired: 0,
        }
    }

    /// When the plant next wants [`Planted::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        self.expiries.iter().map(|(t, _)| *t).min()
    }

    /// Runs due early deletions.
    pub fn handle_timeout(&mut self, store: &mut impl Shards, clock: Clock) -> bool {
        let now = clock.mono_ms;
        let due: Vec<Vec<u8>> = self
            .expiries
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, k)| k.clone())
            .collect();
        self.expiries.retain(|(t, _)| *t > now);
        for k in &due {
            self.fired += 1;
            let mut req = b"md ".to_vec();
            req.extend_from_slice(k);
            req.extend_from_slice(b" q\r\n");
            self.call(store, clock, &req);
        }
        !due.is_empty()
    }

    /// Runs `req` on the side connection; its reply.
    fn call(&mut self, store: &mut impl Shards, clock: Clock, req: &[u8]) -> Vec<u8> {
        self.side.receive(req);
        let _ = self.side.process(store, clock);
        let out: Vec<u8> = self.side.output_chunks().flatten().copied().collect();
        self.side.consume_output(out.len());
        out
    }

    /// The item under `key`: value, flags and CAS value.
    fn peek(
        &mut self,
        store: &mut impl Shards,
        clock: Clock,
        key: &[u8],
    ) -> Option<(Vec<u8>, u32, u64)> {
        let mut req = b"mg ".to_vec();
        req.extend_from_slice(key);
        req.extend_from_slice(b" v f c\r\n");
        let out = self.call(store, clock, &req);
        let nl = out.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&out[..nl]).ok()?.trim_end();
        let mut w = line.split(' ');
        if w.next() != Some("VA") {
            return None;
        }
        let len: usize = w.next()?.parse().ok()?;
        let (mut flags, mut cas) = (0, 0);
        for f in w {
            match f.as_bytes().first() {
                Some(b'f') => flags = f[1..].parse().ok()?,
                Some(b'c') => cas = f[1..].parse().ok()?,
                _ => {}
            }
        }
        Some((out.get(nl + 1..nl + 1 + len)?.to_vec(), flags, cas))
    }

    /// Stores `value` under `key` through the side connection.
    fn put(&mut self, store: &mut impl Shards, clock: Clock, key: &[u8], value: &[u8], flags: u32) {
        let mut req = b"ms ".to_vec();
        req.extend_from_slice(key);
        req.extend_from_slice(format!(" {} F{flags} q\r\n", value.len()).as_bytes());
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.call(store, clock, &req);
    }

    /// Frames `bytes` (appended to the connection's `pending` bytes) into
    /// whole requests and returns them as the broken server would see
    /// them, doing its side effects on `store` first.
    pub fn frame(
        &mut self,
        pending: &mut Vec<u8>,
        bytes: &[u8],
        store: &mut impl Shards,
        clock: Clock,
    ) -> Vec<u8> {
        pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(len) = request_len(&pending[at..]) {
            let req = pending[at..at + len].to_vec();
            at += len;
            let rewritten = self.request(&req, store, clock);
            out.extend_from_slice(rewritten.as_deref().unwrap_or(&req));
        }
        pending.drain(..at);
        out
    }

    /// One whole request: its replacement, if the bug changes it.
    fn request(&mut self, req: &[u8], store: &mut impl Shards, clock: Clock) -> Option<Vec<u8>> {
        let nl = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
        let line = String::from_utf8_lossy(&req[..nl]).trim_end().to_string();
        let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
        let verb = *words.first()?;
        let key = words.get(1)?.as_bytes().to_vec();
        let storage = matches!(
            verb,
            "set" | "add" | "replace" | "append" | "prepend" | "cas" | "ms"
        );
        let read = matches!(verb, "get" | "gets" | "mg");
        let delete = verb == "delete" || (verb == "md" && !words.contains(&"I"));
        let mutation = storage || delete || matches!(verb, "incr" | "decr" | "md" | "ma");
        match self.plant {
            Plant::LostWrite { every } if storage => {
                let n = self.counts.entry(key).or_default();
                *n += 1;
                let lost = n.is_multiple_of(every.max(1));
                self.fired += u64::from(lost);
                lost.then(|| redirect(req, &words))
            }
            Plant::StaleRead { .. } if mutation => {
                if let Some((v, f, _)) = self.peek(store, clock, &key) {
                    let shadow = [PREV_PREFIX.as_bytes(), &key].concat();
                    self.put(store, clock, &shadow, &v, f);
                    self.prev.insert(key, ());
                }
                None
            }
            Plant::StaleRead { every } if read && self.prev.contains_key(&key) => {
                let n = self.counts.entry(key.clone()).or_default();
                *n += 1;
                if !n.is_multiple_of(every.max(1)) {
                    return None;
                }
                self.fired += 1;
                let shadow = format!("{PREV_PREFIX}{}", words[1]);
                let mut w = words.clone();
                w[1] = &shadow;
                let mut out = w.join(" ").into_bytes();
                out.extend_from_slice(b"\r\n");
                Some(out)
            }
            Plant::DoubleCas if mutation => {
                if !self.cas_used {
                    if let Some(out) = self.stale_cas(req, &words, &key, store, clock) {
                        return Some(out);
                    }
                }
                if let Some((_, _, cas)) = self.peek(store, clock, &key) {
                    let seen = self.replaced.entry(key.clone()).or_default();
                    seen.push(cas);
                    if seen.len() > 16 {
                        seen.remove(0);
                    }
                }
                self.changed.insert(key, clock.mono_ms);
                None
            }
            Plant::Resurrect if delete => {
                if let Some((v, f, _)) = self.peek(store, clock, &key) {
                    self.deleted.insert(key, (v, f));
                }
                None
            }
            Plant::Resurrect if read => {
                let (v, f) = self.deleted.remove(&key)?;
                if self.peek(store, clock, &key).is_none() {
                    self.fired += 1;
                    self.put(store, clock, &key, &v, f);
                }
                None
            }
            Plant::EarlyExpiry if storage => {
                let ttl: i64 = if verb == "ms" {
                    flag(&words[3.min(words.len())..], 'T').unwrap_or(0)
                } else {
                    words.get(3).and_then(|t| t.parse().ok()).unwrap_or(0)
                };
                if ttl >= 2 {
                    self.expiries.push((clock.mono_ms + EARLY_MS, key));
                }
                None
            }
            _ => None,
        }
    }

    /// `double-cas`: a conditional write whose token is stale, rewritten
    /// into an unconditional one (`None`: leave it alone).
    fn stale_cas(
        &mut self,
        req: &[u8],
        words: &[&str],
        key: &[u8],
        store: &mut impl Shards,
        clock: Clock,
    ) -> Option<Vec<u8>> {
        let token: u64 = match words[0] {
            "cas" => words.get(5)?.parse().ok()?,
            "ms" => flag(&words[3.min(words.len())..], 'C')?,
            _ => return None,
        };
        let current = self.peek(store, clock, key).map(|(_, _, c)| c);
        if current == Some(token) {
            return None;
        }
        // A token that went stale in a race with one other write could be
        // a legal order of the two; one that went stale before the other
        // write even arrived, or two writes ago, cannot.
        let changed = self.changed.get(key).copied().unwrap_or(0);
        let behind = self
            .replaced
            .get(key)
            .and_then(|seen| seen.iter().rev().position(|&c| c == token));
        let settled = clock.mono_ms >= changed + SETTLED_MS;
        let changed_twice = behind.is_some_and(|b| b >= 1);
        if current.is_some() && !settled && !changed_twice {
            return None;
        }
        self.cas_used = true;
        self.fired += 1;
        let mut w = words.to_vec();
        if w[0] == "cas" {
            w[0] = "set";
            w.truncate(5);
        } else {
            w.retain(|x| !x.starts_with('C'));
        }
        let nl = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
        let mut out = w.join(" ").into_bytes();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&req[nl + 1..]);
        Some(out)
    }
}

/// The numeric argument of meta flag `f` among `flags`.
fn flag<T: std::str::FromStr>(flags: &[&str], f: char) -> Option<T> {
    flags
        .iter()
        .find(|w| w.starts_with(f))
        .and_then(|w| w[1..].parse().ok())
}

/// `req` (a whole storage request) rewritten to store its data block under
/// [`DROPPED_KEY`] with a plain `set`/`ms`, which is always acknowledged.
fn redirect(req: &[u8], words: &[&str]) -> Vec<u8> {
    let nl = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
    let head = if words.first() == Some(&"ms") {
        format!("ms {DROPPED_KEY} {}\r\n", words.get(2).unwrap_or(&"0"))
    } else {
        format!("set {DROPPED_KEY} 0 0 {}\r\n", words.get(4).unwrap_or(&"0"))
    };
    let mut out = head.into_bytes();
    out.extend_from_slice(req.get(nl + 1..).unwrap_or_default());
    out
}

/// Length of the first complete request in `buf` (command line plus data
/// block for storage commands).
fn request_len(buf: &[u8]) -> Option<usize> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&buf[..nl]).ok()?.trim_end();
    let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    let data = match words.first().copied() {
        Some("set" | "add" | "replace" | "append" | "prepend" | "cas") => {
            words.get(4)?.parse::<usize>().ok()? + 2
        }
        Some("ms") => words.get(2)?.parse::<usize>().ok()? + 2,
        _ => 0,
    };
    let total = nl + 1 + data;
    (buf.len() >= total).then_some(total)
}
