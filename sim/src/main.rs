//! `wasmcached-sim <scenario> --seed S [--json]` or `--seeds A..B`;
//! `wasmcached-sim run FILE.toml ...` for a scenario file.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use wasmcached_sim::plant::{Plant, PLANTS};
use wasmcached_sim::{run, RunConfig, SCENARIOS};

/// Deterministic simulations of wasmcached.
#[derive(Parser, Debug)]
#[command(name = "wasmcached-sim", version)]
struct Args {
    /// cas-counter, thundering-herd, faults, hostile-clients, cluster, or
    /// `run` with a scenario file.
    scenario: String,
    /// With `run`: the scenario file (TOML; see sim/scenarios/README.md).
    file: Option<std::path::PathBuf>,
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run seeds A..B (B exclusive), stopping at the first failure.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Print one JSON object per run (last line).
    #[arg(long)]
    json: bool,
    /// Print the event trace.
    #[arg(long)]
    trace: bool,
    /// Over seeds, print every run's report (not only failing ones).
    #[arg(long)]
    every: bool,
    /// Run a server that silently drops every Nth write to each key (to
    /// see the checkers catch it); the same as `--plant lost-write` at
    /// another rate.
    #[arg(long, value_name = "N", conflicts_with = "plant")]
    drop_every: Option<u64>,
    /// Run a deliberately broken server: lost-write, stale-read,
    /// double-cas, resurrect or early-expiry.
    #[arg(long, value_name = "NAME")]
    plant: Option<String>,
    /// With --plant: run every seed, count the seeds the checkers caught,
    /// and succeed only if they caught at least this many.
    #[arg(long, value_name = "N")]
    expect_caught: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.parse().map_err(|_| "bad start")?;
    let b: u64 = b.parse().map_err(|_| "bad end")?;
    if b <= a {
        return Err("empty range".into());
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let spec = match (args.scenario.as_str(), &args.file) {
        ("run", Some(path)) => match wasmcached_sim::spec::load(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(65);
            }
        },
        ("run", None) => {
            eprintln!("run: which scenario file?");
            return ExitCode::from(64);
        }
        _ => None,
    };
    let label = spec
        .as_ref()
        .map_or_else(|| args.scenario.clone(), |s| s.name.clone());
    if spec.is_none() && !SCENARIOS.contains(&args.scenario.as_str()) {
        eprintln!(
            "unknown scenario '{}'; one of: {}",
            args.scenario,
            SCENARIOS.join(", ")
        );
        return ExitCode::from(64);
    }
    let plant = match (&args.plant, args.drop_every) {
        (Some(name), _) => match Plant::named(name) {
            Some(p) => Some(p),
            None => {
                eprintln!("unknown plant '{name}'; one of: {}", PLANTS.join(", "));
                return ExitCode::from(64);
            }
        },
        (None, Some(every)) => Some(Plant::LostWrite {
            every: every.max(1),
        }),
        (None, None) => None,
    };
    let (a, b) = match (args.seed, args.seeds) {
        (Some(s), _) => (s, s + 1),
        (None, Some(r)) => r,
        (None, None) => (0, 1),
    };
    let sweep = b - a > 1;
    // With a plant over many seeds, a failing seed is the point: count
    // them instead of stopping at the first.
    let counting = sweep && plant.is_some();
    let replay = match (&args.plant, args.drop_every) {
        (Some(name), _) => format!(" --plant {name}"),
        (None, Some(n)) => format!(" --drop-every {n}"),
        (None, None) => String::new(),
    };
    let started = Instant::now();
    let mut check_time = Duration::ZERO;
    let mut check_max = Duration::ZERO;
    let mut check_ops = 0usize;
    let mut caught = 0u64;
    // Seeds the linearizability search caught on its own.
    let mut caught_lin = 0u64;
    // Seeds where the plant changed what the server did at all.
    let mut fired = 0u64;
    for seed in a..b {
        let cfg = RunConfig {
            seed,
            plant,
            keep_trace: args.trace,
        };
        let report = match &spec {
            Some(spec) => wasmcached_sim::spec::run(spec, &cfg),
            None => match run(&args.scenario, &cfg) {
                Some(r) => r,
                None => return ExitCode::from(64),
            },
        };
        check_time += report.checked.elapsed;
        check_max = check_max.max(report.checked.elapsed);
        check_ops += report.checked.ops;
        if let Some(t) = &report.trace {
            print!("{t}");
        }
        if !sweep || args.every || (!report.ok && !counting) {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
        }
        if report
            .violations
            .iter()
            .any(|v| v.contains(wasmcached_sim::check::NOT_LINEARIZABLE))
        {
            caught_lin += 1;
        }
        fired += u64::from(report.plant_fired.unwrap_or(0) > 0);
        if !report.ok {
            caught += 1;
            if !counting {
                let what = match &args.file {
                    Some(f) => format!("run {}", f.display()),
                    None => args.scenario.clone(),
                };
                eprintln!("FAILED: replay with: wasmcached-sim {what} --seed {seed}{replay}");
                return ExitCode::from(1);
            }
        }
        if sweep && (seed - a + 1) % 100 == 0 {
            let el = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} seeds {} ({:.1} seeds/s)",
                label,
                seed - a + 1,
                if counting { "run" } else { "ok" },
                (seed - a + 1) as f64 / el
            );
        }
    }
    if !sweep {
        return ExitCode::SUCCESS;
    }
    let n = b - a;
    let el = started.elapsed().as_secs_f64();
    let check_line = format!(
        "checker: {:.2} s in all, {:.2} ms per run on average, {:.2} ms at most, {} ops",
        check_time.as_secs_f64(),
        check_time.as_secs_f64() * 1000.0 / n as f64,
        check_max.as_secs_f64() * 1000.0,
        check_ops
    );
    if counting {
        let name = plant.map_or("", Plant::name);
        if args.json {
            println!(
                "{{\"scenario\":\"{}\",\"plant\":\"{name}\",\"seeds\":{n},\"fired\":{fired},\"caught\":{caught},\"caught_by_search\":{caught_lin},\"seconds\":{el:.2},\"check_seconds\":{:.3}}}",
                label,
                check_time.as_secs_f64()
            );
        } else {
            println!(
                "{} with {name}: fired on {fired} of {n} seeds, caught on {caught}, by the linearizability search on {caught_lin} ({el:.1} s; {check_line})",
                label
            );
        }
        return match args.expect_caught {
            Some(want) if caught < want => {
                eprintln!("expected at least {want} seeds caught");
                ExitCode::from(1)
            }
            _ => ExitCode::SUCCESS,
        };
    }
    if args.json {
        println!(
            "{{\"scenario\":\"{}\",\"seeds\":{n},\"ok\":true,\"seconds\":{el:.2},\"seeds_per_second\":{:.1},\"check_seconds\":{:.3}}}",
            label,
            n as f64 / el,
            check_time.as_secs_f64()
        );
    } else {
        println!(
            "{}: {n} seeds passed in {el:.1} s ({:.1} seeds/s; {check_line})",
            label,
            n as f64 / el
        );
    }
    ExitCode::SUCCESS
}
