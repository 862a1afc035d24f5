//! Naming a driver's connections in the store's connection table.

use super::{ConnId, Driver};

impl Driver {
    /// Gives the connection the id the host registered it under in the
    /// store's connection table ([`crate::observe::ConnTable::open`]), so
    /// its entry follows its state and `stats conns` knows which one asks.
    pub fn set_stats_id(&mut self, id: ConnId, stats_id: u32) {
        if let Some(s) = self.slots.get_mut(id.index()) {
            s.conn.set_stats_id(stats_id);
        }
    }
}
