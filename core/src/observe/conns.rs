//! The connection table behind `stats conns`.
//!
//! The core owns no sockets, so the host tells it what it knows about each
//! one ([`ConnTable::listen`], [`ConnTable::open`], [`ConnTable::close`]);
//! connections then keep their own entry current at the end of every
//! `process` call (their state and when they last ran a command).
//!
//! The contract, for a host:
//!
//! * **Id**: a number unique among the host's open sockets (listeners and
//!   clients) at any moment, printed where memcached prints the file
//!   descriptor. A host with descriptors passes them (the native server
//!   and the wasm guest both do: wasi-libc numbers sockets too).
//! * **Addresses**: the text memcached prints, e.g. `tcp:127.0.0.1:11211`
//!   (`tcp6:[::1]:11211` for IPv6); at most [`ADDR_MAX`] bytes are kept.
//! * **Time**: milliseconds on the [`Clock`](crate::Clock)'s monotonic
//!   clock; `secs_since_last_cmd` is measured from the store's clock.
//! * **Lifetime**: register a client with
//!   [`Store::conn_opened`](crate::Store::conn_opened) (or
//!   [`ConnTable::open`], which logs nothing) after accepting it and give
//!   its [`Connection`](crate::Connection) the same id
//!   ([`Driver::set_stats_id`](crate::Driver::set_stats_id)); remove it
//!   with [`Store::conn_closed`](crate::Store::conn_closed) (or
//!   [`ConnTable::close`]) when its socket closes. The `Store` methods
//!   also make the `watch connevents` lines, which need the peer's
//!   address and why the connection ended. The table holds at most
//!   [`TABLE_MAX`] entries; later registrations are not listed.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Bytes of an address kept.
pub const ADDR_MAX: usize = 64;
/// Entries (listeners and clients) the table holds.
pub const TABLE_MAX: usize = 65_536;

/// Where a connection is, in memcached's state names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnPhase {
    /// A listening socket (`conn_listening`).
    Listening,
    /// Connected, no command yet, or yielded with requests buffered
    /// (`conn_new_cmd`).
    NewCmd,
    /// Waiting for (the rest of) a command line (`conn_read`).
    Read,
    /// Running a command: the connection asking (`conn_parse_cmd`).
    ParseCmd,
    /// Waiting for the rest of a data block (`conn_nread`).
    NRead,
    /// Discarding a refused data block (`conn_swallow`).
    Swallow,
    /// Output backed up to the high-water mark (`conn_mwrite`).
    Write,
    /// Closing after its last output (`conn_closing`).
    Closing,
}

impl ConnPhase {
    /// memcached's name for the state.
    pub fn name(self) -> &'static [u8] {
        match self {
            ConnPhase::Listening => b"conn_listening",
            ConnPhase::NewCmd => b"conn_new_cmd",
            ConnPhase::Read => b"conn_read",
            ConnPhase::ParseCmd => b"conn_parse_cmd",
            ConnPhase::NRead => b"conn_nread",
            ConnPhase::Swallow => b"conn_swallow",
            ConnPhase::Write => b"conn_mwrite",
            ConnPhase::Closing => b"conn_closing",
        }
    }
}

/// Why a client connection ended, as memcached's `conn_close` lines name
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its end, or sent `quit` (`normal`).
    Normal,
    /// A socket error, a request that ends the connection, or the server
    /// shedding it for memory (`error`).
    Error,
    /// Idle longer than `-o idle_timeout` (`idle_timeout`).
    IdleTimeout,
}

impl CloseReason {
    /// memcached's word for it.
    pub fn name(self) -> &'static [u8] {
        match self {
            CloseReason::Normal => b"normal",
            CloseReason::Error => b"error",
            CloseReason::IdleTimeout => b"idle_timeout",
        }
    }
}

/// One socket as `stats conns` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub addr: Vec<u8>,
    /// The client's address, for `connevents` lines.
    pub peer: Option<SocketAddr>,
    /// The listener's address, for client connections.
    pub listen_addr: Option<Vec<u8>>,
    pub phase: ConnPhase,
    pub last_cmd_ms: u64,
}

/// The host's sockets, by id.
#[derive(Clone, Debug, Default)]
pub struct ConnTable {
    entries: BTreeMap<u32, Entry>,
}

/// memcached's text for a TCP address: `tcp:127.0.0.1:11211`,
/// `tcp6:[::1]:11211`.
pub fn addr_text(a: SocketAddr) -> alloc::string::String {
    match a {
        SocketAddr::V4(a) => alloc::format!("tcp:{a}"),
        SocketAddr::V6(a) => alloc::format!("tcp6:{a}"),
    }
}

fn bounded(addr: &str) -> Vec<u8> {
    let b = addr.as_bytes();
    Vec::from(&b[..b.len().min(ADDR_MAX)])
}

impl ConnTable {
    /// Registers a listening socket, listening since `now_ms`.
    pub fn listen(&mut self, id: u32, addr: &str, now_ms: u64) {
        self.insert(id, bounded(addr), None, ConnPhase::Listening, now_ms);
    }

    /// Registers a client connection from `peer` accepted at `now_ms` on
    /// the listener at `local`, with memcached's address texts.
    pub fn open_peer(&mut self, id: u32, peer: SocketAddr, local: SocketAddr, now_ms: u64) {
        self.open(id, &addr_text(peer), &addr_text(local), now_ms);
        if let Some(e) = self.entries.get_mut(&id) {
            e.peer = Some(peer);
        }
    }

    /// The client address a connection registered with.
    pub(crate) fn peer(&self, id: u32) -> Option<SocketAddr> {
        self.entries.get(&id)?.peer
    }

    /// Registers a client connection accepted at `now_ms` from `addr` on
    /// the listener at `listen_addr`.
    pub fn open(&mut self, id: u32, addr: &str, listen_addr: &str, now_ms: u64) {
        let listen = Some(bounded(listen_addr));
        self.insert(id, bounded(addr), listen, ConnPhase::NewCmd, now_ms);
    }

    /// Forgets a socket that closed.
    pub fn close(&mut self, id: u32) {
        self.entries.remove(&id);
    }

    /// Sockets registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(
        &mut self,
        id: u32,
        addr: Vec<u8>,
        listen: Option<Vec<u8>>,
        phase: ConnPhase,
        ms: u64,
    ) {
        if self.entries.len() >= TABLE_MAX && !self.entries.contains_key(&id) {
            return;
        }
        let e = Entry {
            addr,
            peer: None,
            listen_addr: listen,
            phase,
            last_cmd_ms: ms,
        };
        self.entries.insert(id, e);
    }

    /// A connection's state after a `process` call; `ran_command` moves
    /// its last-command time to `now_ms`.
    pub(crate) fn update(&mut self, id: u32, phase: ConnPhase, ran_command: bool, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.phase = phase;
            if ran_command {
                e.last_cmd_ms = now_ms;
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u32, &Entry)> {
        self.entries.iter()
    }
}
