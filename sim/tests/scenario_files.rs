//! Every scenario file in `sim/scenarios/` (the built-in scenarios as
//! files) and `sim/scenarios/examples/` (one per client pattern) parses
//! and passes on a few seeds (`SIM_FILE_SEEDS`, default 2); a malformed
//! file is refused with a reason.

use std::path::{Path, PathBuf};

use wasmcached_sim::{spec, RunConfig};

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("examples")] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("scenario directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        here.sort();
        out.extend(here);
    }
    out
}

#[test]
fn every_scenario_file_runs_and_passes() {
    let seeds: u64 = std::env::var("SIM_FILE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let files = files();
    assert!(files.len() >= 11, "{files:?}");
    for path in files {
        let spec = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for seed in 0..seeds {
            let cfg = RunConfig {
                seed,
                plant: None,
                keep_trace: false,
            };
            let r = spec::run(&spec, &cfg);
            assert!(r.ok, "{} seed {seed}: {:?}", path.display(), r.violations);
        }
    }
}

#[test]
fn every_built_in_scenario_exists_as_a_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for name in wasmcached_sim::SCENARIOS {
        let spec = spec::load(&root.join(format!("{name}.toml"))).unwrap();
        assert_eq!(spec.name, *name);
    }
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let unknown_key = "name = \"x\"\nbogus = 1\n[[servers]]\nname = \"s\"\n";
    assert!(spec::parse(unknown_key).unwrap_err().contains("bogus"));
    let no_server = "name = \"x\"\n[[servers]]\nname = \"s\"\n[[clients]]\nname = \"c\"\npattern = \"cas\"\nservers = [\"t\"]\n";
    assert!(spec::parse(no_server).unwrap_err().contains("no server t"));
    let no_db = "name = \"x\"\n[[servers]]\nname = \"s\"\n[[clients]]\nname = \"c\"\npattern = \"get-or-compute\"\n";
    assert!(spec::parse(no_db).unwrap_err().contains("database"));
}

#[test]
fn a_planted_bug_is_caught_in_a_scenario_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let spec = spec::load(&root.join("examples/cas.toml")).unwrap();
    let cfg = RunConfig {
        seed: 1,
        plant: wasmcached_sim::plant::Plant::named("stale-read"),
        keep_trace: false,
    };
    let r = spec::run(&spec, &cfg);
    assert!(!r.ok);
}
