//! Key dumps through the real tools, against the native server, the wasm
//! server under the runner, and memcached 1.6.18 as the reference:
//! Debian's `memcached-tool HOST:PORT dump` and `keys` (which read
//! `lru_crawler metadump all`), libmemcached's `memcdump` and pymemcache's
//! `stats("cachedump", …)` (which read `stats cachedump`). Every check is
//! against what the test stored: each live key listed once, with its flags,
//! value and expiry; expired keys absent.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use wasmcached_tests::{parse_stats, start, stat, venv_python, Client, Kind, Server};

const TOOL: &str = "/usr/share/memcached/scripts/memcached-tool";

/// What the test stored under one key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    flags: u32,
    value: Vec<u8>,
    /// Relative TTL in seconds (0: none).
    ttl: u32,
}

/// Stores a mix of keys (some needing URI encoding), sizes that span many
/// classes, and TTLs; every fifth key expires after one second.
fn populate(server: &Server, n: usize) -> BTreeMap<String, Stored> {
    let mut c = server.connect();
    let mut all = BTreeMap::new();
    for i in 0..n {
        let key = if i % 3 == 0 {
            format!("user:{i}/x%y")
        } else {
            format!("k{i}")
        };
        let ttl = match i {
            _ if i % 5 == 0 => 1,
            _ if i % 7 == 0 => 1000,
            _ => 0,
        };
        let value = format!("v{i}-").repeat(1 + i * 7 % 400).into_bytes();
        let flags = (i as u32) * 7;
        let mut req = format!("set {key} {flags} {ttl} {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(c.call(&req, b"\r\n"), b"STORED\r\n", "{key}");
        all.insert(key, Stored { flags, value, ttl });
    }
    all
}

fn live(all: &BTreeMap<String, Stored>) -> BTreeMap<String, Stored> {
    all.iter()
        .filter(|(_, s)| s.ttl != 1)
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect()
}

fn server_time(server: &Server) -> u64 {
    let mut c = server.connect();
    stat(&parse_stats(&c.call(b"stats\r\n", b"END\r\n")), "time")
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An absolute exptime as a dump shows it, checked against the TTL set.
fn check_exptime(key: &str, ttl: u32, abs: u64, now: u64) {
    if ttl == 0 {
        assert_eq!(abs, 0, "{key}: no expiry expected");
    } else {
        let want = now + u64::from(ttl);
        assert!(
            abs.abs_diff(want) <= 10,
            "{key}: exptime {abs}, about {want}"
        );
    }
}

/// `memcached-tool dump`: `add <key> <flags> <exptime> <len>` records.
fn check_tool_dump(server: &Server, want: &BTreeMap<String, Stored>, now: u64) {
    let addr = format!("127.0.0.1:{}", server.port);
    let out = run(Command::new("perl").args([TOOL, &addr, "dump"]));
    let mut rest = &out[..];
    let mut got = BTreeMap::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let head = String::from_utf8_lossy(&rest[..eol]).to_string();
        let f: Vec<&str> = head.split(' ').collect();
        assert_eq!((f.len(), f[0]), (5, "add"), "{head}");
        let len: usize = f[4].parse().expect("length");
        let value = rest[eol + 2..eol + 2 + len].to_vec();
        rest = &rest[eol + 4 + len..];
        let s = &want
            .get(f[1])
            .unwrap_or_else(|| panic!("unexpected key {}", f[1]));
        assert_eq!(f[2].parse::<u32>().ok(), Some(s.flags), "{head}");
        assert_eq!(value, s.value, "{}", f[1]);
        check_exptime(f[1], s.ttl, f[3].parse().expect("exptime"), now);
        assert!(got.insert(f[1].to_string(), ()).is_none(), "{} twice", f[1]);
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{}: dump incomplete",
        server.kind.name()
    );
}

/// `memcached-tool keys`: the metadump lines themselves.
fn tool_keys(server: &Server) -> Vec<String> {
    let addr = format!("127.0.0.1:{}", server.port);
    let out = run(Command::new("perl").args([TOOL, &addr, "keys"]));
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| {
            let k = l.strip_prefix("key=").expect("key= line");
            uri_decode(k.split(' ').next().unwrap_or(""))
        })
        .collect()
}

fn uri_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn sorted_unique(mut keys: Vec<String>) -> Vec<String> {
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key was listed twice");
    keys
}

/// libmemcached's `memcdump`: one key per line, from `stats cachedump`.
fn memcdump_keys(server: &Server) -> Vec<String> {
    let servers = format!("--servers=127.0.0.1:{}", server.port);
    let out = run(Command::new("memcdump").arg(servers));
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// pymemcache's `stats("cachedump", cls, limit)` for every class `stats
/// items` shows, printed as `key<TAB>[<n> b; <exp> s]`; plus the size of
/// one limited dump of class 1.
fn pymemcache_cachedump(server: &Server) -> (Vec<(String, String)>, usize) {
    let python = venv_python();
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])))
classes = sorted({k.decode().split(":")[1] for k in c.stats("items")})
for cls in classes:
    for k, v in c.stats("cachedump", cls, "0").items():
        print("%s\t%s" % (k.decode("utf-8"), v.decode() if isinstance(v, bytes) else v))
print("limited\t%d" % len(c.stats("cachedump", "1", "2")))
"#;
    let out = run(Command::new(&python)
        .args(["-c", script])
        .arg(server.port.to_string()));
    let mut limited = 0;
    let mut rows = Vec::new();
    for l in String::from_utf8_lossy(&out).lines() {
        let (k, v) = l.split_once('\t').expect("tab");
        if k == "limited" {
            limited = v.parse().expect("count");
        } else {
            rows.push((k.to_string(), v.to_string()));
        }
    }
    (rows, limited)
}

fn check_pymemcache(server: &Server, want: &BTreeMap<String, Stored>, now: u64) {
    let (rows, limited) = pymemcache_cachedump(server);
    assert!(limited <= 2, "limit 2 gave {limited} items");
    for (k, v) in &rows {
        let s = want.get(k).unwrap_or_else(|| panic!("unexpected key {k}"));
        let inner = v.trim_start_matches('[').trim_end_matches(" s]");
        let (bytes, exp) = inner.split_once(" b; ").expect("item format");
        assert_eq!(bytes.parse::<usize>().ok(), Some(s.value.len()), "{k}: {v}");
        check_exptime(k, s.ttl, exp.parse().expect("exp"), now);
    }
    let keys = sorted_unique(rows.into_iter().map(|(k, _)| k).collect());
    assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>());
}

/// Every tool against one server kind.
fn dumps_through_real_tools(kind: Kind) {
    let server = start(kind, &[]);
    let all = populate(&server, 300);
    std::thread::sleep(Duration::from_millis(2500));
    let want = live(&all);
    let now = server_time(&server);
    check_tool_dump(&server, &want, now);
    let keys = sorted_unique(tool_keys(&server));
    assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>());
    if kind == Kind::Memcached {
        // memcached's cachedump walks one LRU segment and lists expired
        // items it has not reclaimed yet; the checks below are ours.
        return;
    }
    let keys = sorted_unique(memcdump_keys(&server));
    assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>());
    check_pymemcache(&server, &want, now);
}

#[test]
fn dumps_native() {
    dumps_through_real_tools(Kind::Native);
}

#[test]
fn dumps_wasm() {
    dumps_through_real_tools(Kind::Wasm);
}

#[test]
fn dumps_reference_memcached() {
    dumps_through_real_tools(Kind::Memcached);
}

/// A dump far larger than a connection's output high-water mark streams
/// out whole: memcached-tool sees every key.
fn large_dump(kind: Kind) {
    let server = start(kind, &["-m", "256"]);
    let mut c = server.connect();
    let n = 40_000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(
            format!(
                "set key-{i:06}-{} 0 0 2 noreply\r\nab\r\n",
                "p".repeat(i % 64)
            )
            .as_bytes(),
        );
        if batch.len() > 64 * 1024 {
            c.send(&batch);
            batch.clear();
        }
    }
    c.send(&batch);
    let items = stat(
        &parse_stats(&c.call(b"stats\r\n", b"END\r\n")),
        "curr_items",
    );
    assert_eq!(items, n as u64);
    let keys = sorted_unique(tool_keys(&server));
    assert_eq!(keys.len(), n);
}

#[test]
fn large_dump_native() {
    large_dump(Kind::Native);
}

#[test]
fn large_dump_wasm() {
    large_dump(Kind::Wasm);
}

/// A metadump after other requests in the same write is refused, as
/// memcached refuses it; crawl and its stats; the settings it changes.
fn crawler_controls(kind: Kind) {
    let server = start(kind, &[]);
    let mut c = server.connect();
    c.send(b"version\r\nlru_crawler metadump all\r\n");
    let reply = c.read_until(b"metadump\r\n", Duration::from_secs(5));
    assert!(
        reply.ends_with(b"\r\nERROR cannot pipeline other commands before metadump\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(c.call(b"lru_crawler disable\r\n", b"\r\n"), b"OK\r\n");
    // memcached answers OK as it signals its crawler thread to stop, and
    // the thread turns the setting off as it exits: a metadump in between
    // gets "ERROR an unknown error happened". Ours is off at once.
    let tries = if kind == Kind::Memcached { 100 } else { 1 };
    let off = (0..tries).any(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let settings = parse_stats(&c.call(b"stats settings\r\n", b"END\r\n"));
        settings.contains(&("lru_crawler".into(), "no".into()))
    });
    assert!(off, "{}: the crawler stayed enabled", kind.name());
    assert_eq!(
        c.call(b"lru_crawler metadump all\r\n", b"\r\n"),
        b"CLIENT_ERROR lru crawler disabled\r\n"
    );
    assert_eq!(c.call(b"lru_crawler enable\r\n", b"\r\n"), b"OK\r\n");
    let settings = parse_stats(&c.call(b"stats settings\r\n", b"END\r\n"));
    assert!(settings.contains(&("lru_crawler".into(), "yes".into())));
}

#[test]
fn crawler_controls_native() {
    crawler_controls(Kind::Native);
}

#[test]
fn crawler_controls_wasm() {
    crawler_controls(Kind::Wasm);
}

#[test]
fn crawler_controls_reference_memcached() {
    crawler_controls(Kind::Memcached);
}

/// `lru_crawler crawl` reclaims expired items at once and counts them.
#[test]
fn crawl_reclaims_now_native_and_wasm() {
    for kind in [Kind::Native, Kind::Wasm] {
        let server = start(kind, &[]);
        let mut c: Client = server.connect();
        for i in 0..20 {
            let ttl = if i % 2 == 0 { 1 } else { 0 };
            let req = format!("set c{i} 0 {ttl} 1\r\nx\r\n");
            assert_eq!(c.call(req.as_bytes(), b"\r\n"), b"STORED\r\n");
        }
        std::thread::sleep(Duration::from_millis(2200));
        let before = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        assert_eq!(c.call(b"lru_crawler crawl all\r\n", b"\r\n"), b"OK\r\n");
        let after = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        // The background sweep may have reclaimed some first; between
        // them, all ten are gone.
        assert_eq!(stat(&after, "curr_items"), 10, "{}", kind.name());
        let by_crawl = stat(&after, "crawler_reclaimed") - stat(&before, "crawler_reclaimed");
        assert_eq!(by_crawl, stat(&before, "curr_items") - 10);
        assert!(
            stat(&after, "crawler_items_checked") >= stat(&before, "crawler_items_checked") + 10
        );
        // (The background sweep counts its passes as crawler starts too.)
        assert!(stat(&after, "lru_crawler_starts") > stat(&before, "lru_crawler_starts"));
        assert_eq!(stat(&after, "lru_crawler_running"), 0);
    }
}
