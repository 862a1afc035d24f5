//! `thundering-herd`: K clients read H hot keys backed by the database.
//! The cache is cold at the start (a fresh server), every hot key is
//! invalidated by a writer mid-run (the naive and fallback strategies
//! delete, `lease` uses `md I`), and the server crashes and restarts. Three strategies, each in its own
//! simulation with the same seed and workload:
//! * `naive`: miss -> query -> set;
//! * `lease`: meta protocol: `mg N R` hands one client the win (`W`), which
//!   refills with a CAS-guarded `ms`; the others (`Z`) wait or serve stale;
//!   writers invalidate with `md I` (stale-while-revalidate);
//! * `fallback`: pymemcache's FallbackClient: a new empty server in front of
//!   a warm old one during a migration.
//!
//! With `lease`, the database sees at most one query per hot key per cold
//! event.
//!
//! Each strategy runs twice: with the restart a crash (the server comes
//! back empty: a cold event) and with it planned (a graceful stop writes
//! the snapshot and the server comes back warm, see [`crate::warm`]: the
//! restart is no cold event). `db_queries` and `db_queries_warm_restart`
//! report both.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::check::{self, Checked, Policy};
use crate::client::{Client, Failed};
use crate::db::{self, DbClient};
use crate::host::{self, HostConfig};
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::{percentile, sim, RunConfig};
use crate::trace::{now, Mode, Recorder, Shared};
use crate::warm::Disk;

/// Reading clients.
pub const CLIENTS: u64 = 20;
/// Hot keys.
pub const HOT_KEYS: u64 = 5;
/// Reads per client.
pub const READS: u64 = 20;
/// When a writer invalidates every hot key (the data changed).
pub const INVALIDATE_AT: Duration = Duration::from_millis(200);
/// When the server crashes and restarts (or, planned, stops gracefully and
/// restarts warm).
pub const CRASH_AT: Duration = Duration::from_millis(400);
/// Events after which every hot key must be recomputed: the fresh start,
/// the invalidation and the restart.
pub const COLD_EVENTS: u64 = 3;
/// TTL of the values the naive and fallback strategies cache (seconds).
pub const TTL: i64 = 300;

/// How the server restarts at [`CRASH_AT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// A crash: it comes back empty.
    Cold,
    /// Planned: a graceful stop writes the snapshot, it comes back warm.
    Warm,
}

/// The strategies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Miss, query, set.
    Naive,
    /// Meta-protocol leases.
    Lease,
    /// FallbackClient over a warm old server.
    Fallback,
}

impl Strategy {
    /// Name for reports and scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Lease => "lease",
            Strategy::Fallback => "fallback",
        }
    }
}

/// One read with the strategy; returns the value.
pub(crate) async fn read(
    strategy: Strategy,
    key: &str,
    cache: &mut Client,
    old: Option<&mut Client>,
    db: &mut DbClient,
) -> Result<Vec<u8>, Failed> {
    match strategy {
        Strategy::Naive => {
            if let Some((v, _)) = cache.get(key, false).await? {
                return Ok(v);
            }
            let v = db.query(key).await?;
            cache.write(Mode::Set, key, &v, 0, TTL, None).await?;
            Ok(v)
        }
        Strategy::Lease => loop {
            let m = cache
                .meta(key, &format!("mg {key} N30 R5 c v"), None)
                .await?;
            if m.has('W') {
                let v = db.query(key).await?;
                let cas = m.num('c').unwrap_or(0);
                cache
                    .meta(key, &format!("ms {key} {} T60 C{cas}", v.len()), Some(&v))
                    .await?;
                return Ok(v);
            }
            if !m.value.is_empty() {
                return Ok(m.value);
            }
            // Someone else is recomputing: back off and ask again.
            tokio::time::sleep(Duration::from_millis(10)).await;
        },
        Strategy::Fallback => {
            if let Some((v, _)) = cache.get(key, false).await? {
                return Ok(v);
            }
            if let Some(old) = old {
                if let Some((v, _)) = old.get(key, false).await? {
                    return Ok(v);
                }
            }
            let v = db.query(key).await?;
            cache.write(Mode::Set, key, &v, 0, TTL, None).await?;
            Ok(v)
        }
    }
}

struct Outcome {
    queries: u64,
    latencies: Vec<Duration>,
    violations: Vec<String>,
    hash: u64,
    events: usize,
    trace: Option<String>,
    checked: Checked,
    fired: u64,
    /// Items the warm restart brought back.
    restored: u64,
}

/// One reading client: [`READS`] reads of random hot keys, each retried
/// until it returns the key's row.
async fn reader(
    i: u64,
    seed: u64,
    strategy: Strategy,
    rec: Shared,
    lat: Rc<RefCell<Vec<Duration>>>,
    warmed: Rc<RefCell<bool>>,
) -> turmoil::Result {
    while !*warmed.borrow() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cache = Client::new(
        format!("client-{i}"),
        "server",
        Rng::new(seed, i + 1),
        rec.clone(),
        Duration::from_secs(2),
    );
    let mut old = (strategy == Strategy::Fallback).then(|| {
        Client::new(
            format!("client-{i}"),
            "old",
            Rng::new(seed, 1000 + i),
            rec.clone(),
            Duration::from_secs(2),
        )
    });
    let mut db = DbClient::connect().await.map_err(|_| "db")?;
    let mut rng = Rng::new(seed, 5000 + i);
    for _ in 0..READS {
        let key = format!("hot:{}", rng.below(HOT_KEYS));
        let t = now();
        loop {
            match read(strategy, &key, &mut cache, old.as_mut(), &mut db).await {
                Ok(v) if db::is_row_of(&key, &v) => break,
                Ok(v) => return Err(format!("{key} read {:?}", String::from_utf8_lossy(&v)).into()),
                // The server crashed under us: retry on a new connection.
                Err(Failed) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        lat.borrow_mut().push(now() - t);
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
    }
    Ok(())
}

fn run_strategy(cfg: &RunConfig, strategy: Strategy, restart: Restart) -> Outcome {
    let rec: Shared = Recorder::shared(cfg.keep_trace);
    let mut sim = sim(cfg.seed, Duration::from_secs(60));
    let log: db::Shared = Rc::new(RefCell::new(db::Log::default()));
    let l2 = log.clone();
    sim.host("db", move || db::serve(l2.clone(), db::QUERY_TIME));
    let (r, plant) = (rec.clone(), cfg.plant);
    let disk = Disk::default();
    let d = (restart == Restart::Warm).then(|| disk.clone());
    sim.host("server", move || {
        let cfg = HostConfig {
            disk: d.clone(),
            ..HostConfig::standard(plant)
        };
        host::serve_with("server", r.clone(), cfg)
    });
    let warmed = Rc::new(RefCell::new(strategy != Strategy::Fallback));
    if strategy == Strategy::Fallback {
        let r = rec.clone();
        sim.host("old", move || host::serve("old", r.clone(), None));
        let (r, w, seed) = (rec.clone(), warmed.clone(), cfg.seed);
        sim.client("warmer", async move {
            let mut old = Client::new(
                "warmer".into(),
                "old",
                Rng::new(seed, 999),
                r,
                Duration::from_secs(5),
            );
            for k in 0..HOT_KEYS {
                let key = format!("hot:{k}");
                old.write(Mode::Set, &key, &db::row(&key, 0, "warm"), 0, TTL, None)
                    .await
                    .map_err(|_| "warm")?;
            }
            *w.borrow_mut() = true;
            Ok(())
        });
    }
    let (r, seed) = (rec.clone(), cfg.seed);
    sim.client("writer", async move {
        tokio::time::sleep(INVALIDATE_AT).await;
        let mut c = Client::new(
            "writer".into(),
            "server",
            Rng::new(seed, 4242),
            r,
            Duration::from_secs(2),
        );
        for k in 0..HOT_KEYS {
            let key = format!("hot:{k}");
            let line = match strategy {
                Strategy::Lease => format!("md {key} I T30"),
                _ => format!("md {key}"),
            };
            c.meta(&key, &line, None).await.map_err(|_| "invalidate")?;
        }
        Ok(())
    });
    let latencies = Rc::new(RefCell::new(Vec::new()));
    // The readers are tasks of one host: the application's processes, as
    // one machine would run them (and one simulated host costs turmoil far
    // less per step than twenty).
    let (rec2, lat, warmed2, seed) = (rec.clone(), latencies.clone(), warmed.clone(), cfg.seed);
    sim.client("app", async move {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (rec, lat, warmed) = (rec2.clone(), lat.clone(), warmed2.clone());
                tokio::task::spawn_local(reader(i, seed, strategy, rec, lat, warmed))
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok(())
    });
    let mut violations = Vec::new();
    let mut crashed = false;
    loop {
        if !crashed && sim.elapsed() >= CRASH_AT {
            // A planned restart waits for the snapshot before the bounce.
            if restart == Restart::Cold || disk.is_written() {
                sim.bounce("server");
                crashed = true;
            } else if !disk.stop_requested() {
                disk.request_stop();
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                violations.push(format!("{}: {e}", strategy.name()));
                break;
            }
        }
    }
    let rec = rec.borrow();
    let policy = Policy {
        no_stale_reads: true,
        no_silent_misses: true,
    };
    let checked = check::history(&rec, policy);
    violations.extend(
        checked
            .violations
            .iter()
            .map(|v| format!("{}: {v}", strategy.name())),
    );
    let queries = log.borrow().total();
    let mut lat = latencies.borrow().clone();
    lat.sort();
    Outcome {
        queries,
        latencies: lat,
        violations,
        hash: rec.hash(),
        events: rec.len(),
        trace: rec.keep_text.then(|| rec.text.clone()),
        checked,
        fired: rec.plant_fired,
        restored: disk.restored(),
    }
}

/// Runs the three strategies, each with a cold and a warm restart.
pub fn run(cfg: &RunConfig) -> Report {
    let mut violations = Vec::new();
    let mut queries = Vec::new();
    let mut queries_warm = Vec::new();
    let mut latency = Vec::new();
    let mut hash = crate::rng::FNV_START;
    let mut events = 0;
    let mut trace = cfg.keep_trace.then(String::new);
    let mut checked = Checked::default();
    let mut fired = 0;
    for s in [Strategy::Naive, Strategy::Lease, Strategy::Fallback] {
        let w = run_strategy(cfg, s, Restart::Warm);
        let warm_bound = HOT_KEYS * (COLD_EVENTS - 1);
        if s == Strategy::Lease && w.queries > warm_bound {
            violations.push(format!(
                "lease, warm restart: {} database queries, more than one per hot key per cold event ({warm_bound})",
                w.queries
            ));
        }
        // The fallback strategy reads the old server and never fills the
        // new one, so only the others have something to restore.
        if w.restored == 0 && s != Strategy::Fallback {
            violations.push(format!("{}: the warm restart restored nothing", s.name()));
        }
        violations.extend(w.violations.iter().map(|v| format!("warm restart: {v}")));
        fired += w.fired;
        checked.absorb(Checked {
            violations: Vec::new(),
            ..w.checked
        });
        hash = crate::rng::fnv1a(&w.hash.to_le_bytes(), hash);
        events += w.events;
        if let (Some(t), Some(x)) = (trace.as_mut(), w.trace) {
            t.push_str(&format!("--- {}, warm restart\n{x}", s.name()));
        }
        queries_warm.push((s.name().to_string(), Json::Int(w.queries)));
        let o = run_strategy(cfg, s, Restart::Cold);
        if s == Strategy::Lease && o.queries > HOT_KEYS * COLD_EVENTS {
            violations.push(format!(
                "lease: {} database queries, more than one per hot key per cold event ({})",
                o.queries,
                HOT_KEYS * COLD_EVENTS
            ));
        }
        violations.extend(o.violations);
        fired += o.fired;
        checked.absorb(Checked {
            violations: Vec::new(),
            ..o.checked
        });
        hash = crate::rng::fnv1a(&o.hash.to_le_bytes(), hash);
        events += o.events;
        if let (Some(t), Some(x)) = (trace.as_mut(), o.trace) {
            t.push_str(&format!("--- {}\n{x}", s.name()));
        }
        queries.push((s.name().to_string(), Json::Int(o.queries)));
        latency.push((
            s.name().to_string(),
            Json::Obj(vec![
                ("p50_ms".into(), Json::Num(percentile(&o.latencies, 0.5))),
                ("p99_ms".into(), Json::Num(percentile(&o.latencies, 0.99))),
                ("max_ms".into(), Json::Num(percentile(&o.latencies, 1.0))),
            ]),
        ));
    }
    Report {
        scenario: "thundering-herd",
        seed: cfg.seed,
        trace_hash: hash,
        trace_events: events,
        ok: violations.is_empty(),
        violations,
        fields: vec![
            ("db_queries".into(), Json::Obj(queries)),
            ("db_queries_warm_restart".into(), Json::Obj(queries_warm)),
            ("hot_keys".into(), Json::Int(HOT_KEYS)),
            ("cold_events".into(), Json::Int(COLD_EVENTS)),
            ("clients".into(), Json::Int(CLIENTS)),
            ("reads".into(), Json::Int(CLIENTS * READS)),
            ("latency".into(), Json::Obj(latency)),
        ],
        trace,
        plant_fired: cfg.plant.map(|_| fired),
        checked,
    }
}
