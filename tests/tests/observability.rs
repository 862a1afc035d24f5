//! `stats conns`, `stats detail` (with `-D`) and `stats topkeys` end to
//! end, against the native server (`-t 1` and `-t 4`), the wasm server
//! under the runner, and memcached 1.6.18 as the reference: the same
//! connections and scripts give the same lines, once descriptors, ports
//! and seconds are taken out. `stats topkeys` is not memcached's (it
//! answers `ERROR`), so its checks are behaviour with generous bounds.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmcached_tests::{parse_stats, rss_bytes, start, venv_python, Client, Kind, Server};

/// The servers under test, each with the options it runs with.
const OURS: [(Kind, &[&str]); 3] = [
    (Kind::Native, &["-t", "1"]),
    (Kind::Native, &["-t", "4"]),
    (Kind::Wasm, &[]),
];

fn local_port(c: &Client) -> u16 {
    c.sock.local_addr().expect("local addr").port()
}

/// `stats conns` with what varies taken out: each socket named by its role
/// (the listener, or which of `clients` it is, found by the client's local
/// port), ports of the server as `PORT`, seconds as `N`. Descriptors must
/// be numbers, listed in rising order; each socket's lines stay in their
/// order, the sockets are sorted by role (which descriptor a client gets
/// depends on when the server closed an earlier one).
fn normalise_conns(raw: &[u8], server_port: u16, clients: &[(&str, u16)]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut roles: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut last_fd = None;
    for line in text.lines() {
        if line == "END" {
            break;
        }
        let rest = line.strip_prefix("STAT ").expect("STAT line");
        let (name, value) = rest.split_once(' ').expect("name and value");
        let (fd, field) = name.split_once(':').expect("fd:field");
        let fd: u64 = fd.parse().expect("numeric descriptor");
        if last_fd != Some(fd) {
            assert!(last_fd.is_none_or(|l| l < fd), "descriptors rise: {text}");
            last_fd = Some(fd);
        }
        let value = match field {
            "addr" => {
                let port: u16 = value
                    .strip_prefix("tcp:127.0.0.1:")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("addr {value}"));
                let role = if port == server_port {
                    "listener".to_string()
                } else {
                    clients
                        .iter()
                        .find(|(_, p)| *p == port)
                        .map_or_else(|| format!("other:{port}"), |(r, _)| r.to_string())
                };
                roles.insert(fd, role.clone());
                format!("tcp:127.0.0.1:{role}")
            }
            "listen_addr" => {
                assert_eq!(value, format!("tcp:127.0.0.1:{server_port}"));
                "tcp:127.0.0.1:PORT".to_string()
            }
            "secs_since_last_cmd" => {
                let secs: u64 = value.parse().expect("seconds");
                assert!(secs < 60, "{line}");
                "N".to_string()
            }
            _ => value.to_string(),
        };
        let role = roles.get(&fd).cloned().unwrap_or_else(|| format!("fd{fd}"));
        out.push((role.clone(), format!("{role}:{field} {value}")));
    }
    // A stable sort by role keeps each socket's lines in order.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, l)| l).collect()
}

/// Opens an idle client (one command answered), a client stopped in the
/// middle of a value, and the one asking; asks `stats conns` until the
/// table settles (the connection `start` used to check readiness is gone,
/// the partial value has been read), then returns the normalised lines.
fn conns_snapshot(server: &Server) -> Vec<String> {
    let mut idle = server.connect();
    assert_eq!(idle.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
    let mut mid = server.connect();
    mid.send(b"set k 0 0 10\r\nabc");
    let mut asker = server.connect();
    let clients = [
        ("idle", local_port(&idle)),
        ("mid", local_port(&mid)),
        ("asker", local_port(&asker)),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw = asker.call(b"stats conns\r\n", b"END\r\n");
        let lines = normalise_conns(&raw, server.port, &clients);
        let settled = lines.iter().all(|l| !l.starts_with("other"))
            && lines.contains(&"mid:state conn_nread".to_string());
        if settled || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stats_conns_lists_what_memcached_lists() {
    let reference = {
        let server = start(Kind::Memcached, &[]);
        conns_snapshot(&server)
    };
    // memcached's own view, so the comparison below means something.
    for want in [
        "listener:state conn_listening",
        "idle:state conn_read",
        "mid:state conn_nread",
        "asker:state conn_parse_cmd",
    ] {
        assert!(
            reference.contains(&want.to_string()),
            "{want}: {reference:#?}"
        );
    }
    for (kind, opts) in OURS {
        let server = start(kind, opts);
        let got = conns_snapshot(&server);
        assert_eq!(got, reference, "{} {opts:?}", kind.name());
    }
}

/// Requests whose replies the detail checks compare with memcached's: the
/// counters of every kind of command, dumps in memcached's order, off,
/// reset.
const DETAIL_SCRIPT: &[&[u8]] = &[
    b"stats detail dump\r\n",
    b"stats detail on\r\n",
    b"get user:1 user:2 sess:9 plain\r\n",
    b"set user:1 0 0 1\r\nx\r\n",
    b"get user:1\r\n",
    b"gets user:1 cart:4\r\n",
    b"delete user:1\r\n",
    b"delete zz:1\r\n",
    b"mg mx:1 v\r\n",
    b"ms mx:1 1\r\nx\r\n",
    b"incr ctr:1 1\r\n",
    b"stats detail dump\r\n",
    b"stats detail off\r\n",
    b"get user:1\r\n",
    b"stats detail dump\r\n",
    b"stats reset\r\n",
    b"stats detail dump\r\n",
];

/// Requests for a server started with `-D /`: counting starts on, by the
/// first byte of the option.
const DELIMITER_SCRIPT: &[&[u8]] = &[
    b"get a/b a:b c/d/e\r\n",
    b"set c/x 0 0 1\r\nx\r\n",
    b"stats detail dump\r\n",
];

/// Each request's reply, read up to what ends it (`END`, or one line).
fn replies(server: &Server, script: &[&[u8]]) -> Vec<String> {
    let mut c = server.connect();
    script
        .iter()
        .map(|req| {
            c.send(req);
            let first = req.split(|&b| b == b' ').next().unwrap_or_default();
            let multi =
                req.starts_with(b"stats detail dump") || first == b"get" || first == b"gets";
            let end: &[u8] = if multi { b"END\r\n" } else { b"\r\n" };
            let got = c.read_until(end, Duration::from_secs(10));
            String::from_utf8_lossy(&got).into_owned()
        })
        .collect()
}

/// The `stats settings` lines `-D` shows.
fn detail_settings(server: &Server) -> Vec<(String, String)> {
    let mut c = server.connect();
    parse_stats(&c.call(b"stats settings\r\n", b"END\r\n"))
        .into_iter()
        .filter(|(k, _)| k == "detail_enabled" || k == "stat_key_prefix")
        .collect()
}

/// Runs a pymemcache snippet with `c` connected to `server`; its stdout.
fn pymemcache(server: &Server, body: &str) -> String {
    let script = format!(
        "import sys\nfrom pymemcache.client.base import Client\n\
         c = Client((\"127.0.0.1\", int(sys.argv[1])))\n{body}"
    );
    let out = Command::new(venv_python())
        .args(["-c", &script])
        .arg(server.port.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// pymemcache's `stats("detail", …)`: `on`/`off` and an empty dump come
/// back as `{}`; a dump with lines raises, as pymemcache reads only `STAT`
/// and `ITEM` lines (the first 32 bytes of the line are in the error).
const PYMEMCACHE_DETAIL: &str = r#"
print(c.stats("detail", "dump"))
print(c.stats("detail", "on"))
c.get("user:1")
c.get_many(["user:1", "x:1"])
try:
    print(c.stats("detail", "dump"))
except Exception as e:
    print(type(e).__name__, e)
print(c.stats("detail", "off"))
"#;

#[test]
fn stats_detail_matches_memcached() {
    let reference = {
        let server = start(Kind::Memcached, &[]);
        (
            replies(&server, DETAIL_SCRIPT),
            pymemcache(&server, PYMEMCACHE_DETAIL),
        )
    };
    assert!(
        reference.0[11].starts_with("PREFIX "),
        "memcached dumped {:?}",
        reference.0[11]
    );
    assert!(
        reference.1.contains("MemcacheUnknownError"),
        "{}",
        reference.1
    );
    let reference_d = {
        let server = start(Kind::Memcached, &["-D", "/"]);
        (replies(&server, DELIMITER_SCRIPT), detail_settings(&server))
    };
    assert!(
        reference_d.0[2].contains("PREFIX c get 1"),
        "{:?}",
        reference_d
    );
    for (kind, opts) in OURS {
        let name = format!("{} {opts:?}", kind.name());
        let server = start(kind, opts);
        assert_eq!(replies(&server, DETAIL_SCRIPT), reference.0, "{name}");
        assert_eq!(
            pymemcache(&server, PYMEMCACHE_DETAIL),
            reference.1,
            "{name}"
        );
        let mut with_d = opts.to_vec();
        with_d.extend(["-D", "/"]);
        let server = start(kind, &with_d);
        assert_eq!(
            replies(&server, DELIMITER_SCRIPT),
            reference_d.0,
            "{name} -D /"
        );
        assert_eq!(detail_settings(&server), reference_d.1, "{name} -D /");
    }
}

/// A deterministic permutation source for interleaving the load.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Fetches every key of `keys` with multigets of up to 100 keys, a few
/// lines in flight at a time.
fn fetch_all(c: &mut Client, keys: &[String]) {
    for batch in keys.chunks(1000) {
        let mut req = Vec::new();
        let mut lines = 0;
        for line in batch.chunks(100) {
            req.extend_from_slice(b"get");
            for k in line {
                req.push(b' ');
                req.extend_from_slice(k.as_bytes());
            }
            req.extend_from_slice(b"\r\n");
            lines += 1;
        }
        c.send(&req);
        let got = c.read_n(lines * 5, Duration::from_secs(20));
        assert_eq!(got, b"END\r\n".repeat(lines), "only misses");
    }
}

/// `stats topkeys` as (key, estimate) pairs in the order listed.
fn topkeys(c: &mut Client) -> Vec<(String, u64)> {
    parse_stats(&c.call(b"stats topkeys\r\n", b"END\r\n"))
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("key:")?.to_string(), v.parse().ok()?)))
        .collect()
}

#[test]
fn topkeys_lists_the_hottest_keys_first() {
    // memcached has no such command.
    {
        let server = start(Kind::Memcached, &[]);
        let mut c = server.connect();
        assert_eq!(c.call(b"stats topkeys\r\n", b"\r\n"), b"ERROR\r\n");
    }
    // A skewed load: three hot keys fetched 3,000, 1,200 and 450 times,
    // 4,000 cold keys once each, interleaved.
    let mut load: Vec<String> = Vec::new();
    for (key, n) in [("hot:0", 3000), ("hot:1", 1200), ("hot:2", 450)] {
        load.extend(std::iter::repeat_n(key.to_string(), n));
    }
    load.extend((0..4000).map(|i| format!("cold:{i}")));
    let mut rng = Lcg(7);
    for i in (1..load.len()).rev() {
        load.swap(i, rng.next() as usize % (i + 1));
    }
    for (kind, opts) in OURS {
        let name = format!("{} {opts:?}", kind.name());
        let server = start(kind, opts);
        let mut c = server.connect();
        fetch_all(&mut c, &load);
        let top = topkeys(&mut c);
        assert!(top.len() <= 64, "{name}: {} keys listed", top.len());
        let first: Vec<&str> = top.iter().take(3).map(|(k, _)| k.as_str()).collect();
        assert_eq!(first, ["hot:0", "hot:1", "hot:2"], "{name}: {top:?}");
        // Sampled estimates: within a factor of two of the truth.
        for ((_, est), truth) in top.iter().zip([3000u64, 1200, 450]) {
            assert!(
                (truth / 2..=truth * 2).contains(est),
                "{name}: {est} for {truth}: {top:?}"
            );
        }
        // pymemcache's stats() reads it like any other stats group.
        let py = pymemcache(
            &server,
            "s = c.stats(\"topkeys\")\nprint(s[b\"sample_every\"], list(s)[2].decode())\n",
        );
        assert_eq!(py.trim(), "16 key:hot:0", "{name}");
        // `stats reset` empties it.
        assert_eq!(c.call(b"stats reset\r\n", b"\r\n"), b"RESET\r\n");
        assert!(topkeys(&mut c).is_empty(), "{name}");
    }
}

#[test]
fn topkeys_memory_is_bounded_under_many_distinct_keys() {
    for (kind, opts) in OURS {
        let name = format!("{} {opts:?}", kind.name());
        let server = start(kind, opts);
        let mut c = server.connect();
        // A warm-up of the same shape, so that buffers reach their size.
        let warm: Vec<String> = (0..20_000).map(|i| format!("warm:{i:0>200}")).collect();
        fetch_all(&mut c, &warm);
        let before = rss_bytes(server.pid());
        // 300,000 distinct 200-byte keys: 60 MB of keys if all were kept.
        let keys: Vec<String> = (0..300_000).map(|i| format!("key:{i:0>196}")).collect();
        fetch_all(&mut c, &keys);
        let grown = rss_bytes(server.pid()).saturating_sub(before);
        assert!(grown < 16 << 20, "{name}: grew {grown} bytes");
        let top = topkeys(&mut c);
        assert!(top.len() <= 64, "{name}: {} keys listed", top.len());
        let stats = parse_stats(&c.call(b"stats topkeys\r\n", b"END\r\n"));
        let sampled: u64 = stats
            .iter()
            .find(|(k, _)| k == "sampled")
            .and_then(|(_, v)| v.parse().ok())
            .expect("sampled");
        // One in sixteen of 320,000 fetches, give or take.
        assert!((15_000..=25_000).contains(&sampled), "{name}: {sampled}");
    }
}
