//! Replaying the conformance transcripts (captured from memcached 1.6.18)
//! over real TCP. The text and the binary suites step through a case and
//! check each reply alike; they differ only in how a reply is read to its
//! end, which the caller passes in.

use std::time::Duration;

use wasmcached_core::transcript::{self, Case, Step};

use crate::{repo_root, Client, Server};

/// The cases of `conformance/<file>`.
pub fn load(file: &str) -> Vec<Case> {
    let path = repo_root().join("conformance").join(file);
    transcript::parse(&std::fs::read_to_string(path).expect("transcript")).expect("parse")
}

/// Replays `case` against `server`, each connection opened at its first
/// step. `read_reply(client, want)` reads the reply to a request whose
/// recorded reply was `want`: stats vary in length, so a byte count alone
/// will not do for every reply. The error names the case and the first
/// step that differs.
pub fn replay(
    server: &Server,
    case: &Case,
    read_reply: impl Fn(&mut Client, &[u8]) -> Vec<u8>,
) -> Result<(), String> {
    let mut clients: Vec<Option<Client>> = (0..=case.connections()).map(|_| None).collect();
    for (i, step) in case.steps.iter().enumerate() {
        let (conn, request, reply, closed) = match step {
            Step::Sleep { secs } => {
                std::thread::sleep(Duration::from_secs(*secs));
                continue;
            }
            Step::Send {
                conn,
                request,
                reply,
                closed,
            } => (*conn, request, reply, *closed),
        };
        let c = clients[conn].get_or_insert_with(|| server.connect());
        c.send(request);
        let got = read_reply(c, reply);
        let want = transcript::normalize_for_host(case, reply);
        let got = transcript::normalize_for_host(case, &got);
        if want != got {
            return Err(format!(
                "{}: step {i}: {}",
                case.name,
                transcript::describe_difference(&want, &got)
            ));
        }
        if closed {
            if !c.closed_within(Duration::from_secs(5)) {
                return Err(format!(
                    "{}: step {i}: expected the server to close",
                    case.name
                ));
            }
            clients[conn] = None;
        } else if !c.read_n(1, Duration::from_millis(30)).is_empty() {
            // Nothing beyond the expected reply may arrive.
            return Err(format!("{}: step {i}: unexpected extra bytes", case.name));
        }
    }
    Ok(())
}
