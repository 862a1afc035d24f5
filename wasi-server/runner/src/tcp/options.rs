//! A `tcp-socket`'s options, as `wasi:sockets/tcp` defines them: durations
//! in nanoseconds, 0 refused where the system would take it to mean
//! something else, values past the system's range clamped.
//!
//! Setting an idle time, interval or count does not turn keep-alive on
//! (WASI keeps them apart), so those set only their own option.

use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::SockRef;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};

/// A socket's descriptor and family, for one option call.
pub struct Options<'a> {
    pub sock: SockRef<'a>,
    pub family: IpAddressFamily,
}

/// Linux's largest keep-alive time, interval (seconds) and count.
const MAX_KEEPALIVE_SECS: u64 = i16::MAX as u64;
const MAX_KEEPALIVE_COUNT: u32 = 127;

impl Options<'_> {
    pub fn keep_alive(&self) -> Result<bool, ErrorCode> {
        Ok(self.sock.keepalive()?)
    }

    pub fn set_keep_alive(&self, on: bool) -> Result<(), ErrorCode> {
        Ok(self.sock.set_keepalive(on)?)
    }

    pub fn keep_alive_idle_time(&self) -> Result<u64, ErrorCode> {
        Ok(nanos(self.sock.tcp_keepalive_time()?))
    }

    pub fn set_keep_alive_idle_time(&self, ns: u64) -> Result<(), ErrorCode> {
        self.set_int(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(ns)?)
    }

    pub fn keep_alive_interval(&self) -> Result<u64, ErrorCode> {
        Ok(nanos(self.sock.tcp_keepalive_interval()?))
    }

    pub fn set_keep_alive_interval(&self, ns: u64) -> Result<(), ErrorCode> {
        self.set_int(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(ns)?)
    }

    pub fn keep_alive_count(&self) -> Result<u32, ErrorCode> {
        Ok(self.sock.tcp_keepalive_retries()?)
    }

    pub fn set_keep_alive_count(&self, n: u32) -> Result<(), ErrorCode> {
        if n == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        let n = n.min(MAX_KEEPALIVE_COUNT) as libc::c_int;
        self.set_int(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, n)
    }

    pub fn hop_limit(&self) -> Result<u8, ErrorCode> {
        let hops = match self.family {
            IpAddressFamily::Ipv4 => self.sock.ttl_v4()?,
            IpAddressFamily::Ipv6 => self.sock.unicast_hops_v6()?,
        };
        Ok(u8::try_from(hops).unwrap_or(u8::MAX))
    }

    pub fn set_hop_limit(&self, hops: u8) -> Result<(), ErrorCode> {
        if hops == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        match self.family {
            IpAddressFamily::Ipv4 => self.sock.set_ttl_v4(hops.into())?,
            IpAddressFamily::Ipv6 => self.sock.set_unicast_hops_v6(hops.into())?,
        }
        Ok(())
    }

    pub fn receive_buffer_size(&self) -> Result<u64, ErrorCode> {
        Ok(self.sock.recv_buffer_size()? as u64)
    }

    pub fn set_receive_buffer_size(&self, size: u64) -> Result<(), ErrorCode> {
        Ok(self.sock.set_recv_buffer_size(buffer_size(size)?)?)
    }

    pub fn send_buffer_size(&self) -> Result<u64, ErrorCode> {
        Ok(self.sock.send_buffer_size()? as u64)
    }

    pub fn set_send_buffer_size(&self, size: u64) -> Result<(), ErrorCode> {
        Ok(self.sock.set_send_buffer_size(buffer_size(size)?)?)
    }

    fn set_int(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> Result<(), ErrorCode> {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` lives across the call and `len` is its size; the
        // descriptor is borrowed from a socket that outlives the call.
        let r = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                len,
            )
        };
        match r {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().into()),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up (the system counts in seconds), clamped.
fn secs(ns: u64) -> Result<libc::c_int, ErrorCode> {
    if ns == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(ns.div_ceil(1_000_000_000).min(MAX_KEEPALIVE_SECS) as libc::c_int)
}

fn buffer_size(size: u64) -> Result<usize, ErrorCode> {
    if size == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(size.min(i32::MAX as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_whole_seconds_and_zero_is_refused() {
        assert!(secs(0).is_err());
        assert_eq!(secs(1).unwrap(), 1);
        assert_eq!(secs(1_000_000_000).unwrap(), 1);
        assert_eq!(secs(1_000_000_001).unwrap(), 2);
        assert_eq!(secs(u64::MAX).unwrap(), i16::MAX as libc::c_int);
        assert!(buffer_size(0).is_err());
        assert_eq!(buffer_size(u64::MAX).unwrap(), i32::MAX as usize);
    }
}
