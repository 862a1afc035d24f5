//! The server's sockets: one API, two implementations.
//!
//! Natively they are `std::net`'s, non-blocking, with the kernel's
//! descriptors. In the wasm guest they are `wasi:sockets` resources used
//! directly instead of through wasi-libc's POSIX layer, whose `poll`
//! looks every descriptor up in its table and gathers its pollables again
//! on each call. Here a connection's pollables are made once, when it is
//! first waited for, and kept until it closes (see [`crate::poller`]), so
//! a pass costs one `wasi:io/poll` call however many connections it waits
//! for.
//!
//! Contract, both platforms: a [`Listener`] and its accepted [`Stream`]s
//! never block; a read or write that cannot proceed fails with
//! `WouldBlock`, and the poller says when to try again. Every socket has a
//! descriptor number for `stats conns` and the verbose log: the kernel's
//! natively; in the guest, numbers handed out as POSIX hands out
//! descriptors (the lowest free one).

#[cfg(not(target_os = "wasi"))]
mod native;
#[cfg(not(target_os = "wasi"))]
pub use native::{Listener, Source, Stream};

#[cfg(any(target_os = "wasi", test))]
mod numbers;
#[cfg(target_os = "wasi")]
mod wasi;
#[cfg(target_os = "wasi")]
pub use wasi::{Listener, Source, Stream};
