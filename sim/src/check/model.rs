//! The sequential model of one memcached item, for the linearizability
//! search: what each command does to the item and what it must reply.
//!
//! The state is the item, or its absence: value, client flags, CAS value,
//! the lease bits (`stale` after `md I`, `sent` once a win token went out),
//! when it came to exist, and when it expires. It is small and `Copy` so
//! the search can memoise on it; values are interned ([`Values`]).
//!
//! What a real server may do that a sequential model cannot predict is
//! modelled as choice:
//! * an item may vanish before any operation where the run recorded a
//!   reason (a restart, an eviction, a flush, a clock jump) after the item
//!   came to exist, or once its TTL may have run out; it must be gone once
//!   its TTL has surely run out;
//! * a CAS value is a number the server picks: the model knows it once a
//!   read has returned it (`cas: Some`), and until then only that it
//!   differs from every token handed out before (after a restart the
//!   counter starts again, so an old token may match by coincidence);
//! * a storage request answered with an error may have removed the old
//!   item (memcached unlinks it when allocation fails).

use crate::trace::{Cmd, Hit, Mode, Outcome};

/// Microseconds of simulated time.
pub type Micros = u64;

/// Never (an unbounded time).
pub const NEVER: Micros = u64::MAX;

const SEC: Micros = 1_000_000;
/// memcached's `REALTIME_MAXDELTA`: exptimes above 30 days are unix times.
const MAX_DELTA: i64 = 60 * 60 * 24 * 30;

/// Interned values: the model refers to a value by its index, so states
/// are small and comparing values is comparing numbers. Values are
/// interned once per operation before the search, not per step (they can
/// be 100 KB).
#[derive(Default)]
pub struct Values {
    all: Vec<Vec<u8>>,
    index: std::collections::HashMap<Vec<u8>, u32>,
    /// (old value, data, append?) → joined value.
    joined: std::collections::HashMap<(u32, u32, bool), u32>,
}

impl Values {
    /// The id of `v`, interning it if new.
    pub fn id(&mut self, v: &[u8]) -> u32 {
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        let i = self.all.len() as u32;
        self.all.push(v.to_vec());
        self.index.insert(v.to_vec(), i);
        i
    }

    /// The bytes of value `id`.
    pub fn bytes(&self, id: u32) -> &[u8] {
        &self.all[id as usize]
    }

    /// `data` appended (or prepended) to `old`.
    fn join(&mut self, old: u32, data: u32, append: bool) -> u32 {
        if let Some(&v) = self.joined.get(&(old, data, append)) {
            return v;
        }
        let (a, b) = if append { (old, data) } else { (data, old) };
        let bytes = [self.bytes(a), self.bytes(b)].concat();
        let v = self.id(&bytes);
        self.joined.insert((old, data, append), v);
        v
    }
}

/// An operation's values, interned before the search.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interned {
    /// The data block of a storage command.
    pub written: Option<u32>,
    /// The value a read returned.
    pub read: Option<u32>,
}

impl Interned {
    /// Interns `cmd`'s and `outcome`'s values.
    pub fn new(cmd: &Cmd, outcome: &Outcome, values: &mut Values) -> Interned {
        Interned {
            written: match cmd {
                Cmd::Store { value, .. } => Some(values.id(value)),
                _ => None,
            },
            read: match outcome {
                Outcome::Value(h) => Some(values.id(&h.value)),
                _ => None,
            },
        }
    }
}

/// When an item expires: somewhere in `lo..=hi` (sim time), since the
/// operation that set its TTL ran somewhere in its own window and the
/// server counts TTLs in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Expiry {
    /// Earliest it may be gone.
    pub lo: Micros,
    /// Time by which it is surely gone ([`NEVER`]: no TTL).
    pub hi: Micros,
}

impl Expiry {
    /// No TTL.
    pub const NONE: Expiry = Expiry {
        lo: NEVER,
        hi: NEVER,
    };
}

/// One item, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    /// Interned value.
    pub value: u32,
    /// Client flags.
    pub flags: u32,
    /// The CAS value, once a read revealed it.
    pub cas: Option<u64>,
    /// Marked stale by `md I`.
    pub stale: bool,
    /// A win token (`W`) was handed out.
    pub sent: bool,
    /// Earliest the item (this version) can have come to exist, in
    /// execution order.
    pub born: u64,
    /// When it expires.
    pub exp: Expiry,
}

/// The model's state: the item or its absence.
pub type State = Option<Item>;

/// What the model needs to know about one operation besides its command
/// and outcome.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// Sim time it was issued.
    pub invoke: Micros,
    /// Sim time it was answered ([`NEVER`] when indeterminate).
    pub complete: Micros,
    /// Its invocation's place in the run's execution order (see
    /// [`crate::trace::Recorder::seq`]).
    pub first: u64,
    /// Its completion's place in the execution order ([`NEVER`] when
    /// indeterminate).
    pub last: u64,
    /// Latest end (in execution order) of a recorded disruption on the
    /// server that may have begun before this operation completed: items
    /// born before it may have vanished.
    pub disrupted_until: Option<u64>,
    /// The server restarted before this operation completed: its CAS
    /// counter started again, so an old token may match a new item.
    pub cas_may_collide: bool,
    /// Sim time of the server's first restart that may have come before
    /// this operation completed. A restarted server's clock counts whole
    /// seconds from its start, so an item whose TTL ran across a restart
    /// may outlast it by up to a second.
    pub first_restart: Option<Micros>,
    /// The server's clock may have jumped: absolute exptimes are not
    /// predictable.
    pub clock_skewed: bool,
    /// Sim time of unix second 0 on the server's clock, in seconds (the
    /// simulated epoch), to place absolute exptimes.
    pub epoch_secs: u64,
}

/// The expiry of a TTL set by an operation that ran in `ctx`'s window.
pub fn expiry(ttl: i64, ctx: &Ctx) -> Expiry {
    if ttl == 0 {
        return Expiry::NONE;
    }
    if ttl < 0 {
        // Stored already expired.
        return Expiry {
            lo: 0,
            hi: ctx.complete,
        };
    }
    if ttl > MAX_DELTA {
        if ctx.clock_skewed {
            return Expiry { lo: 0, hi: NEVER };
        }
        let at = (ttl as u64)
            .saturating_sub(ctx.epoch_secs)
            .saturating_mul(SEC);
        return Expiry {
            lo: at.saturating_sub(2 * SEC),
            hi: at.saturating_add(2 * SEC).max(ctx.complete),
        };
    }
    let d = (ttl as u64) * SEC;
    Expiry {
        lo: (ctx.invoke + d).saturating_sub(SEC),
        hi: ctx.complete.saturating_add(d).saturating_add(1_000),
    }
}

/// The states the item may be in just before `ctx`'s operation takes
/// effect: it must be gone if its TTL surely ran out, may be gone if its
/// TTL may have run out or a disruption may have removed it.
fn before(state: State, ctx: &Ctx, mut out: impl FnMut(State)) {
    let Some(it) = state else {
        out(None);
        return;
    };
    let late = if ctx.first_restart.is_some_and(|t| t < it.exp.hi) {
        SEC
    } else {
        0
    };
    if it.exp.hi.saturating_add(late) <= ctx.invoke {
        out(None);
        return;
    }
    out(state);
    let may_expire = ctx.complete >= it.exp.lo;
    let may_vanish = ctx.disrupted_until.is_some_and(|t| t >= it.born);
    if may_expire || may_vanish {
        out(None);
    }
}

/// A new version of an item.
fn fresh(value: u32, flags: u32, exp: Expiry, ctx: &Ctx) -> Item {
    Item {
        value,
        flags,
        cas: None,
        stale: false,
        sent: false,
        born: ctx.first,
        exp,
    }
}

/// Whether `got` is the model's value `want` (counters written in place
/// are padded with spaces, replaced ones are not: either is legal).
fn same_value(values: &Values, want: u32, got: u32) -> bool {
    if want == got {
        return true;
    }
    let (w, g) = (values.bytes(want), values.bytes(got));
    w.len() <= 24 && g.len() <= 24 && trim(w) == trim(g) && !trim(w).is_empty()
}

fn trim(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    &v[..end]
}

/// Checks a hit against the item and binds the CAS value it revealed;
/// `None` if the hit is impossible.
fn hit_matches(it: Item, hit: &Hit, read: u32, win: bool, values: &Values) -> Option<Item> {
    if !same_value(values, it.value, read) {
        return None;
    }
    if hit.flags.is_some_and(|f| f != it.flags) {
        return None;
    }
    if hit.win != win || hit.sent != it.sent || hit.stale != it.stale {
        return None;
    }
    let mut it = it;
    match (it.cas, hit.cas) {
        (Some(k), Some(c)) if k != c => return None,
        (None, Some(c)) => it.cas = Some(c),
        _ => {}
    }
    Some(it)
}

/// Every state the item can be in after `cmd` ran from `state` and
/// replied `outcome` (nothing: the reply is impossible). An indeterminate
/// outcome is not compared: the operation's effect, if it took effect.
pub fn step(
    state: State,
    cmd: &Cmd,
    outcome: &Outcome,
    ctx: &Ctx,
    ids: Interned,
    values: &mut Values,
    out: &mut Vec<State>,
) {
    let mut starts = [None; 2];
    let mut n = 0;
    before(state, ctx, |s| {
        starts[n] = s;
        n += 1;
    });
    for &s in &starts[..n] {
        apply(s, cmd, outcome, ctx, ids, values, out);
    }
}

fn apply(
    state: State,
    cmd: &Cmd,
    outcome: &Outcome,
    ctx: &Ctx,
    ids: Interned,
    values: &mut Values,
    out: &mut Vec<State>,
) {
    let read = ids.read.unwrap_or(u32::MAX);
    let any = *outcome == Outcome::Indeterminate;
    // What the reply must be, and the state after.
    let result = |expect: Outcome, next: State, out: &mut Vec<State>| {
        if any || *outcome == expect {
            out.push(next);
        }
    };
    match cmd {
        Cmd::Get => match (state, outcome) {
            (None, _) => result(Outcome::Miss, None, out),
            (Some(_), Outcome::Indeterminate) => out.push(state),
            (Some(it), Outcome::Value(hit)) => {
                if let Some(it) = hit_matches(it, hit, read, false, values) {
                    out.push(Some(it));
                }
            }
            _ => {}
        },
        Cmd::MetaGet {
            vivify,
            recache,
            touch,
        } => {
            let Some(mut it) = state else {
                match vivify {
                    Some(ttl) => {
                        let v = values.id(b"");
                        let mut it = fresh(v, 0, expiry(*ttl, ctx), ctx);
                        it.sent = true;
                        match outcome {
                            Outcome::Indeterminate => out.push(Some(it)),
                            Outcome::Value(hit) => {
                                let mut shown = it;
                                shown.sent = false;
                                if let Some(b) = hit_matches(shown, hit, read, true, values) {
                                    out.push(Some(Item { sent: true, ..b }));
                                }
                            }
                            _ => {}
                        }
                    }
                    None => result(Outcome::Miss, None, out),
                }
                return;
            };
            if let Some(ttl) = touch {
                it.exp = expiry(*ttl, ctx);
            }
            // Whether the TTL left is below the recache threshold: sure,
            // impossible, or either (the read's time is only known to a
            // window).
            let mut wins: Vec<bool> = Vec::with_capacity(2);
            match recache {
                Some(r) if !it.sent && it.exp.hi != NEVER => {
                    let r = (*r).max(0) as u64 * SEC;
                    if it.exp.hi <= ctx.invoke.saturating_add(r).saturating_sub(SEC) {
                        wins.push(true);
                    } else if it.exp.lo >= ctx.complete.saturating_add(r).saturating_add(SEC) {
                        wins.push(false);
                    } else {
                        wins.extend([false, true]);
                    }
                }
                _ => wins.push(false),
            }
            for recache_win in wins {
                let won = recache_win || (it.stale && !it.sent);
                let mut after = it;
                if won {
                    after.sent = true;
                }
                match outcome {
                    Outcome::Indeterminate => out.push(Some(after)),
                    Outcome::Value(hit) => {
                        if let Some(b) = hit_matches(it, hit, read, won, values) {
                            out.push(Some(Item {
                                sent: after.sent,
                                ..b
                            }));
                        }
                    }
                    _ => {}
                }
            }
        }
        Cmd::Store {
            mode,
            value,
            flags,
            ttl,
            cas,
        } => {
            let failed = matches!(outcome, Outcome::Error(_));
            if failed || (*outcome == Outcome::NotStored && *mode == Mode::Set) {
                // Refused for memory or size: the old item may be gone.
                out.push(state);
                if state.is_some() {
                    out.push(None);
                }
                return;
            }
            let data = ids.written.unwrap_or_else(|| values.id(value));
            let new = |_: &mut Values| Some(fresh(data, *flags, expiry(*ttl, ctx), ctx));
            match (mode, state) {
                (Mode::Set, _) | (Mode::Add, None) | (Mode::Replace, Some(_)) => {
                    let n = new(values);
                    result(Outcome::Stored, n, out)
                }
                (Mode::Add, Some(_)) => result(Outcome::NotStored, state, out),
                (Mode::Replace | Mode::Append | Mode::Prepend, None) => {
                    result(Outcome::NotStored, None, out)
                }
                (Mode::Append | Mode::Prepend, Some(it)) => {
                    let v = values.join(it.value, data, *mode == Mode::Append);
                    let next = Item {
                        value: v,
                        cas: None,
                        stale: false,
                        sent: false,
                        born: ctx.first,
                        ..it
                    };
                    result(Outcome::Stored, Some(next), out)
                }
                (Mode::Cas, None) => result(Outcome::NotFound, None, out),
                (Mode::Cas, Some(it)) => {
                    let token = cas.unwrap_or(0);
                    let matches = match it.cas {
                        Some(k) => k == token,
                        None => false,
                    };
                    if matches || (it.cas.is_none() && ctx.cas_may_collide) {
                        let n = new(values);
                        result(Outcome::Stored, n, out);
                    }
                    if !matches {
                        result(Outcome::Exists, state, out);
                    }
                }
            }
        }
        Cmd::Delete { cas } => match state {
            None => result(Outcome::NotFound, None, out),
            Some(it) => match (cas, it.cas) {
                (Some(t), Some(k)) if *t != k => result(Outcome::Exists, state, out),
                (Some(_), None) => {
                    result(Outcome::Exists, state, out);
                    if ctx.cas_may_collide {
                        result(Outcome::Stored, None, out);
                    }
                }
                _ => result(Outcome::Stored, None, out),
            },
        },
        Cmd::Invalidate { ttl } => match state {
            None => result(Outcome::NotFound, None, out),
            Some(it) => {
                let next = Item {
                    stale: true,
                    sent: false,
                    cas: None,
                    exp: ttl.map_or(it.exp, |t| expiry(t, ctx)),
                    ..it
                };
                result(Outcome::Stored, Some(next), out)
            }
        },
        Cmd::Touch { ttl } => match state {
            None => result(Outcome::NotFound, None, out),
            Some(it) => {
                let next = Item {
                    exp: expiry(*ttl, ctx),
                    ..it
                };
                result(Outcome::Stored, Some(next), out)
            }
        },
        Cmd::Incr { delta, decr } => match state {
            None => result(Outcome::NotFound, None, out),
            Some(it) => {
                let old = values.bytes(it.value);
                let Some(n) = parse_counter(old) else {
                    // Non-numeric: a client error, nothing changes.
                    if any || matches!(outcome, Outcome::Error(_)) {
                        out.push(state);
                    }
                    return;
                };
                let new = if *decr {
                    n.saturating_sub(*delta)
                } else {
                    n.wrapping_add(*delta)
                };
                let mut text = new.to_string().into_bytes();
                if text.len() < old.len() {
                    text.resize(old.len(), b' ');
                }
                let next = Item {
                    value: values.id(&text),
                    cas: None,
                    ..it
                };
                // `ma` without `v` acknowledges without the number.
                if any || *outcome == Outcome::Number(new) || *outcome == Outcome::Stored {
                    out.push(Some(next));
                }
            }
        },
    }
}

/// memcached's `safe_strtoull` on a stored value: digits, optionally
/// followed by spaces (a counter decremented in place).
fn parse_counter(v: &[u8]) -> Option<u64> {
    let t = trim(v);
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A short description of a state, for messages.
pub fn describe(state: &State, values: &Values) -> String {
    match state {
        None => "absent".into(),
        Some(it) => {
            let v = values.bytes(it.value);
            let shown = if v.len() > 40 {
                format!(
                    "{:?}...({} bytes)",
                    String::from_utf8_lossy(&v[..40]),
                    v.len()
                )
            } else {
                format!("{:?}", String::from_utf8_lossy(v))
            };
            let mut s = format!("{shown} f{}", it.flags);
            if let Some(c) = it.cas {
                s.push_str(&format!(" c{c}"));
            }
            if it.stale {
                s.push_str(" stale");
            }
            if it.sent {
                s.push_str(" win-sent");
            }
            s
        }
    }
}
