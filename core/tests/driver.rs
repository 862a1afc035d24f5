//! The host driver's policy, exercised through an in-memory host whose
//! "sockets" are byte queues with a bounded send buffer.

use std::collections::HashMap;

use wasmcached_core::driver::{AcceptError, Admission, ConnState, Interest, ACCEPT_RETRY_MS};
use wasmcached_core::{Clock, Config, ConnId, Driver, DriverConfig, Gate, Store};

/// One simulated socket: what the client sent and the server has not read,
/// and what the server wrote and the client has not read.
struct Sock {
    id: ConnId,
    inbound: Vec<u8>,
    outbound: Vec<u8>,
    /// Bytes the client side accepts before writes block.
    window: usize,
    eof: bool,
    closed: bool,
}

/// A host running the driver's call order over [`Sock`]s.
struct Host {
    driver: Driver,
    store: Store,
    socks: Vec<Sock>,
    now_ms: u64,
    runnable: Vec<ConnId>,
    /// What the host last learnt of each connection's interest and
    /// `wants_write`, from `take_changed` only (a real host's poller keeps
    /// the interest it was told).
    seen: HashMap<ConnId, (Interest, bool)>,
    changed: Vec<ConnId>,
}

impl Host {
    fn new(dcfg: DriverConfig, cfg: Config) -> Host {
        let store = Store::new(cfg.clone(), Clock::new(0, 1_700_000_000));
        Host {
            driver: Driver::new(dcfg, &cfg),
            store,
            socks: Vec::new(),
            now_ms: 0,
            runnable: Vec::new(),
            seen: HashMap::new(),
            changed: Vec::new(),
        }
    }

    /// Learns what `take_changed` lists and checks that every connection
    /// it leaves out is as the host last saw it: a host that trusts the
    /// list misses no readiness and no output.
    fn learn_changes(&mut self) {
        self.changed.clear();
        self.driver.take_changed(&mut self.changed);
        let mut once = self.changed.clone();
        once.sort();
        once.dedup();
        assert_eq!(once.len(), self.changed.len(), "listed twice");
        for &id in &self.changed {
            let now = (self.driver.interest(id), self.driver.wants_write(id));
            self.seen.insert(id, now);
        }
        for s in self.socks.iter().filter(|s| !s.closed) {
            let now = (self.driver.interest(s.id), self.driver.wants_write(s.id));
            assert_eq!(
                self.seen.get(&s.id),
                Some(&now),
                "{:?} changed unlisted",
                s.id
            );
        }
    }

    fn connect(&mut self, window: usize) -> usize {
        let id = self.driver.open(self.now_ms);
        self.socks.push(Sock {
            id,
            inbound: Vec::new(),
            outbound: Vec::new(),
            window,
            eof: false,
            closed: false,
        });
        self.socks.len() - 1
    }

    fn clock(&self) -> Clock {
        Clock::new(self.now_ms, 1_700_000_000 + self.now_ms / 1000)
    }

    /// One event-loop pass in the documented order.
    fn pass(&mut self) {
        self.learn_changes();
        self.driver.begin_pass(self.now_ms);
        for s in self.socks.iter_mut().filter(|s| !s.closed) {
            loop {
                let want = self.driver.read_len(s.id);
                if want == 0 {
                    break;
                }
                if s.inbound.is_empty() {
                    if s.eof {
                        self.driver.on_closed(s.id);
                    }
                    break;
                }
                let n = want.min(s.inbound.len());
                let bytes: Vec<u8> = s.inbound.drain(..n).collect();
                self.driver.on_read(s.id, &bytes);
                if n < want {
                    break;
                }
            }
        }
        self.driver.take_runnable(&mut self.runnable);
        let clock = self.clock();
        for &id in &self.runnable {
            self.driver.process(id, &mut self.store, clock);
        }
        self.learn_changes();
        for s in self.socks.iter_mut().filter(|s| !s.closed) {
            if !self.driver.wants_write(s.id) {
                continue;
            }
            let room = s.window.saturating_sub(s.outbound.len());
            let mut written = 0;
            for c in self.driver.output(s.id) {
                let n = c.len().min(room - written);
                s.outbound.extend_from_slice(&c[..n]);
                written += n;
            }
            if written > 0 {
                self.driver.on_written(s.id, written);
            }
        }
        while let Some(id) = self.driver.poll_close() {
            if let Some(s) = self.socks.iter_mut().find(|s| s.id == id && !s.closed) {
                s.closed = true;
            }
            self.seen.remove(&id);
        }
    }

    /// Whether a real poll would return at once: the driver has work, or
    /// a socket it wants to read from is readable.
    fn ready(&self) -> bool {
        self.driver.poll_timeout() == Some(self.now_ms)
            || self.socks.iter().any(|s| {
                !s.closed && (!s.inbound.is_empty() || s.eof) && self.driver.interest(s.id).read
            })
    }

    /// Runs passes until a real host would sleep.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.pass();
            if !self.ready() {
                return;
            }
        }
        panic!("driver never settled");
    }

    fn send(&mut self, c: usize, bytes: &[u8]) {
        self.socks[c].inbound.extend_from_slice(bytes);
    }

    fn take_reply(&mut self, c: usize) -> Vec<u8> {
        std::mem::take(&mut self.socks[c].outbound)
    }
}

fn host() -> Host {
    Host::new(DriverConfig::default(), Config::default())
}

#[test]
fn idle_connections_leave_no_deadline() {
    let mut h = host();
    let conns: Vec<usize> = (0..100).map(|_| h.connect(1 << 20)).collect();
    for &c in &conns {
        h.send(c, b"set k 0 0 1\r\nv\r\nget k\r\n");
    }
    h.settle();
    for &c in &conns {
        assert_eq!(h.take_reply(c), b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    }
    assert_eq!(h.driver.poll_timeout(), None, "an idle driver must sleep");
    h.driver.take_runnable(&mut h.runnable);
    assert!(h.runnable.is_empty());
}

#[test]
fn pipelined_work_yields_and_replies_go_out_together() {
    let mut h = host();
    let c = h.connect(1 << 20);
    let mut req = Vec::new();
    for i in 0..100 {
        req.extend_from_slice(format!("set k{i} 0 0 1\r\nv\r\n").as_bytes());
    }
    h.send(c, &req);
    h.pass();
    // The per-call budget (20 requests) ran out: the driver wants to run
    // again at once, and holds the replies until the batch is done.
    assert_eq!(h.driver.poll_timeout(), Some(h.now_ms));
    assert!(h.socks[c].outbound.is_empty());
    h.settle();
    assert_eq!(h.take_reply(c), b"STORED\r\n".repeat(100));
    assert_eq!(h.driver.poll_timeout(), None);
}

#[test]
fn a_reader_that_never_reads_blocks_only_itself() {
    let mut h = host();
    let slow = h.connect(64 * 1024);
    let fast = h.connect(1 << 20);
    h.send(fast, b"set big 0 0 100000\r\n");
    h.send(fast, &vec![b'x'; 100_000]);
    h.send(fast, b"\r\n");
    h.settle();
    assert_eq!(h.take_reply(fast), b"STORED\r\n");
    h.send(slow, &b"get big\r\n".repeat(200));
    h.settle();
    // Blocked on output: not runnable, not reading, and no busy deadline.
    assert_eq!(h.driver.poll_timeout(), None);
    assert_eq!(h.driver.state(h.socks[slow].id), ConnState::BlockedOnOutput);
    assert_eq!(h.driver.state(h.socks[fast].id), ConnState::Reading);
    let held = h.driver.connection(h.socks[slow].id).pending_len();
    assert!(held < 3 << 20, "pending output {held} not bounded");
    h.send(fast, b"get nope\r\n");
    h.settle();
    assert_eq!(h.take_reply(fast), b"END\r\n");
    // Draining the slow reader lets it finish all 200 replies.
    let mut got = 0;
    for _ in 0..10_000 {
        got += h.take_reply(slow).len();
        h.settle();
        if got >= 200 * (100_000 + 30) {
            break;
        }
    }
    let one = "VALUE big 0 100000\r\n".len() + 100_000 + "\r\nEND\r\n".len();
    assert_eq!(got, 200 * one);
}

#[test]
fn buffers_shrink_when_a_connection_goes_idle() {
    let mut h = host();
    let c = h.connect(1 << 22);
    h.send(c, b"set big 0 0 500000\r\n");
    h.send(c, &vec![b'x'; 500_000]);
    h.send(c, b"\r\nget big\r\n");
    h.settle();
    assert!(h
        .take_reply(c)
        .starts_with(b"STORED\r\nVALUE big 0 500000\r\n"));
    let held = h.driver.held_bytes();
    assert!(
        held <= 64 * 1024,
        "idle connection still holds {held} bytes"
    );
}

/// 100 keys of 64 bytes, stored, and the multiget of them all (a reply
/// of about 10 KB).
fn hundred_keys(h: &mut Host, c: usize) -> Vec<u8> {
    let mut get = b"get".to_vec();
    for k in 0..100 {
        h.send(c, format!("set key{k} 0 0 64 noreply\r\n").as_bytes());
        h.send(c, &[b'v'; 64]);
        h.send(c, b"\r\n");
        get.extend_from_slice(format!(" key{k}").as_bytes());
    }
    get.extend_from_slice(b"\r\n");
    get
}

#[test]
fn the_reply_buffer_of_an_idle_connection_serves_the_next_one() {
    let mut h = host();
    let a = h.connect(1 << 20);
    let b = h.connect(1 << 20);
    let get = hundred_keys(&mut h, a);
    h.settle();
    h.send(a, &get);
    h.settle();
    let reply = h.take_reply(a);
    assert!(reply.len() > 8000 && reply.ends_with(b"END\r\n"));
    // One reply buffer, kept for the next connection to run.
    assert!(h.driver.held_bytes() >= reply.len());
    let mut held = Vec::new();
    for _ in 0..10 {
        for c in [b, a] {
            h.send(c, &get);
            h.settle();
            assert_eq!(h.take_reply(c), reply);
        }
        held.push(h.driver.held_bytes());
    }
    // Each connection keeps its small input buffer; the reply buffer goes
    // round, never a second one.
    assert!(held.iter().all(|&n| n == held[0]), "{held:?}");
    assert!(held[0] < 2 * reply.len(), "{held:?}");
}

#[test]
fn topkeys_samples_short_connections_too() {
    let mut h = host();
    let c = h.connect(1 << 20);
    h.send(c, b"set hot 0 0 1\r\nx\r\n");
    h.settle();
    h.take_reply(c);
    // 400 connections of 5 fetches each: one sequence for the driver
    // samples about one fetch in 16 of all of them.
    for _ in 0..400 {
        let k = h.connect(1 << 20);
        h.send(
            k,
            b"get hot\r\nget hot\r\nget hot\r\nget hot\r\nget hot\r\n",
        );
        h.settle();
        h.take_reply(k);
    }
    h.send(c, b"stats topkeys\r\n");
    h.settle();
    let reply = String::from_utf8(h.take_reply(c)).unwrap();
    let sampled: u64 = reply
        .lines()
        .find_map(|l| l.strip_prefix("STAT sampled "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((90..=160).contains(&sampled), "{reply}");
}

#[test]
fn spare_buffers_are_the_first_memory_to_go() {
    let dcfg = DriverConfig {
        memory_limit: 48 * 1024,
        ..DriverConfig::default()
    };
    // A client stalled in a 60 KB value, 40 KB in: past three quarters of
    // the limit on its own.
    let stall = |h: &mut Host| {
        let hog = h.connect(1 << 20);
        h.send(hog, b"set hog 0 0 60000\r\n");
        h.send(hog, &vec![b'y'; 40_000]);
        h.settle();
        h.driver.held_bytes()
    };
    let alone = stall(&mut Host::new(dcfg.clone(), Config::default()));
    assert!(alone > 36 * 1024, "{alone}");
    let mut h = Host::new(dcfg, Config::default());
    let a = h.connect(1 << 20);
    let get = hundred_keys(&mut h, a);
    h.send(a, &get);
    h.settle();
    h.take_reply(a);
    let spare = h.driver.held_bytes();
    assert!(spare > 8000, "{spare}");
    assert_eq!(stall(&mut h), alone, "the spare buffer was freed");
    assert_eq!(h.driver.stats().closed_for_memory, 0);
}

#[test]
fn over_the_limit_the_heaviest_is_shed_and_items_survive() {
    let dcfg = DriverConfig {
        memory_limit: 256 * 1024,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    let good = h.connect(1 << 20);
    h.send(good, b"set keep 0 0 5\r\nhello\r\n");
    h.settle();
    assert_eq!(h.take_reply(good), b"STORED\r\n");
    // Four clients each start a 200 KB value and stall three quarters of
    // the way: together they would hold 600 KB of a 256 KB limit.
    let hogs: Vec<usize> = (0..4).map(|_| h.connect(1 << 20)).collect();
    for &c in &hogs {
        h.send(c, b"set hog 0 0 200000\r\n");
        h.send(c, &vec![b'y'; 150_000]);
    }
    for _ in 0..100 {
        h.pass();
        assert!(h.driver.held_bytes() <= 256 * 1024);
    }
    let stats = h.driver.stats();
    assert!(stats.closed_for_memory >= 1, "{stats:?}");
    let told = hogs
        .iter()
        .filter(|&&c| h.socks[c].outbound == b"SERVER_ERROR out of memory\r\n")
        .count();
    assert!(
        told >= 1,
        "a shed connection with nothing pending is told why"
    );
    // The well-behaved client and the stored item are untouched.
    h.send(good, b"get keep\r\n");
    h.settle();
    assert_eq!(h.take_reply(good), b"VALUE keep 0 5\r\nhello\r\nEND\r\n");
}

#[test]
fn past_three_quarters_the_heaviest_pause_and_the_rest_are_served() {
    let dcfg = DriverConfig {
        memory_limit: 4 << 20,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    // Eight clients start 1 MB values and stall: 8 MB of a 4 MB limit.
    let hogs: Vec<usize> = (0..8).map(|_| h.connect(1 << 20)).collect();
    for &c in &hogs {
        h.send(c, b"set hog 0 0 1000000\r\n");
        h.send(c, &vec![b'y'; 700_000]);
    }
    let small = h.connect(1 << 20);
    for i in 0..50 {
        h.send(small, format!("set s{i} 0 0 2\r\nhi\r\n").as_bytes());
        h.pass();
        assert!(h.driver.held_bytes() <= 4 << 20);
    }
    h.settle();
    assert_eq!(h.take_reply(small), b"STORED\r\n".repeat(50));
    let paused = hogs
        .iter()
        .filter(|&&c| !h.socks[c].closed && h.driver.read_len(h.socks[c].id) == 0)
        .count();
    assert!(paused >= 1, "some hog must be held back");
    assert!(hogs
        .iter()
        .any(|&c| h.driver.state(h.socks[c].id) == ConnState::Paused));
    assert!(h.driver.stats().paused_for_memory >= 1);
}

#[test]
fn end_of_stream_closes_without_storing_a_partial_value() {
    let mut h = host();
    let c = h.connect(1 << 20);
    h.send(c, b"set part 0 0 10\r\nabc");
    h.socks[c].eof = true;
    h.settle();
    assert!(h.socks[c].closed);
    assert!(h.driver.is_empty());
    let d = h.connect(1 << 20);
    h.send(d, b"get part\r\n");
    h.settle();
    assert_eq!(h.take_reply(d), b"END\r\n");
}

#[test]
fn quit_closes_after_pending_output() {
    let mut h = host();
    let c = h.connect(1 << 20);
    h.send(c, b"version\r\nquit\r\nversion\r\n");
    h.settle();
    assert_eq!(h.take_reply(c), b"VERSION 1.6.18\r\n");
    assert!(h.socks[c].closed);
}

#[test]
fn idle_timeout_closes_quiet_connections() {
    let dcfg = DriverConfig {
        idle_timeout_ms: 5_000,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    let quiet = h.connect(1 << 20);
    let busy = h.connect(1 << 20);
    h.settle();
    for _ in 0..7 {
        h.now_ms += 1000;
        h.send(busy, b"version\r\n");
        h.settle();
    }
    assert!(h.socks[quiet].closed);
    assert!(!h.socks[busy].closed);
    assert_eq!(h.driver.stats().closed_idle, 1);
    // The deadline is the next idle check, not a busy loop.
    assert!(h.driver.poll_timeout().is_some_and(|t| t > h.now_ms));
}

#[test]
fn gate_refuses_past_the_limit_and_pauses_without_descriptors() {
    let mut g = Gate::new(2);
    assert_eq!(g.admit(0), Admission::Serve);
    assert_eq!(g.admit(1), Admission::Serve);
    assert_eq!(g.admit(2), Admission::Refuse);
    assert_eq!(g.rejected(), 1);
    assert!(g.wants_accept(0));
    g.accept_failed(AcceptError::OutOfDescriptors, 1_000);
    assert!(!g.wants_accept(1_000));
    assert_eq!(g.poll_timeout(), Some(1_000 + ACCEPT_RETRY_MS));
    assert!(g.wants_accept(1_000 + ACCEPT_RETRY_MS));
    assert_eq!(g.listen_disabled_num(), 1);
    g.accept_failed(AcceptError::OutOfDescriptors, 2_000);
    g.connection_closed();
    assert!(g.wants_accept(2_000));
    assert_eq!(g.poll_timeout(), None);
    assert_eq!(g.listen_disabled_num(), 2);
    g.accept_failed(AcceptError::Aborted, 3_000);
    assert!(g.wants_accept(3_000));
    g.accept_failed(AcceptError::Other, 3_000);
    assert!(!g.wants_accept(3_000));
    assert_eq!(g.listen_disabled_num(), 3);
}

#[test]
fn equal_hogs_that_hang_up_are_all_closed() {
    let dcfg = DriverConfig {
        memory_limit: 1 << 20,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    // Six half-received values of one size: together over three quarters
    // of the limit, none above the others.
    let hogs: Vec<usize> = (0..6).map(|_| h.connect(1 << 20)).collect();
    for &c in &hogs {
        h.send(c, b"set hog 0 0 150000\r\n");
        h.send(c, &vec![b'y'; 136_000]);
    }
    h.settle();
    for &c in &hogs {
        h.socks[c].eof = true;
    }
    // Each hang-up is noticed, at the latest when the driver sheds memory
    // it has held above its soft limit for too long.
    for _ in 0..10 {
        h.settle();
        if let Some(t) = h.driver.poll_timeout() {
            h.now_ms = h.now_ms.max(t);
        }
    }
    assert!(hogs.iter().all(|&c| h.socks[c].closed));
    assert_eq!(h.driver.held_bytes(), 0);
    assert_eq!(h.driver.poll_timeout(), None);
}

/// Replies that do not fit the limit are shed by the `process` call that
/// produced them, not at the next pass: the limit holds after every call.
#[test]
fn replies_that_do_not_fit_are_shed_at_once() {
    let limit = 64 * 1024;
    let dcfg = DriverConfig {
        memory_limit: limit,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    let writer = h.connect(1 << 20);
    let value = vec![b'v'; 10_000];
    let mut set = b"set big 0 0 10000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    h.send(writer, &set);
    h.settle();
    assert_eq!(h.take_reply(writer), b"STORED\r\n");
    // A reader that never reads pipelines 20 gets of the 10 KB value:
    // 200 KB of replies from one `process` call, over a 64 KB limit.
    let reader = h.connect(0);
    h.send(reader, &b"get big\r\n".repeat(20));
    let mut shed = false;
    for _ in 0..10 {
        h.driver.begin_pass(h.now_ms);
        for s in h.socks.iter().filter(|s| !s.closed) {
            let want = h.driver.read_len(s.id).min(s.inbound.len());
            if want > 0 {
                let bytes = s.inbound[..want].to_vec();
                h.driver.on_read(s.id, &bytes);
            }
        }
        for s in h.socks.iter_mut() {
            let n = s.inbound.len().min(64 * 1024);
            s.inbound.drain(..n);
        }
        h.driver.take_runnable(&mut h.runnable);
        let clock = h.clock();
        for &id in &h.runnable.clone() {
            h.driver.process(id, &mut h.store, clock);
            assert!(
                h.driver.held_bytes() <= limit,
                "{} held",
                h.driver.held_bytes()
            );
        }
        while let Some(id) = h.driver.poll_close() {
            shed |= id == h.socks[reader].id;
            if let Some(s) = h.socks.iter_mut().find(|s| s.id == id && !s.closed) {
                s.closed = true;
            }
            h.seen.remove(&id);
        }
    }
    assert!(shed, "the reader was closed for memory");
    assert!(h.driver.stats().closed_for_memory >= 1);
    // The item is untouched.
    h.send(writer, b"mg big s\r\n");
    h.settle();
    assert_eq!(h.take_reply(writer), b"HD s10000\r\n");
}

/// A connection that stalled long ago becomes one of the heaviest when
/// others push the driver past three quarters of its limit: it is listed
/// as changed (it must stop being read) though nothing happened to it.
#[test]
fn crossing_the_soft_limit_lists_connections_nothing_happened_to() {
    let dcfg = DriverConfig {
        memory_limit: 1 << 20,
        ..DriverConfig::default()
    };
    let mut h = Host::new(dcfg, Config::default());
    let big = h.connect(1 << 20);
    h.send(big, b"set big 0 0 200000\r\n");
    h.send(big, &vec![b'y'; 190_000]);
    h.settle();
    let id = h.socks[big].id;
    assert!(h.driver.interest(id).read);
    for _ in 0..5 {
        let c = h.connect(1 << 20);
        h.send(c, b"set hog 0 0 150000\r\n");
        h.send(c, &vec![b'y'; 100_000]);
        h.settle();
    }
    // `settle` checked every pass; the stalled connection is now paused.
    assert!(!h.driver.interest(id).read);
    assert_eq!(h.driver.state(id), ConnState::Paused);
}

/// One thing a client does between passes.
#[derive(Clone, Debug)]
enum Step {
    /// Send one of a few requests, small or large, whole or cut short.
    Send {
        conn: usize,
        req: u8,
        cut: bool,
    },
    /// Read up to this many bytes of the replies.
    Read {
        conn: usize,
        n: usize,
    },
    HangUp {
        conn: usize,
    },
    /// Let time pass (idle timeouts, the memory limit's grace period).
    Wait {
        ms: u64,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..6usize, 0..6u8, any::<bool>()).prop_map(|(conn, req, cut)| Step::Send { conn, req, cut }),
        3 => (0..6usize, 0..300_000usize).prop_map(|(conn, n)| Step::Read { conn, n }),
        1 => (0..6usize).prop_map(|conn| Step::HangUp { conn }),
        1 => (0..3_000u64).prop_map(|ms| Step::Wait { ms }),
    ]
}

fn request(req: u8) -> Vec<u8> {
    match req {
        0 => b"get k\r\n".to_vec(),
        1 => b"get k k k k k k k k k k k k k k k k\r\n".to_vec(),
        2 => {
            let mut v = b"set k 0 0 40000\r\n".to_vec();
            v.extend(vec![b'x'; 40_000]);
            v.extend(b"\r\n");
            v
        }
        3 => b"set s 0 0 2\r\nhi\r\n".to_vec(),
        4 => b"watch mutations\r\n".to_vec(),
        _ => b"quit\r\n".to_vec(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Under any mix of clients (slow readers, hang-ups, values cut short,
    /// watchers, a tight memory limit, idle timeouts), `take_changed`
    /// lists every connection whose interest or output changed: `pass`
    /// checks it twice per pass against every connection.
    #[test]
    fn changed_lists_every_connection_that_changed(
        windows in proptest::collection::vec(0..200_000usize, 6),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let dcfg = DriverConfig {
            memory_limit: 256 * 1024,
            idle_timeout_ms: 2_000,
            ..DriverConfig::default()
        };
        let mut h = Host::new(dcfg, Config::default());
        let conns: Vec<usize> = windows.iter().map(|&w| h.connect(w)).collect();
        for s in steps {
            match s {
                Step::Send { conn, req, cut } => {
                    let mut bytes = request(req);
                    if cut {
                        bytes.truncate(bytes.len() / 2);
                    }
                    h.send(conns[conn], &bytes);
                }
                Step::Read { conn, n } => {
                    let out = &mut h.socks[conns[conn]].outbound;
                    let n = n.min(out.len());
                    out.drain(..n);
                }
                Step::HangUp { conn } => h.socks[conns[conn]].eof = true,
                Step::Wait { ms } => h.now_ms += ms,
            }
            h.pass();
            h.pass();
        }
    }
}
