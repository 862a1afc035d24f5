//! What the server tells the core about its sockets for `stats conns`
//! (see `wasmcached_core::observe::ConnTable` for the contract): each
//! socket by its descriptor number (natively the kernel's, in the wasm
//! guest wasi-libc's), with its addresses as memcached prints them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use wasmcached_core::{ConnId, Driver, Store};

/// memcached's text for a TCP address.
fn text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("tcp:{a}"),
        SocketAddr::V6(a) => format!("tcp6:{a}"),
    }
}

fn id(fd: i32) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}

/// Registers the listening socket.
pub(crate) fn listener(store: &mut Store, l: &TcpListener, now_ms: u64) {
    if let Ok(a) = l.local_addr() {
        store
            .conn_table_mut()
            .listen(id(l.as_raw_fd()), &text(a), now_ms);
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
    store
        .conn_table_mut()
        .open(fd, &text(peer), &text(local), now_ms);
    driver.set_stats_id(conn, fd);
}

/// Forgets a client connection whose socket is about to close.
pub(crate) fn closed(store: &mut Store, s: &TcpStream) {
    store.conn_table_mut().close(id(s.as_raw_fd()));
}
