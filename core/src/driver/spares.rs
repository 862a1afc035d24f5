//! Output buffers that idle connections gave back, lent to the next
//! connection that runs.
//!
//! A connection's reply buffer is freed when the connection goes idle, so
//! that idle connections hold little. Behind a busy client that happens
//! after every reply: a reply larger than the floor (a 100-key multiget is
//! about 10 KB) then grows a fresh buffer from nothing, a reallocation at
//! each doubling, and frees it again. Where workers share a cache those
//! reallocations run while a shard is held, and they contend on the
//! allocator's own locks. Keeping a few such buffers per driver, as
//! memcached keeps per-thread buffer caches, makes steady traffic
//! allocate nothing.

use alloc::vec::Vec;

/// Buffers kept at most.
pub(super) const SPARES_MAX: usize = 16;
/// Buffers with more capacity than this are freed, not kept.
pub(super) const SPARE_CAP_MAX: usize = 64 * 1024;

/// A bounded stack of empty buffers and the bytes they hold.
///
/// Contract: every buffer kept is empty and holds at most
/// [`SPARE_CAP_MAX`] bytes; at most [`SPARES_MAX`] are kept; `bytes` is
/// their total capacity.
#[derive(Debug, Default)]
pub(super) struct Spares {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl Spares {
    /// Keeps `buf` (emptied) if there is room; returns the bytes now held
    /// for it (0 when it was freed instead).
    pub(super) fn give(&mut self, mut buf: Vec<u8>) -> usize {
        let cap = buf.capacity();
        if cap == 0 || cap > SPARE_CAP_MAX || self.bufs.len() >= SPARES_MAX {
            return 0;
        }
        if self.bufs.try_reserve(1).is_err() {
            return 0;
        }
        buf.clear();
        self.bufs.push(buf);
        self.bytes += cap;
        cap
    }

    /// The most recently kept buffer, if it holds more than `than` bytes.
    pub(super) fn take_larger(&mut self, than: usize) -> Option<Vec<u8>> {
        if self.bufs.last()?.capacity() <= than {
            return None;
        }
        let buf = self.bufs.pop()?;
        self.bytes -= buf.capacity();
        Some(buf)
    }

    /// Total capacity kept.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frees every buffer; returns the bytes freed.
    pub(super) fn clear(&mut self) -> usize {
        self.bufs = Vec::new();
        core::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_bounded_buffers() {
        let mut s = Spares::default();
        assert_eq!(s.give(Vec::new()), 0);
        assert_eq!(s.give(Vec::with_capacity(SPARE_CAP_MAX + 1)), 0);
        let mut kept = 0;
        for _ in 0..SPARES_MAX + 3 {
            let mut b = Vec::with_capacity(8192);
            b.extend_from_slice(b"left over");
            kept += s.give(b);
        }
        assert_eq!(s.bufs.len(), SPARES_MAX);
        assert_eq!(s.bytes(), kept);
        assert!(s.bufs.iter().all(Vec::is_empty));
        assert_eq!(s.clear(), kept);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn lends_only_a_buffer_larger_than_asked() {
        let mut s = Spares::default();
        let cap = s.give(Vec::with_capacity(8192));
        assert!(s.take_larger(cap).is_none());
        let b = s.take_larger(4096).map(|b| b.capacity());
        assert_eq!(b, Some(cap));
        assert_eq!(s.bytes(), 0);
        assert!(s.take_larger(0).is_none());
    }
}
