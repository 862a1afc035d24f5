//! `faults`: the gets/cas counter under partitions between clients and the
//! server, held (delayed) messages, link latency spikes and, in some runs,
//! a server restart (the cache comes back empty). Clients time out, reopen
//! connections and retry. Invariants: the checker's (values are ones
//! somebody wrote, no stale reads, no silent misses while the server is up)
//! and an acknowledged increment is never lost while the server stays up.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::check::{self, Policy};
use crate::client::Client;
use crate::host;
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::cas_counter::{count_of, visit_cas};
use crate::scenario::{sim, RunConfig};
use crate::trace::{Outcome, Recorder};

/// Clients.
pub const CLIENTS: u64 = 4;
/// Increments each client must get acknowledged.
pub const VISITS: u64 = 15;
const KEY: &str = "visitors";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Partition(u64),
    Hold(u64),
    Latency(u64),
    Restart,
}

/// Runs the scenario.
pub fn run(cfg: &RunConfig) -> Report {
    let rec = Recorder::shared(cfg.keep_trace);
    let mut sim = sim(cfg.seed, Duration::from_secs(300));
    let (r, plant) = (rec.clone(), cfg.plant);
    sim.host("server", move || host::serve("server", r.clone(), plant));
    let finished = Rc::new(RefCell::new(0u64));
    let final_value = Rc::new(RefCell::new(None::<u64>));
    for i in 0..CLIENTS {
        let (rec, finished, seed) = (rec.clone(), finished.clone(), cfg.seed);
        sim.client(format!("client-{i}"), async move {
            let mut c = Client::new(
                format!("client-{i}"),
                "server",
                Rng::new(seed, i + 1),
                rec,
                Duration::from_millis(300),
            );
            let mut acked = 0;
            while acked < VISITS {
                match visit_cas(&mut c, KEY).await {
                    Ok(_) => acked += 1,
                    // Timed out or disconnected: back off, reconnect, retry.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                let pause = c.rng().below(20);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            *finished.borrow_mut() += 1;
            Ok(())
        });
    }
    let (r, f, fin, seed) = (rec.clone(), finished.clone(), final_value.clone(), cfg.seed);
    sim.client("reader", async move {
        while *f.borrow() < CLIENTS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c = Client::new(
            "reader".into(),
            "server",
            Rng::new(seed, 0),
            r,
            Duration::from_secs(5),
        );
        let v = loop {
            match c.get(KEY, false).await {
                Ok(v) => break v,
                // A fault may still be in effect: retry.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        *fin.borrow_mut() = Some(v.map_or(0, |(v, _)| count_of(&v)));
        Ok(())
    });

    // The fault schedule, from the same seed.
    let mut rng = Rng::new(cfg.seed, 77);
    let mut schedule: Vec<(Duration, u64, Fault)> = Vec::new();
    let mut t = 50;
    for _ in 0..6 {
        t += 50 + rng.below(250);
        let client = rng.below(CLIENTS);
        let f = match rng.below(3) {
            0 => Fault::Partition(100 + rng.below(600)),
            1 => Fault::Hold(50 + rng.below(300)),
            _ => Fault::Latency(20 + rng.below(200)),
        };
        schedule.push((Duration::from_millis(t), client, f));
    }
    let restart = rng.below(2) == 0;
    if restart {
        schedule.push((
            Duration::from_millis(100 + rng.below(800)),
            0,
            Fault::Restart,
        ));
    }
    schedule.sort_by_key(|(at, _, _)| *at);
    let mut undo: Vec<(Duration, String, Fault)> = Vec::new();
    let mut violations = Vec::new();
    let mut faults = 0u64;
    loop {
        let now = sim.elapsed();
        while let Some((at, client, f)) = schedule.first().copied() {
            if at > now {
                break;
            }
            schedule.remove(0);
            faults += 1;
            let name = format!("client-{client}");
            rec.borrow_mut()
                .event(now, &format!("fault {f:?} on {name}"));
            match f {
                Fault::Partition(ms) => {
                    sim.partition(name.as_str(), "server");
                    undo.push((now + Duration::from_millis(ms), name, f));
                }
                Fault::Hold(ms) => {
                    sim.hold(name.as_str(), "server");
                    undo.push((now + Duration::from_millis(ms), name, f));
                }
                Fault::Latency(ms) => {
                    sim.set_link_latency(name.as_str(), "server", Duration::from_millis(ms));
                    undo.push((now + Duration::from_millis(400), name, f));
                }
                Fault::Restart => sim.bounce("server"),
            }
        }
        undo.retain(|(at, name, f)| {
            if *at > now {
                return true;
            }
            match f {
                Fault::Partition(_) => sim.repair(name.as_str(), "server"),
                Fault::Hold(_) => sim.release(name.as_str(), "server"),
                Fault::Latency(_) => {
                    sim.set_link_latency(name.as_str(), "server", Duration::from_millis(2))
                }
                Fault::Restart => {}
            }
            false
        });
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                violations.push(format!("simulation failed: {e}"));
                break;
            }
        }
    }

    let rec = rec.borrow();
    let final_value = final_value.borrow().unwrap_or(0);
    let last_restart = rec.restarts.iter().map(|r| r.at).max().unwrap_or_default();
    // Acknowledged increments since the last restart are all in the final
    // count (each acked CAS wrote a distinct next value).
    let acked_since: Vec<u64> = rec
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Stored && o.invoke > last_restart)
        .filter_map(|o| o.written().map(count_of))
        .collect();
    if let Some(&max) = acked_since.iter().max() {
        if final_value < max {
            violations.push(format!(
                "final count {final_value} lost acknowledged increment {max}"
            ));
        }
    }
    let indeterminate = rec
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Indeterminate)
        .count() as u64;
    let checked = check::history(
        &rec,
        Policy {
            no_stale_reads: true,
            no_silent_misses: true,
        },
    );
    violations.extend(checked.violations.iter().cloned());
    Report {
        scenario: "faults",
        seed: cfg.seed,
        trace_hash: rec.hash(),
        trace_events: rec.len(),
        ok: violations.is_empty(),
        violations,
        fields: vec![
            ("acked_increments".into(), Json::Int(CLIENTS * VISITS)),
            ("final".into(), Json::Int(final_value)),
            ("faults".into(), Json::Int(faults)),
            (
                "server_restarts".into(),
                Json::Int(rec.restarts.len().saturating_sub(1) as u64),
            ),
            ("indeterminate_ops".into(), Json::Int(indeterminate)),
        ],
        trace: rec.keep_text.then(|| rec.text.clone()),
        plant_fired: cfg.plant.map(|_| rec.plant_fired),
        checked,
    }
}
