//! One module per scenario, each `run(&RunConfig) -> Report`.

pub mod cas_counter;
pub mod cluster;
pub mod faults;
pub mod herd;
pub mod hostile;

use std::time::{Duration, UNIX_EPOCH};

use crate::host::EPOCH_SECS;
use crate::plant::Plant;

/// Settings shared by every scenario run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The one seed every random choice derives from.
    pub seed: u64,
    /// Run a deliberately broken server (to see the checkers catch it).
    pub plant: Option<Plant>,
    /// Keep the trace text in the report.
    pub keep_trace: bool,
}

/// A turmoil simulation seeded from the run's seed, with a fixed epoch and
/// an explicit duration.
pub fn sim<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    builder(seed, duration).build()
}

/// The settings [`sim`] builds with, for scenarios that change some.
pub fn builder(seed: u64, duration: Duration) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.simulation_duration(duration)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(4))
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .rng_seed(seed);
    b
}

/// Percentile of sorted sim-time latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
