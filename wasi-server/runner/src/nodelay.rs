//! TCP_NODELAY for the guest's connections.
//!
//! WASI 0.2 has no socket option for it (wasi-libc's `set_nodelay` does
//! nothing) and wasmtime-wasi never sets it, so a guest's connections
//! would run Nagle's algorithm: a reply that leaves in two writes (a batch
//! of pipelined requests answered as they arrive, a value over the 64 KiB
//! WASI write cap) holds its last part until the client acknowledges the
//! first, and a client waiting for that reply delays its acknowledgement
//! by up to 40 ms. Pipelined sets of large values ran at 92 MB/s through
//! the wasm server against 1,170 MB/s natively.
//!
//! The listening socket is a descriptor of this process, and on Linux an
//! accepted socket inherits TCP_NODELAY from its listener. When the
//! guest's listen is admitted (its socket is bound, `listen(2)` comes
//! next), the runner finds the socket bound to that address among its own
//! descriptors and sets the option there: every connection the guest
//! accepts then sends at once, as memcached's do.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// Sets TCP_NODELAY on this process's TCP socket bound to `addr`. Returns
/// whether one was found and set.
pub fn set_on_socket_bound_to(addr: SocketAddr) -> bool {
    let mut set = false;
    for fd in descriptors() {
        if is_tcp(fd) && bound_address(fd) == Some(addr) {
            set |= set_nodelay(fd);
        }
    }
    set
}

/// This process's open descriptors.
fn descriptors() -> Vec<libc::c_int> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        // Without /proc: every number up to a generous bound (the guest's
        // listener is among the first sockets the runner opens).
        Err(_) => (0..4096).collect(),
    }
}

fn is_tcp(fd: libc::c_int) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are valid for writes of the sizes given; a
    // descriptor that is not a socket makes the call fail.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && ty == libc::SOCK_STREAM
}

fn bound_address(fd: libc::c_int) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` holds `len` writable bytes.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = u32::from_be(a.sin_addr.s_addr).into();
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = a.sin6_addr.s6_addr.into();
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

fn set_nodelay(fd: libc::c_int) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn nodelay(fd: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes.
        unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        v
    }

    #[test]
    fn connections_accepted_after_it_send_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(set_on_socket_bound_to(l.local_addr().unwrap()));
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert_eq!(nodelay(a.as_raw_fd()), 1);
        // Only the socket bound to that address.
        assert_eq!(nodelay(other.as_raw_fd()), 0);
    }

    #[test]
    fn an_address_nothing_is_bound_to_is_not_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(!set_on_socket_bound_to(addr));
    }
}
