//! `wasi:sockets` TCP sockets, used directly. A connection is the socket
//! and its two streams; the poller subscribes to them once.

use std::borrow::Cow;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

use super::numbers;

/// What the poller subscribes to for a socket.
pub enum Source<'a> {
    /// A listening socket: ready when a connection is pending.
    Listener(&'a TcpSocket),
    /// A connection: its input (readable) and output (writable).
    Stream(&'a InputStream, &'a OutputStream),
}

/// A listening socket.
pub struct Listener {
    socket: TcpSocket,
    number: u32,
}

impl Listener {
    /// Binds and listens on `addr`, an IP address and port (the runner
    /// resolves host names; the guest may not), with a queue of `backlog`
    /// pending connections where the host honours it.
    pub fn bind(addr: &str, backlog: u32) -> io::Result<Listener> {
        let addr = parse_addr(addr)?;
        let family = match addr {
            SocketAddr::V4(_) => IpAddressFamily::Ipv4,
            SocketAddr::V6(_) => IpAddressFamily::Ipv6,
        };
        let socket = create_tcp_socket(family).map_err(error)?;
        socket
            .start_bind(&instance_network(), to_wasi(addr))
            .map_err(error)?;
        finish(&socket, TcpSocket::finish_bind)?;
        // A hint: a host that cannot set it keeps its default.
        let _ = socket.set_listen_backlog_size(backlog.into());
        socket.start_listen().map_err(error)?;
        finish(&socket, TcpSocket::finish_listen)?;
        Ok(Listener {
            socket,
            number: numbers::take(),
        })
    }

    /// Accepts a pending connection, with its peer's address.
    /// `WouldBlock` when none is pending.
    pub fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (socket, input, output) = self.socket.accept().map_err(error)?;
        let stream = Stream {
            input,
            output,
            socket,
            number: numbers::take(),
        };
        let peer = stream.peer_addr().map_err(|e| {
            // This connection is lost (reset already), not the listener.
            io::Error::new(ErrorKind::ConnectionAborted, e)
        })?;
        Ok((stream, peer))
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_address().map(from_wasi).map_err(error)
    }

    /// The descriptor number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// What the poller subscribes to.
    pub fn source(&self) -> Source<'_> {
        Source::Listener(&self.socket)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        numbers::give_back(self.number);
    }
}

/// A connection. The streams are the socket's children and must go first,
/// and the poller's subscriptions to them before that (the poller is told
/// before a connection is dropped).
pub struct Stream {
    // Fields drop in this order.
    input: InputStream,
    output: OutputStream,
    socket: TcpSocket,
    number: u32,
}

impl Stream {
    /// Reads what has arrived, up to `buf.len()` bytes. Empty at the end of
    /// the stream; `WouldBlock` when nothing has arrived. The bytes come in
    /// a buffer of their own (the host writes them into a fresh
    /// allocation), so `buf` only gives the size.
    pub fn read<'a>(&mut self, buf: &'a mut [u8]) -> io::Result<Cow<'a, [u8]>> {
        match self.input.read(buf.len() as u64) {
            Ok(b) if b.is_empty() => Err(ErrorKind::WouldBlock.into()),
            Ok(b) => Ok(Cow::Owned(b)),
            Err(StreamError::Closed) => Ok(Cow::Borrowed(&[])),
            Err(e) => Err(stream_error(e)),
        }
    }

    /// Writes a prefix of `bytes` (as much as the stream takes now);
    /// returns its length. `WouldBlock` when it takes nothing.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.output.check_write().map_err(stream_error)?;
        let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if n == 0 && !bytes.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.output.write(&bytes[..n]).map_err(stream_error)?;
        Ok(n)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.remote_address().map(from_wasi).map_err(error)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_address().map(from_wasi).map_err(error)
    }

    /// The descriptor number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// What the poller subscribes to.
    pub fn source(&self) -> Source<'_> {
        Source::Stream(&self.input, &self.output)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        numbers::give_back(self.number);
    }
}

/// Completes a bind or listen the host may finish asynchronously.
fn finish(
    socket: &TcpSocket,
    step: impl Fn(&TcpSocket) -> Result<(), ErrorCode>,
) -> io::Result<()> {
    loop {
        match step(socket) {
            Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
            r => return r.map_err(error),
        }
    }
}

/// `host:port` with an IP address for host (IPv6 in brackets or not).
fn parse_addr(addr: &str) -> io::Result<SocketAddr> {
    let bad = || {
        io::Error::new(
            ErrorKind::InvalidInput,
            format!("{addr}: the wasm server listens on an IP address (its host resolves names)"),
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port))
}

fn to_wasi(a: SocketAddr) -> IpSocketAddress {
    match a {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (x, y, z, w),
            })
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: a.scope_id(),
            })
        }
    }
}

fn from_wasi(a: IpSocketAddress) -> SocketAddr {
    match a {
        IpSocketAddress::Ipv4(a) => {
            let (x, y, z, w) = a.address;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(x, y, z, w)), a.port)
        }
        IpSocketAddress::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            let ip = Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7);
            SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                a.port,
                a.flow_info,
                a.scope_id,
            ))
        }
    }
}

/// The error wasi-libc would have reported for `e` (its errno), so
/// messages and the server's handling stay as they were through it.
fn error(e: ErrorCode) -> io::Error {
    let errno = match e {
        ErrorCode::AccessDenied => libc::EACCES,
        ErrorCode::NotSupported => libc::EOPNOTSUPP,
        ErrorCode::InvalidArgument => libc::EINVAL,
        ErrorCode::OutOfMemory => libc::ENOMEM,
        ErrorCode::Timeout => libc::ETIMEDOUT,
        ErrorCode::ConcurrencyConflict => libc::EALREADY,
        ErrorCode::NotInProgress => libc::EALREADY,
        ErrorCode::WouldBlock => libc::EWOULDBLOCK,
        ErrorCode::InvalidState => libc::EINVAL,
        ErrorCode::NewSocketLimit => libc::EMFILE,
        ErrorCode::AddressNotBindable => libc::EADDRNOTAVAIL,
        ErrorCode::AddressInUse => libc::EADDRINUSE,
        ErrorCode::RemoteUnreachable => libc::EHOSTUNREACH,
        ErrorCode::ConnectionRefused => libc::ECONNREFUSED,
        ErrorCode::ConnectionReset => libc::ECONNRESET,
        ErrorCode::ConnectionAborted => libc::ECONNABORTED,
        ErrorCode::DatagramTooLarge => libc::EMSGSIZE,
        _ => libc::EIO,
    };
    io::Error::from_raw_os_error(errno)
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => ErrorKind::BrokenPipe.into(),
        StreamError::LastOperationFailed(e) => {
            io::Error::new(ErrorKind::ConnectionReset, e.to_debug_string())
        }
    }
}
