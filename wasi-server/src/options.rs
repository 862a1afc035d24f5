//! Command-line options, shared by the server and the wasmtime runner.

use std::path::PathBuf;

use crate::extended::Extended;
use clap::Parser;
use wasmcached_core::{Config, HostSettings, Protocol};

/// memcached-compatible options.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "wasmcached",
    version,
    about = "A memcached-compatible cache server",
    disable_help_flag = true
)]
pub struct Options {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,
    /// Interface to listen on (memcached listens on all by default; we
    /// default to loopback).
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
    pub listen: String,
    /// Item memory in megabytes.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub memory_limit_mb: u64,
    /// Maximum simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub conn_limit: u32,
    /// Maximum item size, with an optional k or m suffix (1k..1024m).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    pub max_item_size: u32,
    /// Return an error when memory is exhausted instead of evicting.
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,
    /// Refuse flush_all.
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,
    /// Verbose logging to stderr (-vv for per-connection events).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Worker threads (memcached's -t) [default: the available cores, at
    /// most 4]. A wasm guest has no threads and always runs one.
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Memory all connections may hold together (buffered input, partly
    /// received values, pending output), in megabytes [default: 64 plus a
    /// quarter of -m]. Past three quarters of it the heaviest connections
    /// are paused; past all of it the heaviest is closed.
    #[arg(long = "conn-memory", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub conn_memory_mb: Option<u64>,
    /// Requests handled per connection before serving the others.
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub reqs_per_event: u32,
    /// Listen backlog: connections the kernel queues before they are
    /// accepted.
    #[arg(short = 'b', long = "listen-backlog", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,
    /// Warm restart: on a graceful stop (SIGUSR1) write the cache to this
    /// file; at start, restore it from there and remove it.
    #[arg(short = 'e', long = "memory-file")]
    pub memory_file: Option<PathBuf>,
    /// Protocol: ascii, binary, or auto (each connection's first byte
    /// decides) [default: auto; binary with -S].
    #[arg(short = 'B', long = "protocol", value_enum)]
    pub protocol: Option<Binding>,
    /// SASL authentication (PLAIN, binary protocol only): users and
    /// passwords come from the file MEMCACHED_SASL_PWDB names
    /// (`user:password` lines).
    #[arg(short = 'S', long = "enable-sasl")]
    pub enable_sasl: bool,
    /// ASCII authentication: clients must first send `set <any> <any>
    /// <any> <n>` with `<user> <pass>` from this file of `user:password`
    /// lines (reloaded on SIGHUP); the binary protocol is off.
    #[arg(short = 'Y', long = "auth-file")]
    pub auth_file: Option<PathBuf>,
    /// Prefix delimiter for `stats detail` (turns the counters on).
    #[arg(short = 'D')]
    pub prefix_delimiter: Option<char>,
    /// Disable CAS values: every CAS reads 0 and `cas` answers EXISTS.
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,
    /// Enable the `shutdown` command (`shutdown graceful` writes the -e
    /// snapshot first).
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,
    /// Disable key dumps (`stats cachedump`, `lru_crawler metadump`).
    #[arg(short = 'X', long = "disable-dumping")]
    pub disable_dumping: bool,
    /// Disable `watch` (the event log).
    #[arg(short = 'W', long = "disable-watch")]
    pub disable_watch: bool,
    /// Extended options, comma separated: idle_timeout=SECONDS, lru_crawler,
    /// no_lru_crawler, lru_crawler_sleep=US, lru_crawler_tocrawl=N.
    #[arg(short = 'o', long = "extended", action = clap::ArgAction::Append)]
    pub extended: Vec<String>,
    /// Print help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `-B`'s values, as memcached spells them.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Text (and meta) protocol only.
    Ascii,
    /// Binary protocol only.
    Binary,
    /// Each connection's first byte decides.
    Auto,
}

impl Binding {
    fn protocol(self) -> Protocol {
        match self {
            Binding::Ascii => Protocol::Ascii,
            Binding::Binary => Protocol::Binary,
            Binding::Auto => Protocol::Auto,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Binding::Ascii => "ascii",
            Binding::Binary => "binary",
            Binding::Auto => "auto",
        }
    }
}

/// Parses memcached's `-I` syntax: bytes, or a number with `k`/`m`.
fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024u64),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("invalid size '{s}'"))?;
    let bytes = n * mult;
    if !(1024..=1024 * 1024 * 1024).contains(&bytes) {
        return Err(format!("item size must be between 1k and 1024m, got '{s}'"));
    }
    Ok(bytes as u32)
}

impl Options {
    /// Checks relations between options that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if u64::from(self.max_item_size) > self.memory_limit_mb * 1024 * 1024 / 2 {
            return Err("cannot set item size limit higher than 1/2 of memory max".into());
        }
        if self.enable_sasl && self.protocol.is_some_and(|b| b != Binding::Binary) {
            // memcached refuses -S with -B ascii or -B auto alike.
            return Err("You cannot allow the ASCII protocol while using SASL.".into());
        }
        Ok(())
    }

    /// The `-o` suboptions; the error is memcached's message, on which the
    /// process exits 1 as memcached does.
    pub fn extended(&self) -> Result<Extended, String> {
        crate::extended::parse(self.extended.iter().map(String::as_str))
    }

    /// Threads the server runs: `-t`, or 1 in a wasm guest.
    ///
    /// memcached starts 4 threads whatever the machine; more workers than
    /// cores only add scheduling delay to every request (measured: p99 on 2
    /// cores 0.37 ms with 2 workers, 0.50 ms with 4), so the default is the
    /// number of cores up to memcached's 4.
    pub fn worker_threads(&self) -> u32 {
        if cfg!(target_os = "wasi") {
            return 1;
        }
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4) as u32)
                .unwrap_or(4)
        })
    }

    /// Bytes all connections may hold together (`--conn-memory`).
    pub fn conn_memory_bytes(&self) -> u64 {
        let mb = self.conn_memory_mb.unwrap_or(64 + self.memory_limit_mb / 4);
        mb * 1024 * 1024
    }

    /// The protocol binding: `-B`, binary-only under `-S` (as memcached).
    pub fn binding(&self) -> Protocol {
        if self.enable_sasl {
            return Protocol::Binary;
        }
        self.protocol.map_or(Protocol::Auto, Binding::protocol)
    }

    /// The core configuration these options describe. With `-S` the host
    /// adds the credentials (`Config::sasl`, see [`crate::sasl`]).
    pub fn config(&self, hash_seed: u64) -> Config {
        // Checked at start; an invalid -o never gets this far.
        let extended = self.extended().unwrap_or_default();
        Config {
            memory_limit: self.memory_limit_mb * 1024 * 1024,
            // A guest's linear memory is capped for -m (see the runner), so
            // `cache_memlimit` may lower the limit but not raise it there.
            memory_limit_max: if cfg!(target_os = "wasi") {
                self.memory_limit_mb * 1024 * 1024
            } else {
                u64::MAX
            },
            item_size_max: self.max_item_size,
            evictions: !self.disable_evictions,
            flush_enabled: !self.disable_flush_all,
            cas_enabled: !self.disable_cas,
            shutdown_enabled: self.enable_shutdown,
            dump_enabled: !self.disable_dumping,
            watch_enabled: !self.disable_watch,
            hash_seed,
            requests_per_event: self.reqs_per_event,
            protocol: self.binding(),
            // A 10x overfill of -m 64 with values of 64 B-100 KB: the
            // store's structures and allocator fragmentation add 4-6% to
            // the item bytes; keeping that inside -m keeps memory below
            // 1.1 x -m with margin.
            reserve_per_mille: 40,
            crawler: extended.crawler,
            detail_enabled: self.prefix_delimiter.is_some(),
            prefix_delimiter: self.prefix_delimiter.map_or(b':', |c| c as u8),
            host: HostSettings {
                max_connections: self.conn_limit,
                tcp_port: self.port,
                listen: Some(self.listen.clone()),
                verbosity: u32::from(self.verbose),
                tcp_backlog: self.backlog,
                threads: self.worker_threads(),
                idle_timeout: extended.idle_timeout,
                memory_file: self.memory_file.as_ref().map(|p| p.display().to_string()),
            },
            ..Config::default()
        }
    }

    /// The options as arguments, for passing on to the wasm guest.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            self.listen.clone(),
            "-m".into(),
            self.memory_limit_mb.to_string(),
            "-c".into(),
            self.conn_limit.to_string(),
            "-I".into(),
            self.max_item_size.to_string(),
            "-R".into(),
            self.reqs_per_event.to_string(),
            "-b".into(),
            self.backlog.to_string(),
        ];
        if let Some(mb) = self.conn_memory_mb {
            v.push("--conn-memory".into());
            v.push(mb.to_string());
        }
        if let Some(t) = self.threads {
            v.push("-t".into());
            v.push(t.to_string());
        }
        if let Some(p) = &self.memory_file {
            v.push("-e".into());
            v.push(p.display().to_string());
        }
        if self.disable_evictions {
            v.push("-M".into());
        }
        if self.disable_flush_all {
            v.push("-F".into());
        }
        for (on, flag) in [
            (self.disable_cas, "-C"),
            (self.enable_shutdown, "-A"),
            (self.disable_dumping, "-X"),
            (self.disable_watch, "-W"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        for o in &self.extended {
            v.push("-o".into());
            v.push(o.clone());
        }
        if let Some(b) = self.protocol {
            v.push("-B".into());
            v.push(b.name().into());
        }
        if self.enable_sasl {
            v.push("-S".into());
        }
        if let Some(p) = &self.auth_file {
            v.push("-Y".into());
            v.push(p.display().to_string());
        }
        if let Some(c) = self.prefix_delimiter {
            v.push("-D".into());
            v.push(c.to_string());
        }
        for _ in 0..self.verbose {
            v.push("-v".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_memcached_except_listen() {
        let o = Options::try_parse_from(["x"]).unwrap();
        assert_eq!(
            (
                o.port,
                o.memory_limit_mb,
                o.conn_limit,
                o.max_item_size,
                o.threads
            ),
            (11211, 64, 1024, 1 << 20, None)
        );
        assert_eq!(o.listen, "127.0.0.1");
    }

    #[test]
    fn sizes_and_round_trip() {
        let o = Options::try_parse_from([
            "x",
            "-I",
            "2m",
            "-m",
            "128",
            "-vv",
            "-M",
            "-t",
            "2",
            "--conn-memory",
            "100",
            "-B",
            "binary",
            "-S",
            "-e",
            "/var/cache/wasmcached.snap",
            "-C",
            "-A",
            "-X",
            "-o",
            "idle_timeout=5",
        ])
        .unwrap();
        assert_eq!(o.max_item_size, 2 << 20);
        let again =
            Options::try_parse_from(std::iter::once("x".to_string()).chain(o.to_args())).unwrap();
        assert_eq!(o, again);
    }

    #[test]
    fn sasl_is_binary_only() {
        let o = Options::try_parse_from(["x", "-S"]).unwrap();
        assert!(o.validate().is_ok());
        assert_eq!(o.binding(), Protocol::Binary);
        for b in ["ascii", "auto"] {
            let o = Options::try_parse_from(["x", "-S", "-B", b]).unwrap();
            assert!(o.validate().is_err());
        }
        let o = Options::try_parse_from(["x", "-B", "ascii"]).unwrap();
        assert_eq!(o.config(0).protocol, Protocol::Ascii);
        assert!(Options::try_parse_from(["x", "-B", "negotiate"]).is_err());
    }

    #[test]
    fn operator_flags_reach_the_config() {
        let o = Options::try_parse_from(["x", "-C", "-A", "-X", "-o", "idle_timeout=30"]).unwrap();
        let c = o.config(0);
        assert!(!c.cas_enabled && c.shutdown_enabled && !c.dump_enabled);
        assert_eq!(c.host.idle_timeout, 30);
        let d = Options::try_parse_from(["x"]).unwrap().config(0);
        assert!(d.cas_enabled && !d.shutdown_enabled && d.dump_enabled);
        assert_eq!(d.crawler, wasmcached_core::CrawlerSettings::default());
        let o = Options::try_parse_from([
            "x",
            "-o",
            "no_lru_crawler,lru_crawler_sleep=20",
            "-o",
            "lru_crawler_tocrawl=7",
        ])
        .unwrap();
        let c = o.config(0).crawler;
        assert_eq!((c.enabled, c.sleep_us, c.tocrawl), (false, 20, 7));
        // Every shard starts with them.
        assert_eq!(o.config(0).for_shard(4).crawler, c);
        let bad = Options::try_parse_from(["x", "-o", "idle_timeout=1,hashpower=20"]).unwrap();
        assert_eq!(
            bad.extended(),
            Err("Illegal suboption \"hashpower=20\"".into())
        );
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(Options::try_parse_from(["x", "-p", "notaport"]).is_err());
        assert!(Options::try_parse_from(["x", "-I", "1g"]).is_err());
        assert!(Options::try_parse_from(["x", "--bogus"]).is_err());
        let o = Options::try_parse_from(["x", "-m", "1", "-I", "1m"]).unwrap();
        assert!(o.validate().is_err());
    }
}
