//! What the server tells operators about its traffic beyond the general
//! counters: the connection table (`stats conns`), per-prefix counters
//! (`stats detail`) and the most fetched keys (`stats topkeys`).

mod conns;
mod prefixes;
mod topkeys;

pub use conns::{addr_text, CloseReason, ConnPhase, ConnTable, ADDR_MAX, TABLE_MAX};
pub use prefixes::{PrefixStats, PREFIXES_MAX};
pub(crate) use topkeys::Sampler;
pub use topkeys::{TopKeys, SAMPLE_EVERY, TRACKED};

use core::net::SocketAddr;

use crate::clock::Clock;
use crate::config::Config;
use crate::log::flags;
use crate::store::Store;

/// The store's observability state.
#[derive(Clone, Debug)]
pub(crate) struct Observe {
    pub conns: ConnTable,
    pub prefixes: PrefixStats,
    pub topkeys: TopKeys,
}

impl Observe {
    pub(crate) fn new(cfg: &Config) -> Observe {
        Observe {
            conns: ConnTable::default(),
            prefixes: PrefixStats::new(cfg.detail_enabled, cfg.prefix_delimiter),
            topkeys: TopKeys::default(),
        }
    }

    /// A key looked up by a get-family command (`detail`, and `topkeys`
    /// when the connection's [`Sampler`] chose this fetch).
    pub(crate) fn fetched(&mut self, key: &[u8], hit: bool, sampled: bool) {
        self.prefixes.record_get(key, hit);
        if sampled {
            self.topkeys.record(key);
        }
    }

    /// `stats reset`.
    pub(crate) fn reset(&mut self) {
        self.prefixes.clear();
        self.topkeys.clear();
    }
}

impl Store {
    /// The table of the host's sockets that `stats conns` lists (see
    /// [`ConnTable`] for the host's part).
    pub fn conn_table_mut(&mut self) -> &mut ConnTable {
        &mut self.observe.conns
    }

    /// The host accepted a client from `peer` on the listener at `local`
    /// and registered it under `id` (its descriptor): the connection
    /// table gets it, and `watch connevents` a `conn_new` line stamped
    /// with `clock`.
    pub fn conn_opened(&mut self, id: u32, peer: SocketAddr, local: SocketAddr, clock: Clock) {
        self.advance(clock);
        self.observe.conns.open_peer(id, peer, local, clock.mono_ms);
        if self.log.wants(flags::CONNEVENTS) {
            self.log.conn_new(peer, cfd(id));
        }
    }

    /// The host closes the socket of client `id` for `reason`: it leaves
    /// the connection table, and `watch connevents` gets a `conn_close`
    /// line (for a client registered with
    /// [`conn_opened`](Store::conn_opened)).
    pub fn conn_closed(&mut self, id: u32, reason: CloseReason, clock: Clock) {
        self.advance(clock);
        if self.log.wants(flags::CONNEVENTS) {
            if let Some(peer) = self.observe.conns.peer(id) {
                self.log.conn_close(peer, reason, cfd(id));
            }
        }
        self.observe.conns.close(id);
    }
}

/// An id as the descriptor number the lines print.
fn cfd(id: u32) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn connections_are_listed_and_logged_from_open_to_close() {
        let clock = Clock::new(5_000, 1_795_776_731).with_micros(42);
        let mut store = Store::new(Config::default(), Clock::new(0, 1_795_776_700));
        let w = store.log.add_watcher(flags::CONNEVENTS, 0).unwrap();
        let peer: SocketAddr = "127.0.0.1:43094".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:11211".parse().unwrap();
        store.conn_opened(25, peer, local, clock);
        assert_eq!(store.observe.conns.len(), 1);
        store.conn_closed(
            25,
            CloseReason::Error,
            clock.advanced_ms(1).with_micros(1042),
        );
        assert!(store.observe.conns.is_empty());
        // A socket that was never registered leaves no line.
        store.conn_closed(26, CloseReason::Normal, clock.advanced_ms(2));
        let mut out = Vec::new();
        store.log.take(w, &mut out, usize::MAX);
        let text = core::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "ts=1795776731.42 gid=1 type=conn_new rip=127.0.0.1 rport=43094 transport=tcp cfd=25\n\
             ts=1795776731.1042 gid=2 type=conn_close rip=127.0.0.1 rport=43094 transport=tcp reason=error cfd=25\n"
        );
    }
}
