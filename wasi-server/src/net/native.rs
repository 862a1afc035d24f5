//! `std::net` sockets, non-blocking, registered with the poller by
//! descriptor.

use std::borrow::Cow;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// What the poller registers for a socket: its descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Source(pub RawFd);

/// A listening socket.
pub struct Listener(TcpListener);

impl Listener {
    /// Binds and listens on `addr` (a host name is resolved) with a queue
    /// of `backlog` pending connections.
    pub fn bind(addr: &str, backlog: u32) -> io::Result<Listener> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        // std listens with a backlog of 128; listening again on a
        // listening socket sets the backlog (`-b`, memcached's default
        // 1024), so a burst of connections is not dropped into SYN
        // retries.
        // SAFETY: the descriptor is the listener's own, open for the call.
        unsafe {
            libc::listen(l.as_raw_fd(), backlog.min(i32::MAX as u32) as libc::c_int);
        }
        Ok(Listener(l))
    }

    /// Accepts a pending connection, made non-blocking, with its peer's
    /// address. `WouldBlock` when none is pending.
    pub fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (s, peer) = self.0.accept()?;
        if let Err(e) = s.set_nonblocking(true) {
            // This connection is lost, not the listener.
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, e));
        }
        let _ = s.set_nodelay(true);
        Ok((Stream(s), peer))
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The descriptor number.
    pub fn number(&self) -> u32 {
        number(self.0.as_raw_fd())
    }

    /// What the poller waits on: readable when a connection is pending.
    pub fn source(&self) -> Source {
        Source(self.0.as_raw_fd())
    }
}

/// A connection.
pub struct Stream(TcpStream);

impl Stream {
    /// Reads what has arrived, up to `buf.len()` bytes, into `buf`. Empty
    /// at the end of the stream; `WouldBlock` when nothing has arrived.
    pub fn read<'a>(&mut self, buf: &'a mut [u8]) -> io::Result<Cow<'a, [u8]>> {
        let n = self.0.read(buf)?;
        Ok(Cow::Borrowed(&buf[..n]))
    }

    /// Writes a prefix of `bytes`; returns its length.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    /// Writes a prefix of the concatenation of `bufs`; returns its length.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The descriptor number.
    pub fn number(&self) -> u32 {
        number(self.0.as_raw_fd())
    }

    /// What the poller waits on.
    pub fn source(&self) -> Source {
        Source(self.0.as_raw_fd())
    }
}

fn number(fd: RawFd) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}
