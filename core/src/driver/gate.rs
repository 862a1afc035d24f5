//! Whether a host accepts new connections: the connection limit and the
//! pause after the process ran out of descriptors.

/// What a refused client is told before it is hung up on (memcached's
/// `maxconns_fast` wording).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// How long accepting stays paused after the process ran out of
/// descriptors, unless a connection closes first. A listener with a queued
/// connection stays readable, so without a pause the host would wake at
/// once, fail to accept again, and spin.
pub const ACCEPT_RETRY_MS: u64 = 100;

/// What to do with a connection the host has just accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Serve it: hand it to [`Driver::open`](super::Driver::open).
    Serve,
    /// Write [`TOO_MANY_CONNECTIONS`] to it (best effort) and close it.
    Refuse,
}

/// Why an `accept` call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// `EMFILE`/`ENFILE`: no descriptor for the new socket.
    OutOfDescriptors,
    /// The peer went away before it was accepted (`ECONNABORTED`): nothing
    /// is wrong with the listener, accept the next one.
    Aborted,
    /// Any other failure. It may persist while the listener stays readable
    /// (under WASI running out of descriptors arrives as an unspecific
    /// error), so it pauses accepting like running out of descriptors.
    Other,
}

/// The accept side of a server.
///
/// One `Gate` per listener. Call order:
/// 1. poll the listener only while [`wants_accept`](Gate::wants_accept);
/// 2. for every socket accepted, ask [`admit`](Gate::admit) with the number
///    of connections the server holds now;
/// 3. when `accept` fails, report it with [`accept_failed`](Gate::accept_failed)
///    and stop accepting for this pass;
/// 4. report every closed connection with
///    [`connection_closed`](Gate::connection_closed);
/// 5. include [`poll_timeout`](Gate::poll_timeout) in the poll deadline.
#[derive(Clone, Debug)]
pub struct Gate {
    max_connections: usize,
    /// Accepting is paused until this monotonic millisecond.
    paused_until: Option<u64>,
    listen_disabled_num: u64,
    rejected: u64,
    accepted: u64,
}

impl Gate {
    /// A gate that serves at most `max_connections` at once (`-c`).
    pub fn new(max_connections: usize) -> Gate {
        Gate {
            max_connections: max_connections.max(1),
            paused_until: None,
            listen_disabled_num: 0,
            rejected: 0,
            accepted: 0,
        }
    }

    /// Whether the host should poll the listener and accept at `now_ms`.
    #[must_use]
    pub fn wants_accept(&self, now_ms: u64) -> bool {
        self.paused_until.is_none_or(|t| now_ms >= t)
    }

    /// Decides about a socket just accepted while the server holds `open`
    /// connections (not counting this one).
    pub fn admit(&mut self, open: usize) -> Admission {
        self.paused_until = None;
        if open >= self.max_connections {
            self.rejected += 1;
            return Admission::Refuse;
        }
        self.accepted += 1;
        Admission::Serve
    }

    /// Records a failed `accept`. Unless the peer merely went away,
    /// accepting pauses until a connection closes or [`ACCEPT_RETRY_MS`]
    /// pass (memcached's `listen_disabled_num` counts these pauses).
    pub fn accept_failed(&mut self, err: AcceptError, now_ms: u64) {
        if err != AcceptError::Aborted {
            if self.wants_accept(now_ms) {
                self.listen_disabled_num += 1;
            }
            self.paused_until = Some(now_ms + ACCEPT_RETRY_MS);
        }
    }

    /// A connection closed: a descriptor is free again, so accepting
    /// resumes.
    pub fn connection_closed(&mut self) {
        self.paused_until = None;
    }

    /// When accepting resumes by itself, if it is paused.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.paused_until
    }

    /// Whether accepting is paused now (`accepting_conns` is 0 then).
    #[must_use]
    pub fn is_paused(&self, now_ms: u64) -> bool {
        !self.wants_accept(now_ms)
    }

    /// Times accepting was paused for lack of descriptors.
    #[must_use]
    pub fn listen_disabled_num(&self) -> u64 {
        self.listen_disabled_num
    }

    /// Connections refused at the limit.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Connections admitted.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted
    }
}
