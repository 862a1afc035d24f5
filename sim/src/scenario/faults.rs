//! `faults`: a server under faults from the first millisecond to the last,
//! with a workload that exercises every command the model knows.
//!
//! The workload:
//! * counter clients run the article's gets/cas loop until each has its
//!   increments acknowledged;
//! * pipelining clients keep 1–4 requests in flight on a few shared keys:
//!   `get`/`gets`, `set`/`add` of unique values of mixed sizes (bytes to
//!   100 KB) with no TTL, a relative TTL or an absolute exptime, `append`,
//!   `delete`, `touch`, and `incr` on counters;
//! * on some seeds a filler stores large values so the server evicts.
//!
//! The faults, drawn from the seed, at any time in the run: partitions
//! between a client and the server, held messages, latency spikes, links
//! that drop messages (turmoil's `fail_rate`), server crashes with a
//! restart after a while, and the server's wall clock skewed at start and
//! jumping (which moves absolute exptimes from its next start on). Per
//! seed also: hosts stepped in random order, a small TCP window
//! (`tcp_capacity`), a small `-m`.
//!
//! Checked: the history (both checkers: the model knows each server
//! lifetime's wall clock, every restart and every eviction), and that no
//! increment acknowledged since the last disruption is missing from the
//! final count.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::check::Policy;
use crate::client::{Client, Request};
use crate::host::{self, ClockOffset, HostConfig, EPOCH_SECS};
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::cas_counter::{count_of, read_count_retrying, reader, visit_cas};
use crate::scenario::{builder, report, step, RunConfig};
use crate::trace::{now, Mode, Outcome, Recorder, Shared};

/// Counter clients.
pub const CLIENTS: u64 = 4;
/// Increments each counter client must get acknowledged.
pub const VISITS: u64 = 15;
/// Pipelining clients.
pub const PIPELINERS: u64 = 3;
/// When the pipelining clients and the filler stop, and the last fault
/// may begin.
pub const END: Duration = Duration::from_millis(2000);
/// Memory (`-m`) on seeds with eviction pressure.
pub const SMALL_MEMORY: u64 = 4 << 20;
const KEY: &str = "visitors";
const KEYS: u64 = 6;
const COUNTERS: u64 = 2;

/// One fault.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Client `n` cut off the server for the given milliseconds.
    Partition(u64, u64),
    /// Messages between client `n` and the server held for a while.
    Hold(u64, u64),
    /// Latency on client `n`'s link for 400 ms.
    Latency(u64, u64),
    /// Client `n`'s link drops messages at this rate (per mille) for
    /// 300 ms.
    Lossy(u64, u64),
    /// The server crashes and restarts after the given milliseconds.
    Crash(u64),
    /// The server's wall clock jumps by the given seconds.
    ClockJump(i64),
}

/// The seed's conditions beyond the fault schedule.
#[derive(Clone, Copy, Debug)]
struct Profile {
    random_order: bool,
    tcp_capacity: Option<usize>,
    evictions: bool,
    skew: i64,
}

/// The client host names: one per counter client; the pipelining
/// clients share the host `pipe` (a fault on it hits all three).
fn client_name(n: u64) -> String {
    if n < CLIENTS {
        format!("client-{n}")
    } else {
        "pipe".into()
    }
}

fn draw(seed: u64) -> (Profile, Vec<(Duration, Fault)>) {
    let mut rng = Rng::new(seed, 77);
    let profile = Profile {
        random_order: rng.below(2) == 0,
        // turmoil also sizes the listen backlog by it, which every client
        // reconnecting at once after a restart must fit.
        tcp_capacity: (rng.below(2) == 0).then(|| 12 + rng.below(5) as usize),
        evictions: rng.below(2) == 0,
        skew: [0, 0, 3, -3, 40, -40][rng.below(6) as usize],
    };
    let mut schedule = Vec::new();
    let end = END.as_millis() as u64;
    for _ in 0..8 + rng.below(6) {
        let at = Duration::from_millis(20 + rng.below(end - 20));
        let who = rng.below(CLIENTS + PIPELINERS);
        let f = match rng.below(12) {
            0..=2 => Fault::Partition(who, 100 + rng.below(500)),
            3..=4 => Fault::Hold(who, 50 + rng.below(300)),
            5..=6 => Fault::Latency(who, 20 + rng.below(200)),
            7..=8 => Fault::Lossy(who, 20 + rng.below(200)),
            9..=10 => Fault::Crash(rng.below(300)),
            _ => Fault::ClockJump([-50, -5, 5, 50][rng.below(4) as usize]),
        };
        schedule.push((at, f));
    }
    schedule.sort_by_key(|(at, _)| *at);
    (profile, schedule)
}

/// A value of a size drawn from a mix (mostly small, some kilobytes, a
/// few up to 100 KB), starting with a tag unique to the write.
fn value(rng: &mut Rng, tag: &str) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 30_000 + rng.below(70_000),
        1..=5 => 1_000 + rng.below(15_000),
        _ => rng.below(64),
    } as usize;
    let mut v = format!("{tag}:").into_bytes();
    v.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    v
}

/// An exptime: none, a few seconds relative, or a unix time a few seconds
/// ahead on the client's (unskewed) clock.
fn exptime(rng: &mut Rng) -> i64 {
    match rng.below(4) {
        0 | 1 => 0,
        2 => 1 + rng.below(4) as i64,
        _ => (EPOCH_SECS + now().as_secs() + 1 + rng.below(5)) as i64,
    }
}

/// One random request of the pipelining workload.
fn request(c: &mut Client) -> Request {
    let r = c.rng().below(100);
    let k = format!("r:{}", c.rng().below(KEYS));
    let n = format!("n:{}", c.rng().below(COUNTERS));
    let tag = c.unique();
    let rng = c.rng();
    match r {
        0..=24 => Request::get(&k, rng.below(2) == 0),
        25..=44 => {
            let v = value(rng, &tag);
            let ttl = exptime(rng);
            Request::store(Mode::Set, &k, &v, rng.below(8) as u32, ttl, None)
        }
        45..=51 => {
            let v = value(rng, &tag);
            let ttl = exptime(rng);
            Request::store(Mode::Add, &k, &v, rng.below(8) as u32, ttl, None)
        }
        52..=59 => Request::store(Mode::Append, &k, format!("+{tag}").as_bytes(), 0, 0, None),
        60..=67 => Request::delete(&k),
        68..=73 => Request::touch(&k, exptime(rng)),
        74..=79 => Request::store(Mode::Add, &n, b"0", 0, 0, None),
        80..=91 => Request::incr(&n, 1 + rng.below(3), rng.below(4) == 0),
        _ => Request::get(&n, false),
    }
}

/// A pipelining client: batches of 1–4 requests until [`END`].
async fn pipeliner(i: u64, seed: u64, rec: Shared) {
    let mut c = Client::new(
        format!("pipe-{i}"),
        "server",
        Rng::new(seed, 200 + i),
        rec,
        Duration::from_millis(300),
    );
    while now() < END {
        let n = 1 + c.rng().below(4);
        let reqs: Vec<Request> = (0..n).map(|_| request(&mut c)).collect();
        let got = c.pipeline(&reqs).await;
        if got.iter().any(Result::is_err) {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let pause = c.rng().below(8);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Stores large values on fresh keys until [`END`], so the server evicts.
async fn filler(seed: u64, rec: Shared) {
    let mut c = Client::new(
        "filler".into(),
        "server",
        Rng::new(seed, 300),
        rec,
        Duration::from_millis(300),
    );
    let mut n = 0u64;
    while now() < END {
        n += 1;
        let len = 40_000 + c.rng().below(50_000) as usize;
        let mut v = c.unique().into_bytes();
        v.resize(len, b'f');
        if c.write(Mode::Set, &format!("fill:{n}"), &v, 0, 0, None)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// Runs the scenario.
pub fn run(cfg: &RunConfig) -> Report {
    let seed = cfg.seed;
    let (profile, mut schedule) = draw(seed);
    let rec = Recorder::shared(cfg.keep_trace);
    let mut b = builder(seed, Duration::from_secs(300));
    if profile.random_order {
        b.enable_random_order();
    }
    if let Some(n) = profile.tcp_capacity {
        b.tcp_capacity(n);
    }
    let mut sim = b.build();
    let offset: ClockOffset = Rc::new(Cell::new(profile.skew));
    let mut host_cfg = HostConfig::standard(cfg.plant);
    host_cfg.clock_offset = Some(offset.clone());
    if profile.evictions {
        host_cfg.store.memory_limit = SMALL_MEMORY;
    }
    let r = rec.clone();
    sim.host("server", move || {
        host::serve_with("server", r.clone(), host_cfg.clone())
    });
    let finished = Rc::new(RefCell::new(0u64));
    let final_value = Rc::new(RefCell::new(None::<u64>));
    for i in 0..CLIENTS {
        let (rec, finished) = (rec.clone(), finished.clone());
        sim.client(client_name(i), async move {
            let mut c = Client::new(
                client_name(i),
                "server",
                Rng::new(seed, i + 1),
                rec,
                Duration::from_millis(300),
            );
            let mut acked = 0;
            while acked < VISITS {
                match visit_cas(&mut c, KEY).await {
                    Ok(_) => acked += 1,
                    // Timed out or disconnected: back off, reconnect, retry.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                let pause = c.rng().below(20);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            *finished.borrow_mut() += 1;
            Ok(())
        });
    }
    let r = rec.clone();
    sim.client("pipe", async move {
        let tasks: Vec<_> = (0..PIPELINERS)
            .map(|i| tokio::task::spawn_local(pipeliner(i, seed, r.clone())))
            .collect();
        for t in tasks {
            t.await?;
        }
        Ok(())
    });
    if profile.evictions {
        let rec = rec.clone();
        sim.client("filler", async move {
            filler(seed, rec).await;
            Ok(())
        });
    }
    let (r, f, fin) = (rec.clone(), finished.clone(), final_value.clone());
    sim.client("reader", async move {
        while *f.borrow() < CLIENTS || now() < END + Duration::from_millis(600) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c = reader("server", seed, r);
        *fin.borrow_mut() = Some(read_count_retrying(&mut c, KEY).await);
        Ok(())
    });

    let mut undo: Vec<(Duration, Fault)> = Vec::new();
    let mut violations = Vec::new();
    let mut faults = 0u64;
    let mut restart_at: Option<Duration> = None;
    loop {
        let now = sim.elapsed();
        while schedule.first().is_some_and(|(at, _)| *at <= now) {
            let (_, f) = schedule.remove(0);
            faults += 1;
            rec.borrow_mut().event(now, &format!("fault {f:?}"));
            match f {
                Fault::Partition(who, ms) => {
                    sim.partition(client_name(who).as_str(), "server");
                    undo.push((now + Duration::from_millis(ms), f));
                }
                Fault::Hold(who, ms) => {
                    sim.hold(client_name(who).as_str(), "server");
                    undo.push((now + Duration::from_millis(ms), f));
                }
                Fault::Latency(who, ms) => {
                    sim.set_link_latency(
                        client_name(who).as_str(),
                        "server",
                        Duration::from_millis(ms),
                    );
                    undo.push((now + Duration::from_millis(400), f));
                }
                Fault::Lossy(who, per_mille) => {
                    sim.set_link_fail_rate(
                        client_name(who).as_str(),
                        "server",
                        per_mille as f64 / 1000.0,
                    );
                    undo.push((now + Duration::from_millis(300), f));
                }
                Fault::Crash(ms) if restart_at.is_none() => {
                    sim.crash("server");
                    restart_at = Some(now + Duration::from_millis(ms));
                }
                Fault::Crash(_) => {}
                Fault::ClockJump(secs) => offset.set(offset.get() + secs),
            }
        }
        if restart_at.is_some_and(|t| t <= now) {
            restart_at = None;
            sim.bounce("server");
        }
        undo.retain(|(at, f)| {
            if *at > now {
                return true;
            }
            match *f {
                Fault::Partition(who, _) => sim.repair(client_name(who).as_str(), "server"),
                Fault::Hold(who, _) => sim.release(client_name(who).as_str(), "server"),
                Fault::Latency(who, _) => sim.set_link_latency(
                    client_name(who).as_str(),
                    "server",
                    Duration::from_millis(2),
                ),
                Fault::Lossy(who, _) => {
                    sim.set_link_fail_rate(client_name(who).as_str(), "server", 0.0)
                }
                Fault::Crash(_) | Fault::ClockJump(_) => {}
            }
            false
        });
        if step(&mut sim, &mut violations) {
            break;
        }
    }

    let rec = rec.borrow();
    let final_value = final_value.borrow().unwrap_or(0);
    // Acknowledged increments since the counter last may have vanished
    // (a restart or an eviction) are all in the final count: each acked
    // CAS wrote a distinct next value.
    let last_disruption = rec
        .disruptions
        .iter()
        .filter(|d| d.server == "server")
        .map(|d| d.to)
        .max()
        .unwrap_or_default();
    let acked_since: Vec<u64> = rec
        .ops
        .iter()
        .filter(|o| o.key == KEY && o.outcome == Outcome::Stored && o.invoke > last_disruption)
        .filter_map(|o| o.written().map(count_of))
        .collect();
    if let Some(&max) = acked_since.iter().max() {
        if final_value < max {
            violations.push(format!(
                "final count {final_value} lost acknowledged increment {max}"
            ));
        }
    }
    let indeterminate = rec
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Indeterminate)
        .count() as u64;
    let evictions = rec
        .disruptions
        .iter()
        .filter(|d| d.cause == crate::trace::Cause::Eviction)
        .count() as u64;
    report(
        "faults",
        cfg,
        &rec,
        // TTLs run out in this scenario: misses are the search's to judge.
        Policy {
            no_stale_reads: true,
            no_silent_misses: false,
        },
        violations,
        vec![
            ("acked_increments".into(), Json::Int(CLIENTS * VISITS)),
            ("final".into(), Json::Int(final_value)),
            ("faults".into(), Json::Int(faults)),
            (
                "server_restarts".into(),
                Json::Int(rec.restarts.len().saturating_sub(1) as u64),
            ),
            ("indeterminate_ops".into(), Json::Int(indeterminate)),
            ("ops".into(), Json::Int(rec.ops.len() as u64)),
            ("eviction_passes".into(), Json::Int(evictions)),
            ("random_order".into(), Json::Bool(profile.random_order)),
            (
                "tcp_capacity".into(),
                Json::Int(profile.tcp_capacity.unwrap_or(64) as u64),
            ),
            (
                "clock_skew".into(),
                Json::Str(format!("{:+}", profile.skew)),
            ),
        ],
    )
}
