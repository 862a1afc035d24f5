//! Warm restart in the core: a store written with `Store::snapshot` and
//! read back with `Restore` is the same cache, seen through the protocol;
//! anything wrong with the bytes is refused as a whole.

mod common;

use common::{feed, Rng};
use wasmcached_core::{Clock, Config, Connection, Restore, Restored, SnapshotError, Store};

/// Unix time of the first start in these tests.
const T0: u64 = 1_700_000_000;

fn run(store: &mut Store, clock: Clock, req: &str) -> String {
    let mut conn = Connection::new();
    let (out, _) = feed(&mut conn, store, clock, &[req.as_bytes()]);
    String::from_utf8(out).unwrap()
}

fn snapshot(store: &mut Store, clock: Clock) -> Vec<u8> {
    let mut snap = store.snapshot(clock);
    let mut out = Vec::new();
    while snap.next_chunk(&mut out) {}
    out
}

/// Restores `bytes` in pieces of `chunk` bytes into a store configured
/// with `cfg`, started at `clock`.
fn restore_in(
    cfg: Config,
    clock: Clock,
    bytes: &[u8],
    chunk: usize,
) -> Result<(Store, Restored), SnapshotError> {
    let mut r = Restore::new(cfg, clock);
    for piece in bytes.chunks(chunk.max(1)) {
        r.receive(piece)?;
    }
    r.finish()
}

fn restore(clock: Clock, bytes: &[u8]) -> (Store, Restored) {
    let (store, report) = restore_in(Config::default(), clock, bytes, 4096).unwrap();
    store.check_invariants().unwrap();
    (store, report)
}

/// A second process: its monotonic clock starts again at 0, `secs` of
/// wall-clock time after `T0`.
fn later(secs: u64) -> Clock {
    Clock::new(0, T0 + secs)
}

/// A store with a mix of items: flags, TTLs, an absolute exptime, fetched
/// and touched items, a binary key, a large value.
fn filled() -> (Store, Clock) {
    filled_with(100_000)
}

/// [`filled`] with a `big` value of `big` bytes.
fn filled_with(big: usize) -> (Store, Clock) {
    let c = Clock::new(5_000, T0);
    let mut s = Store::new(Config::default(), c);
    let big = "x".repeat(big);
    let reqs = format!(
        "set plain 0 0 5\r\nhello\r\n\
         set flagged 4294967295 0 3\r\nabc\r\n\
         set ttl100 7 100 2\r\nhi\r\n\
         set ttl30 0 30 2\r\nlo\r\n\
         set abs 0 {} 3\r\nabs\r\n\
         set big 9 0 {}\r\n{big}\r\n\
         ms YmluAHJ5 2 b\r\nbk\r\n\
         set empty 0 0 0\r\n\r\n",
        T0 + 1000,
        big.len()
    );
    run(&mut s, c, &reqs);
    // Reads change the LRU order and the fetched/active bits.
    let c = c.advanced_ms(2_000);
    run(&mut s, c, "get plain\r\nget plain\r\ntouch ttl30 30\r\n");
    (s, c)
}

fn gets(s: &mut Store, c: Clock, key: &str) -> String {
    run(s, c, &format!("mg {key} v f c t k h l\r\n"))
}

#[test]
fn round_trip_keeps_values_flags_cas_and_ttl_by_wall_clock() {
    let (mut s, c) = filled();
    let keys = ["plain", "flagged", "ttl100", "ttl30", "abs", "big", "empty"];
    let bytes = snapshot(&mut s, c);
    // What the original answers from here on (reads change what `h` and
    // `l` say next time, so both stores are read from the same state).
    let before: Vec<String> = keys.iter().map(|k| gets(&mut s, c, k)).collect();
    let binary = run(&mut s, c, "mg YmluAHJ5 b v k c h l\r\n");
    assert!(binary.starts_with("VA 2 "), "{binary}");

    // Restarted at once: everything as it was.
    let (mut r, report) = restore(later(2), &bytes);
    assert_eq!(report.items, 8);
    assert_eq!(report.expired, 0);
    for (k, b) in keys.iter().zip(&before) {
        assert_eq!(&gets(&mut r, later(2), k), b, "{k}");
    }
    assert_eq!(run(&mut r, later(2), "mg YmluAHJ5 b v k c h l\r\n"), binary);

    // Down for 40 s: TTLs counted on by the wall clock.
    let (mut r, report) = restore(later(42), &bytes);
    assert_eq!((report.items, report.expired, report.down_secs), (7, 1, 40));
    assert_eq!(gets(&mut r, later(42), "ttl30"), "EN kttl30\r\n");
    let t = gets(&mut r, later(42), "ttl100");
    assert!(t.contains(" t58 ") || t.contains(" t57 "), "{t}");
    // The absolute exptime still means the same unix time.
    let t = gets(&mut r, later(42), "abs");
    assert!(t.contains(" t958 ") || t.contains(" t957 "), "{t}");
    // And expires then.
    let gone = Clock::new(1_000_000, T0 + 1001);
    assert_eq!(gets(&mut r, gone, "abs"), "EN kabs\r\n");
    assert_eq!(
        run(&mut r, gone, "get plain\r\n"),
        "VALUE plain 0 5\r\nhello\r\nEND\r\n"
    );
}

#[test]
fn cas_counter_continues() {
    let (mut s, c) = filled();
    let last = run(&mut s, c, "mn\r\nset probe 0 0 1\r\nx\r\ngets probe\r\n");
    let cas: u64 = last.split_whitespace().nth(6).unwrap().parse().unwrap();
    let bytes = snapshot(&mut s, c);
    let (mut r, _) = restore(later(5), &bytes);
    let out = run(&mut r, later(5), "set next 0 0 1\r\ny\r\ngets next\r\n");
    assert_eq!(
        out,
        format!("STORED\r\nVALUE next 0 1 {}\r\ny\r\nEND\r\n", cas + 1)
    );
    // A client holding a CAS value from before the restart can still use it.
    let out = run(
        &mut r,
        later(5),
        &format!("cas probe 0 0 1 {cas}\r\nz\r\ncas probe 0 0 1 {cas}\r\nz\r\n"),
    );
    assert_eq!(out, "STORED\r\nEXISTS\r\n");
}

#[test]
fn lru_order_is_kept() {
    // 100 items, read in a shuffled order; a restored store under the same
    // memory pressure must evict them in the same order as the original.
    let c = Clock::new(0, T0);
    let cfg = Config {
        memory_limit: 100 * 160,
        ..Config::default()
    };
    let mut s = Store::new(cfg.clone(), c);
    let mut rng = Rng(7);
    for i in 0..100 {
        run(
            &mut s,
            c,
            &format!("set k{i:03} 0 0 60\r\n{}\r\n", "v".repeat(60)),
        );
    }
    for _ in 0..300 {
        run(&mut s, c, &format!("get k{:03}\r\n", rng.below(100)));
    }
    let bytes = snapshot(&mut s, c);
    let (mut r, _) = restore_in(cfg, later(1), &bytes, 999).unwrap();
    r.check_invariants().unwrap();
    // The same items in the same order (the header's clock differs).
    let again = snapshot(&mut r, later(1));
    assert_eq!(again[60..again.len() - 4], bytes[60..bytes.len() - 4]);
    // Same eviction order: push 50 new items into both and compare what
    // is left.
    for i in 0..50 {
        let req = format!("set n{i} 0 0 60\r\n{}\r\n", "n".repeat(60));
        run(&mut s, c, &req);
        run(&mut r, later(1), &req);
    }
    for i in 0..100 {
        let req = format!("mg k{i:03} k\r\n");
        assert_eq!(run(&mut s, c, &req), run(&mut r, later(1), &req), "k{i:03}");
    }
}

#[test]
fn smaller_memory_restores_the_most_recently_used() {
    let c = Clock::new(0, T0);
    let mut s = Store::new(Config::default(), c);
    for i in 0..1000 {
        run(
            &mut s,
            c,
            &format!("set k{i:04} 0 0 100\r\n{}\r\n", "v".repeat(100)),
        );
    }
    let bytes = snapshot(&mut s, c);
    let small = Config {
        memory_limit: 200 * 1024 / 10,
        ..Config::default()
    };
    let (mut r, report) = restore_in(small, later(1), &bytes, 7777).unwrap();
    r.check_invariants().unwrap();
    assert_eq!(report.items + report.over_limit, 1000);
    assert!(report.items > 50 && report.items < 1000, "{report:?}");
    // Exactly the newest `items` keys.
    for i in 0..1000u64 {
        let hit = run(&mut r, later(1), &format!("mg k{i:04}\r\n")) == "HD\r\n";
        assert_eq!(hit, i >= 1000 - report.items, "k{i:04}");
    }
}

#[test]
fn flush_horizon_is_kept() {
    let c = Clock::new(0, T0);
    let mut s = Store::new(Config::default(), c);
    run(&mut s, c, "set a 0 0 1\r\na\r\nflush_all 100\r\n");
    let bytes = snapshot(&mut s, c);

    // Restarted before the flush is due: the item is there until then.
    let (mut r, report) = restore(later(50), &bytes);
    assert_eq!(report.items, 1);
    assert_eq!(run(&mut r, later(50), "mg a v\r\n"), "VA 1\r\na\r\n");
    // An item stored after the restart but before the horizon goes too,
    // one stored after it stays.
    run(&mut r, later(50), "set b 0 0 1\r\nb\r\n");
    let due = Clock::new(60_000, T0 + 110);
    assert_eq!(run(&mut r, due, "mg a v\r\nmg b v\r\n"), "EN\r\nEN\r\n");
    assert!(r.poll_timeout().is_some());

    // Restarted after it: nothing comes back.
    let (_, report) = restore(later(150), &bytes);
    assert_eq!((report.items, report.expired), (0, 1));
}

#[test]
fn immediate_flush_is_not_undone() {
    let c = Clock::new(0, T0);
    let mut s = Store::new(Config::default(), c);
    run(
        &mut s,
        c,
        "set a 0 0 1\r\na\r\nflush_all\r\nset b 0 0 1\r\nb\r\n",
    );
    let bytes = snapshot(&mut s, c);
    let (mut r, report) = restore(later(1), &bytes);
    assert_eq!(report.items, 1);
    assert_eq!(
        run(&mut r, later(1), "mg a v\r\nmg b v\r\n"),
        "EN\r\nVA 1\r\nb\r\n"
    );
}

#[test]
fn any_chunking_restores_the_same() {
    let (mut s, c) = filled();
    let bytes = snapshot(&mut s, c);
    let mut rng = Rng(11);
    let (mut whole, report) = restore_in(Config::default(), later(3), &bytes, bytes.len()).unwrap();
    let expect = snapshot(&mut whole, later(3));
    for chunk in [1, 2, 3, 13, 64, 65536] {
        let (mut r, got) = restore_in(Config::default(), later(3), &bytes, chunk).unwrap();
        assert_eq!(got, report);
        assert_eq!(snapshot(&mut r, later(3)), expect);
    }
    // Random chunkings.
    for _ in 0..20 {
        let mut r = Restore::new(Config::default(), later(3));
        let mut at = 0;
        while at < bytes.len() {
            let n = (1 + rng.below(300) as usize).min(bytes.len() - at);
            r.receive(&bytes[at..at + n]).unwrap();
            at += n;
        }
        assert_eq!(r.finish().unwrap().1, report);
    }
}

#[test]
fn an_empty_store_round_trips() {
    let c = Clock::new(0, T0);
    let mut s = Store::new(Config::default(), c);
    let bytes = snapshot(&mut s, c);
    let (r, report) = restore(later(1), &bytes);
    assert_eq!(report.items, 0);
    assert_eq!(r.curr_items(), 0);
}

#[test]
fn truncated_snapshots_are_refused() {
    // Every cut of a snapshot with a 2 KB value, and cuts through a large
    // one.
    let (mut s, c) = filled_with(2000);
    let bytes = snapshot(&mut s, c);
    let (mut s, c) = filled();
    let large = snapshot(&mut s, c);
    for len in (0..large.len()).step_by(997) {
        let r = restore_in(Config::default(), later(1), &large[..len], 65536);
        assert_eq!(r.err(), Some(SnapshotError::Truncated), "cut at {len}");
    }
    for len in 0..bytes.len() {
        let r = restore_in(Config::default(), later(1), &bytes[..len], 4096);
        assert!(
            r.is_err(),
            "a snapshot cut at {len} of {} was accepted",
            bytes.len()
        );
    }
}

#[test]
fn corrupt_snapshots_are_refused() {
    let (mut s, c) = filled_with(2000);
    let bytes = snapshot(&mut s, c);
    // Every bit of every byte.
    for at in 0..bytes.len() {
        let bits: &[u8] = &[1, 2, 4, 8, 16, 32, 64, 128];
        for &bit in bits {
            let mut bad = bytes.clone();
            bad[at] ^= bit;
            let r = restore_in(Config::default(), later(1), &bad, 4096);
            assert!(r.is_err(), "byte {at} ^ {bit:#x} was accepted");
        }
    }
    let mut more = bytes.clone();
    more.push(0);
    assert_eq!(
        restore_in(Config::default(), later(1), &more, 4096).err(),
        Some(SnapshotError::TrailingData)
    );
    assert_eq!(
        restore_in(Config::default(), later(1), b"memcached", 4096).err(),
        Some(SnapshotError::NotASnapshot)
    );
}

#[test]
fn mismatched_snapshots_are_refused() {
    let (mut s, c) = filled();
    let bytes = snapshot(&mut s, c);
    let other_i = Config {
        item_size_max: 2 * 1024 * 1024,
        ..Config::default()
    };
    assert_eq!(
        restore_in(other_i, later(1), &bytes, 4096).err(),
        Some(SnapshotError::ItemSizeMax {
            snapshot: 1024 * 1024,
            configured: 2 * 1024 * 1024
        })
    );
    let no_cas = Config {
        cas_enabled: false,
        ..Config::default()
    };
    assert_eq!(
        restore_in(no_cas.clone(), later(1), &bytes, 4096).err(),
        Some(SnapshotError::CasSetting)
    );
    // And a -C store restores only into a -C store.
    let mut s = Store::new(no_cas.clone(), c);
    run(&mut s, c, "set a 0 0 1\r\na\r\n");
    let no_cas_bytes = snapshot(&mut s, c);
    assert!(restore_in(no_cas, later(1), &no_cas_bytes, 4096).is_ok());
    assert_eq!(
        restore_in(Config::default(), later(1), &no_cas_bytes, 4096).err(),
        Some(SnapshotError::CasSetting)
    );
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert_eq!(
        restore_in(Config::default(), later(1), &v2, 4096).err(),
        Some(SnapshotError::Version { found: 2 })
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let e = SnapshotError::ItemSizeMax {
        snapshot: 1024,
        configured: 2048,
    };
    assert_eq!(
        e.to_string(),
        "written with -I 1024, this server runs with -I 2048"
    );
    assert_eq!(SnapshotError::Truncated.to_string(), "truncated");
}

#[test]
fn garbage_never_panics() {
    let (mut s, c) = filled_with(300);
    let bytes = snapshot(&mut s, c);
    let mut rng = Rng(99);
    for _ in 0..3000 {
        let mut bad = bytes.clone();
        let at = rng.below(bad.len() as u64) as usize;
        let n = (1 + rng.below(40) as usize).min(bad.len() - at);
        for b in &mut bad[at..at + n] {
            *b = rng.next() as u8;
        }
        let cut = if rng.chance(30) {
            rng.below(bad.len() as u64) as usize
        } else {
            bad.len()
        };
        let r = restore_in(
            Config::default(),
            later(1),
            &bad[..cut],
            1 + rng.below(500) as usize,
        );
        if bad[..cut] != bytes[..] {
            assert!(r.is_err());
        }
    }
}
