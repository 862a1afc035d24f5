//! `cas-counter`: N clients each add M visits with the seed article's
//! gets/cas retry loop; the final count must be exactly N*M. The article's
//! naive get/set version runs alongside (its lost updates are reported),
//! and so does the `incr` version.
//!
//! Counter values are `<count> <writer tag>`: the count first (what the
//! article stores), then a tag unique to the write, so the checkers know
//! which write every value read came from. Counters are stored with a
//! one-hour TTL, which the run never reaches: a counter that vanishes
//! early is a bug the checkers see.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::check::Policy;
use crate::client::{Client, Failed};
use crate::host;
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::{report, sim, RunConfig};
use crate::trace::{Mode, Recorder, Shared};

/// Clients.
pub const CLIENTS: u64 = 5;
/// Visits per client per variant.
pub const VISITS: u64 = 20;

const CAS_KEY: &str = "visitors:cas";
const NAIVE_KEY: &str = "visitors:naive";
const INCR_KEY: &str = "visitors:incr";
/// The counters' TTL (seconds).
pub const TTL: i64 = 3600;

/// The count a counter value starts with.
pub fn count_of(v: &[u8]) -> u64 {
    String::from_utf8_lossy(v)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The article's `on_visit` with gets/cas (add when the key is missing).
pub async fn visit_cas(c: &mut Client, key: &str) -> Result<u64, Failed> {
    loop {
        match c.get(key, true).await? {
            Some((v, Some(token))) => {
                let next = count_of(&v) + 1;
                let value = format!("{next} {}", c.unique());
                if c.write(Mode::Cas, key, value.as_bytes(), 0, TTL, Some(token))
                    .await?
                {
                    return Ok(next);
                }
            }
            _ => {
                let value = format!("1 {}", c.unique());
                if c.write(Mode::Add, key, value.as_bytes(), 0, TTL, None)
                    .await?
                {
                    return Ok(1);
                }
            }
        }
    }
}

/// The article's naive `on_visit`: get, add one, set (loses updates
/// under concurrency).
pub async fn visit_naive(c: &mut Client, key: &str) -> Result<(), Failed> {
    let next = match c.get(key, false).await? {
        Some((v, _)) => count_of(&v) + 1,
        None => 1,
    };
    let value = format!("{next} {}", c.unique());
    c.write(Mode::Set, key, value.as_bytes(), 0, TTL, None)
        .await?;
    Ok(())
}

/// One visit with `incr` (an `add` of 0 first when the key is missing).
pub async fn visit_incr(c: &mut Client, key: &str) -> Result<(), Failed> {
    if c.incr(key, 1).await?.is_none() {
        c.write(Mode::Add, key, b"0", 0, TTL, None).await?;
        while c.incr(key, 1).await?.is_none() {}
    }
    Ok(())
}

/// The client that reads the final counts once the visits are done: the
/// seed's stream 0 (the visiting clients take 1 on).
pub fn reader(server: &'static str, seed: u64, rec: Shared) -> Client {
    Client::new(
        "reader".into(),
        server,
        Rng::new(seed, 0),
        rec,
        Duration::from_secs(5),
    )
}

/// The count `key` holds (0 when it is missing), asked again until a read
/// is answered: a fault may still be in effect.
pub async fn read_count_retrying(c: &mut Client, key: &str) -> u64 {
    loop {
        match c.get(key, false).await {
            Ok(v) => return v.map_or(0, |(v, _)| count_of(&v)),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs the scenario.
pub fn run(cfg: &RunConfig) -> Report {
    let rec = Recorder::shared(cfg.keep_trace);
    let mut sim = sim(cfg.seed, Duration::from_secs(120));
    let plant = cfg.plant;
    let r = rec.clone();
    sim.host("server", move || host::serve("server", r.clone(), plant));
    let finished = Rc::new(RefCell::new(0u64));
    let finals = Rc::new(RefCell::new(None::<(u64, u64, u64)>));
    for i in 0..CLIENTS {
        let (rec, finished, seed) = (rec.clone(), finished.clone(), cfg.seed);
        sim.client(format!("client-{i}"), async move {
            let mut c = Client::new(
                format!("client-{i}"),
                "server",
                Rng::new(seed, i + 1),
                rec,
                Duration::from_secs(5),
            );
            let mut left = [VISITS; 3];
            while left.iter().any(|&n| n > 0) {
                let pick = c.rng().below(3) as usize;
                if left[pick] == 0 {
                    continue;
                }
                let done = match pick {
                    0 => visit_cas(&mut c, CAS_KEY).await.map(|_| ()),
                    1 => visit_naive(&mut c, NAIVE_KEY).await,
                    _ => visit_incr(&mut c, INCR_KEY).await,
                };
                if done.is_ok() {
                    left[pick] -= 1;
                }
                let pause = c.rng().below(5);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            *finished.borrow_mut() += 1;
            Ok(())
        });
    }
    let (r, f, fin) = (rec.clone(), finished.clone(), finals.clone());
    let seed = cfg.seed;
    sim.client("reader", async move {
        while *f.borrow() < CLIENTS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut c = reader("server", seed, r);
        let num = |v: Option<(Vec<u8>, Option<u64>)>| v.map_or(0, |(v, _)| count_of(&v));
        let cas = num(c.get(CAS_KEY, false).await.map_err(|_| "read")?);
        let naive = num(c.get(NAIVE_KEY, false).await.map_err(|_| "read")?);
        let incr = num(c.get(INCR_KEY, false).await.map_err(|_| "read")?);
        *fin.borrow_mut() = Some((cas, naive, incr));
        Ok(())
    });
    let sim_result = sim.run();

    let rec = rec.borrow();
    let expected = CLIENTS * VISITS;
    let mut violations = Vec::new();
    if let Err(e) = sim_result {
        violations.push(format!("simulation failed: {e}"));
    }
    let (final_cas, final_naive, final_incr) = finals.borrow().unwrap_or((0, 0, 0));
    if final_cas != expected {
        violations.push(format!(
            "cas counter ended at {final_cas}, expected {expected}"
        ));
    }
    if final_incr != expected {
        violations.push(format!(
            "incr counter ended at {final_incr}, expected {expected}"
        ));
    }
    let policy = Policy {
        no_stale_reads: true,
        no_silent_misses: true,
    };
    report(
        "cas-counter",
        cfg,
        &rec,
        policy,
        violations,
        vec![
            ("expected".into(), Json::Int(expected)),
            ("final".into(), Json::Int(final_cas)),
            ("final_incr".into(), Json::Int(final_incr)),
            ("final_naive".into(), Json::Int(final_naive)),
            (
                "lost_updates_naive".into(),
                Json::Int(expected.saturating_sub(final_naive)),
            ),
        ],
    )
}
