//! One `wasi:io/poll` call over the pollables of the sockets waited for.
//!
//! A socket's pollables are made the first time it is waited for and kept
//! until its token is removed: a pass costs one host call (two more for a
//! timeout's clock), with no descriptor table to look each socket up in
//! as wasi-libc's `poll` has.

use super::{Event, READ, WRITE};
use crate::net::Source;
use std::io;
use wasip2::clocks::monotonic_clock::subscribe_duration;
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
    /// The token and the kind (READ or WRITE) of each pollable in the
    /// list passed to the last poll.
    listed: Vec<(usize, u8)>,
}

/// The longest wait when nothing at all is waited for (the host refuses
/// an empty list); the caller polls again after it.
const IDLE_NS: u64 = 3_600 * 1_000_000_000;

impl Sys {
    pub fn new() -> io::Result<Sys> {
        Ok(Sys {
            slots: Vec::new(),
            listed: Vec::new(),
        })
    }

    pub fn set(&mut self, token: usize, src: Source<'_>, _old: u8, new: u8) -> io::Result<()> {
        if self.slots.len() <= token {
            self.slots.resize_with(token + 1, Slot::default);
        }
        let slot = &mut self.slots[token];
        if new & READ != 0 && slot.read.is_none() {
            slot.read = Some(match src {
                Source::Listener(s) => s.subscribe(),
                Source::Stream(input, _) => input.subscribe(),
            });
        }
        if new & WRITE != 0 && slot.write.is_none() {
            if let Source::Stream(_, output) = src {
                slot.write = Some(output.subscribe());
            }
        }
        slot.mask = new & (READ | WRITE);
        Ok(())
    }

    pub fn remove(&mut self, token: usize, _src: Source<'_>) {
        if let Some(slot) = self.slots.get_mut(token) {
            *slot = Slot::default();
        }
    }

    pub fn wait(&mut self, timeout_ms: libc::c_int, out: &mut Vec<Event>) -> io::Result<()> {
        let Sys { slots, listed } = self;
        listed.clear();
        let mut list: Vec<&Pollable> = Vec::new();
        for (token, slot) in slots.iter().enumerate() {
            for (kind, p) in [(READ, &slot.read), (WRITE, &slot.write)] {
                if let (true, Some(p)) = (slot.mask & kind != 0, p) {
                    list.push(p);
                    listed.push((token, kind));
                }
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
        // wasmtime reports ready indices in list order, so a socket's read
        // and write readiness are adjacent and merge into one event (a host
        // that reorders them costs the server a second, empty read).
        for i in poll(&list) {
            let Some(&(token, kind)) = listed.get(i as usize) else {
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
        Ok(())
    }
}
