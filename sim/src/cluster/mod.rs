//! Clusters of cache servers as clients see them: key placement
//! ([`hashing`]: pymemcache's rendezvous hashing, the ketama continuum of
//! libmemcached and twemproxy) and failover ([`pool`]: pymemcache's
//! `HashClient` retry and dead-server rules, libmemcached's and
//! twemproxy's auto-eject).

pub mod hashing;
pub mod pool;

pub use hashing::{Ketama, Placement, Rendezvous};
pub use pool::{remapped, Answer, Failover, Hashing, Pool};
