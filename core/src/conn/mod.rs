//! Per-client protocol state: framing, pipelining, back-pressure, replies.

mod ascii_auth;
mod binary;
mod crawler;
mod dump;
mod meta;
mod observe_cmd;
mod output;
mod stats_cmd;
mod tally;
mod text;
mod tokens;
mod watch;

use alloc::vec::Vec;

use crate::clock::Clock;
use crate::config::{Config, Protocol};
use crate::observe::Sampler;
use crate::shards::{shard_of, Shards};
use crate::store::SharedValue;
use output::Output;
use tokens::Tokens;

pub(crate) use text::{StoreMode, StoreRequest, Stored};
pub(crate) use watch::WATCH_OUTPUT_MAX;

/// What a [`Connection::process`] call left behind, telling the host what to
/// do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// Every complete request was executed; more input is needed.
    NeedInput,
    /// The per-call request budget ran out with complete requests still
    /// buffered: call `process` again on the next pass, even without new
    /// input, after serving other connections.
    Yielded,
    /// Pending output is above the high-water mark: transmit it (wait for
    /// the socket to be writable) before calling `process` again, and do
    /// not read more input meanwhile.
    Blocked,
    /// The connection must be closed once the pending output is transmitted
    /// (`quit`, or a fatal protocol error).
    Close,
}

/// Buffered input beyond which the host is asked not to read more (unless
/// the buffer ends in an incomplete request, which needs the rest).
const INPUT_HIGH_WATER: usize = 64 * 1024;

/// Consumed input is dropped from the front of the buffer once it is at
/// least this large and at least half of the buffer.
const COMPACT_AT: usize = 64 * 1024;

/// Buffer capacity [`Connection::shrink`] leaves in place: enough for the
/// requests and replies of ordinary traffic without reallocating.
const SHRINK_FLOOR: usize = 4 * 1024;

/// Outcome of handling the request at the front of the input.
enum Step {
    /// The request was executed; this many input bytes are consumed.
    Done(usize),
    /// The request is incomplete (a data block is still arriving).
    Incomplete,
    /// A multiget or metadump stopped at the output high-water mark;
    /// resume later.
    Paused,
    /// The connection must close.
    Close,
}

/// The protocol a connection speaks, fixed by its first byte (see
/// [`Protocol`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// No byte has arrived yet.
    Undecided,
    Text,
    Binary,
}

impl Wire {
    /// memcached's negotiation: the binary request magic as the first byte
    /// picks the binary protocol, unless `-B` fixes one for all.
    fn choose(binding: Protocol, first: u8) -> Wire {
        match binding {
            Protocol::Ascii => Wire::Text,
            Protocol::Binary => Wire::Binary,
            Protocol::Auto if first == binary::REQUEST_MAGIC => Wire::Binary,
            Protocol::Auto => Wire::Text,
        }
    }
}

/// A multiget interrupted by back-pressure, resumed on the next call. The
/// request line stays at the front of the input until it completes.
struct PausedGet {
    /// Offset, within the line, of the next key to look up.
    cursor: usize,
    /// Length of the line without its line ending.
    line_len: usize,
    /// Length of the line including its line ending.
    consumed: usize,
    /// `gets`/`gats`: print the CAS.
    cas: bool,
    /// `gat`/`gats`: the new relative expiry to apply.
    touch: Option<u32>,
}

/// The protocol state of one client connection.
///
/// A `Connection` owns no socket and no store: the host feeds it received
/// bytes, lets it execute complete requests against the shared [`Store`](crate::Store),
/// and transmits the reply bytes it produces. Any split of the input into
/// `receive` calls produces the same replies. The connection's first byte
/// fixes its protocol for good, as memcached's `-B auto` does: `0x80`
/// starts the binary protocol, anything else the text (and meta) protocol
/// (`Config::protocol` can fix either for all connections).
///
/// Call order, once per event-loop pass:
/// 1. [`receive`](Connection::receive) the bytes read from the socket
///    (only while [`wants_input`](Connection::wants_input) is true);
/// 2. [`process`](Connection::process) with the current clock;
/// 3. write the [`output_chunks`](Connection::output_chunks) to the socket
///    in one vectored write (or [`pending_output`](Connection::pending_output)
///    in a loop) and report what was written with
///    [`consume_output`](Connection::consume_output);
/// 4. when nothing is pending and the connection waits for input, call
///    [`shrink`](Connection::shrink) so idle connections keep small buffers;
/// 5. if `process` returned [`Progress::Close`] (or
///    [`is_closing`](Connection::is_closing)) close the socket once the
///    pending output is gone.
///
/// Work per `process` call is bounded by `Config::requests_per_event`, and
/// parsing stops while pending output exceeds `Config::output_high_water`,
/// so a client that pipelines without reading cannot grow memory without
/// bound.
pub struct Connection {
    input: Vec<u8>,
    /// Bytes at the front of `input` already consumed.
    consumed: usize,
    /// The buffered input ends in an incomplete request.
    incomplete: bool,
    output: Output,
    /// A value could not be copied into the output for lack of memory; the
    /// current request's reply becomes an error and the connection closes.
    out_of_memory: bool,
    /// Bytes of input still to be discarded after a rejected data block.
    swallow: u64,
    paused: Option<PausedGet>,
    /// A metadump interrupted by back-pressure.
    dump: Option<dump::PausedDump>,
    closing: bool,
    /// The current command asked not to be answered.
    noreply: bool,
    unreported_read: u64,
    unreported_written: u64,
    /// Leading bytes of the front request already searched for its line
    /// ending without finding one (or up to the one found). A long line
    /// trickling in is then searched once, not once per `process` call.
    /// Reset whenever the front request is consumed.
    line_scanned: usize,
    /// Bytes searched for line endings so far: a deterministic measure of
    /// framing work, for tests.
    line_scan_work: u64,
    /// The protocol, once the first byte has arrived.
    wire: Wire,
    /// SASL authentication state (binary protocol, `-S`).
    sasl: binary::SaslState,
    /// The clock of the current `process` call, given to every shard taken.
    clock: Clock,
    /// The client said `quit`: its connection ends normally.
    quit: bool,
    /// ASCII authentication state (`-Y`).
    auth: ascii_auth::AuthPhase,
    /// The id of this connection in the store's connection table.
    stats_id: Option<u32>,
    /// Some command has run (`stats conns` tells new connections apart).
    ran_any: bool,
    /// Set once `watch` succeeded: the connection only relays log lines.
    watch: Option<crate::log::WatchId>,
    /// The descriptor number log lines print as `cfd`.
    log_fd: i32,
    /// The host worker serving this connection, woken for its log lines.
    log_owner: u32,
    /// Counters of this `process` call, added to the home shard at its end.
    tally: tally::Tally,
    /// Which of this connection's fetches `stats topkeys` samples (a
    /// driver lends its own for each call, see `swap_sampler`).
    sampler: Sampler,
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    /// A connection with empty buffers.
    pub fn new() -> Connection {
        Connection {
            input: Vec::new(),
            consumed: 0,
            incomplete: false,
            output: Output::new(),
            out_of_memory: false,
            swallow: 0,
            paused: None,
            dump: None,
            closing: false,
            noreply: false,
            unreported_read: 0,
            unreported_written: 0,
            line_scanned: 0,
            line_scan_work: 0,
            wire: Wire::Undecided,
            sasl: binary::SaslState::default(),
            clock: Clock::new(0, 0),
            quit: false,
            auth: ascii_auth::AuthPhase::default(),
            stats_id: None,
            ran_any: false,
            watch: None,
            log_fd: -1,
            log_owner: 0,
            tally: tally::Tally::default(),
            sampler: Sampler::default(),
        }
    }

    /// Appends bytes received from the client. Nothing is parsed until
    /// [`process`](Connection::process). When the input buffer cannot grow
    /// (the allocator is out of memory), the connection answers
    /// `SERVER_ERROR out of memory reading request`, as memcached does,
    /// and closes.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.closing {
            return;
        }
        self.unreported_read += bytes.len() as u64;
        if self.input.capacity() - self.input.len() < bytes.len()
            && self.input.try_reserve(bytes.len()).is_err()
        {
            self.fail(b"SERVER_ERROR out of memory reading request");
            return;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Whether the host should read more from the socket: false while output
    /// is backed up, while enough complete requests are already buffered,
    /// and once the connection is closing. Reading only what can be worked
    /// off keeps a fast sender from growing the input buffer.
    /// `cfg` is the store's configuration ([`Store::config`](crate::Store::config)); it is passed
    /// alone so a host can ask without holding the store.
    pub fn wants_input(&self, cfg: &Config) -> bool {
        let buffered = self.input.len() - self.consumed;
        !self.closing
            && self.pending_len() < cfg.output_high_water
            && (buffered < INPUT_HIGH_WATER || self.incomplete)
    }

    /// The first contiguous chunk of the bytes waiting to be transmitted;
    /// more may follow it (see [`output_chunks`](Connection::output_chunks)
    /// and [`pending_len`](Connection::pending_len)). Empty only when
    /// nothing can be sent now. Like memcached, replies are held back while
    /// a rejected data block is being discarded, and released together once
    /// it has been.
    #[must_use]
    pub fn pending_output(&self) -> &[u8] {
        if self.swallow > 0 {
            return &[];
        }
        self.output.first()
    }

    /// Every chunk of the bytes waiting to be transmitted, in order, none
    /// empty (none at all while replies are held back, as for
    /// [`pending_output`](Connection::pending_output)). Large values are
    /// chunks of their own, shared with the store rather than copied. A
    /// host gathers the chunks into one vectored write, so a reply is not
    /// split over several writes, and reports what was written with
    /// [`consume_output`](Connection::consume_output).
    pub fn output_chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let held_back = self.swallow > 0;
        self.output
            .chunks()
            .take(if held_back { 0 } else { usize::MAX })
    }

    /// Total bytes waiting to be transmitted, across all chunks (including
    /// replies held back while a rejected data block is discarded).
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.output.len()
    }

    /// Marks the first `n` pending bytes as transmitted (across chunks; at
    /// most [`pending_len`](Connection::pending_len)).
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.output.len());
        self.output.consume(n);
        self.unreported_written += n as u64;
    }

    /// Memory the connection holds privately, in bytes, for a host's memory
    /// budget: the input buffer's capacity, the owned output's capacity,
    /// and large values in the output that no one else holds any more (a
    /// value still in the store, or held by another connection too, is
    /// counted by neither). Changes with `receive`, `process`,
    /// `consume_output` and `shrink`, and with the store dropping or
    /// replacing a value this connection is sending.
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.input.capacity() + self.output.held_bytes()
    }

    /// Frees buffer capacity above a small floor (4 KiB of input, 4 KiB of
    /// output) that is not in use: the input buffer when no input is
    /// buffered, the output buffers when nothing is pending. A host calls it
    /// when a connection goes idle (its output is written and it waits for
    /// input), so that a connection that once carried a large request or
    /// reply goes back to small buffers; calling it at other times is
    /// harmless, but buffers freed early are allocated again.
    pub fn shrink(&mut self) {
        if self.consumed == self.input.len() && self.input.capacity() > SHRINK_FLOOR {
            self.input = Vec::new();
            self.consumed = 0;
        }
        self.output.shrink(SHRINK_FLOOR);
    }

    /// [`shrink`](Connection::shrink), handing over the output buffer
    /// instead of freeing it (for [`adopt_output`](Connection::adopt_output)
    /// on another connection).
    pub(crate) fn shrink_keeping(&mut self) -> Option<Vec<u8>> {
        let tail = self.output.take_idle_tail(SHRINK_FLOOR);
        self.shrink();
        tail
    }

    /// Exchanges the connection's `stats topkeys` sampling sequence with
    /// `other`: a driver lends its one sequence to each connection it runs
    /// and takes it back after, so that sampling is one in
    /// [`SAMPLE_EVERY`](crate::observe::SAMPLE_EVERY) of all its fetches,
    /// not the same positions of every connection's (a connection's own
    /// sequence would sample none of a short connection's fetches).
    pub(crate) fn swap_sampler(&mut self, other: &mut Sampler) {
        core::mem::swap(&mut self.sampler, other);
    }

    /// Capacity of the buffer replies are written to.
    pub(crate) fn output_capacity(&self) -> usize {
        self.output.tail_capacity()
    }

    /// Takes the empty `buf` to write replies to when nothing is pending
    /// and it is larger than the current buffer; returns the buffer not
    /// kept.
    pub(crate) fn adopt_output(&mut self, buf: Vec<u8>) -> Vec<u8> {
        self.output.adopt_tail(buf)
    }

    /// True once the connection must close after its pending output.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Why a connection that [`is_closing`](Connection::is_closing) ends,
    /// as `watch connevents` reports it: `quit` is normal, anything else
    /// that made the connection close (a request it cannot survive, a
    /// [`fail`](Connection::fail)) an error.
    pub fn close_reason(&self) -> crate::observe::CloseReason {
        if self.quit {
            crate::observe::CloseReason::Normal
        } else {
            crate::observe::CloseReason::Error
        }
    }

    /// Bytes of input searched for line endings so far. Each byte of a
    /// line is searched once however the line is split, so this stays
    /// linear in the input; tests assert that.
    #[doc(hidden)]
    pub fn line_scan_work(&self) -> u64 {
        self.line_scan_work
    }

    /// Ends the connection with one error line, sent even under `noreply`:
    /// buffered input is dropped, nothing more is parsed, and
    /// [`is_closing`](Connection::is_closing) becomes true. For a host that
    /// must shed the connection (its memory limit) while a reply is still
    /// possible, that is while nothing else is pending. A binary connection
    /// gets the error as an out-of-memory packet instead, its text without
    /// the `SERVER_ERROR ` prefix (as memcached's `out_of_memory` does).
    pub fn fail(&mut self, reply: &[u8]) {
        self.input = Vec::new();
        self.consumed = 0;
        self.incomplete = false;
        self.swallow = 0;
        self.paused = None;
        self.dump = None;
        if self.wire == Wire::Binary {
            self.bin_fail(reply);
        } else {
            self.out_err(reply);
        }
        self.closing = true;
    }

    /// Executes complete buffered requests against the cache: a
    /// [`Store`](crate::Store), or a host's [`Shards`] of one, taken one
    /// shard at a time (see [`shards`](crate::shards)).
    pub fn process<S: Shards>(&mut self, shards: &mut S, clock: Clock) -> Progress {
        self.clock = clock;
        self.tally.bytes(
            core::mem::take(&mut self.unreported_read),
            core::mem::take(&mut self.unreported_written),
        );
        self.auth.new_batch();
        let hwm = shards.config().output_high_water;
        let budget = shards.config().requests_per_event.max(1);
        let mut done = 0u32;
        let mut pos = self.consumed;
        let progress = loop {
            if self.closing {
                break Progress::Close;
            }
            if self.watch.is_some() {
                // A watcher runs no more commands; what it sends is dropped.
                pos = self.input.len();
                break Progress::NeedInput;
            }
            if self.swallow > 0 {
                let avail = (self.input.len() - pos) as u64;
                let n = avail.min(self.swallow);
                pos += n as usize;
                self.swallow -= n;
                if self.swallow > 0 {
                    break Progress::NeedInput;
                }
                continue;
            }
            if self.pending_len() >= hwm {
                break Progress::Blocked;
            }
            if done >= budget {
                self.home_shard(shards).stats.conn_yields += 1;
                break Progress::Yielded;
            }
            match self.step_checked(shards, pos) {
                Step::Done(n) => {
                    pos += n;
                    done += 1;
                    self.line_scanned = 0;
                }
                Step::Incomplete => break Progress::NeedInput,
                Step::Paused => break Progress::Blocked,
                Step::Close => {
                    self.closing = true;
                    break Progress::Close;
                }
            }
        };
        self.incomplete = progress == Progress::NeedInput && pos < self.input.len();
        if self.closing {
            self.input = Vec::new();
            self.consumed = 0;
        } else if pos == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        } else if pos >= COMPACT_AT && pos * 2 >= self.input.len() {
            // Amortised: consumed bytes are only shifted out once they are
            // the larger part of the buffer.
            self.input.drain(..pos);
            self.consumed = 0;
        } else {
            self.consumed = pos;
        }
        // One shard taken for this call's counters, however many keys it
        // read: before the replies leave, so a client that saw them sees
        // them counted by `stats` on any connection.
        if self.stats_id.is_some() || !self.tally.is_empty() {
            let mut home = self.home_shard(shards);
            self.tally.flush_into(&mut home);
            self.publish(&mut home, progress, done > 0);
        } else {
            self.ran_any |= done > 0;
        }
        progress
    }

    /// [`step`](Connection::step), then, if a value could not be copied
    /// into the output for lack of memory, replaces what the request wrote
    /// with memcached's error and closes: a reply cut short is worse than
    /// none.
    fn step_checked<S: Shards>(&mut self, shards: &mut S, pos: usize) -> Step {
        let mark = self.output.mark();
        let step = self.step(shards, pos);
        if !self.out_of_memory {
            return step;
        }
        self.out_of_memory = false;
        self.output.truncate(mark);
        self.fail(b"SERVER_ERROR out of memory writing get response");
        Step::Close
    }

    /// Appends an item's `value` and the `\r\n` after it to the output:
    /// a large value by reference to the item's buffer (`shared` returns it:
    /// [`Store::shared_value`] of the item), a smaller one as a copy (see
    /// [`output::SHARE_MIN`]). Every reply that carries a value writes it
    /// here. After a failed copy, values are skipped until the request ends
    /// (and is answered with an error).
    #[inline]
    pub(crate) fn push_value(
        &mut self,
        value: &[u8],
        shared: impl FnOnce() -> Option<SharedValue>,
    ) {
        if !self.out_of_memory && self.output.push_value(value, shared).is_err() {
            self.out_of_memory = true;
        }
    }

    /// [`push_value`](Connection::push_value) without the `\r\n`, for the
    /// binary protocol, which frames values by length.
    #[inline]
    pub(crate) fn push_raw_value(
        &mut self,
        value: &[u8],
        shared: impl FnOnce() -> Option<SharedValue>,
    ) {
        if !self.out_of_memory && self.output.push_value_then(value, shared, b"").is_err() {
            self.out_of_memory = true;
        }
    }

    /// Handles the request starting at `input[pos..]`.
    fn step<S: Shards>(&mut self, shards: &mut S, pos: usize) -> Step {
        if self.wire == Wire::Undecided {
            let Some(&first) = self.input.get(pos) else {
                return Step::Incomplete;
            };
            self.wire = Wire::choose(shards.config().binding(), first);
        }
        if self.wire == Wire::Binary {
            self.step_binary(shards, pos)
        } else {
            self.step_text(shards, pos)
        }
    }

    /// The shard holding `key`, advanced to this call's clock.
    pub(crate) fn key_shard<'s, S: Shards>(&self, shards: &'s mut S, key: &[u8]) -> S::Shard<'s> {
        let i = shard_of(key, shards.count());
        take(shards, i, self.clock, self.log_fd)
    }

    /// Shard `i`, advanced to this call's clock.
    pub(crate) fn nth_shard<'s, S: Shards>(&self, shards: &'s mut S, i: usize) -> S::Shard<'s> {
        take(shards, i, self.clock, self.log_fd)
    }

    /// The shard for what belongs to no key, advanced to this call's clock.
    pub(crate) fn home_shard<'s, S: Shards>(&self, shards: &'s mut S) -> S::Shard<'s> {
        take(shards, shards.home(), self.clock, self.log_fd)
    }

    /// Handles the text request starting at `input[pos..]`.
    fn step_text<S: Shards>(&mut self, shards: &mut S, pos: usize) -> Step {
        if self.must_authenticate(shards.config()) {
            let mut home = self.home_shard(shards);
            return self.step_auth(&mut home, pos);
        }
        if let Some(p) = self.paused.take() {
            return self.resume_get(shards, pos, p);
        }
        if let Some(d) = self.dump.take() {
            return self.resume_dump(shards, d);
        }
        // Only bytes not searched on an earlier call are searched now.
        let avail = self.input.len() - pos;
        let from = self.line_scanned.min(avail);
        let found = self.input[pos + from..].iter().position(|&b| b == b'\n');
        let Some(nl) = found.map(|i| from + i) else {
            self.line_scan_work += (avail - from) as u64;
            self.line_scanned = avail;
            return self.check_partial_line(shards.config(), pos);
        };
        self.line_scan_work += (nl + 1 - from) as u64;
        self.line_scanned = nl;
        let buf = &self.input[pos..];
        let cfg = shards.config();
        if nl > cfg.line_max && (!is_multiget_line(buf) || nl > cfg.multiget_line_max) {
            // A split-independent version of memcached's rule: a non-get
            // line longer than 2048 bytes is junk and closes the connection.
            return Step::Close;
        }
        // memcached strips a '\r' before the '\n' only when the line has
        // more than one byte, and stops at a NUL (it uses C strings).
        let mut end = nl;
        if nl > 1 && buf[nl - 1] == b'\r' {
            end -= 1;
        }
        let line_full = &buf[..end];
        let line_len = line_full.iter().position(|&b| b == 0).unwrap_or(end);
        self.noreply = false;
        self.dispatch(shards, pos, line_len, nl + 1)
    }

    /// No line ending yet: decide between waiting and closing.
    fn check_partial_line(&self, cfg: &Config, pos: usize) -> Step {
        let buf = &self.input[pos..];
        if buf.len() > cfg.line_max && (!is_multiget_line(buf) || buf.len() > cfg.multiget_line_max)
        {
            return Step::Close;
        }
        Step::Incomplete
    }

    /// Runs the command whose line is `input[pos..pos + line_len]`;
    /// `consumed` is the line's length including its ending.
    fn dispatch<S: Shards>(
        &mut self,
        shards: &mut S,
        pos: usize,
        line_len: usize,
        consumed: usize,
    ) -> Step {
        // The line is copied out of the input buffer only for commands that
        // need the input afterwards (storage commands peek at their data
        // block); everything else borrows it.
        let input = core::mem::take(&mut self.input);
        let line = &input[pos..pos + line_len];
        let toks = Tokens::new(line);
        let step = if toks.ntokens() < 2 || toks.get(0).len() < 2 {
            self.out(b"ERROR");
            Step::Done(consumed)
        } else {
            let data = &input[pos + consumed..];
            self.command(shards, &toks, line, data, consumed)
        };
        self.input = input;
        step
    }

    /// Writes one reply line unless the command asked for `noreply`; like
    /// memcached's `out_string`, a suppressed reply clears the flag.
    pub(crate) fn out(&mut self, s: &[u8]) {
        if self.noreply {
            self.noreply = false;
            return;
        }
        self.output.extend_from_slice(s);
        self.output.extend_from_slice(b"\r\n");
    }

    /// Writes an error that is sent even under `noreply`/`q` (memcached's
    /// `out_errstring`).
    pub(crate) fn out_err(&mut self, s: &[u8]) {
        self.noreply = false;
        self.out(s);
    }
}

/// Shard `i`, advanced to `clock`, its log lines naming `cfd`.
fn take<S: Shards>(shards: &mut S, i: usize, clock: Clock, cfd: i32) -> S::Shard<'_> {
    let mut shard = shards.shard(i);
    shard.advance(clock);
    if shard.log.is_watched() {
        shard.log.set_cfd(cfd);
    }
    shard
}

/// memcached lets over-long lines through only if they are multigets:
/// at most 100 leading spaces, then `get ` or `gets `.
fn is_multiget_line(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > 100 {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}
