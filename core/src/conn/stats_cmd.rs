//! The `stats` command family, in memcached 1.6.18's field order.

use alloc::vec::Vec;

use crate::log::LogStats;
use crate::num::{push_i64, push_u64};
use crate::shards::Shards;
use crate::slab;
use crate::stats::{Classes, Stats};
use crate::store::Store;

use super::tokens::Tokens;
use super::Connection;

/// A value printed after a `STAT <name> ` prefix.
enum V<'a> {
    U(u64),
    S(&'a [u8]),
}

fn stat(out: &mut Vec<u8>, name: &[u8], v: V<'_>) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name);
    out.push(b' ');
    match v {
        V::U(n) => push_u64(out, n),
        V::S(s) => out.extend_from_slice(s),
    }
    out.extend_from_slice(b"\r\n");
}

/// `sec.usec`, as memcached prints rusage.
fn timeval(us: u64) -> Vec<u8> {
    let mut v = Vec::new();
    push_u64(&mut v, us / 1_000_000);
    v.push(b'.');
    let frac = us % 1_000_000;
    let mut digits = Vec::new();
    push_u64(&mut digits, frac);
    v.resize(v.len() + 6usize.saturating_sub(digits.len()), b'0');
    v.extend_from_slice(&digits);
    v
}

/// The whole cache's item figures: every shard's, summed.
pub(super) struct Totals {
    stats: Stats,
    classes: Classes,
    bytes: u64,
    items: u64,
    /// The memory limit (`-m`, or the last `cache_memlimit`).
    limit: u64,
    log: LogStats,
}

impl Connection {
    /// Sums every shard's figures, taking the shards one at a time, after
    /// adding this connection's own tally to its home shard.
    pub(super) fn totals<S: Shards>(&mut self, shards: &mut S) -> Totals {
        self.flush_tally(shards);
        let mut t = Totals {
            stats: Stats::default(),
            classes: [Default::default(); slab::MAX_CLASSES],
            bytes: 0,
            items: 0,
            limit: 0,
            log: LogStats::default(),
        };
        for i in 0..shards.count() {
            let s = self.nth_shard(shards, i);
            t.stats.add(s.stats());
            for (sum, c) in t.classes.iter_mut().zip(s.classes.iter()) {
                sum.add(c);
            }
            t.bytes += s.bytes();
            t.items += s.curr_items() as u64;
            t.limit += s.config().memory_limit;
            t.log.add(&s.log.stats);
        }
        t
    }

    /// Zeroes every shard's counters (`stats reset`), this connection's
    /// tally included.
    pub(super) fn reset_all<S: Shards>(&mut self, shards: &mut S) {
        self.flush_tally(shards);
        for i in 0..shards.count() {
            self.nth_shard(shards, i).reset_stats();
        }
    }

    /// Adds this connection's tally to its home shard now.
    fn flush_tally<S: Shards>(&mut self, shards: &mut S) {
        if !self.tally.is_empty() {
            let mut home = self.home_shard(shards);
            self.tally.flush_into(&mut home);
        }
    }

    pub(super) fn stats_command<S: Shards>(&mut self, shards: &mut S, toks: &Tokens<'_>) {
        let n = toks.ntokens();
        if n < 2 {
            return self.out(b"ERROR");
        }
        let mut out = Vec::with_capacity(4096);
        if n == 2 {
            let t = self.totals(shards);
            general(&self.home_shard(shards), &t, &mut out);
        } else {
            match toks.get(1) {
                b"reset" => {
                    self.reset_all(shards);
                    return self.out(b"RESET");
                }
                b"settings" => {
                    let t = self.totals(shards);
                    settings(&self.home_shard(shards), &t, &mut out)
                }
                b"items" => items(&self.totals(shards), &mut out),
                b"slabs" => slabs(&self.totals(shards), &mut out),
                b"sizes" => stat(&mut out, b"sizes_status", V::S(b"disabled")),
                b"extstore" => {}
                b"conns" => self.stats_conns(shards, &mut out),
                b"topkeys" => return self.stats_topkeys(shards),
                // With -X dumps are refused before the arguments are read.
                b"cachedump" if !shards.config().dump_enabled => {
                    return self.out(b"CLIENT_ERROR stats cachedump not allowed")
                }
                b"cachedump" if n < 5 => return self.out(b"CLIENT_ERROR bad command line"),
                b"cachedump" => return self.cachedump(shards, toks),
                b"detail" => return self.stats_detail(shards, toks),
                _ => return self.out(b"ERROR"),
            }
        }
        out.extend_from_slice(b"END\r\n");
        self.output.extend_from_slice(&out);
    }
}

pub(super) fn general(store: &Store, t: &Totals, out: &mut Vec<u8>) {
    let s = &t.stats;
    let h = store.host_stats();
    let cfg = store.config();
    stat(out, b"pid", V::U(u64::from(h.pid)));
    stat(out, b"uptime", V::U(store.uptime()));
    stat(out, b"time", V::U(store.unix_now()));
    stat(out, b"version", V::S(cfg.version.as_bytes()));
    stat(out, b"libevent", V::S(b"none"));
    stat(
        out,
        b"pointer_size",
        V::U(8 * core::mem::size_of::<usize>() as u64),
    );
    stat(out, b"rusage_user", V::S(&timeval(h.rusage_user_us)));
    stat(out, b"rusage_system", V::S(&timeval(h.rusage_system_us)));
    stat(
        out,
        b"max_connections",
        V::U(u64::from(cfg.host.max_connections)),
    );
    stat(out, b"curr_connections", V::U(h.curr_connections));
    stat(out, b"total_connections", V::U(h.total_connections));
    stat(out, b"rejected_connections", V::U(h.rejected_connections));
    stat(out, b"connection_structures", V::U(h.connection_structures));
    // The connection buffer figures come from the host's driver; memcached
    // reports its read buffers and response objects under these names.
    let bufs: [(&[u8], u64); 8] = [
        (b"response_obj_oom", 0),
        (b"response_obj_count", 0),
        (b"response_obj_bytes", h.conn_output_bytes),
        (b"read_buf_count", 0),
        (b"read_buf_bytes", h.conn_input_bytes),
        (b"read_buf_bytes_free", 0),
        (b"read_buf_oom", h.conn_closed_for_memory),
        (b"reserved_fds", 0),
    ];
    for (name, v) in bufs {
        stat(out, name, V::U(v));
    }
    let counters: [(&[u8], u64); 24] = [
        (b"cmd_get", s.cmd_get),
        (b"cmd_set", s.cmd_set),
        (b"cmd_flush", s.cmd_flush),
        (b"cmd_touch", s.cmd_touch),
        (b"cmd_meta", s.cmd_meta),
        (b"get_hits", s.get_hits),
        (b"get_misses", s.get_misses),
        (b"get_expired", s.get_expired),
        (b"get_flushed", s.get_flushed),
        (b"delete_misses", s.delete_misses),
        (b"delete_hits", s.delete_hits),
        (b"incr_misses", s.incr_misses),
        (b"incr_hits", s.incr_hits),
        (b"decr_misses", s.decr_misses),
        (b"decr_hits", s.decr_hits),
        (b"cas_misses", s.cas_misses),
        (b"cas_hits", s.cas_hits),
        (b"cas_badval", s.cas_badval),
        (b"touch_hits", s.touch_hits),
        (b"touch_misses", s.touch_misses),
        (b"store_too_large", s.store_too_large),
        (b"store_no_memory", s.store_no_memory),
        (b"auth_cmds", s.auth_cmds),
        (b"auth_errors", s.auth_errors),
    ];
    for (name, v) in counters {
        stat(out, name, V::U(v));
    }
    // memcached reports idle kicks only while idle connections are closed.
    if cfg.host.idle_timeout > 0 {
        stat(out, b"idle_kicks", V::U(h.idle_kicks));
    }
    stat(out, b"bytes_read", V::U(s.bytes_read));
    stat(out, b"bytes_written", V::U(s.bytes_written));
    stat(out, b"limit_maxbytes", V::U(t.limit));
    stat(out, b"accepting_conns", V::U(u64::from(h.accepting_conns)));
    stat(out, b"listen_disabled_num", V::U(h.listen_disabled_num));
    stat(out, b"time_in_listen_disabled_us", V::U(0));
    stat(out, b"threads", V::U(u64::from(cfg.host.threads)));
    stat(out, b"conn_yields", V::U(s.conn_yields));
    let buckets = (t.items * 8 / 7).max(1 << 16).next_power_of_two();
    stat(
        out,
        b"hash_power_level",
        V::U(u64::from(buckets.trailing_zeros())),
    );
    stat(out, b"hash_bytes", V::U(buckets * 8));
    stat(out, b"hash_is_expanding", V::U(0));
    for name in [
        &b"slab_reassign_rescues"[..],
        b"slab_reassign_chunk_rescues",
        b"slab_reassign_evictions_nomem",
        b"slab_reassign_inline_reclaim",
        b"slab_reassign_busy_items",
        b"slab_reassign_busy_deletes",
        b"slab_reassign_running",
        b"slabs_moved",
        b"lru_crawler_running",
    ] {
        stat(out, name, V::U(0));
    }
    stat(out, b"lru_crawler_starts", V::U(s.lru_crawler_starts));
    stat(out, b"lru_maintainer_juggles", V::U(0));
    stat(out, b"malloc_fails", V::U(0));
    let l = t.log;
    stat(out, b"log_worker_dropped", V::U(l.worker_dropped));
    stat(out, b"log_worker_written", V::U(l.worker_written));
    stat(out, b"log_watcher_skipped", V::U(l.watcher_skipped));
    stat(out, b"log_watcher_sent", V::U(l.watcher_sent));
    // Every shard holds every watcher.
    stat(out, b"log_watchers", V::U(store.log.watcher_count() as u64));
    stat(out, b"unexpected_napi_ids", V::U(0));
    stat(out, b"round_robin_fallback", V::U(0));
    stat(out, b"bytes", V::U(t.bytes));
    stat(out, b"curr_items", V::U(t.items));
    stat(out, b"total_items", V::U(s.total_items));
    stat(out, b"slab_global_page_pool", V::U(0));
    stat(out, b"expired_unfetched", V::U(s.expired_unfetched));
    stat(out, b"evicted_unfetched", V::U(s.evicted_unfetched));
    stat(out, b"evicted_active", V::U(s.evicted_active));
    stat(out, b"evictions", V::U(s.evictions));
    stat(out, b"reclaimed", V::U(s.reclaimed));
    stat(out, b"crawler_reclaimed", V::U(s.crawler_reclaimed));
    stat(out, b"crawler_items_checked", V::U(s.crawler_items_checked));
    for name in [
        &b"lrutail_reflocked"[..],
        b"moves_to_cold",
        b"moves_to_warm",
        b"moves_within_lru",
        b"direct_reclaims",
        b"lru_bumps_dropped",
    ] {
        stat(out, name, V::U(0));
    }
}

pub(super) fn settings(store: &Store, t: &Totals, out: &mut Vec<u8>) {
    let cfg = store.config();
    let h = &cfg.host;
    let yes_no = |b: bool| -> &'static [u8] {
        if b {
            b"yes"
        } else {
            b"no"
        }
    };
    stat(out, b"maxbytes", V::U(t.limit));
    stat(out, b"maxconns", V::U(u64::from(h.max_connections)));
    stat(out, b"tcpport", V::U(u64::from(h.tcp_port)));
    stat(out, b"udpport", V::U(0));
    stat(
        out,
        b"inter",
        V::S(h.listen.as_deref().unwrap_or("NULL").as_bytes()),
    );
    stat(out, b"verbosity", V::U(u64::from(store.verbosity)));
    stat(out, b"oldest", V::U(0));
    stat(
        out,
        b"evictions",
        V::S(if cfg.evictions { b"on" } else { b"off" }),
    );
    stat(out, b"domain_socket", V::S(b"NULL"));
    stat(out, b"umask", V::U(700));
    stat(out, b"shutdown_command", V::S(yes_no(cfg.shutdown_enabled)));
    stat(out, b"growth_factor", V::S(b"1.25"));
    stat(out, b"chunk_size", V::U(48));
    stat(out, b"num_threads", V::U(u64::from(h.threads)));
    stat(out, b"num_threads_per_udp", V::U(u64::from(h.threads)));
    stat(
        out,
        b"stat_key_prefix",
        V::S(&[store.observe.prefixes.delimiter]),
    );
    stat(
        out,
        b"detail_enabled",
        V::S(yes_no(store.observe.prefixes.enabled)),
    );
    stat(
        out,
        b"reqs_per_event",
        V::U(u64::from(cfg.requests_per_event)),
    );
    stat(out, b"cas_enabled", V::S(yes_no(cfg.cas_enabled)));
    stat(out, b"tcp_backlog", V::U(u64::from(h.tcp_backlog)));
    stat(
        out,
        b"binding_protocol",
        V::S(cfg.binding().name().as_bytes()),
    );
    stat(out, b"auth_enabled_sasl", V::S(yes_no(cfg.sasl.is_some())));
    let auth = store.ascii_auth.as_ref().map(|f| f.path.as_bytes());
    stat(out, b"auth_enabled_ascii", V::S(auth.unwrap_or(b"no")));
    stat(out, b"item_size_max", V::U(u64::from(cfg.item_size_max)));
    stat(out, b"maxconns_fast", V::S(b"yes"));
    stat(out, b"hashpower_init", V::U(0));
    stat(out, b"slab_reassign", V::S(b"no"));
    stat(out, b"slab_automove", V::U(0));
    stat(out, b"slab_automove_ratio", V::S(b"0.80"));
    stat(out, b"slab_automove_window", V::U(30));
    stat(out, b"slab_chunk_max", V::U(524288));
    let crawler = store.crawler();
    stat(out, b"lru_crawler", V::S(yes_no(crawler.enabled)));
    stat(out, b"lru_crawler_sleep", V::U(u64::from(crawler.sleep_us)));
    stat(
        out,
        b"lru_crawler_tocrawl",
        V::U(u64::from(crawler.tocrawl)),
    );
    stat(out, b"tail_repair_time", V::U(0));
    stat(out, b"flush_enabled", V::S(yes_no(cfg.flush_enabled)));
    stat(out, b"dump_enabled", V::S(yes_no(cfg.dump_enabled)));
    stat(out, b"hash_algorithm", V::S(b"foldhash"));
    stat(out, b"lru_maintainer_thread", V::S(b"no"));
    stat(out, b"lru_segmented", V::S(b"no"));
    stat(out, b"hot_lru_pct", V::U(20));
    stat(out, b"warm_lru_pct", V::U(40));
    stat(out, b"hot_max_factor", V::S(b"0.20"));
    stat(out, b"warm_max_factor", V::S(b"2.00"));
    stat(out, b"temp_lru", V::S(b"no"));
    stat(out, b"temporary_ttl", V::U(61));
    let mut idle = Vec::new();
    push_i64(&mut idle, i64::from(h.idle_timeout));
    stat(out, b"idle_timeout", V::S(&idle));
    stat(out, b"watcher_logbuf_size", V::U(0));
    stat(out, b"worker_logbuf_size", V::U(0));
    stat(
        out,
        b"read_buf_mem_limit",
        V::U(store.host_stats().conn_memory_limit),
    );
    stat(out, b"track_sizes", V::S(b"no"));
    stat(out, b"inline_ascii_response", V::S(b"no"));
    // memcached 1.6.18 as packaged reports its extstore and TLS settings
    // even when unused; tools that diff settings expect them.
    for (name, v) in [
        (&b"ext_item_size"[..], &b"512"[..]),
        (b"ext_item_age", b"4294967295"),
        (b"ext_low_ttl", b"0"),
        (b"ext_recache_rate", b"2000"),
        (b"ext_wbuf_size", b"4194304"),
        (b"ext_compact_under", b"0"),
        (b"ext_drop_under", b"0"),
        (b"ext_max_sleep", b"1000000"),
        (b"ext_max_frag", b"0.80"),
        (b"slab_automove_freeratio", b"0.010"),
        (b"ext_drop_unread", b"no"),
        (b"ssl_enabled", b"no"),
        (b"ssl_chain_cert", b"(null)"),
        (b"ssl_key", b"(null)"),
        (b"ssl_verify_mode", b"0"),
        (b"ssl_keyformat", b"1"),
        (b"ssl_ciphers", b"NULL"),
        (b"ssl_ca_cert", b"NULL"),
        (b"ssl_wbuf_size", b"16384"),
        (b"ssl_session_cache", b"no"),
        (b"ssl_kernel_tls", b"no"),
        (b"ssl_min_version", b"tlsv1.2"),
        (b"num_napi_ids", b"(null)"),
    ] {
        stat(out, name, V::S(v));
    }
    let file = h.memory_file.as_deref().unwrap_or("(null)");
    stat(out, b"memory_file", V::S(file.as_bytes()));
}

fn class_stat(out: &mut Vec<u8>, prefix: &[u8], cls: usize, name: &[u8], v: u64) {
    let mut full = Vec::from(prefix);
    push_u64(&mut full, cls as u64);
    full.push(b':');
    full.extend_from_slice(name);
    stat(out, &full, V::U(v));
}

pub(super) fn items(t: &Totals, out: &mut Vec<u8>) {
    for (cls, c) in t.classes.iter().enumerate() {
        if c.number == 0 {
            continue;
        }
        let p = b"items:";
        let rows: [(&[u8], u64); 28] = [
            (b"number", c.number),
            (b"number_hot", 0),
            (b"number_warm", 0),
            (b"number_cold", c.number),
            (b"age_hot", 0),
            (b"age_warm", 0),
            (b"age", 0),
            (b"mem_requested", c.mem_requested),
            (b"evicted", c.evicted),
            (b"evicted_nonzero", c.evicted_nonzero),
            (b"evicted_time", 0),
            (b"outofmemory", c.outofmemory),
            (b"tailrepairs", 0),
            (b"reclaimed", c.reclaimed),
            (b"expired_unfetched", c.expired_unfetched),
            (b"evicted_unfetched", c.evicted_unfetched),
            (b"evicted_active", c.evicted_active),
            (b"crawler_reclaimed", c.crawler_reclaimed),
            (b"crawler_items_checked", c.crawler_items_checked),
            (b"lrutail_reflocked", 0),
            (b"moves_to_cold", 0),
            (b"moves_to_warm", 0),
            (b"moves_within_lru", 0),
            (b"direct_reclaims", 0),
            (b"hits_to_hot", 0),
            (b"hits_to_warm", 0),
            (b"hits_to_cold", c.get_hits),
            (b"hits_to_temp", 0),
        ];
        for (name, v) in rows.iter() {
            class_stat(out, p, cls, name, *v);
        }
    }
}

pub(super) fn slabs(t: &Totals, out: &mut Vec<u8>) {
    let mut active = 0u64;
    let mut malloced = 0u64;
    for (cls, c) in t.classes.iter().enumerate() {
        if c.number == 0 {
            continue;
        }
        active += 1;
        let size = u64::from(slab::class_sizes().get(cls).copied().unwrap_or(0));
        let per_page = u64::from(slab::per_page(cls as u8));
        let pages = c.number.div_ceil(per_page.max(1));
        malloced += pages * 1024 * 1024;
        let rows: [(&[u8], u64); 15] = [
            (b"chunk_size", size),
            (b"chunks_per_page", per_page),
            (b"total_pages", pages),
            (b"total_chunks", pages * per_page),
            (b"used_chunks", c.number),
            (b"free_chunks", pages * per_page - c.number),
            (b"free_chunks_end", 0),
            (b"get_hits", c.get_hits),
            (b"cmd_set", c.cmd_set),
            (b"delete_hits", c.delete_hits),
            (b"incr_hits", c.incr_hits),
            (b"decr_hits", c.decr_hits),
            (b"cas_hits", c.cas_hits),
            (b"cas_badval", c.cas_badval),
            (b"touch_hits", c.touch_hits),
        ];
        for (name, v) in rows.iter() {
            class_stat(out, b"", cls, name, *v);
        }
    }
    stat(out, b"active_slabs", V::U(active));
    stat(out, b"total_malloced", V::U(malloced));
}
