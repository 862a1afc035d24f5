//! `watch` end to end, against the native server and the wasm runner, with
//! memcached 1.6.18 run on the same script to show the expected lines are
//! its own: the line formats of `fetchers`, `mutations` and `evictions`,
//! the replies (`OK`, `ERROR`, `-W`, the watcher limit, pipelining), a
//! watcher that never reads (bounded memory, skipped lines counted), and
//! events from connections on other workers (native `-t 4`), and the
//! `connevents` lines for accepted and closed clients.

use std::time::{Duration, Instant};

use wasmcached_tests::{connect_with_rcvbuf, parse_stats, rss_bytes, start, stat, Client, Kind};

const SERVERS: [Kind; 2] = [Kind::Native, Kind::Wasm];

/// What memcached 1.6.18 logged for [`script`] under `watch fetchers
/// mutations evictions`, with `ts`, `gid` and `cfd` taken out (see
/// [`normalise`]). The `too_large` line's `clsid` is memcached's
/// descriptor byte read as a class (its arguments are shifted there).
const EXPECTED: &str = "\
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_store key=foo status=stored cmd=set ttl=100 clsid=1 cfd=N size=3
type=item_get key=foo status=found clsid=1 cfd=N size=3
type=item_get key=nope status=not_found clsid=0 cfd=N size=0
type=item_get key=foo status=found clsid=1 cfd=N size=3
type=item_get key=foo status=found clsid=1 cfd=N size=3
type=item_store key=foo status=not_stored cmd=add ttl=0 clsid=1 cfd=N size=1
type=item_get key=foo status=found clsid=1 cfd=N size=3
type=item_store key=foo status=stored cmd=append ttl=100 clsid=1 cfd=N size=4
type=item_get key=foo status=found clsid=1 cfd=N size=4
type=item_store key=foo status=stored cmd=prepend ttl=100 clsid=1 cfd=N size=5
type=item_get key=foo status=found clsid=1 cfd=N size=5
type=item_store key=foo status=stored cmd=replace ttl=0 clsid=1 cfd=N size=1
type=item_get key=foo status=found clsid=1 cfd=N size=1
type=item_store key=foo status=exists cmd=cas ttl=0 clsid=1 cfd=N size=1
type=item_get key=nope status=not_found clsid=0 cfd=N size=0
type=item_store key=nope status=not_found cmd=cas ttl=0 clsid=1 cfd=N size=1
type=item_get key=foo status=found clsid=1 cfd=N size=1
type=item_get key=foo status=found clsid=1 cfd=N size=1
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_get key=foo status=not_found clsid=0 cfd=N size=0
type=item_store key=foo status=stored cmd=set ttl=0 clsid=1 cfd=N size=2
type=item_get key=foo status=found clsid=1 cfd=N size=2
type=item_get key=foo status=found clsid=1 cfd=N size=2
type=item_get key=n status=not_found clsid=0 cfd=N size=0
type=item_store key=n status=stored cmd=set ttl=0 clsid=1 cfd=N size=1
type=item_get key=n status=found clsid=1 cfd=N size=1
type=item_get key=n status=found clsid=1 cfd=N size=1
type=item_get key=a%2Fb%25c~%3A%C3%A9 status=not_found clsid=0 cfd=N size=0
type=item_store key=a%2Fb%25c~%3A%C3%A9 status=stored cmd=set ttl=4294967235 clsid=1 cfd=N size=1
type=item_get key=a%2Fb%25c~%3A%C3%A9 status=expired clsid=0 cfd=N size=0
type=item_store key=big status=too_large cmd=set ttl=0 clsid=N cfd=N size=0
type=item_get key=big status=not_found clsid=0 cfd=N size=0
";

/// Every store, fetch and miss shape: text and meta commands, an append
/// (joined size, old TTL), a negative TTL (expired at once), a key that
/// needs URI encoding, a value over `-I`.
fn script() -> Vec<u8> {
    let mut s = b"set foo 5 100 3\r\nbar\r\nget foo\r\nget nope\r\ngets foo\r\n\
add foo 0 0 1\r\nx\r\nappend foo 0 0 1\r\nx\r\nprepend foo 0 0 1\r\nx\r\n\
replace foo 0 0 1\r\nx\r\ncas foo 0 0 1 999\r\nx\r\ncas nope 0 0 1 1\r\nx\r\n\
incr foo 1\r\ndelete foo\r\ndelete foo\r\ntouch foo 1\r\ngat 1 foo\r\n\
mg foo v\r\nms foo 2\r\nhi\r\nmg foo v\r\nmd foo\r\n\
set n 0 0 1\r\n5\r\nincr n 1\r\ndecr n 1\r\n"
        .to_vec();
    s.extend_from_slice("set a/b%c~:é 0 -1 1\r\nx\r\nget a/b%c~:é\r\n".as_bytes());
    s.extend_from_slice(b"set big 0 0 2000000\r\n");
    s.extend(std::iter::repeat_n(b'y', 2_000_000));
    s.extend_from_slice(b"\r\nversion\r\n");
    s
}

/// Takes out what varies between runs and servers: the `ts=<sec>.<usec>
/// gid=<n> ` head (checked for shape here: digits, and gids rising), every
/// `cfd` value, and the `clsid` of `too_large` lines (a descriptor byte in
/// memcached).
fn normalise(raw: &str) -> String {
    let mut out = String::new();
    let mut last_gid = 0u64;
    for line in raw.lines() {
        let mut words = line.splitn(3, ' ');
        let (ts, gid, rest) = (words.next(), words.next(), words.next());
        let ts = ts.and_then(|t| t.strip_prefix("ts=")).expect("ts");
        let (secs, micros) = ts.split_once('.').expect("ts has a dot");
        assert!(secs.parse::<u64>().is_ok() && micros.parse::<u32>().is_ok_and(|u| u < 1_000_000));
        let gid: u64 = gid
            .and_then(|g| g.strip_prefix("gid="))
            .expect("gid")
            .parse()
            .expect("gid");
        assert!(gid > last_gid, "gids rise: {raw}");
        last_gid = gid;
        let rest = rest.expect("body");
        let mut fields: Vec<String> = rest.split(' ').map(str::to_string).collect();
        let too_large = rest.contains("status=too_large");
        for f in &mut fields {
            if f.starts_with("cfd=") || (too_large && f.starts_with("clsid=")) {
                let name = f.split('=').next().unwrap_or_default().to_string();
                *f = format!("{name}=N");
            }
        }
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

/// Reads from a watcher until `lines` lines arrived (or 10 s passed).
fn read_lines(w: &mut Client, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.iter().filter(|&&b| b == b'\n').count() < lines && Instant::now() < deadline {
        got.extend(w.read_n(1, Duration::from_millis(200)));
    }
    // Whole lines, and no more than asked for.
    let end = got
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    got.truncate(end);
    String::from_utf8(got).expect("log lines are ASCII")
}

fn watcher(port: u16, args: &str) -> Client {
    let mut w = Client::connect(port);
    assert_eq!(
        w.call(format!("watch {args}\r\n").as_bytes(), b"\r\n"),
        b"OK\r\n"
    );
    w
}

#[test]
fn fetch_and_store_lines_are_memcacheds() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let server = start(kind, &[]);
        let mut w = watcher(server.port, "fetchers mutations evictions");
        let mut c = server.connect();
        c.send(&script());
        let reply = c.read_until(b"VERSION 1.6.18\r\n", Duration::from_secs(10));
        assert!(reply.ends_with(b"VERSION 1.6.18\r\n"), "{}", kind.name());
        let raw = read_lines(&mut w, EXPECTED.lines().count());
        assert_eq!(normalise(&raw), EXPECTED, "{}", kind.name());
    }
}

#[test]
fn eviction_lines_have_memcacheds_fields() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let server = start(kind, &["-m", "2"]);
        let mut w = watcher(server.port, "evictions");
        let mut c = server.connect();
        let value = vec![b'x'; 900];
        let mut batch = Vec::new();
        for i in 0..5000 {
            batch.extend_from_slice(format!("set k{i} 0 0 900 noreply\r\n").as_bytes());
            batch.extend_from_slice(&value);
            batch.extend_from_slice(b"\r\n");
        }
        c.send(&batch);
        assert_eq!(c.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
        let raw = read_lines(&mut w, 100);
        let lines = normalise(&raw);
        assert_eq!(lines.lines().count(), 100, "{}", kind.name());
        for line in lines.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 7, "{}: {line}", kind.name());
            assert_eq!(f[0], "type=eviction");
            assert!(f[1].starts_with("key=k"));
            assert!(f[2] == "fetch=no", "{line}");
            assert_eq!(f[3], "ttl=-1");
            assert!(f[4]
                .strip_prefix("la=")
                .is_some_and(|v| v.parse::<u32>().is_ok()));
            assert_eq!(f[5], "clsid=12", "{}: {line}", kind.name());
            assert_eq!(f[6], "size=900");
        }
    }
}

#[test]
fn replies_and_refusals_are_memcacheds() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let server = start(kind, &[]);
        let name = kind.name();
        let mut c = server.connect();
        // Unknown classes (1.6.20's `deletions` among them) are `ERROR`
        // and the connection stays a normal one.
        for bad in [
            "watch bogus",
            "watch fetchers bogus",
            "watch deletions",
            "watch FETCHERS",
        ] {
            let got = c.call(
                format!("{bad}\r\nversion\r\n").as_bytes(),
                b"VERSION 1.6.18\r\n",
            );
            assert_eq!(got, b"ERROR\r\nVERSION 1.6.18\r\n", "{name}: {bad}");
        }
        // `noreply` is an unknown class whose ERROR is silenced.
        let got = c.call(b"watch noreply\r\nversion\r\n", b"VERSION 1.6.18\r\n");
        assert_eq!(got, b"VERSION 1.6.18\r\n", "{name}");
        // Replies to requests pipelined before `watch` are sent; what
        // follows `watch` is never run.
        let mut w = server.connect();
        w.send(b"get a\r\nwatch\r\nversion\r\nget b\r\n");
        assert_eq!(
            w.read_n(9, Duration::from_secs(5)),
            b"END\r\nOK\r\n",
            "{name}"
        );
        w.send(b"version\r\n");
        assert_eq!(c.call(b"get c\r\n", b"END\r\n"), b"END\r\n");
        let line = read_lines(&mut w, 1);
        assert_eq!(
            normalise(&line),
            "type=item_get key=c status=not_found clsid=0 cfd=N size=0\n",
            "{name}: no argument means fetchers, and nothing else is answered"
        );
        // Twenty watchers at most.
        let mut more: Vec<Client> = (1..20).map(|_| watcher(server.port, "evictions")).collect();
        let mut extra = server.connect();
        assert_eq!(
            extra.call(b"watch\r\n", b"\r\n"),
            b"WATCHER_TOO_MANY log watcher limit reached\r\n",
            "{name}"
        );
        assert_eq!(extra.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
        more.clear();
    }
}

#[test]
fn dash_w_refuses_watch() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let server = start(kind, &["-W"]);
        let mut c = server.connect();
        for cmd in ["watch", "watch fetchers", "watch bogus"] {
            let got = c.call(format!("{cmd}\r\n").as_bytes(), b"\r\n");
            assert_eq!(
                got,
                b"CLIENT_ERROR watch commands not allowed\r\n",
                "{}",
                kind.name()
            );
        }
        assert_eq!(c.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
    }
}

#[test]
fn a_watcher_that_never_reads_holds_bounded_memory() {
    for kind in SERVERS {
        let server = start(kind, &[]);
        let name = kind.name();
        let mut w = connect_with_rcvbuf(server.port, 4096).expect("connect");
        std::io::Write::write_all(&mut w, b"watch fetchers\r\n").expect("send");
        let mut c = server.connect();
        assert_eq!(c.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
        let before = rss_bytes(server.pid());
        // 200,000 lookups of a 200-byte key: about 60 MB of log lines.
        let key = "k".repeat(200);
        let batch = format!("get {key}\r\n").repeat(1000);
        for _ in 0..200 {
            c.send(batch.as_bytes());
            let replies = c.read_n(5 * 1000, Duration::from_secs(10));
            assert_eq!(replies.len(), 5 * 1000, "{name}");
        }
        let after = rss_bytes(server.pid());
        let grown = after.saturating_sub(before);
        assert!(grown < 24 << 20, "{name}: grew {grown} bytes");
        let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        assert!(stat(&stats, "log_watcher_skipped") > 0, "{name}");
        assert!(stat(&stats, "log_watcher_sent") > 0, "{name}");
        assert_eq!(stat(&stats, "log_watchers"), 1, "{name}");
        drop(w);
    }
}

#[test]
fn events_on_other_workers_reach_the_watcher() {
    let server = start(Kind::Native, &["-t", "4"]);
    let mut w = watcher(server.port, "fetchers");
    // Connections go to the least loaded worker: eight clients cover all
    // four, three of them not the watcher's.
    let mut clients: Vec<Client> = (0..8).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.call(format!("get key{i}\r\n").as_bytes(), b"END\r\n"),
            b"END\r\n"
        );
    }
    let lines = normalise(&read_lines(&mut w, 8));
    for i in 0..8 {
        let want = format!("type=item_get key=key{i} status=not_found clsid=0 cfd=N size=0\n");
        assert!(lines.contains(&want), "missing key{i}: {lines}");
    }
    assert_eq!(lines.lines().count(), 8);
    let stats = parse_stats(&clients[0].call(b"stats\r\n", b"END\r\n"));
    assert_eq!(stat(&stats, "log_watchers"), 1);
    assert_eq!(stat(&stats, "log_watcher_sent"), 8);
}

#[test]
fn connevents_report_accepted_and_closed_clients_as_memcached_does() {
    for kind in [Kind::Memcached, Kind::Native, Kind::Wasm] {
        let server = start(kind, &[]);
        let name = kind.name();
        // The start-up check's connection closes on its own time; its
        // close line must not reach the watcher.
        std::thread::sleep(Duration::from_millis(300));
        let mut w = watcher(server.port, "connevents");
        let mut c = server.connect();
        assert_eq!(c.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
        let port = c.sock.local_addr().expect("local addr").port();
        let line = normalise(&read_lines(&mut w, 1));
        assert_eq!(
            line,
            format!("type=conn_new rip=127.0.0.1 rport={port} transport=tcp cfd=N\n"),
            "{name}"
        );
        // `quit` and a client hanging up are normal closes. Each line is
        // read before the next event: memcached's logger thread gathers
        // its workers' lines in turns, not in gid order.
        c.send(b"quit\r\n");
        assert!(c.closed_within(Duration::from_secs(5)), "{name}");
        let closed = normalise(&read_lines(&mut w, 1));
        let mut d = server.connect();
        assert_eq!(d.call(b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
        let d_port = d.sock.local_addr().expect("local addr").port();
        let opened = normalise(&read_lines(&mut w, 1));
        drop(d);
        let lines = closed + &opened + &normalise(&read_lines(&mut w, 1));
        assert_eq!(
            lines,
            format!(
                "type=conn_close rip=127.0.0.1 rport={port} transport=tcp reason=normal cfd=N\n\
                 type=conn_new rip=127.0.0.1 rport={d_port} transport=tcp cfd=N\n\
                 type=conn_close rip=127.0.0.1 rport={d_port} transport=tcp reason=normal cfd=N\n"
            ),
            "{name}"
        );
    }
}
