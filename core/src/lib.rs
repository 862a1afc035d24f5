//! # wasmcached-core
//!
//! The memcached protocol state machine and item store at the heart of
//! wasmcached. Every host (the WASI socket server, its native build, the
//! deterministic simulation, third-party embedders) runs this code and
//! nothing else decides what a command does.
//!
//! This crate is fully deterministic and performs no I/O. It is `no_std`
//! (with `alloc`): no sockets, threads, clock reads, randomness or global
//! state. Time comes in as a [`Clock`] value on each call; bytes come in
//! through [`Connection::receive`] and go out through
//! [`Connection::pending_output`]. Given the same configuration, clock
//! readings and input bytes, it produces the same output bytes.
//!
//! The compatibility target is memcached 1.6.18: replies are byte-for-byte
//! what that version sends, including its documented quirks.
//!
//! The API, in the style of a sans-io protocol library:
//!
//! * [`Store`]: the items, one per server, or one per shard where a host
//!   splits its cache so that threads do not share one lock ([`shards`]:
//!   the [`Shards`] trait a connection takes them through, one at a time);
//! * [`Connection`]: one client's protocol state and buffers;
//! * [`Driver`] and [`Gate`] ([`driver`]): the policy of a socket host:
//!   which connections to read, run and write and how much, when to sleep,
//!   when to stop accepting, how much memory connections may hold. Every
//!   host (the WASI server, its native workers, the simulation) runs them,
//!   so the policy exists once.
//!
//! See [`Driver`] for a host's call order, and [`Connection`] for the
//! lower-level one a driver follows.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod authfile;
mod clock;
mod config;
mod conn;
pub mod driver;
mod log;
mod num;
pub mod observe;
mod sasl;
pub mod shards;
mod slab;
mod stats;
mod store;
#[doc(hidden)]
pub mod transcript;

pub use authfile::{AuthFile, AuthFileError, AUTH_FILE_MAX};
pub use clock::Clock;
pub use config::{Config, HostSettings, Protocol};
pub use conn::{Connection, Progress};
pub use driver::{ConnId, Driver, DriverConfig, Gate};
pub use sasl::SaslDb;
pub use shards::Shards;
pub use stats::{HostStats, Stats};
pub use store::snapshot;
pub use store::snapshot::{Restore, Restored, Snapshot, SnapshotError};
pub use store::{CrawlerSettings, Shutdown, Store};
