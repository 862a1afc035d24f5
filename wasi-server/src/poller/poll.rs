//! `poll(2)` over an array kept between waits (natively, where there is
//! no `epoll`).

use super::{Event, READ, WRITE};
use crate::net::Source;
use std::io;

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

    pub fn set(&mut self, token: usize, Source(fd): Source, _old: u8, new: u8) -> io::Result<()> {
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

    pub fn remove(&mut self, token: usize, _src: Source) {
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
