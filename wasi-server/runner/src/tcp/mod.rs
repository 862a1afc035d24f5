//! The guest's TCP: `wasi:sockets/tcp` and `tcp-create-socket`, defined by
//! the runner in place of wasmtime-wasi's.
//!
//! wasmtime-wasi 48's sockets cost the guest twice per request. Its input
//! stream allocates and zeroes a buffer of the size asked for on every
//! read, and it never tells tokio that a short read drained the socket, so
//! a connection kept looking readable until a read found nothing: behind
//! hashing clients (most connections idle between requests) and for any
//! lone client, every request cost a second `recv` and often a second
//! pass of the event loop. Its types cannot be built from the outside, so
//! keeping its sockets meant keeping that. Here a socket and its streams
//! (`stream`) are the runner's: same resource names and semantics (every
//! `start-*` completes at once, `finish-*` reports it), reads that leave
//! readiness to the next arrival, and TCP_NODELAY set on each accepted
//! connection directly. The streams are wasmtime-wasi's trait objects;
//! the runner notes each connection's input for its `poll` (`watch`).
//! Everything else the guest imports (the streams' interface, `network`,
//! clocks) stays wasmtime-wasi's, but for what `watch` and `poll`
//! define.
//!
//! Least privilege is [`Policy`]: bind and listen only on the runner's
//! address (with `-p 0` on the kernel's choice of port there), no
//! outbound connections, at most [`Sockets`] open at once. Connections it
//! closed while the last of a reply was still being written linger for
//! at most 10 s, no more than `stream::MAX_LINGERING` at a time.

mod link;
mod options;
mod socket;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use wasmtime::component::ResourceTable;

pub use link::link;
pub use socket::Socket;
pub use stream::Reader;

/// What a guest may do with TCP.
pub struct Policy {
    /// The address it may bind and listen on (port 0: any port there).
    pub listen: SocketAddr,
    /// Set once it listens.
    pub admitted: Arc<AtomicBool>,
    /// Its sockets open now, and how many it may have.
    pub sockets: Sockets,
}

/// A count of a guest's open sockets with a limit, so that a guest cannot
/// take all of the process's descriptors (several instances share them).
/// The limit is the guest's own connection limit and some room: the
/// server accepts one over its `-c` to turn it away with memcached's
/// error, and the listener is a socket too.
#[derive(Clone)]
pub struct Sockets {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One of a guest's open sockets: counted until dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Sockets {
    /// Room above a connection limit of `conn_limit`.
    pub const ROOM: usize = 16;

    pub fn new(conn_limit: u32) -> Sockets {
        Sockets {
            open: Arc::default(),
            max: conn_limit as usize + Self::ROOM,
        }
    }

    /// A slot for one more socket, or `new-socket-limit`.
    fn take(&self) -> Result<Slot, wasmtime_wasi::p2::bindings::sockets::network::ErrorCode> {
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(self.open.clone())),
            Err(_) => Err(wasmtime_wasi::p2::bindings::sockets::network::ErrorCode::NewSocketLimit),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Policy {
    fn may_bind(&self, addr: SocketAddr) -> bool {
        addr == self.listen
    }

    fn may_listen(&self, addr: SocketAddr) -> bool {
        addr == self.listen || (self.listen.port() == 0 && addr.ip() == self.listen.ip())
    }
}

/// A store's access to its resource table and TCP policy.
pub trait TcpView: Send + 'static {
    fn tcp(&mut self) -> (&mut ResourceTable, &Policy, &mut crate::watch::Watches);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runners_address_is_bound_and_listened_on() {
        let policy = |listen: &str| Policy {
            listen: listen.parse().unwrap(),
            admitted: Arc::default(),
            sockets: Sockets::new(10),
        };
        let fixed = policy("127.0.0.1:11211");
        assert!(fixed.may_bind("127.0.0.1:11211".parse().unwrap()));
        assert!(!fixed.may_bind("127.0.0.1:11212".parse().unwrap()));
        assert!(!fixed.may_bind("0.0.0.0:11211".parse().unwrap()));
        assert!(fixed.may_listen("127.0.0.1:11211".parse().unwrap()));
        assert!(!fixed.may_listen("127.0.0.1:40000".parse().unwrap()));
        let any_port = policy("127.0.0.1:0");
        assert!(any_port.may_bind("127.0.0.1:0".parse().unwrap()));
        assert!(!any_port.may_bind("127.0.0.1:40000".parse().unwrap()));
        assert!(any_port.may_listen("127.0.0.1:40000".parse().unwrap()));
        assert!(!any_port.may_listen("127.0.0.2:40000".parse().unwrap()));
    }

    #[test]
    fn sockets_beyond_the_limit_are_refused_until_one_closes() {
        let sockets = Sockets::new(2);
        let mut held: Vec<Slot> = (0..2 + Sockets::ROOM)
            .map(|_| sockets.take().unwrap())
            .collect();
        assert!(sockets.take().is_err());
        held.pop();
        assert!(sockets.take().is_ok());
    }
}
