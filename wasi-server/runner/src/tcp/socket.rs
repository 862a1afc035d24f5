//! The `tcp-socket` resource: a socket's states and what each method does
//! in them, with the runner's one permission (bind and listen on the
//! configured address) checked where wasmtime-wasi checks its own.
//!
//! Call order, as `wasi:sockets/tcp` defines it: `create-tcp-socket`,
//! `start-bind`/`finish-bind`, `start-listen`/`finish-listen`, then
//! `accept` whenever the socket's pollable is ready. Every `start-*`
//! completes at once here (the system calls do not block), so `finish-*`
//! only reports it. Outbound connections are refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp::ShutdownType;
use wasmtime_wasi::p2::Pollable;

use super::options;
use super::stream::{Reader, Writer};
use super::{Policy, Slot};

/// The backlog until the guest sets one (wasmtime-wasi's default).
const DEFAULT_BACKLOG: u32 = 128;

/// A `tcp-socket`.
pub struct Socket {
    family: IpAddressFamily,
    state: State,
    /// A `start-*` whose `finish-*` has not been called.
    started: Option<Op>,
    backlog: u32,
    /// Counts this socket against the guest's limit.
    _slot: Slot,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Bind,
    Listen,
}

enum State {
    /// Created, and bound once `start-bind` succeeded.
    Fresh {
        socket: socket2::Socket,
        bound: bool,
    },
    Listening(AsyncFd<std::net::TcpListener>),
    Connected(Connection),
    /// Between states, or after a failed `listen`.
    Gone,
}

/// An accepted connection: what its socket and its streams share.
#[derive(Clone)]
pub struct Connection {
    pub stream: Arc<TcpStream>,
    pub writer: Writer,
    pub read_closed: Arc<AtomicBool>,
}

impl Connection {
    /// The streams to hand the guest with the socket.
    pub fn streams(&self) -> (Reader, Writer) {
        let reader = Reader {
            stream: self.stream.clone(),
            closed: self.read_closed.clone(),
        };
        (reader, self.writer.clone())
    }
}

impl Socket {
    /// `create-tcp-socket`.
    pub fn create(policy: &Policy, family: IpAddressFamily) -> Result<Socket, ErrorCode> {
        let slot = policy.sockets.take()?;
        let domain = match family {
            IpAddressFamily::Ipv4 => Domain::IPV4,
            IpAddressFamily::Ipv6 => Domain::IPV6,
        };
        let socket = socket2::Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        if family == IpAddressFamily::Ipv6 {
            // WASI sockets are one family each.
            socket.set_only_v6(true)?;
        }
        Ok(Socket {
            family,
            state: State::Fresh {
                socket,
                bound: false,
            },
            started: None,
            backlog: DEFAULT_BACKLOG,
            _slot: slot,
        })
    }

    pub fn family(&self) -> IpAddressFamily {
        self.family
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.state, State::Listening(_))
    }

    /// `start-bind`: only to the address the runner admits.
    pub fn start_bind(&mut self, policy: &Policy, addr: SocketAddr) -> Result<(), ErrorCode> {
        let State::Fresh { socket, bound } = &mut self.state else {
            return Err(ErrorCode::InvalidState);
        };
        if self.started.is_some() {
            return Err(ErrorCode::ConcurrencyConflict);
        }
        if *bound {
            return Err(ErrorCode::InvalidState);
        }
        if !is_unicast(addr.ip()) || !family_matches(addr.ip(), self.family) {
            return Err(ErrorCode::InvalidArgument);
        }
        if !policy.may_bind(addr) {
            return Err(ErrorCode::AccessDenied);
        }
        // As every listener should: a restart binds while old
        // connections are in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        *bound = true;
        self.started = Some(Op::Bind);
        Ok(())
    }

    /// `start-listen`: on the admitted address, which the socket must be
    /// bound to already (WASI 0.2 has no implicit bind).
    pub fn start_listen(&mut self, policy: &Policy) -> Result<(), ErrorCode> {
        if self.started.is_some() {
            return Err(ErrorCode::ConcurrencyConflict);
        }
        let State::Fresh {
            socket,
            bound: true,
        } = &self.state
        else {
            return Err(ErrorCode::InvalidState);
        };
        if !policy.may_listen(local_addr(socket)?) {
            return Err(ErrorCode::AccessDenied);
        }
        let State::Fresh { socket, .. } = std::mem::replace(&mut self.state, State::Gone) else {
            return Err(ErrorCode::InvalidState);
        };
        let listening = listen(socket, self.backlog)?;
        policy.admitted.store(true, Ordering::Relaxed);
        self.state = State::Listening(listening);
        self.started = Some(Op::Listen);
        Ok(())
    }

    /// `finish-bind`: whether `start-bind` succeeded.
    pub fn finish_bind(&mut self) -> Result<(), ErrorCode> {
        self.finish(Op::Bind)
    }

    /// `finish-listen`: whether `start-listen` succeeded.
    pub fn finish_listen(&mut self) -> Result<(), ErrorCode> {
        self.finish(Op::Listen)
    }

    fn finish(&mut self, op: Op) -> Result<(), ErrorCode> {
        match self.started.take_if(|o| *o == op) {
            Some(_) => Ok(()),
            None => Err(ErrorCode::NotInProgress),
        }
    }

    /// `accept`: a pending connection, or `would-block`; at the guest's
    /// socket limit `new-socket-limit`, leaving the connection queued.
    pub fn accept(&mut self, policy: &Policy) -> Result<(Socket, Connection), ErrorCode> {
        let State::Listening(listener) = &self.state else {
            return Err(ErrorCode::InvalidState);
        };
        let slot = policy.sockets.take()?;
        let (conn, _) = listener
            .try_io(Interest::READABLE, |l| l.accept())
            .map_err(accept_error)?;
        // A failure from here on loses this connection, not the listener.
        let lost = |_| ErrorCode::ConnectionAborted;
        conn.set_nonblocking(true).map_err(lost)?;
        // memcached's replies leave at once; Nagle's algorithm would hold
        // the last part of a reply written in two pieces for a delayed ACK.
        conn.set_nodelay(true).map_err(lost)?;
        let stream = Arc::new(TcpStream::from_std(conn).map_err(lost)?);
        let connection = Connection {
            writer: Writer::new(stream.clone()),
            stream,
            read_closed: Arc::new(AtomicBool::new(false)),
        };
        let socket = Socket {
            family: self.family,
            state: State::Connected(connection.clone()),
            started: None,
            backlog: self.backlog,
            _slot: slot,
        };
        Ok((socket, connection))
    }

    pub fn local_address(&self) -> Result<SocketAddr, ErrorCode> {
        match &self.state {
            State::Fresh { bound: false, .. } | State::Gone => Err(ErrorCode::InvalidState),
            State::Fresh { socket, .. } => local_addr(socket),
            State::Listening(l) => Ok(l.get_ref().local_addr()?),
            State::Connected(c) => Ok(c.stream.local_addr()?),
        }
    }

    pub fn remote_address(&self) -> Result<SocketAddr, ErrorCode> {
        match &self.state {
            State::Connected(c) => Ok(c.stream.peer_addr()?),
            _ => Err(ErrorCode::InvalidState),
        }
    }

    /// `set-listen-backlog-size`: kept for `listen`, or applied at once
    /// to a listening socket.
    pub fn set_backlog(&mut self, value: u64) -> Result<(), ErrorCode> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let value = u32::try_from(value)
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        match &self.state {
            State::Fresh { .. } => {}
            State::Listening(l) => SockRef::from(l.get_ref()).listen(value as i32)?,
            _ => return Err(ErrorCode::InvalidState),
        }
        self.backlog = value;
        Ok(())
    }

    pub fn shutdown(&mut self, how: ShutdownType) -> Result<(), ErrorCode> {
        let State::Connected(c) = &self.state else {
            return Err(ErrorCode::InvalidState);
        };
        if matches!(how, ShutdownType::Send | ShutdownType::Both) {
            c.writer.shut_down();
        }
        if matches!(how, ShutdownType::Receive | ShutdownType::Both) {
            c.read_closed.store(true, Ordering::Relaxed);
            // A connection the peer already reset is not connected any
            // more: the stream is closed all the same.
            match SockRef::from(&*c.stream).shutdown(std::net::Shutdown::Read) {
                Err(e) if e.raw_os_error() != Some(libc::ENOTCONN) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The socket, for its options.
    pub fn options(&self) -> Result<options::Options<'_>, ErrorCode> {
        let sock = match &self.state {
            State::Fresh { socket, .. } => SockRef::from(socket),
            State::Listening(l) => SockRef::from(l.get_ref()),
            State::Connected(c) => SockRef::from(&*c.stream),
            State::Gone => return Err(ErrorCode::InvalidState),
        };
        Ok(options::Options {
            sock,
            family: self.family,
        })
    }

    /// A listener is ready when a connection is pending; a socket in any
    /// other state at once (its operations complete when started).
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match &self.state {
            // Readiness stays until `accept` finds nothing pending. Only
            // the guest waits on a listener: tokio's single reader slot.
            State::Listening(l) => l.poll_read_ready(cx).map(|_| ()),
            _ => std::task::Poll::Ready(()),
        }
    }

    /// [`poll_ready`](Socket::poll_ready) as far as the I/O driver last
    /// saw, leaving no waker.
    pub fn is_ready(&self) -> bool {
        match &self.state {
            State::Listening(l) => l.try_io(Interest::READABLE, |_| Ok(())).is_ok(),
            _ => true,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Socket {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

fn listen(
    socket: socket2::Socket,
    backlog: u32,
) -> Result<AsyncFd<std::net::TcpListener>, ErrorCode> {
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    let listener: std::net::TcpListener = socket.into();
    // SAFETY: the listener owns its descriptor and the `AsyncFd` owns the
    // listener, which is never swapped out or taken back, so the
    // descriptor stays open and the same for the `AsyncFd`'s life.
    let registered = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) };
    registered.map_err(|e| ErrorCode::from(e.into_parts().1))
}

/// What a failed `accept(2)` means for the guest. Linux reports some
/// errors of the connection being accepted (a reset, an ICMP error that
/// arrived while it was queued) as `accept`'s own; those lose that
/// connection only, as `connection-aborted` says, and the listener goes on.
fn accept_error(e: std::io::Error) -> ErrorCode {
    let lost = [
        libc::ENETDOWN,
        libc::EPROTO,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::ENONET,
        libc::EHOSTUNREACH,
        libc::EOPNOTSUPP,
        libc::ENETUNREACH,
        libc::ECONNRESET,
        libc::ECONNABORTED,
    ];
    match e.raw_os_error() {
        Some(errno) if lost.contains(&errno) => ErrorCode::ConnectionAborted,
        _ => e.into(),
    }
}

fn local_addr(socket: &socket2::Socket) -> Result<SocketAddr, ErrorCode> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or(ErrorCode::InvalidState)
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

/// WASI sockets are one family each; an IPv4-mapped IPv6 address is not
/// IPv6's to use.
fn family_matches(ip: IpAddr, family: IpAddressFamily) -> bool {
    match (ip, family) {
        (IpAddr::V4(_), IpAddressFamily::Ipv4) => true,
        (IpAddr::V6(v6), IpAddressFamily::Ipv6) => v6.to_ipv4_mapped().is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_of_the_connection_lose_only_it() {
        let code = |errno| accept_error(std::io::Error::from_raw_os_error(errno));
        for errno in [libc::ECONNRESET, libc::EHOSTUNREACH, libc::EPROTO] {
            assert!(matches!(code(errno), ErrorCode::ConnectionAborted));
        }
        // Out of descriptors is the listener's (the guest pauses accepting).
        assert!(matches!(code(libc::EMFILE), ErrorCode::NewSocketLimit));
        assert!(matches!(code(libc::EAGAIN), ErrorCode::WouldBlock));
    }

    #[test]
    fn a_socket_binds_and_listens_only_where_the_policy_says() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = probe.local_addr().unwrap();
            drop(probe);
            let policy = Policy {
                listen: addr,
                admitted: Arc::default(),
                sockets: super::super::Sockets::new(0),
            };
            let mut s = Socket::create(&policy, IpAddressFamily::Ipv4).unwrap();
            assert!(matches!(
                s.start_listen(&policy),
                Err(ErrorCode::InvalidState)
            ));
            let elsewhere = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
            assert!(matches!(
                s.start_bind(&policy, elsewhere),
                Err(ErrorCode::AccessDenied)
            ));
            let v6: SocketAddr = "[::1]:11211".parse().unwrap();
            assert!(matches!(
                s.start_bind(&policy, v6),
                Err(ErrorCode::InvalidArgument)
            ));
            s.start_bind(&policy, addr).unwrap();
            assert!(matches!(
                s.start_listen(&policy),
                Err(ErrorCode::ConcurrencyConflict)
            ));
            s.finish_bind().unwrap();
            s.start_listen(&policy).unwrap();
            s.finish_listen().unwrap();
            assert!(policy.admitted.load(Ordering::Relaxed));
            assert!(matches!(s.accept(&policy), Err(ErrorCode::WouldBlock)));
            let _client = std::net::TcpStream::connect(addr).unwrap();
            s.ready().await;
            // At the guest's socket limit the connection waits in the queue.
            let room: Vec<_> = std::iter::from_fn(|| policy.sockets.take().ok()).collect();
            assert!(matches!(s.accept(&policy), Err(ErrorCode::NewSocketLimit)));
            drop(room);
            let (conn, _) = s.accept(&policy).unwrap();
            assert_eq!(conn.local_address().unwrap(), addr);
            assert!(conn.options().unwrap().sock.tcp_nodelay().unwrap());
        });
    }
}
