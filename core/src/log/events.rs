//! Where the core's events become log lines: the hooks the store and the
//! commands call, only once [`Log::wants`](super::Log::wants) said yes.

use super::line::{EvictionLine, Lookup, StoreLine};
use crate::conn::{StoreMode, StoreRequest, Stored};
use crate::store::{AllocError, ItemRef, Store};

/// [`Store::find`] while fetches are watched: the lookup, then its line.
#[cold]
pub(crate) fn find_logged(store: &mut Store, key: &[u8]) -> Option<u32> {
    let (flushed, expired) = (store.stats.get_flushed, store.stats.get_expired);
    let found = store.find_unlogged(key);
    let status = match found {
        Some(idx) => {
            let it = store.item(idx);
            Lookup::Hit {
                clsid: it.class(),
                size: it.value().len(),
            }
        }
        None if store.stats.get_flushed != flushed => Lookup::Flushed,
        None if store.stats.get_expired != expired => Lookup::Expired,
        None => Lookup::Missing,
    };
    store.log.item_get(key, status);
    found
}

/// The line for an item evicted at store time `now`.
pub(crate) fn eviction_line(it: ItemRef<'_>, now: u32) -> EvictionLine<'_> {
    let exptime = it.exptime();
    EvictionLine {
        key: it.key(),
        fetched: it.has(crate::store::bits::FETCHED),
        ttl: if exptime > 0 {
            i64::from(exptime) - i64::from(now)
        } else {
            -1
        },
        last_access: now.wrapping_sub(it.time()),
        clsid: it.class(),
        size: it.value().len(),
    }
}

/// Logs a store attempt when mutations are watched. A stored item is
/// described as linked (an append reports the joined size and the old
/// exptime), anything else as the request was, as memcached's
/// `do_store_item` does.
#[inline]
pub(crate) fn stored(store: &mut Store, req: &StoreRequest<'_>, res: Stored) {
    if store.log.wants(super::flags::MUTATIONS) {
        log_stored(store, req, res);
    }
}

#[cold]
fn log_stored(store: &mut Store, req: &StoreRequest<'_>, res: Stored) {
    let now = store.now();
    let linked = match res {
        Stored::Stored(_) => store.peek(req.key),
        _ => None,
    };
    let (exptime, clsid, size) = match linked {
        Some(idx) => {
            let it = store.item(idx);
            (it.exptime(), it.class(), it.value().len())
        }
        None => {
            let nt = crate::store::ntotal(req.key.len(), req.flags, req.value.len());
            (req.exptime, crate::slab::class_of(nt), req.value.len())
        }
    };
    let status: &[u8] = match res {
        Stored::Stored(_) => b"stored",
        Stored::NotStored => b"not_stored",
        Stored::Exists => b"exists",
        Stored::NotFound => b"not_found",
    };
    let line = StoreLine {
        key: req.key,
        status,
        cmd: mode_name(req.mode),
        ttl: if exptime == 0 {
            0
        } else {
            exptime.wrapping_sub(now)
        },
        clsid,
        size,
    };
    store.log.item_store(&line);
}

/// A storage request refused before any lookup (too large, out of
/// memory). memcached 1.6.18 logs these with its arguments shifted: the
/// class reads the descriptor's low byte, the size and ttl 0; the `cfd`
/// it prints is stack garbage, for which the real descriptor stands here.
#[inline]
pub(crate) fn refused(store: &mut Store, key: &[u8], mode: StoreMode, e: AllocError) {
    if store.log.wants(super::flags::MUTATIONS) {
        log_refused(store, key, mode, e);
    }
}

#[cold]
fn log_refused(store: &mut Store, key: &[u8], mode: StoreMode, e: AllocError) {
    let cfd = store.log.cfd();
    let line = StoreLine {
        key,
        status: match e {
            AllocError::TooLarge => b"too_large",
            AllocError::NoMemory => b"no_memory",
        },
        cmd: mode_name(mode),
        ttl: 0,
        clsid: cfd as u8,
        size: 0,
    };
    store.log.item_store(&line);
}

fn mode_name(mode: StoreMode) -> &'static [u8] {
    match mode {
        StoreMode::Set => b"set",
        StoreMode::Add => b"add",
        StoreMode::Replace => b"replace",
        StoreMode::Append => b"append",
        StoreMode::Prepend => b"prepend",
        StoreMode::Cas => b"cas",
    }
}
