//! What the server tells operators about its traffic beyond the general
//! counters: the connection table (`stats conns`), per-prefix counters
//! (`stats detail`) and the most fetched keys (`stats topkeys`).

mod conns;
mod prefixes;
mod topkeys;

pub use conns::{ConnPhase, ConnTable, ADDR_MAX, TABLE_MAX};
pub use prefixes::{PrefixStats, PREFIXES_MAX};
pub use topkeys::{TopKeys, SAMPLE_EVERY, TRACKED};

use crate::config::Config;
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

    /// A key looked up by a get-family command (`detail` and `topkeys`).
    pub(crate) fn fetched(&mut self, key: &[u8], hit: bool) {
        self.prefixes.record_get(key, hit);
        self.topkeys.record(key);
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
}
