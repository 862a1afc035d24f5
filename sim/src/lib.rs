//! # wasmcached-sim
//!
//! Deterministic network simulation (turmoil) of the wasmcached core:
//! concurrent CAS counters, cold-cache thundering herds, faults and
//! hostile clients, with every run's history checked for linearizability
//! against a model of a cache item ([`check`]), and planted bugs
//! ([`plant`]) to prove the checkers catch what they claim to. The cache server
//! host ([`host`]) runs the production host policy, the core's `Driver`
//! and `Gate`. One seed drives everything: turmoil's RNG,
//! the fixed simulated epoch, the workload and the fault schedule. The same
//! seed gives a byte-identical trace (its hash is in every report).

pub mod cache;
pub mod check;
pub mod client;
pub mod cluster;
pub mod db;
pub mod host;
pub mod plant;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod spec;
pub mod trace;
pub mod warm;

pub use report::Report;
pub use scenario::RunConfig;

/// The scenarios, by CLI name.
pub const SCENARIOS: &[&str] = &[
    "cas-counter",
    "thundering-herd",
    "faults",
    "hostile-clients",
    "cluster",
];

/// Runs scenario `name` with `cfg`; `None` for an unknown name.
pub fn run(name: &str, cfg: &RunConfig) -> Option<Report> {
    Some(match name {
        "cas-counter" => scenario::cas_counter::run(cfg),
        "thundering-herd" => scenario::herd::run(cfg),
        "faults" => scenario::faults::run(cfg),
        "hostile-clients" => scenario::hostile::run(cfg),
        "cluster" => scenario::cluster::run(cfg),
        _ => return None,
    })
}
