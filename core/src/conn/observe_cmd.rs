//! `stats conns`, `stats detail` and `stats topkeys`, and how a
//! connection keeps its entry in the connection table current.

use alloc::vec::Vec;

use super::tokens::Tokens;
use super::{Connection, Progress};
use crate::num::push_u64;
use crate::observe::ConnPhase;
use crate::shards::Shards;
use crate::store::Store;

impl Connection {
    /// The id the host registered this connection under in the store's
    /// connection table (see [`crate::observe::ConnTable`]).
    pub fn set_stats_id(&mut self, id: u32) {
        self.stats_id = Some(id);
    }

    /// After a `process` call: the connection's state and, if it ran a
    /// command, the time of it, into the connection table.
    pub(super) fn publish(&mut self, store: &mut Store, progress: Progress, ran: bool) {
        self.ran_any |= ran;
        let Some(id) = self.stats_id else {
            return;
        };
        let phase = match progress {
            Progress::Close => ConnPhase::Closing,
            _ if self.closing => ConnPhase::Closing,
            Progress::Blocked => ConnPhase::Write,
            Progress::Yielded => ConnPhase::NewCmd,
            Progress::NeedInput if self.swallow > 0 => ConnPhase::Swallow,
            Progress::NeedInput if self.awaits_data() => ConnPhase::NRead,
            Progress::NeedInput if !self.ran_any => ConnPhase::NewCmd,
            Progress::NeedInput => ConnPhase::Read,
        };
        let now = store.now_ms();
        store.observe.conns.update(id, phase, ran, now);
    }

    /// The buffered input is a complete command line whose data block is
    /// still arriving.
    fn awaits_data(&self) -> bool {
        self.incomplete && self.input.get(self.consumed + self.line_scanned) == Some(&b'\n')
    }

    /// `stats conns`: every registered socket in id order (each shard
    /// holds the sockets its host worker registered), the asking
    /// connection as `conn_parse_cmd`.
    pub(super) fn stats_conns<S: Shards>(&self, shards: &mut S, out: &mut Vec<u8>) {
        let mut entries = Vec::new();
        let mut now = 0;
        for i in 0..shards.count() {
            let store = self.nth_shard(shards, i);
            now = store.now_ms();
            for (&id, e) in store.observe.conns.iter() {
                entries.push((id, e.clone()));
            }
        }
        entries.sort_by_key(|(id, _)| *id);
        for (id, e) in &entries {
            let id = *id;
            // The asking connection is running a command now.
            let (phase, last) = if Some(id) == self.stats_id {
                (ConnPhase::ParseCmd, now)
            } else {
                (e.phase, e.last_cmd_ms)
            };
            let mut line = |name: &[u8], value: &[u8]| {
                out.extend_from_slice(b"STAT ");
                push_u64(out, u64::from(id));
                out.push(b':');
                out.extend_from_slice(name);
                out.push(b' ');
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            };
            line(b"addr", &e.addr);
            if let Some(l) = &e.listen_addr {
                line(b"listen_addr", l);
            }
            line(b"state", phase.name());
            let mut secs = Vec::new();
            push_u64(&mut secs, now.saturating_sub(last) / 1000);
            line(b"secs_since_last_cmd", &secs);
        }
    }

    /// `stats detail on|off|dump` (extra tokens are ignored, as memcached
    /// ignores them). Every shard counts the keys it holds; the dump sums
    /// them.
    pub(super) fn stats_detail<S: Shards>(&mut self, shards: &mut S, toks: &Tokens<'_>) {
        match toks.get(2) {
            w @ (b"on" | b"off") => {
                self.set_detail(shards, w == b"on");
                self.out(b"OK");
            }
            b"dump" => {
                let out = self.detail_dump(shards);
                self.output.extend_from_slice(&out);
            }
            _ => self.out(b"CLIENT_ERROR usage: stats detail on|off|dump"),
        }
    }

    /// Turns per-prefix counting on or off in every shard.
    pub(super) fn set_detail<S: Shards>(&self, shards: &mut S, on: bool) {
        for i in 0..shards.count() {
            self.nth_shard(shards, i).observe.prefixes.enabled = on;
        }
    }

    /// The per-prefix dump: every shard's counters summed.
    pub(super) fn detail_dump<S: Shards>(&self, shards: &mut S) -> Vec<u8> {
        let mut all = self.nth_shard(shards, 0).observe.prefixes.clone();
        for i in 1..shards.count() {
            all.merge(&self.nth_shard(shards, i).observe.prefixes);
        }
        let mut out = Vec::new();
        all.dump(&mut out);
        out
    }

    /// `stats topkeys`: every shard's summary (of the keys it holds),
    /// merged.
    pub(super) fn stats_topkeys<S: Shards>(&mut self, shards: &mut S) {
        let mut all = self.nth_shard(shards, 0).observe.topkeys.clone();
        for i in 1..shards.count() {
            all.merge(&self.nth_shard(shards, i).observe.topkeys);
        }
        let mut out = Vec::new();
        all.report(&mut out);
        self.output.extend_from_slice(&out);
    }
}
