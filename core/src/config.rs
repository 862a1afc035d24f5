//! Settings a [`Store`](crate::Store) is created with.

use crate::authfile::AuthFile;
use crate::sasl::SaslDb;
use crate::store::CrawlerSettings;

/// Memory a shard costs beyond its items (see [`Config::for_shard`]).
pub const SHARD_OVERHEAD: u64 = 768 * 1024;

/// Store and protocol settings, mirroring memcached's command-line options.
///
/// Defaults are memcached 1.6.18's: 64 MiB of item memory (`-m 64`), 1 MiB
/// maximum item size (`-I 1m`), evictions on (no `-M`), the protocol chosen
/// per connection (`-B auto`), no SASL (no `-S`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of item memory before least-recently-used items are evicted
    /// (`-m`, reported as `limit_maxbytes`).
    pub memory_limit: u64,
    /// Most item memory, in bytes, that `cache_memlimit` may set; larger
    /// requests are clamped to it (the reply is still `OK`, and
    /// `limit_maxbytes` shows the clamped limit). A host whose memory is
    /// capped sets it to what it can back. memcached has no such cap: the
    /// default, `u64::MAX`, leaves the command unrestricted.
    pub memory_limit_max: u64,
    /// Largest item, counted as memcached counts it (header, key, value,
    /// CAS), that may be stored (`-I`, reported as `item_size_max`).
    pub item_size_max: u32,
    /// When false, a full cache answers `SERVER_ERROR out of memory storing
    /// object` instead of evicting (`-M`).
    pub evictions: bool,
    /// Whether `flush_all` is allowed (`-F` turns it off).
    pub flush_enabled: bool,
    /// Whether items get CAS values (`-C` turns them off): when off, as in
    /// memcached, every CAS value reads 0, `cas` (and `ms` with `C`) on an
    /// existing item answers `EXISTS`, and `flush_all` hides items stored
    /// in the same second after it.
    pub cas_enabled: bool,
    /// Whether the `shutdown` command may stop the server (`-A`). The
    /// store only records the request ([`Store::poll_shutdown`](crate::Store::poll_shutdown));
    /// the host stops.
    pub shutdown_enabled: bool,
    /// Whether key dumps are allowed (`-X` turns them off):
    /// `stats cachedump` and `lru_crawler metadump` then answer memcached's
    /// "not allowed" errors.
    pub dump_enabled: bool,
    /// Whether `watch` is allowed (`-W` turns it off: `CLIENT_ERROR watch
    /// commands not allowed`).
    pub watch_enabled: bool,
    /// Version string sent by `version` and `stats`. Clients gate features on
    /// it, so it must parse as a memcached 1.6 version.
    pub version: &'static str,
    /// Seed of the key hash. Hosts facing untrusted clients should pass a
    /// random value so collisions cannot be precomputed; simulations pass a
    /// constant so runs are reproducible.
    pub hash_seed: u64,
    /// Largest command line, in bytes, before the connection is closed
    /// (memcached: 2048). `get`/`gets` lines may be longer, up to
    /// `multiget_line_max`.
    pub line_max: usize,
    /// Largest `get`/`gets` line in bytes.
    pub multiget_line_max: usize,
    /// Pending output, in bytes, above which a connection stops parsing new
    /// requests until the host has transmitted some of it.
    pub output_high_water: usize,
    /// Requests a connection executes per [`Connection::process`](crate::Connection::process)
    /// call before yielding to other connections (`-R`, memcached: 20).
    pub requests_per_event: u32,
    /// Which protocols connections may speak (`-B`). Forced to
    /// [`Protocol::Binary`] while `sasl` is set, as memcached refuses `-S`
    /// with the text protocol enabled.
    pub protocol: Protocol,
    /// SASL authentication (`-S`): the users that may authenticate, with
    /// PLAIN over the binary protocol. `None` turns SASL off. The host reads
    /// the credentials (memcached's `MEMCACHED_SASL_PWDB` file); the core
    /// only gets their contents.
    pub sasl: Option<SaslDb>,
    /// ASCII authentication (`-Y`): the auth file's users; every text
    /// connection must authenticate first, and the binary protocol is off.
    pub ascii_auth: Option<AuthFile>,
    /// Whether per-prefix counters start on (`-D` turns them on; `stats
    /// detail on|off` toggles them).
    pub detail_enabled: bool,
    /// The byte ending a key's prefix for those counters (`-D`, `:`).
    pub prefix_delimiter: u8,
    /// Thousandths of `memory_limit` kept free of item bytes for what the
    /// store's items cost beyond memcached's item sizes (hash index,
    /// partly used pages, allocator headers and fragmentation), so that a
    /// full cache keeps the process's memory near `memory_limit`, as
    /// memcached's slab pages do. 0 gives items the whole limit, which is
    /// what byte-level protocol tests of eviction expect; the server uses
    /// a few percent.
    pub reserve_per_mille: u32,
    /// The LRU crawler's settings at start (memcached's `-o lru_crawler`,
    /// `no_lru_crawler`, `lru_crawler_sleep`, `lru_crawler_tocrawl`); every
    /// shard starts with them, and `lru_crawler enable|disable|sleep|
    /// tocrawl` changes them at run time.
    pub crawler: CrawlerSettings,
    /// Settings that only the host knows, reported by `stats settings`.
    pub host: HostSettings,
}

impl Config {
    /// The settings of one of the `count` shards of a cache (see
    /// [`shards`](crate::shards)): an equal share of the memory limits.
    ///
    /// Where memory is reserved for what items cost beyond their sizes
    /// (`reserve_per_mille` above 0), each shard beyond the first also
    /// reserves `SHARD_OVERHEAD` of the cache's memory: its own index and
    /// its partly filled pages, one per size class in use, cost about that
    /// much (64 MB in 8 shards under writes of every size took 6 MB more
    /// than one store).
    #[must_use]
    pub fn for_shard(&self, count: usize) -> Config {
        let n = count.max(1) as u64;
        let extra = if self.reserve_per_mille == 0 {
            0
        } else {
            let overhead = (n - 1).saturating_mul(SHARD_OVERHEAD) * 1000;
            (overhead / self.memory_limit.max(1)).min(500) as u32
        };
        Config {
            memory_limit: self.memory_limit / n,
            memory_limit_max: self.memory_limit_max / n,
            reserve_per_mille: self.reserve_per_mille.saturating_add(extra).min(900),
            ..self.clone()
        }
    }

    /// The protocol binding in force: `protocol`, or binary-only under SASL.
    pub fn binding(&self) -> Protocol {
        if self.sasl.is_some() {
            Protocol::Binary
        } else if self.ascii_auth.is_some() {
            Protocol::Ascii
        } else {
            self.protocol
        }
    }
}

/// memcached's `-B`: which protocols a connection may speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Each connection's first byte decides: `0x80` (the binary request
    /// magic) starts the binary protocol, anything else the text protocol.
    #[default]
    Auto,
    /// Text (and meta) protocol only; binary requests are read as text.
    Ascii,
    /// Binary protocol only; text requests close the connection (once a
    /// header's worth of bytes shows the wrong magic).
    Binary,
}

impl Protocol {
    /// The name `stats settings` reports (`binding_protocol`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Auto => "auto-negotiate",
            Protocol::Ascii => "ascii",
            Protocol::Binary => "binary",
        }
    }
}

/// Host-side settings reported verbatim by `stats settings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSettings {
    /// `-c`: connection limit.
    pub max_connections: u32,
    /// `-p`: TCP port.
    pub tcp_port: u16,
    /// `-l`: listen address, or `None` for all interfaces (`NULL`).
    pub listen: Option<alloc::string::String>,
    /// `-v` count.
    pub verbosity: u32,
    /// `-b`: listen backlog.
    pub tcp_backlog: u32,
    /// Worker threads (`num_threads`).
    pub threads: u32,
    /// `-o idle_timeout`: seconds after which idle connections are closed
    /// (0 or less: never), reported as given.
    pub idle_timeout: i32,
    /// `-e`: the warm restart file, or `None` (`(null)`).
    pub memory_file: Option<alloc::string::String>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            max_connections: 1024,
            tcp_port: 11211,
            listen: None,
            verbosity: 0,
            tcp_backlog: 1024,
            threads: 1,
            idle_timeout: 0,
            memory_file: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_limit: 64 * 1024 * 1024,
            memory_limit_max: u64::MAX,
            item_size_max: 1024 * 1024,
            evictions: true,
            flush_enabled: true,
            cas_enabled: true,
            shutdown_enabled: false,
            dump_enabled: true,
            watch_enabled: true,
            version: "1.6.18",
            hash_seed: 0x6d65_6d63_6163_6865,
            line_max: 2048,
            multiget_line_max: 1024 * 1024,
            output_high_water: 1024 * 1024,
            requests_per_event: 20,
            protocol: Protocol::Auto,
            sasl: None,
            ascii_auth: None,
            detail_enabled: false,
            prefix_delimiter: b':',
            reserve_per_mille: 0,
            crawler: CrawlerSettings::default(),
            host: HostSettings::default(),
        }
    }
}
