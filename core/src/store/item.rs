//! The byte layout of one stored item (its "record") and typed views of it.
//!
//! An item lives as one packed record in the [`Arena`](super::arena::Arena):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 7 | CAS, 56 bits little-endian |
//! | 7 | 1 | state [`bits`] |
//! | 8 | 4 | LRU `prev` handle |
//! | 12 | 4 | LRU `next` handle |
//! | 16 | 4 | last access, store-relative seconds |
//! | 20 | 1 | key length |
//! | 21 | 1–5 | value length, LEB128 |
//! | … | 0 or 4 | client flags, present only when non-zero ([`bits::HAS_FLAGS`]) |
//! | … | 0 or 4 | exptime, present only when set ([`bits::HAS_EXPTIME`]) |
//! | … | klen | key |
//! | … | vlen | value |
//!
//! A record of the arena's large class keeps its value apart from the rest
//! (see [`Rec`]): the record's bytes then end with the key, and the value
//! is a separately allocated [`SharedValue`].
//!
//! memcached drops the flags word when it is zero; we do the same and also
//! drop the exptime, because most caches store most items with neither.
//! With a 10-byte key and a 64-byte value a record is 96 bytes.
//!
//! CAS values are 56 bits wide: at ten million mutations per second the
//! counter lasts over two hundred years, and 1.6.18 has no way for a client
//! to choose a CAS value, so every stored CAS comes from the store's counter.

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::arena::SharedValue;
use crate::slab;

/// Sentinel handle for "no neighbour" in the LRU list.
pub(crate) const NIL: u32 = u32::MAX;

/// Largest CAS value a record holds.
pub(crate) const CAS_MAX: u64 = (1 << 56) - 1;

/// Per-item state bits. memcached keeps the first five in `it_flags`.
pub(crate) mod bits {
    /// The item has been read at least once since it was stored.
    pub const FETCHED: u8 = 1;
    /// Read twice or more; memcached only refreshes the access time of an
    /// item when it becomes active, and so do we.
    pub const ACTIVE: u8 = 2;
    /// A client received the right to recache it (meta `W`).
    pub const TOKEN_SENT: u8 = 4;
    /// Invalidated by `md I` or a stale `ms I`; served with `X`.
    pub const STALE: u8 = 8;
    /// Stored with a base64 (`b`) key: the key is printed back in base64.
    pub const KEY_BINARY: u8 = 16;
    /// The record carries a client flags word (flags are non-zero).
    pub(crate) const HAS_FLAGS: u8 = 32;
    /// The record carries an exptime word (the item expires).
    pub(crate) const HAS_EXPTIME: u8 = 64;
    /// Bits that describe the layout, not the item's state; callers never
    /// set or clear them directly.
    pub(crate) const LAYOUT: u8 = HAS_FLAGS | HAS_EXPTIME;
}

const BITS: usize = 7;
const PREV: usize = 8;
const NEXT: usize = 12;
const TIME: usize = 16;
const KLEN: usize = 20;
const VLEN: usize = 21;

/// Bytes a value length takes in LEB128.
fn varint_len(v: usize) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// A record as the arena hands it out. `head` is the record's bytes; for a
/// record whose value is stored apart, `value` is that value and `head`
/// ends with the key. Otherwise the value follows the key inside `head`.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub head: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> From<&'a [u8]> for Rec<'a> {
    fn from(head: &'a [u8]) -> Rec<'a> {
        Rec { head, value: None }
    }
}

/// A record, writable: see [`Rec`].
pub(crate) struct RecMut<'a> {
    pub head: &'a mut [u8],
    pub value: Option<&'a mut SharedValue>,
}

impl<'a> From<&'a mut [u8]> for RecMut<'a> {
    fn from(head: &'a mut [u8]) -> RecMut<'a> {
        RecMut { head, value: None }
    }
}

/// The bytes of a value stored apart, writable. Free when no reader holds
/// the value; otherwise the value is copied first and readers keep the
/// bytes they were given.
fn unshare(v: &mut SharedValue) -> &mut [u8] {
    let bytes: &mut Box<[u8]> = Arc::make_mut(v);
    bytes
}

/// The shape of a record: everything needed to size and write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub klen: usize,
    pub vlen: usize,
    pub flags: u32,
    pub exptime: u32,
}

impl Shape {
    /// Size of the record in bytes.
    pub fn size(&self) -> usize {
        VLEN + varint_len(self.vlen)
            + if self.flags != 0 { 4 } else { 0 }
            + if self.exptime != 0 { 4 } else { 0 }
            + self.klen
            + self.vlen
    }

    /// Writes a fresh record of this shape into `rec` (whose head is at
    /// least [`Shape::size`] bytes, less the value's when the value is
    /// stored apart): LRU links unset, CAS and time zero, the value the
    /// concatenation of `parts`. A value stored apart must be `vlen` bytes
    /// long and is written in place when unshared (a fresh record's is).
    pub fn write(&self, rec: RecMut<'_>, key: &[u8], parts: &[&[u8]], state: u8) {
        let at = self.write_head(rec.head, key, state);
        let dst = match rec.value {
            Some(v) => unshare(v),
            None => &mut rec.head[at..],
        };
        let mut at = 0;
        for p in parts {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
    }

    /// Writes every field but the value (see [`Shape::write`]) and returns
    /// where a value stored inline starts.
    fn write_head(&self, rec: &mut [u8], key: &[u8], state: u8) -> usize {
        rec[..BITS].fill(0);
        let mut layout = 0;
        if self.flags != 0 {
            layout |= bits::HAS_FLAGS;
        }
        if self.exptime != 0 {
            layout |= bits::HAS_EXPTIME;
        }
        rec[BITS] = (state & !bits::LAYOUT) | layout;
        rec[PREV..NEXT].copy_from_slice(&NIL.to_le_bytes());
        rec[NEXT..TIME].copy_from_slice(&NIL.to_le_bytes());
        rec[TIME..KLEN].fill(0);
        // Keys are checked against the 250-byte limit before any record is
        // built, so the length always fits.
        rec[KLEN] = key.len().min(255) as u8;
        let mut at = VLEN;
        let mut v = self.vlen;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                rec[at] = byte;
                at += 1;
                break;
            }
            rec[at] = byte | 0x80;
            at += 1;
        }
        if self.flags != 0 {
            rec[at..at + 4].copy_from_slice(&self.flags.to_le_bytes());
            at += 4;
        }
        if self.exptime != 0 {
            rec[at..at + 4].copy_from_slice(&self.exptime.to_le_bytes());
            at += 4;
        }
        rec[at..at + key.len()].copy_from_slice(key);
        at + key.len()
    }
}

/// Where the variable part of a record starts.
#[derive(Clone, Copy)]
struct Offsets {
    /// Offset of the flags word (if present): the end of the value length.
    flags: usize,
    /// Offset of the key.
    key: usize,
    klen: usize,
    vlen: usize,
}

#[inline]
fn offsets(rec: &[u8]) -> Offsets {
    let first = rec[VLEN];
    let (vlen, at) = if first < 0x80 {
        (usize::from(first), VLEN + 1)
    } else {
        let mut at = VLEN;
        let mut vlen = 0usize;
        let mut shift = 0;
        loop {
            let b = rec[at];
            at += 1;
            vlen |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift >= 35 {
                break;
            }
        }
        (vlen, at)
    };
    let state = rec[BITS];
    let key = at
        + if state & bits::HAS_FLAGS != 0 { 4 } else { 0 }
        + if state & bits::HAS_EXPTIME != 0 { 4 } else { 0 };
    Offsets {
        flags: at,
        key,
        klen: usize::from(rec[KLEN]),
        vlen,
    }
}

fn read_u32(rec: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&rec[at..at + 4]);
    u32::from_le_bytes(b)
}

fn write_u32(rec: &mut [u8], at: usize, v: u32) {
    rec[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A read-only view of a stored item. The variable offsets are decoded
/// once, when the view is made.
#[derive(Clone, Copy)]
pub(crate) struct ItemRef<'a> {
    rec: &'a [u8],
    /// The value, when it is stored apart.
    apart: Option<&'a [u8]>,
    o: Offsets,
}

impl<'a> ItemRef<'a> {
    #[inline]
    pub fn new(rec: Rec<'a>) -> ItemRef<'a> {
        ItemRef {
            rec: rec.head,
            apart: rec.value,
            o: offsets(rec.head),
        }
    }

    pub fn cas(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..BITS].copy_from_slice(&self.rec[..BITS]);
        u64::from_le_bytes(b)
    }

    pub fn bits(&self) -> u8 {
        self.rec[BITS]
    }

    pub fn has(&self, bit: u8) -> bool {
        self.rec[BITS] & bit != 0
    }

    pub fn prev(&self) -> u32 {
        read_u32(self.rec, PREV)
    }

    pub fn next(&self) -> u32 {
        read_u32(self.rec, NEXT)
    }

    /// Store-relative second of the last store or (active) access.
    pub fn time(&self) -> u32 {
        read_u32(self.rec, TIME)
    }

    pub fn flags(&self) -> u32 {
        if self.has(bits::HAS_FLAGS) {
            read_u32(self.rec, self.o.flags)
        } else {
            0
        }
    }

    /// Expiry in store-relative seconds; 0 means never.
    pub fn exptime(&self) -> u32 {
        if !self.has(bits::HAS_EXPTIME) {
            return 0;
        }
        let at = if self.has(bits::HAS_FLAGS) {
            self.o.flags + 4
        } else {
            self.o.flags
        };
        read_u32(self.rec, at)
    }

    #[inline]
    pub fn key(&self) -> &'a [u8] {
        &self.rec[self.o.key..self.o.key + self.o.klen]
    }

    #[inline]
    pub fn value(&self) -> &'a [u8] {
        match self.apart {
            Some(v) => v,
            None => {
                let start = self.o.key + self.o.klen;
                &self.rec[start..start + self.o.vlen]
            }
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            klen: self.o.klen,
            vlen: self.o.vlen,
            flags: self.flags(),
            exptime: self.exptime(),
        }
    }

    /// Size memcached would account for this item (`ITEM_ntotal`).
    pub fn ntotal(&self) -> u64 {
        ntotal(self.o.klen, self.flags(), self.o.vlen)
    }

    /// memcached's slab class for this item.
    pub fn class(&self) -> u8 {
        slab::class_of(self.ntotal())
    }
}

/// A writable view of a stored item. Only fields that never change the
/// record's size are writable here; the exptime goes through the store,
/// which may have to move the record.
pub(crate) struct ItemMut<'a> {
    rec: &'a mut [u8],
    /// The value, when it is stored apart.
    apart: Option<&'a mut SharedValue>,
}

impl<'a> ItemMut<'a> {
    pub fn new(rec: RecMut<'a>) -> ItemMut<'a> {
        ItemMut {
            rec: rec.head,
            apart: rec.value,
        }
    }

    pub fn has(&self, bit: u8) -> bool {
        self.rec[BITS] & bit != 0
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.rec[..BITS].copy_from_slice(&cas.to_le_bytes()[..BITS]);
    }

    /// Sets state bits (never layout bits).
    pub fn insert_bits(&mut self, b: u8) {
        self.rec[BITS] |= b & !bits::LAYOUT;
    }

    /// Clears state bits (never layout bits).
    pub fn remove_bits(&mut self, b: u8) {
        self.rec[BITS] &= !(b & !bits::LAYOUT);
    }

    pub fn set_prev(&mut self, h: u32) {
        write_u32(self.rec, PREV, h);
    }

    pub fn set_next(&mut self, h: u32) {
        write_u32(self.rec, NEXT, h);
    }

    pub fn set_time(&mut self, t: u32) {
        write_u32(self.rec, TIME, t);
    }

    /// Copies the LRU links, access time and CAS of `src`.
    fn copy_fixed(&mut self, src: ItemRef<'_>) {
        self.set_prev(src.prev());
        self.set_next(src.next());
        self.set_time(src.time());
        self.set_cas(src.cas());
    }

    /// Rewrites a present exptime word. The caller guarantees the record
    /// has one and `exptime` is non-zero.
    pub fn overwrite_exptime(&mut self, exptime: u32) {
        let o = offsets(self.rec);
        let at = if self.has(bits::HAS_FLAGS) {
            o.flags + 4
        } else {
            o.flags
        };
        write_u32(self.rec, at, exptime);
    }

    /// The value, writable in place (incr/decr reuse the bytes when the new
    /// number fits, as memcached does). A value stored apart that a
    /// connection is still sending is copied first, so the connection sends
    /// the value it read; that copy is the one allocation here that is not
    /// fallible (it is bounded by the item size limit and needs a reader
    /// holding the old value at the same moment).
    pub fn value_mut(&mut self) -> &mut [u8] {
        if let Some(v) = &mut self.apart {
            return unshare(v);
        }
        let o = offsets(self.rec);
        let start = o.key + o.klen;
        &mut self.rec[start..start + o.vlen]
    }
}

/// Copies the record `src` into `dst` (sized for the new shape, see
/// [`Shape::write`]) with its exptime changed to `exptime`, keeping every
/// other field.
pub(crate) fn rewrite_exptime(src: Rec<'_>, dst: RecMut<'_>, exptime: u32) {
    let it = ItemRef::new(src);
    let shape = Shape {
        exptime,
        ..it.shape()
    };
    let RecMut { head, value } = dst;
    let dst = RecMut {
        head: &mut *head,
        value,
    };
    shape.write(dst, it.key(), &[it.value()], it.bits());
    ItemMut::new(RecMut::from(head)).copy_fixed(it);
}

/// Writes the head of the record `src` (everything but its value) into
/// `head`, sized for the new shape less its value, with its exptime changed
/// to `exptime`. For a record whose value stays where it is.
pub(crate) fn rewrite_head(src: ItemRef<'_>, head: &mut [u8], exptime: u32) {
    let shape = Shape {
        exptime,
        ..src.shape()
    };
    shape.write_head(head, src.key(), src.bits());
    ItemMut::new(RecMut::from(head)).copy_fixed(src);
}

/// memcached's `ITEM_ntotal`: header, key and its NUL, the flags word when
/// non-zero, the value with its CRLF, and the CAS.
pub(crate) fn ntotal(klen: usize, flags: u32, vlen: usize) -> u64 {
    slab::ITEM_HEADER
        + klen as u64
        + 1
        + if flags != 0 { 4 } else { 0 }
        + vlen as u64
        + 2
        + slab::ITEM_CAS
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trips_every_field() {
        for (flags, exptime, vlen) in [(0, 0, 0), (7, 0, 64), (0, 99, 200), (u32::MAX, 5, 70_000)] {
            let value = vec![b'v'; vlen];
            let shape = Shape {
                klen: 3,
                vlen,
                flags,
                exptime,
            };
            let mut rec = vec![0xAA; shape.size() + 8];
            shape.write(
                RecMut::from(&mut rec[..]),
                b"key",
                &[&value[..vlen / 2], &value[vlen / 2..]],
                bits::STALE,
            );
            let mut m = ItemMut::new(RecMut::from(&mut rec[..]));
            m.set_cas(CAS_MAX);
            m.set_prev(1);
            m.set_next(2);
            m.set_time(3);
            let it = ItemRef::new(Rec::from(&rec[..]));
            assert_eq!(it.cas(), CAS_MAX);
            assert_eq!((it.prev(), it.next(), it.time()), (1, 2, 3));
            assert_eq!((it.flags(), it.exptime()), (flags, exptime));
            assert_eq!(it.key(), b"key");
            assert_eq!(it.value(), &value[..]);
            assert!(it.has(bits::STALE));
            assert_eq!(it.shape(), shape);
        }
    }

    #[test]
    fn bench_shaped_item_is_96_bytes() {
        let shape = Shape {
            klen: 10,
            vlen: 64,
            flags: 0,
            exptime: 0,
        };
        assert_eq!(shape.size(), 96);
    }

    #[test]
    fn rewrite_exptime_keeps_the_rest() {
        let shape = Shape {
            klen: 1,
            vlen: 2,
            flags: 9,
            exptime: 0,
        };
        let mut a = vec![0; shape.size()];
        shape.write(RecMut::from(&mut a[..]), b"k", &[b"vv"], bits::FETCHED);
        ItemMut::new(RecMut::from(&mut a[..])).set_cas(42);
        let mut b = vec![0; shape.size() + 4];
        rewrite_exptime(Rec::from(&a[..]), RecMut::from(&mut b[..]), 77);
        let it = ItemRef::new(Rec::from(&b[..]));
        assert_eq!((it.cas(), it.flags(), it.exptime()), (42, 9, 77));
        assert_eq!((it.key(), it.value()), (&b"k"[..], &b"vv"[..]));
        assert!(it.has(bits::FETCHED));
        let mut c = vec![0; shape.size()];
        rewrite_exptime(Rec::from(&b[..]), RecMut::from(&mut c[..]), 0);
        assert_eq!(c, a);
    }

    #[test]
    fn values_apart_are_copied_only_while_shared() {
        let shape = Shape {
            klen: 1,
            vlen: 3,
            flags: 0,
            exptime: 0,
        };
        let mut head = vec![0; shape.size() - 3];
        let mut value: SharedValue = Arc::new(vec![0u8; 3].into_boxed_slice());
        let rec = RecMut {
            head: &mut head,
            value: Some(&mut value),
        };
        shape.write(rec, b"k", &[b"abc"], 0);
        let before = Arc::as_ptr(&value);
        let reader = Arc::clone(&value);
        let mut m = ItemMut::new(RecMut {
            head: &mut head,
            value: Some(&mut value),
        });
        m.set_cas(7);
        m.value_mut()[0] = b'x';
        assert_eq!(&reader[..], b"abc");
        assert_eq!(&value[..], b"xbc");
        assert_ne!(Arc::as_ptr(&value), before);
        drop(reader);
        let again = Arc::as_ptr(&value);
        let mut m = ItemMut::new(RecMut {
            head: &mut head,
            value: Some(&mut value),
        });
        m.value_mut()[1] = b'y';
        assert_eq!(Arc::as_ptr(&value), again);
        let it = ItemRef::new(Rec {
            head: &head,
            value: Some(&value[..]),
        });
        assert_eq!(
            (it.key(), it.value(), it.cas()),
            (&b"k"[..], &b"xyc"[..], 7)
        );
    }
}
