//! What the server tells the core about its sockets for `stats conns`
//! and `watch connevents` (see `wasmcached_core::observe::ConnTable` for
//! the contract): each socket by its descriptor number (natively the
//! kernel's, in the wasm guest wasi-libc's), with its addresses.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use wasmcached_core::observe::{addr_text, CloseReason};
use wasmcached_core::{Clock, ConnId, Driver, Store};

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
    now: Clock,
) {
    let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
        return;
    };
    let fd = id(s.as_raw_fd());
    store.conn_opened(fd, peer, local, now);
    driver.set_stats_id(conn, fd);
}

/// Forgets a client connection whose socket is about to close for
/// `reason` (a `conn_close` line for `watch connevents`).
pub(crate) fn closed(store: &mut Store, s: &TcpStream, reason: CloseReason, now: Clock) {
    store.conn_closed(id(s.as_raw_fd()), reason, now);
}
