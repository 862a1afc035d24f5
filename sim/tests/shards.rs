//! The simulated server with its cache split into shards: the cas-counter
//! workload over 4 shards passes both checkers and its exact counts on
//! every seed (`SIM_SHARD_SEEDS`, default 30), planted bugs are still
//! caught over shards, one shard is exactly the unsharded server, and
//! `shards` outside 1..=64 is refused.

use std::path::Path;

use wasmcached_sim::plant::{Plant, PLANTS};
use wasmcached_sim::spec::{self, Spec};
use wasmcached_sim::RunConfig;

fn seeds() -> u64 {
    std::env::var("SIM_SHARD_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

fn cfg(seed: u64, plant: Option<Plant>) -> RunConfig {
    RunConfig {
        seed,
        plant,
        keep_trace: false,
    }
}

/// `cas-counter.toml` with `line` added to its server.
fn cas_counter_with(line: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/cas-counter.toml");
    let text = std::fs::read_to_string(path).expect("cas-counter.toml");
    let server = "name = \"server\"\n";
    assert!(text.contains(server));
    spec::parse(&text.replacen(server, &format!("{server}{line}\n"), 1)).expect("parses")
}

#[test]
fn cas_counter_over_four_shards_passes_every_seed() {
    let spec = cas_counter_with("shards = 4");
    for seed in 0..seeds() {
        let r = spec::run(&spec, &cfg(seed, None));
        assert!(r.ok, "seed {seed}: {:?}", r.violations);
    }
}

#[test]
fn planted_bugs_are_caught_over_shards() {
    let spec = cas_counter_with("shards = 4");
    let n = seeds();
    for name in PLANTS.iter().filter(|p| **p != "resurrect") {
        let plant = Plant::named(name).expect("known plant");
        let (mut fired, mut caught) = (0, 0);
        for seed in 0..n {
            let r = spec::run(&spec, &cfg(seed, Some(plant)));
            if r.plant_fired.unwrap_or(0) == 0 {
                continue;
            }
            fired += 1;
            caught += u64::from(!r.ok);
        }
        assert!(fired * 10 >= n * 9, "{name}: fired on {fired} of {n}");
        assert!(
            caught * 100 >= fired * 95,
            "{name}: caught {caught} of {fired}"
        );
    }
}

#[test]
fn one_shard_is_the_unsharded_server() {
    let plain = cas_counter_with("");
    let one = cas_counter_with("shards = 1");
    for seed in 0..3 {
        let (a, b) = (
            spec::run(&plain, &cfg(seed, None)),
            spec::run(&one, &cfg(seed, None)),
        );
        assert_eq!(a.json(), b.json(), "seed {seed}");
    }
}

/// One client group, which a file needs.
const CLIENT: &str = "[[clients]]\nname = \"c\"\npattern = \"cas\"\n";

#[test]
fn shards_outside_one_to_the_cores_limit_are_refused() {
    for bad in ["shards = 0", "shards = 257", "shards = [4, 300]"] {
        let text = format!("name = \"x\"\n[[servers]]\nname = \"s\"\n{bad}\n{CLIENT}");
        let err = spec::parse(&text).unwrap_err();
        assert!(err.contains("shards"), "{bad}: {err}");
    }
    let ok = format!("name = \"x\"\n[[servers]]\nname = \"s\"\nshards = [1, 256]\n{CLIENT}");
    assert!(spec::parse(&ok).is_ok());
}

#[test]
fn a_client_group_may_not_take_a_name_the_engine_uses() {
    let text = "name = \"x\"\n[[servers]]\nname = \"s\"\n[[clients]]\nname = \"reader\"\npattern = \"cas\"\n";
    assert!(spec::parse(text).unwrap_err().contains("taken"));
}
