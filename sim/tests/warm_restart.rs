//! The thundering herd with the restart planned: the server writes its
//! snapshot and comes back warm, so the restart costs the database nothing.

use wasmcached_sim::report::Json;
use wasmcached_sim::scenario::herd::{COLD_EVENTS, HOT_KEYS};
use wasmcached_sim::{run, RunConfig};

fn queries(r: &wasmcached_sim::Report, field: &str, strategy: &str) -> u64 {
    let Some((_, Json::Obj(q))) = r.fields.iter().find(|(k, _)| k == field) else {
        panic!("{field} missing")
    };
    match q.iter().find(|(k, _)| k == strategy) {
        Some((_, Json::Int(v))) => *v,
        _ => panic!("{field}.{strategy} missing"),
    }
}

#[test]
fn a_warm_restart_is_no_cold_event() {
    for seed in 0..5 {
        let cfg = RunConfig {
            seed,
            plant: None,
            keep_trace: false,
        };
        let r = run("thundering-herd", &cfg).unwrap();
        assert!(r.ok, "seed {seed}: {:?}", r.violations);
        let lease = queries(&r, "db_queries_warm_restart", "lease");
        assert!(
            lease <= HOT_KEYS * (COLD_EVENTS - 1),
            "seed {seed}: lease {lease}"
        );
        let (cold, warm) = (
            queries(&r, "db_queries", "naive"),
            queries(&r, "db_queries_warm_restart", "naive"),
        );
        assert!(warm < cold, "seed {seed}: naive cold {cold}, warm {warm}");
    }
}
