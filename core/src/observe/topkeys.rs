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
//! from a xorshift sequence with a fixed seed advanced once per fetch
//! ([`Sampler`]): deterministic, and without the aliasing a plain
//! every-Nth counter has when clients cycle through a fixed set of keys.
//! A host's driver keeps one sequence and lends it to each connection it
//! runs (a connection outside a driver has its own). The sequence belongs
//! to the worker, not the shard, so that a fetch that is not sampled
//! writes nothing in the shard: in a cache shared by workers on several
//! cores, a write per fetch would move the shard's line to the fetching
//! core on every key of a multiget. Memory is bounded by
//! [`TRACKED`] keys of at most 250 bytes. `stats reset` clears it.

use alloc::vec::Vec;
use core::hash::BuildHasher;

use foldhash::fast::FixedState;

use crate::num::push_u64;

/// Keys tracked (and listed at most).
pub const TRACKED: usize = 64;
/// One fetch in this many is sampled.
pub const SAMPLE_EVERY: u64 = 16;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Longest key (memcached's `KEY_MAX_LENGTH`).
const KEY_MAX: usize = 250;

/// One tracked key, kept inline. Keys are found by their hash first: a
/// sampled fetch costs a scan of [`TRACKED`] hashes, never an
/// allocation, so the summary can stay on for every request.
#[derive(Clone, Debug)]
struct Entry {
    len: u8,
    key: [u8; KEY_MAX],
}

impl Entry {
    fn new(key: &[u8]) -> Entry {
        let len = key.len().min(KEY_MAX);
        let mut e = Entry {
            len: len as u8,
            key: [0; KEY_MAX],
        };
        e.key[..len].copy_from_slice(&key[..len]);
        e
    }

    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.len)]
    }
}

/// Which fetches are sampled: one step of a xorshift sequence per fetch,
/// one in [`SAMPLE_EVERY`] sampled.
#[derive(Clone, Debug)]
pub(crate) struct Sampler(u64);

impl Default for Sampler {
    fn default() -> Self {
        Sampler(SEED)
    }
}

impl Sampler {
    /// Advances the sequence for one fetch: whether to sample it.
    pub(crate) fn next(&mut self) -> bool {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.is_multiple_of(SAMPLE_EVERY)
    }
}

/// The space-saving summary of sampled fetches.
#[derive(Clone, Debug, Default)]
pub struct TopKeys {
    sampled: u64,
    /// The tracked keys (at most [`TRACKED`]); `hashes[i]` and
    /// `counts[i]` (sampled fetches) belong to `entries[i]`, kept apart so
    /// that a lookup and the search for the least counted scan 512 bytes
    /// each, not the keys.
    entries: Vec<Entry>,
    hashes: Vec<u64>,
    counts: Vec<u64>,
}

/// A tracked key: its sampled count, hash and entry.
type Tracked = (u64, u64, Entry);

/// Sorts most fetched first, ties by key (the report's order, and which
/// keys a merge keeps).
fn rank(all: &mut [Tracked]) {
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.key().cmp(b.2.key())));
}

fn hash(key: &[u8]) -> u64 {
    FixedState::with_seed(SEED).hash_one(key)
}

impl TopKeys {
    /// A fetch of `key` that a [`Sampler`] chose.
    pub(crate) fn record(&mut self, key: &[u8]) {
        self.sampled += 1;
        self.add(key, hash(key), 1);
    }

    /// Counts `n` sampled fetches of `key`: a tracked key gains them; an
    /// untracked one takes a free place, or the place of the key with the
    /// lowest count and that count on top.
    fn add(&mut self, key: &[u8], h: u64, n: u64) {
        let found = self
            .hashes
            .iter()
            .zip(&self.entries)
            .position(|(&x, e)| x == h && e.key() == key);
        if let Some(i) = found {
            self.counts[i] += n;
            return;
        }
        if self.entries.len() < TRACKED {
            let room = self.entries.try_reserve(1).is_ok()
                && self.hashes.try_reserve(1).is_ok()
                && self.counts.try_reserve(1).is_ok();
            if room {
                self.entries.push(Entry::new(key));
                self.hashes.push(h);
                self.counts.push(n);
            }
            return;
        }
        let Some((i, min)) = self
            .counts
            .iter()
            .enumerate()
            .min_by_key(|&(_, &c)| c)
            .map(|(i, &c)| (i, c))
        else {
            return;
        };
        self.entries[i] = Entry::new(key);
        self.hashes[i] = h;
        self.counts[i] = min + n;
    }

    /// `stats reset`.
    pub(crate) fn clear(&mut self) {
        *self = TopKeys::default();
    }

    /// Adds another shard's summary (whose keys are all its own: a key
    /// lives in one shard), keeping the [`TRACKED`] most fetched.
    pub(crate) fn merge(&mut self, other: &TopKeys) {
        self.sampled += other.sampled;
        let mut all: Vec<Tracked> = self.tracked().chain(other.tracked()).collect();
        rank(&mut all);
        all.truncate(TRACKED);
        self.counts = all.iter().map(|t| t.0).collect();
        self.hashes = all.iter().map(|t| t.1).collect();
        self.entries = all.into_iter().map(|t| t.2).collect();
    }

    /// Every tracked key with its count and hash, in no order.
    fn tracked(&self) -> impl Iterator<Item = Tracked> + '_ {
        self.counts
            .iter()
            .zip(&self.hashes)
            .zip(&self.entries)
            .map(|((&c, &h), e)| (c, h, e.clone()))
    }

    /// [`tracked`](TopKeys::tracked), most fetched first.
    fn ranked(&self) -> Vec<Tracked> {
        let mut all: Vec<Tracked> = self.tracked().collect();
        rank(&mut all);
        all
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
        for (count, _, e) in self.ranked() {
            line(out, b"key:", e.key(), count * SAMPLE_EVERY);
        }
        out.extend_from_slice(b"END\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One fetch of `key` as a connection with sampler `s` reports it.
    fn fetch(t: &mut TopKeys, s: &mut Sampler, key: &[u8]) {
        if s.next() {
            t.record(key);
        }
    }

    #[test]
    fn hot_keys_rank_first_and_memory_is_bounded() {
        let mut t = TopKeys::default();
        let s = &mut Sampler::default();
        for i in 0..20_000u32 {
            fetch(&mut t, s, b"hot");
            if i % 4 == 0 {
                fetch(&mut t, s, b"warm");
            }
            let mut cold = Vec::from(&b"cold"[..]);
            push_u64(&mut cold, u64::from(i));
            fetch(&mut t, s, &cold);
        }
        assert!(t.entries.len() <= TRACKED);
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
            let s = &mut Sampler::default();
            for i in 0..1000u64 {
                fetch(&mut t, s, &[b'k', (i % 7) as u8]);
            }
            let mut out = Vec::new();
            t.report(&mut out);
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_sampler_picks_about_one_fetch_in_sample_every() {
        let mut s = Sampler::default();
        let picked = (0..160_000).filter(|_| s.next()).count() as u64;
        let want = 160_000 / SAMPLE_EVERY;
        assert!(
            (want * 9 / 10..=want * 11 / 10).contains(&picked),
            "{picked}"
        );
    }
}
