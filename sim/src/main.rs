//! `wasmcached-sim <scenario> --seed S [--json]` or `--seeds A..B`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wasmcached_sim::host::Broken;
use wasmcached_sim::{run, RunConfig, SCENARIOS};

/// Deterministic simulations of wasmcached.
#[derive(Parser, Debug)]
#[command(name = "wasmcached-sim", version)]
struct Args {
    /// cas-counter, thundering-herd, faults or hostile-clients.
    scenario: String,
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
    /// Replace the store with a double that silently drops every Nth write
    /// (to see the checker catch it).
    #[arg(long, value_name = "N")]
    drop_every: Option<u64>,
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
    if !SCENARIOS.contains(&args.scenario.as_str()) {
        eprintln!(
            "unknown scenario '{}'; one of: {}",
            args.scenario,
            SCENARIOS.join(", ")
        );
        return ExitCode::from(64);
    }
    let broken = args.drop_every.map(|every| Broken {
        every: every.max(1),
    });
    let (a, b) = match (args.seed, args.seeds) {
        (Some(s), _) => (s, s + 1),
        (None, Some(r)) => r,
        (None, None) => (0, 1),
    };
    let sweep = b - a > 1;
    let started = Instant::now();
    for seed in a..b {
        let cfg = RunConfig {
            seed,
            broken,
            keep_trace: args.trace,
        };
        let Some(report) = run(&args.scenario, &cfg) else {
            return ExitCode::from(64);
        };
        if let Some(t) = &report.trace {
            print!("{t}");
        }
        if !sweep || !report.ok {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
        }
        if !report.ok {
            let drop = args
                .drop_every
                .map(|n| format!(" --drop-every {n}"))
                .unwrap_or_default();
            eprintln!(
                "FAILED: replay with: wasmcached-sim {} --seed {seed}{drop}",
                args.scenario
            );
            return ExitCode::from(1);
        }
        if sweep && (seed - a + 1) % 100 == 0 {
            let el = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} seeds ok ({:.1} seeds/s)",
                args.scenario,
                seed - a + 1,
                (seed - a + 1) as f64 / el
            );
        }
    }
    if sweep {
        let n = b - a;
        let el = started.elapsed().as_secs_f64();
        let line = format!(
            "{{\"scenario\":\"{}\",\"seeds\":{n},\"ok\":true,\"seconds\":{el:.2},\"seeds_per_second\":{:.1}}}",
            args.scenario,
            n as f64 / el
        );
        if args.json {
            println!("{line}");
        } else {
            println!(
                "{}: {n} seeds passed in {el:.1} s ({:.1} seeds/s)",
                args.scenario,
                n as f64 / el
            );
        }
    }
    ExitCode::SUCCESS
}
