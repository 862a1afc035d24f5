//! `cluster`: the article's get-or-compute over several cache servers,
//! placed by the client (pymemcache's `HashClient` with rendezvous
//! hashing on even seeds, ketama with auto-eject on odd ones), while one
//! server is lost and comes back with its old data and another crashes and
//! comes back empty.
//!
//! Timeline (sim time):
//! * `0 .. LOSS_AT`: a cold start;
//! * `LOSS_AT .. RETURN_AT`: server L is cut off from the application
//!   (a partition: it keeps running with what it holds). Clients time out
//!   on it, retry, take it out of their ring, move its keys to the others
//!   (database queries), and try it again later;
//! * `RETURN_AT`: the partition heals. The keys come back to L, which
//!   still holds the values from before the loss: every key updated in the
//!   meantime is served stale (the flapping-node problem). The mitigation,
//!   run in a second simulation of the same seed: an operator flushes L
//!   the moment it returns;
//! * `CRASH_AT .. RESTART_AT`: server C (≠ L) crashes, then restarts empty.
//!
//! A writer updates rows in the database throughout and deletes their
//! cache entries. Reported: database queries per phase, the fraction of
//! keys each hashing moves when L leaves the ring, and stale reads (a hit
//! whose row version is older than an update acknowledged before the read
//! began; all of them, and those server L served), without and with the
//! mitigation. Stale reads remain with the mitigation: clients bring L
//! back into their rings at different times (a writer that still skips L
//! deletes elsewhere while a reader already reads L), and cache-aside has
//! its own race (a row read before an update, stored after its delete). Every server's history is
//! checked as in every scenario.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::check::{self, Checked, Policy};
use crate::client::{Client, Request};
use crate::cluster::{remapped, Answer, Failover, Hashing, Pool};
use crate::db::{self, DbClient};
use crate::host;
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::{builder, step, RunConfig};
use crate::trace::{now, Mode, Outcome, Recorder, Shared};

/// Cache servers.
pub const SERVERS: usize = 4;
/// Keys the application reads.
pub const KEYS: u64 = 100;
/// Application workers (each its own cluster client, as processes are).
pub const WORKERS: u64 = 6;
/// When server L is cut off.
pub const LOSS_AT: Duration = Duration::from_millis(600);
/// When it comes back.
pub const RETURN_AT: Duration = Duration::from_millis(1800);
/// When server C crashes.
pub const CRASH_AT: Duration = Duration::from_millis(2400);
/// When it restarts (empty).
pub const RESTART_AT: Duration = Duration::from_millis(2700);
/// When the workers stop.
pub const END: Duration = Duration::from_millis(3600);
/// TTL of cached rows (seconds).
pub const TTL: i64 = 300;
/// A database query's time.
pub const QUERY_TIME: Duration = Duration::from_millis(5);
/// The client library's request timeout.
pub const TIMEOUT: Duration = Duration::from_millis(50);

/// pymemcache's `HashClient` rules, its defaults (1 s, 60 s) scaled down
/// so a run lasts seconds.
pub const PYMEMCACHE: Failover = Failover::Pymemcache {
    retry_attempts: 2,
    retry_timeout: Duration::from_millis(100),
    dead_timeout: Duration::from_millis(500),
};
/// twemproxy's `auto_eject_hosts` (`server_failure_limit: 2`,
/// `server_retry_timeout` scaled to 500 ms).
pub const AUTO_EJECT: Failover = Failover::AutoEject {
    failure_limit: 2,
    retry_timeout: Duration::from_millis(500),
};

/// The phases database queries are counted in.
const PHASES: [(&str, Duration, Duration); 5] = [
    ("cold", Duration::ZERO, LOSS_AT),
    ("lost", LOSS_AT, RETURN_AT),
    ("returned", RETURN_AT, CRASH_AT),
    ("crashed", CRASH_AT, RESTART_AT),
    ("restarted", RESTART_AT, END),
];

fn host_name(i: usize) -> &'static str {
    ["cache-0", "cache-1", "cache-2", "cache-3"][i]
}

fn key(i: u64) -> String {
    format!("item:{i}")
}

/// The seed's hashing, lost server and crashed server.
fn setup(seed: u64) -> (Hashing, usize, usize) {
    let mut rng = Rng::new(seed, 31);
    let hashing = if seed.is_multiple_of(2) {
        Hashing::Rendezvous
    } else {
        Hashing::Ketama
    };
    let lost = rng.below(SERVERS as u64) as usize;
    let crashed = (lost + 1 + rng.below(SERVERS as u64 - 1) as usize) % SERVERS;
    (hashing, lost, crashed)
}

/// A hit the application served: key, row version, when it asked, which
/// server answered.
type Hits = Rc<RefCell<Vec<(String, u64, Duration, usize)>>>;

fn pool(name: &str, seed: u64, stream: u64, rec: &Shared, hashing: Hashing) -> Pool {
    let clients = (0..SERVERS)
        .map(|s| {
            // Requests go out whole: the cluster is about placement and
            // failover, and framing has scenarios of its own.
            Client::new(
                name.to_string(),
                host_name(s),
                Rng::new(seed, stream * 16 + s as u64),
                rec.clone(),
                TIMEOUT,
            )
            .whole_writes()
        })
        .collect();
    let failover = match hashing {
        Hashing::Rendezvous => PYMEMCACHE,
        Hashing::Ketama => AUTO_EJECT,
    };
    Pool::new(clients, hashing, failover)
}

/// One worker: get-or-compute on random keys until [`END`].
async fn worker(i: u64, seed: u64, rec: Shared, hashing: Hashing, hits: Hits) {
    let mut p = pool(&format!("worker-{i}"), seed, 10 + i, &rec, hashing);
    let mut rng = Rng::new(seed, 100 + i);
    let Ok(mut db) = DbClient::connect().await else {
        return;
    };
    while now() < END {
        let k = key(rng.below(KEYS));
        let t = now();
        match p.run(Request::get(&k, false)).await {
            Answer::Reply(Outcome::Value(h), s) => {
                let v = db::version_of(&h.value).unwrap_or(0);
                hits.borrow_mut().push((k, v, t, s));
            }
            // A miss, a failed server or one the client skips: compute.
            _ => {
                let Ok(row) = db.query(&k).await else { return };
                p.run(Request::store(Mode::Set, &k, &row, 0, TTL, None))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
    }
}

/// The writer: updates a row, then deletes its cache entry.
async fn writer(seed: u64, rec: Shared, hashing: Hashing) {
    let mut p = pool("writer", seed, 5, &rec, hashing);
    let mut rng = Rng::new(seed, 99);
    let Ok(mut db) = DbClient::connect().await else {
        return;
    };
    while now() < END {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(20))).await;
        let k = key(rng.below(KEYS));
        if db.update(&k).await.is_err() {
            return;
        }
        p.run(Request::delete(&k)).await;
    }
}

/// What one simulation of the seed gave.
struct Outcome1 {
    queries: Vec<(String, Json)>,
    stale: u64,
    stale_lost: u64,
    hits: u64,
    violations: Vec<String>,
    checked: Checked,
    hash: u64,
    events: usize,
    trace: Option<String>,
    fired: u64,
}

fn simulate(cfg: &RunConfig, flush_on_return: bool) -> Outcome1 {
    let seed = cfg.seed;
    let (hashing, lost, crashed) = setup(seed);
    let rec = Recorder::shared(cfg.keep_trace);
    // Ticks of 2 ms: the run spans seconds, and turmoil's cost is per
    // host per tick (latencies stay 1–4 ms, in whole ticks).
    let mut sim = builder(seed, END + Duration::from_secs(5))
        .tick_duration(Duration::from_millis(2))
        .build();
    let log: db::Shared = Rc::new(RefCell::new(db::Log::default()));
    let l2 = log.clone();
    sim.host("db", move || db::serve(l2.clone(), QUERY_TIME));
    for s in 0..SERVERS {
        let (r, plant) = (rec.clone(), cfg.plant);
        sim.host(host_name(s), move || {
            host::serve(host_name(s), r.clone(), plant)
        });
    }
    let hits: Hits = Rc::new(RefCell::new(Vec::new()));
    let (r, h) = (rec.clone(), hits.clone());
    // Every worker and the writer share one host: a partition from it
    // cuts the whole application off a server, as a network fault would.
    sim.client("app", async move {
        let mut tasks = Vec::new();
        for i in 0..WORKERS {
            tasks.push(tokio::task::spawn_local(worker(
                i,
                seed,
                r.clone(),
                hashing,
                h.clone(),
            )));
        }
        tasks.push(tokio::task::spawn_local(writer(seed, r.clone(), hashing)));
        for t in tasks {
            t.await?;
        }
        Ok(())
    });
    // The operator, outside the partition, flushes the returning server.
    let returned = Rc::new(Cell::new(false));
    if flush_on_return {
        let (r, ret) = (rec.clone(), returned.clone());
        sim.client("ops", async move {
            while !ret.get() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut c = Client::new(
                "operator".into(),
                host_name(lost),
                Rng::new(seed, 7),
                r,
                Duration::from_secs(1),
            );
            while c.flush_all().await.is_err() {}
            Ok(())
        });
    }
    let mut violations = Vec::new();
    let mut stage = 0;
    loop {
        let t = sim.elapsed();
        let at = |s: Duration| t >= s;
        match stage {
            0 if at(LOSS_AT) => {
                sim.partition("app", host_name(lost));
                rec.borrow_mut()
                    .event(t, &format!("{} cut off", host_name(lost)));
                stage += 1;
            }
            1 if at(RETURN_AT) => {
                sim.repair("app", host_name(lost));
                returned.set(true);
                rec.borrow_mut()
                    .event(t, &format!("{} back", host_name(lost)));
                stage += 1;
            }
            2 if at(CRASH_AT) => {
                sim.crash(host_name(crashed));
                rec.borrow_mut()
                    .event(t, &format!("{} crashed", host_name(crashed)));
                stage += 1;
            }
            3 if at(RESTART_AT) => {
                sim.bounce(host_name(crashed));
                stage += 1;
            }
            _ => {}
        }
        if step(&mut sim, &mut violations) {
            break;
        }
    }
    let rec = rec.borrow();
    let checked = check::history(
        &rec,
        Policy {
            no_stale_reads: true,
            no_silent_misses: true,
        },
    );
    violations.extend(checked.violations.iter().cloned());
    let log = log.borrow();
    let queries = PHASES
        .iter()
        .map(|(name, from, to)| (name.to_string(), Json::Int(log.queries_between(*from, *to))))
        .collect();
    let hits = hits.borrow();
    let stale: Vec<usize> = hits
        .iter()
        .filter(|(k, v, t, _)| *v < log.version_before(k, *t))
        .map(|h| h.3)
        .collect();
    Outcome1 {
        queries,
        stale: stale.len() as u64,
        stale_lost: stale.iter().filter(|&&s| s == lost).count() as u64,
        hits: hits.len() as u64,
        violations,
        checked,
        hash: rec.hash(),
        events: rec.len(),
        trace: rec.keep_text.then(|| rec.text.clone()),
        fired: rec.plant_fired,
    }
}

/// Runs the scenario: the seed without and with the mitigation.
pub fn run(cfg: &RunConfig) -> Report {
    let (hashing, lost, crashed) = setup(cfg.seed);
    let plain = simulate(cfg, false);
    let flushed = simulate(cfg, true);
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let hosts: Vec<&str> = (0..SERVERS).map(host_name).collect();
    let mut violations = Vec::new();
    let mut checked = Checked::default();
    let mut hash = crate::rng::FNV_START;
    let mut trace = cfg.keep_trace.then(String::new);
    for (name, o) in [("unmitigated", &plain), ("flushed", &flushed)] {
        violations.extend(o.violations.iter().map(|v| format!("{name}: {v}")));
        checked.absorb(Checked {
            violations: Vec::new(),
            ..o.checked.clone()
        });
        hash = crate::rng::fnv1a(&o.hash.to_le_bytes(), hash);
        if let (Some(t), Some(x)) = (trace.as_mut(), &o.trace) {
            t.push_str(&format!("--- {name}\n{x}"));
        }
    }
    let pair = |a: u64, b: u64| {
        Json::Obj(vec![
            ("unmitigated".into(), Json::Int(a)),
            ("flushed".into(), Json::Int(b)),
        ])
    };
    Report {
        scenario: "cluster",
        seed: cfg.seed,
        trace_hash: hash,
        trace_events: plain.events + flushed.events,
        ok: violations.is_empty(),
        violations,
        fields: vec![
            ("servers".into(), Json::Int(SERVERS as u64)),
            ("hashing".into(), Json::Str(hashing.name().into())),
            ("lost".into(), Json::Str(host_name(lost).into())),
            ("crashed".into(), Json::Str(host_name(crashed).into())),
            (
                "db_queries".into(),
                Json::Obj(vec![
                    ("unmitigated".into(), Json::Obj(plain.queries.clone())),
                    ("flushed".into(), Json::Obj(flushed.queries.clone())),
                ]),
            ),
            (
                "remapped".into(),
                Json::Obj(vec![
                    (
                        "rendezvous".into(),
                        Json::Num(remapped(Hashing::Rendezvous, &hosts, lost, &keys)),
                    ),
                    (
                        "ketama".into(),
                        Json::Num(remapped(Hashing::Ketama, &hosts, lost, &keys)),
                    ),
                ]),
            ),
            ("stale_reads".into(), pair(plain.stale, flushed.stale)),
            (
                "stale_from_lost".into(),
                pair(plain.stale_lost, flushed.stale_lost),
            ),
            ("hits".into(), pair(plain.hits, flushed.hits)),
        ],
        trace,
        plant_fired: cfg.plant.map(|_| plain.fired + flushed.fired),
        checked,
    }
}
