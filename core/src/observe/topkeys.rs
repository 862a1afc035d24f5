//! The most fetched keys (`stats topkeys`, not a memcached command:
//! memcached 1.6.18 answers it `ERROR`).
//!
//! One fetch in [`SAMPLE_EVERY`] (each key looked up by get/gets/gat/gats,
//! `mg` and the binary gets, hit or miss) is fed to a space-saving summary
//! of [`TRACKED`] keys: a sampled key already tracked gains one; an
//! untracked one replaces the tracked key with the lowest count and
//! inherits that count plus one (so counts may overestimate, by at most
//! the inherited part, and a key fetched more often than 1/[`TRACKED`] of
//! all sampled fetches is always listed). Which fetches are sampled comes
//! from a xorshift sequence with a fixed seed advanced once per fetch:
//! deterministic, and without the aliasing a plain every-Nth counter has
//! when clients cycle through a fixed set of keys. Memory is bounded by
//! [`TRACKED`] keys of at most 250 bytes. `stats reset` clears it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::num::push_u64;

/// Keys tracked (and listed at most).
pub const TRACKED: usize = 64;
/// One fetch in this many is sampled.
pub const SAMPLE_EVERY: u64 = 4;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The space-saving summary of sampled fetches.
#[derive(Clone, Debug)]
pub struct TopKeys {
    state: u64,
    sampled: u64,
    /// Sampled count per tracked key.
    counts: BTreeMap<Vec<u8>, u64>,
}

impl Default for TopKeys {
    fn default() -> Self {
        TopKeys {
            state: SEED,
            sampled: 0,
            counts: BTreeMap::new(),
        }
    }
}

impl TopKeys {
    /// A key was fetched.
    pub(crate) fn record(&mut self, key: &[u8]) {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        if !x.is_multiple_of(SAMPLE_EVERY) {
            return;
        }
        self.sampled += 1;
        if let Some(c) = self.counts.get_mut(key) {
            *c += 1;
            return;
        }
        let mut base = 0;
        if self.counts.len() >= TRACKED {
            let Some((victim, min)) = self.least() else {
                return;
            };
            self.counts.remove(&victim);
            base = min;
        }
        self.counts.insert(Vec::from(key), base + 1);
    }

    fn least(&self) -> Option<(Vec<u8>, u64)> {
        let (k, &c) = self.counts.iter().min_by_key(|(_, &c)| c)?;
        Some((k.clone(), c))
    }

    /// `stats reset`.
    pub(crate) fn clear(&mut self) {
        *self = TopKeys::default();
    }

    /// Adds another shard's summary (whose keys are all its own: a key
    /// lives in one shard), keeping the [`TRACKED`] most fetched.
    pub(crate) fn merge(&mut self, other: &TopKeys) {
        self.sampled += other.sampled;
        for (k, &c) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += c;
        }
        while self.counts.len() > TRACKED {
            let Some((victim, _)) = self.least() else {
                break;
            };
            self.counts.remove(&victim);
        }
    }

    /// The report: the sampling rate and sample count, then one
    /// `STAT key:<key> <estimated fetches>` per tracked key, most fetched
    /// first (ties by key), then `END\r\n`.
    pub(crate) fn report(&self, out: &mut Vec<u8>) {
        let line = |out: &mut Vec<u8>, name: &[u8], key: &[u8], v: u64| {
            out.extend_from_slice(b"STAT ");
            out.extend_from_slice(name);
            out.extend_from_slice(key);
            out.push(b' ');
            push_u64(out, v);
            out.extend_from_slice(b"\r\n");
        };
        line(out, b"sample_every", b"", SAMPLE_EVERY);
        line(out, b"sampled", b"", self.sampled);
        let mut keys: Vec<(&Vec<u8>, u64)> = self.counts.iter().map(|(k, &c)| (k, c)).collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (k, c) in keys {
            line(out, b"key:", k, c * SAMPLE_EVERY);
        }
        out.extend_from_slice(b"END\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_keys_rank_first_and_memory_is_bounded() {
        let mut t = TopKeys::default();
        for i in 0..20_000u32 {
            t.record(b"hot");
            if i % 4 == 0 {
                t.record(b"warm");
            }
            let mut cold = Vec::from(&b"cold"[..]);
            push_u64(&mut cold, u64::from(i));
            t.record(&cold);
        }
        assert!(t.counts.len() <= TRACKED);
        let mut out = Vec::new();
        t.report(&mut out);
        let text = core::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("STAT key:hot "), "{text}");
        assert!(lines[3].starts_with("STAT key:warm "), "{text}");
        let hot: u64 = lines[2].rsplit(' ').next().unwrap().parse().unwrap();
        assert!((17_000..=23_000).contains(&hot), "{hot}");
    }

    #[test]
    fn same_input_same_report() {
        let run = || {
            let mut t = TopKeys::default();
            for i in 0..1000u64 {
                t.record(&[b'k', (i % 7) as u8]);
            }
            let mut out = Vec::new();
            t.report(&mut out);
            out
        };
        assert_eq!(run(), run());
    }
}
