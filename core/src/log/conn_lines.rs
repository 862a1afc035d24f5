//! The `connevents` lines, field for field as memcached 1.6.18 prints
//! them: `type=conn_new rip=… rport=… transport=tcp cfd=…` when a client
//! is accepted and `type=conn_close rip=… rport=… transport=tcp
//! reason=… cfd=…` when its socket closes.

use alloc::vec::Vec;
use core::fmt::Write;
use core::net::SocketAddr;

use super::{flags, Log};
use crate::num::{push_i64, push_u64};
use crate::observe::CloseReason;

impl Log {
    /// A client connection accepted from `peer`, its descriptor `cfd`.
    pub(crate) fn conn_new(&mut self, peer: SocketAddr, cfd: i32) {
        self.emit(flags::CONNEVENTS, |l| {
            l.extend_from_slice(b"type=conn_new");
            remote(l, peer);
            l.extend_from_slice(b" cfd=");
            push_i64(l, i64::from(cfd));
        });
    }

    /// A client connection from `peer` closed, for `reason`.
    pub(crate) fn conn_close(&mut self, peer: SocketAddr, reason: CloseReason, cfd: i32) {
        self.emit(flags::CONNEVENTS, |l| {
            l.extend_from_slice(b"type=conn_close");
            remote(l, peer);
            l.extend_from_slice(b" reason=");
            l.extend_from_slice(reason.name());
            l.extend_from_slice(b" cfd=");
            push_i64(l, i64::from(cfd));
        });
    }
}

/// ` rip=<address> rport=<port> transport=tcp`; the address as
/// `inet_ntop` writes it (IPv6 without brackets).
fn remote(l: &mut Vec<u8>, peer: SocketAddr) {
    l.extend_from_slice(b" rip=");
    let mut ip = Text(l);
    // Writing into a Vec cannot fail.
    let _ = write!(ip, "{}", peer.ip());
    l.extend_from_slice(b" rport=");
    push_u64(l, u64::from(peer.port()));
    l.extend_from_slice(b" transport=tcp");
}

/// `core::fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(f: impl FnOnce(&mut Log)) -> Vec<u8> {
        let mut log = Log::new();
        log.set_time(1_795_776_731, 983_599);
        let id = log.add_watcher(flags::CONNEVENTS, 0).unwrap();
        f(&mut log);
        let mut out = Vec::new();
        log.take(id, &mut out, usize::MAX);
        out
    }

    #[test]
    fn lines_are_memcacheds() {
        let v4: SocketAddr = "127.0.0.1:43094".parse().unwrap();
        let out = lines(|log| {
            log.conn_new(v4, 25);
            log.conn_close(v4, CloseReason::Normal, 25);
            log.conn_close(v4, CloseReason::IdleTimeout, 26);
        });
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            "ts=1795776731.983599 gid=1 type=conn_new rip=127.0.0.1 rport=43094 transport=tcp cfd=25\n\
             ts=1795776731.983599 gid=2 type=conn_close rip=127.0.0.1 rport=43094 transport=tcp reason=normal cfd=25\n\
             ts=1795776731.983599 gid=3 type=conn_close rip=127.0.0.1 rport=43094 transport=tcp reason=idle_timeout cfd=26\n"
        );
    }

    #[test]
    fn ipv6_addresses_have_no_brackets() {
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        let out = lines(|log| log.conn_close(v6, CloseReason::Error, 7));
        assert!(out.ends_with(b"rip=::1 rport=5000 transport=tcp reason=error cfd=7\n"));
    }
}
