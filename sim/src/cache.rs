//! The simulated server's cache: the core's store split into shards
//! ([`wasmcached_core::shards`]), as the native server splits it for its
//! workers. The host's event loop is single-threaded and owns every shard,
//! so it is the core's [`Owned`] cache: plain stores, no locks. One shard
//! is exactly one store, unchanged: the setting every built-in scenario
//! runs with.

use wasmcached_core::shards::{shard_configs, Owned};
use wasmcached_core::{Clock, Config, Restore};

/// A cache of one or more shards owned by one event loop.
pub type Cache = Owned;

/// Evictions over every shard.
pub fn evictions(cache: &Cache) -> u64 {
    cache.stores().map(|s| s.stats().evictions).sum()
}

/// Clears every shard's watcher wake-up mask (the single loop serves
/// watchers in the pass that produced their lines).
pub fn clear_log_wakeups(cache: &mut Cache) {
    for s in cache.stores_mut() {
        let _ = s.take_log_wakeups();
    }
}

/// Restores `bytes`, a snapshot, into `count` shards of a cache set up by
/// `cfg`: the cache and the items restored, or `None` if the core refuses
/// the snapshot.
pub fn restore(cfg: &Config, count: usize, bytes: &[u8], clock: Clock) -> Option<(Cache, u64)> {
    let mut r = Restore::new_shards(shard_configs(cfg, count), clock);
    r.receive(bytes).ok()?;
    let (stores, report) = r.finish_shards().ok()?;
    if stores.is_empty() {
        return None;
    }
    Some((Owned::of(cfg.clone(), stores), report.items))
}
