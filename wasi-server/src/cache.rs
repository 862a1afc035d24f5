//! The cache the workers share: the core's store split into shards
//! ([`wasmcached_core::shards`]), each behind its own mutex, so workers
//! wait for each other only when they touch the same shard.
//!
//! A connection takes one shard at a time (the core's [`Shards`] contract),
//! so no worker ever holds two locks and no lock order exists. Each shard's
//! next expiry deadline is published when its guard drops; any worker runs
//! the sweep of a shard that is due.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use wasmcached_core::shards::shard_count;
use wasmcached_core::{Clock, Config, Shards, Store};

/// "No deadline" in the published expiry deadlines.
pub(crate) const NEVER: u64 = u64::MAX;

/// A value alone on its cache lines (two lines: x86's prefetcher pulls
/// pairs), so that workers writing it do not slow workers reading its
/// neighbours.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shards and their published deadlines.
pub(crate) struct SharedCache {
    /// Each shard's lock on its own lines: one worker taking a shard
    /// must not invalidate the line another reads the next shard's lock
    /// (or the end of its store) from.
    shards: Vec<Padded<Mutex<Store>>>,
    /// Each shard's next expiry step (monotonic ms), as of its last unlock.
    due: Vec<AtomicU64>,
    /// The earliest of `due`, give or take a shard unlocked while it was
    /// recomputed (that shard is then swept at the next due time, at most
    /// a sweep interval late). Read by every worker every pass.
    earliest: Padded<AtomicU64>,
    /// The whole cache's settings.
    cfg: Config,
    /// Workers to wake for their watchers' log lines (bit `worker % 64`),
    /// gathered from every shard as it is unlocked.
    wake: Padded<AtomicU64>,
}

impl SharedCache {
    /// A cache of `stores`, shard `i` being `stores[i]` (made with
    /// [`Config::for_shard`] of `cfg`, the whole cache's settings).
    pub(crate) fn new(cfg: Config, stores: Vec<Store>) -> SharedCache {
        let n = stores.len();
        SharedCache {
            shards: stores.into_iter().map(|s| Padded(Mutex::new(s))).collect(),
            due: (0..n).map(|_| AtomicU64::new(0)).collect(),
            earliest: Padded(AtomicU64::new(0)),
            cfg,
            wake: Padded(AtomicU64::new(0)),
        }
    }

    /// How many shards a cache for `threads` workers has.
    pub(crate) fn shards_for(cfg: &Config, threads: usize) -> usize {
        shard_count(cfg, threads)
    }

    /// The whole cache's settings.
    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of shards.
    pub(crate) fn count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `i`, held until the guard drops.
    pub(crate) fn lock(&self, i: usize) -> ShardGuard<'_> {
        ShardGuard {
            store: take(&self.shards[i]),
            due: &self.due[i],
            earliest: &self.earliest,
            wake: &self.wake,
        }
    }

    /// The workers whose watchers got log lines since the last call (see
    /// `Store::take_log_wakeups`); cleared.
    pub(crate) fn take_wakeups(&self) -> u64 {
        // Every worker asks every pass and there is seldom anything: a
        // swap would write the shared line each time, a load only reads
        // it.
        if self.wake.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.wake.swap(0, Ordering::Relaxed)
    }

    /// The cache as a connection on a worker whose home shard is `home`
    /// sees it.
    pub(crate) fn view(&self, home: usize) -> View<'_> {
        View {
            cache: self,
            home: home % self.count(),
        }
    }

    /// When the next expiry step of any shard is due, if ever.
    pub(crate) fn next_due(&self) -> Option<u64> {
        Some(self.earliest.load(Ordering::Relaxed)).filter(|&t| t != NEVER)
    }

    /// Runs the expiry step of every shard that is due and not held by
    /// another worker (that one is tried again at the next due time).
    ///
    /// A step examines a bounded number of items, so a shard with more
    /// stays due (same deadline) and is stepped again on the next pass.
    /// The earliest deadline is then recomputed from every shard's, and
    /// each is offered again after the store: a deadline a worker
    /// published meanwhile is never lost.
    pub(crate) fn sweep(&self, now: Clock) {
        if self.earliest.load(Ordering::SeqCst) > now.mono_ms {
            return;
        }
        for (i, due) in self.due.iter().enumerate() {
            if due.load(Ordering::SeqCst) > now.mono_ms {
                continue;
            }
            if let Ok(store) = self.shards[i].try_lock() {
                let mut g = ShardGuard {
                    store,
                    due,
                    earliest: &self.earliest,
                    wake: &self.wake,
                };
                g.handle_timeout(now);
            }
        }
        let earliest = self.due.iter().map(|d| d.load(Ordering::SeqCst)).min();
        self.earliest
            .store(earliest.unwrap_or(NEVER), Ordering::SeqCst);
        for due in &self.due {
            self.earliest
                .fetch_min(due.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }
}

/// Waits for a shard: a few yields of the core, then a short spin with
/// backoff, then std's mutex, which sleeps in the kernel.
///
/// A shard is held for one request or one key of a multiget, a fraction of
/// a microsecond. When workers share cores with clients (the generator
/// beside the server on two cores), the holder of a taken shard is
/// usually a preempted thread that needs the core back, which a yield
/// gives it: spinning first cost a quarter of the multiget throughput
/// there. On cores of their own, a yield returns at once and the holder
/// lets go meanwhile. Only `try_lock` is used before sleeping: std's
/// `lock` marks a mutex it waits on as contended, every later waiter then
/// sleeps at once and every unlock pays a wake-up system call, a convoy
/// (measured on 16 cores with std's `lock` alone: 4.8 context switches per
/// 100-key multiget at -t 8, none at -t 1). Every stage is bounded; none
/// waits by spinning for long. A worker that panicked holding a shard
/// cannot have left it half-updated by an input-driven path (those do not
/// panic), so a poisoned lock is taken over.
fn take(m: &Mutex<Store>) -> MutexGuard<'_, Store> {
    let mut yields = 0;
    let mut pauses = 1;
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) if yields < YIELDS => {
                std::thread::yield_now();
                yields += 1;
            }
            Err(TryLockError::WouldBlock) if pauses <= MAX_PAUSES => {
                for _ in 0..pauses {
                    std::hint::spin_loop();
                }
                pauses *= 2;
            }
            Err(TryLockError::WouldBlock) => {
                return m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
            }
        }
    }
}

/// Times [`take`] yields its core before it spins.
const YIELDS: u32 = 4;

/// The longest run of pauses between two attempts of [`take`]'s spin
/// (1, 2, 4 .. this: 63 pauses in all, one or two microseconds).
const MAX_PAUSES: u32 = 32;

/// One shard, held; publishes the shard's next expiry deadline and the
/// log wake-ups it raised on drop.
pub(crate) struct ShardGuard<'a> {
    store: MutexGuard<'a, Store>,
    due: &'a AtomicU64,
    earliest: &'a AtomicU64,
    wake: &'a AtomicU64,
}

impl Deref for ShardGuard<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        // Written only when it changed, which is seldom: a shared
        // deadline written on every unlock would bounce its cache line
        // between the workers' cores on every request.
        let due = self.store.poll_timeout().unwrap_or(NEVER);
        if self.due.load(Ordering::Relaxed) != due {
            self.due.store(due, Ordering::SeqCst);
            if self.earliest.load(Ordering::SeqCst) > due {
                self.earliest.fetch_min(due, Ordering::SeqCst);
            }
        }
        let wake = self.store.take_log_wakeups();
        if wake != 0 {
            self.wake.fetch_or(wake, Ordering::Relaxed);
        }
    }
}

/// The shared cache with one worker's home shard: what the core's
/// [`Shards`] asks for.
pub(crate) struct View<'a> {
    cache: &'a SharedCache,
    home: usize,
}

impl Shards for View<'_> {
    type Shard<'b>
        = ShardGuard<'b>
    where
        Self: 'b;

    fn count(&self) -> usize {
        self.cache.count()
    }

    fn config(&self) -> &Config {
        &self.cache.cfg
    }

    fn shard(&mut self, i: usize) -> ShardGuard<'_> {
        self.cache.lock(i)
    }

    fn home(&self) -> usize {
        self.home
    }
}
