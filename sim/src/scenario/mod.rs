//! One module per scenario, each `run(&RunConfig) -> Report`.

pub mod cas_counter;
pub mod cluster;
pub mod faults;
pub mod herd;
pub mod hostile;

use std::time::{Duration, UNIX_EPOCH};

use crate::check::{self, Policy};
use crate::host::EPOCH_SECS;
use crate::plant::Plant;
use crate::report::{Json, Report};
use crate::trace::Recorder;

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

/// The report of a scenario that ran one simulation: its history checked
/// under `policy`, whose violations follow the scenario's own, and the
/// trace's figures.
pub fn report(
    scenario: &'static str,
    cfg: &RunConfig,
    rec: &Recorder,
    policy: Policy,
    mut violations: Vec<String>,
    fields: Vec<(String, Json)>,
) -> Report {
    let checked = check::history(rec, policy);
    violations.extend(checked.violations.iter().cloned());
    Report {
        scenario,
        seed: cfg.seed,
        trace_hash: rec.hash(),
        trace_events: rec.len(),
        ok: violations.is_empty(),
        violations,
        fields,
        trace: rec.keep_text.then(|| rec.text.clone()),
        plant_fired: cfg.plant.map(|_| rec.plant_fired),
        checked,
    }
}

/// Runs the simulation one step. True once it is over: every client has
/// finished, or the simulation failed, which is recorded in `violations`.
pub fn step(sim: &mut turmoil::Sim<'_>, violations: &mut Vec<String>) -> bool {
    match sim.step() {
        Ok(done) => done,
        Err(e) => {
            violations.push(format!("simulation failed: {e}"));
            true
        }
    }
}

/// Percentile of sorted sim-time latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
