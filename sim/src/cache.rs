//! The simulated server's cache: the core's store split into shards
//! ([`wasmcached_core::shards`]), as the native server splits it for its
//! workers. The host's event loop is single-threaded and owns every shard,
//! so a shard is a plain [`Store`] lent out by `&mut`: no locks.
//!
//! Each shard is made with [`Config::for_shard`] and, with more than one,
//! they share one [`Sequences`] (one CAS sequence across the cache). One
//! shard is exactly one store, unchanged: the setting every built-in
//! scenario runs with.

use wasmcached_core::shards::Sequences;
use wasmcached_core::{Clock, Config, Restore, Shards, Snapshot, Store};

/// A cache of `count` shards owned by one event loop.
pub struct Cache {
    /// The whole cache's settings (what a connection sees).
    cfg: Config,
    shards: Vec<Store>,
}

impl Cache {
    /// An empty cache of `count` shards (at least one) with `cfg` the whole
    /// cache's settings.
    pub fn new(cfg: Config, count: usize, clock: Clock) -> Cache {
        let stores = shard_configs(&cfg, count)
            .into_iter()
            .map(|c| Store::new(c, clock))
            .collect();
        Cache::of(cfg, stores)
    }

    /// A cache of `stores`, at least one (shard `i` is `stores[i]`, made
    /// with [`shard_configs`]).
    fn of(cfg: Config, mut stores: Vec<Store>) -> Cache {
        if stores.len() > 1 {
            let seq = Sequences::new();
            for s in &mut stores {
                s.share_sequences(seq.clone());
            }
        }
        Cache {
            cfg,
            shards: stores,
        }
    }

    /// Every shard, in order.
    pub fn stores_mut(&mut self) -> impl Iterator<Item = &mut Store> {
        self.shards.iter_mut()
    }

    /// When the next expiry step of any shard is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.shards.iter().filter_map(Store::poll_timeout).min()
    }

    /// Runs the expiry step of every shard that is due at `now`; whether
    /// any was.
    pub fn handle_timeout(&mut self, now: Clock) -> bool {
        let mut any = false;
        for s in &mut self.shards {
            if s.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
                s.handle_timeout(now);
                any = true;
            }
        }
        any
    }

    /// Evictions over every shard.
    pub fn evictions(&self) -> u64 {
        self.shards.iter().map(|s| s.stats().evictions).sum()
    }

    /// Clears every shard's watcher wake-up mask (the single loop serves
    /// watchers in the pass that produced their lines).
    pub fn clear_log_wakeups(&mut self) {
        for s in &mut self.shards {
            let _ = s.take_log_wakeups();
        }
    }

    /// The whole cache as one snapshot, as of `clock`.
    pub fn snapshot(&mut self, clock: Clock) -> Snapshot<'_> {
        Snapshot::of_shards(self.shards.iter_mut().collect(), clock)
    }
}

/// The settings of each of `count` shards of a cache set up by `cfg`
/// (`count` is taken as at least one).
pub fn shard_configs(cfg: &Config, count: usize) -> Vec<Config> {
    let n = count.max(1);
    vec![cfg.for_shard(n); n]
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
    Some((Cache::of(cfg.clone(), stores), report.items))
}

impl Shards for Cache {
    type Shard<'a> = &'a mut Store;

    fn count(&self) -> usize {
        self.shards.len()
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn shard(&mut self, i: usize) -> &mut Store {
        let last = self.shards.len().saturating_sub(1);
        &mut self.shards[i.min(last)]
    }
}
