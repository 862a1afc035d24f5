//! A `tcp-socket`'s options, as `wasi:sockets/tcp` defines them: durations
//! in nanoseconds, 0 refused where the system would take it to mean
//! something else, values past the system's range clamped.
//!
//! Setting an idle time, interval or count does not turn keep-alive on
//! (WASI keeps them apart; socket2 turns it on with them, so it is turned
//! back off where it was).

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
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
        self.set_keep_alive_params(TcpKeepalive::new().with_time(secs(ns)?))
    }

    pub fn keep_alive_interval(&self) -> Result<u64, ErrorCode> {
        Ok(nanos(self.sock.tcp_keepalive_interval()?))
    }

    pub fn set_keep_alive_interval(&self, ns: u64) -> Result<(), ErrorCode> {
        self.set_keep_alive_params(TcpKeepalive::new().with_interval(secs(ns)?))
    }

    pub fn keep_alive_count(&self) -> Result<u32, ErrorCode> {
        Ok(self.sock.tcp_keepalive_retries()?)
    }

    pub fn set_keep_alive_count(&self, n: u32) -> Result<(), ErrorCode> {
        if n == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        self.set_keep_alive_params(TcpKeepalive::new().with_retries(n.min(MAX_KEEPALIVE_COUNT)))
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

    /// Sets the keep-alive parameters in `params`, leaving keep-alive
    /// itself as it was.
    fn set_keep_alive_params(&self, params: TcpKeepalive) -> Result<(), ErrorCode> {
        let on = self.sock.keepalive()?;
        self.sock.set_tcp_keepalive(&params)?;
        if !on {
            self.sock.set_keepalive(false)?;
        }
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up (the system counts in seconds), clamped.
fn secs(ns: u64) -> Result<Duration, ErrorCode> {
    if ns == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(Duration::from_secs(
        ns.div_ceil(1_000_000_000).min(MAX_KEEPALIVE_SECS),
    ))
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
    fn keep_alive_parameters_leave_keep_alive_as_it_was() {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let o = Options {
            sock: SockRef::from(&socket),
            family: IpAddressFamily::Ipv4,
        };
        assert!(!o.keep_alive().unwrap());
        o.set_keep_alive_idle_time(30_000_000_000).unwrap();
        o.set_keep_alive_interval(5_500_000_000).unwrap();
        o.set_keep_alive_count(3).unwrap();
        assert!(!o.keep_alive().unwrap(), "still off");
        assert_eq!(o.keep_alive_idle_time().unwrap(), 30_000_000_000);
        assert_eq!(o.keep_alive_interval().unwrap(), 6_000_000_000);
        assert_eq!(o.keep_alive_count().unwrap(), 3);
        o.set_keep_alive(true).unwrap();
        o.set_keep_alive_idle_time(60_000_000_000).unwrap();
        assert!(o.keep_alive().unwrap(), "still on");
    }

    #[test]
    fn durations_become_whole_seconds_and_zero_is_refused() {
        assert!(secs(0).is_err());
        let s = Duration::from_secs;
        assert_eq!(secs(1).unwrap(), s(1));
        assert_eq!(secs(1_000_000_000).unwrap(), s(1));
        assert_eq!(secs(1_000_000_001).unwrap(), s(2));
        assert_eq!(secs(u64::MAX).unwrap(), s(i16::MAX as u64));
        assert!(buffer_size(0).is_err());
        assert_eq!(buffer_size(u64::MAX).unwrap(), i32::MAX as usize);
    }
}
