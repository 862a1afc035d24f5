//! What the server tells the core about its sockets for `stats conns`
//! and `watch connevents` (see `wasmcached_core::observe::ConnTable` for
//! the contract): each socket by its descriptor number (see
//! [`crate::net`]), with its addresses.

use crate::net::{Listener, Stream};

use wasmcached_core::observe::{addr_text, CloseReason};
use wasmcached_core::{Clock, ConnId, Driver, Store};

/// Registers the listening socket.
pub(crate) fn listener(store: &mut Store, l: &Listener, now_ms: u64) {
    if let Ok(a) = l.local_addr() {
        store
            .conn_table_mut()
            .listen(l.number(), &addr_text(a), now_ms);
    }
}

/// Registers a client connection the driver just opened as `conn`.
pub(crate) fn opened(store: &mut Store, driver: &mut Driver, conn: ConnId, s: &Stream, now: Clock) {
    let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
        return;
    };
    let fd = s.number();
    store.conn_opened(fd, peer, local, now);
    driver.set_stats_id(conn, fd);
}

/// Forgets a client connection whose socket is about to close for
/// `reason` (a `conn_close` line for `watch connevents`).
pub(crate) fn closed(store: &mut Store, s: &Stream, reason: CloseReason, now: Clock) {
    store.conn_closed(s.number(), reason, now);
}
