//! Linearizability, per key: a search for a sequential order of the key's
//! operations that respects real time (an operation that completed before
//! another was invoked comes first) and in which every reply is the one
//! the item model ([`super::model`]) gives.
//!
//! This is Wing & Gong's search as Porcupine runs it: depth first, each
//! step linearizing one operation that no pending operation must precede,
//! memoising every (set of linearized operations, model state) reached so
//! no configuration is explored twice. Real histories have a handful of
//! operations in flight per key, so the memo keeps the search linear in
//! practice.
//!
//! Operations that timed out are optional: each may take effect at any
//! point after its invocation, or never. Their replies are not compared,
//! and linearizing one only counts where it changes the state (otherwise
//! "not yet" covers it). Keys are independent: a cache's operations touch
//! one key, and what touches every key (restarts, evictions, flushes) is
//! part of the model as a recorded disruption.

use std::collections::HashSet;
use std::time::Duration;

use super::model::{describe, step, Ctx, Interned, State, Values, NEVER};
use crate::trace::{Op, Outcome};

/// Most search steps per key before giving up (the history is then
/// reported as unchecked, not as a violation).
pub const BUDGET: u64 = 500_000;

/// One operation in the search.
struct Entry<'a> {
    op: &'a Op,
    ctx: Ctx,
    ids: Interned,
    /// Must be linearized (it was answered).
    required: bool,
}

/// What the search concluded for one key.
#[derive(Debug)]
pub enum Verdict {
    /// A legal order exists.
    Linearizable,
    /// No legal order: the message says how far it got.
    Violation(String),
    /// The budget ran out first.
    Unknown,
}

/// Search statistics for one key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Effort {
    /// Operations checked.
    pub ops: usize,
    /// Search steps taken.
    pub steps: u64,
}

/// A fixed-size bit set.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    /// The first clear bit at or after `from`.
    fn first_clear(&self, from: usize) -> usize {
        let mut w = from / 64;
        let mut mask = !0u64 << (from % 64);
        while w < self.0.len() {
            let free = !self.0[w] & mask;
            if free != 0 {
                return w * 64 + free.trailing_zeros() as usize;
            }
            w += 1;
            mask = !0;
        }
        self.0.len() * 64
    }
}

/// A node of the depth-first search: the moves left to try from it (each
/// an operation and the state it leads to), and the operation that led
/// here.
struct Frame {
    moves: Vec<(usize, State)>,
    next: usize,
    via: Option<usize>,
}

/// Checks one key's operations (any order); `ctx_of` gives each its
/// model context.
pub fn check_key(ops: &[&Op], ctx_of: impl Fn(&Op) -> Ctx) -> (Verdict, Effort) {
    // Reads without an answer tell nothing; replies that are errors tell
    // nothing about a read either.
    let mut values = Values::default();
    let mut entries: Vec<Entry<'_>> = ops
        .iter()
        .filter(|o| {
            !(o.cmd.is_read()
                && matches!(
                    o.outcome,
                    Outcome::Indeterminate | Outcome::Error(_) | Outcome::Stored
                ))
        })
        .map(|&op| Entry {
            op,
            ctx: ctx_of(op),
            ids: Interned::new(&op.cmd, &op.outcome, &mut values),
            required: op.outcome != Outcome::Indeterminate,
        })
        .collect();
    entries.sort_by_key(|e| (e.ctx.first, e.ctx.last));
    let n = entries.len();
    let mut effort = Effort { ops: n, steps: 0 };
    if n == 0 {
        return (Verdict::Linearizable, effort);
    }
    let mut lin = Bits::new(n);
    let mut left = entries.iter().filter(|e| e.required).count();
    let mut memo: HashSet<(Bits, State)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut scratch = Vec::new();
    // The deepest point reached, for the report.
    let mut best: (usize, State, Vec<usize>) = (0, None, Vec::new());
    let mut path: Vec<usize> = Vec::new();
    // The latest invocation among the placed operations, along the path:
    // an optional operation whose deadline passed before it can no longer
    // be placed.
    let mut latest: Vec<u64> = vec![0];
    let mut state: State = None;
    let mut via = None;
    loop {
        if left == 0 {
            return (Verdict::Linearizable, effort);
        }
        effort.steps += 1;
        if effort.steps > BUDGET {
            return (Verdict::Unknown, effort);
        }
        // Expand: every operation that may come next, with its results.
        let mut moves = Vec::new();
        let first = lin.first_clear(0);
        let mut horizon = NEVER;
        let mut i = first;
        while i < n {
            if !lin.get(i) {
                let e = &entries[i];
                if e.ctx.first > horizon {
                    break;
                }
                // Only answered operations must be placed before later
                // ones; an unanswered one may also never take effect.
                if e.required {
                    horizon = horizon.min(e.ctx.last);
                } else if e.ctx.last < latest.last().copied().unwrap_or(0) {
                    i = lin.first_clear(i + 1);
                    continue;
                }
                scratch.clear();
                step(
                    state,
                    &e.op.cmd,
                    &e.op.outcome,
                    &e.ctx,
                    e.ids,
                    &mut values,
                    &mut scratch,
                );
                for &s in &scratch {
                    if !e.required && s == state {
                        continue;
                    }
                    moves.push((i, s));
                }
            }
            i = lin.first_clear(i + 1);
        }
        // Answered operations first, earliest completion first: the order
        // most histories were produced in.
        moves.sort_by_key(|&(i, _)| (!entries[i].required, entries[i].ctx.last));
        if path.len() > best.0 {
            best = (path.len(), state, path.clone());
        }
        stack.push(Frame {
            moves,
            next: 0,
            via,
        });
        // Take the next untried move, backtracking as needed.
        loop {
            let Some(top) = stack.last_mut() else {
                return (
                    Verdict::Violation(explain(&entries, &best, &mut values)),
                    effort,
                );
            };
            if top.next < top.moves.len() {
                let (i, s) = top.moves[top.next];
                top.next += 1;
                lin.set(i);
                if !memo.insert((lin.clone(), s)) {
                    lin.clear(i);
                    continue;
                }
                state = s;
                via = Some(i);
                path.push(i);
                let l = latest
                    .last()
                    .copied()
                    .unwrap_or(0)
                    .max(entries[i].ctx.first);
                latest.push(l);
                if entries[i].required {
                    left -= 1;
                }
                break;
            }
            let done = stack.pop().expect("non-empty");
            if let Some(i) = done.via {
                lin.clear(i);
                path.pop();
                latest.pop();
                if entries[i].required {
                    left += 1;
                }
            }
        }
    }
}

/// Describes where the search got stuck: the order it found furthest,
/// the state there, and the answered operations it could not place next.
fn explain(
    entries: &[Entry<'_>],
    best: &(usize, State, Vec<usize>),
    values: &mut Values,
) -> String {
    let (count, state, path) = best;
    let done: HashSet<usize> = path.iter().copied().collect();
    let mut stuck: Vec<&Entry<'_>> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| e.required && !done.contains(i))
        .map(|(_, e)| e)
        .collect();
    stuck.sort_by_key(|e| e.ctx.last);
    let e = stuck.first().map(|e| e.op);
    let last = path.last().map(|&i| entries[i].op);
    let ms = |t: Duration| format!("{:.3}ms", t.as_secs_f64() * 1000.0);
    let mut msg = format!(
        "{} on {}: no legal order; {count} of {} operations placed, item then {}",
        e.map_or("?", |o| o.key.as_str()),
        e.map_or("?", |o| o.server),
        entries.len(),
        describe(state, values)
    );
    if let Some(l) = last {
        msg.push_str(&format!(
            " (after {} {} at {}..{})",
            l.client,
            l.cmd.name(),
            ms(l.invoke),
            ms(l.complete)
        ));
    }
    if let Some(o) = e {
        let got = match &o.outcome {
            Outcome::Value(h) => {
                let v = String::from_utf8_lossy(&h.value);
                let v: String = v.chars().take(40).collect();
                format!(
                    "{v:?}{}",
                    h.cas.map(|c| format!(" c{c}")).unwrap_or_default()
                )
            }
            other => format!("{other:?}"),
        };
        msg.push_str(&format!(
            "; next answered: {} {} {} at {}..{} -> {got}",
            o.client,
            o.cmd.name(),
            o.written()
                .map(|w| format!("{:?}", String::from_utf8_lossy(&w[..w.len().min(40)])))
                .unwrap_or_default(),
            ms(o.invoke),
            ms(o.complete),
        ));
    }
    msg
}
