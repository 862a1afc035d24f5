//! One `wasi:io/poll` call over the pollables of the sockets waited for.
//!
//! A socket's pollables are made the first time it is waited for and kept
//! until its token is removed: a pass costs one host call (two more for a
//! timeout's clock), with no descriptor table to look each socket up in
//! as wasi-libc's `poll` has. The host's work grows with the pollables
//! listed, so with many sockets most passes list only the hot ones and
//! sweeps list a chunk of the others (see `tiers`), at the cost of two
//! clock reads.

use super::tiers::{Plan, Tiers, TIER_MIN};
use super::{Event, READ, WRITE};
use crate::net::Source;
use std::io;
use wasip2::clocks::monotonic_clock::{now, subscribe_duration};
use wasip2::io::poll::{poll, Pollable};

/// What one token is subscribed to and waits for.
#[derive(Default)]
struct Slot {
    read: Option<Pollable>,
    write: Option<Pollable>,
    /// READ and WRITE bits: what the next wait includes.
    mask: u8,
}

pub struct Sys {
    /// By token.
    slots: Vec<Slot>,
    /// Tokens whose mask is not empty.
    waiting: usize,
    /// The token and the kind (READ or WRITE) of each pollable in the
    /// list passed to the last poll.
    listed: Vec<(usize, u8)>,
    tiers: Tiers,
    /// The clock at the end of the last tiered wait (ms).
    now_ms: u64,
}

/// The longest wait when nothing at all is waited for (the host refuses
/// an empty list); the caller polls again after it.
const IDLE_NS: u64 = 3_600 * 1_000_000_000;

impl Sys {
    pub fn new() -> io::Result<Sys> {
        Ok(Sys {
            slots: Vec::new(),
            waiting: 0,
            listed: Vec::new(),
            tiers: Tiers::new(),
            now_ms: 0,
        })
    }

    pub fn set(&mut self, token: usize, src: Source<'_>, _old: u8, new: u8) -> io::Result<()> {
        if self.slots.len() <= token {
            self.slots.resize_with(token + 1, Slot::default);
        }
        let slot = &mut self.slots[token];
        if new & READ != 0 && slot.read.is_none() {
            slot.read = Some(match src {
                Source::Listener(s) => {
                    self.tiers.pin(token);
                    s.subscribe()
                }
                Source::Stream(input, _) => input.subscribe(),
            });
        }
        if new & WRITE != 0 && slot.write.is_none() {
            if let Source::Stream(_, output) = src {
                slot.write = Some(output.subscribe());
            }
        }
        let was = slot.mask != 0;
        slot.mask = new & (READ | WRITE);
        let is = slot.mask != 0;
        self.waiting = self.waiting + usize::from(is) - usize::from(was);
        // A changed interest is activity: the socket is hot (for a while;
        // a stale clock only shortens that). Untiered waits list every
        // socket anyway, and the first tiered wait lists all (nothing but
        // the listener is hot yet), so only tiered waits need this.
        if self.waiting >= TIER_MIN {
            self.tiers.touch(token, self.now_ms);
        }
        Ok(())
    }

    pub fn remove(&mut self, token: usize, _src: Source<'_>) {
        if let Some(slot) = self.slots.get_mut(token) {
            self.waiting -= usize::from(slot.mask != 0);
            *slot = Slot::default();
            self.tiers.forget(token);
        }
    }

    pub fn wait(&mut self, timeout_ms: libc::c_int, out: &mut Vec<Event>) -> io::Result<()> {
        let tiered = self.waiting >= TIER_MIN;
        let start_ns = if tiered { now() } else { 0 };
        let plan = match tiered {
            true => {
                let now_ms = start_ns / 1_000_000;
                let tokens = self.slots.len();
                self.tiers.plan(now_ms, self.waiting, tokens, timeout_ms)
            }
            false => Plan::All { timeout_ms },
        };
        let ready = self.poll(plan);
        if !tiered {
            self.report(&ready, out);
            return Ok(());
        }
        let end_ns = now();
        self.now_ms = end_ns / 1_000_000;
        self.report(&ready, out);
        for e in out.iter() {
            self.tiers.touch(e.token, self.now_ms);
        }
        let cost_us = end_ns.saturating_sub(start_ns) / 1_000;
        self.tiers
            .waited(plan, self.now_ms, !out.is_empty(), cost_us);
        Ok(())
    }

    /// Lists what `plan` says, polls once, returns the ready indices into
    /// `listed`.
    fn poll(&mut self, plan: Plan) -> Vec<u32> {
        let Sys {
            slots,
            listed,
            tiers,
            ..
        } = self;
        listed.clear();
        let mut list: Vec<&Pollable> = Vec::new();
        let timeout_ms = match plan {
            Plan::All { timeout_ms } | Plan::Hot { timeout_ms } => timeout_ms,
            Plan::Sweep { .. } => 0,
        };
        match plan {
            Plan::All { .. } => gather(slots, 0..slots.len(), &mut list, listed),
            Plan::Hot { .. } => gather(slots, tiers.hot().iter().copied(), &mut list, listed),
            Plan::Sweep { from, to } => {
                let cold = (from..to).filter(|&t| !tiers.is_hot(t));
                let tokens = tiers.hot().iter().copied().chain(cold);
                gather(slots, tokens, &mut list, listed);
            }
        }
        let timer = match u64::try_from(timeout_ms) {
            Ok(ms) => Some(subscribe_duration(ms.saturating_mul(1_000_000))),
            Err(_) if list.is_empty() => Some(subscribe_duration(IDLE_NS)),
            Err(_) => None,
        };
        if let Some(t) = &timer {
            list.push(t);
        }
        poll(&list)
    }

    /// Turns ready indices into events. wasmtime reports them in list
    /// order, so a socket's read and write readiness are adjacent and
    /// merge into one event (a host that reorders them costs the server a
    /// second, empty read).
    fn report(&self, ready: &[u32], out: &mut Vec<Event>) {
        for &i in ready {
            let Some(&(token, kind)) = self.listed.get(i as usize) else {
                continue; // the timer
            };
            let (readable, writable) = (kind == READ, kind == WRITE);
            match out.last_mut() {
                Some(e) if e.token == token => {
                    e.readable |= readable;
                    e.writable |= writable;
                }
                _ => out.push(Event {
                    token,
                    readable,
                    writable,
                    hangup: false,
                }),
            }
        }
    }
}

/// Lists the pollables `tokens` wait for, and what each is.
fn gather<'a>(
    slots: &'a [Slot],
    tokens: impl Iterator<Item = usize>,
    list: &mut Vec<&'a Pollable>,
    listed: &mut Vec<(usize, u8)>,
) {
    for token in tokens {
        let Some(slot) = slots.get(token) else {
            continue;
        };
        for (kind, p) in [(READ, &slot.read), (WRITE, &slot.write)] {
            if let (true, Some(p)) = (slot.mask & kind != 0, p) {
                list.push(p);
                listed.push((token, kind));
            }
        }
    }
}
