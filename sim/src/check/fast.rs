//! The fast first pass: invariants that need no search, each a direct
//! scan of the history.
//!
//! Per server and key:
//! * every value read was written by someone (an acknowledged or an
//!   indeterminate write), where values come only from whole writes (no
//!   `append`, `prepend` or counters on the key);
//! * no read returns a value superseded by an acknowledged write of another
//!   value that completed before the read began (unless the server
//!   restarted in between);
//! * a CAS token names one value: two reads in the same server lifetime
//!   that return the same token return the same value, and at most one
//!   write succeeds with it;
//! * where the scenario rules out expiry, a miss after an acknowledged
//!   write is only legal across a delete or a recorded disruption
//!   (restart, eviction, flush).
//!
//! Timed-out operations are indeterminate: their writes may or may not
//! have happened, so they widen what reads may return and assert nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::trace::{Cmd, Disruption, Mode, Op, Outcome, Restart};

/// What the scenario allows.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Reads must not return a value an acknowledged later write replaced.
    pub no_stale_reads: bool,
    /// No expiry can happen: a miss after an acknowledged write is a bug
    /// unless a delete or a recorded disruption explains it.
    pub no_silent_misses: bool,
}

/// A disruption (restart, eviction, flush) that may have happened between
/// a write's invocation (it may have been applied that early, its reply
/// still in flight) and a read's completion (the read may have executed
/// that late) explains a missing or older value.
fn disrupted_between(
    disruptions: &[Disruption],
    server: &str,
    from: Duration,
    to: Duration,
) -> bool {
    disruptions
        .iter()
        .any(|d| d.server == server && d.to >= from && d.from <= to)
}

fn epoch(restarts: &[Restart], server: &str, at: Duration) -> usize {
    restarts
        .iter()
        .filter(|r| r.server == server && r.at <= at)
        .count()
}

/// A write that replaces the whole value (so a read's value names it).
fn whole_write(op: &Op) -> bool {
    matches!(
        op.cmd,
        Cmd::Store {
            mode: Mode::Set | Mode::Add | Mode::Replace | Mode::Cas,
            ..
        }
    )
}

/// Checks `ops`, given the servers' starts and every recorded disruption
/// (starts included); returns one message per violation (empty: the
/// history is legal).
pub fn check(
    ops: &[Op],
    restarts: &[Restart],
    disruptions: &[Disruption],
    policy: Policy,
) -> Vec<String> {
    let mut violations = Vec::new();
    type Key<'a> = (&'a str, &'a str);
    // Keys whose values are computed by the server (appends, counters):
    // their reads name no single write, the search checks them.
    let computed: BTreeSet<Key<'_>> = ops
        .iter()
        .filter(|o| {
            matches!(
                o.cmd,
                Cmd::Incr { .. }
                    | Cmd::Store {
                        mode: Mode::Append | Mode::Prepend,
                        ..
                    }
            )
        })
        .map(|o| (o.server, o.key.as_str()))
        .collect();
    let mut deletes: BTreeMap<Key<'_>, Vec<&Op>> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| matches!(o.cmd, Cmd::Delete { .. }) && !o.outcome.is_refusal())
    {
        deletes
            .entry((op.server, op.key.as_str()))
            .or_default()
            .push(op);
    }
    let mut all_writes: BTreeMap<Key<'_>, Vec<&Op>> = BTreeMap::new();
    let mut acked: BTreeMap<Key<'_>, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| whole_write(o)) {
        let key = (op.server, op.key.as_str());
        if op.outcome == Outcome::Stored || op.outcome == Outcome::Indeterminate {
            all_writes.entry(key).or_default().push(op);
        }
        if op.outcome == Outcome::Stored {
            acked.entry(key).or_default().push(op);
        }
    }
    // A CAS token is consumed by the first write that succeeds with it:
    // two acknowledged writes with one token mean one of them was lost.
    let mut consumed: BTreeMap<(&str, &str, usize, u64), &Op> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Stored) {
        let Some(t) = op.token() else { continue };
        if !matches!(op.cmd, Cmd::Store { .. }) {
            continue;
        }
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
    for op in ops.iter().filter(|o| o.cmd.is_read()) {
        let key = (op.server, op.key.as_str());
        let acks = acked.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        match &op.outcome {
            // An empty value is a vivified placeholder (`mg N`), which
            // nobody wrote.
            Outcome::Value(hit) if !hit.value.is_empty() && !computed.contains(&key) => {
                let value = hit.value.as_slice();
                // Writes that may have produced this value: acknowledged or
                // indeterminate, issued before the read returned.
                let candidates: Vec<&Op> = all_writes
                    .get(&key)
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|w| w.written() == Some(value) && w.invoke < op.complete)
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
                            w2.written() != Some(value)
                                && w2.invoke > w.complete
                                && w2.complete < op.invoke
                                && !disrupted_between(
                                    disruptions,
                                    op.server,
                                    w2.invoke,
                                    op.complete,
                                )
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
                            w2.written().map(String::from_utf8_lossy),
                            w2.complete
                        ));
                    }
                }
                if let Some(c) = hit.cas {
                    let e = epoch(restarts, op.server, op.invoke);
                    if e == epoch(restarts, op.server, op.complete) {
                        let seen = tokens.entry((op.server, e, c)).or_insert(value);
                        if *seen != value {
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
                        && !disrupted_between(disruptions, op.server, w.invoke, op.complete)
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
