//! The LRU crawler's work on the store: on-demand expiry crawls
//! (`lru_crawler crawl`) and the ordered walks behind key dumps
//! (`lru_crawler metadump`, `stats cachedump`).
//!
//! Everything here runs synchronously inside one request, bounded by the
//! store's size; nothing runs in the background.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::item::{bits, ItemRef, NIL};
use super::Store;
use crate::slab::MAX_CLASSES;

/// The crawler's tunables: set at start ([`Config::crawler`], memcached's
/// `-o lru_crawler|no_lru_crawler|lru_crawler_sleep|lru_crawler_tocrawl`),
/// changed at run time by `lru_crawler enable|disable|sleep|tocrawl` and
/// reported by `stats settings`. The default is memcached's.
///
/// [`Config::crawler`]: crate::Config::crawler
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrawlerSettings {
    /// `lru_crawler enable`/`disable`: crawls and metadumps are refused
    /// while disabled.
    pub enabled: bool,
    /// Microseconds memcached's crawler sleeps between items; recorded and
    /// reported only, since our crawls run within the request.
    pub sleep_us: u32,
    /// Items checked per class per crawl, from the LRU tail (0: all).
    pub tocrawl: u32,
}

impl Default for CrawlerSettings {
    fn default() -> Self {
        CrawlerSettings {
            enabled: true,
            sleep_us: 100,
            tocrawl: 0,
        }
    }
}

/// A set of memcached slab class ids (0..64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClassSet(u64);

impl ClassSet {
    /// Every class.
    pub const ALL: ClassSet = ClassSet(u64::MAX);

    /// Class `cls` alone.
    pub fn only(cls: u8) -> ClassSet {
        let mut s = ClassSet::default();
        s.insert(cls);
        s
    }

    pub fn insert(&mut self, cls: u8) {
        if usize::from(cls) < MAX_CLASSES {
            self.0 |= 1 << cls;
        }
    }

    pub fn contains(self, cls: u8) -> bool {
        usize::from(cls) < MAX_CLASSES && self.0 & (1 << cls) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Where a dump stands: the last item emitted, by its place in dump order
/// (class, key hash, key). Items keep their place however the store moves
/// records between batches, so an item present for the whole dump is
/// listed exactly once.
#[derive(Clone, Debug)]
pub(crate) struct DumpPos {
    cls: u8,
    hash: u64,
    key: Vec<u8>,
}

/// Items examined and reclaimed by one crawl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CrawlCount {
    pub checked: u64,
    pub reclaimed: u64,
}

impl Store {
    /// The crawler's current settings.
    pub(crate) fn crawler(&self) -> CrawlerSettings {
        self.crawler
    }

    /// Changes the crawler's settings (`lru_crawler` subcommands).
    pub(crate) fn crawler_mut(&mut self) -> &mut CrawlerSettings {
        &mut self.crawler
    }

    /// A store-relative time as a unix time, the way memcached prints
    /// exptimes and access times in dumps.
    pub(crate) fn unix_at(&self, rel: u32) -> u64 {
        self.process_started + u64::from(rel)
    }

    /// Whether an item is visible: neither expired nor flushed.
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        let it = self.item(idx);
        !self.is_expired(it) && !self.is_flushed(it)
    }

    /// `lru_crawler crawl`: walks the LRU from its tail, examining up to
    /// `tocrawl` items of each selected class (all with 0), and reclaims
    /// the expired and flushed ones, counted as memcached's crawler counts
    /// them.
    pub(crate) fn crawl(&mut self, classes: ClassSet) -> CrawlCount {
        let cap = u64::from(self.crawler.tocrawl);
        let mut seen = [0u64; MAX_CLASSES];
        let mut count = CrawlCount::default();
        let mut cur = self.lru.tail;
        while cur != NIL {
            let (prev, cls, dead, unfetched) = {
                let it = self.item(cur);
                let flushed = self.is_flushed(it);
                let dead = flushed || self.is_expired(it);
                (
                    it.prev(),
                    it.class(),
                    dead,
                    !flushed && !it.has(bits::FETCHED),
                )
            };
            let c = usize::from(cls);
            if !classes.contains(cls) || (cap != 0 && seen[c] >= cap) {
                cur = prev;
                continue;
            }
            seen[c] += 1;
            count.checked += 1;
            self.classes[c].crawler_items_checked += 1;
            if !dead {
                cur = prev;
                continue;
            }
            if unfetched {
                self.stats.expired_unfetched += 1;
                self.classes[c].expired_unfetched += 1;
            }
            self.stats.crawler_reclaimed += 1;
            self.classes[c].crawler_reclaimed += 1;
            count.reclaimed += 1;
            // Unlinking moves another record into `cur`'s handle; if that
            // record was the next one to visit, it is now at `cur`.
            let moved_from = self.unlink_tracked(cur);
            cur = if moved_from == Some(prev) { cur } else { prev };
        }
        self.stats.crawler_items_checked += count.checked;
        self.stats.lru_crawler_starts += 1;
        count
    }

    /// Counts a metadump as a crawler run that examined `checked` items of
    /// class `cls` (memcached's crawler counts the items a dump visits).
    pub(crate) fn count_dump_checked(&mut self, cls: u8, checked: u64) {
        self.stats.crawler_items_checked += checked;
        if let Some(c) = self.classes.get_mut(usize::from(cls)) {
            c.crawler_items_checked += checked;
        }
    }

    /// Counts the start of a metadump.
    pub(crate) fn count_dump_start(&mut self) {
        self.stats.lru_crawler_starts += 1;
    }

    /// The next at most `max` items of `classes` after `after` in dump
    /// order, expired ones included, into `out` (cleared first). The
    /// handles are valid until the store next changes. Memory used is
    /// bounded by `max`; a failed allocation is returned, not aborted on.
    pub(crate) fn dump_batch(
        &self,
        classes: ClassSet,
        after: Option<&DumpPos>,
        max: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), TryReserveError> {
        out.clear();
        let max = max.max(1);
        let mut cand: Vec<(u8, u64, u32)> = Vec::new();
        cand.try_reserve_exact(2 * max)?;
        for idx in self.arena.handles() {
            let it = self.item(idx);
            let e = (it.class(), self.hash(it.key()), idx);
            if !classes.contains(e.0) || after.is_some_and(|p| self.order(p, e).is_ge()) {
                continue;
            }
            if cand.len() == cand.capacity() {
                // Keep the `max` smallest: amortised linear time.
                cand.select_nth_unstable_by(max - 1, |a, b| self.cmp_entries(*a, *b));
                cand.truncate(max);
            }
            cand.push(e);
        }
        cand.sort_unstable_by(|a, b| self.cmp_entries(*a, *b));
        cand.truncate(max);
        out.try_reserve_exact(cand.len())?;
        out.extend(cand.iter().map(|e| e.2));
        Ok(())
    }

    /// The dump position of item `idx`.
    pub(crate) fn dump_pos(&self, idx: u32) -> DumpPos {
        let it = self.item(idx);
        DumpPos {
            cls: it.class(),
            hash: self.hash(it.key()),
            key: Vec::from(it.key()),
        }
    }

    /// How position `p` compares with entry `e` in dump order.
    fn order(&self, p: &DumpPos, e: (u8, u64, u32)) -> Ordering {
        (p.cls, p.hash)
            .cmp(&(e.0, e.1))
            .then_with(|| p.key.as_slice().cmp(self.item(e.2).key()))
    }

    fn cmp_entries(&self, a: (u8, u64, u32), b: (u8, u64, u32)) -> Ordering {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| self.item(a.2).key().cmp(self.item(b.2).key()))
    }

    /// `stats cachedump`: live items of class `cls` from the LRU head (most
    /// recently used first), at most `limit` of them (0: no limit), each
    /// passed to `f` until it returns false.
    pub(crate) fn walk_class(&self, cls: u8, limit: u32, mut f: impl FnMut(ItemRef<'_>) -> bool) {
        let mut shown = 0u32;
        let mut cur = self.lru.head;
        while cur != NIL && (limit == 0 || shown < limit) {
            let it = self.item(cur);
            cur = it.next();
            if it.class() != cls || self.is_expired(it) || self.is_flushed(it) {
                continue;
            }
            if !f(it) {
                return;
            }
            shown += 1;
        }
    }
}
