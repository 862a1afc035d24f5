//! Key dumps and the LRU crawler against the core directly: a metadump
//! streams under back-pressure and lists every key exactly once even while
//! the store changes between its pauses; cachedump stays within its 2 MiB;
//! `lru_crawler crawl` reclaims and counts as memcached's crawler does.

mod common;

use std::collections::BTreeMap;

use common::{drain, feed, Rng};
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

const START: Clock = Clock::new(1_000_000, 1_700_000_000);
const HWM: usize = 4096;

fn store() -> Store {
    let cfg = Config {
        output_high_water: HWM,
        ..Config::default()
    };
    Store::new(cfg, START)
}

fn send(conn: &mut Connection, store: &mut Store, req: &[u8]) -> Vec<u8> {
    feed(conn, store, START, &[req]).0
}

fn set(store: &mut Store, key: &str, vlen: usize, ttl: u32) {
    let mut conn = Connection::new();
    let mut req = format!("set {key} 7 {ttl} {vlen}\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'v', vlen));
    req.extend_from_slice(b"\r\n");
    assert_eq!(send(&mut conn, store, &req), b"STORED\r\n");
}

/// The keys of a metadump reply (undoing the URI encoding of ours).
fn dump_keys(reply: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(reply).expect("ascii dump");
    assert!(
        text.ends_with("END\r\n"),
        "dump not terminated: {text:.200}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("key="))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

/// Runs a metadump, calling `between` at every pause; checks that the
/// pending output never runs far past the high-water mark.
fn metadump(store: &mut Store, mut between: impl FnMut(&mut Store, usize)) -> Vec<u8> {
    let mut conn = Connection::new();
    conn.receive(b"lru_crawler metadump all\r\n");
    let mut out = Vec::new();
    let mut pauses = 0;
    loop {
        let p = conn.process(store, START);
        assert!(conn.pending_len() < HWM + 1024, "output not bounded");
        drain(&mut conn, &mut out);
        match p {
            Progress::Blocked => {
                pauses += 1;
                between(store, pauses);
            }
            Progress::NeedInput => break,
            other => panic!("unexpected {other:?}"),
        }
        store.check_invariants().expect("invariants");
    }
    out
}

#[test]
fn metadump_streams_every_key_once_under_back_pressure() {
    let mut store = store();
    let mut rng = Rng(7);
    let mut want = Vec::new();
    for i in 0..3000 {
        let key = format!("key:{i}/{}", rng.below(1000));
        set(&mut store, &key, rng.below(600) as usize, 0);
        want.push(key.replace(':', "%3A").replace('/', "%2F"));
    }
    let mut pauses = 0;
    let out = metadump(&mut store, |_, n| pauses = n);
    assert!(
        pauses > 10,
        "expected the dump to pause, paused {pauses} times"
    );
    let mut got = dump_keys(&out);
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn metadump_survives_store_changes_between_pauses() {
    let mut store = store();
    let mut stable = Vec::new();
    for i in 0..2000 {
        let key = format!("stable{i}");
        set(&mut store, &key, (i % 300) as usize, 0);
        stable.push(key);
        set(&mut store, &format!("churn{i}"), (i % 200) as usize, 0);
    }
    let mut rng = Rng(11);
    let out = metadump(&mut store, |s, n| {
        // Deleting moves records between slots; new keys land anywhere.
        let mut c = Connection::new();
        for _ in 0..50 {
            let k = format!("churn{}", rng.below(2000));
            let _ = send(&mut c, s, format!("delete {k}\r\n").as_bytes());
        }
        for j in 0..20 {
            set(s, &format!("new{n}_{j}"), (j * 37) as usize, 0);
        }
    });
    let got = dump_keys(&out);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &got {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c == 1), "a key was listed twice");
    for k in &stable {
        assert_eq!(counts.get(k.as_str()), Some(&1), "{k} missing");
    }
}

#[test]
fn metadump_omits_expired_items_and_counts_a_crawler_run() {
    let mut store = store();
    set(&mut store, "short", 1, 1);
    set(&mut store, "long", 1, 1000);
    let mut conn = Connection::new();
    let later = START.advanced_ms(3000);
    let (out, _) = feed(
        &mut conn,
        &mut store,
        later,
        &[b"lru_crawler metadump all\r\n"],
    );
    assert_eq!(dump_keys(&out), ["long"]);
    let exp = 1_700_000_000 + 1000;
    let text = String::from_utf8(out).unwrap_or_default();
    assert!(text.contains(&format!("exp={exp} ")), "{text}");
    assert_eq!(store.stats().lru_crawler_starts, 1);
    assert_eq!(store.stats().crawler_items_checked, 2);
}

#[test]
fn metadump_after_pipelined_requests_is_refused() {
    let mut store = store();
    let mut conn = Connection::new();
    let out = send(
        &mut conn,
        &mut store,
        b"version\r\nlru_crawler metadump all\r\nlru_crawler metadump all\r\n",
    );
    let text = String::from_utf8(out).unwrap_or_default();
    let err = "ERROR cannot pipeline other commands before metadump\r\n";
    assert!(text.starts_with("VERSION "), "{text}");
    assert!(text.ends_with(&format!("{err}{err}")), "{text}");
    // Requests after a dump are answered after its END.
    let out = send(
        &mut conn,
        &mut store,
        b"lru_crawler metadump all\r\nversion\r\n",
    );
    assert!(out.starts_with(b"END\r\nVERSION "));
}

#[test]
fn cachedump_stays_within_two_mebibytes() {
    let mut store = Store::new(Config::default(), START);
    let key = "k".repeat(240);
    for i in 0..12_000 {
        set(&mut store, &format!("{key}{i}"), 1, 0);
    }
    let mut conn = Connection::new();
    let out = (1..64)
        .map(|c| {
            send(
                &mut conn,
                &mut store,
                format!("stats cachedump {c} 0\r\n").as_bytes(),
            )
        })
        .max_by_key(Vec::len)
        .unwrap_or_default();
    assert!(out.ends_with(b"END\r\n"));
    assert!(out.len() <= 2 * 1024 * 1024, "{} bytes", out.len());
    let lines = out.split(|&b| b == b'\n').count();
    assert!(lines > 7000, "only {lines} lines");
}

#[test]
fn crawl_reclaims_expired_items_and_counts_them() {
    let mut store = store();
    for i in 0..10 {
        set(&mut store, &format!("e{i}"), 1, 1);
        set(&mut store, &format!("k{i}"), 1, 0);
    }
    let mut conn = Connection::new();
    let later = START.advanced_ms(2500);
    let (out, _) = feed(
        &mut conn,
        &mut store,
        later,
        &[b"lru_crawler crawl all\r\n"],
    );
    assert_eq!(out, b"OK\r\n");
    let s = store.stats();
    assert_eq!(s.crawler_reclaimed, 10);
    assert_eq!(s.crawler_items_checked, 20);
    assert_eq!(s.expired_unfetched, 10);
    assert_eq!(s.lru_crawler_starts, 1);
    assert_eq!(store.curr_items(), 10);
    store.check_invariants().expect("invariants");
    let (out, _) = feed(&mut conn, &mut store, later, &[b"stats items\r\n"]);
    let text = String::from_utf8(out).unwrap_or_default();
    assert!(
        text.contains("STAT items:1:crawler_reclaimed 10\r\n"),
        "{text}"
    );
    assert!(
        text.contains("STAT items:1:crawler_items_checked 20\r\n"),
        "{text}"
    );
}

#[test]
fn crawl_checks_at_most_tocrawl_items_per_class_from_the_tail() {
    let mut store = store();
    for i in 0..5 {
        set(&mut store, &format!("old{i}"), 1, 1);
    }
    for i in 0..5 {
        set(&mut store, &format!("new{i}"), 1, 0);
    }
    let mut conn = Connection::new();
    let later = START.advanced_ms(2500);
    let reqs: [&[u8]; 2] = [b"lru_crawler tocrawl 5\r\n", b"lru_crawler crawl 1\r\n"];
    let (out, _) = feed(&mut conn, &mut store, later, &reqs);
    assert_eq!(out, b"OK\r\nOK\r\n");
    assert_eq!(store.stats().crawler_items_checked, 5);
    // The oldest (all expired) were checked first.
    assert_eq!(store.stats().crawler_reclaimed, 5);
    store.check_invariants().expect("invariants");
}
