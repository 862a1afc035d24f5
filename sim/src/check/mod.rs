//! The history checkers: a run's operations against what a cache may
//! legally do.
//!
//! Two passes:
//! * [`fast`]: direct invariants (values come from writes, no read of a
//!   superseded value, CAS tokens name one value and are accepted once,
//!   no silent misses where the scenario rules them out);
//! * [`linear`]: per key, a search for a legal sequential order against the
//!   item model ([`model`]: value, flags, CAS value, `add`/`replace`/
//!   `append`/`cas`/`incr`/`touch` semantics, the lease flags of `mg`/`md`,
//!   TTLs), where items vanish only where the run recorded a reason and
//!   timed-out operations may or may not have taken effect.
//!
//! A cache is not a database: items vanish through eviction, expiry,
//! flush or a restart. The recorder ([`crate::trace::Recorder`]) keeps
//! each such disruption with its time window, and the model lets an item
//! vanish only inside one (or after its TTL may have run out).

pub mod fast;
pub mod linear;
pub mod model;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use fast::{check, Policy};
use linear::{check_key, Verdict};
use model::{Ctx, Micros, NEVER};

use crate::host::EPOCH_SECS;
use crate::trace::{Cause, Op, Outcome, Recorder};

/// How every violation the linearizability search finds begins.
pub const NOT_LINEARIZABLE: &str = "not linearizable";

/// Violations reported per run at most (one per key).
const MAX_REPORTED: usize = 5;

/// What checking one run found and cost.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// One message per violation (empty: legal).
    pub violations: Vec<String>,
    /// Keys searched.
    pub keys: usize,
    /// Operations searched.
    pub ops: usize,
    /// Search steps, all keys.
    pub steps: u64,
    /// Keys whose search ran out of budget (unchecked, not failed).
    pub unknown: usize,
    /// Wall-clock time both passes took (not part of any report's JSON:
    /// it differs between runs of one seed).
    pub elapsed: Duration,
}

impl Checked {
    /// Adds another check's figures (scenarios that run several
    /// simulations per seed).
    pub fn absorb(&mut self, other: Checked) {
        self.violations.extend(other.violations);
        self.keys += other.keys;
        self.ops += other.ops;
        self.steps += other.steps;
        self.unknown += other.unknown;
        self.elapsed += other.elapsed;
    }
}

fn micros(d: Duration) -> Micros {
    d.as_micros().min(u128::from(NEVER - 1)) as Micros
}

/// Runs both checkers over the recorded run.
pub fn history(rec: &Recorder, policy: Policy) -> Checked {
    let started = Instant::now();
    let mut out = Checked {
        violations: check(&rec.ops, &rec.restarts, &rec.disruptions, policy),
        ..Checked::default()
    };
    let (violations, stats) = linearizable(rec);
    out.violations.extend(violations);
    out.keys = stats.keys;
    out.ops = stats.ops;
    out.steps = stats.steps;
    out.unknown = stats.unknown;
    out.elapsed = started.elapsed();
    out
}

/// Per-server facts the model needs about every operation.
#[derive(Default)]
struct ServerFacts {
    /// Disruptions in execution order, as (first, latest `last` of any
    /// disruption beginning at or before `first`), sorted by `first`.
    windows: Vec<(u64, u64)>,
    /// Starts after the first, in execution order.
    restarts: Vec<u64>,
    /// Every start in execution order, with its wall clock's offset.
    clocks: Vec<(u64, i64)>,
}

/// The linearizability pass alone: violations and figures.
pub fn linearizable(rec: &Recorder) -> (Vec<String>, Checked) {
    let mut facts: BTreeMap<&str, ServerFacts> = BTreeMap::new();
    let mut first_start: BTreeMap<&str, Duration> = BTreeMap::new();
    for r in &rec.restarts {
        first_start.entry(r.server).or_insert(r.at);
    }
    for d in &rec.disruptions {
        let f = facts.entry(d.server).or_default();
        let first = first_start.get(d.server) == Some(&d.from) && d.cause == Cause::Restart;
        if d.cause == Cause::Restart && !first {
            f.restarts.push(d.first);
        }
        if !first {
            f.windows.push((d.first, d.last));
        }
    }
    for r in &rec.restarts {
        facts
            .entry(r.server)
            .or_default()
            .clocks
            .push((r.seq, r.unix_offset));
    }
    for f in facts.values_mut() {
        f.clocks.sort_unstable();
        f.windows.sort_unstable();
        let mut latest = 0;
        for w in &mut f.windows {
            latest = latest.max(w.1);
            w.1 = latest;
        }
    }
    // A request without an answer took effect while its connection was
    // open on the server (accepted, and not yet closed or lost in a
    // restart), or never.
    type Conn<'a> = (&'a str, std::net::SocketAddr);
    let mut closes: BTreeMap<Conn<'_>, Vec<(u64, Duration)>> = BTreeMap::new();
    for c in &rec.closed {
        closes
            .entry((c.server, c.peer))
            .or_default()
            .push((c.seq, c.at));
    }
    let mut starts: BTreeMap<&str, Vec<(u64, Duration)>> = BTreeMap::new();
    for r in &rec.restarts {
        starts.entry(r.server).or_default().push((r.seq, r.at));
    }
    let mut accepts: BTreeMap<Conn<'_>, u64> = BTreeMap::new();
    for a in &rec.accepted {
        accepts.insert((a.server, a.peer), a.seq);
    }
    let deadline = |op: &Op| -> Option<(u64, Duration)> {
        let conn = (op.server, op.conn?);
        let opened = *accepts.get(&conn)?;
        let after = |v: &Vec<(u64, Duration)>| v.iter().copied().find(|&(s, _)| s > opened);
        let closed = closes.get(&conn).and_then(after);
        let restarted = starts.get(op.server).and_then(after);
        match (closed, restarted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };
    let ctx_of = |op: &Op| {
        let indeterminate = op.outcome == Outcome::Indeterminate;
        let (complete, last) = if indeterminate {
            deadline(op).map_or((NEVER, NEVER), |(seq, at)| (micros(at), seq))
        } else {
            (micros(op.complete), op.last)
        };
        let f = facts.get(op.server);
        // The wall clock of the server lifetime the operation ran in
        // (unknown if it may have run in either of two with different
        // clocks).
        let offset = f.map_or(Some(0), |f| {
            let at = |seq: u64| {
                let n = f.clocks.partition_point(|&(s, _)| s <= seq);
                n.checked_sub(1).map_or(0, |i| f.clocks[i].1)
            };
            let start = at(op.first);
            let spanned = f
                .clocks
                .iter()
                .any(|&(s, o)| s > op.first && s <= last && o != start);
            (!spanned).then_some(start)
        });
        Ctx {
            invoke: micros(op.invoke),
            complete,
            first: op.first,
            last,
            disrupted_until: f.and_then(|f| {
                let n = f.windows.partition_point(|&(from, _)| from <= last);
                n.checked_sub(1).map(|i| f.windows[i].1)
            }),
            cas_may_collide: f.is_some_and(|f| f.restarts.iter().any(|&r| r <= last)),
            first_restart: starts.get(op.server).and_then(|v| {
                // Starts after the first (warm ones included) that may
                // have come before the operation completed.
                let later = v.iter().skip(1).filter(|&&(s, _)| s <= last);
                later.map(|&(_, at)| micros(at)).min()
            }),
            clock_skewed: offset.is_none(),
            epoch_secs: EPOCH_SECS.saturating_add_signed(offset.unwrap_or(0)),
        }
    };
    let mut keys: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    // A request that never went out (no connection) did nothing.
    let sent = |op: &&Op| op.conn.is_some() || op.outcome != Outcome::Indeterminate;
    for op in rec.ops.iter().filter(sent) {
        keys.entry((op.server, op.key.as_str()))
            .or_default()
            .push(op);
    }
    let mut violations = Vec::new();
    let mut stats = Checked::default();
    let mut failed = 0;
    for ops in keys.values() {
        let (verdict, effort) = check_key(ops, ctx_of);
        stats.keys += 1;
        stats.ops += effort.ops;
        stats.steps += effort.steps;
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Unknown => stats.unknown += 1,
            Verdict::Violation(msg) => {
                failed += 1;
                if failed <= MAX_REPORTED {
                    violations.push(format!("{NOT_LINEARIZABLE}: {msg}"));
                }
            }
        }
    }
    if failed > MAX_REPORTED {
        violations.push(format!(
            "{NOT_LINEARIZABLE}: {} more keys",
            failed - MAX_REPORTED
        ));
    }
    (violations, stats)
}
