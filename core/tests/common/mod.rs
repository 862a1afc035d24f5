//! Helpers shared by the core's integration tests.
// Each test binary uses a different subset.
#![allow(dead_code)]

pub mod binary;

use wasmcached_core::{Clock, Connection, Progress, Shards};

/// Small deterministic RNG for test inputs (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// Feeds `chunks` to a connection the way a host does: after each chunk,
/// process until the connection needs input (or closes), draining the
/// output as it goes. Returns (output, closed).
pub fn feed<S: Shards>(
    conn: &mut Connection,
    store: &mut S,
    clock: Clock,
    chunks: &[&[u8]],
) -> (Vec<u8>, bool) {
    feed_checking(conn, store, clock, chunks, |_| {})
}

/// [`feed`], calling `check` on the connection after every pass, before its
/// output is drained: for asserting bounds on what it holds meanwhile.
pub fn feed_checking<S: Shards>(
    conn: &mut Connection,
    store: &mut S,
    clock: Clock,
    chunks: &[&[u8]],
    mut check: impl FnMut(&Connection),
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    for chunk in chunks {
        if conn.is_closing() {
            break;
        }
        conn.receive(chunk);
        loop {
            let p = conn.process(store, clock);
            check(conn);
            drain(conn, &mut out);
            if matches!(p, Progress::NeedInput | Progress::Close) {
                break;
            }
        }
    }
    (out, conn.is_closing())
}

/// Moves every pending output chunk of `conn` to the end of `out`, as a
/// host's vectored write of all of them would, and returns how many bytes
/// that was. Replies held back by the connection are left in it.
pub fn drain(conn: &mut Connection, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for c in conn.output_chunks() {
        out.extend_from_slice(c);
        n += c.len();
    }
    conn.consume_output(n);
    n
}
