//! Runs the conformance transcripts (captured from memcached 1.6.18)
//! against the core directly: each request fed whole, split at every byte
//! offset, one byte at a time and in seeded random chunkings; and each
//! single-connection case also as one pipelined stream.

mod common;

use common::{feed, Rng};
use wasmcached_core::transcript::{self, Case, Step};
use wasmcached_core::{AuthFile, Clock, Config, Connection, Protocol, SaslDb, Store};

const START: Clock = Clock::new(1_000_000, 1_700_000_000);

/// The users `-S` cases authenticate as (scripts/capture_binary_transcripts.py
/// creates the same ones for memcached).
pub const SASL_USERS: &[u8] = b"testuser:testpass\nother:secret\n";

/// Builds the store configuration a case's memcached options describe.
fn config_for(case: &Case) -> Config {
    let mut cfg = Config::default();
    let mut it = case.opts.iter();
    while let Some(o) = it.next() {
        let v = it.clone().next().cloned().unwrap_or_default();
        match o.as_str() {
            "-m" => cfg.memory_limit = v.parse::<u64>().unwrap() * 1024 * 1024,
            "-I" => {
                let (n, mult) = match v.strip_suffix('m') {
                    Some(n) => (n, 1024 * 1024),
                    None => (v.strip_suffix('k').unwrap_or(&v), 1024),
                };
                cfg.item_size_max = n.parse::<u32>().unwrap() * mult;
            }
            "-c" => cfg.host.max_connections = v.parse().unwrap(),
            "-M" => {
                cfg.evictions = false;
                continue;
            }
            "-F" => {
                cfg.flush_enabled = false;
                continue;
            }
            "-C" => {
                cfg.cas_enabled = false;
                continue;
            }
            "-A" => {
                cfg.shutdown_enabled = true;
                continue;
            }
            "-X" => {
                cfg.dump_enabled = false;
                continue;
            }
            "-S" => {
                cfg.sasl = Some(SaslDb::parse(SASL_USERS));
                continue;
            }
            "-D" => {
                // memcached takes the delimiter's first byte and turns the
                // per-prefix counters on with it.
                cfg.prefix_delimiter = v.bytes().next().unwrap_or(b':');
                cfg.detail_enabled = true;
            }
            "-Y" => {
                // The file's path is relative to the repository's root, as
                // scripts/capture_transcripts.py resolves it for memcached.
                let path = format!("{}/../{v}", env!("CARGO_MANIFEST_DIR"));
                let content = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                cfg.ascii_auth = Some(AuthFile::parse(&v, &content).unwrap());
            }
            "-B" => {
                cfg.protocol = match v.as_str() {
                    "ascii" => Protocol::Ascii,
                    "binary" => Protocol::Binary,
                    _ => Protocol::Auto,
                }
            }
            _ => panic!("option {o} not understood by the core harness"),
        }
        it.next();
    }
    cfg
}

/// Splits `bytes` according to a list of cut points.
fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut v = Vec::new();
    let mut last = 0;
    for &c in cuts {
        if c > last && c < bytes.len() {
            v.push(&bytes[last..c]);
            last = c;
        }
    }
    v.push(&bytes[last..]);
    v
}

/// Ways of chunking one request.
fn chunkings(req: &[u8], seed: u64) -> Vec<Vec<usize>> {
    let mut ways = vec![vec![]];
    if req.len() <= 4096 {
        ways.extend((1..req.len()).map(|k| vec![k]));
    } else {
        ways.extend([1, req.len() / 2, req.len() - 1].map(|k| vec![k]));
    }
    if req.len() <= 65_536 {
        ways.push((1..req.len()).collect());
    }
    let mut rng = Rng(seed);
    for _ in 0..4 {
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < req.len() {
            at += 1 + (rng.next() % 64) as usize;
            cuts.push(at);
        }
        ways.push(cuts);
    }
    ways
}

/// Runs a case once, with every request of step `i` cut by `cut_for(i)`.
fn run_case(case: &Case, cut_for: &dyn Fn(usize, &[u8]) -> Vec<usize>) -> Result<(), String> {
    let mut clock = START;
    let mut store = Store::new(config_for(case), clock);
    let mut conns: Vec<Connection> = (0..=case.connections())
        .map(|_| Connection::new())
        .collect();
    for (i, step) in case.steps.iter().enumerate() {
        match step {
            Step::Sleep { secs } => clock = clock.advanced_ms(secs * 1000),
            Step::Send {
                conn,
                request,
                reply,
                closed,
            } => {
                let cuts = cut_for(i, request);
                let chunks = split_at(request, &cuts);
                let (out, is_closed) = feed(&mut conns[*conn], &mut store, clock, &chunks);
                let (want, got) = (transcript::normalize(reply), transcript::normalize(&out));
                if want != got {
                    return Err(format!(
                        "step {i} ({}): {}",
                        transcript::escape(&request[..request.len().min(120)]),
                        transcript::describe_difference(&want, &got)
                    ));
                }
                if *closed != is_closed {
                    return Err(format!("step {i}: closed want {closed} got {is_closed}"));
                }
                if is_closed {
                    conns[*conn] = Connection::new();
                }
                store
                    .check_invariants()
                    .map_err(|e| format!("step {i}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Runs a single-connection case as one pipelined stream.
fn run_pipelined(case: &Case, cuts: &dyn Fn(&[u8]) -> Vec<usize>) -> Result<(), String> {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut want_closed = false;
    for step in &case.steps {
        if let Step::Send {
            request,
            reply,
            closed,
            ..
        } = step
        {
            stream.extend_from_slice(request);
            want.extend_from_slice(reply);
            if *closed {
                want_closed = true;
                break;
            }
        }
    }
    let mut store = Store::new(config_for(case), START);
    let mut conn = Connection::new();
    let chunks = split_at(&stream, &cuts(&stream));
    let (out, closed) = feed(&mut conn, &mut store, START, &chunks);
    if transcript::normalize(&out) != transcript::normalize(&want) {
        return Err(format!(
            "pipelined: {}",
            transcript::describe_difference(
                &transcript::normalize(&want),
                &transcript::normalize(&out)
            )
        ));
    }
    if closed != want_closed {
        return Err(format!("pipelined: closed want {want_closed} got {closed}"));
    }
    Ok(())
}

fn run_suite(file: &str) {
    let path = format!("{}/../conformance/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases = transcript::parse(&text).unwrap();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    let mut runs = 0usize;
    for (ci, case) in cases.iter().enumerate() {
        // Whole requests first: the most readable failure.
        if let Err(e) = run_case(case, &|_, _| vec![]) {
            failures.push(format!("{}: whole: {e}", case.name));
            continue;
        }
        runs += 1;
        // Every chunking of each step in turn, other steps whole.
        'steps: for (si, step) in case.steps.iter().enumerate() {
            let Step::Send { request, .. } = step else {
                continue;
            };
            for way in chunkings(request, (ci * 1000 + si) as u64) {
                runs += 1;
                let r = run_case(case, &|i, _| if i == si { way.clone() } else { vec![] });
                if let Err(e) = r {
                    failures.push(format!(
                        "{}: cuts {:?}: {e}",
                        case.name,
                        &way[..way.len().min(8)]
                    ));
                    break 'steps;
                }
            }
        }
        if case.is_pipelinable() {
            for way in [0u64, 1, 2, 3] {
                runs += 1;
                let r = run_pipelined(case, &|s| {
                    if way == 0 {
                        vec![]
                    } else if way == 1 && s.len() <= 65_536 {
                        (1..s.len()).collect()
                    } else {
                        chunkings(s, way * 7919 + ci as u64)
                            .pop()
                            .unwrap_or_default()
                    }
                });
                if let Err(e) = r {
                    failures.push(format!("{}: {e}", case.name));
                    break;
                }
            }
        }
    }
    eprintln!("{file}: {} cases, {runs} runs", cases.len());
    transcript::assert_no_failures(&failures);
}

#[test]
fn text_protocol_transcript() {
    run_suite("text.transcript");
}

#[test]
fn meta_protocol_transcript() {
    run_suite("meta.transcript");
}

#[test]
fn operator_flags_transcript() {
    run_suite("operator.transcript");
}

#[test]
fn dumps_and_crawler_transcript() {
    run_suite("dumps.transcript");
}

#[test]
fn observability_transcript() {
    run_suite("observability.transcript");
}

#[test]
fn ascii_auth_transcript() {
    run_suite("ascii_auth.transcript");
}

#[test]
fn binary_protocol_transcript() {
    run_suite("binary.transcript");
}
