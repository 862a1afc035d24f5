//! The history checker: verifies a run's operations against what a cache
//! may legally do.
//!
//! A cache is not a database: items may vanish through eviction, expiry,
//! flush or a restart. So the checker asks, per server and key:
//! * every value read was written by someone (an acknowledged or an
//!   indeterminate write);
//! * no read returns a value superseded by an acknowledged write of another
//!   value that completed before the read began (unless the server
//!   restarted in between);
//! * a CAS token names one value: two reads in the same server lifetime
//!   that return the same token return the same value, and at most one
//!   write succeeds with it;
//! * where the scenario rules out eviction and expiry, a miss after an
//!   acknowledged write is only legal across a restart or a delete.
//!
//! Timed-out operations are indeterminate: their writes may or may not
//! have happened, so they widen what reads may return and assert nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::trace::{Op, Outcome, Restart};

/// What the scenario allows.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Reads must not return a value an acknowledged later write replaced.
    pub no_stale_reads: bool,
    /// No eviction or expiry can happen: a miss after an acknowledged write
    /// is a bug unless the server restarted.
    pub no_silent_misses: bool,
}

/// A restart between a write's invocation (it may have been applied that
/// early, its reply still in flight) and a read's completion (the read may
/// have executed that late) explains a missing or older value.
fn restarted_between(restarts: &[Restart], server: &str, from: Duration, to: Duration) -> bool {
    restarts
        .iter()
        .any(|r| r.server == server && r.at >= from && r.at <= to)
}

fn epoch(restarts: &[Restart], server: &str, at: Duration) -> usize {
    restarts
        .iter()
        .filter(|r| r.server == server && r.at <= at)
        .count()
}

/// Checks `ops`; returns one message per violation (empty: the history is
/// legal).
pub fn check(ops: &[Op], restarts: &[Restart], policy: Policy) -> Vec<String> {
    let mut violations = Vec::new();
    let mut deletes: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| o.kind == "delete" && o.outcome != Outcome::Refused)
    {
        deletes
            .entry((op.server, op.key.as_str()))
            .or_default()
            .push(op);
    }
    let mut all_writes: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    let mut acked: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if op.written.is_some() {
            if op.outcome == Outcome::Stored || op.outcome == Outcome::Indeterminate {
                all_writes
                    .entry((op.server, op.key.as_str()))
                    .or_default()
                    .push(op);
            }
            if op.outcome == Outcome::Stored {
                acked
                    .entry((op.server, op.key.as_str()))
                    .or_default()
                    .push(op);
            }
        }
    }
    // A CAS token is consumed by the first write that succeeds with it:
    // two acknowledged writes with one token mean one of them was lost.
    let mut consumed: BTreeMap<(&str, &str, usize, u64), &Op> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Stored) {
        let Some(t) = op.token else { continue };
        let e = epoch(restarts, op.server, op.invoke);
        if e != epoch(restarts, op.server, op.complete) {
            continue;
        }
        if let Some(first) = consumed.insert((op.server, op.key.as_str(), e, t), op) {
            violations.push(format!(
                "lost update on {}: CAS token {t} accepted twice ({} at {:?} and {} at {:?})",
                op.key, first.client, first.complete, op.client, op.complete
            ));
        }
    }
    let mut tokens: BTreeMap<(&str, usize, u64), &[u8]> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == "read") {
        let key = (op.server, op.key.as_str());
        let acks = acked.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        match &op.outcome {
            Outcome::Value { value, cas } => {
                // Writes that may have produced this value: acknowledged or
                // indeterminate, issued before the read returned.
                let candidates: Vec<&Op> = all_writes
                    .get(&key)
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|w| {
                                w.written.as_deref() == Some(value.as_slice())
                                    && w.invoke < op.complete
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if candidates.is_empty() {
                    violations.push(format!(
                        "{} read {}={:?} at {:?}: nobody wrote that value",
                        op.client,
                        op.key,
                        String::from_utf8_lossy(value),
                        op.invoke
                    ));
                } else if policy.no_stale_reads {
                    // Stale: every write of the value was followed by an
                    // acknowledged write of another value that finished
                    // before this read began (with no restart since).
                    let superseding = |w: &Op| {
                        acks.iter().copied().find(|w2| {
                            w2.written.as_deref() != Some(value.as_slice())
                                && w2.invoke > w.complete
                                && w2.complete < op.invoke
                                && !restarted_between(restarts, op.server, w2.invoke, op.complete)
                        })
                    };
                    if let Some(w2) = candidates
                        .iter()
                        .map(|w| superseding(w))
                        .collect::<Option<Vec<_>>>()
                        .and_then(|v| v.into_iter().next())
                    {
                        violations.push(format!(
                            "{} read {}={:?} at {:?}, but {} had since stored {:?} (done {:?})",
                            op.client,
                            op.key,
                            String::from_utf8_lossy(value),
                            op.invoke,
                            w2.client,
                            w2.written.as_deref().map(String::from_utf8_lossy),
                            w2.complete
                        ));
                    }
                }
                if let Some(c) = cas {
                    let e = epoch(restarts, op.server, op.invoke);
                    if e == epoch(restarts, op.server, op.complete) {
                        let seen = tokens.entry((op.server, e, *c)).or_insert(value.as_slice());
                        if *seen != value.as_slice() {
                            violations.push(format!(
                                "CAS token {c} on {} named two values: {:?} and {:?}",
                                op.server,
                                String::from_utf8_lossy(seen),
                                String::from_utf8_lossy(value)
                            ));
                        }
                    }
                }
            }
            Outcome::Miss if policy.no_silent_misses => {
                // A delete that may have landed after the write explains it.
                let deleted_after = |w: &Op| {
                    deletes.get(&key).is_some_and(|ds| {
                        ds.iter()
                            .any(|d| d.complete > w.invoke && d.invoke < op.complete)
                    })
                };
                if let Some(w) = acks.iter().find(|w| {
                    w.complete < op.invoke
                        && !restarted_between(restarts, op.server, w.invoke, op.complete)
                        && !deleted_after(w)
                }) {
                    violations.push(format!(
                        "{} missed {} at {:?} after {} stored it at {:?} with no restart",
                        op.client, op.key, op.invoke, w.client, w.complete
                    ));
                }
            }
            _ => {}
        }
    }
    violations
}
