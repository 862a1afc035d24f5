//! The log lines, field for field as memcached 1.6.18 prints them.

use alloc::vec::Vec;

use super::{flags, Log};
use crate::num::{push_i64, push_u64};

/// Writes `ts=<secs>.<micros> gid=<n> `; memcached prints the
/// microseconds without zero padding (`%d`).
pub(super) fn head(out: &mut Vec<u8>, secs: u64, micros: u32, gid: u64) {
    out.extend_from_slice(b"ts=");
    push_u64(out, secs);
    out.push(b'.');
    push_u64(out, u64::from(micros));
    out.extend_from_slice(b" gid=");
    push_u64(out, gid);
    out.push(b' ');
}

/// Where a looked-up key was found (memcached's `was_found`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Missing,
    /// Found: its class and value length.
    Hit {
        clsid: u8,
        size: usize,
    },
    Flushed,
    Expired,
}

impl Log {
    /// `type=item_get key=… status=… clsid=… cfd=… size=…`.
    pub(crate) fn item_get(&mut self, key: &[u8], found: Lookup) {
        let cfd = self.cfd;
        self.emit(flags::FETCHERS, |l| {
            l.extend_from_slice(b"type=item_get key=");
            uriencode(l, key);
            let (status, clsid, size): (&[u8], u8, usize) = match found {
                Lookup::Missing => (b"not_found", 0, 0),
                Lookup::Hit { clsid, size } => (b"found", clsid, size),
                Lookup::Flushed => (b"flushed", 0, 0),
                Lookup::Expired => (b"expired", 0, 0),
            };
            l.extend_from_slice(b" status=");
            l.extend_from_slice(status);
            tail(l, clsid, cfd, size);
        });
    }

    /// `type=item_store key=… status=… cmd=… ttl=… clsid=… cfd=… size=…`;
    /// `ttl` is the stored item's (or the request's) exptime relative to
    /// now, as an unsigned 32-bit number.
    pub(crate) fn item_store(&mut self, s: &StoreLine<'_>) {
        let cfd = self.cfd;
        self.emit(flags::MUTATIONS, |l| {
            l.extend_from_slice(b"type=item_store key=");
            uriencode(l, s.key);
            l.extend_from_slice(b" status=");
            l.extend_from_slice(s.status);
            l.extend_from_slice(b" cmd=");
            l.extend_from_slice(s.cmd);
            l.extend_from_slice(b" ttl=");
            push_u64(l, u64::from(s.ttl));
            tail(l, s.clsid, cfd, s.size);
        });
    }

    /// `type=eviction key=… fetch=yes|no ttl=… la=… clsid=… size=…`;
    /// `ttl` is -1 for an item that never expires.
    pub(crate) fn eviction(&mut self, e: &EvictionLine<'_>) {
        self.emit(flags::EVICTIONS, |l| {
            l.extend_from_slice(b"type=eviction key=");
            uriencode(l, e.key);
            l.extend_from_slice(if e.fetched {
                b" fetch=yes"
            } else {
                b" fetch=no"
            });
            l.extend_from_slice(b" ttl=");
            push_i64(l, e.ttl);
            l.extend_from_slice(b" la=");
            push_i64(l, i64::from(e.last_access));
            l.extend_from_slice(b" clsid=");
            push_u64(l, u64::from(e.clsid));
            l.extend_from_slice(b" size=");
            push_u64(l, e.size as u64);
        });
    }
}

/// The fields of an `item_store` line.
pub(crate) struct StoreLine<'a> {
    pub key: &'a [u8],
    pub status: &'static [u8],
    pub cmd: &'static [u8],
    pub ttl: u32,
    pub clsid: u8,
    pub size: usize,
}

/// The fields of an `eviction` line.
pub(crate) struct EvictionLine<'a> {
    pub key: &'a [u8],
    pub fetched: bool,
    pub ttl: i64,
    pub last_access: u32,
    pub clsid: u8,
    pub size: usize,
}

fn tail(l: &mut Vec<u8>, clsid: u8, cfd: i32, size: usize) {
    l.extend_from_slice(b" clsid=");
    push_u64(l, u64::from(clsid));
    l.extend_from_slice(b" cfd=");
    push_i64(l, i64::from(cfd));
    l.extend_from_slice(b" size=");
    push_u64(l, size as u64);
}

/// memcached's `uriencode`: every byte but letters, digits and `-._~`
/// as `%XX` (upper-case hex).
fn uriencode(out: &mut Vec<u8>, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uri_encoded_as_memcached_does() {
        let mut out = Vec::new();
        uriencode(&mut out, "a/b%c~d.e-f_g:hé".as_bytes());
        assert_eq!(out, b"a%2Fb%25c~d.e-f_g%3Ah%C3%A9");
    }

    #[test]
    fn microseconds_are_not_padded() {
        let mut out = Vec::new();
        head(&mut out, 1795775432, 75891, 25);
        assert_eq!(out, b"ts=1795775432.75891 gid=25 ");
    }
}
