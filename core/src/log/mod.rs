//! memcached's event log (`watch`): lines describing fetches, stores,
//! evictions and connections, produced where the events happen and kept
//! for the connections watching them.
//!
//! The log lives in the [`Store`](crate::Store), so every event is
//! recorded under whatever guards the store (the native server's mutex),
//! whichever connection or worker caused it. Each watcher has its own
//! buffer of at most [`WATCHER_BUF`] bytes; a line that does not fit is
//! dropped and counted (`log_watcher_skipped`), and the watcher later gets
//! memcached's `skipped=<n>` line before the next line that fits. A watcher
//! that never reads therefore holds a bounded amount of memory.
//!
//! With nobody watching, [`Log::wants`] is one test of a zero mask, the
//! only cost on the request path.
//!
//! Delivery, sans-io: a watching connection moves its buffer into its
//! output with [`Log::take`] (the [`Driver`](crate::Driver) does this in
//! `pump_watchers`). A watcher's buffer going from empty to non-empty
//! marks its owner (the host's worker index, given at registration) in a
//! wake-up mask that the host takes with [`Log::take_wakeups`] and uses to
//! wake that worker.

mod conn_lines;
mod events;
mod line;

use alloc::vec::Vec;

pub(crate) use events::{eviction_line, find_logged, refused, stored};

/// memcached's `WATCHER_LIMIT`: watchers at once.
pub(crate) const WATCHER_LIMIT: usize = 20;

/// Bytes one watcher's buffer may hold (memcached's default
/// `watcher_logbuf_size`).
pub(crate) const WATCHER_BUF: usize = 256 * 1024;

/// Room a line must leave for a `skipped=<n>` line, as memcached reserves.
const SKIP_ROOM: usize = 128;

/// Event classes a watcher asks for (memcached's `LOG_*` flags). Fetches,
/// stores, evictions and connections produce lines; the other classes
/// memcached 1.6.18 accepts (`rawcmds`, `sysevents`, `proxyreqs`,
/// `proxyevents`, `proxyuser`) are accepted and stay silent.
pub(crate) mod flags {
    /// `fetchers`: every item lookup (`type=item_get`).
    pub const FETCHERS: u16 = 1;
    /// `mutations`: every store attempt (`type=item_store`).
    pub const MUTATIONS: u16 = 2;
    /// `evictions`: items evicted to make room (`type=eviction`).
    pub const EVICTIONS: u16 = 4;
    /// `connevents`: clients accepted and closed (`type=conn_new`,
    /// `type=conn_close`), from what the host reports to the store.
    pub const CONNEVENTS: u16 = 8;
    /// The silent classes.
    pub const RAWCMDS: u16 = 16;
    pub const SYSEVENTS: u16 = 32;
    pub const PROXYREQS: u16 = 64;
    pub const PROXYEVENTS: u16 = 128;
    pub const PROXYUSER: u16 = 256;
}

/// Names one watcher in the store's [`Log`]. A slot is reused only with a
/// new generation, so a stale id never reaches another watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchId {
    slot: u8,
    gen: u32,
}

/// Why adding a watcher failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchError {
    /// [`WATCHER_LIMIT`] watchers exist.
    TooMany,
}

/// The log's counters, as `stats` prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Events recorded while someone watched them (`log_worker_written`).
    pub worker_written: u64,
    /// Events lost before reaching any watcher (`log_worker_dropped`);
    /// events go straight to watchers' buffers here, so this stays 0.
    pub worker_dropped: u64,
    /// Lines a watcher had no room for (`log_watcher_skipped`).
    pub watcher_skipped: u64,
    /// Lines put in a watcher's buffer (`log_watcher_sent`).
    pub watcher_sent: u64,
}

impl LogStats {
    /// Adds another shard's counters.
    pub(crate) fn add(&mut self, o: &LogStats) {
        self.worker_written += o.worker_written;
        self.worker_dropped += o.worker_dropped;
        self.watcher_skipped += o.watcher_skipped;
        self.watcher_sent += o.watcher_sent;
    }
}

struct Watcher {
    gen: u32,
    flags: u16,
    owner: u32,
    buf: Vec<u8>,
    skipped: u64,
}

/// The event log: who watches what, their buffers, the line counter.
pub(crate) struct Log {
    /// Union of the watchers' flags: 0 while nobody watches.
    mask: u16,
    /// memcached's `gid`: numbers every event, watched or not.
    gid: u64,
    /// The cache's shared numbering, for a shard of one.
    shared_gid: Option<crate::shards::Sequences>,
    secs: u64,
    micros: u32,
    /// The descriptor number of the connection whose requests run now,
    /// printed as `cfd`.
    cfd: i32,
    watchers: Vec<Option<Watcher>>,
    next_gen: u32,
    /// Owners (bit `owner % 64`) with a buffer that became non-empty.
    wake: u64,
    /// The line being built, reused.
    scratch: Vec<u8>,
    pub(crate) stats: LogStats,
}

impl Log {
    pub(crate) fn new() -> Log {
        Log {
            mask: 0,
            gid: 0,
            shared_gid: None,
            secs: 0,
            micros: 0,
            cfd: -1,
            watchers: Vec::new(),
            next_gen: 0,
            wake: 0,
            scratch: Vec::new(),
            stats: LogStats::default(),
        }
    }

    /// Numbers events from the cache's shared sequence (a shard's log).
    pub(crate) fn share_gid(&mut self, seq: crate::shards::Sequences) {
        self.shared_gid = Some(seq);
    }

    /// Whether events of class `flag` are watched: the request path's
    /// only test.
    #[inline]
    pub(crate) fn wants(&self, flag: u16) -> bool {
        self.mask & flag != 0
    }

    /// Whether any watcher is registered: lines are made, and the time and
    /// `cfd` they carry matter, only then.
    pub(crate) fn is_watched(&self) -> bool {
        self.mask != 0
    }

    /// The wall-clock time stamped on the next lines.
    pub(crate) fn set_time(&mut self, secs: u64, micros: u32) {
        self.secs = secs;
        self.micros = micros;
    }

    /// The `cfd` printed on the next lines.
    pub(crate) fn set_cfd(&mut self, cfd: i32) {
        self.cfd = cfd;
    }

    pub(crate) fn cfd(&self) -> i32 {
        self.cfd
    }

    /// Watchers now (`log_watchers`).
    pub(crate) fn watcher_count(&self) -> usize {
        self.watchers.iter().flatten().count()
    }

    /// Adds a watcher of the classes in `flags`, owned by worker `owner`.
    pub(crate) fn add_watcher(&mut self, flags: u16, owner: u32) -> Result<WatchId, WatchError> {
        let free = self.watchers.iter().position(Option::is_none);
        let slot = match free {
            Some(i) => i,
            None if self.watchers.len() < WATCHER_LIMIT => {
                self.watchers.push(None);
                self.watchers.len() - 1
            }
            None => return Err(WatchError::TooMany),
        };
        self.next_gen = self.next_gen.wrapping_add(1);
        self.watchers[slot] = Some(Watcher {
            gen: self.next_gen,
            flags,
            owner,
            buf: Vec::new(),
            skipped: 0,
        });
        self.remask();
        Ok(WatchId {
            slot: slot as u8,
            gen: self.next_gen,
        })
    }

    /// Adds the watcher another shard's log gave `id` (every shard of a
    /// cache holds every watcher, under the same id).
    pub(crate) fn add_watcher_as(&mut self, id: WatchId, flags: u16, owner: u32) {
        let slot = usize::from(id.slot);
        if self.watchers.len() <= slot {
            self.watchers.resize_with(slot + 1, || None);
        }
        self.watchers[slot] = Some(Watcher {
            gen: id.gen,
            flags,
            owner,
            buf: Vec::new(),
            skipped: 0,
        });
        self.remask();
    }

    /// Forgets a watcher (its connection closed).
    pub(crate) fn remove_watcher(&mut self, id: WatchId) {
        if self.watcher_mut(id).is_some() {
            self.watchers[usize::from(id.slot)] = None;
            self.remask();
        }
    }

    /// Moves up to `max` bytes of whole lines of the watcher's buffer to
    /// the end of `out`; returns whether more remain.
    pub(crate) fn take(&mut self, id: WatchId, out: &mut Vec<u8>, max: usize) -> bool {
        let Some(w) = self.watcher_mut(id) else {
            return false;
        };
        let n = if w.buf.len() <= max {
            w.buf.len()
        } else {
            // Whole lines only; a first line longer than `max` goes whole.
            w.buf[..max]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(w.buf.len(), |i| i + 1)
        };
        if out.try_reserve(n).is_err() {
            return true;
        }
        out.extend_from_slice(&w.buf[..n]);
        w.buf.drain(..n);
        if w.buf.is_empty() {
            w.buf = Vec::new();
        }
        !w.buf.is_empty()
    }

    /// Owners whose watchers got lines since the last call, as a bit mask
    /// (bit `owner % 64`); cleared.
    pub(crate) fn take_wakeups(&mut self) -> u64 {
        // Asked at every unlock of a shard and seldom set: a store of zero
        // each time would dirty the line for the next core to take it.
        if self.wake == 0 {
            return 0;
        }
        core::mem::take(&mut self.wake)
    }

    fn watcher_mut(&mut self, id: WatchId) -> Option<&mut Watcher> {
        self.watchers
            .get_mut(usize::from(id.slot))?
            .as_mut()
            .filter(|w| w.gen == id.gen)
    }

    fn remask(&mut self) {
        self.mask = self.watchers.iter().flatten().fold(0, |m, w| m | w.flags);
    }

    /// Records one event of class `flag`, its line (after `ts` and `gid`)
    /// written by `body`. Call only when [`wants`](Log::wants) is true.
    pub(crate) fn emit(&mut self, flag: u16, body: impl FnOnce(&mut Vec<u8>)) {
        self.gid = match &self.shared_gid {
            Some(seq) => seq.next_gid(),
            None => self.gid + 1,
        };
        self.stats.worker_written += 1;
        let mut line = core::mem::take(&mut self.scratch);
        line.clear();
        line::head(&mut line, self.secs, self.micros, self.gid);
        body(&mut line);
        line.push(b'\n');
        for w in self.watchers.iter_mut().flatten() {
            if w.flags & flag != 0 {
                let was_empty = w.buf.is_empty();
                if offer(w, &line, &mut self.stats) && was_empty {
                    self.wake |= 1 << (w.owner % 64);
                }
            }
        }
        self.scratch = line;
    }
}

impl crate::Store {
    /// The host workers to wake because a watcher they serve has new log
    /// lines, as a bit mask (bit `worker % 64`, `worker` being
    /// [`DriverConfig::worker`](crate::DriverConfig::worker)); cleared by
    /// the call. A host with several event loops calls it after running
    /// requests, with the store still held, and wakes the others whose
    /// bits are set (the caller's own watchers are served by its own
    /// [`Driver::pump_watchers`](crate::Driver::pump_watchers)).
    pub fn take_log_wakeups(&mut self) -> u64 {
        self.log.take_wakeups()
    }
}

/// Appends `line` to a watcher's buffer, after a `skipped=<n>` line for
/// what it missed, or counts it skipped when there is no room.
fn offer(w: &mut Watcher, line: &[u8], stats: &mut LogStats) -> bool {
    let fits = w.buf.len() + line.len() + SKIP_ROOM <= WATCHER_BUF;
    if !fits || w.buf.try_reserve(line.len() + SKIP_ROOM).is_err() {
        w.skipped += 1;
        stats.watcher_skipped += 1;
        return false;
    }
    if w.skipped > 0 {
        w.buf.extend_from_slice(b"skipped=");
        crate::num::push_u64(&mut w.buf, w.skipped);
        w.buf.push(b'\n');
        w.skipped = 0;
    }
    w.buf.extend_from_slice(line);
    stats.watcher_sent += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_events_are_counted_but_not_kept() {
        let mut log = Log::new();
        assert!(!log.wants(flags::FETCHERS));
        let id = log.add_watcher(flags::MUTATIONS, 0).unwrap();
        assert!(log.wants(flags::MUTATIONS) && !log.wants(flags::FETCHERS));
        log.emit(flags::FETCHERS, |l| l.extend_from_slice(b"x"));
        let mut out = Vec::new();
        assert!(!log.take(id, &mut out, usize::MAX));
        assert!(out.is_empty());
    }

    #[test]
    fn a_full_watcher_skips_and_says_so() {
        let mut log = Log::new();
        log.set_time(1_700_000_000, 5);
        let id = log.add_watcher(flags::FETCHERS, 3).unwrap();
        let body = [b'k'; 1000];
        for _ in 0..300 {
            log.emit(flags::FETCHERS, |l| l.extend_from_slice(&body));
        }
        assert_eq!(log.take_wakeups(), 1 << 3);
        assert!(log.stats.watcher_skipped > 0);
        let mut out = Vec::new();
        log.take(id, &mut out, usize::MAX);
        assert!(out.len() <= WATCHER_BUF);
        assert!(out.starts_with(b"ts=1700000000.5 gid=1 "));
        log.emit(flags::FETCHERS, |l| l.extend_from_slice(b"next"));
        out.clear();
        log.take(id, &mut out, usize::MAX);
        let skipped = log.stats.watcher_skipped;
        let want = alloc::format!("skipped={skipped}\nts=1700000000.5 gid=301 next\n");
        assert_eq!(out, want.as_bytes());
    }

    #[test]
    fn the_twenty_first_watcher_is_refused() {
        let mut log = Log::new();
        let ids: Vec<_> = (0..20)
            .map(|_| log.add_watcher(flags::FETCHERS, 0).unwrap())
            .collect();
        assert_eq!(
            log.add_watcher(flags::FETCHERS, 0),
            Err(WatchError::TooMany)
        );
        log.remove_watcher(ids[4]);
        let again = log.add_watcher(flags::EVICTIONS, 0).unwrap();
        log.remove_watcher(ids[4]);
        assert_eq!(log.watcher_count(), 20);
        assert!(log.wants(flags::EVICTIONS));
        log.remove_watcher(again);
        assert!(!log.wants(flags::EVICTIONS));
    }
}
