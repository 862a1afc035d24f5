//! The cache server host: the core's `Store` and one `Connection` per
//! socket behind `turmoil::net::TcpListener`. This adapter is the only
//! simulation-specific I/O; time is turmoil's simulated clock and a fixed
//! simulated epoch, never the OS.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

use crate::trace::{now, Shared};

/// Port the cache listens on.
pub const PORT: u16 = 11211;
/// Unix time the simulated world starts at.
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// The host's clocks, as the core wants them.
fn clock() -> Clock {
    let el = now();
    Clock::new(el.as_millis() as u64, EPOCH_SECS + el.as_secs())
}

/// A deliberately broken store for testing the checker: every `every`-th
/// storage request is acknowledged without being applied.
#[derive(Clone, Copy, Debug)]
pub struct Broken {
    /// Drop one write in this many.
    pub every: u64,
}

/// Runs a cache server named `name` until the simulation ends or bounces it.
pub async fn serve(name: &'static str, rec: Shared, broken: Option<Broken>) -> turmoil::Result {
    rec.borrow_mut().restart(name, now());
    let cfg = Config {
        hash_seed: 7,
        memory_limit: 64 << 20,
        ..Config::default()
    };
    let store = Rc::new(RefCell::new(Store::new(cfg, clock())));
    let writes = Rc::new(RefCell::new(0u64));
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    let sweeper = store.clone();
    tokio::task::spawn_local(async move {
        loop {
            let due = sweeper.borrow().poll_timeout();
            let wait = match due {
                Some(t) => Duration::from_millis(t.saturating_sub(clock().mono_ms)),
                None => Duration::from_millis(1000),
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            sweeper.borrow_mut().handle_timeout(clock());
        }
    });
    loop {
        let (sock, _) = listener.accept().await?;
        let store = store.clone();
        let writes = writes.clone();
        tokio::task::spawn_local(async move {
            let _ = serve_conn(sock, store, broken, writes).await;
        });
    }
}

async fn serve_conn(
    mut sock: TcpStream,
    store: Rc<RefCell<Store>>,
    broken: Option<Broken>,
    writes: Rc<RefCell<u64>>,
) -> std::io::Result<()> {
    let mut conn = Connection::new();
    let mut framer = broken.map(|b| (b, Vec::new()));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        match framer.as_mut() {
            None => conn.receive(&buf[..n]),
            Some((b, pending)) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(len) = request_len(pending) {
                    let req: Vec<u8> = pending.drain(..len).collect();
                    if is_write(&req) {
                        let n = {
                            let mut w = writes.borrow_mut();
                            *w += 1;
                            *w
                        };
                        if n.is_multiple_of(b.every) {
                            // Acknowledge without applying: the bug the
                            // checker must catch.
                            let ack: &[u8] = if req.starts_with(b"ms ") {
                                b"HD\r\n"
                            } else {
                                b"STORED\r\n"
                            };
                            flush(&mut sock, &mut conn, &store).await?;
                            sock.write_all(ack).await?;
                            continue;
                        }
                    }
                    conn.receive(&req);
                    flush(&mut sock, &mut conn, &store).await?;
                }
                continue;
            }
        }
        if flush(&mut sock, &mut conn, &store).await? {
            return Ok(());
        }
    }
}

/// Runs the core on what was received and writes the replies. Returns
/// true when the connection must close.
async fn flush(
    sock: &mut TcpStream,
    conn: &mut Connection,
    store: &Rc<RefCell<Store>>,
) -> std::io::Result<bool> {
    loop {
        let p = conn.process(&mut store.borrow_mut(), clock());
        let out = conn.pending_output().to_vec();
        if !out.is_empty() {
            sock.write_all(&out).await?;
            conn.consume_output(out.len());
        }
        match p {
            Progress::NeedInput => return Ok(false),
            Progress::Close => return Ok(true),
            Progress::Yielded | Progress::Blocked => tokio::task::yield_now().await,
        }
    }
}

/// Length of the first complete request in `buf` (command line plus data
/// block for storage commands), for the broken double's framing.
fn request_len(buf: &[u8]) -> Option<usize> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&buf[..nl]).ok()?.trim_end();
    let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    let data = match words.first().copied() {
        Some("set" | "add" | "replace" | "append" | "prepend" | "cas") => {
            words.get(4)?.parse::<usize>().ok()? + 2
        }
        Some("ms") => words.get(2)?.parse::<usize>().ok()? + 2,
        _ => 0,
    };
    let total = nl + 1 + data;
    (buf.len() >= total).then_some(total)
}

fn is_write(req: &[u8]) -> bool {
    [&b"set "[..], b"add ", b"cas ", b"ms "]
        .iter()
        .any(|p| req.starts_with(p))
}
