//! Runs a [`Spec`]: builds the simulation it describes for one seed, runs
//! its fault schedule, checks the history and its expectations, and
//! reports.
//!
//! Each client group is one turmoil host whose clients are tasks: a
//! network fault between a group and a server cuts every client of the
//! group, and many clients cost one host, not many.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use super::{Fault, Group, OneOf, Pattern, Spec, Strategy, Ttl, Variant};
use crate::check::{self, Checked, Policy};
use crate::client::{Client, Failed, Request};
use crate::cluster::{Answer, Failover, Hashing, Pool};
use crate::db::{self, DbClient};
use crate::host::{self, ClockOffset, HostConfig, HostProbe, Probe, EPOCH_SECS};
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::cas_counter::{count_of, read_count_retrying, reader};
use crate::scenario::hostile::{self, Population};
use crate::scenario::{builder, herd, percentile, step, RunConfig};
use crate::trace::{now, Mode, Outcome, Recorder, Shared};
use crate::warm::Disk;
use wasmcached_core::shards::MAX_SHARDS;

/// What a fault can reach inside a server host: its wall clock's offset,
/// and its disk when the scenario does warm restarts.
struct Knobs {
    offset: ClockOffset,
    disk: Option<Disk>,
}

/// Commands a `random` mix may weigh.
const MIX: &[&str] = &[
    "get",
    "gets",
    "multiget",
    "multigets",
    "mg",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "touch",
    "incr",
    "decr",
    "flush_all",
    "cache_memlimit",
];
/// Mix commands for the whole server: one server only, sent on their own.
const ADMIN: &[&str] = &["flush_all", "cache_memlimit"];
/// Most keys one `multiget` may ask for.
const MULTIGET_MAX: u64 = 20;
/// Fault kinds.
const KINDS: &[&str] = &[
    "crash",
    "restart",
    "partition",
    "hold",
    "latency",
    "lossy",
    "clock-jump",
    "warm-restart",
];
/// How long a `warm-restart` waits for the server's snapshot before it
/// bounces the server anyway (a crash: it was not serving), ms.
const WARM_STOP_WAIT_MS: u32 = 1000;

/// A host name that lives as long as the program (turmoil and the client
/// keep `&'static str` names); each distinct name is leaked once.
fn name(s: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(s) {
        return n;
    }
    let n: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(n);
    n
}

/// The server host names, `count` expanded.
fn server_names(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    for s in &spec.servers {
        match s.count {
            Some(n) if n > 1 => out.extend((0..n).map(|i| format!("{}-{i}", s.name))),
            _ => out.push(s.name.clone()),
        }
    }
    out
}

/// Checks what the types cannot: names that must exist, what patterns
/// need.
pub(super) fn validate(spec: &Spec) -> Result<(), String> {
    let servers = server_names(spec);
    if servers.is_empty() {
        return Err("no servers".into());
    }
    for s in &spec.servers {
        check_shards(s)?;
    }
    let known = |s: &str| servers.iter().any(|n| n == s);
    let groups: BTreeSet<&str> = spec.clients.iter().map(|g| g.name.as_str()).collect();
    for g in &spec.clients {
        if known(&g.name) || engine_host(spec, &g.name) {
            return Err(format!("client group {}: the name is taken", g.name));
        }
        for s in g.servers.iter().chain(g.fallback.iter()) {
            if !known(s) {
                return Err(format!("client group {}: no server {s}", g.name));
            }
        }
        let needs_db = matches!(g.pattern, Pattern::GetOrCompute | Pattern::Warmer)
            || (g.pattern == Pattern::Writer && g.invalidate_at_ms.is_none());
        if needs_db && spec.database.is_none() {
            return Err(format!("client group {}: needs a [database]", g.name));
        }
        if g.servers.len() > 1 && g.pattern == Pattern::GetOrCompute {
            if let Some(Strategy::Lease | Strategy::Fallback) = g.strategy {
                return Err(format!(
                    "client group {}: the lease and fallback strategies use one server",
                    g.name
                ));
            }
        }
        if g.pattern == Pattern::Hostile && !known("server") {
            return Err("the hostile pattern needs a server named `server`".into());
        }
        check_mix(g).map_err(|e| format!("client group {}: {e}", g.name))?;
        if let Some(w) = &g.wait_for {
            if !groups.contains(w.as_str()) {
                return Err(format!("client group {}: no group {w} to wait for", g.name));
            }
        }
        if let Some(h) = &g.hashing {
            if h != "rendezvous" && h != "ketama" {
                return Err(format!("client group {}: hashing {h}?", g.name));
            }
        }
        for t in &g.ttls {
            if let Ttl::Text(t) = t {
                if !t.starts_with("abs:") || t[4..].parse::<u64>().is_err() {
                    return Err(format!("client group {}: ttl {t}?", g.name));
                }
            }
        }
    }
    let kinds = spec.faults.iter().map(|f| f.kind.as_str()).chain(
        spec.random_faults
            .iter()
            .flat_map(|r| r.kinds.iter().map(String::as_str)),
    );
    for k in kinds {
        if !KINDS.contains(&k) {
            return Err(format!("unknown fault kind {k}"));
        }
    }
    for f in &spec.faults {
        if let Some(c) = &f.client {
            if !groups.contains(c.as_str()) {
                return Err(format!("fault at {} ms: no client group {c}", f.at_ms));
            }
        }
        match &f.server {
            Some(OneOf::One(s)) if !known(s) => return Err(format!("fault: no server {s}")),
            Some(OneOf::Any(v)) if v.iter().any(|s| !known(s)) => {
                return Err("fault: an unknown server among the choices".into())
            }
            _ => {}
        }
    }
    Ok(())
}

/// A `random` group's mix and the parameters of its commands.
fn check_mix(g: &Group) -> Result<(), String> {
    let Some(mix) = &g.mix else { return Ok(()) };
    if let Some(bad) = mix.keys().find(|k| !MIX.contains(&k.as_str())) {
        return Err(format!("unknown command {bad} in mix"));
    }
    let admin = mix
        .iter()
        .any(|(k, w)| *w > 0 && ADMIN.contains(&k.as_str()));
    if admin && g.servers.len() > 1 {
        return Err("flush_all and cache_memlimit need one server".into());
    }
    if let Some([lo, hi]) = g.multiget_keys {
        if lo < 1 || lo > hi || hi > MULTIGET_MAX {
            return Err(format!(
                "multiget_keys [{lo}, {hi}]: 1 <= low <= high <= {MULTIGET_MAX}"
            ));
        }
    }
    if let Some(bad) = g
        .memlimit_mb
        .iter()
        .flatten()
        .find(|m| !(8..=65536).contains(*m))
    {
        return Err(format!("memlimit_mb {bad}: 8 to 65536"));
    }
    if g.memlimit_mb.as_ref().is_some_and(Vec::is_empty) {
        return Err("memlimit_mb: empty".into());
    }
    Ok(())
}

/// Whether the engine adds a host named `host` to `spec`'s simulation: the
/// reader of final counts, the operator that flushes a healed partition
/// (any partition may, by a variant), the database.
fn engine_host(spec: &Spec, host: &str) -> bool {
    let counters = !spec.expect.final_counts.is_empty()
        || spec
            .clients
            .iter()
            .any(|g| matches!(g.pattern, Pattern::Naive | Pattern::Cas | Pattern::Incr));
    let partitions = spec.faults.iter().any(|f| f.kind == "partition")
        || spec
            .random_faults
            .iter()
            .any(|r| r.kinds.iter().any(|k| k == "partition"));
    match host {
        "reader" => counters,
        "operator" => partitions,
        "db" => spec.database.is_some(),
        _ => false,
    }
}

/// A server's `shards`: each choice 1 to [`MAX_SHARDS`].
fn check_shards(s: &super::Server) -> Result<(), String> {
    let choices: &[usize] = match &s.shards {
        None => &[],
        Some(OneOf::One(n)) => std::slice::from_ref(n),
        Some(OneOf::Any(v)) => v,
    };
    match choices.iter().find(|n| !(1..=MAX_SHARDS).contains(n)) {
        Some(n) => Err(format!(
            "server {}: shards {n}? (1 to {MAX_SHARDS})",
            s.name
        )),
        None => Ok(()),
    }
}

/// Runs every variant of `spec` for the seed; one report.
pub fn run(spec: &Spec, cfg: &RunConfig) -> Report {
    let variants: Vec<Option<&Variant>> = if spec.variants.is_empty() {
        vec![None]
    } else {
        spec.variants.iter().map(Some).collect()
    };
    let mut violations = Vec::new();
    let mut checked = Checked::default();
    let mut hash = crate::rng::FNV_START;
    let mut events = 0;
    let mut trace = cfg.keep_trace.then(String::new);
    let mut fired = 0;
    let mut per_variant: Vec<(String, Vec<(String, Json)>)> = Vec::new();
    for v in &variants {
        let label = v.map_or(String::new(), |v| v.name.clone());
        let o = simulate(spec, *v, cfg);
        let prefix = if label.is_empty() {
            String::new()
        } else {
            format!("{label}: ")
        };
        violations.extend(o.violations.iter().map(|m| format!("{prefix}{m}")));
        if let Some(max) = spec
            .expect
            .max_db_queries
            .as_ref()
            .and_then(|l| l.of(&label))
        {
            if o.db_queries > max {
                violations.push(format!(
                    "{prefix}{} database queries, expected at most {max}",
                    o.db_queries
                ));
            }
        }
        checked.absorb(Checked {
            violations: Vec::new(),
            ..o.checked
        });
        hash = crate::rng::fnv1a(&o.hash.to_le_bytes(), hash);
        events += o.events;
        fired += o.fired;
        if let (Some(t), Some(x)) = (trace.as_mut(), o.trace) {
            if !label.is_empty() {
                t.push_str(&format!("--- {label}\n"));
            }
            t.push_str(&x);
        }
        per_variant.push((label, o.fields));
    }
    // One variant: its fields. Several: each field as an object by
    // variant, as the built-in scenarios report them.
    let fields = if per_variant.len() == 1 {
        per_variant.pop().map(|(_, f)| f).unwrap_or_default()
    } else {
        let mut names: Vec<String> = Vec::new();
        for (_, f) in &per_variant {
            for (k, _) in f {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        names
            .into_iter()
            .map(|k| {
                let by: Vec<(String, Json)> = per_variant
                    .iter()
                    .filter_map(|(v, f)| {
                        f.iter()
                            .find(|(n, _)| *n == k)
                            .map(|(_, j)| (v.clone(), j.clone()))
                    })
                    .collect();
                (k, Json::Obj(by))
            })
            .collect()
    };
    Report {
        scenario: name(&spec.name),
        seed: cfg.seed,
        trace_hash: hash,
        trace_events: events,
        ok: violations.is_empty(),
        violations,
        fields,
        trace,
        plant_fired: cfg.plant.map(|_| fired),
        checked,
    }
}

/// One simulation's results.
struct Sim1 {
    fields: Vec<(String, Json)>,
    violations: Vec<String>,
    db_queries: u64,
    checked: Checked,
    hash: u64,
    events: usize,
    trace: Option<String>,
    fired: u64,
}

/// What the clients of one simulation share.
struct Shared1 {
    rec: Shared,
    seed: u64,
    servers: Vec<&'static str>,
    violations: RefCell<Vec<String>>,
    /// Groups still running (the final reader and the operator wait).
    running: Cell<u64>,
    /// Groups finished, by name (for `wait_for`).
    finished: RefCell<BTreeSet<String>>,
    /// Per group: operation latencies.
    latencies: RefCell<BTreeMap<String, Vec<Duration>>>,
    /// get-or-compute hits: key, row version, when asked.
    hits: RefCell<Vec<(String, u64, Duration)>>,
    /// Servers an operator must flush (healed partitions).
    to_flush: RefCell<Vec<&'static str>>,
    /// Final counts read at the end.
    finals: RefCell<BTreeMap<String, u64>>,
}

type World = Rc<Shared1>;

/// A group's connection: one server, or several placed by hashing.
enum Conn {
    One(Box<Client>),
    Many(Box<Pool>),
}

impl Conn {
    /// Sends one request; a server the cluster client skips answers as
    /// pymemcache does with `ignore_exc` (a miss, a failed store).
    async fn call(&mut self, req: Request) -> Result<Outcome, Failed> {
        match self {
            Conn::One(c) => c.call(req).await,
            // A multi-key read over a cluster: one read per key, each on
            // its key's server.
            Conn::Many(_) if req.is_multi() => {
                let mut first = Err(Failed);
                for (i, key) in req.keys.iter().enumerate() {
                    let got = Box::pin(self.call(Request::get(key, req.with_cas()))).await;
                    if i == 0 {
                        first = got;
                    }
                }
                first
            }
            Conn::Many(p) => {
                let read = req.cmd.is_read();
                match p.run(req).await {
                    Answer::Reply(o, _) => Ok(o),
                    Answer::Skipped if read => Ok(Outcome::Miss),
                    Answer::Skipped => Ok(Outcome::NotStored),
                    Answer::Failed(_) => Err(Failed),
                }
            }
        }
    }

    async fn pipeline(&mut self, reqs: &[Request]) -> Vec<Result<Outcome, Failed>> {
        match self {
            Conn::One(c) => c.pipeline(reqs).await,
            Conn::Many(_) => {
                let mut out = Vec::new();
                for r in reqs {
                    out.push(self.call(r.clone()).await);
                }
                out
            }
        }
    }

    fn single(&mut self) -> Option<&mut Client> {
        match self {
            Conn::One(c) => Some(c),
            Conn::Many(_) => None,
        }
    }
}

/// One client of a group: its name, connection, RNG.
struct Member<'a> {
    g: &'a Group,
    name: String,
    conn: Conn,
    rng: Rng,
    /// Writes so far (for unique values).
    writes: u64,
}

impl Member<'_> {
    fn unique(&mut self) -> String {
        self.writes += 1;
        format!("{}#{}", self.name, self.writes)
    }

    fn key(&mut self) -> String {
        let i = self.rng.below(self.g.keys.count.max(1));
        self.g.keys.key(i)
    }

    fn ttl(&mut self) -> i64 {
        if self.g.ttls.is_empty() {
            return 0;
        }
        match &self.g.ttls[self.rng.below(self.g.ttls.len() as u64) as usize] {
            Ttl::Secs(s) => *s,
            Ttl::Text(t) => {
                let ahead: u64 = t[4..].parse().unwrap_or(0);
                (EPOCH_SECS + now().as_secs() + ahead) as i64
            }
        }
    }

    fn value(&mut self) -> Vec<u8> {
        let classes = &self.g.values;
        let len = if classes.is_empty() {
            self.rng.below(32) as usize
        } else {
            let total: u64 = classes.iter().map(|c| c.weight.unwrap_or(1)).sum();
            let mut pick = self.rng.below(total.max(1));
            let mut class = classes[0];
            for c in classes {
                let w = c.weight.unwrap_or(1);
                if pick < w {
                    class = *c;
                    break;
                }
                pick -= w;
            }
            class.min
                + self
                    .rng
                    .below((class.max.saturating_sub(class.min) + 1) as u64)
                    as usize
        };
        let mut v = format!("{}:", self.unique()).into_bytes();
        v.extend((0..len).map(|i| b'a' + (i % 26) as u8));
        v
    }

    /// The keys of one multi-key read: `multiget_keys` draws of the key
    /// space (a key may come twice).
    fn multi_keys(&mut self) -> Vec<String> {
        let [lo, hi] = self.g.multiget_keys.unwrap_or([2, 10]);
        let n = lo + self.rng.below(hi.saturating_sub(lo) + 1);
        (0..n.max(1)).map(|_| self.key()).collect()
    }

    /// A limit for `cache_memlimit`, MB, from `memlimit_mb`.
    fn memlimit(&mut self) -> u64 {
        let sizes = self.g.memlimit_mb.as_deref().unwrap_or(&[8, 64]);
        let i = self.rng.below(sizes.len().max(1) as u64) as usize;
        sizes.get(i).copied().unwrap_or(64)
    }

    async fn pause(&mut self) {
        let [lo, hi] = self.g.pause_ms.unwrap_or([0, 5]);
        let ms = lo + self.rng.below(hi.saturating_sub(lo).max(1));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Whether the member should stop (its ops or its time are up).
    fn done(&self, ops: u64) -> bool {
        if let Some(until) = self.g.until_ms {
            if now() >= Duration::from_millis(until) {
                return true;
            }
        }
        self.g.ops.is_some_and(|n| ops >= n)
            || (self.g.ops.is_none() && self.g.until_ms.is_none() && ops >= 20)
    }
}

fn failover(g: &Group, hashing: Hashing) -> Failover {
    match (g.failover.as_deref(), hashing) {
        (Some("auto-eject"), _) | (None, Hashing::Ketama) => crate::scenario::cluster::AUTO_EJECT,
        _ => crate::scenario::cluster::PYMEMCACHE,
    }
}

/// The connection of member `i` of group `g`.
fn connect(w: &World, g: &Group, gi: u64, i: u64, name: &str) -> Conn {
    let timeout = Duration::from_millis(g.timeout_ms.unwrap_or(5000));
    let servers: Vec<&'static str> = if g.servers.is_empty() {
        vec![w.servers[0]]
    } else {
        g.servers.iter().map(|s| self::name(s)).collect()
    };
    let stream = 1000 * (gi + 1) + 16 * i;
    let client = |s: &'static str, k: u64| {
        Client::new(
            name.to_string(),
            s,
            Rng::new(w.seed, stream + k),
            w.rec.clone(),
            timeout,
        )
    };
    if servers.len() == 1 {
        return Conn::One(Box::new(client(servers[0], 0)));
    }
    let hashing = match g.hashing.as_deref() {
        Some("ketama") => Hashing::Ketama,
        _ => Hashing::Rendezvous,
    };
    // Requests to a cluster go out whole, as in the built-in `cluster`.
    let clients = servers
        .iter()
        .enumerate()
        .map(|(k, s)| client(s, k as u64).whole_writes())
        .collect();
    Conn::Many(Box::new(Pool::new(clients, hashing, failover(g, hashing))))
}

fn fail(w: &World, msg: String) {
    w.violations.borrow_mut().push(msg);
}

fn latency(w: &World, g: &Group, took: Duration) {
    w.latencies
        .borrow_mut()
        .entry(g.name.clone())
        .or_default()
        .push(took);
}

/// One member's life.
async fn member(w: World, g: Group, gi: u64, i: u64, strategy: Option<Strategy>) {
    let name = if g.count.unwrap_or(1) > 1 {
        format!("{}-{i}", g.name)
    } else {
        g.name.clone()
    };
    let conn = connect(&w, &g, gi, i, &name);
    let mut m = Member {
        g: &g,
        name,
        conn,
        rng: Rng::new(w.seed, 1000 * (gi + 1) + 16 * i + 15),
        writes: 0,
    };
    let mut db = if matches!(
        g.pattern,
        Pattern::GetOrCompute | Pattern::Writer | Pattern::Warmer
    ) && (g.pattern != Pattern::Writer || g.invalidate_at_ms.is_none())
    {
        match DbClient::connect().await {
            Ok(d) => Some(d),
            Err(_) => {
                fail(&w, format!("{}: cannot reach the database", m.name));
                return;
            }
        }
    } else {
        None
    };
    let mut old = g.fallback.as_ref().map(|s| {
        Client::new(
            m.name.clone(),
            self::name(s),
            Rng::new(w.seed, 1000 * (gi + 1) + 16 * i + 14),
            w.rec.clone(),
            Duration::from_millis(g.timeout_ms.unwrap_or(5000)),
        )
    });
    let bound = g.latency_bound_ms.map(Duration::from_millis);
    let mut ops = 0u64;
    match g.pattern {
        Pattern::Naive | Pattern::Cas | Pattern::Incr => {
            let key = g.keys.key(0);
            while !m.done(ops) {
                let t = now();
                let got = match g.pattern {
                    Pattern::Naive => visit_naive(&mut m, &key).await,
                    Pattern::Cas => visit_cas(&mut m, &key).await,
                    _ => visit_incr(&mut m, &key).await,
                };
                match got {
                    Ok(()) => {
                        ops += 1;
                        latency(&w, &g, now() - t);
                    }
                    Err(Failed) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                m.pause().await;
            }
        }
        Pattern::GetOrCompute => {
            let Some(db) = db.as_mut() else { return };
            let strategy = strategy.or(g.strategy).unwrap_or(Strategy::Naive);
            while !m.done(ops) {
                let key = m.key();
                let t = now();
                loop {
                    match get_or_compute(&w, &mut m, strategy, &key, old.as_mut(), db).await {
                        Ok(v) if db::is_row_of(&key, &v) => break,
                        Ok(v) => {
                            fail(&w, format!("{key} read {:?}", String::from_utf8_lossy(&v)));
                            break;
                        }
                        // The server failed under us: retry.
                        Err(Failed) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                    if m.done(ops) {
                        break;
                    }
                }
                ops += 1;
                latency(&w, &g, now() - t);
                m.pause().await;
            }
        }
        Pattern::Random => {
            let [lo, hi] = g.pipeline.unwrap_or([1, 1]);
            while !m.done(ops) {
                let n = lo.max(1) + m.rng.below(hi.saturating_sub(lo) + 1);
                let t = now();
                let failed = random_batch(&mut m, n).await;
                let took = now() - t;
                latency(&w, &g, took);
                if failed || bound.is_some_and(|b| took >= b) {
                    if let Some(b) = bound {
                        fail(
                            &w,
                            format!("{}: batch {ops} failed or took over {b:?}", m.name),
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                ops += 1;
                m.pause().await;
            }
        }
        Pattern::Writer => match g.invalidate_at_ms {
            Some(at) => {
                tokio::time::sleep(Duration::from_millis(at).saturating_sub(now())).await;
                let lease = strategy.or(g.strategy) == Some(Strategy::Lease);
                for k in 0..g.keys.count.max(1) {
                    let key = g.keys.key(k);
                    let req = if lease {
                        Request::meta(&key, &format!("md {key} I T30"), None)
                    } else {
                        Request::meta(&key, &format!("md {key}"), None)
                    };
                    if m.conn.call(req).await.is_err() {
                        fail(&w, format!("{}: invalidating {key} failed", m.name));
                    }
                }
            }
            None => {
                let Some(db) = db.as_mut() else { return };
                while !m.done(ops) {
                    m.pause().await;
                    let key = m.key();
                    if db.update(&key).await.is_err() {
                        break;
                    }
                    let _ = m.conn.call(Request::delete(&key)).await;
                    ops += 1;
                }
            }
        },
        Pattern::Warmer => {
            for k in 0..g.keys.count.max(1) {
                let key = g.keys.key(k);
                let ttl = m.ttl();
                let row = db::row(&key, 0, format!("warm-{}", m.name));
                let req = Request::store(Mode::Set, &key, &row, 0, ttl, None);
                if m.conn.call(req).await.is_err() {
                    fail(&w, format!("{}: warming {key} failed", m.name));
                }
            }
        }
        Pattern::Filler => {
            let mut n = 0;
            while !m.done(ops) {
                n += 1;
                let v = m.value();
                let key = format!("{}:{n}", g.keys.prefix);
                if m.conn
                    .call(Request::store(Mode::Set, &key, &v, 0, 0, None))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                ops += 1;
                m.pause().await;
            }
        }
        Pattern::Hostile => {}
    }
}

async fn visit_naive(m: &mut Member<'_>, key: &str) -> Result<(), Failed> {
    let next = match m.conn.call(Request::get(key, false)).await? {
        Outcome::Value(h) => count_of(&h.value) + 1,
        _ => 1,
    };
    let v = format!("{next} {}", m.unique());
    let ttl = m.ttl();
    m.conn
        .call(Request::store(Mode::Set, key, v.as_bytes(), 0, ttl, None))
        .await
        .map(|_| ())
}

async fn visit_cas(m: &mut Member<'_>, key: &str) -> Result<(), Failed> {
    loop {
        let ttl = m.ttl();
        match m.conn.call(Request::get(key, true)).await? {
            Outcome::Value(h) if h.cas.is_some() => {
                let v = format!("{} {}", count_of(&h.value) + 1, m.unique());
                let req = Request::store(Mode::Cas, key, v.as_bytes(), 0, ttl, h.cas);
                if m.conn.call(req).await? == Outcome::Stored {
                    return Ok(());
                }
            }
            _ => {
                let v = format!("1 {}", m.unique());
                let req = Request::store(Mode::Add, key, v.as_bytes(), 0, ttl, None);
                if m.conn.call(req).await? == Outcome::Stored {
                    return Ok(());
                }
            }
        }
    }
}

async fn visit_incr(m: &mut Member<'_>, key: &str) -> Result<(), Failed> {
    if let Outcome::Number(_) = m.conn.call(Request::incr(key, 1, false)).await? {
        return Ok(());
    }
    let ttl = m.ttl();
    m.conn
        .call(Request::store(Mode::Add, key, b"0", 0, ttl, None))
        .await?;
    loop {
        if let Outcome::Number(_) = m.conn.call(Request::incr(key, 1, false)).await? {
            return Ok(());
        }
    }
}

/// One read-through: the value the application ends up with.
async fn get_or_compute(
    w: &World,
    m: &mut Member<'_>,
    strategy: Strategy,
    key: &str,
    old: Option<&mut Client>,
    db: &mut DbClient,
) -> Result<Vec<u8>, Failed> {
    let t = now();
    if strategy == Strategy::Naive {
        if let Outcome::Value(h) = m.conn.call(Request::get(key, false)).await? {
            let v = db::version_of(&h.value).unwrap_or(0);
            w.hits.borrow_mut().push((key.to_string(), v, t));
            return Ok(h.value);
        }
        let row = db.query(key).await?;
        let ttl = m.ttl();
        let _ = m
            .conn
            .call(Request::store(Mode::Set, key, &row, 0, ttl, None))
            .await;
        return Ok(row);
    }
    let Some(cache) = m.conn.single() else {
        return Err(Failed);
    };
    let s = match strategy {
        Strategy::Lease => herd::Strategy::Lease,
        _ => herd::Strategy::Fallback,
    };
    herd::read(s, key, cache, old, db).await
}

/// A mix command for the whole server, sent after its batch.
#[derive(Clone, Copy, Debug)]
enum Admin {
    Flush,
    Memlimit(u64),
}

/// Sends `cmd` to the member's server (validation keeps these mixes to
/// one server).
async fn admin_op(m: &mut Member<'_>, cmd: Admin) -> Result<(), Failed> {
    let c = m.conn.single().ok_or(Failed)?;
    match cmd {
        Admin::Flush => c.flush_all().await,
        Admin::Memlimit(mb) => c.cache_memlimit(mb).await,
    }
}

/// One pipelined batch of `n` random commands; whether any failed.
async fn random_batch(m: &mut Member<'_>, n: u64) -> bool {
    let default: BTreeMap<String, u64> = [("get", 3), ("gets", 2), ("set", 3), ("delete", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mix = m.g.mix.clone().unwrap_or(default);
    let total: u64 = mix.values().sum();
    let mut reqs = Vec::new();
    let mut cas_keys = Vec::new();
    let mut admin = Vec::new();
    for _ in 0..n {
        let mut pick = m.rng.below(total.max(1));
        let mut cmd = "get";
        for (k, wgt) in &mix {
            if pick < *wgt {
                cmd = k;
                break;
            }
            pick -= wgt;
        }
        let key = m.key();
        let counter = format!("{}:n{}", m.g.keys.prefix, m.rng.below(2));
        let flags = m.rng.below(4) as u32;
        let req = match cmd {
            "get" => Request::get(&key, false),
            "gets" => Request::get(&key, true),
            "mg" => Request::meta(&key, &format!("mg {key} v f c"), None),
            "multiget" | "multigets" => Request::get_multi(&m.multi_keys(), cmd == "multigets"),
            "flush_all" | "cache_memlimit" => {
                admin.push(if cmd == "flush_all" {
                    Admin::Flush
                } else {
                    Admin::Memlimit(m.memlimit())
                });
                continue;
            }
            "set" | "add" | "replace" => {
                let mode = match cmd {
                    "set" => Mode::Set,
                    "add" => Mode::Add,
                    _ => Mode::Replace,
                };
                let (v, ttl) = (m.value(), m.ttl());
                Request::store(mode, &key, &v, flags, ttl, None)
            }
            "append" | "prepend" => {
                let mode = if cmd == "append" {
                    Mode::Append
                } else {
                    Mode::Prepend
                };
                let v = format!("+{}", m.unique());
                Request::store(mode, &key, v.as_bytes(), 0, 0, None)
            }
            "delete" => Request::delete(&key),
            "touch" => {
                let ttl = m.ttl();
                Request::touch(&key, ttl)
            }
            "incr" | "decr" => {
                let delta = 1 + m.rng.below(3);
                // A counter starts at 0 where it is missing.
                reqs.push(Request::store(Mode::Add, &counter, b"0", 0, 0, None));
                Request::incr(&counter, delta, cmd == "decr")
            }
            _ => {
                cas_keys.push(key);
                continue;
            }
        };
        reqs.push(req);
    }
    let mut failed = m.conn.pipeline(&reqs).await.iter().any(Result::is_err);
    for cmd in admin {
        failed |= admin_op(m, cmd).await.is_err();
    }
    // A CAS needs its token first: gets, then cas, not pipelined.
    for key in cas_keys {
        let ttl = m.ttl();
        match m.conn.call(Request::get(&key, true)).await {
            Ok(Outcome::Value(h)) if h.cas.is_some() => {
                let v = m.value();
                failed |= m
                    .conn
                    .call(Request::store(Mode::Cas, &key, &v, 0, ttl, h.cas))
                    .await
                    .is_err();
            }
            Ok(_) => {}
            Err(Failed) => failed = true,
        }
    }
    failed
}

/// Draws this seed's choices and runs one simulation.
fn simulate(spec: &Spec, variant: Option<&Variant>, cfg: &RunConfig) -> Sim1 {
    let seed = cfg.seed;
    let mut rng = Rng::new(seed, 77);
    let rec = Recorder::shared(cfg.keep_trace);
    let mut b = builder(seed, Duration::from_secs(spec.limit_s));
    let net = &spec.network;
    if let Some(ms) = net.min_latency_ms {
        b.min_message_latency(Duration::from_millis(ms));
    }
    if let Some(ms) = net.max_latency_ms {
        b.max_message_latency(Duration::from_millis(ms));
    }
    if let Some(n) = net
        .tcp_capacity
        .as_ref()
        .and_then(|c| c.pick(|n| rng.below(n)))
    {
        b.tcp_capacity(n);
    }
    if net
        .random_order
        .as_ref()
        .and_then(|c| c.pick(|n| rng.below(n)))
        .unwrap_or(false)
    {
        b.enable_random_order();
    }
    let mut sim = b.build();

    // Servers.
    let names = server_names(spec);
    let servers: Vec<&'static str> = names.iter().map(|n| name(n)).collect();
    let mut offsets: BTreeMap<&'static str, Knobs> = BTreeMap::new();
    let warm = uses_warm_restarts(spec);
    let mut probes: BTreeMap<&'static str, Probe> = BTreeMap::new();
    let hostile_group = spec.clients.iter().find(|g| g.pattern == Pattern::Hostile);
    let population = hostile_group.map(|g| {
        let h = g.hostile.unwrap_or_default();
        let d = Population::default();
        Population {
            good_clients: h.good_clients.unwrap_or(d.good_clients),
            good_ops: h.good_ops.unwrap_or(d.good_ops),
            idle: h.idle.unwrap_or(d.idle),
            slow_readers: h.slow_readers.unwrap_or(d.slow_readers),
            slowloris: h.slowloris.unwrap_or(d.slowloris),
            torn_writers: h.torn_writers.unwrap_or(d.torn_writers),
            flood: h.flood.unwrap_or(d.flood),
            flood_at: h.flood_at_ms.map_or(d.flood_at, Duration::from_millis),
            ..d
        }
    });
    let mut k = 0;
    for s in &spec.servers {
        for _ in 0..s.count.unwrap_or(1).max(1) {
            let host_name = servers[k];
            k += 1;
            let (mut hc, probe) = match &population {
                Some(p) if host_name == "server" => hostile::host_config(cfg, p),
                _ => {
                    let probe: Probe = Rc::new(RefCell::new(HostProbe::default()));
                    (HostConfig::standard(cfg.plant), probe)
                }
            };
            if let Some(mb) = s.memory_mb.as_ref().and_then(|m| m.pick(|n| rng.below(n))) {
                hc.store.memory_limit = mb << 20;
            }
            if let Some(n) = s.shards.as_ref().and_then(|n| n.pick(|k| rng.below(k))) {
                hc.shards = n;
            }
            if let Some(c) = s.max_connections {
                hc.max_connections = c;
            }
            if let Some(kb) = s.connection_memory_kb {
                hc.driver.memory_limit = kb << 10;
            }
            if let Some(w) = s.write_max {
                hc.write_max = w;
            }
            let skew = s
                .clock_skew_s
                .as_ref()
                .and_then(|c| c.pick(|n| rng.below(n)))
                .unwrap_or(0);
            let offset: ClockOffset = Rc::new(Cell::new(skew));
            hc.clock_offset = Some(offset.clone());
            hc.probe = Some(probe.clone());
            hc.disk = warm.then(Disk::default);
            let disk = hc.disk.clone();
            offsets.insert(host_name, Knobs { offset, disk });
            probes.insert(host_name, probe);
            let r = rec.clone();
            sim.host(host_name, move || {
                host::serve_with(host_name, r.clone(), hc.clone())
            });
        }
    }
    let log: Option<db::Shared> = spec.database.as_ref().map(|d| {
        let log: db::Shared = Rc::new(RefCell::new(db::Log::default()));
        let l2 = log.clone();
        let q = Duration::from_millis(d.query_ms.unwrap_or(50));
        sim.host("db", move || db::serve(l2.clone(), q));
        log
    });

    let w: World = Rc::new(Shared1 {
        rec: rec.clone(),
        seed,
        servers: servers.clone(),
        violations: RefCell::new(Vec::new()),
        running: Cell::new(0),
        finished: RefCell::new(BTreeSet::new()),
        latencies: RefCell::new(BTreeMap::new()),
        hits: RefCell::new(Vec::new()),
        to_flush: RefCell::new(Vec::new()),
        finals: RefCell::new(BTreeMap::new()),
    });

    // Client groups.
    let strategy = variant.and_then(|v| v.strategy);
    let mut client_hosts: Vec<String> = Vec::new();
    let tally = population.map(|p| hostile::populate(&mut sim, &rec, seed, p));
    if tally.is_some() {
        client_hosts.extend(["good".to_string(), "hostile".to_string()]);
    }
    for (gi, g) in spec.clients.iter().enumerate() {
        if g.pattern == Pattern::Hostile {
            continue;
        }
        w.running.set(w.running.get() + 1);
        client_hosts.push(g.name.clone());
        let (w, g) = (w.clone(), g.clone());
        sim.client(g.name.clone(), async move {
            if let Some(at) = g.start_ms {
                tokio::time::sleep(Duration::from_millis(at)).await;
            }
            if let Some(first) = &g.wait_for {
                while !w.finished.borrow().contains(first) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let tasks: Vec<_> = (0..g.count.unwrap_or(1))
                .map(|i| {
                    tokio::task::spawn_local(member(w.clone(), g.clone(), gi as u64, i, strategy))
                })
                .collect();
            for t in tasks {
                t.await?;
            }
            w.finished.borrow_mut().insert(g.name.clone());
            w.running.set(w.running.get() - 1);
            Ok(())
        });
    }
    // The final reader: every counter's final count.
    let mut counters: Vec<(String, &'static str)> = spec
        .clients
        .iter()
        .filter(|g| matches!(g.pattern, Pattern::Naive | Pattern::Cas | Pattern::Incr))
        .map(|g| {
            let s = g.servers.first().map_or(servers[0], |s| name(s));
            (g.keys.key(0), s)
        })
        .collect();
    for f in &spec.expect.final_counts {
        let s = f.server.as_deref().map_or(servers[0], name);
        if !counters.iter().any(|(k, sv)| *k == f.key && *sv == s) {
            counters.push((f.key.clone(), s));
        }
    }
    if !counters.is_empty() {
        let w2 = w.clone();
        let counters = counters.clone();
        sim.client("reader", async move {
            while w2.running.get() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for (key, server) in counters {
                let mut c = reader(server, seed, w2.rec.clone());
                let count = read_count_retrying(&mut c, &key).await;
                w2.finals.borrow_mut().insert(key, count);
            }
            Ok(())
        });
    }

    // Faults: the fixed ones, then those drawn from the seed.
    let flush_override = variant.and_then(|v| v.flush_on_heal);
    let mut schedule: Vec<(Duration, Action)> = Vec::new();
    let mut drawn: Vec<&'static str> = Vec::new();
    for f in &spec.faults {
        let server = pick_server(f, &servers, &mut drawn, &mut rng);
        let flush = flush_override.unwrap_or(f.flush_on_heal.unwrap_or(false));
        schedule.push((
            Duration::from_millis(f.at_ms),
            Action::Start(f.clone(), server, flush),
        ));
    }
    if let Some(r) = &spec.random_faults {
        let n = r.count[0] + rng.below(r.count[1].saturating_sub(r.count[0]) + 1);
        let server = r.server.as_deref().map_or(servers[0], name);
        for _ in 0..n {
            let at =
                r.window_ms[0] + rng.below(r.window_ms[1].saturating_sub(r.window_ms[0]).max(1));
            let kind = r.kinds[rng.below(r.kinds.len() as u64) as usize].clone();
            let groups: Vec<&Group> = spec
                .clients
                .iter()
                .filter(|g| g.pattern != Pattern::Hostile)
                .collect();
            let client = (!groups.is_empty())
                .then(|| groups[rng.below(groups.len() as u64) as usize].name.clone());
            let f = Fault {
                at_ms: at,
                duration_ms: Some(match kind.as_str() {
                    "partition" => 100 + rng.below(500),
                    "hold" => 50 + rng.below(300),
                    "crash" => rng.below(300),
                    _ => 300,
                }),
                latency_ms: Some(20 + rng.below(200)),
                rate: Some((20 + rng.below(200)) as f64 / 1000.0),
                seconds: Some([-50, -5, 5, 50][rng.below(4) as usize]),
                kind,
                server: None,
                client,
                flush_on_heal: None,
            };
            schedule.push((Duration::from_millis(at), Action::Start(f, server, false)));
        }
    }
    let needs_operator = schedule
        .iter()
        .any(|(_, a)| matches!(a, Action::Start(f, _, true) if f.kind == "partition"));
    if needs_operator {
        let w2 = w.clone();
        sim.client("operator", async move {
            loop {
                let next = w2.to_flush.borrow_mut().pop();
                match next {
                    Some(server) => {
                        let mut c = Client::new(
                            "operator".into(),
                            server,
                            Rng::new(seed, 7),
                            w2.rec.clone(),
                            Duration::from_secs(1),
                        );
                        while c.flush_all().await.is_err() {}
                    }
                    None if w2.running.get() == 0 => return Ok(()),
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        });
    }

    let mut violations = Vec::new();
    let mut faults = 0u64;
    loop {
        let t = sim.elapsed();
        schedule.sort_by_key(|(at, _)| *at);
        while schedule.first().is_some_and(|(at, _)| *at <= t) {
            let (_, a) = schedule.remove(0);
            if let Action::Start(..) = a {
                faults += 1;
            }
            if let Some(undo) = act(&mut sim, &rec, &w, &offsets, &client_hosts, a, t) {
                schedule.push(undo);
            }
        }
        if step(&mut sim, &mut violations) {
            break;
        }
    }

    // Judgement.
    let rec = rec.borrow();
    violations.extend(w.violations.borrow().iter().cloned());
    let checked = check::history(
        &rec,
        Policy {
            no_stale_reads: true,
            no_silent_misses: spec.expect.no_silent_misses.unwrap_or(true),
        },
    );
    violations.extend(checked.violations.iter().cloned());
    let mut fields: Vec<(String, Json)> = Vec::new();
    if let (Some(t), Some(p)) = (&tally, &population) {
        let probe = probes
            .get("server")
            .map(|p| p.borrow().clone())
            .unwrap_or_default();
        let (v, f) = hostile::judge(&rec, &t.borrow(), &probe, p);
        violations.extend(v);
        fields.extend(f);
    }
    let finals = w.finals.borrow();
    for f in &spec.expect.final_counts {
        let got = finals.get(&f.key).copied().unwrap_or(0);
        if got != f.equals {
            violations.push(format!("{} ended at {got}, expected {}", f.key, f.equals));
        }
    }
    if !finals.is_empty() {
        fields.push((
            "final".into(),
            Json::Obj(
                finals
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::Int(*v)))
                    .collect(),
            ),
        ));
    }
    let mut db_queries = 0;
    if let Some(log) = &log {
        let log = log.borrow();
        db_queries = log.total();
        fields.push(("db_queries".into(), Json::Int(db_queries)));
        if !spec.phases.is_empty() {
            fields.push((
                "db_queries_by_phase".into(),
                Json::Obj(
                    spec.phases
                        .iter()
                        .map(|p| {
                            let q = log.queries_between(
                                Duration::from_millis(p.from_ms),
                                Duration::from_millis(p.to_ms),
                            );
                            (p.name.clone(), Json::Int(q))
                        })
                        .collect(),
                ),
            ));
        }
        if !log.updates.is_empty() {
            let stale = w
                .hits
                .borrow()
                .iter()
                .filter(|(k, v, t)| *v < log.version_before(k, *t))
                .count() as u64;
            fields.push(("stale_reads".into(), Json::Int(stale)));
        }
    }
    let lat = w.latencies.borrow();
    if !lat.is_empty() {
        fields.push((
            "latency".into(),
            Json::Obj(
                lat.iter()
                    .map(|(g, l)| {
                        let mut l = l.clone();
                        l.sort();
                        (
                            g.clone(),
                            Json::Obj(vec![
                                ("p50_ms".into(), Json::Num(percentile(&l, 0.5))),
                                ("p99_ms".into(), Json::Num(percentile(&l, 0.99))),
                                ("max_ms".into(), Json::Num(percentile(&l, 1.0))),
                            ]),
                        )
                    })
                    .collect(),
            ),
        ));
    }
    fields.push(("ops".into(), Json::Int(rec.ops.len() as u64)));
    fields.push(("faults".into(), Json::Int(faults)));
    fields.push((
        "server_restarts".into(),
        Json::Int(rec.restarts.len().saturating_sub(servers.len()) as u64),
    ));
    Sim1 {
        fields,
        violations,
        db_queries,
        checked,
        hash: rec.hash(),
        events: rec.len(),
        trace: rec.keep_text.then(|| rec.text.clone()),
        fired: rec.plant_fired,
    }
}

/// A scheduled change to the simulation.
#[derive(Clone, Debug)]
enum Action {
    /// A fault begins (with its server, and whether to flush the server
    /// when a partition heals).
    Start(Fault, &'static str, bool),
    /// The server restarts after a crash.
    Restart(&'static str),
    /// A warm restart's bounce, once the server has written its snapshot
    /// (checked every millisecond, this many more times).
    WarmBounce(&'static str, u32),
    /// A network fault ends.
    Heal(Fault, &'static str, bool),
}

/// The server fault `f` hits: named, or drawn from its list (one no
/// earlier fault drew, where possible).
fn pick_server(
    f: &Fault,
    servers: &[&'static str],
    drawn: &mut Vec<&'static str>,
    rng: &mut Rng,
) -> &'static str {
    let s = match &f.server {
        None => servers[0],
        Some(OneOf::One(s)) => name(s),
        Some(OneOf::Any(list)) => {
            let fresh: Vec<&String> = list.iter().filter(|s| !drawn.contains(&name(s))).collect();
            let from: Vec<&String> = if fresh.is_empty() {
                list.iter().collect()
            } else {
                fresh
            };
            name(from[rng.below(from.len() as u64) as usize])
        }
    };
    drawn.push(s);
    s
}

/// Applies `a` at sim time `t`; what to do later, if anything.
fn act(
    sim: &mut turmoil::Sim<'_>,
    rec: &Shared,
    w: &World,
    offsets: &BTreeMap<&'static str, Knobs>,
    client_hosts: &[String],
    a: Action,
    t: Duration,
) -> Option<(Duration, Action)> {
    let f = match &a {
        Action::Restart(server) => {
            rec.borrow_mut().event(t, &format!("{server} restarting"));
            sim.bounce(*server);
            return None;
        }
        Action::WarmBounce(server, left) => {
            let disk = offsets.get(server).and_then(|k| k.disk.as_ref());
            return warm_bounce(sim, rec, disk, server, *left, t);
        }
        Action::Start(f, ..) | Action::Heal(f, ..) => f,
    };
    // Network faults cut the named group, or every client host.
    let hosts: Vec<String> = match &f.client {
        Some(c) => vec![c.clone()],
        None => client_hosts.to_vec(),
    };
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    match a {
        Action::Start(f, server, flush) => {
            rec.borrow_mut().event(
                t,
                &format!("fault {} on {server} from {:?}", f.kind, f.client),
            );
            let after = |ms: u64| t + Duration::from_millis(f.duration_ms.unwrap_or(ms));
            match f.kind.as_str() {
                "crash" => {
                    sim.crash(server);
                    Some((after(200), Action::Restart(server)))
                }
                "restart" => {
                    sim.bounce(server);
                    None
                }
                "warm-restart" => {
                    if let Some(d) = offsets.get(server).and_then(|k| k.disk.as_ref()) {
                        d.request_stop();
                    }
                    let next = t + Duration::from_millis(1);
                    Some((next, Action::WarmBounce(server, WARM_STOP_WAIT_MS)))
                }
                "partition" => {
                    for h in &hosts {
                        sim.partition(*h, server);
                    }
                    let end = after(300);
                    Some((end, Action::Heal(f, server, flush)))
                }
                "hold" => {
                    for h in &hosts {
                        sim.hold(*h, server);
                    }
                    let end = after(200);
                    Some((end, Action::Heal(f, server, flush)))
                }
                "latency" => {
                    let lat = Duration::from_millis(f.latency_ms.unwrap_or(100));
                    for h in &hosts {
                        sim.set_link_latency(*h, server, lat);
                    }
                    let end = after(400);
                    Some((end, Action::Heal(f, server, flush)))
                }
                "lossy" => {
                    for h in &hosts {
                        sim.set_link_fail_rate(*h, server, f.rate.unwrap_or(0.05));
                    }
                    let end = after(300);
                    Some((end, Action::Heal(f, server, flush)))
                }
                "clock-jump" => {
                    if let Some(k) = offsets.get(server) {
                        k.offset.set(k.offset.get() + f.seconds.unwrap_or(60));
                    }
                    None
                }
                _ => None,
            }
        }
        Action::Heal(f, server, flush) => {
            rec.borrow_mut()
                .event(t, &format!("fault {} on {server} over", f.kind));
            for h in &hosts {
                match f.kind.as_str() {
                    "partition" => sim.repair(*h, server),
                    "hold" => sim.release(*h, server),
                    "latency" => sim.set_link_latency(*h, server, Duration::from_millis(2)),
                    _ => sim.set_link_fail_rate(*h, server, 0.0),
                }
            }
            if flush && f.kind == "partition" {
                w.to_flush.borrow_mut().push(server);
            }
            None
        }
        Action::Restart(_) | Action::WarmBounce(..) => None,
    }
}

/// Whether any fault of `spec` (fixed or drawn) is a warm restart: its
/// servers then get disks.
fn uses_warm_restarts(spec: &Spec) -> bool {
    let fixed = spec.faults.iter().map(|f| f.kind.as_str());
    let drawn = spec
        .random_faults
        .iter()
        .flat_map(|r| r.kinds.iter().map(String::as_str));
    fixed.chain(drawn).any(|k| k == "warm-restart")
}

/// A warm restart's second half: bounces `server` once its snapshot is
/// written (it restores it as it starts), or after `left` more
/// milliseconds without (then it starts cold, as after a crash).
fn warm_bounce(
    sim: &mut turmoil::Sim<'_>,
    rec: &Shared,
    disk: Option<&Disk>,
    server: &'static str,
    left: u32,
    t: Duration,
) -> Option<(Duration, Action)> {
    let written = disk.is_some_and(Disk::is_written);
    if !written && left > 0 {
        let next = t + Duration::from_millis(1);
        return Some((next, Action::WarmBounce(server, left - 1)));
    }
    let how = if written { "warm" } else { "cold" };
    rec.borrow_mut()
        .event(t, &format!("{server} restarting ({how})"));
    sim.bounce(server);
    None
}
