//! The shared conformance transcripts (captured from memcached 1.6.18)
//! replayed over real TCP against the wasm server under the runner and the
//! native server. Each case gets a fresh server.

use std::time::Duration;

use wasmcached_core::transcript::{self, Case, Step};
use wasmcached_tests::{start, Client, Kind};

/// The case's options, with `-Y`'s file resolved from the repository's
/// root (as scripts/capture_transcripts.py resolves it for memcached).
fn server_opts(opts: &[String]) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut out = opts.to_vec();
    for i in 1..out.len() {
        if out[i - 1] == "-Y" {
            out[i] = format!("{root}/{}", out[i]);
        }
    }
    out
}

fn run_case(kind: Kind, case: &Case) -> Result<(), String> {
    let opts = server_opts(&case.opts);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let server = start(kind, &opts);
    let mut clients: Vec<Option<Client>> = (0..=case.connections()).map(|_| None).collect();
    for (i, step) in case.steps.iter().enumerate() {
        match step {
            Step::Sleep { secs } => std::thread::sleep(Duration::from_secs(*secs)),
            Step::Send {
                conn,
                request,
                reply,
                closed,
            } => {
                let c = clients[*conn].get_or_insert_with(|| server.connect());
                c.send(request);
                // Stats values differ in length (pids, timings), so a reply
                // with stats is read up to its terminating END instead.
                let has_stats = reply.windows(5).any(|w| w == b"STAT ");
                let got = if has_stats {
                    c.read_until(b"END\r\n", Duration::from_secs(10))
                } else {
                    c.read_n(reply.len(), Duration::from_secs(10))
                };
                let want = transcript::normalize_for_host(case, reply);
                let got_n = transcript::normalize_for_host(case, &got);
                if want != got_n {
                    return Err(format!(
                        "{}: step {i}: {}",
                        case.name,
                        transcript::describe_difference(&want, &got_n)
                    ));
                }
                if *closed {
                    if !c.closed_within(Duration::from_secs(5)) {
                        return Err(format!(
                            "{}: step {i}: expected the server to close",
                            case.name
                        ));
                    }
                    clients[*conn] = None;
                } else {
                    // Nothing beyond the expected reply may arrive.
                    let extra = c.read_n(1, Duration::from_millis(30));
                    if !extra.is_empty() {
                        return Err(format!("{}: step {i}: unexpected extra bytes", case.name));
                    }
                }
            }
        }
    }
    Ok(())
}

fn run_all(kind: Kind) {
    let mut failures = Vec::new();
    let mut n = 0;
    for file in [
        "text.transcript",
        "meta.transcript",
        "operator.transcript",
        "dumps.transcript",
        "observability.transcript",
        "ascii_auth.transcript",
    ] {
        let path = format!("{}/../conformance/{file}", env!("CARGO_MANIFEST_DIR"));
        let cases =
            transcript::parse(&std::fs::read_to_string(&path).expect("transcript")).expect("parse");
        for case in &cases {
            n += 1;
            let t0 = std::time::Instant::now();
            let r = run_case(kind, case);
            if t0.elapsed() > Duration::from_millis(500) {
                eprintln!("slow case {}: {:?}", case.name, t0.elapsed());
            }
            if let Err(e) = r {
                failures.push(e);
            }
        }
    }
    eprintln!("{}: {n} transcript cases over TCP", kind.name());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn transcripts_native_server() {
    run_all(Kind::Native);
}

#[test]
fn transcripts_wasm_server() {
    run_all(Kind::Wasm);
}
