//! Scenarios as data: a TOML file describes the servers, the clients and
//! their pattern, the key space, value sizes and workload mix, the fault
//! schedule, the duration and what to expect; [`run`] simulates it for one
//! seed with the same host, clients, recorder and checkers as the
//! scenarios written in Rust. `wasmcached-sim run FILE.toml --seeds A..B`
//! runs a file; `sim/scenarios/README.md` documents the format with an
//! example per pattern, and every built-in scenario exists there as a file.
//!
//! Writing a scenario in Rust instead (for what the format cannot say)
//! takes the same pieces, as `sim/src/scenario/*.rs` do:
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmcached_sim::check::{self, Policy};
//! use wasmcached_sim::client::Client;
//! use wasmcached_sim::rng::Rng;
//! use wasmcached_sim::trace::{Mode, Recorder};
//! use wasmcached_sim::{host, scenario};
//!
//! let seed = 7;
//! // One recorder per run: every client's operations, every restart.
//! let rec = Recorder::shared(false);
//! // A turmoil simulation seeded from the run's seed, fixed epoch.
//! let mut sim = scenario::builder(seed, Duration::from_secs(60)).build();
//! let r = rec.clone();
//! // The production driver around a store, as a turmoil host.
//! sim.host("server", move || host::serve("server", r.clone(), None));
//! let r = rec.clone();
//! sim.client("app", async move {
//!     // Each client its own RNG stream of the seed.
//!     let mut c = Client::new("app".into(), "server", Rng::new(seed, 1), r, Duration::from_secs(1));
//!     let value = format!("hello {}", c.unique()); // unique per write
//!     c.write(Mode::Set, "greeting", value.as_bytes(), 0, 60, None).await.ok();
//!     c.get("greeting", false).await.ok();
//!     Ok(())
//! });
//! sim.run().unwrap();
//! // Both checkers over the history.
//! let checked = check::history(&rec.borrow(), Policy { no_stale_reads: true, no_silent_misses: true });
//! assert!(checked.violations.is_empty());
//! ```
//!
//! Add its name to [`crate::SCENARIOS`] and [`crate::run`] to make it a
//! CLI scenario (and to `scripts/sim-sweep`).

mod engine;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use engine::run;

/// A value given once, or a list to draw one from per seed.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOf<T> {
    /// The value.
    One(T),
    /// Draw one per seed.
    Any(Vec<T>),
}

impl<T: Clone> OneOf<T> {
    /// The value for this seed (`pick` draws an index below the length).
    pub fn pick(&self, mut pick: impl FnMut(u64) -> u64) -> Option<T> {
        match self {
            OneOf::One(v) => Some(v.clone()),
            OneOf::Any(vs) if vs.is_empty() => None,
            OneOf::Any(vs) => Some(vs[pick(vs.len() as u64) as usize].clone()),
        }
    }
}

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Its name, in reports.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Longest the simulation may run, in seconds (default 300).
    #[serde(default = "default_limit")]
    pub limit_s: u64,
    /// The network.
    #[serde(default)]
    pub network: Network,
    /// The cache servers.
    pub servers: Vec<Server>,
    /// A database host, for `get-or-compute` and `writer`.
    pub database: Option<Database>,
    /// The client groups.
    pub clients: Vec<Group>,
    /// Faults at fixed times.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Faults drawn from the seed.
    pub random_faults: Option<RandomFaults>,
    /// Simulations per seed, each with its own knobs (default: one).
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Windows to count database queries in.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// What must hold.
    #[serde(default)]
    pub expect: Expect,
}

fn default_limit() -> u64 {
    300
}

/// Network settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Fastest delivery, ms (default 1).
    pub min_latency_ms: Option<u64>,
    /// Slowest delivery, ms (default 4).
    pub max_latency_ms: Option<u64>,
    /// Segments in flight per connection, and the listen backlog
    /// (default 64).
    pub tcp_capacity: Option<OneOf<usize>>,
    /// Step hosts in a random order each tick.
    pub random_order: Option<OneOf<bool>>,
}

/// A cache server (or `count` of them: `name-0`, `name-1`, ...).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Host name.
    pub name: String,
    /// How many.
    pub count: Option<usize>,
    /// `-m`, megabytes (default 64).
    pub memory_mb: Option<OneOf<u64>>,
    /// Shards the cache is split into, 1 to 256 (default 1: one store),
    /// per seed.
    pub shards: Option<OneOf<usize>>,
    /// `-c` (default 1024).
    pub max_connections: Option<usize>,
    /// Memory all connections may hold, KiB (default the driver's).
    pub connection_memory_kb: Option<usize>,
    /// Largest single write, bytes (default 64 KiB).
    pub write_max: Option<usize>,
    /// Its wall clock's offset from the clients', seconds.
    pub clock_skew_s: Option<OneOf<i64>>,
}

/// The database host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// How long a query takes, ms (default 50).
    pub query_ms: Option<u64>,
}

/// What a client group does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// The article's naive counter: get, add one, set.
    Naive,
    /// The article's gets/cas counter loop.
    Cas,
    /// A counter with `incr` (`add` 0 first).
    Incr,
    /// Read-through caching: get, on a miss query the database and set
    /// (`strategy` naive, lease or fallback).
    GetOrCompute,
    /// Random commands from `mix`, pipelined.
    Random,
    /// Updates database rows and deletes (or invalidates) their entries.
    Writer,
    /// Stores every key's row once, then lets `wait_for` groups start.
    Warmer,
    /// Stores large values on fresh keys (eviction pressure).
    Filler,
    /// The hostile-clients population (good, idle, slow readers,
    /// slowloris, torn writes and reads, a connection flood).
    Hostile,
}

/// How `get-or-compute` fills the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Miss, query, set.
    Naive,
    /// `mg N R` leases: one winner recomputes, the rest wait.
    Lease,
    /// pymemcache's FallbackClient: miss on the new server, try the old.
    Fallback,
}

/// A client group: `count` clients (tasks of one host named `name`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Host name (also the clients' name prefix).
    pub name: String,
    /// Clients (default 1).
    pub count: Option<u64>,
    /// What they do.
    pub pattern: Pattern,
    /// Servers they use (default: the first). More than one: keys are
    /// placed by `hashing`.
    #[serde(default)]
    pub servers: Vec<String>,
    /// `rendezvous` (pymemcache HashClient) or `ketama` (libmemcached,
    /// twemproxy); default rendezvous.
    pub hashing: Option<String>,
    /// `pymemcache` or `auto-eject` (default: pymemcache with rendezvous,
    /// auto-eject with ketama); timeouts scaled down.
    pub failover: Option<String>,
    /// The old server, for the fallback strategy.
    pub fallback: Option<String>,
    /// `get-or-compute`: naive, lease or fallback (a variant may set it).
    pub strategy: Option<Strategy>,
    /// Key space (default `key`, 1 key).
    #[serde(default)]
    pub keys: Keys,
    /// Value sizes, for `random` and `filler`.
    #[serde(default)]
    pub values: Vec<SizeClass>,
    /// TTLs to draw from (seconds; over 30 days: unix time; `"abs:N"`
    /// strings are N seconds ahead on the client's clock).
    #[serde(default)]
    pub ttls: Vec<Ttl>,
    /// Operations (visits, reads, batches) per client.
    pub ops: Option<u64>,
    /// Or run until this sim time, ms.
    pub until_ms: Option<u64>,
    /// Start at this sim time, ms.
    pub start_ms: Option<u64>,
    /// Wait for this group (a warmer) to finish first.
    pub wait_for: Option<String>,
    /// Pause between operations, ms, drawn from [low, high).
    pub pause_ms: Option<[u64; 2]>,
    /// Request timeout, ms (default 5000).
    pub timeout_ms: Option<u64>,
    /// Requests per pipelined batch, drawn from [low, high] (`random`).
    pub pipeline: Option<[u64; 2]>,
    /// Command weights (`random`).
    pub mix: Option<BTreeMap<String, u64>>,
    /// Keys per `multiget`/`multigets`, drawn from [low, high] (`random`;
    /// default [2, 10]).
    pub multiget_keys: Option<[u64; 2]>,
    /// Limits a `cache_memlimit` sets, MB, one drawn per command
    /// (`random`; default [8, 64]).
    pub memlimit_mb: Option<Vec<u64>>,
    /// Writer: invalidate every key once at this time, ms (instead of
    /// updating rows continually).
    pub invalidate_at_ms: Option<u64>,
    /// Every operation must be answered within this many ms.
    pub latency_bound_ms: Option<u64>,
    /// `hostile`: how many of each kind (defaults as in the built-in).
    pub hostile: Option<Hostile>,
}

/// The hostile population's sizes.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostile {
    /// Well-behaved clients.
    pub good_clients: Option<u64>,
    /// Requests per good client.
    pub good_ops: Option<u64>,
    /// Clients that connect and never send.
    pub idle: Option<u64>,
    /// Clients that pipeline large reads and read slowly or never.
    pub slow_readers: Option<u64>,
    /// Clients that send a `set` a byte at a time.
    pub slowloris: Option<u64>,
    /// Clients that send half a value and hang up.
    pub torn_writers: Option<u64>,
    /// Connections the flood opens at once.
    pub flood: Option<u64>,
    /// When the flood starts, ms.
    pub flood_at_ms: Option<u64>,
}

/// A key space: `prefix:0` .. `prefix:count-1` (or `prefix` alone for
/// one key).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Prefix.
    pub prefix: String,
    /// Keys.
    pub count: u64,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            prefix: "key".into(),
            count: 1,
        }
    }
}

impl Keys {
    /// Key `i`.
    pub fn key(&self, i: u64) -> String {
        if self.count <= 1 {
            self.prefix.clone()
        } else {
            format!("{}:{i}", self.prefix)
        }
    }
}

/// Values of `min..=max` bytes, drawn with `weight`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeClass {
    /// Smallest.
    pub min: usize,
    /// Largest.
    pub max: usize,
    /// Relative weight (default 1).
    pub weight: Option<u64>,
}

/// A TTL: seconds (memcached's exptime), or `"abs:N"` for a unix time N
/// seconds ahead on the client's clock.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    /// Raw exptime.
    Secs(i64),
    /// `abs:N`.
    Text(String),
}

/// One fault at a fixed time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, ms.
    pub at_ms: u64,
    /// `crash`, `restart`, `partition`, `hold`, `latency`, `lossy`,
    /// `clock-jump`, `warm-restart`.
    pub kind: String,
    /// The server (or list: one drawn per seed, a different one from
    /// servers earlier faults drew).
    pub server: Option<OneOf<String>>,
    /// The client group, for network faults (default: every group).
    pub client: Option<String>,
    /// How long, ms (crash: until the restart; partition, hold: until
    /// healed; latency, lossy: 400 / 300 by default).
    pub duration_ms: Option<u64>,
    /// Latency, ms.
    pub latency_ms: Option<u64>,
    /// Message loss rate, 0..1.
    pub rate: Option<f64>,
    /// Clock jump, seconds.
    pub seconds: Option<i64>,
    /// Partition: an operator flushes the server the moment it heals
    /// (a variant may set it).
    pub flush_on_heal: Option<bool>,
}

/// Faults drawn from the seed, spread over a window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// How many, drawn from [low, high].
    pub count: [u64; 2],
    /// When, ms, drawn from [low, high).
    pub window_ms: [u64; 2],
    /// Which kinds (as in [`Fault::kind`]), drawn uniformly.
    pub kinds: Vec<String>,
    /// The server they hit (default: the first).
    pub server: Option<String>,
}

/// One simulation of the seed with its knobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name, in reports.
    pub name: String,
    /// `get-or-compute` strategy for every group.
    pub strategy: Option<Strategy>,
    /// Flush partitioned servers when they heal.
    pub flush_on_heal: Option<bool>,
}

/// A window to count database queries in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name.
    pub name: String,
    /// From, ms.
    pub from_ms: u64,
    /// To, ms.
    pub to_ms: u64,
}

/// What must hold beyond the checkers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Counters that must end at exactly this count.
    #[serde(default)]
    pub final_counts: Vec<FinalCount>,
    /// Most database queries: a number, or one per variant
    /// (`{ lease = 15 }`).
    pub max_db_queries: Option<Limit>,
    /// The fast checker's rule that a miss after an acknowledged write
    /// needs a delete or a recorded disruption (default true; turn off
    /// where TTLs run out).
    pub no_silent_misses: Option<bool>,
}

/// A bound for every variant, or per variant.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Limit {
    /// The same for every variant.
    All(u64),
    /// By variant name.
    ByVariant(BTreeMap<String, u64>),
}

impl Limit {
    /// The bound for `variant` (its name; empty without variants).
    pub fn of(&self, variant: &str) -> Option<u64> {
        match self {
            Limit::All(n) => Some(*n),
            Limit::ByVariant(m) => m.get(variant).copied(),
        }
    }
}

/// A counter's expected final count.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalCount {
    /// Key.
    pub key: String,
    /// Server (default: the first).
    pub server: Option<String>,
    /// The count.
    pub equals: u64,
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Spec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a scenario from TOML text, and checks what the types cannot.
pub fn parse(text: &str) -> Result<Spec, String> {
    let spec: Spec = toml::from_str(text).map_err(|e| e.to_string())?;
    engine::validate(&spec)?;
    Ok(spec)
}
