//! Server behaviour over real sockets, for the wasm server under the runner
//! and the native build: concurrency, pipelining, large values, slow and
//! hostile clients, the connection limit, stats, and clean shutdown.

use std::time::{Duration, Instant};

use wasmcached_tests::{
    clock_ticks_per_sec, cpu_ticks, parse_stats, start, start_with_fd_limit, stat, Client, Kind,
};

const T: Duration = Duration::from_secs(10);

fn hundreds_of_connections(kind: Kind) {
    let server = start(kind, &[]);
    let mut clients: Vec<Client> = (0..300).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(
            format!(
                "set conn{i} 0 0 {}\r\nvalue-{i}\r\n",
                format!("value-{i}").len()
            )
            .as_bytes(),
        );
    }
    for c in clients.iter_mut() {
        assert_eq!(c.read_n(8, T), b"STORED\r\n");
    }
    for (i, c) in clients.iter_mut().enumerate().rev() {
        let v = format!("value-{i}");
        let want = format!(
            "VALUE conn{} 0 {}\r\n{v}\r\nEND\r\n",
            (i + 1) % 300,
            v.len()
        );
        let other = format!("value-{}", (i + 1) % 300);
        let want = want.replace(&v, &other).replace(
            &format!(" {}\r\n", v.len()),
            &format!(" {}\r\n", other.len()),
        );
        assert_eq!(
            String::from_utf8_lossy(&c.call(
                format!("get conn{}\r\n", (i + 1) % 300).as_bytes(),
                b"END\r\n"
            )),
            want
        );
    }
    let stats = parse_stats(&server.connect().call(b"stats\r\n", b"END\r\n"));
    assert_eq!(stat(&stats, "curr_connections"), 301);
    assert!(stat(&stats, "total_connections") >= 301);
}

fn pipelined_multiget(kind: Kind) {
    let server = start(kind, &[]);
    let mut c = server.connect();
    let mut req = Vec::new();
    for i in 0..100 {
        req.extend(format!("set key{i} 0 0 64 noreply\r\n{}\r\n", "x".repeat(64)).bytes());
    }
    let keys: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
    let get = format!("get {}\r\n", keys.join(" "));
    for _ in 0..50 {
        req.extend(get.bytes());
    }
    c.send(&req);
    let one: usize = keys
        .iter()
        .map(|k| format!("VALUE {k} 0 64\r\n").len() + 66)
        .sum::<usize>()
        + 5;
    let got = c.read_n(one * 50, T);
    assert_eq!(got.len(), one * 50);
    assert!(got.ends_with(b"END\r\n"));
    assert_eq!(got.windows(6).filter(|w| w == b"VALUE ").count(), 5000);
}

fn large_values(kind: Kind) {
    let server = start(kind, &[]);
    let mut c = server.connect();
    let big = vec![b'z'; 1_048_000];
    let mut req = format!("set big 0 0 {}\r\n", big.len()).into_bytes();
    req.extend(&big);
    req.extend(b"\r\n");
    assert_eq!(c.call(&req, b"\r\n"), b"STORED\r\n");
    let head = format!("VALUE big 0 {}\r\n", big.len());
    let got = c.call(b"get big\r\n", b"END\r\n");
    assert_eq!(got.len(), head.len() + big.len() + 7);
    assert!(got.starts_with(head.as_bytes()) && got[head.len()..head.len() + big.len()] == big[..]);
    // Over the 1 MiB item limit: refused, data swallowed, old value gone.
    let mut req = b"set big 0 0 1048577\r\n".to_vec();
    req.extend(vec![b'y'; 1_048_577]);
    req.extend(b"\r\nget big\r\n");
    assert_eq!(
        c.call(&req, b"END\r\n"),
        b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
}

fn reader_that_never_reads_does_not_stall_others(kind: Kind) {
    let server = start(kind, &[]);
    let mut setup = server.connect();
    let mut req = b"set v 0 0 100000\r\n".to_vec();
    req.extend(vec![b'v'; 100_000]);
    req.extend(b"\r\n");
    assert_eq!(setup.call(&req, b"\r\n"), b"STORED\r\n");
    // 20 MB of replies requested and never read.
    let mut hog = server.connect();
    let flood = b"get v\r\n".repeat(200);
    for _ in 0..20 {
        hog.send(&flood);
    }
    let mut other = server.connect();
    let start = Instant::now();
    for i in 0..100 {
        assert_eq!(
            other.call(format!("set o{i} 0 0 1\r\nx\r\n").as_bytes(), b"\r\n"),
            b"STORED\r\n"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "other client stalled: {:?}",
        start.elapsed()
    );
    // And the hog still gets every byte once it reads.
    let per = "VALUE v 0 100000\r\n".len() + 100_002 + 5;
    let got = hog.read_n(per * 4000, Duration::from_secs(60));
    assert_eq!(got.len(), per * 4000);
}

fn garbage_on_one_connection(kind: Kind) {
    let server = start(kind, &[]);
    let mut good = server.connect();
    assert_eq!(good.call(b"set g 0 0 2\r\nok\r\n", b"\r\n"), b"STORED\r\n");
    let mut rng = 0x1234_5678_u64;
    for _ in 0..20 {
        let mut bad = server.connect();
        let junk: Vec<u8> = (0..5000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 24) as u8
            })
            .collect();
        bad.send(&junk);
        assert_eq!(
            good.call(b"get g\r\n", b"END\r\n"),
            b"VALUE g 0 2\r\nok\r\nEND\r\n"
        );
    }
    let mut bad = server.connect();
    bad.send(&[b'x'; 3000]);
    assert!(
        bad.closed_within(T),
        "an endless line must close the connection"
    );
    assert_eq!(
        good.call(b"get g\r\n", b"END\r\n"),
        b"VALUE g 0 2\r\nok\r\nEND\r\n"
    );
}

fn connection_limit(kind: Kind) {
    let server = start(kind, &["-c", "5"]);
    // The start-up probe's connection may not be reaped yet: retry until
    // five clients are admitted.
    let mut held: Vec<Client> = Vec::new();
    let deadline = Instant::now() + T;
    while held.len() < 5 {
        let mut c = server.connect();
        if c.call(b"mn\r\n", b"\r\n") == b"MN\r\n" {
            held.push(c);
        }
        assert!(Instant::now() < deadline, "could not hold five connections");
    }
    let mut extra = server.connect();
    assert_eq!(extra.read_n(33, T), b"ERROR Too many open connections\r\n");
    assert!(extra.closed_within(T));
    let stats = parse_stats(&held[0].call(b"stats\r\n", b"END\r\n"));
    assert!(stat(&stats, "rejected_connections") >= 1);
    assert_eq!(stat(&stats, "max_connections"), 5);
    drop(held.pop());
    // A slot frees up once a client leaves.
    let deadline = Instant::now() + T;
    loop {
        let mut c = server.connect();
        if c.call(b"mn\r\n", b"\r\n") == b"MN\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
}

fn stats_are_real(kind: Kind) {
    let server = start(kind, &[]);
    let mut c = server.connect();
    c.call(
        b"set a 0 0 1\r\n1\r\nget a b\r\nincr a 5\r\ndelete zz\r\n",
        b"NOT_FOUND\r\n",
    );
    let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
    assert_eq!(stat(&stats, "cmd_get"), 2);
    assert_eq!(stat(&stats, "get_hits"), 1);
    assert_eq!(stat(&stats, "get_misses"), 1);
    assert_eq!(stat(&stats, "incr_hits"), 1);
    assert_eq!(stat(&stats, "delete_misses"), 1);
    assert_eq!(stat(&stats, "curr_items"), 1);
    assert_eq!(stat(&stats, "total_items"), 1);
    assert!(stat(&stats, "bytes_read") >= 50);
    assert!(stat(&stats, "bytes_written") >= 30);
    assert_eq!(stat(&stats, "limit_maxbytes"), 64 * 1024 * 1024);
    assert!(stat(&stats, "pid") > 0);
    assert!(stat(&stats, "time") > 1_600_000_000);
}

fn sigterm_stops_cleanly(kind: Kind) {
    let server = start(kind, &[]);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

/// Out of descriptors, the server pauses accepting instead of spinning on
/// a readable listener, counts it in `listen_disabled_num`, keeps serving
/// the connections it has, and accepts again once one closes.
fn out_of_descriptors_pauses_accepting(kind: Kind) {
    let server = start_with_fd_limit(kind, &["-c", "1000", "-t", "2"], Some(48));
    let mut held: Vec<Client> = Vec::new();
    let mut first = server.connect();
    assert_eq!(first.call(b"version\r\n", b"\r\n").len(), 16);
    // More connections than descriptors: the excess waits in the backlog.
    let mut raw = Vec::new();
    for _ in 0..80 {
        raw.push(std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = cpu_ticks(server.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(server.pid()).unwrap() - t0;
    assert!(
        spent < clock_ticks_per_sec() / 2,
        "{}: {spent} ticks in 2 s at the descriptor limit",
        kind.name()
    );
    // Free descriptors: the queued connections get served.
    drop(raw);
    for _ in 0..10 {
        let mut c = server.connect();
        assert_eq!(c.call(b"set k 0 0 1\r\nv\r\n", b"\r\n"), b"STORED\r\n");
        held.push(c);
    }
    let stats = parse_stats(&first.call(b"stats\r\n", b"END\r\n"));
    assert!(stat(&stats, "listen_disabled_num") >= 1, "{}", kind.name());
}

/// The server's end of every connection has TCP_NODELAY, so a reply that
/// leaves in several writes never waits for the client's delayed ACK
/// (about 40 ms each time: pipelined 50 KB sets ran at a tenth of the
/// native rate through the wasm server without it). WASI has no such
/// option; the runner sets it on the guest's listener, whose connections
/// inherit it. Checked on the server's own socket, taken from its process
/// with `pidfd_getfd`.
fn connections_have_tcp_nodelay(kind: Kind) {
    let server = start(kind, &[]);
    let mut c = server.connect();
    assert_eq!(c.call(b"version\r\n", b"\r\n").len(), 16, "{}", kind.name());
    let client = c.sock.local_addr().expect("client address");
    match socket_option_of_peer(server.pid(), client, libc::IPPROTO_TCP, libc::TCP_NODELAY) {
        Ok(v) => assert_ne!(
            v,
            0,
            "{}: TCP_NODELAY is off on the server's socket",
            kind.name()
        ),
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::ENOSYS) =>
        {
            eprintln!(
                "SKIPPED TCP_NODELAY check / {}: pidfd_getfd: {e}",
                kind.name()
            );
        }
        Err(e) => panic!("{}: {e}", kind.name()),
    }
}

/// The value of a socket option on process `pid`'s socket connected to
/// `peer`.
fn socket_option_of_peer(
    pid: u32,
    peer: std::net::SocketAddr,
    level: libc::c_int,
    name: libc::c_int,
) -> std::io::Result<libc::c_int> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let last = std::io::Error::last_os_error;
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(last());
    }
    // SAFETY: a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as libc::c_int) };
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Some(target) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        // SAFETY: pidfd_getfd duplicates the target's descriptor into
        // this process; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            let e = last();
            if e.raw_os_error() == Some(libc::EBADF) {
                continue; // closed meanwhile
            }
            return Err(e);
        }
        // SAFETY: a new descriptor we own.
        let sock = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        if sock.peer_addr().ok() != Some(peer) {
            continue;
        }
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes of their sizes.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        return if r == 0 { Ok(v) } else { Err(last()) };
    }
    Err(std::io::Error::other(format!(
        "no socket of process {pid} is connected to {peer}"
    )))
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod wasm {
            use super::*;
            $( #[test] fn $name() { super::$name(Kind::Wasm) } )*
        }
        mod native {
            use super::*;
            $( #[test] fn $name() { super::$name(Kind::Native) } )*
        }
    };
}

both!(
    hundreds_of_connections,
    pipelined_multiget,
    large_values,
    reader_that_never_reads_does_not_stall_others,
    garbage_on_one_connection,
    connection_limit,
    stats_are_real,
    sigterm_stops_cleanly,
    out_of_descriptors_pauses_accepting,
    connections_have_tcp_nodelay,
);

/// The expiry sweep runs on whichever worker is awake when it is due: items
/// set through a connection on another worker than the first, with no
/// traffic afterwards, are still reclaimed.
#[test]
fn expiry_sweeps_without_traffic_on_any_worker() {
    let server = start(Kind::Native, &["-t", "4"]);
    // Connections go to the least loaded worker: the second lands on
    // worker 1 while the first stays open on worker 0.
    let mut on_first = server.connect();
    let mut on_second = server.connect();
    assert_eq!(on_first.call(b"version\r\n", b"\r\n").len(), 16);
    for i in 0..100 {
        let req = format!("set ttl{i} 0 1 1\r\nx\r\n");
        assert_eq!(on_second.call(req.as_bytes(), b"\r\n"), b"STORED\r\n");
    }
    std::thread::sleep(Duration::from_millis(3500));
    let stats = parse_stats(&on_second.call(b"stats\r\n", b"END\r\n"));
    assert_eq!(stat(&stats, "reclaimed"), 100);
    assert_eq!(stat(&stats, "curr_items"), 0);
}

/// The expiry sweep examines a bounded batch per step: a store with many
/// more items than one batch is swept to the end, step after step, with
/// no traffic (one shard natively at `-t 1`, and the wasm guest's).
#[test]
fn expiry_sweeps_large_stores_to_the_end() {
    for kind in [Kind::Native, Kind::Wasm] {
        let server = start(kind, &["-t", "1"]);
        let mut c = server.connect();
        let mut batch = Vec::new();
        for i in 0..3000 {
            batch.extend_from_slice(format!("set ttl{i} 0 1 1 noreply\r\nx\r\n").as_bytes());
        }
        c.send(&batch);
        assert_eq!(c.call(b"mn\r\n", b"\r\n"), b"MN\r\n");
        std::thread::sleep(Duration::from_millis(4000));
        let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        assert_eq!(stat(&stats, "reclaimed"), 3000, "{}", kind.name());
        assert_eq!(stat(&stats, "curr_items"), 0, "{}", kind.name());
    }
}

/// Native workers (`-t`) each accept their own connections but share one
/// store: 64 clients increment one counter and set keys that every other
/// client reads back; nothing is lost and `stats` counts every connection.
/// A wasm guest reports one thread whatever `-t` says.
#[test]
fn workers_share_one_store() {
    for (kind, threads, want_threads) in [(Kind::Native, "4", 4), (Kind::Wasm, "4", 1)] {
        let server = start(kind, &["-t", threads]);
        server
            .connect()
            .call(b"set n 0 0 1\r\n0\r\n", b"STORED\r\n");
        let port = server.port;
        let workers: Vec<_> = (0..64)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut c = Client::connect(port);
                    let seen: Vec<u64> = (0..50)
                        .map(|_| {
                            let r = c.call(b"incr n 1\r\n", b"\r\n");
                            let text = String::from_utf8_lossy(&r);
                            text.trim_end()
                                .parse()
                                .unwrap_or_else(|_| panic!("{text:?}"))
                        })
                        .collect();
                    let set = format!("set k{i} 0 0 {}\r\nv{i}\r\n", format!("v{i}").len());
                    assert_eq!(c.call(set.as_bytes(), b"\r\n"), b"STORED\r\n");
                    (c, seen)
                })
            })
            .collect();
        let mut clients = Vec::new();
        let mut seen = Vec::new();
        for w in workers {
            let (c, s) = w.join().unwrap();
            clients.push(c);
            seen.extend(s);
        }
        // Every increment was applied once: the replies are 1..=3200.
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(1..=3200), "{}", kind.name());
        for (i, c) in clients.iter_mut().enumerate() {
            let j = (i + 17) % 64;
            let v = format!("v{j}");
            let want = format!("VALUE k{j} 0 {}\r\n{v}\r\nEND\r\n", v.len());
            assert_eq!(
                c.call(format!("get k{j}\r\n").as_bytes(), b"END\r\n"),
                want.as_bytes()
            );
        }
        let mut c = server.connect();
        assert_eq!(
            c.call(b"get n\r\n", b"END\r\n"),
            b"VALUE n 0 4\r\n3200\r\nEND\r\n"
        );
        let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        assert_eq!(stat(&stats, "curr_connections"), 65, "{}", kind.name());
        assert_eq!(stat(&stats, "incr_hits"), 3200);
        assert_eq!(stat(&stats, "threads"), want_threads, "{}", kind.name());
    }
}
