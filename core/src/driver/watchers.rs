//! The driver's side of `watch`: which of its connections are watchers,
//! moving their log lines from the store into their output, and telling
//! the store when they close.
//!
//! The contract for hosts, on top of [`Driver`]'s call order:
//!
//! * while [`watching`](Driver::watching) is true, call
//!   [`pump_watchers`](Driver::pump_watchers) once per pass, with the
//!   store (held, where it is shared), after step 4 and before the writes;
//! * a host with several event loops gives each driver its own
//!   [`DriverConfig::worker`](super::DriverConfig::worker), and after
//!   running requests (store still held) takes
//!   [`Store::take_log_wakeups`](crate::Store::take_log_wakeups) and wakes every other loop whose bit is
//!   set, so that its next pass pumps its watchers. Lines are recorded
//!   under the store, so a wake-up is never lost: a watcher's buffer that
//!   was empty when its loop last pumped raises the bit again.

use super::{ConnId, Driver};
use crate::conn::WATCH_OUTPUT_MAX;
use alloc::vec::Vec;

use crate::shards::Shards;

impl Driver {
    /// Whether this driver serves watchers (or has closed ones to tell
    /// the store about): the host must then call
    /// [`pump_watchers`](Driver::pump_watchers) every pass.
    #[must_use]
    pub fn watching(&self) -> bool {
        !self.watchers.is_empty() || !self.unwatch.is_empty()
    }

    /// Moves waiting log lines into the output of every watcher this
    /// driver serves (each up to a bounded amount; the rest waits in the
    /// store's bounded buffer), and removes closed watchers from the log.
    ///
    /// Every shard's log holds every watcher, so each shard is taken in
    /// turn.
    pub fn pump_watchers<S: Shards>(&mut self, cache: &mut S) {
        let unwatch = core::mem::take(&mut self.unwatch);
        let n = cache.count();
        // Lines per watcher: one part per shard, in shard order.
        let mut parts: Vec<Vec<Vec<u8>>> = alloc::vec![Vec::new(); self.watchers.len()];
        for &i in &self.watchers {
            self.slots[i as usize].watch_backlog = false;
        }
        for shard in 0..n {
            let mut store = cache.shard(shard);
            for &id in &unwatch {
                store.log.remove_watcher(id);
            }
            for (k, &i) in self.watchers.iter().enumerate() {
                let s = &mut self.slots[i as usize];
                if s.live && !s.doomed {
                    let room = s.conn.watch_room() / n;
                    let mut lines = Vec::new();
                    s.watch_backlog |= s.conn.take_watch_lines(&mut store, room, &mut lines);
                    parts[k].push(lines);
                }
            }
        }
        for (k, part) in parts.iter().enumerate() {
            let i = self.watchers[k];
            self.slots[i as usize].conn.push_watch_lines(part);
            self.after_output_change(i);
        }
    }

    /// Sets the number a connection's log lines print as `cfd` (memcached
    /// prints the socket's descriptor); by default it is the
    /// connection's index.
    pub fn set_log_fd(&mut self, id: ConnId, fd: i32) {
        let owner = self.cfg.worker;
        if let Some(s) = self.slots.get_mut(id.index()) {
            s.conn.set_log_identity(fd, owner);
        }
    }

    /// After `process`: a connection that just became a watcher is
    /// remembered.
    pub(super) fn note_watcher(&mut self, i: u32) {
        if self.slots[i as usize].conn.watch_id().is_some() && !self.watchers.contains(&i) {
            self.watchers.push(i);
        }
    }

    /// Before a connection's state is dropped: its watcher, if any, is to
    /// be removed from the store's log.
    pub(super) fn forget_watcher(&mut self, i: u32) {
        if let Some(id) = self.slots[i as usize].conn.watch_id() {
            self.unwatch.push(id);
            self.watchers.retain(|&w| w != i);
        }
    }

    /// A watcher has lines left in the store and room in its output: the
    /// host must come back without waiting for readiness.
    pub(super) fn watch_due(&self) -> bool {
        self.watchers.iter().any(|&i| {
            let s = &self.slots[i as usize];
            s.live && !s.doomed && s.watch_backlog && s.conn.pending_len() < WATCH_OUTPUT_MAX
        })
    }
}
