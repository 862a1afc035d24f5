//! Named regression tests for inputs found by fuzzing and review. Each
//! explains the bug it pins down.

mod common;

use common::feed;
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

fn run(cfg: Config, input: &[u8]) -> (Vec<u8>, Store) {
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut conn = Connection::new();
    let chunks: Vec<&[u8]> = input.chunks(7).collect();
    let (out, _) = feed(&mut conn, &mut store, clock, &chunks);
    store.check_invariants().unwrap();
    (out, store)
}

/// A client that pipelines gets and never reads must not make the
/// connection buffer more than the high-water mark plus one reply.
#[test]
fn pipelined_multiget_without_reading_is_bounded() {
    let cfg = Config {
        output_high_water: 4096,
        ..Config::default()
    };
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut conn = Connection::new();
    conn.receive(b"set k 0 0 1000\r\n");
    conn.receive(&[b'v'; 1000]);
    conn.receive(b"\r\n");
    let _ = conn.process(&mut store, clock);
    let n = conn.pending_output().len();
    conn.consume_output(n);
    let line = format!("get {}\r\n", "k ".repeat(500));
    for _ in 0..50 {
        conn.receive(line.as_bytes());
    }
    let p = conn.process(&mut store, clock);
    assert_eq!(p, Progress::Blocked);
    assert!(
        conn.pending_output().len() < 4096 + 1100,
        "{}",
        conn.pending_output().len()
    );
    assert!(!conn.wants_input(store.config()));
    // Draining lets it continue, and every reply still arrives whole.
    let mut total = 0;
    loop {
        let n = conn.pending_output().len();
        total += n;
        conn.consume_output(n);
        if conn.process(&mut store, clock) == Progress::NeedInput
            && conn.pending_output().is_empty()
        {
            break;
        }
    }
    // "VALUE k 0 1000\r\n" + value + "\r\n" per key, "END\r\n" per get.
    assert_eq!(total, 50 * (500 * (16 + 1000 + 2) + 5));
}

/// The eviction loop must terminate and refuse an item larger than the
/// whole memory limit instead of evicting everything and looping.
#[test]
fn item_larger_than_memory_limit_is_refused() {
    let cfg = Config {
        memory_limit: 1000,
        ..Config::default()
    };
    let (out, store) = run(cfg, b"set a 0 0 1\r\n1\r\nset b 0 0 2000\r\n");
    assert_eq!(out, b"STORED\r\n");
    assert_eq!(store.curr_items(), 1);
}

/// incr on a value that is all spaces is non-numeric (strtoull finds no
/// digits), not zero.
#[test]
fn incr_on_spaces_is_non_numeric() {
    let (out, _) = run(Config::default(), b"set a 0 0 3\r\n   \r\nincr a 1\r\n");
    assert_eq!(
        out,
        b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
}

/// Garbage with no newline past the line limit closes the connection
/// rather than buffering forever.
#[test]
fn endless_line_closes() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(Config::default(), clock);
    let mut conn = Connection::new();
    conn.receive(&[b'x'; 5000]);
    assert_eq!(conn.process(&mut store, clock), Progress::Close);
}

/// Eviction under a tight limit keeps the byte accounting exact.
#[test]
fn eviction_keeps_accounting_exact() {
    let cfg = Config {
        memory_limit: 4096,
        ..Config::default()
    };
    let mut input = Vec::new();
    for i in 0..200 {
        input.extend(format!("set key{i} 0 0 40\r\n{}\r\n", "v".repeat(40)).bytes());
    }
    let (_, store) = run(cfg, &input);
    assert!(store.bytes() <= 4096);
    assert!(store.stats().evictions > 150);
}

/// A peer whose socket takes a little less than everything each time must
/// not make the output buffer grow without bound: the transmitted prefix is
/// compacted away. (Seen as an out-of-memory trap in the wasm guest.)
#[test]
fn partial_writes_do_not_grow_the_output_buffer() {
    let cfg = Config::default();
    let hwm = cfg.output_high_water;
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut conn = Connection::new();
    conn.receive(b"set v 0 0 100000\r\n");
    conn.receive(&[b'v'; 100_000]);
    conn.receive(b"\r\n");
    let _ = conn.process(&mut store, clock);
    for _ in 0..2000 {
        conn.receive(b"get v\r\n");
        let _ = conn.process(&mut store, clock);
        // The socket accepts 64 KiB at a time, never quite draining.
        let n = conn.pending_output().len().min(65_536);
        conn.consume_output(n.saturating_sub(1));
        assert!(
            conn.buffered_capacity() < 8 * hwm,
            "{}",
            conn.buffered_capacity()
        );
    }
}

/// `stats items` and `stats slabs` report per-class figures for the classes
/// in use, in memcached's field order, ending with the slab totals.
#[test]
fn class_stats_are_reported_per_class() {
    let (out, _) = run(
        Config::default(),
        b"set a 0 0 1\r\n1\r\nget a\r\nstats items\r\nstats slabs\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("STAT items:1:number 1\r\n"), "{text}");
    assert!(text.contains("STAT items:1:mem_requested 61\r\n"), "{text}");
    assert!(text.contains("STAT 1:chunk_size 96\r\n"), "{text}");
    assert!(text.contains("STAT 1:get_hits 1\r\n"), "{text}");
    assert!(
        text.contains("STAT active_slabs 1\r\nSTAT total_malloced 1048576\r\nEND\r\n"),
        "{text}"
    );
}

/// Setting or clearing an item's TTL changes its record's size, which can
/// move it to another size class (or rebox a large one) and move a second
/// item into the freed slot. Every item must keep its value, flags and TTL,
/// and the index, LRU and counts must stay consistent.
#[test]
fn ttl_changes_that_move_records_keep_every_item() {
    use common::Rng;
    use std::collections::BTreeMap;

    let mut rng = Rng(7);
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(Config::default(), clock);
    let mut conn = Connection::new();
    let mut model: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let send = |conn: &mut Connection, store: &mut Store, req: &[u8]| {
        let (out, _) = feed(conn, store, clock, &[req]);
        store.check_invariants().unwrap();
        out
    };
    for step in 0..4000 {
        let key = format!("k{}", rng.below(300));
        match rng.below(6) {
            0 | 1 => {
                // Sizes around the small/large boundary and class edges.
                let len = rng.pick(&[0usize, 1, 60, 64, 67, 68, 900, 985, 990, 1000, 3000]);
                let flags = rng.pick(&[0u32, 1, 0xFFFF_FFFF]);
                let ttl = rng.pick(&[0u32, 1000]);
                let value: Vec<u8> = (0..len).map(|i| b'a' + ((i + step) % 26) as u8).collect();
                let mut req = format!("set {key} {flags} {ttl} {len}\r\n").into_bytes();
                req.extend_from_slice(&value);
                req.extend_from_slice(b"\r\n");
                assert_eq!(send(&mut conn, &mut store, &req), b"STORED\r\n");
                model.insert(key, (flags, value));
            }
            2 => {
                let ttl = rng.pick(&[0u32, 500, 2000]);
                let out = send(
                    &mut conn,
                    &mut store,
                    format!("touch {key} {ttl}\r\n").as_bytes(),
                );
                let want: &[u8] = if model.contains_key(&key) {
                    b"TOUCHED\r\n"
                } else {
                    b"NOT_FOUND\r\n"
                };
                assert_eq!(out, want);
            }
            3 => {
                let ttl = rng.pick(&[0u32, 700]);
                let _ = send(
                    &mut conn,
                    &mut store,
                    format!("mg {key} T{ttl} v\r\n").as_bytes(),
                );
            }
            4 => {
                let _ = send(
                    &mut conn,
                    &mut store,
                    format!("delete {key}\r\n").as_bytes(),
                );
                model.remove(&key);
            }
            _ => {
                let out = send(&mut conn, &mut store, format!("gat 0 {key}\r\n").as_bytes());
                let want = match model.get(&key) {
                    Some((flags, v)) => {
                        let mut w = format!("VALUE {key} {flags} {}\r\n", v.len()).into_bytes();
                        w.extend_from_slice(v);
                        w.extend_from_slice(b"\r\nEND\r\n");
                        w
                    }
                    None => b"END\r\n".to_vec(),
                };
                assert_eq!(out, want, "step {step}");
            }
        }
    }
    assert_eq!(store.curr_items(), model.len());
    for (key, (flags, v)) in &model {
        let out = send(
            &mut conn,
            &mut store,
            format!("mg {key} v f t\r\n").as_bytes(),
        );
        let head = format!("VA {} f{flags} t", v.len()).into_bytes();
        assert!(out.starts_with(&head), "{}", String::from_utf8_lossy(&out));
        assert!(out
            .windows(v.len().max(1))
            .any(|w| v.is_empty() || w == &v[..]));
    }
}
