//! Waiting for readiness on many sockets: `epoll` on Linux, `poll`
//! elsewhere (the wasm guest, where wasi-libc turns it into one
//! `wasi:io/poll` call).
//!
//! Interest is kept per token and the kernel is only told about changes,
//! so a pass over 10,000 mostly idle connections costs the kernel the ready
//! ones (epoll), not a scan of all of them (poll).

use std::io;
use std::os::fd::RawFd;

/// Readiness of one registered descriptor, reported by [`Poller::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token it was registered under.
    pub token: usize,
    /// Readable: data, end of stream or an error to read.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// The peer hung up or the socket failed: a read or write will say so.
    pub hangup: bool,
}

const REGISTERED: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;

fn mask(read: bool, write: bool) -> u8 {
    REGISTERED | if read { READ } else { 0 } | if write { WRITE } else { 0 }
}

/// Descriptors registered under small dense tokens, and what each waits
/// for.
///
/// Call order: [`set`](Poller::set) the interest of every descriptor (the
/// first call registers it; unchanged interest costs nothing), then
/// [`wait`](Poller::wait); [`remove`](Poller::remove) a token before its
/// descriptor is closed.
pub struct Poller {
    sys: Sys,
    /// What each token waits for (0: not registered).
    interest: Vec<u8>,
}

impl Poller {
    /// An empty poller.
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            sys: Sys::new()?,
            interest: Vec::new(),
        })
    }

    /// Waits for `read`/`write` readiness of `fd` under `token`. Neither
    /// keeps it registered while waiting for nothing.
    pub fn set(&mut self, token: usize, fd: RawFd, read: bool, write: bool) -> io::Result<()> {
        if self.interest.len() <= token {
            self.interest.resize(token + 1, 0);
        }
        let old = self.interest[token];
        let new = mask(read, write);
        if old == new {
            return Ok(());
        }
        self.sys.set(token, fd, old, new)?;
        self.interest[token] = new;
        Ok(())
    }

    /// Forgets `token`.
    pub fn remove(&mut self, token: usize, fd: RawFd) {
        if let Some(m) = self.interest.get_mut(token) {
            if *m != 0 {
                self.sys.remove(token, fd);
                *m = 0;
            }
        }
    }

    /// Waits up to `timeout_ms` (-1: until something is ready) and puts
    /// the ready tokens in `events` (cleared first). A signal ends the wait
    /// early with no events.
    pub fn wait(&mut self, timeout_ms: libc::c_int, events: &mut Vec<Event>) -> io::Result<()> {
        events.clear();
        match self.sys.wait(timeout_ms, events) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        }
    }
}

#[cfg(target_os = "linux")]
use epoll::Sys;
#[cfg(not(target_os = "linux"))]
use poll::Sys;

#[cfg(target_os = "linux")]
mod epoll {
    use super::{Event, READ, WRITE};
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

        pub fn set(&mut self, token: usize, fd: RawFd, old: u8, new: u8) -> io::Result<()> {
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

        pub fn remove(&mut self, _token: usize, fd: RawFd) {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: as above; failure (already closed) changes nothing.
            unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, &mut ev) };
        }

        pub fn wait(&mut self, timeout_ms: libc::c_int, out: &mut Vec<Event>) -> io::Result<()> {
            // SAFETY: `buf` holds BATCH writable events.
            let n = unsafe {
                libc::epoll_wait(self.epfd, self.buf.as_mut_ptr(), BATCH as i32, timeout_ms)
            };
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
}

#[cfg(not(target_os = "linux"))]
mod poll {
    use super::{Event, READ, WRITE};
    use std::io;
    use std::os::fd::RawFd;

    /// One `pollfd` per registered token, kept between waits.
    pub struct Sys {
        fds: Vec<libc::pollfd>,
        /// The token of each entry of `fds`.
        tokens: Vec<usize>,
        /// Where each token's entry is in `fds` (`usize::MAX`: none).
        at: Vec<usize>,
    }

    impl Sys {
        pub fn new() -> io::Result<Sys> {
            Ok(Sys {
                fds: Vec::new(),
                tokens: Vec::new(),
                at: Vec::new(),
            })
        }

        pub fn set(&mut self, token: usize, fd: RawFd, _old: u8, new: u8) -> io::Result<()> {
            let mut events = 0;
            if new & READ != 0 {
                events |= libc::POLLIN;
            }
            if new & WRITE != 0 {
                events |= libc::POLLOUT;
            }
            if self.at.len() <= token {
                self.at.resize(token + 1, usize::MAX);
            }
            match self.at[token] {
                usize::MAX => {
                    self.at[token] = self.fds.len();
                    self.fds.push(libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    });
                    self.tokens.push(token);
                }
                i => self.fds[i].events = events,
            }
            Ok(())
        }

        pub fn remove(&mut self, token: usize, _fd: RawFd) {
            let Some(&i) = self.at.get(token) else { return };
            if i == usize::MAX {
                return;
            }
            self.fds.swap_remove(i);
            self.tokens.swap_remove(i);
            if let Some(&moved) = self.tokens.get(i) {
                self.at[moved] = i;
            }
            self.at[token] = usize::MAX;
        }

        pub fn wait(&mut self, timeout_ms: libc::c_int, out: &mut Vec<Event>) -> io::Result<()> {
            // SAFETY: `fds` is a valid, exclusively borrowed array of
            // `pollfd` for the duration of the call, and its length is
            // passed.
            let n = unsafe {
                libc::poll(
                    self.fds.as_mut_ptr(),
                    self.fds.len() as libc::nfds_t,
                    timeout_ms,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for (p, &token) in self.fds.iter().zip(&self.tokens) {
                let r = p.revents;
                if r == 0 {
                    continue;
                }
                out.push(Event {
                    token,
                    readable: r & libc::POLLIN != 0,
                    writable: r & libc::POLLOUT != 0,
                    hangup: r & (libc::POLLHUP | libc::POLLERR) != 0,
                });
            }
            Ok(())
        }
    }
}
