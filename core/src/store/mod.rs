//! The shared item store: hash index, LRU, TTL and CAS bookkeeping.

mod arena;
mod crawl;
mod item;
mod lru;
pub mod snapshot;

use core::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

pub(crate) use arena::SharedValue;
use arena::{Arena, Resize};
pub use crawl::CrawlerSettings;
pub(crate) use crawl::{ClassSet, DumpPos};
pub(crate) use item::{bits, ntotal, ItemMut, ItemRef, Rec, Shape, CAS_MAX, NIL};
use lru::Lru;

use crate::clock::Clock;
use crate::config::Config;
use crate::log::{self, Log};
use crate::slab::MAX_CLASSES;
use crate::stats::{ClassStats, Classes, HostStats, Stats};

/// memcached's `REALTIME_MAXDELTA`: exptimes above 30 days are unix times.
const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;
/// memcached starts its relative clock this many seconds in, so that
/// relative times 0 ("never") and 1 ("already expired") are never "now".
const CLOCK_START: u32 = 62;
/// Items examined per [`Store::handle_timeout`] call.
const SWEEP_BATCH: usize = 512;
/// Pause between full expiry sweeps.
const SWEEP_INTERVAL_MS: u64 = 1000;

/// Whether an item of these sizes is within `-I` (`item_size_max`).
fn size_ok(cfg: &Config, klen: usize, flags: u32, vlen: usize) -> bool {
    ntotal(klen, flags, vlen) <= u64::from(cfg.item_size_max)
}

/// Why an item could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocError {
    /// Larger than the item size limit.
    TooLarge,
    /// No room and evictions are disabled (or the item exceeds the memory
    /// limit on its own).
    NoMemory,
}

/// The cache shared by every connection of a server.
///
/// A `Store` holds items, the LRU order, the CAS counter, the `flush_all`
/// watermark and the statistics. It never reads a clock: every operation is
/// driven through a [`Connection`](crate::Connection), which passes the
/// host's [`Clock`] in. Expiry is lazy (checked on every access) and also
/// active: the host asks [`Store::poll_timeout`] when the next reclaim pass is
/// due and calls [`Store::handle_timeout`] then; each call does a bounded
/// amount of work.
///
/// Call order for a host:
/// 1. [`Store::new`] once, with the configuration and a first clock reading.
/// 2. Per event-loop pass: [`Connection::process`](crate::Connection::process)
///    for connections with input, then, if `poll_timeout()` is due,
///    `handle_timeout(now)`.
/// 3. Keep [`Store::host_stats_mut`] current (connections, rusage).
pub struct Store {
    cfg: Config,
    arena: Arena,
    table: HashTable<u32>,
    hasher: FixedState,
    lru: Lru,
    last_cas: u64,
    /// The sequences of the cache this store is a shard of, if it is one.
    shared: Option<crate::shards::Sequences>,
    bytes: u64,
    ttl_items: usize,
    oldest_live: u32,
    oldest_cas: u64,
    origin_ms: u64,
    process_started: u64,
    now: u32,
    /// The relative clock's value at `origin_ms`: [`CLOCK_START`], or
    /// where a restored snapshot's clock continues.
    clock_base: u32,
    now_ms: u64,
    /// Next (page id, slot) the expiry sweep examines.
    sweep_cursor: (usize, usize),
    sweep_next_ms: u64,
    sweep_pass_start: u32,
    flush_pending: bool,
    pub(crate) stats: Stats,
    pub(crate) classes: Classes,
    host: HostStats,
    pub(crate) verbosity: u32,
    /// The event log that `watch` connections read.
    pub(crate) log: Log,
    /// A `shutdown` not yet taken by the host.
    shutdown: Option<Shutdown>,
    /// The `lru_crawler` settings.
    crawler: CrawlerSettings,
    /// Connection table, per-prefix counters, top keys.
    pub(crate) observe: crate::observe::Observe,
    /// The `-Y` users, replaced on reload.
    pub(crate) ascii_auth: Option<crate::AuthFile>,
}

/// How a client asked the server to stop (`shutdown`, with `-A`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `shutdown`: stop now, as on SIGINT.
    Now,
    /// `shutdown graceful`: stop as on SIGUSR1 (write the snapshot for
    /// warm restart first).
    Graceful,
}

impl Store {
    /// Creates an empty store. `clock` is the first reading of the host's
    /// clocks; relative TTLs count from here and absolute exptimes are
    /// interpreted against its unix time.
    pub fn new(cfg: Config, clock: Clock) -> Store {
        let hasher = FixedState::with_seed(cfg.hash_seed);
        let verbosity = cfg.host.verbosity;
        let observe = crate::observe::Observe::new(&cfg);
        let ascii_auth = cfg.ascii_auth.clone();
        let crawler = cfg.crawler;
        Store {
            cfg,
            arena: Arena::new(),
            table: HashTable::new(),
            hasher,
            lru: Lru::new(),
            last_cas: 0,
            shared: None,
            bytes: 0,
            ttl_items: 0,
            oldest_live: 0,
            oldest_cas: 0,
            origin_ms: clock.mono_ms,
            process_started: clock.unix_secs.saturating_sub(u64::from(CLOCK_START)),
            now: CLOCK_START,
            clock_base: CLOCK_START,
            now_ms: clock.mono_ms,
            sweep_cursor: (0, 0),
            sweep_next_ms: clock.mono_ms + SWEEP_INTERVAL_MS,
            sweep_pass_start: CLOCK_START,
            flush_pending: false,
            stats: Stats::default(),
            classes: [ClassStats::default(); MAX_CLASSES],
            host: HostStats::default(),
            verbosity,
            log: Log::new(),
            shutdown: None,
            crawler,
            observe,
            ascii_auth,
        }
    }

    /// The configuration the store was created with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters for `stats`.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live (linked) items, including ones that have expired but
    /// were not reclaimed yet.
    pub fn curr_items(&self) -> usize {
        self.arena.len()
    }

    /// Bytes of items as memcached accounts them (the `bytes` stat).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Host-side figures reported by `stats`; the host keeps them current.
    pub fn host_stats_mut(&mut self) -> &mut HostStats {
        &mut self.host
    }

    pub(crate) fn host_stats(&self) -> &HostStats {
        &self.host
    }

    /// Adopts a new clock reading. Readings that go backwards are ignored.
    pub fn advance(&mut self, clock: Clock) {
        // Only a watched log needs the time: left alone otherwise, a shard
        // taken by workers on several cores is written less.
        if clock.mono_ms >= self.now_ms && self.log.is_watched() {
            self.log.set_time(clock.unix_secs, clock.unix_micros);
        }
        if clock.mono_ms > self.now_ms {
            self.now_ms = clock.mono_ms;
            let secs = (self.now_ms - self.origin_ms) / 1000;
            self.now = self
                .clock_base
                .saturating_add(u32::try_from(secs).unwrap_or(u32::MAX));
        }
    }

    /// memcached's `current_time`: seconds since start, plus 62.
    pub(crate) fn now(&self) -> u32 {
        self.now
    }

    /// Unix time as memcached reports it (`time` stat).
    pub(crate) fn unix_now(&self) -> u64 {
        self.process_started + u64::from(self.now)
    }

    /// The monotonic clock's latest reading, in milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Whole seconds since the store was created.
    pub(crate) fn uptime(&self) -> u64 {
        (self.now_ms - self.origin_ms) / 1000
    }

    /// memcached's `realtime()` applied to a raw exptime token: 0 is never,
    /// up to 30 days is relative, larger is a unix time, negative is already
    /// expired.
    pub(crate) fn realtime(&self, exptime: i32) -> u32 {
        self.realtime_wide(i64::from(exptime))
    }

    /// [`Store::realtime`] of an exptime wider than 32 signed bits: the
    /// binary protocol's unsigned 32-bit exptimes, which memcached widens
    /// to `time_t` (so `0xffffffff` is a date in 2106, not "expired").
    pub(crate) fn realtime_wide(&self, exptime: i64) -> u32 {
        let e = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if e == 0 {
            return 0;
        }
        if e > REALTIME_MAXDELTA {
            if e as u64 <= self.process_started {
                1
            } else {
                (e as u64 - self.process_started) as u32
            }
        } else {
            (e as u32).wrapping_add(self.now)
        }
    }

    /// Assigns the next CAS value (memcached's `get_cas_id`).
    /// The counter wraps to 1 after [`CAS_MAX`] (56 bits), the width a
    /// record stores. A shard draws from the cache's shared counter
    /// ([`Store::share_sequences`]).
    /// With CAS values disabled (`-C`) every item's CAS is 0.
    pub(crate) fn next_cas(&mut self) -> u64 {
        if !self.cfg.cas_enabled {
            return 0;
        }
        if let Some(shared) = &self.shared {
            self.last_cas = shared.next_cas();
            return self.last_cas;
        }
        self.last_cas = if self.last_cas >= CAS_MAX {
            1
        } else {
            self.last_cas + 1
        };
        self.last_cas
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn is_flushed(&self, it: ItemRef<'_>) -> bool {
        if self.oldest_live == 0 || self.oldest_live > self.now {
            return false;
        }
        it.time() <= self.oldest_live || {
            let cas = it.cas();
            self.oldest_cas != 0 && cas != 0 && cas < self.oldest_cas
        }
    }

    fn is_expired(&self, it: ItemRef<'_>) -> bool {
        let e = it.exptime();
        e != 0 && e <= self.now
    }

    /// Looks `key` up without side effects on the item. Expired or flushed
    /// items are unlinked and counted (`get_expired`/`get_flushed`), exactly
    /// as memcached's `do_item_get` does for every lookup, and, like it,
    /// the lookup is logged for `watch fetchers` ([`log`](crate::log)).
    #[inline]
    pub(crate) fn find(&mut self, key: &[u8]) -> Option<u32> {
        if self.log.wants(log::flags::FETCHERS) {
            return log::find_logged(self, key);
        }
        self.find_unlogged(key)
    }

    /// The item under `key`, live or not, without any side effect.
    pub(crate) fn peek(&self, key: &[u8]) -> Option<u32> {
        let h = self.hash(key);
        let arena = &self.arena;
        self.table
            .find(h, |&i| ItemRef::new(arena.get(i)).key() == key)
            .copied()
    }

    /// [`find`](Store::find) without the log line, for the lookups
    /// memcached makes without `do_item_get`.
    pub(crate) fn find_unlogged(&mut self, key: &[u8]) -> Option<u32> {
        let h = self.hash(key);
        let arena = &self.arena;
        let idx = *self
            .table
            .find(h, |&i| ItemRef::new(arena.get(i)).key() == key)?;
        let it = self.item(idx);
        if self.is_flushed(it) {
            self.unlink(idx);
            self.stats.get_flushed += 1;
            return None;
        }
        if self.is_expired(it) {
            self.unlink(idx);
            self.stats.get_expired += 1;
            return None;
        }
        Some(idx)
    }

    #[inline]
    pub(crate) fn item(&self, idx: u32) -> ItemRef<'_> {
        ItemRef::new(self.arena.get(idx))
    }

    pub(crate) fn item_mut(&mut self, idx: u32) -> ItemMut<'_> {
        ItemMut::new(self.arena.get_mut(idx))
    }

    /// The value of item `idx` as a buffer that can be held past this call,
    /// when the item is large enough to store its value apart (`None`
    /// otherwise). The holder keeps the value as it is now: a later write to
    /// the item's value copies it first, and removing or replacing the item
    /// leaves the holder's buffer alone.
    pub(crate) fn shared_value(&self, idx: u32) -> Option<SharedValue> {
        self.arena.shared(idx).cloned()
    }

    /// Whether a connection still holds item `idx`'s value for sending
    /// (memcached's refcount above the store's own).
    pub(crate) fn value_in_use(&self, idx: u32) -> bool {
        self.arena
            .shared(idx)
            .is_some_and(|v| alloc::sync::Arc::strong_count(v) > 1)
    }

    /// A fetch: the first marks the item fetched, the second active
    /// (refreshing its access time, as memcached's segmented LRU does), and
    /// each of those moves it to the LRU head.
    ///
    /// A fetch of an item already active writes nothing, as in memcached
    /// (`do_item_bump`): the eviction that reaches it at the tail gives it
    /// a second chance instead (`make_room`). Hot items are fetched far
    /// more often than they reach the tail, and a fetch that writes
    /// nothing leaves the item's and its LRU neighbours' cache lines shared
    /// between the cores that read them.
    pub(crate) fn bump(&mut self, idx: u32) {
        let now = self.now;
        let mut it = self.item_mut(idx);
        if it.has(bits::ACTIVE) {
            return;
        }
        if !it.has(bits::FETCHED) {
            it.insert_bits(bits::FETCHED);
        } else {
            it.insert_bits(bits::ACTIVE);
            it.set_time(now);
        }
        self.lru.touch(&mut self.arena, idx);
    }

    /// memcached's `do_item_update`: refreshes the access time and LRU
    /// position without counting a fetch.
    pub(crate) fn update(&mut self, idx: u32) {
        let now = self.now;
        self.item_mut(idx).set_time(now);
        self.lru.touch(&mut self.arena, idx);
    }

    /// Sets an item's expiry, keeping the count of items with a TTL, and
    /// returns the item's handle, which changes when the record has to grow
    /// or shrink by its exptime word into another size class. Other handles
    /// may change too, as with [`Store::unlink`].
    #[must_use]
    pub(crate) fn set_exptime(&mut self, idx: u32, exptime: u32) -> u32 {
        let old = self.item(idx).exptime();
        match (old != 0, exptime != 0) {
            (false, true) => self.ttl_items += 1,
            (true, false) => self.ttl_items -= 1,
            (true, true) => {
                self.item_mut(idx).overwrite_exptime(exptime);
                return idx;
            }
            (false, false) => return idx,
        }
        let new_size = Shape {
            exptime,
            ..self.item(idx).shape()
        }
        .size();
        match self.arena.resize_plan(idx, new_size) {
            Resize::InPlace => {
                let mut copy = [0u8; arena::SMALL_MAX];
                let rec = self.arena.get_mut(idx);
                let n = rec.head.len();
                copy[..n].copy_from_slice(rec.head);
                item::rewrite_exptime(Rec::from(&copy[..n]), rec, exptime);
                idx
            }
            Resize::Rebox => {
                // Only the head changes; the value (which connections may be
                // sending) stays where it is.
                let it = self.item(idx);
                let mut head = alloc::vec![0u8; new_size - it.value().len()];
                item::rewrite_head(it, &mut head, exptime);
                self.arena.rebox(idx, head.into_boxed_slice());
                idx
            }
            Resize::Move => {
                let vlen = self.item(idx).value().len();
                let Some(to) = self.arena.alloc(new_size, vlen) else {
                    // `link` keeps a page in reserve for every class (see
                    // `Arena::can_link`), so this is a small record growing
                    // into the large class whose value (under SMALL_MAX
                    // bytes) could not be allocated. The exptime stays as
                    // it was; keep the counts right.
                    if exptime != 0 {
                        self.ttl_items -= 1;
                    } else {
                        self.ttl_items += 1;
                    }
                    return idx;
                };
                self.arena
                    .with_pair(idx, to, |src, dst| item::rewrite_exptime(src, dst, exptime));
                self.moved(idx, to);
                if let Some(from) = self.arena.remove(idx) {
                    self.moved(from, idx);
                }
                to
            }
        }
    }

    /// A linked record moved from handle `from` to `to`: repoints its index
    /// entry and LRU neighbours.
    fn moved(&mut self, from: u32, to: u32) {
        let h = self.hash(self.item(to).key());
        if let Some(slot) = self.table.find_mut(h, |&i| i == from) {
            *slot = to;
        }
        self.lru.relocate(&mut self.arena, from, to);
    }

    /// Whether an item of this shape is within the item size limit.
    pub(crate) fn size_ok(&self, klen: usize, flags: u32, vlen: usize) -> bool {
        size_ok(&self.cfg, klen, flags, vlen)
    }

    /// Removes an item. The handle of one other item may change: the last
    /// record of its size class moves into the freed slot.
    pub(crate) fn unlink(&mut self, idx: u32) {
        let _ = self.unlink_tracked(idx);
    }

    /// [`Store::unlink`], returning the handle of the record that moved
    /// into `idx`'s slot, if one did.
    pub(crate) fn unlink_tracked(&mut self, idx: u32) -> Option<u32> {
        let (h, nt, cls, had_ttl) = {
            let it = self.item(idx);
            (
                self.hash(it.key()),
                it.ntotal(),
                it.class(),
                it.exptime() != 0,
            )
        };
        if let Ok(e) = self.table.find_entry(h, |&i| i == idx) {
            e.remove();
        }
        self.lru.remove(&mut self.arena, idx);
        self.bytes -= nt;
        if had_ttl {
            self.ttl_items -= 1;
        }
        let c = &mut self.classes[usize::from(cls)];
        c.number -= 1;
        c.mem_requested -= nt;
        let from = self.arena.remove(idx);
        if let Some(from) = from {
            self.moved(from, idx);
        }
        from
    }

    /// Bytes items may take: the memory limit less the share reserved for
    /// the store's own structures ([`Config::reserve_per_mille`]).
    fn item_limit(&self) -> u64 {
        let limit = self.cfg.memory_limit;
        limit - limit / 1000 * u64::from(self.cfg.reserve_per_mille.min(1000))
    }

    /// Makes room for `need` more bytes by reclaiming expired items and
    /// evicting from the LRU tail; an active item at the tail is moved to
    /// the head instead (see [`Store::bump`]).
    fn make_room(&mut self, need: u64) -> Result<(), AllocError> {
        while self.bytes + need > self.item_limit() {
            let tail = self.lru.tail;
            if tail == NIL {
                return Err(AllocError::NoMemory);
            }
            let it = ItemRef::new(self.arena.get(tail));
            let cls = usize::from(it.class());
            if self.is_expired(it) || self.is_flushed(it) {
                self.stats.reclaimed += 1;
                self.classes[cls].reclaimed += 1;
                if !it.has(bits::FETCHED) {
                    self.stats.expired_unfetched += 1;
                    self.classes[cls].expired_unfetched += 1;
                }
            } else if !self.cfg.evictions {
                self.classes[cls].outofmemory += 1;
                return Err(AllocError::NoMemory);
            } else if it.has(bits::ACTIVE) {
                // Fetched again since it last came to the head: back to
                // the head, no longer active, so it goes at its next turn
                // unless fetched meanwhile. Each turn clears one item's
                // bit, so the loop ends within one pass of the list.
                self.item_mut(tail).remove_bits(bits::ACTIVE);
                self.lru.touch(&mut self.arena, tail);
                continue;
            } else {
                if self.log.wants(log::flags::EVICTIONS) {
                    self.log.eviction(&log::eviction_line(it, self.now));
                }
                self.stats.evictions += 1;
                let c = &mut self.classes[cls];
                c.evicted += 1;
                if it.exptime() != 0 {
                    c.evicted_nonzero += 1;
                }
                if !it.has(bits::FETCHED) {
                    self.stats.evicted_unfetched += 1;
                    c.evicted_unfetched += 1;
                }
                if it.has(bits::ACTIVE) {
                    self.stats.evicted_active += 1;
                    c.evicted_active += 1;
                }
            }
            self.unlink(tail);
        }
        Ok(())
    }

    /// The part of [`Store::reserve`] that never evicts a live item: the
    /// item size limit, the memory limit and, when evictions are off, room
    /// (making it then only reclaims expired and flushed items). An item
    /// refused here is refused by `reserve`; with evictions on, `reserve`
    /// cannot refuse an item admitted here. Reclaiming can move records,
    /// so handles held across this call must be looked up again.
    pub(crate) fn admit(&mut self, klen: usize, flags: u32, vlen: usize) -> Result<(), AllocError> {
        if !self.size_ok(klen, flags, vlen) {
            return Err(AllocError::TooLarge);
        }
        let need = ntotal(klen, flags, vlen);
        if need > self.item_limit() {
            return Err(AllocError::NoMemory);
        }
        if !self.cfg.evictions {
            return self.make_room(need);
        }
        Ok(())
    }

    /// Checks size and memory for a new item, evicting as needed. Call
    /// before [`Store::link`]; a successful check guarantees `link` succeeds
    /// as long as nothing else is linked in between (and, for a large value,
    /// the process's allocator still has the memory it had here).
    pub(crate) fn reserve(
        &mut self,
        klen: usize,
        flags: u32,
        vlen: usize,
    ) -> Result<(), AllocError> {
        self.admit(klen, flags, vlen)?;
        self.make_room(ntotal(klen, flags, vlen))?;
        let shape = Shape {
            klen,
            vlen,
            flags,
            exptime: 0,
        };
        if arena::is_large(shape.size()) {
            // A large value gets its own allocation when the item is linked.
            // Trying that allocation here refuses a value the process cannot
            // hold with memcached's reply; should the real allocation fail
            // all the same, `link` reports `NoMemory` instead of aborting.
            let mut probe = alloc::vec::Vec::<u8>::new();
            probe
                .try_reserve_exact(vlen)
                .map_err(|_| AllocError::NoMemory)?;
        }
        Ok(())
    }

    /// Links a new item (the key must not be present) with a fresh CAS, at
    /// the LRU head: `key`, the concatenation of `parts` as its value, and
    /// the given state `bits`. Returns its handle; fails when every handle
    /// is in use or a large value cannot be allocated.
    pub(crate) fn link(
        &mut self,
        key: &[u8],
        parts: &[&[u8]],
        flags: u32,
        exptime: u32,
        state: u8,
    ) -> Result<u32, AllocError> {
        let vlen = parts.iter().map(|p| p.len()).sum();
        let shape = Shape {
            klen: key.len(),
            vlen,
            flags,
            exptime,
        };
        if !self.arena.can_link() {
            return Err(AllocError::NoMemory);
        }
        let idx = self
            .arena
            .alloc(shape.size(), vlen)
            .ok_or(AllocError::NoMemory)?;
        shape.write(self.arena.get_mut(idx), key, parts, state);
        let cas = self.next_cas();
        let now = self.now;
        let mut m = self.item_mut(idx);
        m.set_cas(cas);
        m.set_time(now);
        let nt = ntotal(key.len(), flags, vlen);
        let cls = usize::from(crate::slab::class_of(nt));
        if exptime != 0 {
            self.ttl_items += 1;
        }
        let h = self.hash(key);
        let arena = &self.arena;
        let hasher = &self.hasher;
        self.table.insert_unique(h, idx, |&i| {
            hasher.hash_one(ItemRef::new(arena.get(i)).key())
        });
        self.lru.push_head(&mut self.arena, idx);
        self.bytes += nt;
        self.stats.total_items += 1;
        let c = &mut self.classes[cls];
        c.number += 1;
        c.mem_requested += nt;
        Ok(idx)
    }

    /// `flush_all [delay]` as memcached 1.6.18 implements it: items last
    /// updated at or before the watermark, or (for an immediate flush) with a
    /// CAS older than the flush, become invisible once the watermark is due.
    ///
    /// Without CAS values (`-C`) memcached cannot tell an item stored in
    /// the flush's second before the flush from one stored after it, and
    /// hides both: the watermark is the flush's second itself.
    ///
    /// An immediate flush takes a CAS value as its bound, `cas` or else a
    /// new one, and returns it: the shards of one cache flush with one.
    pub(crate) fn flush(&mut self, delay: i64, cas: Option<u64>) -> Option<u64> {
        let new_oldest = if delay > 0 {
            self.realtime_wide(delay)
        } else {
            self.now
        };
        self.flush_pending = true;
        if !self.cfg.cas_enabled {
            self.oldest_live = new_oldest;
            return None;
        }
        self.oldest_live = new_oldest.wrapping_sub(1);
        if self.oldest_live > self.now {
            return None;
        }
        self.oldest_cas = match cas {
            Some(c) => c,
            None => self.next_cas(),
        };
        Some(self.oldest_cas)
    }

    /// Makes this store a shard of a cache whose shards share `seq` (see
    /// [`crate::shards`]): CAS values and `watch` line numbers come from
    /// it from now on, CAS values after every one this store issued (a
    /// restored snapshot's included).
    pub fn share_sequences(&mut self, seq: crate::shards::Sequences) {
        seq.raise_cas_to(self.last_cas);
        self.log.share_gid(seq.clone());
        self.observe.prefixes.share_seq(seq.clone());
        self.shared = Some(seq);
    }

    /// The last CAS value issued (the shared counter's, for a shard).
    pub(crate) fn last_cas(&self) -> u64 {
        self.shared.as_ref().map_or(self.last_cas, |c| c.last_cas())
    }

    /// Records a `shutdown` request (`-A`); the host stops when
    /// [`Store::poll_shutdown`] reports it.
    pub(crate) fn request_shutdown(&mut self, how: Shutdown) {
        // A graceful request is not downgraded by a later plain one.
        if self.shutdown != Some(Shutdown::Graceful) {
            self.shutdown = Some(how);
        }
    }

    /// A `shutdown` a client asked for, once: the host stops serving (and
    /// with [`Shutdown::Graceful`] writes its snapshot first). Call after
    /// processing connections.
    #[must_use]
    pub fn poll_shutdown(&mut self) -> Option<Shutdown> {
        self.shutdown.take()
    }

    /// Changes the memory limit (`cache_memlimit`), evicting down to it.
    /// The limit is capped at [`Config::memory_limit_max`], so a client
    /// cannot grow the store beyond what the host can back.
    pub(crate) fn set_memory_limit(&mut self, bytes: u64) {
        self.cfg.memory_limit = bytes.min(self.cfg.memory_limit_max);
        let _ = self.make_room(0);
    }

    /// Zeroes the counters (`stats reset`).
    pub(crate) fn reset_stats(&mut self) {
        self.stats = Stats::default();
        self.observe.reset();
        for c in self.classes.iter_mut() {
            c.reset();
        }
        self.host.total_connections = 0;
        self.host.rejected_connections = 0;
    }

    /// When the next expiry sweep is due, in the host's monotonic
    /// milliseconds, or `None` when nothing can expire. Hosts use it as
    /// their poll timeout.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.ttl_items == 0 && !self.flush_pending {
            return None;
        }
        Some(self.sweep_next_ms)
    }

    /// Runs one bounded step of the expiry sweep if it is due: examines up to
    /// a fixed number of items and unlinks the expired and flushed ones.
    /// Returns how many were reclaimed.
    pub fn handle_timeout(&mut self, clock: Clock) -> usize {
        self.advance(clock);
        if self.now_ms < self.sweep_next_ms {
            return 0;
        }
        if self.sweep_cursor == (0, 0) {
            self.stats.lru_crawler_starts += 1;
            self.sweep_pass_start = self.now;
        }
        let mut reclaimed = 0;
        let mut examined = 0;
        while examined < SWEEP_BATCH && self.sweep_cursor.0 < self.arena.page_ids() {
            let (pid, slot) = self.sweep_cursor;
            if slot >= self.arena.records_on(pid) {
                self.sweep_cursor = (pid + 1, 0);
                continue;
            }
            let idx = Arena::handle_at(pid, slot);
            let it = ItemRef::new(self.arena.get(idx));
            examined += 1;
            self.stats.crawler_items_checked += 1;
            if self.is_expired(it) || self.is_flushed(it) {
                let cls = usize::from(it.class());
                if !it.has(bits::FETCHED) {
                    self.stats.expired_unfetched += 1;
                    self.classes[cls].expired_unfetched += 1;
                }
                // Like memcached's LRU maintainer (not its on-demand
                // crawler), the sweep counts as plain reclaims.
                self.stats.reclaimed += 1;
                self.classes[cls].reclaimed += 1;
                // Another record moves into this slot; examine it next.
                self.unlink(idx);
                reclaimed += 1;
            } else {
                self.sweep_cursor.1 += 1;
            }
        }
        if self.sweep_cursor.0 >= self.arena.page_ids() {
            self.sweep_cursor = (0, 0);
            self.sweep_next_ms = self.now_ms + SWEEP_INTERVAL_MS;
            if self.flush_pending && self.oldest_live < self.sweep_pass_start {
                self.flush_pending = false;
            }
        }
        reclaimed
    }

    /// Verifies the internal invariants: index, LRU list and byte accounting
    /// agree. For tests; O(n).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        if self.table.len() != self.arena.len() {
            return Err("index size differs from item count");
        }
        let mut bytes = 0;
        let mut ttl = 0;
        let mut count = 0;
        for i in self.arena.handles() {
            let it = self.item(i);
            count += 1;
            if it.shape().vlen != it.value().len() {
                return Err("value length differs from the record's");
            }
            bytes += it.ntotal();
            if it.exptime() != 0 {
                ttl += 1;
            }
            let h = self.hash(it.key());
            match self.table.find(h, |&j| self.item(j).key() == it.key()) {
                Some(&j) if j == i => {}
                _ => return Err("index does not point at item"),
            }
        }
        if count != self.arena.len() {
            return Err("arena count drifted");
        }
        if bytes != self.bytes {
            return Err("byte accounting drifted");
        }
        if ttl != self.ttl_items {
            return Err("ttl item count drifted");
        }
        let mut n = 0;
        let mut prev = NIL;
        let mut cur = self.lru.head;
        while cur != NIL {
            let it = self.item(cur);
            if it.prev() != prev {
                return Err("lru back link broken");
            }
            n += 1;
            if n > self.arena.len() {
                return Err("lru has a cycle");
            }
            prev = cur;
            cur = it.next();
        }
        if prev != self.lru.tail || n != self.arena.len() {
            return Err("lru does not cover every item");
        }
        let class_total: u64 = self.classes.iter().map(|c| c.number).sum();
        if class_total != self.arena.len() as u64 {
            return Err("class counts drifted");
        }
        if self.bytes > self.cfg.memory_limit {
            return Err("memory limit exceeded");
        }
        Ok(())
    }
}
