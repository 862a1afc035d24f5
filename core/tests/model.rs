//! Property test: the store, driven through the text protocol with an
//! explicit clock, against a small reference model of memcached semantics
//! (LRU eviction by memcached's item size, TTL expiry, flush_all, CAS,
//! incr/decr). Invariants are checked after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

const KEYS: &[&str] = &["a", "b", "c", "d", "e", "f"];
const LIMIT: u64 = 600;

#[derive(Clone)]
enum Op {
    Set {
        k: usize,
        v: Vec<u8>,
        ttl: i64,
        flags: u32,
    },
    Add {
        k: usize,
        v: Vec<u8>,
    },
    Replace {
        k: usize,
        v: Vec<u8>,
    },
    Append {
        k: usize,
        v: Vec<u8>,
    },
    Prepend {
        k: usize,
        v: Vec<u8>,
    },
    Cas {
        k: usize,
        v: Vec<u8>,
        fresh: bool,
    },
    Get {
        k: usize,
    },
    Gets {
        k: usize,
    },
    Delete {
        k: usize,
    },
    Incr {
        k: usize,
        d: u64,
    },
    Decr {
        k: usize,
        d: u64,
    },
    Touch {
        k: usize,
        ttl: i64,
    },
    Flush,
    Advance {
        secs: u64,
    },
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Vec<u8>| String::from_utf8_lossy(v).into_owned();
        match self {
            Op::Set { k, v, ttl, flags } => write!(f, "Set({k},{:?},ttl={ttl},f={flags})", show(v)),
            Op::Add { k, v } => write!(f, "Add({k},{:?})", show(v)),
            Op::Replace { k, v } => write!(f, "Replace({k},{:?})", show(v)),
            Op::Append { k, v } => write!(f, "Append({k},{:?})", show(v)),
            Op::Prepend { k, v } => write!(f, "Prepend({k},{:?})", show(v)),
            Op::Cas { k, v, fresh } => write!(f, "Cas({k},{:?},{fresh})", show(v)),
            Op::Get { k } => write!(f, "Get({k})"),
            Op::Gets { k } => write!(f, "Gets({k})"),
            Op::Delete { k } => write!(f, "Delete({k})"),
            Op::Incr { k, d } => write!(f, "Incr({k},{d})"),
            Op::Decr { k, d } => write!(f, "Decr({k},{d})"),
            Op::Touch { k, ttl } => write!(f, "Touch({k},{ttl})"),
            Op::Flush => write!(f, "Flush"),
            Op::Advance { secs } => write!(f, "Advance({secs})"),
        }
    }
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'7'), Just(b' ')], 0..120),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    let ttl = prop_oneof![Just(0i64), 1i64..5, Just(-1i64)];
    prop_oneof![
        4 => (k.clone(), value(), ttl.clone(), prop_oneof![Just(0u32), Just(5u32)]).prop_map(|(k, v, ttl, flags)| Op::Set { k, v, ttl, flags }),
        1 => (k.clone(), value()).prop_map(|(k, v)| Op::Add { k, v }),
        1 => (k.clone(), value()).prop_map(|(k, v)| Op::Replace { k, v }),
        1 => (k.clone(), value()).prop_map(|(k, v)| Op::Append { k, v }),
        1 => (k.clone(), value()).prop_map(|(k, v)| Op::Prepend { k, v }),
        2 => (k.clone(), value(), any::<bool>()).prop_map(|(k, v, fresh)| Op::Cas { k, v, fresh }),
        4 => k.clone().prop_map(|k| Op::Get { k }),
        2 => k.clone().prop_map(|k| Op::Gets { k }),
        1 => k.clone().prop_map(|k| Op::Delete { k }),
        2 => (k.clone(), prop_oneof![0u64..10, Just(u64::MAX)]).prop_map(|(k, d)| Op::Incr { k, d }),
        1 => (k.clone(), 0u64..10).prop_map(|(k, d)| Op::Decr { k, d }),
        1 => (k.clone(), ttl).prop_map(|(k, ttl)| Op::Touch { k, ttl }),
        1 => Just(Op::Flush),
        2 => (0u64..3).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// The reference model: a map plus an explicit LRU order.
#[derive(Clone, Debug)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    exptime: u64, // absolute model seconds; 0 = never
    cas: u64,
    lru: u64,
    /// Fetches since it was stored, counted to 2 (memcached's ACTIVE):
    /// 0 and 1 move it to the head, an active item stays where it is.
    fetches: u8,
}

#[derive(Default)]
struct Model {
    items: BTreeMap<String, Item>,
    now: u64,
    cas: u64,
    tick: u64,
    last_cas: BTreeMap<String, u64>,
}

fn ntotal(k: &str, it: &Item) -> u64 {
    48 + k.len() as u64 + 1 + if it.flags != 0 { 4 } else { 0 } + it.value.len() as u64 + 2 + 8
}

impl Model {
    fn next_cas(&mut self) -> u64 {
        self.cas += 1;
        self.cas
    }
    /// An update (add of a live key, incr in place): to the head.
    fn touch_lru(&mut self, k: &str) {
        self.tick += 1;
        let t = self.tick;
        if let Some(it) = self.items.get_mut(k) {
            it.lru = t;
        }
    }
    /// A fetch (get, gets, touch): to the head unless already active.
    fn fetch_lru(&mut self, k: &str) {
        let Some(it) = self.items.get_mut(k) else {
            return;
        };
        if it.fetches >= 2 {
            return;
        }
        it.fetches += 1;
        self.touch_lru(k);
    }
    fn exp(&self, ttl: i64) -> u64 {
        match ttl {
            0 => 0,
            t if t < 0 => 1,
            t => self.now + t as u64,
        }
    }
    /// Lookup with lazy expiry.
    fn live(&mut self, k: &str) -> bool {
        let dead =
            matches!(self.items.get(k), Some(it) if it.exptime != 0 && it.exptime <= self.now);
        if dead {
            self.items.remove(k);
        }
        self.items.contains_key(k)
    }
    /// Evicts from the LRU tail until `need` more bytes fit, with every
    /// current item (including one about to be replaced) still counted:
    /// like memcached, the store allocates before it replaces.
    fn reserve(&mut self, k: &str, flags: u32, vlen: usize) {
        let probe = Item {
            value: vec![0; vlen],
            flags,
            exptime: 0,
            cas: 0,
            lru: 0,
            fetches: 0,
        };
        self.evict_for(ntotal(k, &probe));
    }

    /// Removes least recently used items until `need` more bytes fit; an
    /// active one at the tail goes back to the head, no longer active,
    /// unless it has expired.
    fn evict_for(&mut self, need: u64) {
        loop {
            let used: u64 = self.items.iter().map(|(k, it)| ntotal(k, it)).sum();
            if used + need <= LIMIT || self.items.is_empty() {
                break;
            }
            let victim = self
                .items
                .iter()
                .min_by_key(|(_, it)| it.lru)
                .map(|(k, _)| k.clone())
                .unwrap();
            // An expired item at the tail is reclaimed before an active
            // one gets its second chance (memcached's `lru_pull_tail`
            // checks expiry first).
            let it = &self.items[&victim];
            let dead = it.exptime != 0 && it.exptime <= self.now;
            if !dead && it.fetches >= 2 {
                self.items.get_mut(&victim).unwrap().fetches = 1;
                self.touch_lru(&victim);
                continue;
            }
            self.items.remove(&victim);
        }
    }

    fn link(&mut self, k: &str, value: Vec<u8>, flags: u32, exptime: u64) {
        let mut it = Item {
            value,
            flags,
            exptime,
            cas: 0,
            lru: 0,
            fetches: 0,
        };
        let need = ntotal(k, &it);
        self.items.remove(k);
        self.evict_for(need);
        it.cas = self.next_cas();
        self.tick += 1;
        it.lru = self.tick;
        self.items.insert(k.to_string(), it);
    }
    fn value_line(&self, k: &str, cas: bool) -> Vec<u8> {
        let it = &self.items[k];
        let mut out = format!("VALUE {k} {} {}", it.flags, it.value.len()).into_bytes();
        if cas {
            out.extend(format!(" {}", it.cas).bytes());
        }
        out.extend(b"\r\n");
        out.extend(&it.value);
        out.extend(b"\r\n");
        out
    }

    /// Applies `op` and returns (request, expected reply).
    fn apply(&mut self, op: &Op) -> (Vec<u8>, Vec<u8>) {
        let store_req = |cmd: &str, k: &str, flags: u32, ttl: i64, v: &[u8], cas: Option<u64>| {
            let mut r = match cas {
                Some(c) => format!("cas {k} {flags} {ttl} {} {c}\r\n", v.len()),
                None => format!("{cmd} {k} {flags} {ttl} {}\r\n", v.len()),
            }
            .into_bytes();
            r.extend(v);
            r.extend(b"\r\n");
            r
        };
        match op {
            Op::Set { k, v, flags, .. } => self.reserve(KEYS[*k], *flags, v.len()),
            Op::Add { k, v }
            | Op::Replace { k, v }
            | Op::Append { k, v }
            | Op::Prepend { k, v }
            | Op::Cas { k, v, .. } => self.reserve(KEYS[*k], 0, v.len()),
            _ => {}
        }
        match op {
            Op::Set { k, v, ttl, flags } => {
                let k = KEYS[*k];
                self.live(k);
                let e = self.exp(*ttl);
                self.link(k, v.clone(), *flags, e);
                (
                    store_req("set", k, *flags, *ttl, v, None),
                    b"STORED\r\n".to_vec(),
                )
            }
            Op::Add { k, v } => {
                let k = KEYS[*k];
                let req = store_req("add", k, 0, 0, v, None);
                if self.live(k) {
                    self.touch_lru(k);
                    return (req, b"NOT_STORED\r\n".to_vec());
                }
                self.link(k, v.clone(), 0, 0);
                (req, b"STORED\r\n".to_vec())
            }
            Op::Replace { k, v } => {
                let k = KEYS[*k];
                let req = store_req("replace", k, 0, 0, v, None);
                if !self.live(k) {
                    return (req, b"NOT_STORED\r\n".to_vec());
                }
                self.link(k, v.clone(), 0, 0);
                (req, b"STORED\r\n".to_vec())
            }
            Op::Append { k, v } | Op::Prepend { k, v } => {
                let append = matches!(op, Op::Append { .. });
                let k = KEYS[*k];
                let req = store_req(if append { "append" } else { "prepend" }, k, 0, 0, v, None);
                if !self.live(k) {
                    return (req, b"NOT_STORED\r\n".to_vec());
                }
                let old = self.items[k].clone();
                let mut nv = old.value.clone();
                if append {
                    nv.extend(v);
                } else {
                    nv = [v.clone(), nv].concat();
                }
                self.link(k, nv, old.flags, old.exptime);
                (req, b"STORED\r\n".to_vec())
            }
            Op::Cas { k, v, fresh } => {
                let k = KEYS[*k];
                let token = if *fresh {
                    self.last_cas.get(k).copied().unwrap_or(1)
                } else {
                    999_999
                };
                let req = store_req("cas", k, 0, 0, v, Some(token));
                if !self.live(k) {
                    return (req, b"NOT_FOUND\r\n".to_vec());
                }
                if self.items[k].cas != token {
                    return (req, b"EXISTS\r\n".to_vec());
                }
                self.link(k, v.clone(), 0, 0);
                (req, b"STORED\r\n".to_vec())
            }
            Op::Get { k } | Op::Gets { k } => {
                let gets = matches!(op, Op::Gets { .. });
                let k = KEYS[*k];
                let req = format!("{} {k}\r\n", if gets { "gets" } else { "get" }).into_bytes();
                let mut reply = Vec::new();
                if self.live(k) {
                    self.fetch_lru(k);
                    reply = self.value_line(k, gets);
                    let c = self.items[k].cas;
                    self.last_cas.insert(k.to_string(), c);
                }
                reply.extend(b"END\r\n");
                (req, reply)
            }
            Op::Delete { k } => {
                let k = KEYS[*k];
                let req = format!("delete {k}\r\n").into_bytes();
                if self.live(k) {
                    self.items.remove(k);
                    return (req, b"DELETED\r\n".to_vec());
                }
                (req, b"NOT_FOUND\r\n".to_vec())
            }
            Op::Incr { k, d } | Op::Decr { k, d } => {
                let incr = matches!(op, Op::Incr { .. });
                let k = KEYS[*k];
                let req =
                    format!("{} {k} {d}\r\n", if incr { "incr" } else { "decr" }).into_bytes();
                if !self.live(k) {
                    return (req, b"NOT_FOUND\r\n".to_vec());
                }
                let it = self.items[k].clone();
                // strtoull: leading spaces, digits, then the end or a space.
                let lead = it.value.iter().take_while(|&&b| b == b' ').count();
                let body = &it.value[lead..];
                let ndig = body.iter().take_while(|b| b.is_ascii_digit()).count();
                let parsed = if ndig == 0 || body.get(ndig).is_some_and(|&b| b != b' ') {
                    None
                } else {
                    std::str::from_utf8(&body[..ndig])
                        .ok()
                        .and_then(|d| d.parse::<u64>().ok())
                };
                let Some(n) = parsed else {
                    return (
                        req,
                        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
                            .to_vec(),
                    );
                };
                let nv = if incr {
                    n.wrapping_add(*d)
                } else {
                    n.saturating_sub(*d)
                };
                let digits = nv.to_string();
                if digits.len() <= it.value.len() {
                    let mut v = digits.clone().into_bytes();
                    v.resize(it.value.len(), b' ');
                    let c = self.next_cas();
                    let e = self.items.get_mut(k).unwrap();
                    e.value = v;
                    e.cas = c;
                    self.touch_lru(k);
                } else {
                    self.link(k, digits.clone().into_bytes(), it.flags, it.exptime);
                }
                (req, format!("{digits}\r\n").into_bytes())
            }
            Op::Touch { k, ttl } => {
                let k = KEYS[*k];
                let req = format!("touch {k} {ttl}\r\n").into_bytes();
                if !self.live(k) {
                    return (req, b"NOT_FOUND\r\n".to_vec());
                }
                let e = self.exp(*ttl);
                self.items.get_mut(k).unwrap().exptime = e;
                self.fetch_lru(k);
                (req, b"TOUCHED\r\n".to_vec())
            }
            Op::Flush => {
                self.items.clear();
                self.next_cas();
                (b"flush_all\r\n".to_vec(), b"OK\r\n".to_vec())
            }
            Op::Advance { .. } => (Vec::new(), Vec::new()),
        }
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = Config {
        memory_limit: LIMIT,
        ..Config::default()
    };
    let mut clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut conn = Connection::new();
    let mut model = Model {
        now: 62,
        ..Model::default()
    };
    for (i, op) in ops.iter().enumerate() {
        if let Op::Advance { secs } = op {
            clock = clock.advanced_ms(secs * 1000);
            model.now += secs;
            // The host runs the expiry sweep whenever it is due. With this
            // few items one call is a full pass, reclaiming every expired
            // item (which frees room before LRU eviction would).
            if store.poll_timeout().is_some_and(|t| t <= clock.mono_ms) {
                store.handle_timeout(clock);
                let now = model.now;
                model
                    .items
                    .retain(|_, it| it.exptime == 0 || it.exptime > now);
            }
            continue;
        }
        let (req, want) = model.apply(op);
        conn.receive(&req);
        let p = conn.process(&mut store, clock);
        prop_assert_eq!(p, Progress::NeedInput);
        let mut got = Vec::new();
        for c in conn.output_chunks() {
            got.extend_from_slice(c);
        }
        conn.consume_output(got.len());
        prop_assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "step {} {:?}",
            i,
            op
        );
        if let Err(e) = store.check_invariants() {
            return Err(TestCaseError::fail(format!("step {i}: {e}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
