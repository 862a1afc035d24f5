//! `watch`: a connection that turns into a reader of the event log
//! ([`crate::log`]).
//!
//! After `OK` the connection runs no more commands: whatever the client
//! sends is read (so a hang-up is noticed) and dropped, and its output is
//! the log lines the driver moves into it ([`Connection::pump_watch`]).

use alloc::vec::Vec;

use super::tokens::Tokens;
use super::{Connection, Step};
use crate::log::{flags, WatchError, WatchId};
use crate::shards::Shards;

/// A watcher's output is refilled from its log buffer only while less
/// than this is pending, so a watcher that does not read holds at most
/// this plus its log buffer.
pub(crate) const WATCH_OUTPUT_MAX: usize = 64 * 1024;

/// The `gid` of a log line (`ts=<t> gid=<n> ...`), or `u64::MAX` for a
/// line without one.
fn gid_of(line: &[u8]) -> u64 {
    let Some(at) = line.windows(5).position(|w| w == b" gid=") else {
        return u64::MAX;
    };
    let digits = &line[at + 5..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    crate::num::parse_u64(&digits[..end]).unwrap_or(u64::MAX)
}

/// The classes `watch` accepts, by name, as memcached 1.6.18 spells them
/// (`deletions` came later, in 1.6.20).
fn class(name: &[u8]) -> Option<u16> {
    Some(match name {
        b"rawcmds" => flags::RAWCMDS,
        b"evictions" => flags::EVICTIONS,
        b"fetchers" => flags::FETCHERS,
        b"mutations" => flags::MUTATIONS,
        b"sysevents" => flags::SYSEVENTS,
        b"connevents" => flags::CONNEVENTS,
        b"proxyreqs" => flags::PROXYREQS,
        b"proxyevents" => flags::PROXYEVENTS,
        b"proxyuser" => flags::PROXYUSER,
        _ => return None,
    })
}

impl Connection {
    /// `watch [class ...]`, memcached's `process_watch_command`: with no
    /// class, `fetchers`; an unknown word (`noreply` included, which also
    /// silences the reply) is `ERROR`; `-W` refuses; past the watcher
    /// limit, `WATCHER_TOO_MANY`.
    pub(super) fn watch_command<S: Shards>(
        &mut self,
        shards: &mut S,
        toks: &Tokens<'_>,
        consumed: usize,
    ) -> Step {
        self.noreply = toks.noreply();
        if !shards.config().watch_enabled {
            self.out(b"CLIENT_ERROR watch commands not allowed");
            return Step::Done(consumed);
        }
        let mut wanted = 0;
        for word in toks.iter_from(1) {
            match class(word) {
                Some(f) => wanted |= f,
                None => {
                    self.out(b"ERROR");
                    return Step::Done(consumed);
                }
            }
        }
        if toks.ntokens() <= 2 {
            wanted = flags::FETCHERS;
        }
        // Shard 0 numbers the watcher and keeps the limit; every other
        // shard's log gets it under the same id, so events anywhere reach it.
        let added = self
            .nth_shard(shards, 0)
            .log
            .add_watcher(wanted, self.log_owner);
        match added {
            Ok(id) => {
                for i in 1..shards.count() {
                    let mut store = self.nth_shard(shards, i);
                    store.log.add_watcher_as(id, wanted, self.log_owner);
                }
                self.out(b"OK");
                self.watch = Some(id);
            }
            Err(WatchError::TooMany) => self.out(b"WATCHER_TOO_MANY log watcher limit reached"),
        }
        Step::Done(consumed)
    }

    /// The watcher this connection became, if it did.
    pub(crate) fn watch_id(&self) -> Option<WatchId> {
        self.watch
    }

    /// Sets what this connection's log lines say it is: `cfd` (memcached
    /// prints the socket's descriptor) and the host worker to wake for it.
    pub(crate) fn set_log_identity(&mut self, cfd: i32, owner: u32) {
        self.log_fd = cfd;
        self.log_owner = owner;
    }

    /// Room for log lines in this watcher's output: refilled only while
    /// less than [`WATCH_OUTPUT_MAX`] is pending.
    pub(crate) fn watch_room(&self) -> usize {
        WATCH_OUTPUT_MAX.saturating_sub(self.pending_len())
    }

    /// Takes up to `max` bytes of whole lines waiting for this watcher in
    /// one shard's log into `out`. Returns whether lines remain there.
    pub(crate) fn take_watch_lines(
        &self,
        store: &mut crate::Store,
        max: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        match self.watch {
            Some(id) if max > 0 => store.log.take(id, out, max),
            Some(_) => true,
            None => false,
        }
    }

    /// Appends lines taken from every shard's log ([`take_watch_lines`]),
    /// in `gid` order: each shard's lines are in order already, and the
    /// cache numbers events in one sequence.
    ///
    /// [`take_watch_lines`]: Connection::take_watch_lines
    pub(crate) fn push_watch_lines(&mut self, parts: &[Vec<u8>]) {
        let mut lines: Vec<(u64, &[u8])> = Vec::new();
        for part in parts {
            let start = lines.len();
            lines.extend(
                part.split_inclusive(|&b| b == b'\n')
                    .map(|l| (gid_of(l), l)),
            );
            // A `skipped=` line has no gid: it goes with the line after it.
            let mut next = u64::MAX;
            for (gid, _) in lines[start..].iter_mut().rev() {
                if *gid == u64::MAX {
                    *gid = next;
                } else {
                    next = *gid;
                }
            }
        }
        lines.sort_by_key(|&(gid, _)| gid);
        for (_, line) in lines {
            self.output.extend_from_slice(line);
        }
    }
}
