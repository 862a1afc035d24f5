//! `epoll`, level-triggered, keyed by token.

use super::{Event, READ, WRITE};
use crate::net::Source;
use std::io;
use std::os::fd::RawFd;

/// Events taken from the kernel per wait.
const BATCH: usize = 1024;

pub struct Sys {
    epfd: RawFd,
    buf: Vec<libc::epoll_event>,
}

impl Sys {
    pub fn new() -> io::Result<Sys> {
        // SAFETY: plain syscall; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sys {
            epfd,
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; BATCH],
        })
    }

    pub fn set(&mut self, token: usize, Source(fd): Source, old: u8, new: u8) -> io::Result<()> {
        // Level-triggered: a socket the host did not drain is reported
        // again, as with poll.
        let mut events = 0u32;
        if new & READ != 0 {
            events |= libc::EPOLLIN as u32;
        }
        if new & WRITE != 0 {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event {
            events,
            u64: token as u64,
        };
        let op = if old == 0 {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        // SAFETY: `ev` is a valid epoll_event for the call.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&mut self, _token: usize, Source(fd): Source) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as above; failure (already closed) changes nothing.
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    pub fn wait(&mut self, timeout_ms: libc::c_int, out: &mut Vec<Event>) -> io::Result<()> {
        // SAFETY: `buf` holds BATCH writable events.
        let n =
            unsafe { libc::epoll_wait(self.epfd, self.buf.as_mut_ptr(), BATCH as i32, timeout_ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for ev in &self.buf[..n as usize] {
            let e = ev.events;
            out.push(Event {
                token: ev.u64 as usize,
                readable: e & libc::EPOLLIN as u32 != 0,
                writable: e & libc::EPOLLOUT as u32 != 0,
                hangup: e & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0,
            });
        }
        Ok(())
    }
}

impl Drop for Sys {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.epfd) };
    }
}
