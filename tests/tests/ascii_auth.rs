//! `-Y FILE` (ASCII authentication) end to end, against memcached 1.6.18,
//! the native server and the wasm server under the runner: the replies to
//! logging in and to everything before it, byte for byte with memcached;
//! pymemcache logging in as memcached's documentation describes and then
//! working normally; and SIGHUP reloading the file (natively the server
//! re-reads it, under the runner the runner does and hands the guest the
//! content over its standard input).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wasmcached_tests::{run_python, start_logging, Client, Kind, Server};

const KINDS: [Kind; 3] = [Kind::Memcached, Kind::Native, Kind::Wasm];

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "wasmcached-ascii-auth-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn start_with_users(kind: Kind, dir: &Path, users: &str) -> (Server, PathBuf, PathBuf) {
    let file = dir.join("users");
    std::fs::write(&file, users).expect("write users");
    let log = dir.join(format!("{kind:?}.log"));
    let server = start_logging(kind, &["-Y", file.to_str().expect("utf-8 path")], &log);
    (server, file, log)
}

/// The `set` that logs in as `user` with `pass`.
fn login(user: &str, pass: &str) -> Vec<u8> {
    let value = format!("{user} {pass}");
    format!("set auth 0 0 {}\r\n{value}\r\n", value.len()).into_bytes()
}

/// Sends `req` and reads the one-line reply.
fn ask(c: &mut Client, req: &[u8]) -> Vec<u8> {
    c.call(req, b"\r\n")
}

/// Each request's reply on one connection, read until it goes quiet.
fn exchange(server: &Server, requests: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut c = server.connect();
    requests
        .iter()
        .map(|r| {
            c.send(r);
            c.read_n(64 * 1024, Duration::from_millis(300))
        })
        .collect()
}

#[test]
fn replies_match_memcached() {
    let requests: Vec<&[u8]> = vec![
        b"version\r\n",
        b"get a b c\r\n",
        // Two refusals in one read: memcached sends only the last.
        b"mn\r\nget a\r\n",
        b"set a 0 0 11\r\nalice wrong\r\n",
        b"set a 0 0 5\r\nalice\r\n",
        b"set a 0 0 3\r\nabcde",
        // A failed login and a good one in one read: the last reply only.
        b"set a 0 0 6\r\nbob pa\r\nset a 0 0 9\r\nbob pa:ss\r\n",
        b"get auth a\r\n",
        b"set k 0 0 1 noreply\r\nv\r\nget k\r\n",
    ];
    let dir = scratch("replies");
    let users = "alice:wonderland\nbob:pa:ss\n";
    let mut replies = Vec::new();
    for kind in KINDS {
        let (server, file, _) = start_with_users(kind, &dir, users);
        let mut got = exchange(&server, &requests);
        let mut c = server.connect();
        c.send(&login("alice", "wonderland"));
        c.read_n(8, Duration::from_secs(5));
        let settings = c.call(b"stats settings\r\n", b"END\r\n");
        let want = format!("STAT auth_enabled_ascii {}\r\n", file.display());
        assert!(
            settings.windows(want.len()).any(|w| w == want.as_bytes()),
            "{}: stats settings lacks {want:?}",
            kind.name()
        );
        got.push(
            c.call(b"stats\r\n", b"END\r\n")
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"STAT auth_"))
                .flat_map(|l| [l, b"\n"].concat())
                .collect(),
        );
        replies.push((kind, got));
    }
    let (_, want) = &replies[0];
    assert_eq!(want[2], b"CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(want[6], b"STORED\r\n");
    for (kind, got) in &replies[1..] {
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w),
                "{}: reply {i} differs from memcached's",
                kind.name()
            );
        }
    }
}

fn pymemcache_logs_in(kind: Kind) {
    let dir = scratch("pymemcache");
    let (server, _, _) = start_with_users(kind, &dir, "alice:wonderland\n");
    let args = [server.port.to_string(), "alice".into(), "wonderland".into()];
    let text = run_python("ascii_auth.py", &args, kind.name());
    assert!(text.contains("17 passed, 0 failed"));
}

#[test]
fn pymemcache_logs_in_reference_memcached() {
    pymemcache_logs_in(Kind::Memcached);
}

#[test]
fn pymemcache_logs_in_native() {
    pymemcache_logs_in(Kind::Native);
}

#[test]
fn pymemcache_logs_in_wasm() {
    pymemcache_logs_in(Kind::Wasm);
}

/// Logs in on a new connection until the reply is `want` (a reload is
/// applied a moment after the signal: at the next loop pass, or, in
/// memcached, at its next clock tick).
fn wait_for_login(server: &Server, user: &str, pass: &str, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = server.connect();
        let got = ask(&mut c, &login(user, pass));
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: logging in as {user} still gets {:?}",
            server.kind.name(),
            String::from_utf8_lossy(&got)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hup(server: &Server) {
    // SAFETY: sending a signal to the test's own child process.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGHUP);
    }
}

/// Waits until the server handled a SIGHUP whose file it refused: ours
/// log that they keep the previous users; memcached logs nothing, so its
/// next clock tick (once a second) is waited out.
fn wait_for_refused_reload(server: &Server, log: &Path, seen: usize) {
    if server.kind == Kind::Memcached {
        std::thread::sleep(Duration::from_millis(2200));
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("keeping the previous users").count() > seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no refused reload logged:\n{text}",
            server.kind.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup_reloads(kind: Kind) {
    const STORED: &[u8] = b"STORED\r\n";
    const FAILED: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
    let dir = scratch("reload");
    let (server, file, log) = start_with_users(kind, &dir, "alice:wonderland\n");
    let mut old = server.connect();
    assert_eq!(ask(&mut old, &login("alice", "wonderland")), STORED);
    assert_eq!(ask(&mut old, b"set k 0 0 2\r\nv1\r\n"), STORED);

    // A new file: the new user gets in, the old one no longer does, and
    // the connection that logged in as the old one stays logged in.
    std::fs::write(&file, "carol:newpass\r\ndave:x\r\n").expect("rewrite users");
    hup(&server);
    wait_for_login(&server, "carol", "newpass", STORED);
    wait_for_login(&server, "dave", "x", STORED);
    let mut c = server.connect();
    assert_eq!(ask(&mut c, &login("alice", "wonderland")), FAILED);
    assert_eq!(
        old.call(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 2\r\nv1\r\nEND\r\n"
    );

    // A malformed file, then a missing one: the users stay as they were.
    for (n, content) in [Some("eve-without-a-colon\n"), None]
        .into_iter()
        .enumerate()
    {
        match content {
            Some(text) => std::fs::write(&file, text).expect("rewrite users"),
            None => std::fs::remove_file(&file).expect("remove users"),
        }
        hup(&server);
        wait_for_refused_reload(&server, &log, n);
        let mut c = server.connect();
        assert_eq!(
            ask(&mut c, &login("carol", "newpass")),
            STORED,
            "{}",
            kind.name()
        );
        let mut c = server.connect();
        assert_eq!(ask(&mut c, &login("eve-without-a-colon", "x")), FAILED);
        assert_eq!(ask(&mut old, b"set k 0 0 2\r\nv2\r\n"), STORED);
    }
    assert_eq!(ask(&mut old, b"mn\r\n"), b"MN\r\n");
}

#[test]
fn sighup_reloads_reference_memcached() {
    sighup_reloads(Kind::Memcached);
}

#[test]
fn sighup_reloads_native() {
    sighup_reloads(Kind::Native);
}

#[test]
fn sighup_reloads_wasm() {
    sighup_reloads(Kind::Wasm);
}
