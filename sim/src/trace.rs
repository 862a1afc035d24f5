//! The run's event trace and operation history, shared by every host of
//! one simulation (turmoil runs them all on one thread).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::rng::{fnv1a, FNV_START};

/// What an operation did, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read returned a value (with its CAS token when asked for).
    Value { value: Vec<u8>, cas: Option<u64> },
    /// A read missed.
    Miss,
    /// A write was acknowledged.
    Stored,
    /// A write was refused (CAS mismatch, add on existing, ...).
    Refused,
    /// The operation timed out or its connection broke: it may or may not
    /// have happened.
    Indeterminate,
}

/// One client operation with its invoke and complete times (sim time).
#[derive(Clone, Debug)]
pub struct Op {
    /// Client name.
    pub client: String,
    /// Which server it went to.
    pub server: &'static str,
    /// Key.
    pub key: String,
    /// `read`, `cas`, `set`, `add`, `incr`.
    pub kind: &'static str,
    /// Value written (for writes).
    pub written: Option<Vec<u8>>,
    /// CAS token a conditional write was made against.
    pub token: Option<u64>,
    /// Sim time the request was issued.
    pub invoke: Duration,
    /// Sim time the reply arrived (or the timeout fired).
    pub complete: Duration,
    /// What happened.
    pub outcome: Outcome,
}

/// A server (re)start or another fault, for the checker.
#[derive(Clone, Debug)]
pub struct Restart {
    /// Server name.
    pub server: &'static str,
    /// Sim time.
    pub at: Duration,
}

/// Everything recorded during one run.
#[derive(Default)]
pub struct Recorder {
    /// Operations, in completion order.
    pub ops: Vec<Op>,
    /// Server starts (the first start counts: the cache begins empty).
    pub restarts: Vec<Restart>,
    hash: u64,
    lines: usize,
    /// Keep the trace text (for `--trace`).
    pub keep_text: bool,
    /// The trace text, when kept.
    pub text: String,
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
        let text = format!("{:>10.3} {line}\n", at.as_secs_f64() * 1000.0);
        self.hash = fnv1a(text.as_bytes(), self.hash);
        self.lines += 1;
        if self.keep_text {
            self.text.push_str(&text);
        }
    }

    /// Records a completed operation.
    pub fn op(&mut self, op: Op) {
        let line = format!(
            "{} {} {} {} {:?} -> {:?} (invoked {:.3})",
            op.client,
            op.server,
            op.kind,
            op.key,
            op.written.as_deref().map(String::from_utf8_lossy),
            op.outcome,
            op.invoke.as_secs_f64() * 1000.0
        );
        self.event(op.complete, &line);
        self.ops.push(op);
    }

    /// Records a server start.
    pub fn restart(&mut self, server: &'static str, at: Duration) {
        self.event(at, &format!("{server} started (empty cache)"));
        self.restarts.push(Restart { server, at });
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

/// Current simulated time (monotonic, from the start of the run).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}
