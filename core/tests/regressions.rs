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
    assert!(conn.pending_len() < 4096 + 1100, "{}", conn.pending_len());
    assert!(!conn.wants_input(store.config()));
    // Draining lets it continue, and every reply still arrives whole.
    let mut total = 0;
    loop {
        total += common::drain(&mut conn, &mut Vec::new());
        if conn.process(&mut store, clock) == Progress::NeedInput && conn.pending_len() == 0 {
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

/// A fetch of an active item (fetched twice) no longer moves it in the
/// LRU, so eviction must give such an item a second chance when it
/// reaches the tail: a hot key read before a flood of sets survives it,
/// while keys read once or never are evicted. The scan of the tail ends
/// even when every item is active.
#[test]
fn active_items_get_a_second_chance_at_the_tail() {
    let cfg = Config {
        memory_limit: 8192,
        ..Config::default()
    };
    let value = "v".repeat(40);
    let mut input = Vec::new();
    for i in 0..20 {
        input.extend(format!("set key{i} 0 0 40\r\n{value}\r\n").bytes());
    }
    // key0 and key1 active, key2 fetched once.
    input.extend(b"get key0 key1\r\nget key0 key1\r\nget key2\r\n");
    for i in 20..200 {
        input.extend(format!("set key{i} 0 0 40\r\n{value}\r\n").bytes());
        if i % 10 == 0 {
            // Still read now and then: a rescued item is active again
            // after two more fetches.
            input.extend(b"get key0 key1\r\nget key0 key1\r\n");
        }
    }
    input.extend(b"get key0 key1 key2 key3\r\n");
    let (out, store) = run(cfg.clone(), &input);
    let tail = &out[out.len() - 200.min(out.len())..];
    let tail = String::from_utf8_lossy(tail);
    assert!(
        tail.contains("VALUE key0 ") && tail.contains("VALUE key1 "),
        "{tail}"
    );
    assert!(
        !tail.contains("VALUE key2 ") && !tail.contains("VALUE key3 "),
        "{tail}"
    );
    assert!(store.stats().evictions > 100);

    // Every item active: the eviction that follows still ends.
    let mut all = Vec::new();
    for i in 0..200 {
        all.extend(format!("set a{i} 0 0 40\r\n{value}\r\nget a{i}\r\nget a{i}\r\n").bytes());
    }
    let (_, store) = run(cfg, &all);
    assert!(store.bytes() <= 8192);
    assert!(store.stats().evictions > 0);
}

/// A peer whose socket takes a little less than everything each time must
/// not make the output buffer grow without bound: the transmitted prefix is
/// compacted away. (Seen as an out-of-memory trap in the wasm guest.) The
/// 10 KB value is copied into the output, the 100 KB one shared.
#[test]
fn partial_writes_do_not_grow_the_output_buffer() {
    for size in [100_000, 10_000] {
        let cfg = Config::default();
        let hwm = cfg.output_high_water;
        let clock = Clock::new(0, 1_700_000_000);
        let mut store = Store::new(cfg, clock);
        let mut conn = Connection::new();
        conn.receive(format!("set v 0 0 {size}\r\n").as_bytes());
        conn.receive(&vec![b'v'; size]);
        conn.receive(b"\r\n");
        let _ = conn.process(&mut store, clock);
        for _ in 0..2000 {
            conn.receive(b"get v\r\n");
            let _ = conn.process(&mut store, clock);
            // The socket accepts 64 KiB at a time, never quite draining.
            let n = conn.pending_len().min(65_536);
            conn.consume_output(n.saturating_sub(1));
            assert!(conn.held_bytes() < 8 * hwm, "{}", conn.held_bytes());
        }
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

/// Sends `req` in one piece and returns the replies.
fn send(conn: &mut Connection, store: &mut Store, req: &[u8]) -> Vec<u8> {
    let (out, _) = feed(conn, store, Clock::new(0, 1_700_000_000), &[req]);
    store.check_invariants().unwrap();
    out
}

/// A `set` whose data block trickles in makes room for its item once,
/// when the block is complete. Making room on every pass kept the
/// pending item's size free the whole time: each item another client
/// stored meanwhile cost an extra eviction.
#[test]
fn trickled_set_makes_room_once() {
    let clock = Clock::new(0, 1_700_000_000);
    // Returns (A's replies, evictions before A's data completes, store).
    let scenario = |line: &[u8], trickle: bool| {
        let cfg = Config {
            memory_limit: 64 * 1024,
            ..Config::default()
        };
        let mut store = Store::new(cfg, clock);
        let mut a = Connection::new();
        let mut b = Connection::new();
        let mut i = 0;
        while store.stats().evictions == 0 {
            let req = format!("set f{i} 0 0 40\r\n{}\r\n", "v".repeat(40));
            assert_eq!(send(&mut b, &mut store, req.as_bytes()), b"STORED\r\n");
            i += 1;
        }
        let mut others = (0..100).map(|j| format!("set b{j} 0 0 40\r\n{}\r\n", "w".repeat(40)));
        let value = vec![b'x'; 20_000];
        let mut a_out = Vec::new();
        if trickle {
            // The line, then the data 200 bytes at a time, with another
            // client storing an item between the pieces.
            a_out.extend(send(&mut a, &mut store, line));
            for piece in value.chunks(200) {
                a_out.extend(send(&mut a, &mut store, piece));
                let req = others.next().unwrap();
                assert_eq!(send(&mut b, &mut store, req.as_bytes()), b"STORED\r\n");
            }
            let mid = store.stats().evictions;
            a_out.extend(send(&mut a, &mut store, b"\r\n"));
            (a_out, mid, store)
        } else {
            for req in others {
                assert_eq!(send(&mut b, &mut store, req.as_bytes()), b"STORED\r\n");
            }
            let mid = store.stats().evictions;
            let mut whole = line.to_vec();
            whole.extend_from_slice(&value);
            whole.extend_from_slice(b"\r\n");
            a_out.extend(send(&mut a, &mut store, &whole));
            (a_out, mid, store)
        }
    };
    let cases: [(&[u8], &[u8]); 2] = [
        (b"set big 0 0 20000\r\n", b"STORED\r\n"),
        (b"ms big 20000 T0\r\n", b"HD\r\n"),
    ];
    for (line, reply) in cases {
        let (out_t, mid_t, mut store_t) = scenario(line, true);
        let (out_w, mid_w, store_w) = scenario(line, false);
        assert_eq!(out_t, reply);
        assert_eq!(out_w, reply);
        assert_eq!(mid_t, mid_w, "evictions while the data block was arriving");
        assert_eq!(store_t.stats().evictions, store_w.stats().evictions);
        assert_eq!(store_t.curr_items(), store_w.curr_items());
        let got = send(&mut Connection::new(), &mut store_t, b"mg big s\r\n");
        assert_eq!(got, b"HD s20000\r\n");
    }
}

/// An `incr` whose result needs a longer value allocates a new item; when
/// that fails under `-M` memcached replies `SERVER_ERROR out of memory` and
/// keeps the counter as it was. It used to be deleted. (Replies checked
/// against memcached 1.6.18 `-M -m 2` filled with same-sized items, one
/// request per round trip.)
#[test]
fn incr_out_of_memory_keeps_the_counter() {
    let cfg = Config {
        memory_limit: 16 * 1024,
        evictions: false,
        ..Config::default()
    };
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut c = Connection::new();
    assert_eq!(
        send(&mut c, &mut store, b"set ctr 5 0 2\r\n99\r\n"),
        b"STORED\r\n"
    );
    // Fill with items the size the grown counter would have.
    let mut full = false;
    for i in 0..1000 {
        let out = send(
            &mut c,
            &mut store,
            format!("set {i:03} 0 0 3\r\nabc\r\n").as_bytes(),
        );
        if out == b"SERVER_ERROR out of memory storing object\r\n" {
            full = true;
            break;
        }
        assert_eq!(out, b"STORED\r\n");
    }
    assert!(full);
    let items = store.curr_items();
    let cases: [(&[u8], &[u8]); 10] = [
        (b"incr ctr 1\r\n", b"SERVER_ERROR out of memory\r\n"),
        (b"get ctr\r\n", b"VALUE ctr 5 2\r\n99\r\nEND\r\n"),
        (
            b"ma ctr v t c k O123\r\n",
            b"SERVER_ERROR out of memory\r\n",
        ),
        (
            b"ma ctr q\r\nmn\r\n",
            b"SERVER_ERROR out of memory\r\nMN\r\n",
        ),
        (
            b"incr ctr 1 noreply\r\nget ctr\r\n",
            b"VALUE ctr 5 2\r\n99\r\nEND\r\n",
        ),
        (b"mg ctr v f\r\n", b"VA 2 f5\r\n99\r\n"),
        (b"decr ctr 1\r\n", b"98\r\n"),
        (b"get ctr\r\n", b"VALUE ctr 5 2\r\n98\r\nEND\r\n"),
        (b"incr ctr 1\r\n", b"99\r\n"),
        (b"incr ctr 1\r\n", b"SERVER_ERROR out of memory\r\n"),
    ];
    for (req, want) in cases {
        let got = send(&mut c, &mut store, req);
        assert_eq!(
            got,
            want,
            "{} -> {}",
            String::from_utf8_lossy(req),
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(store.curr_items(), items);
    assert_eq!(store.stats().incr_hits, 6);
    assert_eq!(store.stats().decr_hits, 1);
}

/// Meta commands decode `b` keys with memcached's lenient decoder, as `me`
/// does: bytes outside the alphabet are skipped and input after a padded
/// quad is ignored, but the count must be a multiple of four and at most
/// two pads are allowed. Replies recorded from memcached 1.6.18.
#[test]
fn meta_base64_keys_decode_like_memcached() {
    let reqs = |k: &str| {
        format!(
            "ms {k} 3 b k O1\r\n123\r\nmg {k} b k v O2\r\nma {k} b k v O3\r\n\
             md {k} b k O4\r\nmg {k} b k v O5\r\nma {k} b q O6\r\nmd {k} b q O7\r\nmn\r\n"
        )
    };
    let ok = |enc: &str| {
        format!(
            "HD k{enc} b O1\r\nVA 3 k{enc} b O2\r\n123\r\nVA 3 k{enc} b O3\r\n124\r\n\
             HD k{enc} b O4\r\nEN k{enc} b O5\r\nNF O6\r\nNF O7\r\nMN\r\n"
        )
    };
    let bad = "CLIENT_ERROR error decoding key\r\nCLIENT_ERROR error decoding key\r\n\
               CLIENT_ERROR invalid or duplicate flag\r\nCLIENT_ERROR invalid or duplicate flag\r\n\
               CLIENT_ERROR error decoding key\r\nCLIENT_ERROR invalid or duplicate flag\r\n\
               CLIENT_ERROR invalid or duplicate flag\r\nMN\r\n"
        .to_string();
    let cases = [
        ("Zm9v", ok("Zm9v")),
        // A stray byte outside the alphabet is skipped.
        ("Zm9v!YmFy", ok("Zm9vYmFy")),
        ("Zm9-v", ok("Zm9v")),
        ("Zm9v_YmFy.", ok("Zm9vYmFy")),
        // A pad inside the quad ends the key there.
        ("Zm=9", ok("ZmA=")),
        ("Zg==Zm9v", ok("Zg==")),
        // Missing padding, too much padding, nothing decodable.
        ("Zm9vYg", bad.clone()),
        ("Zm9vY===", bad.clone()),
        ("!!!!", bad.clone()),
        ("QUJD=", bad.clone()),
    ];
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(Config::default(), clock);
    let mut c = Connection::new();
    for (key, want) in cases {
        let got = send(&mut c, &mut store, reqs(key).as_bytes());
        assert_eq!(String::from_utf8_lossy(&got), want, "key {key}");
    }
    // The decoded key is the item's key: `me` and plain commands see it.
    let got = send(
        &mut c,
        &mut store,
        b"ms Zm9v!YmFy 1 b\r\nx\r\nmg foobar v\r\nme Zm9vYmFy b\r\n",
    );
    assert!(
        got.starts_with(b"HD\r\nVA 1\r\nx\r\nME Zm9vYmFy exp=-1"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// A long `get` line trickling in is searched for its line ending once,
/// not once per call: searching the whole buffered line on every call made
/// a client sending 1 MiB a few bytes at a time cost quadratic CPU.
#[test]
fn trickled_long_get_line_is_scanned_once() {
    let clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(Config::default(), clock);
    let mut conn = Connection::new();
    assert_eq!(
        send(&mut conn, &mut store, b"set k 0 0 1\r\nv\r\n"),
        b"STORED\r\n"
    );
    let keys = 524_280;
    let mut line = b"get".to_vec();
    for i in 0..keys {
        line.extend_from_slice(if i % 1000 == 999 { b" m" } else { b" k" });
    }
    line.extend_from_slice(b"\r\n");
    assert!(line.len() > 1_048_000 && line.len() <= 1 << 20);
    let before = conn.line_scan_work();
    let chunks: Vec<&[u8]> = line.chunks(16).collect();
    let (out, closed) = feed(&mut conn, &mut store, clock, &chunks);
    assert!(!closed);
    let work = conn.line_scan_work() - before;
    assert!(
        work <= 2 * line.len() as u64,
        "searched {work} bytes for a {} byte line",
        line.len()
    );
    let hits = keys - keys / 1000;
    let mut want = b"VALUE k 0 1\r\nv\r\n".repeat(hits);
    want.extend_from_slice(b"END\r\n");
    assert!(
        out == want,
        "reply of {} bytes, want {}",
        out.len(),
        want.len()
    );
    assert_eq!(store.stats().get_hits, hits as u64);
    assert_eq!(store.stats().get_misses, (keys / 1000) as u64);
}

/// `cache_memlimit` cannot raise the memory limit past
/// `Config::memory_limit_max`: the reply is memcached's `OK` and
/// `limit_maxbytes` shows the clamped limit. Without a cap the command
/// behaves as in memcached (`cache_memlimit 100000` then reports
/// `limit_maxbytes 104857600000`).
#[test]
fn cache_memlimit_is_clamped_to_memory_limit_max() {
    let stat = |out: &[u8], name: &str| -> String {
        let text = String::from_utf8_lossy(out).into_owned();
        let prefix = format!("STAT {name} ");
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_default()
    };
    let capped = Config {
        memory_limit_max: 32 * 1024 * 1024,
        ..Config::default()
    };
    let (out, _) = run(capped.clone(), b"cache_memlimit 100000\r\nstats\r\n");
    assert!(out.starts_with(b"OK\r\nSTAT pid"));
    assert_eq!(stat(&out, "limit_maxbytes"), "33554432");
    let (out, _) = run(capped, b"cache_memlimit 16\r\nstats settings\r\n");
    assert!(out.starts_with(b"OK\r\n"));
    assert_eq!(stat(&out, "maxbytes"), "16777216");
    let (out, _) = run(Config::default(), b"cache_memlimit 100000\r\nstats\r\n");
    assert!(out.starts_with(b"OK\r\n"));
    assert_eq!(stat(&out, "limit_maxbytes"), "104857600000");
}
