//! Counters a connection gathers during one
//! [`process`](super::Connection::process) call and adds to its home
//! shard once, at the end, instead of to each key's shard per key.
//!
//! In a cache split into shards on several cores, a counter written in the
//! key's shard moves that shard's counter lines to the writing core on
//! every key: a 100-key multiget would pay that a hundred times. memcached
//! keeps these counters per worker thread for the same reason. Totals stay
//! exact where they are read: `stats` first adds the asking connection's own
//! tally ([`Connection::totals`](super::Connection::totals)), and every
//! other connection's is in its home shard before its replies are sent.

use crate::store::Store;

/// Per-class hit counts kept before falling back to the shard itself: a
/// batch of gets seldom spans more value sizes than this.
const CLASS_SLOTS: usize = 4;

/// What the get family and the byte counters added since the last flush.
///
/// Contract: counts go in through the methods below between flushes;
/// [`flush_into`](Tally::flush_into) adds them to a store's `stats` and
/// class counters and starts again from zero.
#[derive(Debug, Default)]
pub(super) struct Tally {
    cmd_get: u64,
    get_hits: u64,
    get_misses: u64,
    bytes_read: u64,
    bytes_written: u64,
    /// `(class, hits)`; a slot with 0 hits is free.
    class_hits: [(u8, u64); CLASS_SLOTS],
}

impl Tally {
    /// Whether there is nothing to flush.
    pub(super) fn is_empty(&self) -> bool {
        self.cmd_get == 0 && self.bytes_read == 0 && self.bytes_written == 0
    }

    /// A get (or meta get) of one key that found nothing.
    pub(super) fn miss(&mut self) {
        self.cmd_get += 1;
        self.get_misses += 1;
    }

    /// A get of one key that found an item of class `cls`; counted in
    /// `store` itself when every class slot is taken by another class.
    pub(super) fn hit(&mut self, store: &mut Store, cls: u8) {
        self.cmd_get += 1;
        self.get_hits += 1;
        let slot = self
            .class_hits
            .iter_mut()
            .find(|(c, n)| *c == cls || *n == 0);
        match slot {
            Some(slot) => *slot = (cls, slot.1 + 1),
            None => store.classes[usize::from(cls)].get_hits += 1,
        }
    }

    /// Bytes the connection received and sent since the last flush.
    pub(super) fn bytes(&mut self, read: u64, written: u64) {
        self.bytes_read += read;
        self.bytes_written += written;
    }

    /// Adds everything to `store` and empties the tally.
    pub(super) fn flush_into(&mut self, store: &mut Store) {
        let t = core::mem::take(self);
        let s = &mut store.stats;
        s.cmd_get += t.cmd_get;
        s.get_hits += t.get_hits;
        s.get_misses += t.get_misses;
        s.bytes_read += t.bytes_read;
        s.bytes_written += t.bytes_written;
        for (cls, n) in t.class_hits {
            if n > 0 {
                store.classes[usize::from(cls)].get_hits += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Config;
    use alloc::vec::Vec;

    #[test]
    fn flush_adds_every_count_once() {
        let mut store = Store::new(Config::default(), Clock::new(0, 0));
        let mut t = Tally::default();
        t.miss();
        for cls in [1u8, 2, 3, 4, 5, 1, 5] {
            t.hit(&mut store, cls);
        }
        t.bytes(10, 20);
        // The fifth class found no slot: counted in the store at once.
        assert_eq!(store.classes[5].get_hits, 2);
        t.flush_into(&mut store);
        assert!(t.is_empty());
        let s = store.stats();
        assert_eq!((s.cmd_get, s.get_hits, s.get_misses), (8, 7, 1));
        assert_eq!((s.bytes_read, s.bytes_written), (10, 20));
        let hits: Vec<u64> = (0..7).map(|c| store.classes[c].get_hits).collect();
        assert_eq!(hits, [0, 2, 1, 1, 1, 2, 0]);
        t.flush_into(&mut store);
        assert_eq!(store.stats().cmd_get, 8);
    }
}
