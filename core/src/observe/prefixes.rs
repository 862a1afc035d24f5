//! Per-prefix counters: `stats detail on|off|dump`.
//!
//! memcached 1.6.18 counts, while detail is on, per key prefix (the key up
//! to the first delimiter, `:` unless `-D` names another; keys without one
//! are not counted): `get` per key looked up by get/gets/gat/gats and
//! binary gets (`hit` when found), `set` per set/add/replace/append/
//! prepend/cas whose command line parsed (stored or not), `del` per
//! delete. Meta commands, incr/decr and touch are not counted. The dump
//! lists prefixes in memcached's order: by MurmurHash3 (seed 0) of the
//! prefix modulo 256, the newest first within a bucket. `stats reset`
//! clears the counters.
//!
//! memcached keeps every prefix it sees; here at most [`PREFIXES_MAX`]
//! distinct prefixes are kept (prefixes are at most 250 bytes, keys'
//! limit), so the table stays under about 1.3 MB and a dump under about
//! 1.1 MB. Once it is full, new prefixes are not counted; known ones still
//! are.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::num::push_u64;

/// Distinct prefixes counted.
pub const PREFIXES_MAX: usize = 4096;
/// memcached's `PREFIX_HASH_SIZE`: the dump's order.
const BUCKETS: u32 = 256;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Insertion order: newer prefixes come first within a bucket.
    seq: u64,
    get: u64,
    hit: u64,
    set: u64,
    del: u64,
}

/// The per-prefix counters and whether they are being kept.
#[derive(Clone, Debug, Default)]
pub struct PrefixStats {
    pub(crate) enabled: bool,
    pub(crate) delimiter: u8,
    prefixes: BTreeMap<Vec<u8>, Counts>,
    next_seq: u64,
    /// The cache's numbering of new prefixes, for a shard of one: the
    /// merged dump then orders them as one store would.
    shared: Option<crate::shards::Sequences>,
}

impl PrefixStats {
    pub(crate) fn new(enabled: bool, delimiter: u8) -> PrefixStats {
        PrefixStats {
            enabled,
            delimiter,
            ..PrefixStats::default()
        }
    }

    fn counts(&mut self, key: &[u8]) -> Option<&mut Counts> {
        if !self.enabled {
            return None;
        }
        let end = key.iter().position(|&b| b == self.delimiter)?;
        let prefix = &key[..end];
        if !self.prefixes.contains_key(prefix) {
            if self.prefixes.len() >= PREFIXES_MAX {
                return None;
            }
            let c = Counts {
                seq: self.new_seq(),
                ..Counts::default()
            };
            self.prefixes.insert(Vec::from(prefix), c);
        }
        self.prefixes.get_mut(prefix)
    }

    /// Numbers prefixes from the cache's sequence (a shard's counters).
    pub(crate) fn share_seq(&mut self, seq: crate::shards::Sequences) {
        self.shared = Some(seq);
    }

    fn new_seq(&mut self) -> u64 {
        match &self.shared {
            Some(seq) => seq.next_prefix(),
            None => {
                self.next_seq += 1;
                self.next_seq
            }
        }
    }

    /// Adds another shard's counters: a prefix known to both sums its
    /// counts and dates from the first of them (shards number prefixes
    /// from one sequence), while there is room.
    pub(crate) fn merge(&mut self, other: &PrefixStats) {
        for (p, c) in &other.prefixes {
            if let Some(mine) = self.prefixes.get_mut(p) {
                mine.seq = mine.seq.min(c.seq);
                mine.get += c.get;
                mine.hit += c.hit;
                mine.set += c.set;
                mine.del += c.del;
            } else if self.prefixes.len() < PREFIXES_MAX {
                self.prefixes.insert(p.clone(), *c);
            }
        }
    }

    /// A key looked up by a get; `hit` when it was found.
    pub(crate) fn record_get(&mut self, key: &[u8], hit: bool) {
        if let Some(c) = self.counts(key) {
            c.get += 1;
            c.hit += u64::from(hit);
        }
    }

    /// A storage command for `key`.
    pub(crate) fn record_set(&mut self, key: &[u8]) {
        if let Some(c) = self.counts(key) {
            c.set += 1;
        }
    }

    /// A delete of `key`.
    pub(crate) fn record_delete(&mut self, key: &[u8]) {
        if let Some(c) = self.counts(key) {
            c.del += 1;
        }
    }

    /// `stats reset`.
    pub(crate) fn clear(&mut self) {
        self.prefixes.clear();
    }

    /// The dump's lines, then `END\r\n`.
    pub(crate) fn dump(&self, out: &mut Vec<u8>) {
        let mut order: Vec<(u32, u64, &[u8], &Counts)> = self
            .prefixes
            .iter()
            .map(|(p, c)| (murmur3_32(p) % BUCKETS, u64::MAX - c.seq, p.as_slice(), c))
            .collect();
        order.sort_unstable_by_key(|&(b, newest, _, _)| (b, newest));
        for (_, _, p, c) in order {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(p);
            for (name, v) in [
                (&b" get "[..], c.get),
                (b" hit ", c.hit),
                (b" set ", c.set),
                (b" del ", c.del),
            ] {
                out.extend_from_slice(name);
                push_u64(out, v);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"END\r\n");
    }
}

/// MurmurHash3, x86 32-bit variant, seed 0: memcached's default hash,
/// which orders its prefix table.
pub(crate) fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h: u32 = 0;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        h ^= mix(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_buckets_match_memcached_dump_order() {
        // Bucket numbers of prefixes as memcached 1.6.18 ordered them.
        for (p, b) in [
            (&b"pp"[..], 0),
            (b"gs", 11),
            (b"foo", 32),
            (b"ht", 112),
            (b"zed", 178),
            (b"a", 178),
        ] {
            assert_eq!(murmur3_32(p) % BUCKETS, b, "{p:?}");
        }
    }

    #[test]
    fn newest_first_within_a_bucket_and_capped() {
        let mut s = PrefixStats::new(true, b':');
        s.record_set(b"zed:1");
        s.record_get(b"a:b:c", false);
        s.record_get(b"nodelimiter", true);
        let mut out = Vec::new();
        s.dump(&mut out);
        assert_eq!(
            out,
            b"PREFIX a get 1 hit 0 set 0 del 0\r\nPREFIX zed get 0 hit 0 set 1 del 0\r\nEND\r\n"
        );
        for i in 0..PREFIXES_MAX as u64 + 10 {
            let mut k = Vec::new();
            push_u64(&mut k, i);
            k.push(b':');
            s.record_delete(&k);
        }
        assert_eq!(s.prefixes.len(), PREFIXES_MAX);
    }
}
