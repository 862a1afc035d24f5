//! Which sockets a guest's wait lists: every one, or only the hot ones.
//!
//! A `wasi:io/poll` call costs the host work for every pollable listed,
//! ready or not (wasmtime builds and polls a future for each), and WASI 0.2
//! has no way to keep a set registered between calls as `epoll` does. With
//! thousands of idle connections each pass would pay for all of them, and
//! every request on a busy connection would wait for that.
//!
//! So past [`TIER_MIN`] listed sockets the waits are tiered. A socket is hot
//! for [`HOT_MS`] after anything is reported for it or its interest
//! changes, and the listener is always hot. Most waits list only the hot
//! sockets; every so often a sweep lists the next [`SWEEP_CHUNK`] of all
//! the sockets too, without waiting, which is when an idle socket that
//! came to life is found (so one sweep never holds up the hot sockets for
//! long, however many there are). The next sweep comes after
//! [`FULL_EVERY`] times the last one's measured cost (at least
//! [`FULL_MIN_MS`]), so sweeps take at most a fifth of a busy guest's
//! time, and a cold socket's first request waits about that gap times
//! the number of chunks at most. With nothing hot, or when the hot
//! sockets were quiet until the sweep was due, the wait lists everything
//! and sleeps until something is ready, as an untiered one does: an idle
//! guest does not sweep.
//!
//! Call order per pass: [`plan`](Tiers::plan), the wait it asks for,
//! [`touch`](Tiers::touch) for every token reported, then
//! [`waited`](Tiers::waited). [`pin`](Tiers::pin) and
//! [`forget`](Tiers::forget) as tokens come and go; `touch` on an
//! interest change. The policy reads no clock: times come in.

/// Listed sockets below which every wait lists them all.
pub const TIER_MIN: usize = 128;
/// How long a socket stays hot after its last event (ms).
pub const HOT_MS: u64 = 1_000;
/// A full wait comes again after this many times its own cost.
pub const FULL_EVERY: u64 = 4;
/// ... and no sooner than this (ms).
pub const FULL_MIN_MS: u64 = 2;
/// Tokens one sweep covers beyond the hot ones.
pub const SWEEP_CHUNK: usize = 2048;

/// What the next wait lists and how long it may sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every socket, for up to the caller's timeout.
    All { timeout_ms: i32 },
    /// The hot sockets and those of tokens `from..to` (the caller's tokens
    /// end there or earlier), without sleeping, timed: report its cost to
    /// [`Tiers::waited`].
    Sweep { from: usize, to: usize },
    /// Only [`Tiers::hot`], for up to `timeout_ms`.
    Hot { timeout_ms: i32 },
}

/// The hot set and when the next full wait is due.
#[derive(Debug, Default)]
pub struct Tiers {
    /// Per token: hot until this time (ms); `u64::MAX` pinned; 0 cold.
    until: Vec<u64>,
    /// Per token: in `hot` (a forgotten token stays there, cold, until
    /// the next [`plan`](Tiers::plan), so forgetting costs no search).
    member: Vec<bool>,
    /// The hot tokens, in no order; each once. Between a `forget` and the
    /// next `plan` it may hold cold ones.
    hot: Vec<usize>,
    /// When the next [`Plan::Sweep`] is due (ms).
    next_sweep: u64,
    /// The last sweep's cost (µs).
    sweep_us: u64,
    /// The last hot wait found nothing ready.
    quiet: bool,
    /// Where the next sweep starts.
    cursor: usize,
}

impl Tiers {
    /// An empty hot set.
    pub fn new() -> Tiers {
        Tiers::default()
    }

    /// The tokens a [`Plan::Hot`] wait lists.
    pub fn hot(&self) -> &[usize] {
        &self.hot
    }

    /// Keeps `token` hot for good (the listener).
    pub fn pin(&mut self, token: usize) {
        self.heat(token, u64::MAX);
    }

    /// Something happened on `token` at `now_ms`: hot for [`HOT_MS`].
    pub fn touch(&mut self, token: usize, now_ms: u64) {
        self.heat(token, now_ms.saturating_add(HOT_MS));
    }

    /// `token` is gone (it leaves `hot` at the next `plan`).
    pub fn forget(&mut self, token: usize) {
        if let Some(u) = self.until.get_mut(token) {
            *u = 0;
        }
    }

    fn heat(&mut self, token: usize, until: u64) {
        if self.until.len() <= token {
            self.until.resize(token + 1, 0);
            self.member.resize(token + 1, false);
        }
        if !self.member[token] {
            self.member[token] = true;
            self.hot.push(token);
        }
        let u = &mut self.until[token];
        if *u != u64::MAX {
            *u = (*u).max(until);
        }
    }

    /// Whether `token` is in [`hot`](Tiers::hot).
    pub fn is_hot(&self, token: usize) -> bool {
        self.member.get(token).copied().unwrap_or(false)
    }

    /// The wait for a pass at `now_ms` over `listed` sockets under tokens
    /// below `tokens`, for which the caller would wait up to `timeout_ms`
    /// (-1: until something is ready).
    pub fn plan(&mut self, now_ms: u64, listed: usize, tokens: usize, timeout_ms: i32) -> Plan {
        self.cool(now_ms);
        let pinned = self.hot.iter().all(|&t| self.until[t] == u64::MAX);
        if listed < TIER_MIN || pinned {
            return Plan::All { timeout_ms };
        }
        if now_ms >= self.next_sweep {
            if self.quiet {
                return Plan::All { timeout_ms };
            }
            let from = if self.cursor < tokens { self.cursor } else { 0 };
            let to = tokens.min(from.saturating_add(SWEEP_CHUNK));
            self.cursor = to;
            return Plan::Sweep { from, to };
        }
        let until_sweep = i32::try_from(self.next_sweep - now_ms).unwrap_or(i32::MAX);
        let timeout_ms = match timeout_ms {
            t if t < 0 => until_sweep,
            t => t.min(until_sweep),
        };
        Plan::Hot { timeout_ms }
    }

    /// The wait `plan` asked for ended at `now_ms`, with sockets ready or
    /// not, after `cost_us` (measured for a [`Plan::Sweep`]). A wait that
    /// listed every socket schedules the next sweep.
    pub fn waited(&mut self, plan: Plan, now_ms: u64, ready: bool, cost_us: u64) {
        match plan {
            Plan::Hot { .. } => {
                self.quiet = !ready;
                return;
            }
            Plan::Sweep { .. } => self.sweep_us = cost_us,
            // It may have slept: its time is no measure.
            Plan::All { .. } => {}
        }
        self.quiet = false;
        let gap = (self.sweep_us * FULL_EVERY).div_ceil(1000).max(FULL_MIN_MS);
        self.next_sweep = now_ms.saturating_add(gap);
    }

    /// Drops the tokens whose time is up.
    fn cool(&mut self, now_ms: u64) {
        let (until, member) = (&mut self.until, &mut self.member);
        self.hot.retain(|&t| {
            let live = until[t] > now_ms;
            if !live {
                until[t] = 0;
                member[t] = false;
            }
            live
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANY: usize = TIER_MIN;
    /// A sweep of every token below MANY.
    const SWEEP: Plan = Plan::Sweep { from: 0, to: MANY };

    #[test]
    fn few_sockets_are_always_listed_together() {
        let mut t = Tiers::new();
        t.touch(5, 0);
        assert_eq!(t.plan(10, MANY - 1, MANY, -1), Plan::All { timeout_ms: -1 });
        assert_eq!(t.plan(10, MANY - 1, MANY, 7), Plan::All { timeout_ms: 7 });
    }

    #[test]
    fn with_nothing_hot_but_the_listener_the_wait_lists_all_and_sleeps() {
        let mut t = Tiers::new();
        t.pin(0);
        assert_eq!(t.plan(0, MANY, MANY, -1), Plan::All { timeout_ms: -1 });
        t.touch(9, 0);
        t.waited(Plan::All { timeout_ms: -1 }, 0, true, 0);
        assert!(matches!(t.plan(0, MANY, MANY, -1), Plan::Hot { .. }));
        // Cold again after HOT_MS; the listener stays.
        assert_eq!(t.plan(HOT_MS, MANY, MANY, 50), Plan::All { timeout_ms: 50 });
        assert_eq!(t.hot(), &[0]);
    }

    #[test]
    fn hot_waits_sleep_no_longer_than_the_next_sweep() {
        let mut t = Tiers::new();
        t.touch(3, 100);
        // A sweep costing 2 ms comes again 8 ms later.
        t.waited(SWEEP, 100, false, 2_000);
        assert_eq!(t.plan(100, MANY, MANY, -1), Plan::Hot { timeout_ms: 8 });
        t.waited(Plan::Hot { timeout_ms: 8 }, 102, true, 0);
        assert_eq!(t.plan(102, MANY, MANY, 1), Plan::Hot { timeout_ms: 1 });
        t.waited(Plan::Hot { timeout_ms: 1 }, 103, true, 0);
        assert_eq!(t.plan(107, MANY, MANY, 0), Plan::Hot { timeout_ms: 0 });
        t.waited(Plan::Hot { timeout_ms: 0 }, 107, true, 0);
        assert_eq!(t.plan(108, MANY, MANY, -1), SWEEP);
        // A cheap sweep still waits FULL_MIN_MS.
        t.waited(SWEEP, 108, true, 10);
        assert_eq!(
            t.plan(108, MANY, MANY, -1),
            Plan::Hot {
                timeout_ms: FULL_MIN_MS as i32
            }
        );
    }

    #[test]
    fn quiet_hot_sockets_lead_to_a_sleeping_wait_not_a_sweep() {
        let mut t = Tiers::new();
        t.touch(3, 0);
        t.waited(SWEEP, 0, true, 100);
        let hot = t.plan(0, MANY, MANY, -1);
        assert_eq!(hot, Plan::Hot { timeout_ms: 2 });
        // Nothing came on the hot sockets until the sweep was due.
        t.waited(hot, 2, false, 0);
        assert_eq!(t.plan(2, MANY, MANY, -1), Plan::All { timeout_ms: -1 });
        // Woken by something: hot waits again, then sweeps while busy.
        t.waited(Plan::All { timeout_ms: -1 }, 500, true, 0);
        assert!(matches!(t.plan(500, MANY, MANY, -1), Plan::Hot { .. }));
        t.waited(Plan::Hot { timeout_ms: 2 }, 502, true, 0);
        assert_eq!(t.plan(502, MANY, MANY, -1), SWEEP);
    }

    #[test]
    fn sweeps_take_the_tokens_a_chunk_at_a_time_round_and_round() {
        let mut t = Tiers::new();
        t.touch(7, 0);
        let tokens = 2 * SWEEP_CHUNK + 100;
        let mut now = 0;
        let mut sweep = || {
            now += 100;
            t.touch(7, now);
            let p = t.plan(now, tokens, tokens, -1);
            t.waited(p, now, true, 10);
            p
        };
        let chunks: Vec<Plan> = (0..4).map(|_| sweep()).collect();
        let c = SWEEP_CHUNK;
        assert_eq!(
            chunks,
            [
                Plan::Sweep { from: 0, to: c },
                Plan::Sweep { from: c, to: 2 * c },
                Plan::Sweep {
                    from: 2 * c,
                    to: tokens
                },
                Plan::Sweep { from: 0, to: c },
            ]
        );
        // Fewer tokens than the cursor (connections closed): from the top.
        let p = t.plan(now + 100, 300, 300, -1);
        assert_eq!(p, Plan::Sweep { from: 0, to: 300 });
        assert!(t.is_hot(7) && !t.is_hot(8));
    }

    #[test]
    fn touches_extend_and_forget_ends_hotness() {
        let mut t = Tiers::new();
        t.touch(4, 0);
        t.touch(4, 500);
        t.touch(4, 200);
        t.cool(HOT_MS + 400);
        assert_eq!(t.hot(), &[4], "the latest touch counts");
        t.cool(HOT_MS + 500);
        assert!(t.hot().is_empty());
        t.touch(4, 0);
        t.touch(6, 0);
        t.forget(4);
        t.forget(99);
        t.cool(0);
        assert_eq!(t.hot(), &[6]);
        // A token forgotten and reused before the next plan is listed once.
        t.forget(6);
        t.touch(6, 10);
        t.cool(10);
        assert_eq!(t.hot(), &[6]);
        t.pin(1);
        t.touch(1, 0);
        t.cool(u64::MAX - 1);
        assert_eq!(t.hot(), &[1], "pinned tokens never cool");
    }
}
