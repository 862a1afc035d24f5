//! Waiting for readiness on many sockets: `epoll` on Linux, `poll(2)` on
//! other native systems, and in the wasm guest one `wasi:io/poll` call
//! over the pollables of the sockets waited for, each made once (past a
//! hundred-odd sockets, mostly over the recently active ones: see
//! `tiers`).
//!
//! Interest is kept per token and the kernel is only told about changes,
//! so a pass over 10,000 mostly idle connections costs the kernel the ready
//! ones (epoll), not a scan of all of them (poll).

use std::io;

use crate::net::Source;

/// Readiness of one registered socket, reported by [`Poller::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token it was registered under.
    pub token: usize,
    /// Readable: data, end of stream or an error to read.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// The peer hung up or the socket failed: a read or write will say so.
    pub hangup: bool,
}

const REGISTERED: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;

fn mask(read: bool, write: bool) -> u8 {
    REGISTERED | if read { READ } else { 0 } | if write { WRITE } else { 0 }
}

/// Sockets registered under small dense tokens, and what each waits for.
///
/// Call order: [`set`](Poller::set) the interest of every socket (the
/// first call registers it; unchanged interest costs nothing), then
/// [`wait`](Poller::wait); [`remove`](Poller::remove) a token before its
/// socket is closed (in the guest, the subscriptions must go before the
/// socket's streams).
pub struct Poller {
    sys: Sys,
    /// What each token waits for (0: not registered).
    interest: Vec<u8>,
}

impl Poller {
    /// An empty poller.
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            sys: Sys::new()?,
            interest: Vec::new(),
        })
    }

    /// Waits for `read`/`write` readiness of `src` under `token`. Neither
    /// keeps it registered while waiting for nothing.
    pub fn set(&mut self, token: usize, src: Source, read: bool, write: bool) -> io::Result<()> {
        if self.interest.len() <= token {
            self.interest.resize(token + 1, 0);
        }
        let old = self.interest[token];
        let new = mask(read, write);
        if old == new {
            return Ok(());
        }
        self.sys.set(token, src, old, new)?;
        self.interest[token] = new;
        Ok(())
    }

    /// Forgets `token`.
    pub fn remove(&mut self, token: usize, src: Source) {
        if let Some(m) = self.interest.get_mut(token) {
            if *m != 0 {
                self.sys.remove(token, src);
                *m = 0;
            }
        }
    }

    /// Waits up to `timeout_ms` (-1: until something is ready) and puts
    /// the ready tokens in `events` (cleared first). A signal ends the wait
    /// early with no events.
    pub fn wait(&mut self, timeout_ms: libc::c_int, events: &mut Vec<Event>) -> io::Result<()> {
        events.clear();
        match self.sys.wait(timeout_ms, events) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        }
    }
}

#[cfg(target_os = "linux")]
mod epoll;
#[cfg(target_os = "linux")]
use epoll::Sys;
#[cfg(not(any(target_os = "linux", target_os = "wasi")))]
mod poll;
#[cfg(not(any(target_os = "linux", target_os = "wasi")))]
use poll::Sys;
#[cfg(any(test, target_os = "wasi"))]
mod tiers;
#[cfg(target_os = "wasi")]
mod wasi;
#[cfg(target_os = "wasi")]
use wasi::Sys;
