//! The shared conformance transcripts (captured from memcached 1.6.18)
//! replayed over real TCP against the wasm server under the runner and the
//! native server. Each case gets a fresh server.

use std::time::Duration;

use wasmcached_core::transcript::{self, Case};
use wasmcached_tests::{replay, start, Client, Kind};

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

/// Reads a text reply: one with stats up to its terminating END (stats
/// values differ in length: pids, timings), any other by its length.
fn read_reply(c: &mut Client, want: &[u8]) -> Vec<u8> {
    if want.windows(5).any(|w| w == b"STAT ") {
        c.read_until(b"END\r\n", Duration::from_secs(10))
    } else {
        c.read_n(want.len(), Duration::from_secs(10))
    }
}

fn run_case(kind: Kind, case: &Case) -> Result<(), String> {
    let opts = server_opts(&case.opts);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let server = start(kind, &opts);
    replay::replay(&server, case, read_reply)
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
        for case in &replay::load(file) {
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
    transcript::assert_no_failures(&failures);
}

#[test]
fn transcripts_native_server() {
    run_all(Kind::Native);
}

#[test]
fn transcripts_wasm_server() {
    run_all(Kind::Wasm);
}
