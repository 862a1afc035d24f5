//! A cache split into shards answers exactly as one store does.
//!
//! Seeded random text and meta streams run against one `Store` and against
//! the same cache split into four shards (sharing one CAS counter); every
//! reply must match byte for byte, and so must the closing `stats` groups
//! (general, items, slabs, settings): the sharded cache reports its
//! shards' sum.

mod common;

use std::collections::{HashMap, HashSet};

use common::{feed, Rng};
use wasmcached_core::shards::{shard_configs, shard_count, shard_of, Owned};
use wasmcached_core::{Clock, Config, Connection, Store};

/// A cache of plain stores, the way a single-threaded host owns shards.
type Sharded = Owned;

/// `n` empty shards of a cache set up by `cfg`.
fn sharded(cfg: &Config, n: usize, clock: Clock) -> Sharded {
    Owned::new(cfg.clone(), n, clock)
}

const KEYS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h", "n", "m"];

/// One request; `{C}` stands for a CAS value seen earlier (the same one,
/// by order of appearance, on both sides).
fn request(rng: &mut Rng) -> String {
    let k = rng.pick(KEYS);
    let v = ["1", "22", "abc", "7", "hello"][rng.below(5) as usize];
    match rng.below(22) {
        0 | 1 => format!("set {k} {} 0 {}\r\n{v}\r\n", rng.below(3), v.len()),
        2 => format!("add {k} 0 0 {}\r\n{v}\r\n", v.len()),
        3 => format!("replace {k} 0 100 {}\r\n{v}\r\n", v.len()),
        4 => format!("append {k} 0 0 {}\r\n{v}\r\n", v.len()),
        5 => format!("prepend {k} 0 0 {}\r\n{v}\r\n", v.len()),
        6 => format!("cas {k} 0 0 {} {{C}}\r\n{v}\r\n", v.len()),
        7 | 8 => {
            let n = 1 + rng.below(6);
            let keys: Vec<&str> = (0..n).map(|_| rng.pick(KEYS)).collect();
            format!("get {}\r\n", keys.join(" "))
        }
        9 => {
            let n = 1 + rng.below(6);
            let keys: Vec<&str> = (0..n).map(|_| rng.pick(KEYS)).collect();
            format!("gets {}\r\n", keys.join(" "))
        }
        10 => format!("delete {k}\r\n"),
        11 => format!("incr {k} {}\r\n", rng.below(50)),
        12 => format!("decr {k} {}\r\n", rng.below(50)),
        13 => format!("touch {k} {}\r\n", rng.below(100)),
        14 => format!("gats 50 {k} {}\r\n", rng.pick(KEYS)),
        15 => format!("mg {k} v c f t s k\r\n"),
        16 => format!("ms {k} {} c T0 F5\r\n{v}\r\n", v.len()),
        17 => format!("ms {k} {} C{{C}}\r\n{v}\r\n", v.len()),
        18 => format!("md {k} q\r\nmn\r\n"),
        19 => format!("ma {k} N0 J10 v c\r\n"),
        20 if rng.chance(4) => "flush_all\r\n".to_string(),
        20 => format!("mg {k} c\r\n"),
        _ => format!("mg {} b v c\r\n", base64(k)),
    }
}

fn base64(k: &str) -> &'static str {
    // The keys' base64 forms (single ASCII letters).
    match k {
        "a" => "YQ==",
        "b" => "Yg==",
        "n" => "bg==",
        _ => "Yw==",
    }
}

/// CAS values in order of first appearance, and each one's index.
#[derive(Default)]
struct CasNames {
    seen: Vec<u64>,
    index: HashMap<u64, usize>,
}

impl CasNames {
    fn name(&mut self, cas: u64) -> usize {
        if let Some(&i) = self.index.get(&cas) {
            return i;
        }
        self.seen.push(cas);
        self.index.insert(cas, self.seen.len() - 1);
        self.seen.len() - 1
    }

    /// The reply with every CAS value replaced by `#<index>`.
    fn rename(&mut self, reply: &[u8]) -> String {
        let text = String::from_utf8_lossy(reply).into_owned();
        let mut out = String::new();
        for line in text.split_inclusive("\r\n") {
            let toks: Vec<&str> = line.trim_end().split(' ').collect();
            let renamed: Vec<String> = toks
                .iter()
                .enumerate()
                .map(|(i, t)| match (toks[0], i) {
                    ("VALUE", 4) => self.tag(t),
                    ("HD" | "VA" | "EN" | "NS" | "EX" | "NF", _) if is_cas_flag(t) => {
                        format!("c{}", self.tag(&t[1..]))
                    }
                    _ => t.to_string(),
                })
                .collect();
            out.push_str(&renamed.join(" "));
            out.push('\n');
        }
        out
    }

    fn tag(&mut self, t: &str) -> String {
        match t.parse::<u64>() {
            Ok(c) if c != 0 => format!("#{}", self.name(c)),
            _ => t.to_string(),
        }
    }
}

fn is_cas_flag(t: &str) -> bool {
    t.len() > 1 && t.starts_with('c') && t[1..].bytes().all(|b| b.is_ascii_digit())
}

fn run(seed: u64, requests: usize) {
    let cfg = Config::default();
    let clock = Clock::new(0, 1_700_000_000);
    let mut one = Store::new(cfg.clone(), clock);
    let mut four = sharded(&cfg, 4, clock);
    let (mut c1, mut c4) = (Connection::new(), Connection::new());
    let (mut names1, mut names4) = (CasNames::default(), CasNames::default());
    let mut rng = Rng(seed);
    for i in 0..requests {
        let clock = Clock::new(i as u64 * 150, 1_700_000_000 + i as u64 / 7);
        let template = request(&mut rng);
        let pick = rng.below(names1.seen.len() as u64 + 2) as usize;
        let cas = |names: &CasNames| match names.seen.get(pick) {
            Some(c) => c.to_string(),
            None => "987654".to_string(),
        };
        let (req1, req4) = (
            template.replace("{C}", &cas(&names1)),
            template.replace("{C}", &cas(&names4)),
        );
        let (out1, _) = feed(&mut c1, &mut one, clock, &[req1.as_bytes()]);
        let (out4, _) = feed(&mut c4, &mut four, clock, &[req4.as_bytes()]);
        names1.rename(&out1);
        names4.rename(&out4);
        assert_eq!(req1, req4, "seed {seed}: the same CAS values");
        assert_eq!(
            String::from_utf8_lossy(&out1),
            String::from_utf8_lossy(&out4),
            "seed {seed}, request {i}: {template:?}"
        );
    }
    for group in ["stats", "stats items", "stats slabs", "stats settings"] {
        let req = format!("{group}\r\n");
        let (out1, _) = feed(&mut c1, &mut one, clock, &[req.as_bytes()]);
        let (out4, _) = feed(&mut c4, &mut four, clock, &[req.as_bytes()]);
        assert_eq!(
            String::from_utf8_lossy(&out1),
            String::from_utf8_lossy(&out4),
            "seed {seed}: {group}"
        );
    }
    for shard in four.stores() {
        shard.check_invariants().unwrap();
    }
}

#[test]
fn a_sharded_cache_answers_as_one_store() {
    for seed in 0..200 {
        run(seed, 300);
    }
}

#[test]
fn cas_values_are_unique_across_shards() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut cache = sharded(&Config::default(), 8, clock);
    let mut conn = Connection::new();
    let mut seen = HashSet::new();
    for i in 0..2000 {
        let req = format!("ms key{i} 1 c\r\nx\r\n");
        let (out, _) = feed(&mut conn, &mut cache, clock, &[req.as_bytes()]);
        let text = String::from_utf8(out).unwrap();
        let cas: u64 = text
            .trim_end()
            .strip_prefix("HD c")
            .unwrap()
            .parse()
            .unwrap();
        assert!(seen.insert(cas), "CAS {cas} issued twice");
    }
    let used: HashSet<usize> = (0..2000)
        .map(|i| shard_of(format!("key{i}").as_bytes(), 8))
        .collect();
    assert_eq!(used.len(), 8, "2,000 keys reach every shard");
}

#[test]
fn whole_cache_commands_reach_every_shard() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut cache = sharded(&Config::default(), 4, clock);
    let mut conn = Connection::new();
    let mut send = |cache: &mut Sharded, req: &str| {
        let (out, _) = feed(&mut conn, cache, clock, &[req.as_bytes()]);
        String::from_utf8(out).unwrap()
    };
    for i in 0..100 {
        send(&mut cache, &format!("set k{i} 0 0 1\r\nx\r\n"));
    }
    assert!(cache.stores().all(|s| s.curr_items() > 0));
    assert_eq!(send(&mut cache, "cache_memlimit 100\r\n"), "OK\r\n");
    let stats = send(&mut cache, "stats\r\n");
    assert!(
        stats.contains("STAT limit_maxbytes 104857600\r\n"),
        "{stats}"
    );
    assert!(stats.contains("STAT curr_items 100\r\n"), "{stats}");
    assert_eq!(send(&mut cache, "flush_all\r\n"), "OK\r\n");
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    assert_eq!(
        send(&mut cache, &format!("get {}\r\n", keys.join(" "))),
        "END\r\n"
    );
    assert_eq!(send(&mut cache, "verbosity 1\r\n"), "OK\r\n");
    assert!(cache
        .stores()
        .all(|s| s.config().memory_limit == 25 * 1024 * 1024));
}

/// The value of `STAT name` in a stats reply.
fn stat_of(stats: &str, name: &str) -> u64 {
    let prefix = format!("STAT {name} ");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Gets are counted once per call in the connection's home shard, not in
/// each key's shard: what another connection's `stats` reports once the
/// replies are out, and what `stats` in the same batch reports, must still
/// be exact.
#[test]
fn gets_counted_apart_are_exact_in_every_stats() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut cache = sharded(&Config::default(), 4, clock);
    let (mut a, mut b) = (Connection::new(), Connection::new());
    let send = |conn: &mut Connection, cache: &mut Sharded, req: &str| {
        let (out, _) = feed(conn, cache, clock, &[req.as_bytes()]);
        String::from_utf8(out).unwrap()
    };
    for i in 0..40 {
        send(&mut a, &mut cache, &format!("set k{i} 0 0 1\r\nx\r\n"));
    }
    // Values of five sizes: more classes than a tally keeps apart.
    for (i, n) in [100, 300, 900, 2_000, 5_000].iter().enumerate() {
        let v = "v".repeat(*n);
        send(
            &mut a,
            &mut cache,
            &format!("set big{i} 0 0 {n}\r\n{v}\r\n"),
        );
    }
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let bigs: Vec<String> = (0..5).map(|i| format!("big{i}")).collect();
    send(
        &mut a,
        &mut cache,
        &format!("get {} {}\r\n", keys.join(" "), bigs.join(" ")),
    );
    send(&mut a, &mut cache, "mg k1 v\r\nmg nope v\r\n");
    let other = send(&mut b, &mut cache, "stats\r\n");
    assert_eq!(stat_of(&other, "cmd_get"), 57, "{other}");
    assert_eq!(stat_of(&other, "get_hits"), 46, "{other}");
    assert_eq!(stat_of(&other, "get_misses"), 11, "{other}");
    let slabs = send(&mut b, &mut cache, "stats slabs\r\n");
    let class_hits: u64 = slabs
        .lines()
        .filter(|l| l.contains(":get_hits "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(class_hits, 46, "{slabs}");
    // A stats pipelined behind gets in one batch counts them too.
    let same = send(&mut a, &mut cache, "get k1 k2 nope\r\nstats\r\n");
    assert_eq!(stat_of(&same, "cmd_get"), 60, "{same}");
    assert_eq!(stat_of(&same, "get_misses"), 12, "{same}");
    // And a reset leaves nothing of the batch before it to reappear.
    let reset = send(&mut a, &mut cache, "get k1\r\nstats reset\r\nstats\r\n");
    assert_eq!(stat_of(&reset, "cmd_get"), 0, "{reset}");
    let after = send(&mut b, &mut cache, "stats\r\n");
    assert_eq!(stat_of(&after, "cmd_get"), 0, "{after}");
    assert_eq!(stat_of(&after, "get_hits"), 0, "{after}");
}

#[test]
fn shard_count_follows_threads_and_memory() {
    let cfg = Config::default();
    assert_eq!(shard_count(&cfg, 1), 1);
    assert_eq!(shard_count(&cfg, 2), 8);
    assert_eq!(shard_count(&cfg, 4), 16, "64 MiB / 4 MiB per shard");
    assert_eq!(shard_count(&cfg, 64), 16);
    let gig = Config {
        memory_limit: 1 << 30,
        ..Config::default()
    };
    assert_eq!(shard_count(&gig, 2), 8);
    assert_eq!(shard_count(&gig, 4), 32);
    assert_eq!(shard_count(&gig, 8), 128);
    assert_eq!(
        shard_count(&gig, 6),
        128,
        "2 x 36, rounded up to a power of two"
    );
    let small = Config {
        memory_limit: 8 * 1024 * 1024,
        ..Config::default()
    };
    assert_eq!(
        shard_count(&small, 8),
        2,
        "every shard holds four largest items"
    );
    let big = Config {
        memory_limit: 1 << 40,
        ..Config::default()
    };
    assert_eq!(shard_count(&big, 64), 256);
}

/// Writes `shards` as one snapshot and restores it into `n` shards.
fn restore_into(cache: &mut Sharded, n: usize, clock: Clock) -> Sharded {
    let mut snap = cache.snapshot(clock);
    let mut bytes = Vec::new();
    while snap.next_chunk(&mut bytes) {}
    let cfg = Config::default();
    let mut restore = wasmcached_core::Restore::new_shards(shard_configs(&cfg, n), clock);
    restore.receive(&bytes).unwrap();
    let (stores, report) = restore.finish_shards().unwrap();
    assert_eq!(report.items, 500);
    Owned::of(cfg, stores)
}

#[test]
fn a_sharded_snapshot_restores_into_any_number_of_shards() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut cache = sharded(&Config::default(), 4, clock);
    let mut conn = Connection::new();
    let mut before = Vec::new();
    for i in 0..500 {
        let req = format!("ms key{i} 3 c F{i}\r\nv{:02}\r\n", i % 100);
        feed(&mut conn, &mut cache, clock, &[req.as_bytes()]);
    }
    for i in 0..500 {
        let req = format!("mg key{i} v c f\r\n");
        before.push(feed(&mut conn, &mut cache, clock, &[req.as_bytes()]).0);
    }
    let later = Clock::new(5_000, 1_700_000_005);
    for n in [1, 3, 4, 8] {
        let mut restored = restore_into(&mut cache, n, later);
        let mut conn = Connection::new();
        let mut seen = HashSet::new();
        for (i, want) in before.iter().enumerate() {
            let req = format!("mg key{i} v c f\r\n");
            let (got, _) = feed(&mut conn, &mut restored, later, &[req.as_bytes()]);
            assert_eq!(&got, want, "{n} shards: key{i}");
            let text = String::from_utf8(got).unwrap();
            let cas = text.split(' ').find_map(|t| t.strip_prefix('c')).unwrap();
            seen.insert(cas.to_string());
        }
        for i in 0..200 {
            let req = format!("ms new{i} 1 c\r\nx\r\n");
            let (out, _) = feed(&mut conn, &mut restored, later, &[req.as_bytes()]);
            let text = String::from_utf8(out).unwrap();
            let cas = text.trim_end().strip_prefix("HD c").unwrap().to_string();
            assert!(
                seen.insert(cas.clone()),
                "{n} shards: CAS {cas} issued twice"
            );
        }
    }
}

#[test]
fn dumps_span_every_shard() {
    let clock = Clock::new(0, 1_700_000_000);
    let cfg = Config {
        output_high_water: 4096,
        ..Config::default()
    };
    let mut cache = sharded(&cfg, 4, clock);
    let mut conn = Connection::new();
    for i in 0..3000 {
        let value = if i % 2 == 0 {
            "x"
        } else {
            "a longer value in another class"
        };
        let req = format!("set key{i} 0 0 {}\r\n{value}\r\n", value.len());
        feed(&mut conn, &mut cache, clock, &[req.as_bytes()]);
    }
    // The metadump streams under a 4 KiB high-water mark, class by class.
    let (out, _) = feed(
        &mut conn,
        &mut cache,
        clock,
        &[b"lru_crawler metadump all\r\n"],
    );
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"END"));
    let mut keys = HashSet::new();
    let mut last_cls = 0;
    for l in &lines[..lines.len() - 1] {
        let key = l.split(' ').next().unwrap().strip_prefix("key=").unwrap();
        assert!(keys.insert(key.to_string()), "{key} listed twice");
        let cls: u32 = l.rsplit(' ').nth(1).unwrap()[4..].parse().unwrap();
        assert!(cls >= last_cls, "class order");
        last_cls = cls;
    }
    assert_eq!(keys.len(), 3000);
    // Most recently stored first across shards.
    let (out, _) = feed(&mut conn, &mut cache, clock, &[b"stats cachedump 1 3\r\n"]);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "ITEM key2998 [1 b; 0 s]\r\nITEM key2996 [1 b; 0 s]\r\nITEM key2994 [1 b; 0 s]\r\nEND\r\n"
    );
}

#[test]
fn a_single_key_get_leaves_an_idle_connection_only_its_replys_buffer() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut cache = sharded(&Config::default(), 16, clock);
    let mut c = Connection::new();
    let (out, _) = feed(&mut c, &mut cache, clock, &[b"set k 0 0 5\r\nhello\r\n"]);
    assert_eq!(out, b"STORED\r\n");
    let (out, _) = feed(&mut c, &mut cache, clock, &[b"get k\r\n"]);
    assert_eq!(out, b"VALUE k 0 5\r\nhello\r\nEND\r\n");
    c.shrink();
    let single = c.held_bytes();
    assert!(single < 512, "{single}");
    // A multiget makes room ahead of its keys, outside their shards.
    let (out, _) = feed(&mut c, &mut cache, clock, &[b"get k k k\r\n"]);
    assert_eq!(out.len(), 3 * 20 + 5);
    assert!(c.held_bytes() >= 2048, "{}", c.held_bytes());
}
