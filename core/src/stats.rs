//! Counters the store and connections keep for `stats`.

use crate::slab::MAX_CLASSES;

/// Declares a struct of `u64` counters with `add`, which sums another
/// instance into it (a partitioned cache reports its shards' sum).
macro_rules! counters {
    ($(#[$meta:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[allow(missing_docs)]
        pub struct $name {
            $(pub $field: u64,)*
        }

        impl $name {
            /// Adds every counter of `other` to this one.
            pub fn add(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
    /// Global counters, named after the `stats` fields they feed. All of them
    /// are zeroed by `stats reset`.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    Stats {
        cmd_get,
        cmd_set,
        cmd_flush,
        cmd_touch,
        cmd_meta,
        get_hits,
        get_misses,
        get_expired,
        get_flushed,
        delete_misses,
        delete_hits,
        incr_misses,
        incr_hits,
        decr_misses,
        decr_hits,
        cas_misses,
        cas_hits,
        cas_badval,
        touch_hits,
        touch_misses,
        store_too_large,
        store_no_memory,
        auth_cmds,
        auth_errors,
        total_items,
        expired_unfetched,
        evicted_unfetched,
        evicted_active,
        evictions,
        reclaimed,
        crawler_reclaimed,
        crawler_items_checked,
        lru_crawler_starts,
        bytes_read,
        bytes_written,
        conn_yields,
    }
}

counters! {
    /// Counters memcached keeps per slab class (`stats slabs`, `stats items`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    ClassStats {
        number,
        mem_requested,
        evicted,
        evicted_nonzero,
        evicted_unfetched,
        evicted_active,
        expired_unfetched,
        reclaimed,
        crawler_reclaimed,
        crawler_items_checked,
        outofmemory,
        get_hits,
        cmd_set,
        delete_hits,
        incr_hits,
        decr_hits,
        cas_hits,
        cas_badval,
        touch_hits,
    }
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
