//! Counters the store and connections keep for `stats`.

use crate::slab::MAX_CLASSES;

/// Global counters, named after the `stats` fields they feed. All of them
/// are zeroed by `stats reset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Stats {
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_flush: u64,
    pub cmd_touch: u64,
    pub cmd_meta: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_misses: u64,
    pub delete_hits: u64,
    pub incr_misses: u64,
    pub incr_hits: u64,
    pub decr_misses: u64,
    pub decr_hits: u64,
    pub cas_misses: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub store_too_large: u64,
    pub store_no_memory: u64,
    pub auth_cmds: u64,
    pub auth_errors: u64,
    pub total_items: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    pub lru_crawler_starts: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub conn_yields: u64,
}

/// Counters memcached keeps per slab class (`stats slabs`, `stats items`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ClassStats {
    pub number: u64,
    pub mem_requested: u64,
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub expired_unfetched: u64,
    pub reclaimed: u64,
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    pub outofmemory: u64,
    pub get_hits: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
}

impl ClassStats {
    /// Zeroes the counters `stats reset` clears, keeping the live figures.
    pub(crate) fn reset(&mut self) {
        *self = ClassStats {
            number: self.number,
            mem_requested: self.mem_requested,
            ..ClassStats::default()
        };
    }
}

/// Per-class counters for classes `0..MAX_CLASSES`.
pub(crate) type Classes = [ClassStats; MAX_CLASSES];

/// Figures only the host knows, reported by `stats`. The host updates them
/// through [`Store::host_stats_mut`](crate::Store::host_stats_mut).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct HostStats {
    pub pid: u32,
    pub rusage_user_us: u64,
    pub rusage_system_us: u64,
    pub curr_connections: u64,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub connection_structures: u64,
    /// Times accepting paused for lack of descriptors.
    pub listen_disabled_num: u64,
    /// Whether new connections are accepted now.
    pub accepting_conns: bool,
    /// Bytes held by connections' buffered input (`read_buf_bytes`).
    pub conn_input_bytes: u64,
    /// Bytes held by connections' pending output (`response_obj_bytes`).
    pub conn_output_bytes: u64,
    /// Connections closed to stay within the connection memory limit
    /// (`read_buf_oom`).
    pub conn_closed_for_memory: u64,
    /// The connection memory limit, in bytes (`read_buf_mem_limit`).
    pub conn_memory_limit: u64,
    /// Connections closed for being idle (`idle_kicks`).
    pub idle_kicks: u64,
}

impl Default for HostStats {
    fn default() -> Self {
        HostStats {
            pid: 0,
            rusage_user_us: 0,
            rusage_system_us: 0,
            curr_connections: 0,
            total_connections: 0,
            rejected_connections: 0,
            connection_structures: 0,
            listen_disabled_num: 0,
            accepting_conns: true,
            conn_input_bytes: 0,
            conn_output_bytes: 0,
            conn_closed_for_memory: 0,
            conn_memory_limit: 0,
            idle_kicks: 0,
        }
    }
}
