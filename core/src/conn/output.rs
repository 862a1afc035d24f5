//! A connection's pending output: reply bytes in order, held as owned bytes
//! and as shared value buffers.
//!
//! Reply text (headers, status lines, small values) is appended to an owned
//! buffer. A large value is not copied: the output holds a reference to the
//! item's own value buffer ([`SharedValue`]) instead, so any number of
//! connections sending the same value hold one copy of it between them, and
//! a connection whose client does not read holds only its reply text.
//!
//! The output is a queue of chunks. Appends go to the owned buffer at its
//! back (the *tail*); a shared value seals the tail into the queue and
//! follows it, and a fresh tail follows the value. Hosts transmit the chunks
//! in order, preferably gathered into one vectored write so a reply is not
//! split over several writes.

use alloc::collections::{TryReserveError, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::store::SharedValue;

/// Values at least this long are sent from the item's shared buffer (when
/// the item stores its value apart) instead of being copied.
///
/// Below it copying wins: a copy of 16 KiB costs about as much as the
/// bookkeeping of a separate chunk and one more entry in a vectored write,
/// and holds the value's record only as long as the copy. At and above it,
/// copies are what makes many slow readers of one value expensive: each
/// would hold its own. Copied values are bounded by this size per value,
/// so a connection's owned output stays near the output high-water mark.
pub(crate) const SHARE_MIN: usize = 16 * 1024;

/// Transmitted bytes are dropped from the front of the tail once they are
/// at least this many and at least half of it.
const COMPACT_AT: usize = 64 * 1024;

/// One piece of pending output.
enum Chunk {
    Owned(Vec<u8>),
    /// A whole item value, shared with the store and other connections.
    Shared(SharedValue),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(v) => v,
        }
    }
}

/// The pending output of one connection. See the module documentation.
pub(crate) struct Output {
    /// Sealed chunks, oldest first; all of them come before `tail`.
    queue: VecDeque<Chunk>,
    /// Total length of the chunks in `queue`.
    queued: usize,
    /// Owned bytes after every queued chunk; appends go here.
    tail: Vec<u8>,
    /// Bytes of the first chunk (the queue's front, or the tail when the
    /// queue is empty) already transmitted.
    sent: usize,
}

/// Where the output ended at some moment, to cut it back there
/// ([`Output::truncate`]).
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    queue: usize,
    tail: usize,
}

impl Output {
    pub(crate) const fn new() -> Output {
        Output {
            queue: VecDeque::new(),
            queued: 0,
            tail: Vec::new(),
            sent: 0,
        }
    }

    /// Appends owned bytes.
    #[inline]
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
    }

    /// Appends one owned byte.
    #[inline]
    pub(crate) fn push(&mut self, byte: u8) {
        self.tail.push(byte);
    }

    /// Appends an item value and the `\r\n` after it. Values of at least
    /// [`SHARE_MIN`] bytes are referenced when `shared` yields the item's
    /// buffer (which must hold exactly `value`); other values are copied
    /// into owned memory, allocated fallibly since clients choose their
    /// size. On failure nothing is appended.
    pub(crate) fn push_value(
        &mut self,
        value: &[u8],
        shared: impl FnOnce() -> Option<SharedValue>,
    ) -> Result<(), TryReserveError> {
        self.push_value_then(value, shared, b"\r\n")
    }

    /// [`Output::push_value`] with `trailer` after the value instead of
    /// `\r\n` (the binary protocol frames values by length: no trailer).
    pub(crate) fn push_value_then(
        &mut self,
        value: &[u8],
        shared: impl FnOnce() -> Option<SharedValue>,
        trailer: &[u8],
    ) -> Result<(), TryReserveError> {
        if value.len() >= SHARE_MIN {
            if let Some(v) = shared() {
                self.push_shared(v);
                self.tail.extend_from_slice(trailer);
                return Ok(());
            }
        }
        let need = value.len() + trailer.len();
        if self.tail.capacity() - self.tail.len() < need {
            self.tail.try_reserve(need)?;
        }
        self.tail.extend_from_slice(value);
        self.tail.extend_from_slice(trailer);
        Ok(())
    }

    /// Appends a shared value: the tail is sealed and the value follows it.
    fn push_shared(&mut self, v: SharedValue) {
        if v.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let t = core::mem::take(&mut self.tail);
            self.queued += t.len();
            self.queue.push_back(Chunk::Owned(t));
        }
        self.queued += v.len();
        self.queue.push_back(Chunk::Shared(v));
    }

    /// Bytes not yet transmitted.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        if self.queue.is_empty() {
            self.tail.len() - self.sent
        } else {
            self.queued - self.sent + self.tail.len()
        }
    }

    /// The first pending chunk (empty only when nothing is pending).
    pub(crate) fn first(&self) -> &[u8] {
        match self.queue.front() {
            Some(c) => &c.bytes()[self.sent..],
            None => &self.tail[self.sent..],
        }
    }

    /// Every pending chunk, in order; none is empty.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let sent = self.sent;
        self.queue
            .iter()
            .map(Chunk::bytes)
            .chain(core::iter::once(&self.tail[..]))
            .enumerate()
            .map(move |(i, c)| if i == 0 { &c[sent..] } else { c })
            .filter(|c| !c.is_empty())
    }

    /// Marks `n` bytes (at most [`Output::len`]) as transmitted.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        if self.queue.is_empty() && n == self.tail.len() - self.sent {
            // Everything went out, the common case.
            self.tail.clear();
            self.sent = 0;
        } else {
            self.consume_partly(n);
        }
    }

    fn consume_partly(&mut self, mut n: usize) {
        while let Some(front) = self.queue.front() {
            let flen = front.bytes().len();
            let left = flen - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.queued -= flen;
            self.sent = 0;
            self.queue.pop_front();
        }
        self.sent += n.min(self.tail.len() - self.sent);
        if self.sent == self.tail.len() {
            self.tail.clear();
            self.sent = 0;
        } else if self.sent >= COMPACT_AT && self.sent * 2 >= self.tail.len() {
            // A socket that keeps accepting partial writes would otherwise
            // let the transmitted prefix (and the buffer) grow forever.
            self.tail.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Memory this output holds on its own: owned buffers' capacity, queue
    /// slots, and shared values no one else holds (a value the store or
    /// another connection still holds is not this output's to count).
    pub(crate) fn held_bytes(&self) -> usize {
        let queued: usize = self
            .queue
            .iter()
            .map(|c| match c {
                Chunk::Owned(v) => v.capacity(),
                Chunk::Shared(v) if Arc::strong_count(v) == 1 => v.len(),
                Chunk::Shared(_) => 0,
            })
            .sum();
        self.tail.capacity() + self.queue.capacity() * core::mem::size_of::<Chunk>() + queued
    }

    /// With nothing pending, frees buffers above `floor` bytes (they are
    /// allocated again when needed). Does nothing while output is pending.
    pub(crate) fn shrink(&mut self, floor: usize) {
        if self.len() != 0 {
            return;
        }
        if self.tail.capacity() > floor {
            self.tail = Vec::new();
        }
        if self.queue.capacity() * core::mem::size_of::<Chunk>() > floor {
            self.queue = VecDeque::new();
        }
    }

    /// With nothing pending, hands over the owned buffer if it holds more
    /// than `floor` bytes, leaving an empty one: for a host to lend to
    /// another connection instead of freeing it.
    pub(crate) fn take_idle_tail(&mut self, floor: usize) -> Option<Vec<u8>> {
        if self.len() != 0 || self.tail.capacity() <= floor {
            return None;
        }
        Some(core::mem::take(&mut self.tail))
    }

    /// Capacity of the owned buffer appends go to.
    pub(crate) fn tail_capacity(&self) -> usize {
        self.tail.capacity()
    }

    /// Takes the empty `buf` as the owned buffer when nothing is pending
    /// and it is the larger; returns the buffer not kept.
    pub(crate) fn adopt_tail(&mut self, buf: Vec<u8>) -> Vec<u8> {
        if self.len() != 0 || !self.queue.is_empty() || buf.capacity() <= self.tail.capacity() {
            return buf;
        }
        let mut old = core::mem::replace(&mut self.tail, buf);
        self.tail.clear();
        self.sent = 0;
        old.clear();
        old
    }

    /// Makes room for `n` more owned bytes now, so that appends of up to
    /// that many later allocate nothing: called before a shard is taken, so
    /// that a reply grows outside the shard's lock. Grows by doubling;
    /// should memory run out, nothing changes and the appends allocate
    /// (fallibly, for values) as they would have.
    pub(crate) fn reserve_ahead(&mut self, n: usize) {
        if self.tail.capacity() - self.tail.len() < n {
            let _ = self.tail.try_reserve(n);
        }
    }

    /// The current end of the output.
    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            queue: self.queue.len(),
            tail: self.tail.len(),
        }
    }

    /// Drops what was appended after `mark`. Nothing may have been consumed
    /// since the mark was taken.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        if self.queue.len() > mark.queue {
            // The tail of the mark was sealed into the queue at `mark.queue`
            // if it held anything; make it the tail again.
            let mut rest = self.queue.split_off(mark.queue);
            self.queued -= rest.iter().map(|c| c.bytes().len()).sum::<usize>();
            self.tail = match rest.pop_front() {
                Some(Chunk::Owned(v)) if mark.tail > 0 => v,
                _ => Vec::new(),
            };
        }
        self.tail.truncate(mark.tail);
    }
}

impl<'a> Extend<&'a u8> for Output {
    #[inline]
    fn extend<I: IntoIterator<Item = &'a u8>>(&mut self, iter: I) {
        self.tail.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn shared(n: usize, b: u8) -> SharedValue {
        Arc::new(vec![b; n].into_boxed_slice())
    }

    fn all(o: &Output) -> Vec<u8> {
        o.chunks().flatten().copied().collect()
    }

    #[test]
    fn chunks_and_partial_consumption() {
        let mut o = Output::new();
        o.extend_from_slice(b"VALUE k 0 20000\r\n");
        let v = shared(SHARE_MIN + 4, b'x');
        o.push_value(&v[..], || Some(v.clone())).unwrap();
        o.extend_from_slice(b"END\r\n");
        let mut want = b"VALUE k 0 20000\r\n".to_vec();
        want.extend_from_slice(&v[..]);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(o.len(), want.len());
        assert_eq!(all(&o), want);
        assert_eq!(o.chunks().count(), 3);
        // Consume in odd steps; the pending bytes are always the suffix.
        let mut gone = 0;
        for step in [3, 14, 1, 9000, 7389, 3, 5] {
            o.consume(step);
            gone += step;
            assert_eq!(all(&o), want[gone.min(want.len())..]);
            assert_eq!(o.len(), want.len() - gone.min(want.len()));
            assert!(want[gone.min(want.len())..].starts_with(o.first()));
        }
        o.consume(usize::MAX);
        assert_eq!(o.len(), 0);
        assert!(o.first().is_empty());
        assert_eq!(o.chunks().count(), 0);
    }

    #[test]
    fn small_values_are_copied() {
        let mut o = Output::new();
        let v = shared(SHARE_MIN - 1, b'y');
        o.push_value(&v[..], || Some(v.clone())).unwrap();
        assert_eq!(o.chunks().count(), 1);
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn held_bytes_counts_only_sole_holders() {
        let mut o = Output::new();
        let v = shared(SHARE_MIN, b'z');
        o.push_value(&v[..], || Some(v.clone())).unwrap();
        let shared_held = o.held_bytes();
        assert!(shared_held < 1024);
        drop(v);
        assert_eq!(o.held_bytes(), shared_held + SHARE_MIN);
    }

    #[test]
    fn truncate_undoes_appends_across_seals() {
        let mut o = Output::new();
        o.extend_from_slice(b"A\r\n");
        o.consume(1);
        let m = o.mark();
        o.extend_from_slice(b"VALUE");
        let v = shared(SHARE_MIN, b'q');
        o.push_value(&v[..], || Some(v.clone())).unwrap();
        o.extend_from_slice(b"VALUE");
        o.truncate(m);
        assert_eq!(all(&o), b"\r\n");
        assert_eq!(o.len(), 2);
        let empty = Output::new();
        let m = empty.mark();
        let mut o = empty;
        o.push_value(&v[..], || Some(v.clone())).unwrap();
        o.truncate(m);
        assert_eq!(o.len(), 0);
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn shrink_frees_big_idle_buffers() {
        let mut o = Output::new();
        o.extend_from_slice(&[0u8; 100_000]);
        o.shrink(4096);
        assert!(o.held_bytes() >= 100_000);
        o.consume(100_000);
        o.shrink(4096);
        assert_eq!(o.held_bytes(), 0);
    }

    #[test]
    fn an_idle_buffer_is_handed_over_and_adopted_only_when_nothing_is_pending() {
        let mut o = Output::new();
        o.extend_from_slice(&[1u8; 10_000]);
        assert!(o.take_idle_tail(4096).is_none(), "pending output stays");
        let big = Vec::with_capacity(32 * 1024);
        let back = o.adopt_tail(big);
        assert_eq!(back.capacity(), 32 * 1024, "not adopted while pending");
        o.consume(10_000);
        let tail = o.take_idle_tail(4096).map(|t| t.capacity());
        assert!(tail.is_some_and(|c| c >= 10_000));
        assert_eq!(o.tail_capacity(), 0);
        assert!(o.take_idle_tail(4096).is_none());
        let old = o.adopt_tail(back);
        assert_eq!(old.capacity(), 0);
        assert_eq!(o.tail_capacity(), 32 * 1024);
        o.extend_from_slice(b"VALUE k 0 1\r\n");
        assert_eq!(all(&o), b"VALUE k 0 1\r\n");
        let smaller = o.adopt_tail(Vec::with_capacity(64));
        assert_eq!(smaller.capacity(), 64);
    }

    #[test]
    fn reserve_ahead_makes_later_appends_allocation_free() {
        let mut o = Output::new();
        o.extend_from_slice(b"x");
        o.reserve_ahead(2048);
        let cap = o.tail_capacity();
        assert!(cap >= 2049);
        o.extend_from_slice(&[0u8; 2048]);
        assert_eq!(o.tail_capacity(), cap);
        o.reserve_ahead(10);
        assert!(o.tail_capacity() >= 2 * cap, "grows by doubling");
    }
}
