//! One cached item and its per-item state bits.

use alloc::boxed::Box;

use crate::slab;

/// Sentinel index for "no neighbour" in the LRU list.
pub(crate) const NIL: u32 = u32::MAX;

/// Per-item state bits. memcached keeps the same ones in `it_flags`.
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
}

/// A stored item. Key and value share one allocation to keep the per-item
/// overhead small; the LRU list is threaded through `prev`/`next` as indices
/// into the store's item vector.
pub(crate) struct Item {
    data: Box<[u8]>,
    pub cas: u64,
    /// Expiry in store-relative seconds; 0 means never.
    pub exptime: u32,
    /// Store-relative second of the last store or (active) access.
    pub time: u32,
    pub flags: u32,
    pub prev: u32,
    pub next: u32,
    klen: u8,
    pub bits: u8,
}

impl Item {
    /// Builds an item whose value is the concatenation of `parts`.
    pub fn new(key: &[u8], parts: &[&[u8]], flags: u32, exptime: u32) -> Item {
        let vlen: usize = parts.iter().map(|p| p.len()).sum();
        let mut data = alloc::vec::Vec::with_capacity(key.len() + vlen);
        data.extend_from_slice(key);
        for p in parts {
            data.extend_from_slice(p);
        }
        Item {
            data: data.into_boxed_slice(),
            cas: 0,
            exptime,
            time: 0,
            flags,
            prev: NIL,
            next: NIL,
            // Keys are checked against the 250-byte limit before any item is
            // built, so the length always fits.
            klen: key.len().min(255) as u8,
            bits: 0,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..usize::from(self.klen)]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[usize::from(self.klen)..]
    }

    /// The value, writable in place (incr/decr reuse the buffer when the
    /// new number fits, as memcached does).
    pub fn value_mut(&mut self) -> &mut [u8] {
        let k = usize::from(self.klen);
        &mut self.data[k..]
    }

    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Size memcached would account for this item (`ITEM_ntotal`).
    pub fn ntotal(&self) -> u64 {
        ntotal(self.key().len(), self.flags, self.value().len())
    }

    /// memcached's slab class for this item.
    pub fn class(&self) -> u8 {
        slab::class_of(self.ntotal())
    }
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
