//! Operator flags end to end, against the wasm and the native server (and
//! memcached where the behaviour is compared): `-A` with `shutdown` and
//! `shutdown graceful` (exit codes, the `-e` snapshot), `-o idle_timeout`
//! (idle clients closed, `idle_kicks`, `stats settings`), the crawler's
//! `-o` suboptions (`stats settings` compared with memcached's), memcached's
//! error and exit code for a bad `-o`, exit 71 on a taken port, and
//! `stats settings` for `-C`, `-A`, `-X`. The replies themselves are in
//! conformance/operator.cases.

use std::process::Command;
use std::time::{Duration, Instant};

use wasmcached_tests::{bin_dir, parse_stats, start, Kind, Server};

const SERVERS: [Kind; 2] = [Kind::Native, Kind::Wasm];

/// Waits for the server to exit on its own; its exit code.
fn exit_code(mut server: Server, within: Duration) -> Option<i32> {
    server.wait_exit(within).and_then(|s| s.code())
}

fn settings(server: &Server) -> Vec<(String, String)> {
    let mut c = server.connect();
    parse_stats(&c.call(b"stats settings\r\n", b"END\r\n"))
}

fn setting<'a>(s: &'a [(String, String)], name: &str) -> &'a str {
    s.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn shutdown_stops_the_server_with_exit_0() {
    for kind in [Kind::Native, Kind::Wasm, Kind::Memcached] {
        let server = start(kind, &["-A"]);
        let mut c = server.connect();
        c.send(b"shutdown\r\n");
        assert!(c.closed_within(Duration::from_secs(5)), "{}", kind.name());
        assert_eq!(
            exit_code(server, Duration::from_secs(10)),
            Some(0),
            "{}",
            kind.name()
        );
    }
}

#[test]
fn shutdown_graceful_writes_the_snapshot() {
    for kind in SERVERS {
        let dir = std::env::temp_dir().join(format!(
            "wasmcached-shutdown-{kind:?}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let snap = dir.join("snap");
        let e = ["-A", "-e", snap.to_str().unwrap()];
        let server = start(kind, &e);
        assert_eq!(
            setting(&settings(&server), "memory_file"),
            snap.to_str().unwrap()
        );
        let mut c = server.connect();
        c.call(b"set k 7 0 5\r\nhello\r\n", b"STORED\r\n");
        let before = c.call(b"gets k\r\n", b"END\r\n");
        c.send(b"shutdown graceful\r\n");
        assert!(c.closed_within(Duration::from_secs(5)));
        assert_eq!(
            exit_code(server, Duration::from_secs(20)),
            Some(0),
            "{}",
            kind.name()
        );
        assert!(snap.exists(), "{}: no snapshot", kind.name());
        let server = start(kind, &e);
        let mut c = server.connect();
        assert_eq!(c.call(b"gets k\r\n", b"END\r\n"), before, "{}", kind.name());
        // A plain shutdown writes nothing.
        c.send(b"shutdown\r\n");
        assert_eq!(exit_code(server, Duration::from_secs(20)), Some(0));
        assert!(!snap.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn idle_clients_are_closed() {
    for kind in SERVERS {
        let server = start(kind, &["-o", "idle_timeout=1"]);
        let s = settings(&server);
        assert_eq!(setting(&s, "idle_timeout"), "1");
        let mut idle = server.connect();
        let t = Instant::now();
        assert!(
            idle.closed_within(Duration::from_secs(5)),
            "{}",
            kind.name()
        );
        // memcached checks about once a second: closed after 1-3 s.
        let after = t.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "{}: {after:?}",
            kind.name()
        );
        let mut c = server.connect();
        let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        // The count is sampled every 100 ms; the closed one is in by now.
        std::thread::sleep(Duration::from_millis(200));
        let stats_again = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        let kicks = wasmcached_tests::stat(&stats_again, "idle_kicks");
        assert!(kicks >= 1, "{}: {stats:?}", kind.name());
    }
}

#[test]
fn settings_report_the_flags() {
    for kind in [Kind::Native, Kind::Wasm, Kind::Memcached] {
        let plain = start(kind, &[]);
        let s = settings(&plain);
        assert_eq!(
            (
                setting(&s, "cas_enabled"),
                setting(&s, "shutdown_command"),
                setting(&s, "idle_timeout")
            ),
            ("yes", "no", "0"),
            "{}",
            kind.name()
        );
        let mut c = plain.connect();
        let stats = String::from_utf8(c.call(b"stats\r\n", b"END\r\n")).unwrap();
        assert!(!stats.contains("idle_kicks"), "{}", kind.name());
        let flagged = start(kind, &["-C", "-A", "-X", "-o", "idle_timeout=30"]);
        let s = settings(&flagged);
        assert_eq!(
            (
                setting(&s, "cas_enabled"),
                setting(&s, "shutdown_command"),
                setting(&s, "dump_enabled"),
                setting(&s, "idle_timeout")
            ),
            ("no", "yes", "no", "30"),
            "{}",
            kind.name()
        );
    }
}

/// The `stats settings` lines of the LRU crawler, as sent.
fn crawler_lines(server: &Server) -> Vec<String> {
    let mut c = server.connect();
    let reply = c.call(b"stats settings\r\n", b"END\r\n");
    String::from_utf8_lossy(&reply)
        .split("\r\n")
        .filter(|l| l.starts_with("STAT lru_crawler"))
        .map(str::to_string)
        .collect()
}

#[test]
fn crawler_suboptions_set_what_memcached_reports() {
    for o in [
        None,
        Some("no_lru_crawler"),
        Some("no_lru_crawler,lru_crawler=5"),
        Some("lru_crawler_sleep=1000000,lru_crawler_tocrawl=4294967297"),
        Some("no_lru_crawler,lru_crawler_sleep=50x,lru_crawler_tocrawl= 7"),
        Some("lru_crawler_sleep=,lru_crawler_tocrawl=18446744073709551615"),
    ] {
        let args: Vec<&str> = o.map_or(vec![], |o| vec!["-o", o]);
        let memcached = crawler_lines(&start(Kind::Memcached, &args));
        assert_eq!(memcached.len(), 3, "memcached -o {o:?}: {memcached:?}");
        for kind in SERVERS {
            let server = start(kind, &args);
            assert_eq!(
                crawler_lines(&server),
                memcached,
                "{} -o {o:?}",
                kind.name()
            );
            // The setting is the crawler's: disabled, it refuses crawls.
            let mut c = server.connect();
            let crawl = c.call(b"lru_crawler crawl all\r\n", b"\r\n");
            let expected: &[u8] = if memcached[0].ends_with(" no") {
                b"CLIENT_ERROR lru crawler disabled\r\n"
            } else {
                b"OK\r\n"
            };
            assert_eq!(crawl, expected, "{} -o {o:?}", kind.name());
        }
    }
}

#[test]
fn bad_extended_options_are_memcached_errors() {
    // memcached's own suboptions that this server does not have are
    // refused the same way as unknown ones (memcached itself takes them).
    for (o, says, memcached_too) in [
        ("bogus", "Illegal suboption \"bogus\"", true),
        (
            "idle_timeout=5,bogus=1",
            "Illegal suboption \"bogus=1\"",
            true,
        ),
        (
            "idle_timeout",
            "Missing numeric argument for idle_timeout",
            true,
        ),
        (
            "lru_crawler_sleep=2000000",
            "LRU crawler sleep must be between 0 and 1 second",
            true,
        ),
        (
            "lru_crawler_sleep=-1",
            "LRU crawler sleep must be between 0 and 1 second",
            true,
        ),
        ("lru_crawler_sleep", "Missing lru_crawler_sleep value", true),
        (
            "lru_crawler_tocrawl=7x",
            "lru_crawler_tocrawl takes a numeric 32bit value",
            true,
        ),
        (
            "lru_crawler_tocrawl=-1",
            "lru_crawler_tocrawl takes a numeric 32bit value",
            true,
        ),
        (
            "lru_crawler_tocrawl=18446744073709551616",
            "lru_crawler_tocrawl takes a numeric 32bit value",
            true,
        ),
        (
            "lru_crawler_tocrawl",
            "Missing lru_crawler_tocrawl value",
            true,
        ),
        (
            "no_lru_crawler,lru_crawler_sleep=5,bogus",
            "Illegal suboption \"bogus\"",
            true,
        ),
        (
            "idle_timeout=5,hashpower=20",
            "Illegal suboption \"hashpower=20\"",
            false,
        ),
    ] {
        for bin in ["memcached", "wasmcached-server", "wasmcached"] {
            if bin == "memcached" && !memcached_too {
                continue;
            }
            let path = if bin == "memcached" {
                bin.into()
            } else {
                bin_dir().join(bin)
            };
            let out = Command::new(&path)
                .args(["-p", "0"])
                .args(if bin == "memcached" {
                    &["-U", "0", "-u", "root"][..]
                } else {
                    &[]
                })
                .args(["-o", o])
                .output()
                .expect("run server");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{bin} -o {o}: {err}");
            assert_eq!(err.trim_end(), says, "{bin} -o {o}");
        }
    }
}

/// SIGHUP reloads a `-Y` file where there is one and otherwise does
/// nothing: memcached keeps serving, and so must both servers.
#[test]
fn sighup_does_not_stop_the_server() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let mut server = start(kind, &[]);
        let mut c = server.connect();
        assert_eq!(c.call(b"set k 0 0 1\r\nv\r\n", b"\r\n"), b"STORED\r\n");
        // SAFETY: signalling the child this test started.
        unsafe {
            libc::kill(server.pid() as libc::pid_t, libc::SIGHUP);
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            server.exit_status().is_none(),
            "{}: exited on SIGHUP",
            kind.name()
        );
        assert_eq!(
            c.call(b"get k\r\n", b"END\r\n"),
            b"VALUE k 0 1\r\nv\r\nEND\r\n",
            "{}",
            kind.name()
        );
    }
}

/// A port another process listens on is memcached's EX_OSERR, 71, from
/// every server; under the runner that is the guest's own exit code.
#[test]
fn a_taken_port_exits_71() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for (bin, extra) in [
        ("memcached".into(), &["-u", "root", "-U", "0"][..]),
        (bin_dir().join("wasmcached-server"), &[][..]),
        (bin_dir().join("wasmcached"), &[][..]),
    ] {
        let out = Command::new(&bin)
            .args(["-p", &port, "-l", "127.0.0.1"])
            .args(extra)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(71), "{}: {err}", bin.display());
        assert!(err.contains("in use"), "{}: {err}", bin.display());
    }
}
