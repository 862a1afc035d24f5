//! What the server tells the core about its sockets for `stats conns`
//! and `watch connevents` (see `wasmcached_core::observe::ConnTable` for
//! the contract): each socket by its descriptor number (natively the
//! kernel's, in the wasm guest wasi-libc's), with its addresses.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmcached_core::observe::addr_text;
use wasmcached_core::{Clock, ConnId, Driver, Store};

/// The time an accept or close is logged at: the host's monotonic
/// milliseconds with the wall clock's reading.
fn stamp(now_ms: u64) -> Clock {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Clock::new(now_ms, wall.as_secs()).with_micros(wall.subsec_micros())
}

fn id(fd: i32) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}

/// Registers the listening socket.
pub(crate) fn listener(store: &mut Store, l: &TcpListener, now_ms: u64) {
    if let Ok(a) = l.local_addr() {
        store
            .conn_table_mut()
            .listen(id(l.as_raw_fd()), &addr_text(a), now_ms);
    }
}

/// Registers a client connection the driver just opened as `conn`.
pub(crate) fn opened(
    store: &mut Store,
    driver: &mut Driver,
    conn: ConnId,
    s: &TcpStream,
    now_ms: u64,
) {
    let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
        return;
    };
    let fd = id(s.as_raw_fd());
    store.conn_opened(fd, peer, local, stamp(now_ms));
    driver.set_stats_id(conn, fd);
}

/// Forgets a client connection whose socket is about to close.
pub(crate) fn closed(store: &mut Store, s: &TcpStream) {
    store.conn_table_mut().close(id(s.as_raw_fd()));
}
