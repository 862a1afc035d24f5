//! Warm restart in the simulation: a server's disk, which survives the
//! host's bounces, and the planned stop that fills it.
//!
//! A scenario gives a server host a [`Disk`] (`HostConfig::disk`). For a
//! planned restart it asks for a graceful stop ([`Disk::request_stop`],
//! the simulated SIGUSR1), steps the simulation until the host has written
//! its snapshot and stopped serving ([`Disk::is_written`]), then bounces
//! the host. The new host restores the snapshot and empties the disk, as
//! the server does with `-e PATH`, through the same core API
//! (`Snapshot::of_shards`, `Restore::new_shards`): a cache of several
//! shards is written as one snapshot and restored into the shards again.
//! A bounce without the stop is a crash: the disk is empty and the host
//! starts cold.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use tokio::sync::Notify;
use wasmcached_core::{Clock, Config};

use crate::cache::Cache;

/// A server's persistent storage; clones share it.
#[derive(Clone, Default)]
pub struct Disk(Rc<Inner>);

#[derive(Default)]
struct Inner {
    snapshot: RefCell<Option<Vec<u8>>>,
    stop: Cell<bool>,
    written: Cell<bool>,
    bell: Notify,
    restored: Cell<u64>,
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disk")
            .field("bytes", &self.0.snapshot.borrow().as_ref().map(Vec::len))
            .field("stop", &self.0.stop.get())
            .finish()
    }
}

impl Disk {
    /// Asks the host for a graceful stop: write the snapshot, stop serving.
    pub fn request_stop(&self) {
        self.0.stop.set(true);
        self.0.bell.notify_one();
    }

    /// Whether a graceful stop is asked for and not yet done.
    pub fn stop_requested(&self) -> bool {
        self.0.stop.get()
    }

    /// Resolves when a graceful stop is asked for (the host's loop waits on
    /// it beside its sockets).
    pub async fn stop_asked(&self) {
        self.0.bell.notified().await;
    }

    /// Whether the snapshot is written and the host has stopped serving:
    /// the time to bounce it.
    pub fn is_written(&self) -> bool {
        self.0.written.get()
    }

    /// Items the last start restored.
    pub fn restored(&self) -> u64 {
        self.0.restored.get()
    }

    /// Writes the whole cache (every shard) to the disk. Called by the
    /// host when a stop is asked for; it serves no request afterwards.
    pub fn save(&self, cache: &mut Cache, clock: Clock) {
        let mut snap = cache.snapshot(clock);
        let mut bytes = Vec::new();
        while snap.next_chunk(&mut bytes) {}
        *self.0.snapshot.borrow_mut() = Some(bytes);
        self.0.stop.set(false);
        self.0.written.set(true);
    }

    /// The cache of `shards` shards a starting host serves: the snapshot
    /// on the disk, taken off it, or an empty cache (after a crash, or a
    /// snapshot the core refuses).
    pub fn restore(&self, cfg: Config, shards: usize, clock: Clock) -> Cache {
        self.0.written.set(false);
        self.0.restored.set(0);
        let Some(bytes) = self.0.snapshot.borrow_mut().take() else {
            return Cache::new(cfg, shards, clock);
        };
        match crate::cache::restore(&cfg, shards, &bytes, clock) {
            Some((cache, items)) => {
                self.0.restored.set(items);
                cache
            }
            None => Cache::new(cfg, shards, clock),
        }
    }
}
