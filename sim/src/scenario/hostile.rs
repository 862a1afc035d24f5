//! `hostile-clients`: well-behaved clients share a server with clients
//! that misbehave in every way a socket allows, all through the production
//! host policy (the core's `Driver` and `Gate`), with a small connection
//! limit and a small connection-memory limit.
//!
//! At once:
//! * good clients run set/get/gets/cas on a few shared keys, checked by
//!   the history checker, each request bounded in latency;
//! * idle clients connect and never send;
//! * slow readers pipeline many `get`s of a 200 KB value (sent from the
//!   item's shared buffer) and of a 12 KB value (copied into the
//!   connection's output), then read slowly or never;
//! * slowloris clients trickle a `set` one byte at a time;
//! * clients disconnect mid-value (half a `set` data block, small or
//!   large, on the good clients' keys and on fresh keys) and mid-reply
//!   (part of a 200 KB value read);
//! * a connection flood beyond `-c`.
//!
//! Checked: the history (every acknowledged write readable, no stale read,
//! no value nobody wrote — a torn `set` that got stored would be one); a
//! final read of every key (a fresh key written only by torn `set`s must
//! miss, the large value must be intact); every good request answered
//! within [`LATENCY_BOUND`]; every byte a slow or disconnecting reader got
//! is a prefix of the replies it asked for (ending, at a reply boundary, in
//! `SERVER_ERROR out of memory` when the driver shed it); the driver's
//! connection memory never above its limit, sampled every pass; every
//! flood connection was either served or refused with memcached's message
//! and closed, and at least the excess over `-c` was refused.
//!
//! Once every client has hung up the server holds no connection
//! (`stuck_connections`): torn uploads that together hold over three
//! quarters of the memory limit must still be read to their hang-up or
//! shed.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use turmoil::net::TcpStream;
use wasmcached_core::driver::TOO_MANY_CONNECTIONS;
use wasmcached_core::DriverConfig;

use crate::check::Policy;
use crate::client::Client;
use crate::host::{self, HostConfig, HostProbe, PORT};
use crate::report::{Json, Report};
use crate::rng::Rng;
use crate::scenario::{builder, percentile, report, RunConfig};
use crate::trace::{now, Cmd, Mode, Op, Outcome, Recorder, Shared};

/// Connection limit (`-c`).
pub const MAX_CONNECTIONS: usize = 16;
/// Bytes all connections may hold together (the driver's memory limit).
pub const CONN_MEMORY: usize = 1 << 20;
/// Well-behaved clients.
pub const GOOD_CLIENTS: u64 = 4;
/// Requests per good client (a cas counts with its gets).
pub const GOOD_OPS: u64 = 40;
/// Keys the good clients share.
pub const GOOD_KEYS: u64 = 4;
/// Longest a good client's request may take (simulated time).
pub const LATENCY_BOUND: Duration = Duration::from_secs(1);
/// Clients that connect and never send.
pub const IDLE_CLIENTS: u64 = 2;
/// Clients that pipeline large reads and read slowly or never.
pub const SLOW_READERS: u64 = 3;
/// Clients that send a request a byte at a time.
pub const SLOWLORIS: u64 = 2;
/// Clients that send half a value and hang up, and how often each does.
pub const TORN_WRITERS: u64 = 2;
/// Times each torn writer (and the mid-reply client) hangs up.
pub const TORN_ROUNDS: u64 = 3;
/// Connections the flood opens at once: more than the limit.
pub const FLOOD: u64 = MAX_CONNECTIONS as u64 + 4;
/// When the flood starts.
pub const FLOOD_AT: Duration = Duration::from_millis(80);
/// Length of the large value.
pub const BIG_LEN: usize = 200_000;
/// Length of the medium value (below the core's sharing threshold, so
/// every reply copies it).
pub const MID_LEN: usize = 12_000;
/// Simulated network segments in flight per direction of a connection
/// (turmoil also uses it as the listen backlog, which the flood must fit).
pub const TCP_SEGMENTS: usize = 32;
/// The server's largest write: with [`TCP_SEGMENTS`], a client that does
/// not read stalls the server's writes after 256 KiB, a kernel socket
/// buffer's worth.
pub const WRITE_MAX: usize = 8 * 1024;

const BIG_GETS: usize = 4;
const MID_GETS: usize = 30;
const OOM_LINE: &[u8] = b"SERVER_ERROR out of memory\r\n";

/// Who takes part: how many clients of each kind (the constants above
/// by default; a scenario file may change them).
#[derive(Clone, Copy, Debug)]
pub struct Population {
    /// Well-behaved clients.
    pub good_clients: u64,
    /// Requests per good client.
    pub good_ops: u64,
    /// Clients that connect and never send.
    pub idle: u64,
    /// Clients that pipeline large reads and read slowly or never.
    pub slow_readers: u64,
    /// Clients that send a `set` a byte at a time.
    pub slowloris: u64,
    /// Clients that send half a value and hang up.
    pub torn_writers: u64,
    /// Times each torn writer (and the mid-reply client) hangs up.
    pub torn_rounds: u64,
    /// Connections the flood opens at once.
    pub flood: u64,
    /// When the flood starts.
    pub flood_at: Duration,
    /// The server's connection limit (`-c`), which the flood's refusals
    /// are judged against.
    pub max_connections: usize,
}

impl Default for Population {
    fn default() -> Population {
        Population {
            good_clients: GOOD_CLIENTS,
            good_ops: GOOD_OPS,
            idle: IDLE_CLIENTS,
            slow_readers: SLOW_READERS,
            slowloris: SLOWLORIS,
            torn_writers: TORN_WRITERS,
            torn_rounds: TORN_ROUNDS,
            flood: FLOOD,
            flood_at: FLOOD_AT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What the clients saw, beyond the history.
#[derive(Default)]
pub(crate) struct Tally {
    violations: Vec<String>,
    good_left: u64,
    flood_left: u64,
    /// 1 until every hostile task has finished (the final reads wait).
    hostile_left: u64,
    flood_refused: u64,
    flood_served: u64,
    torn_values: u64,
    torn_replies: u64,
    /// Hostile connections refused outside the flood (the flood had the
    /// slots); they retry.
    other_refused: u64,
    slow_bytes: u64,
    slowloris_stored: u64,
}

pub(crate) type Tallied = Rc<RefCell<Tally>>;

impl Tally {
    /// The good clients and the flood are finished: holders may let go.
    fn done(&self) -> bool {
        self.good_left == 0 && self.flood_left == 0
    }
}

fn fail(t: &Tallied, msg: String) {
    t.borrow_mut().violations.push(msg);
}

async fn wait_done(t: &Tallied) {
    while !t.borrow().done() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pattern(seed: u64, salt: u64, len: usize) -> Rc<Vec<u8>> {
    Rc::new(
        (0..len as u64)
            .map(|i| b'a' + ((i.wrapping_mul(31) + seed + salt) % 26) as u8)
            .collect(),
    )
}

/// The replies a reader asked for, compared byte by byte as they arrive
/// without building them. After a whole reply the server may instead send
/// `SERVER_ERROR out of memory` (it shed the connection) and close.
struct Expect {
    /// Each reply: header, value, trailer.
    replies: Vec<(Vec<u8>, Rc<Vec<u8>>)>,
    reply: usize,
    part: usize,
    off: usize,
    /// Matching the out-of-memory line instead (bytes of it matched).
    oom: Option<usize>,
    got: u64,
}

impl Expect {
    fn new(gets: &[(&str, Rc<Vec<u8>>)]) -> Expect {
        Expect {
            replies: gets
                .iter()
                .map(|(k, v)| {
                    (
                        format!("VALUE {k} 0 {}\r\n", v.len()).into_bytes(),
                        v.clone(),
                    )
                })
                .collect(),
            reply: 0,
            part: 0,
            off: 0,
            oom: None,
            got: 0,
        }
    }

    fn part(&self) -> &[u8] {
        let (h, v) = &self.replies[self.reply];
        match self.part {
            0 => h,
            1 => v,
            _ => b"\r\nEND\r\n",
        }
    }

    /// Checks the next bytes; an error describes the first wrong one.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if let Some(n) = self.oom {
                let want = &OOM_LINE[n..];
                let k = want.len().min(bytes.len());
                if want[..k] != bytes[..k] || k == 0 {
                    return Err(format!(
                        "bytes after the out-of-memory line at {}",
                        self.got
                    ));
                }
                self.oom = Some(n + k);
                self.got += k as u64;
                bytes = &bytes[k..];
                continue;
            }
            if self.reply == self.replies.len() {
                return Err(format!("{} bytes more than asked for", bytes.len()));
            }
            let want = &self.part()[self.off..];
            let k = want.len().min(bytes.len());
            if want[..k] != bytes[..k] {
                if self.part == 0 && self.off == 0 && bytes[0] == OOM_LINE[0] {
                    self.oom = Some(0);
                    continue;
                }
                let at = want[..k].iter().zip(bytes).position(|(a, b)| a != b);
                return Err(format!(
                    "reply {} differs at byte {} of part {} (stream byte {})",
                    self.reply,
                    self.off + at.unwrap_or(0),
                    self.part,
                    self.got + at.unwrap_or(0) as u64
                ));
            }
            self.off += k;
            self.got += k as u64;
            bytes = &bytes[k..];
            if self.off == self.part().len() {
                self.off = 0;
                self.part += 1;
                if self.part == 3 {
                    self.part = 0;
                    self.reply += 1;
                }
            }
        }
        Ok(())
    }
}

/// Connects to the server. A connection refused at the limit is still
/// accepted first: the refusal is the first thing it reads.
async fn connect() -> std::io::Result<TcpStream> {
    TcpStream::connect(("server", PORT)).await
}

/// Whether `got` (what a fresh connection received first) is the
/// refusal, or as much of it as arrived.
fn is_refusal(got: &[u8]) -> bool {
    !got.is_empty()
        && TOO_MANY_CONNECTIONS.starts_with(&got[..got.len().min(TOO_MANY_CONNECTIONS.len())])
}

/// Reads what arrives within `wait` (at most `buf.len()` bytes); `None` at
/// end of stream or reset.
async fn read_for(s: &mut TcpStream, buf: &mut [u8], wait: Duration) -> Option<usize> {
    match tokio::time::timeout(wait, s.read(buf)).await {
        Ok(Ok(0) | Err(_)) => None,
        Ok(Ok(n)) => Some(n),
        Err(_) => Some(0),
    }
}

/// A good client: random set/get/gets/cas/delete on the shared keys
/// (values unique per write; some with a TTL the run never reaches).
async fn good(i: u64, seed: u64, rec: Shared, t: Tallied, ops: u64) {
    let name = format!("good-{i}");
    let mut c = Client::new(
        name.clone(),
        "server",
        Rng::new(seed, 100 + i),
        rec,
        LATENCY_BOUND,
    );
    for n in 0..ops {
        let key = format!("g{}", c.rng().below(GOOD_KEYS));
        let value = format!("{name}-{n}").into_bytes();
        let ttl = [0, 3600][c.rng().below(2) as usize];
        let flags = c.rng().below(4) as u32;
        let r = match c.rng().below(9) {
            0 | 1 => c
                .write(Mode::Set, &key, &value, flags, ttl, None)
                .await
                .map(|_| ()),
            2 | 3 => c.get(&key, false).await.map(|_| ()),
            4 | 5 => c.get(&key, true).await.map(|_| ()),
            6 => c.delete(&key).await.map(|_| ()),
            _ => match c.get(&key, true).await {
                Ok(Some((_, Some(token)))) => c
                    .write(Mode::Cas, &key, &value, flags, ttl, Some(token))
                    .await
                    .map(|_| ()),
                Ok(_) => c
                    .write(Mode::Add, &key, &value, flags, ttl, None)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            },
        };
        if r.is_err() {
            fail(
                &t,
                format!("{name}: request {n} on {key} failed or took over {LATENCY_BOUND:?}"),
            );
        }
        let pause = c.rng().below(5);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    t.borrow_mut().good_left -= 1;
}

/// A plain `set` (flags and TTL 0) that a client writes on its own socket,
/// outside [`Client`], and records in the history all the same.
struct RawSet {
    key: String,
    value: Vec<u8>,
    invoke: Duration,
    first: u64,
}

impl RawSet {
    /// Issues one now: its place in the run's execution order is taken here.
    fn start(rec: &Shared, key: String, value: Vec<u8>) -> RawSet {
        RawSet {
            key,
            value,
            invoke: now(),
            first: rec.borrow_mut().seq(),
        }
    }

    /// The request's bytes: the command line and the data block.
    fn request(&self) -> Vec<u8> {
        let mut req = format!("set {} 0 0 {}\r\n", self.key, self.value.len()).into_bytes();
        req.extend_from_slice(&self.value);
        req.extend_from_slice(b"\r\n");
        req
    }

    /// Records it in the history as `client`'s on the connection from
    /// `conn`, completed now with `outcome`.
    fn record(self, rec: &Shared, client: Rc<str>, conn: Option<SocketAddr>, outcome: Outcome) {
        rec.borrow_mut().op(Op {
            client,
            server: "server",
            key: self.key,
            cmd: Cmd::Store {
                mode: Mode::Set,
                value: self.value,
                flags: 0,
                ttl: 0,
                cas: None,
            },
            invoke: self.invoke,
            complete: now(),
            first: self.first,
            last: 0,
            conn,
            outcome,
        });
    }
}

/// Stores the large and medium values with one write each, recording the
/// writes in the history.
async fn seed_values(rec: &Shared, values: &[(&str, Rc<Vec<u8>>)]) -> Result<(), String> {
    let mut s = connect().await.map_err(|e| format!("seeder: {e}"))?;
    for (key, v) in values {
        let set = RawSet::start(rec, (*key).into(), v.to_vec());
        s.write_all(&set.request())
            .await
            .map_err(|e| format!("seeder: {e}"))?;
        let mut got = [0u8; 8];
        s.read_exact(&mut got)
            .await
            .map_err(|e| format!("seeder: {e}"))?;
        if &got != b"STORED\r\n" {
            return Err(format!(
                "seeder: {key}: {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        set.record(rec, "seeder".into(), s.local_addr().ok(), Outcome::Stored);
    }
    Ok(())
}

/// Connects and never sends; hangs up when the run is done.
async fn idle(t: Tallied) {
    if let Ok(s) = connect().await {
        wait_done(&t).await;
        drop(s);
    }
}

/// Pipelines `get`s of the large and medium values, then reads a little
/// every 10 ms (or never), checking every byte it gets.
async fn slow_reader(i: u64, seed: u64, big: Rc<Vec<u8>>, mid: Rc<Vec<u8>>, t: Tallied) {
    let mut rng = Rng::new(seed, 300 + i);
    let never = rng.below(3) == 0;
    let mut gets = Vec::new();
    for k in 0..BIG_GETS + MID_GETS {
        // Spread the large gets among the medium ones.
        if k % ((BIG_GETS + MID_GETS) / BIG_GETS) == 0 {
            gets.push(("big", big.clone()));
        } else {
            gets.push(("mid", mid.clone()));
        }
    }
    let mut req = Vec::new();
    for (k, _) in &gets {
        req.extend_from_slice(format!("get {k}\r\n").as_bytes());
    }
    let mut expect = Expect::new(&gets);
    let Ok(mut s) = connect().await else { return };
    if s.write_all(&req).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    while !t.borrow().done() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if never {
            continue;
        }
        match read_for(&mut s, &mut buf, Duration::from_millis(1)).await {
            None => break,
            Some(n) => {
                if let Err(e) = expect.feed(&buf[..n]) {
                    fail(&t, format!("slow-reader-{i}: {e}"));
                    break;
                }
            }
        }
    }
    t.borrow_mut().slow_bytes += expect.got;
}

/// Sends `set sl:<i>` one byte every 5–15 ms and expects `STORED`,
/// recording the write in the history.
async fn slowloris(i: u64, seed: u64, rec: Shared, t: Tallied) {
    let mut rng = Rng::new(seed, 400 + i);
    let Ok(mut s) = connect().await else { return };
    let set = RawSet::start(
        &rec,
        format!("sl:{i}"),
        format!("trickled-{i}").into_bytes(),
    );
    for b in &set.request() {
        if s.write_all(std::slice::from_ref(b)).await.is_err() {
            fail(&t, format!("slowloris-{i}: connection lost"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(11))).await;
    }
    let mut got = [0u8; 8];
    let outcome = match tokio::time::timeout(LATENCY_BOUND, s.read_exact(&mut got)).await {
        Ok(Ok(_)) if &got == b"STORED\r\n" => Outcome::Stored,
        _ => {
            fail(
                &t,
                format!(
                    "slowloris-{i}: no STORED: {:?}",
                    String::from_utf8_lossy(&got)
                ),
            );
            Outcome::Indeterminate
        }
    };
    if outcome == Outcome::Stored {
        t.borrow_mut().slowloris_stored += 1;
    }
    set.record(
        &rec,
        format!("slowloris-{i}").into(),
        s.local_addr().ok(),
        outcome,
    );
}

/// Sends a `set` header and half its data block, then hangs up. Small
/// values go to the good clients' keys, large ones (held as partial input
/// meanwhile) to a good key or a fresh `torn:` key.
async fn torn_writer(i: u64, seed: u64, t: Tallied, rounds: u64) {
    let mut rng = Rng::new(seed, 500 + i);
    let mut round = 0;
    while round < rounds {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(60))).await;
        let (key, len) = match rng.below(3) {
            0 => (
                format!("g{}", rng.below(GOOD_KEYS)),
                20 + rng.below(40) as usize,
            ),
            1 => (
                format!("g{}", rng.below(GOOD_KEYS)),
                100_000 + rng.below(60_000) as usize,
            ),
            _ => (format!("torn:{i}"), 100_000 + rng.below(60_000) as usize),
        };
        let Ok(mut s) = connect().await else { continue };
        let mut req = format!("set {key} 0 0 {len}\r\n").into_bytes();
        let sent = len / 2 + rng.below(len as u64 / 2) as usize;
        req.extend((0..sent).map(|k| b'A' + (k % 26) as u8));
        if s.write_all(&req).await.is_err() {
            continue;
        }
        // Give the server time to take it in (or refuse the connection).
        let mut buf = [0u8; 64];
        let got = read_for(&mut s, &mut buf, Duration::from_millis(5 + rng.below(20))).await;
        if let Some(n) = got.filter(|&n| n > 0) {
            if is_refusal(&buf[..n]) {
                t.borrow_mut().other_refused += 1;
                continue;
            }
            // The driver may shed an upload that holds memory over its
            // limit, telling the client why; the value is not stored.
            if buf[..n] == *b"SERVER_ERROR out of memory\r\n" {
                drop(s);
                t.borrow_mut().torn_values += 1;
                round += 1;
                continue;
            }
            fail(
                &t,
                format!(
                    "torn-{i}: a reply to half a value: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            );
        }
        drop(s);
        t.borrow_mut().torn_values += 1;
        round += 1;
    }
}

/// Asks for the large value and hangs up after part of it, checking the
/// part.
async fn torn_reader(seed: u64, big: Rc<Vec<u8>>, t: Tallied, rounds: u64) {
    let mut rng = Rng::new(seed, 600);
    let mut round = 0;
    while round < rounds {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(60))).await;
        let Ok(mut s) = connect().await else { continue };
        if s.write_all(b"get big\r\n").await.is_err() {
            continue;
        }
        let cut = 1 + rng.below(BIG_LEN as u64) as usize;
        let mut expect = Expect::new(&[("big", big.clone())]);
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = true;
        while (expect.got as usize) < cut {
            let Some(n) = read_for(&mut s, &mut buf, LATENCY_BOUND).await else {
                break;
            };
            if n == 0 {
                fail(&t, "torn-reader: the server stopped sending".into());
                break;
            }
            if first && is_refusal(&buf[..n]) {
                t.borrow_mut().other_refused += 1;
                break;
            }
            first = false;
            if let Err(e) = expect.feed(&buf[..n]) {
                fail(&t, format!("torn-reader: {e}"));
                break;
            }
        }
        if expect.got > 0 {
            t.borrow_mut().torn_replies += 1;
            round += 1;
        }
    }
}

/// One connection of the flood: either refused (memcached's message, then
/// closed) or served (it answers `version`); served ones hold their slot
/// until the whole flood is resolved.
async fn flood(i: u64, t: Tallied) {
    let mut held = None;
    match connect().await {
        Err(e) => fail(&t, format!("flood-{i}: connect: {e}")),
        Ok(mut s) => {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            // A refusal arrives within a few milliseconds of the accept.
            while got.len() < TOO_MANY_CONNECTIONS.len() {
                match read_for(&mut s, &mut buf, Duration::from_millis(200)).await {
                    Some(0) | None => break,
                    Some(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if got.is_empty() {
                let mut line = [0u8; 16];
                let served = s.write_all(b"version\r\n").await.is_ok()
                    && tokio::time::timeout(LATENCY_BOUND, s.read_exact(&mut line))
                        .await
                        .is_ok_and(|r| r.is_ok())
                    && &line == b"VERSION 1.6.18\r\n";
                if served {
                    t.borrow_mut().flood_served += 1;
                    held = Some(s);
                } else {
                    fail(
                        &t,
                        format!(
                            "flood-{i}: admitted but not served: {:?}",
                            String::from_utf8_lossy(&line)
                        ),
                    );
                }
            } else if got == TOO_MANY_CONNECTIONS {
                match read_for(&mut s, &mut buf, Duration::from_millis(200)).await {
                    None => t.borrow_mut().flood_refused += 1,
                    Some(_) => fail(&t, format!("flood-{i}: refused but not closed")),
                }
            } else {
                fail(
                    &t,
                    format!("flood-{i}: unexpected {:?}", String::from_utf8_lossy(&got)),
                );
            }
        }
    }
    t.borrow_mut().flood_left -= 1;
    if let Some(s) = held {
        while t.borrow().flood_left > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(s);
    }
}

/// Reads every key once the others are done: good keys, trickled keys, the
/// fresh keys only torn writes touched (must miss), the large value (must
/// be intact).
async fn verify(seed: u64, rec: Shared, big: Rc<Vec<u8>>, t: Tallied, pop: Population) {
    while t.borrow().hostile_left > 0 || !t.borrow().done() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = Client::new(
        "verifier".into(),
        "server",
        Rng::new(seed, 700),
        rec,
        Duration::from_secs(2),
    );
    let mut keys: Vec<String> = (0..GOOD_KEYS).map(|k| format!("g{k}")).collect();
    keys.extend((0..pop.slowloris).map(|k| format!("sl:{k}")));
    keys.extend((0..pop.torn_writers).map(|k| format!("torn:{k}")));
    for k in &keys {
        match c.get(k, false).await {
            Ok(Some((v, _))) if k.starts_with("torn:") => {
                fail(
                    &t,
                    format!("verifier: {k} holds {} bytes a torn set left", v.len()),
                );
            }
            Ok(_) => {}
            Err(_) => fail(&t, format!("verifier: get {k} failed")),
        }
    }
    // One raw read: the client's random chunking does not matter for a
    // one-line request, but its reply buffer copies per read.
    match connect().await {
        Ok(mut s) => {
            let mut expect = Expect::new(&[("big", big.clone())]);
            let want = format!("VALUE big 0 {BIG_LEN}\r\n").len() + BIG_LEN + 7;
            let mut buf = vec![0u8; 64 * 1024];
            let ok = s.write_all(b"get big\r\n").await.is_ok();
            while ok && (expect.got as usize) < want {
                match read_for(&mut s, &mut buf, Duration::from_secs(1)).await {
                    Some(n) if n > 0 => {
                        if let Err(e) = expect.feed(&buf[..n]) {
                            fail(&t, format!("verifier: big: {e}"));
                            break;
                        }
                    }
                    _ => {
                        fail(&t, "verifier: big: reply cut short".into());
                        break;
                    }
                }
            }
        }
        Err(e) => fail(&t, format!("verifier: connect: {e}")),
    }
}

fn spawn<F: std::future::Future<Output = ()> + 'static>(f: F) -> JoinHandle<()> {
    tokio::task::spawn_local(f)
}

/// The server settings the scenario needs: `-c`, the connection memory
/// limit, small writes, and a probe on what the host does.
pub fn host_config(cfg: &RunConfig, pop: &Population) -> (HostConfig, host::Probe) {
    let probe: host::Probe = Rc::new(RefCell::new(HostProbe::default()));
    let mut host_cfg = HostConfig::standard(cfg.plant);
    host_cfg.driver = DriverConfig {
        memory_limit: CONN_MEMORY,
        ..DriverConfig::default()
    };
    host_cfg.max_connections = pop.max_connections;
    host_cfg.write_max = WRITE_MAX;
    host_cfg.probe = Some(probe.clone());
    (host_cfg, probe)
}

/// Adds the good and the hostile clients to `sim` (two hosts, `good` and
/// `hostile`), against the server host `server`.
pub(crate) fn populate(
    sim: &mut turmoil::Sim<'_>,
    rec: &Shared,
    seed: u64,
    pop: Population,
) -> Tallied {
    let tally: Tallied = Rc::new(RefCell::new(Tally {
        good_left: pop.good_clients,
        flood_left: pop.flood,
        hostile_left: 1,
        ..Tally::default()
    }));
    let big = pattern(seed, 1, BIG_LEN);
    let mid = pattern(seed, 2, MID_LEN);

    let (r, t, bg) = (rec.clone(), tally.clone(), big.clone());
    sim.client("good", async move {
        let tasks: Vec<_> = (0..pop.good_clients)
            .map(|i| spawn(good(i, seed, r.clone(), t.clone(), pop.good_ops)))
            .collect();
        for h in tasks {
            h.await?;
        }
        verify(seed, r, bg, t, pop).await;
        // Leave the server time to see every hang-up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });

    let (r, t) = (rec.clone(), tally.clone());
    sim.client("hostile", async move {
        if let Err(e) = seed_values(&r, &[("big", big.clone()), ("mid", mid.clone())]).await {
            fail(&t, e);
        }
        let mut tasks = Vec::new();
        for _ in 0..pop.idle {
            tasks.push(spawn(idle(t.clone())));
        }
        for i in 0..pop.slow_readers {
            tasks.push(spawn(slow_reader(
                i,
                seed,
                big.clone(),
                mid.clone(),
                t.clone(),
            )));
        }
        for i in 0..pop.slowloris {
            tasks.push(spawn(slowloris(i, seed, r.clone(), t.clone())));
        }
        for i in 0..pop.torn_writers {
            tasks.push(spawn(torn_writer(i, seed, t.clone(), pop.torn_rounds)));
        }
        tasks.push(spawn(torn_reader(
            seed,
            big.clone(),
            t.clone(),
            pop.torn_rounds,
        )));
        tokio::time::sleep(pop.flood_at.saturating_sub(now())).await;
        for i in 0..pop.flood {
            tasks.push(spawn(flood(i, t.clone())));
        }
        for h in tasks {
            h.await?;
        }
        t.borrow_mut().hostile_left = 0;
        Ok(())
    });
    tally
}

/// Judges a finished run: the clients' own findings, the good clients'
/// latency, the driver's memory, the flood's refusals, connections left;
/// and the figures to report.
pub(crate) fn judge(
    rec: &Recorder,
    t: &Tally,
    p: &HostProbe,
    pop: &Population,
) -> (Vec<String>, Vec<(String, Json)>) {
    let mut violations = t.violations.clone();
    let good: Vec<&Op> = rec
        .ops
        .iter()
        .filter(|o| o.client.starts_with("good-"))
        .collect();
    let mut lat: Vec<Duration> = good.iter().map(|o| o.complete - o.invoke).collect();
    lat.sort();
    if let Some(max) = lat.last().filter(|m| **m >= LATENCY_BOUND) {
        violations.push(format!("a good client waited {max:?} for a reply"));
    }
    let stalled = good
        .iter()
        .filter(|o| o.outcome == Outcome::Indeterminate)
        .count();
    if stalled > 0 {
        violations.push(format!("{stalled} good requests got no reply"));
    }
    // The driver keeps its limit at a pass's start and after every
    // connection it runs (a reply that does not fit sheds at once).
    if p.over_limit_at_start > 0 || p.over_limit > 0 {
        violations.push(format!(
            "driver held up to {} bytes, over its {} byte limit, in {} samples at a pass's start and {} after processing",
            p.peak_held, p.memory_limit, p.over_limit_at_start, p.over_limit
        ));
    }
    let flood = pop.flood;
    let excess = flood.saturating_sub(pop.max_connections as u64);
    if t.flood_refused < excess {
        violations.push(format!(
            "{} of {flood} flood connections refused, expected at least {excess}",
            t.flood_refused
        ));
    }
    if t.flood_refused + t.flood_served != flood {
        violations.push(format!(
            "flood: {} refused + {} served of {flood}",
            t.flood_refused, t.flood_served
        ));
    }
    if p.refused < t.flood_refused + t.other_refused {
        violations.push(format!(
            "server counted {} refusals, clients saw {}",
            p.refused,
            t.flood_refused + t.other_refused
        ));
    }
    if p.stats.connections > 0 {
        violations.push(format!(
            "{} connections still held after every client hung up",
            p.stats.connections
        ));
    }
    let fields = vec![
        ("good_ops".into(), Json::Int(good.len() as u64)),
        (
            "good_latency".into(),
            Json::Obj(vec![
                ("p50_ms".into(), Json::Num(percentile(&lat, 0.5))),
                ("p99_ms".into(), Json::Num(percentile(&lat, 0.99))),
                ("max_ms".into(), Json::Num(percentile(&lat, 1.0))),
            ]),
        ),
        ("refused_connections".into(), Json::Int(p.refused)),
        ("flood_refused".into(), Json::Int(t.flood_refused)),
        ("flood_served".into(), Json::Int(t.flood_served)),
        (
            "closed_for_memory".into(),
            Json::Int(p.stats.closed_for_memory),
        ),
        (
            "paused_for_memory".into(),
            Json::Int(p.stats.paused_for_memory),
        ),
        ("peak_held_bytes".into(), Json::Int(p.peak_held as u64)),
        ("over_limit_samples".into(), Json::Int(p.over_limit)),
        ("memory_limit".into(), Json::Int(p.memory_limit as u64)),
        ("torn_values".into(), Json::Int(t.torn_values)),
        ("torn_replies".into(), Json::Int(t.torn_replies)),
        ("slowloris_stored".into(), Json::Int(t.slowloris_stored)),
        ("slow_reader_bytes".into(), Json::Int(t.slow_bytes)),
        (
            "stuck_connections".into(),
            Json::Int(p.stats.connections as u64),
        ),
        (
            "stuck_bytes".into(),
            Json::Int((p.stats.input_bytes + p.stats.output_bytes) as u64),
        ),
        ("passes".into(), Json::Int(p.passes)),
        ("empty_passes".into(), Json::Int(p.empty_passes)),
    ];
    (violations, fields)
}

/// Runs the scenario.
pub fn run(cfg: &RunConfig) -> Report {
    let seed = cfg.seed;
    let pop = Population::default();
    let rec = Recorder::shared(cfg.keep_trace);
    let mut b = builder(seed, Duration::from_secs(20));
    b.tcp_capacity(TCP_SEGMENTS);
    let mut sim = b.build();
    let (host_cfg, probe) = host_config(cfg, &pop);
    let r = rec.clone();
    sim.host("server", move || {
        host::serve_with("server", r.clone(), host_cfg.clone())
    });
    let tally = populate(&mut sim, &rec, seed, pop);
    let sim_result = sim.run();
    let rec = rec.borrow();
    let (mut violations, fields) = judge(&rec, &tally.borrow(), &probe.borrow(), &pop);
    if let Err(e) = sim_result {
        violations.push(format!("simulation failed: {e}"));
    }
    let policy = Policy {
        no_stale_reads: true,
        no_silent_misses: true,
    };
    report("hostile-clients", cfg, &rec, policy, violations, fields)
}
