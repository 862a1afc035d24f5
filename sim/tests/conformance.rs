//! The shared conformance transcripts (captured from memcached 1.6.18)
//! replayed through the simulation's server host over turmoil TCP: the same
//! table the core and the real servers pass. Sleeps take simulated time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;
use wasmcached_core::transcript::{self, Case, Step};
use wasmcached_sim::host::{self, PORT};
use wasmcached_sim::trace::Recorder;

async fn read_reply(s: &mut TcpStream, want: &[u8]) -> (Vec<u8>, bool) {
    let stats = want.windows(5).any(|w| w == b"STAT ");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let done = if stats {
            got.ends_with(b"END\r\n")
        } else {
            got.len() >= want.len()
        };
        if done {
            return (got, false);
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    if !case.opts.is_empty() {
        // The simulation host runs with default settings only.
        return Ok(());
    }
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .rng_seed(1)
        .build();
    let rec = Recorder::shared(false);
    sim.host("server", move || host::serve("server", rec.clone(), None));
    let case2 = case.clone();
    sim.client("client", async move {
        let mut socks: Vec<Option<TcpStream>> = (0..=case2.connections()).map(|_| None).collect();
        for (i, step) in case2.steps.iter().enumerate() {
            match step {
                Step::Sleep { secs } => tokio::time::sleep(Duration::from_secs(*secs)).await,
                Step::Send {
                    conn,
                    request,
                    reply,
                    closed,
                } => {
                    if socks[*conn].is_none() {
                        socks[*conn] = Some(TcpStream::connect(("server", PORT)).await?);
                    }
                    let Some(s) = socks[*conn].as_mut() else {
                        unreachable!()
                    };
                    s.write_all(request).await?;
                    let (got, eof) = read_reply(s, reply).await;
                    let (w, g) = (
                        transcript::normalize_for_host(&case2, reply),
                        transcript::normalize_for_host(&case2, &got),
                    );
                    if w != g {
                        return Err(format!(
                            "step {i}: {}",
                            transcript::describe_difference(&w, &g)
                        )
                        .into());
                    }
                    if *closed {
                        let (_, eof2) = if eof {
                            (Vec::new(), true)
                        } else {
                            read_reply(s, b"x").await
                        };
                        if !eof2 {
                            return Err(format!("step {i}: expected the server to close").into());
                        }
                        socks[*conn] = None;
                    }
                }
            }
        }
        Ok(())
    });
    sim.run().map_err(|e| format!("{}: {e}", case.name))
}

#[test]
fn transcripts_through_the_simulated_server() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in ["text.transcript", "meta.transcript"] {
        let path = format!("{}/../conformance/{file}", env!("CARGO_MANIFEST_DIR"));
        let cases =
            transcript::parse(&std::fs::read_to_string(path).expect("read")).expect("parse");
        for case in &cases {
            if case.opts.is_empty() {
                ran += 1;
            }
            if let Err(e) = run_case(case) {
                failures.push(format!("{}: {e}", case.name));
            }
        }
    }
    eprintln!("{ran} transcript cases through the simulation");
    assert!(ran > 80);
    transcript::assert_no_failures(&failures);
}
