//! The run's event trace and operation history, shared by every host of
//! one simulation (turmoil runs them all on one thread).
//!
//! The history is what the clients saw: each [`Op`] is one request to one
//! key of one server ([`Cmd`]), with the sim times it was issued and
//! answered and the reply ([`Outcome`]). Alongside it the recorder keeps
//! the [`Disruption`]s that make items vanish legally: server (re)starts,
//! evictions the server reported, flushes, node losses. The checkers
//! ([`crate::check`]) judge the history against them.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::rng::{fnv1a, FNV_START};

/// A storage command's mode (memcached's `set`/`add`/`replace`/`append`/
/// `prepend`/`cas`, or `ms` with `M` and `C`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Store unconditionally.
    Set,
    /// Store only if the key is missing.
    Add,
    /// Store only if the key exists.
    Replace,
    /// Append to an existing value (keeps flags and TTL).
    Append,
    /// Prepend to an existing value (keeps flags and TTL).
    Prepend,
    /// Store only if the item's CAS value is the one given.
    Cas,
}

/// What a client asked one server to do to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `get`/`gets`, or `mg` without lease flags.
    Get,
    /// A storage command. `ttl` is the raw exptime token (0: never,
    /// up to 30 days: relative seconds, larger: unix time, negative:
    /// already expired); `cas` is the token for [`Mode::Cas`].
    Store {
        /// Which storage command.
        mode: Mode,
        /// The data block.
        value: Vec<u8>,
        /// Client flags.
        flags: u32,
        /// Raw exptime.
        ttl: i64,
        /// CAS token compared (cas mode only).
        cas: Option<u64>,
    },
    /// `delete` / `md` (optionally compare-and-delete with `C`).
    Delete {
        /// CAS token compared.
        cas: Option<u64>,
    },
    /// `md <key> I [T<ttl>]`: mark the item stale (a new CAS value, the
    /// win token reset), optionally with a new TTL.
    Invalidate {
        /// New exptime, if any.
        ttl: Option<i64>,
    },
    /// `incr`/`decr` (or `ma`).
    Incr {
        /// Amount.
        delta: u64,
        /// `decr` rather than `incr`.
        decr: bool,
    },
    /// `touch` (or `mg` with `T` and nothing else).
    Touch {
        /// New exptime.
        ttl: i64,
    },
    /// `mg` with the anti-thundering-herd flags: `N<ttl>` (create an
    /// empty item on a miss and hand this client the win), `R<secs>`
    /// (hand out the win when the TTL left is below), `T<ttl>` (touch).
    MetaGet {
        /// `N`: vivify on miss with this TTL.
        vivify: Option<i64>,
        /// `R`: recache threshold in seconds.
        recache: Option<i64>,
        /// `T`: new TTL.
        touch: Option<i64>,
    },
}

impl Cmd {
    /// Short name for traces and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Get => "get",
            Cmd::Store { mode, .. } => match mode {
                Mode::Set => "set",
                Mode::Add => "add",
                Mode::Replace => "replace",
                Mode::Append => "append",
                Mode::Prepend => "prepend",
                Mode::Cas => "cas",
            },
            Cmd::Delete { .. } => "delete",
            Cmd::Invalidate { .. } => "invalidate",
            Cmd::Incr { decr: false, .. } => "incr",
            Cmd::Incr { decr: true, .. } => "decr",
            Cmd::Touch { .. } => "touch",
            Cmd::MetaGet { .. } => "mg",
        }
    }

    /// Whether the command reads the item (its reply carries a value).
    pub fn is_read(&self) -> bool {
        matches!(self, Cmd::Get | Cmd::MetaGet { .. })
    }
}

/// A read's hit, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The value.
    pub value: Vec<u8>,
    /// Client flags, when the reply carried them.
    pub flags: Option<u32>,
    /// CAS value, when asked for.
    pub cas: Option<u64>,
    /// `W`: this client won the right to recompute.
    pub win: bool,
    /// `Z`: a win was already handed out.
    pub sent: bool,
    /// `X`: the item is stale.
    pub stale: bool,
}

/// What an operation did, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read returned a value.
    Value(Hit),
    /// A read missed.
    Miss,
    /// `STORED`, `DELETED`, `TOUCHED`, `HD`.
    Stored,
    /// `incr`/`decr` returned the new value.
    Number(u64),
    /// `NOT_STORED` / `NS`.
    NotStored,
    /// `EXISTS` / `EX`: a CAS mismatch.
    Exists,
    /// `NOT_FOUND` / `NF`.
    NotFound,
    /// `SERVER_ERROR ...` or `CLIENT_ERROR ...`: the server refused the
    /// request (a failed storage request may also have removed the old
    /// item, as memcached does on an allocation failure).
    Error(String),
    /// The operation timed out or its connection broke: it may or may not
    /// have happened.
    Indeterminate,
}

impl Outcome {
    /// A positive acknowledgement (stored, deleted, touched, counted).
    pub fn is_ack(&self) -> bool {
        matches!(self, Outcome::Stored | Outcome::Number(_))
    }

    /// A negative reply to a write (`NOT_STORED`, `EXISTS`, `NOT_FOUND`).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Outcome::NotStored | Outcome::Exists | Outcome::NotFound
        )
    }
}

/// One client operation with its invoke and complete times (sim time).
#[derive(Clone, Debug)]
pub struct Op {
    /// Client name.
    pub client: Rc<str>,
    /// Which server it went to.
    pub server: &'static str,
    /// Key.
    pub key: String,
    /// The request.
    pub cmd: Cmd,
    /// Sim time the request was issued.
    pub invoke: Duration,
    /// Sim time the reply arrived (or the timeout fired).
    pub complete: Duration,
    /// The invocation's place in the run's execution order
    /// ([`Recorder::seq`]).
    pub first: u64,
    /// The completion's place in the execution order (set when recorded).
    pub last: u64,
    /// The client's end of the connection the request went out on (`None`:
    /// it never went out, the connection could not be opened).
    pub conn: Option<SocketAddr>,
    /// What happened.
    pub outcome: Outcome,
}

impl Op {
    /// The value this operation asked to store (storage commands).
    pub fn written(&self) -> Option<&[u8]> {
        match &self.cmd {
            Cmd::Store { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The CAS token a conditional write compared.
    pub fn token(&self) -> Option<u64> {
        match &self.cmd {
            Cmd::Store { cas, .. } | Cmd::Delete { cas } => *cas,
            _ => None,
        }
    }
}

/// Why items of a server may vanish at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The server (re)started with an empty cache.
    Restart,
    /// The server evicted items to make room (the key is not known).
    Eviction,
    /// A `flush_all` ran (any time in the window).
    Flush,
}

/// A window in which a server's items may have vanished, in sim time and
/// in execution order.
#[derive(Clone, Debug)]
pub struct Disruption {
    /// Server name.
    pub server: &'static str,
    /// Earliest sim time it may have happened.
    pub from: Duration,
    /// Latest sim time it may have happened.
    pub to: Duration,
    /// Earliest place in execution order.
    pub first: u64,
    /// Latest place in execution order.
    pub last: u64,
    /// What it was.
    pub cause: Cause,
}

/// A server accepted or closed a connection: requests sent on it take
/// effect between the two, if at all.
#[derive(Clone, Debug)]
pub struct Closed {
    /// Server name.
    pub server: &'static str,
    /// The client's end of the connection.
    pub peer: SocketAddr,
    /// Sim time.
    pub at: Duration,
    /// Its place in execution order.
    pub seq: u64,
}

/// A server (re)start, for the checkers.
#[derive(Clone, Debug)]
pub struct Restart {
    /// Server name.
    pub server: &'static str,
    /// Sim time.
    pub at: Duration,
    /// Its place in execution order.
    pub seq: u64,
    /// Its wall clock's offset from the clients' (seconds), which places
    /// absolute exptimes for this lifetime.
    pub unix_offset: i64,
}

/// Everything recorded during one run.
#[derive(Default)]
pub struct Recorder {
    /// Operations, in completion order.
    pub ops: Vec<Op>,
    /// Server starts (the first start counts: the cache begins empty).
    pub restarts: Vec<Restart>,
    /// Every window in which items may have vanished (restarts included).
    pub disruptions: Vec<Disruption>,
    /// Connections the servers accepted.
    pub accepted: Vec<Closed>,
    /// Connections the servers closed.
    pub closed: Vec<Closed>,
    hash: u64,
    lines: usize,
    /// Keep the trace text (for `--trace`).
    pub keep_text: bool,
    /// The trace text, when kept.
    pub text: String,
    line: String,
    seq: u64,
    /// Times a planted bug changed what a server did.
    pub plant_fired: u64,
}

/// Shared handle.
pub type Shared = Rc<RefCell<Recorder>>;

impl Recorder {
    /// A new shared recorder.
    pub fn shared(keep_text: bool) -> Shared {
        Rc::new(RefCell::new(Recorder {
            hash: FNV_START,
            keep_text,
            ..Recorder::default()
        }))
    }

    /// Appends one line to the trace.
    pub fn event(&mut self, at: Duration, line: &str) {
        let mut text = std::mem::take(&mut self.line);
        text.clear();
        let us = at.as_micros();
        let _ = writeln!(text, "{:>6}.{:03} {line}", us / 1000, us % 1000);
        self.hash = fnv1a(text.as_bytes(), self.hash);
        self.lines += 1;
        if self.keep_text {
            self.text.push_str(&text);
        }
        self.line = text;
    }

    /// The next place in the run's execution order. turmoil runs every
    /// host on one thread, so the order in which clients and servers call
    /// this is the order things happened in: a reply recorded before a
    /// request was issued came first, even within one tick of sim time.
    /// The checkers order operations by it.
    pub fn seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records a completed operation (its `last` is set now).
    pub fn op(&mut self, mut op: Op) {
        op.last = self.seq();
        let mut line = String::with_capacity(96);
        let _ = write!(
            line,
            "{} {} {} {}",
            op.client,
            op.server,
            op.cmd.name(),
            op.key
        );
        if let Some(w) = op.written() {
            line.push(' ');
            show(&mut line, w);
        }
        line.push_str(" -> ");
        match &op.outcome {
            Outcome::Value(h) => {
                line.push_str("hit ");
                show(&mut line, &h.value);
                if let Some(f) = h.flags {
                    let _ = write!(line, " f{f}");
                }
                if let Some(c) = h.cas {
                    let _ = write!(line, " c{c}");
                }
                for (on, flag) in [(h.win, " W"), (h.sent, " Z"), (h.stale, " X")] {
                    if on {
                        line.push_str(flag);
                    }
                }
            }
            other => {
                let _ = write!(line, "{other:?}");
            }
        }
        let us = op.invoke.as_micros();
        let _ = write!(line, " (invoked {}.{:03})", us / 1000, us % 1000);
        self.event(op.complete, &line);
        self.ops.push(op);
    }

    /// Records that `server` closed its connection from `peer` (after
    /// which no request sent on it can take effect). Not part of the
    /// trace: only the checkers use it.
    pub fn closed(&mut self, server: &'static str, peer: SocketAddr) {
        let seq = self.seq();
        self.closed.push(Closed {
            server,
            peer,
            at: now(),
            seq,
        });
    }

    /// Records that `server` accepted a connection from `peer`.
    pub fn accepted(&mut self, server: &'static str, peer: SocketAddr) {
        let seq = self.seq();
        self.accepted.push(Closed {
            server,
            peer,
            at: now(),
            seq,
        });
    }

    /// Records a server start.
    pub fn restart(&mut self, server: &'static str, at: Duration, unix_offset: i64) {
        let note = if unix_offset == 0 {
            String::new()
        } else {
            format!(", wall clock {unix_offset:+} s")
        };
        self.event(at, &format!("{server} started (empty cache{note})"));
        let seq = self.seq();
        self.restarts.push(Restart {
            server,
            at,
            seq,
            unix_offset,
        });
        self.disrupt(server, at, seq, Cause::Restart);
    }

    /// Records that `server`'s items may have vanished at any point from
    /// `from` (sim time, and `first` in execution order; see
    /// [`Recorder::seq`]) until now.
    pub fn disrupt(&mut self, server: &'static str, from: Duration, first: u64, cause: Cause) {
        let to = now();
        let last = self.seq();
        if cause != Cause::Restart {
            self.event(to, &format!("{server} {cause:?} since {from:?}"));
        }
        self.disruptions.push(Disruption {
            server,
            from,
            to,
            first,
            last,
            cause,
        });
    }

    /// Records that `server`'s items may vanish at any point from `from`
    /// (`first` in execution order) on, for good: an unanswered flush.
    pub fn disrupt_open(&mut self, server: &'static str, from: Duration, first: u64, cause: Cause) {
        self.disrupt(server, from, first, cause);
        if let Some(d) = self.disruptions.last_mut() {
            d.to = Duration::MAX;
            d.last = u64::MAX;
        }
    }

    /// Hash of the whole trace.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of trace lines.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// Writes `v` for a trace line: short values quoted whole, long ones by
/// their first bytes, length and hash (a trace line per 100 KB value
/// would cost more than the run).
fn show(out: &mut String, v: &[u8]) {
    if v.len() <= 40 {
        let _ = write!(out, "{:?}", String::from_utf8_lossy(v));
    } else {
        let _ = write!(
            out,
            "{:?}..({} bytes, {:016x})",
            String::from_utf8_lossy(&v[..24]),
            v.len(),
            fnv1a(v, FNV_START)
        );
    }
}

/// Current simulated time (monotonic, from the start of the run).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}
