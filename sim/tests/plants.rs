//! Each planted bug is caught: on at least 95 % of the seeds where it
//! changed what the server did, by the linearizability search on its own,
//! while the correct server passes every seed (`SIM_PLANT_SEEDS` seeds per
//! plant, default 20; the README's table comes from 100 per plant with
//! `wasmcached-sim <scenario> --seeds 0..100 --plant <name>`).

use wasmcached_sim::check::NOT_LINEARIZABLE;
use wasmcached_sim::plant::{Plant, PLANTS};
use wasmcached_sim::{run, RunConfig};

fn seeds() -> u64 {
    std::env::var("SIM_PLANT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// The scenario each plant is measured on: one whose workload does what
/// the bug breaks (deletes for `resurrect`, conditional writes for
/// `double-cas`, TTLs for `early-expiry`).
fn scenario_for(plant: &str) -> &'static str {
    match plant {
        "resurrect" => "hostile-clients",
        _ => "cas-counter",
    }
}

fn cfg(seed: u64, plant: Option<Plant>) -> RunConfig {
    RunConfig {
        seed,
        plant,
        keep_trace: false,
    }
}

#[test]
fn every_plant_is_caught_by_the_search() {
    let n = seeds();
    let mut table = Vec::new();
    for name in PLANTS {
        let scenario = scenario_for(name);
        let plant = Plant::named(name).expect("known plant");
        let (mut fired, mut caught, mut by_search) = (0, 0, 0);
        for seed in 0..n {
            let r = run(scenario, &cfg(seed, Some(plant))).expect("scenario");
            if r.plant_fired.unwrap_or(0) == 0 {
                continue;
            }
            fired += 1;
            caught += u64::from(!r.ok);
            by_search += u64::from(r.violations.iter().any(|v| v.contains(NOT_LINEARIZABLE)));
        }
        table.push(format!(
            "{name} on {scenario}: fired {fired}/{n}, caught {caught}, by the search {by_search}"
        ));
        assert!(
            fired * 10 >= n * 9,
            "{name}: fired on only {fired} of {n} seeds"
        );
        assert!(
            by_search * 100 >= fired * 95,
            "{name}: the search caught {by_search} of {fired}\n{}",
            table.join("\n")
        );
    }
    eprintln!("{}", table.join("\n"));
}

#[test]
fn the_correct_server_passes_the_same_seeds() {
    for scenario in ["cas-counter", "hostile-clients"] {
        for seed in 0..seeds() {
            let r = run(scenario, &cfg(seed, None)).expect("scenario");
            assert!(r.ok, "{scenario} seed {seed}: {:?}", r.violations);
        }
    }
}
