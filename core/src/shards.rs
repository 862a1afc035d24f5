//! Partitions of one cache: how a host lets workers on several cores use
//! the store without one global lock.
//!
//! A partitioned cache is `count` plain [`Store`]s, each holding the keys
//! [`shard_of`] sends to it, with its own LRU, memory share and expiry
//! sweep ([`Config::for_shard`] derives each one's settings); the shards
//! draw CAS values (and `watch` line numbers) from one [`Sequences`], so
//! they run in one sequence.
//! A [`Connection`](crate::Connection) takes one shard at a time through
//! [`Shards::shard`]: a request on one key holds
//! only that key's shard, a multiget takes the shards one key at a time,
//! and `stats`, `flush_all` and `cache_memlimit` visit every shard in turn.
//! How a shard is held (a mutex per shard, a single owner) is the host's
//! business: the trait hands out one guard at a time, so a connection never
//! holds two shards and no lock order is needed.
//!
//! A single [`Store`] is itself a one-shard cache; [`Owned`] is a cache
//! of several shards that one thread owns (no locks), and a host that
//! locks its shards itself builds them with [`shard_configs`] and
//! [`join`].

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::ops::DerefMut;
use core::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::FixedState;

use crate::config::Config;
use crate::store::{Store, CAS_MAX};

/// Seed of the key-to-shard hash: fixed, so a key's shard never depends on
/// the process, and different from any store's index seed in use so keys
/// spread over a shard's index independently of how they were sharded.
const SHARD_SEED: u64 = 0x6a09_e667_f3bc_c908;

/// Most shards a cache is split into.
pub const MAX_SHARDS: usize = 256;

/// A cache made of one or more [`Store`]s, as a connection sees it.
///
/// Contract: `count()` is constant and at least 1; `shard(i)` for
/// `i < count()` returns the store for partition `i`, exclusively, until
/// the guard is dropped; every key lives in shard
/// `shard_of(key, count())`. Requests that name no key (their counters,
/// `shutdown`) go to `home()`.
pub trait Shards {
    /// Exclusive access to one shard.
    type Shard<'a>: DerefMut<Target = Store>
    where
        Self: 'a;

    /// Number of shards.
    fn count(&self) -> usize;

    /// The whole cache's settings (shard `(0, 1)`, the whole memory limit):
    /// what parsing and replies need without taking a shard.
    fn config(&self) -> &Config;

    /// Shard `i`, held until the guard drops.
    fn shard(&mut self, i: usize) -> Self::Shard<'_>;

    /// The shard that takes counters belonging to no key (bytes read and
    /// written, `flush_all` counts), each `process` call's get counters
    /// (gathered per connection, added once) and `shutdown` requests; a
    /// host with several workers may give each its own to spread that
    /// traffic.
    fn home(&self) -> usize {
        0
    }
}

impl Shards for Store {
    type Shard<'a> = &'a mut Store;

    fn count(&self) -> usize {
        1
    }

    fn config(&self) -> &Config {
        Store::config(self)
    }

    fn shard(&mut self, _i: usize) -> &mut Store {
        self
    }
}

/// The numbers the shards of one cache draw from together, so that they
/// run in one sequence across the cache as memcached's global counters
/// do: CAS values, the `gid` of `watch` lines and the age of `stats
/// detail` prefixes (a cache of one store needs none). Shared by cloning.
#[derive(Clone, Debug, Default)]
pub struct Sequences {
    cas: Arc<AtomicU64>,
    gid: Arc<AtomicU64>,
    prefix: Arc<AtomicU64>,
}

impl Sequences {
    /// Sequences that have issued nothing.
    #[must_use]
    pub fn new() -> Sequences {
        Sequences::default()
    }

    /// The next CAS value; after the largest a record holds, 1 again.
    pub(crate) fn next_cas(&self) -> u64 {
        let step = |last: u64| Some(if last >= CAS_MAX { 1 } else { last + 1 });
        match self
            .cas
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
        {
            Ok(last) | Err(last) => step(last).unwrap_or(1),
        }
    }

    /// The last CAS value issued.
    pub(crate) fn last_cas(&self) -> u64 {
        self.cas.load(Ordering::Relaxed)
    }

    /// Continues CAS values after `last` if that is ahead.
    pub(crate) fn raise_cas_to(&self, last: u64) {
        self.cas.fetch_max(last, Ordering::Relaxed);
    }

    /// The next `gid`.
    pub(crate) fn next_gid(&self) -> u64 {
        self.gid.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// The next number for a prefix `stats detail` starts counting (its
    /// dump lists newer prefixes first).
    pub(crate) fn next_prefix(&self) -> u64 {
        self.prefix.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }
}

/// The shard holding `key` among `count`.
#[must_use]
pub fn shard_of(key: &[u8], count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let h = FixedState::with_seed(SHARD_SEED).hash_one(key);
    ((u128::from(h) * count as u128) >> 64) as usize
}

/// How many shards a cache served by `threads` workers is split into: one
/// for a single worker (exactly one store, as in the guest), otherwise the
/// power of two at or above 2 x `threads`², at most [`MAX_SHARDS`], fewer
/// where a shard's memory share would drop below four of the largest
/// items (so an item that fits the cache still fits its shard).
#[must_use]
pub fn shard_count(cfg: &Config, threads: usize) -> usize {
    if threads <= 1 {
        return 1;
    }
    // A key's shard is held by one of the other workers with a chance of
    // about (threads - 1) / n when each holds one, as they almost always
    // do during multigets; n = 2 x threads² keeps that under 1 / (2 x
    // threads), so the waits per request do not grow with the workers.
    // Measured on 16 cores, 100-key multigets at -t 8: 46k requests/s with
    // 32 shards, 57-60k with 128; on 2 cores (-t 2, clients on the same
    // cores) 32 shards cost 5-7 % of 90/10 throughput against 8.
    let want = threads
        .saturating_mul(threads)
        .saturating_mul(2)
        .min(MAX_SHARDS)
        .next_power_of_two()
        .min(MAX_SHARDS);
    let floor = u64::from(cfg.item_size_max).saturating_mul(4).max(1);
    let mut n = want;
    while n > 1 && cfg.memory_limit / (n as u64) < floor {
        n /= 2;
    }
    n
}

/// The settings of each of the `count` shards (at least one) of a cache
/// whose whole settings are `cfg`.
#[must_use]
pub fn shard_configs(cfg: &Config, count: usize) -> Vec<Config> {
    let n = count.max(1);
    alloc::vec![cfg.for_shard(n); n]
}

/// Makes `stores` the shards of one cache: with more than one they share
/// one [`Sequences`]; a single store keeps its own numbering, unchanged.
pub fn join(stores: &mut [Store]) {
    if stores.len() > 1 {
        let seq = Sequences::new();
        for s in stores {
            s.share_sequences(seq.clone());
        }
    }
}

/// A cache whose shards one thread owns (a single-threaded host, a
/// test): plain [`Store`]s lent out by `&mut`, no locks.
pub struct Owned {
    /// The whole cache's settings (what a connection sees).
    cfg: Config,
    shards: Vec<Store>,
}

impl Owned {
    /// An empty cache of `count` shards (at least one).
    #[must_use]
    pub fn new(cfg: Config, count: usize, clock: crate::Clock) -> Owned {
        let stores = shard_configs(&cfg, count)
            .into_iter()
            .map(|c| Store::new(c, clock))
            .collect();
        Owned::of(cfg, stores)
    }

    /// A cache of `stores` (made with [`shard_configs`], at least one:
    /// an empty list gets one empty store), joined ([`join`]).
    #[must_use]
    pub fn of(cfg: Config, mut stores: Vec<Store>) -> Owned {
        if stores.is_empty() {
            stores.push(Store::new(cfg.clone(), crate::Clock::new(0, 0)));
        }
        join(&mut stores);
        Owned {
            cfg,
            shards: stores,
        }
    }

    /// Every shard, in order.
    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.shards.iter()
    }

    /// Every shard, in order.
    pub fn stores_mut(&mut self) -> impl Iterator<Item = &mut Store> {
        self.shards.iter_mut()
    }

    /// When the next expiry step of any shard is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.shards.iter().filter_map(Store::poll_timeout).min()
    }

    /// Runs the expiry step of every shard that is due at `now`; whether
    /// any was.
    pub fn handle_timeout(&mut self, now: crate::Clock) -> bool {
        let mut any = false;
        for s in &mut self.shards {
            if s.poll_timeout().is_some_and(|t| t <= now.mono_ms) {
                s.handle_timeout(now);
                any = true;
            }
        }
        any
    }

    /// The whole cache as one snapshot, as of `clock`.
    pub fn snapshot(&mut self, clock: crate::Clock) -> crate::Snapshot<'_> {
        crate::Snapshot::of_shards(self.shards.iter_mut().collect(), clock)
    }
}

impl Shards for Owned {
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
