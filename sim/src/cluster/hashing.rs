//! Key placement as real memcached clients do it.
//!
//! * [`Rendezvous`]: pymemcache 4.0's `RendezvousHash` (what its
//!   `HashClient` uses by default): every node scores
//!   `murmur3_32("<node>-<key>", seed 0)`, the highest score wins, a tie
//!   goes to the greater node name.
//! * [`Ketama`]: the md5 continuum of libmemcached and twemproxy
//!   (`distribution: ketama`): 160 points per server of equal weight, from
//!   40 md5 digests of `"<name>-<i>"` (i = 0..40) with 4 points each (the
//!   digest's four little-endian 32-bit words); a key hashes to the first 4
//!   bytes of its md5 (little-endian; twemproxy's `hash: md5`,
//!   libmemcached's ketama default) and goes to the first point at or after
//!   its hash, wrapping around.
//!
//! Both are pure functions of the live node names, so every client that
//! agrees on which nodes are live agrees on every key's node.

/// MurmurHash3, x86 32-bit, as pymemcache's `murmur3_32` computes it over
/// an ASCII string.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for b in blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let mut k = 0u32;
    for (i, &b) in tail.iter().enumerate() {
        k |= u32::from(b) << (8 * i);
    }
    if !tail.is_empty() {
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MD5 (RFC 1321) of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // floor(abs(sin(i + 1)) * 2^32)
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (
        0x6745_2301u32,
        0xefcd_ab89u32,
        0x98ba_dcfeu32,
        0x1032_5476u32,
    );
    for chunk in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(K[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The 32-bit word `i` (0..4) of an md5 digest, little-endian: ketama's
/// point values and its key hash (word 0).
fn md5_word(d: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]])
}

/// How a client maps keys to the nodes it considers live.
pub trait Placement {
    /// The node (an index into the live list given to the constructor)
    /// that owns `key`; `None` with no live node.
    fn node(&self, key: &str) -> Option<usize>;
}

/// pymemcache's rendezvous (highest random weight) hashing.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    nodes: Vec<String>,
}

impl Rendezvous {
    /// Over the node names `nodes` (pymemcache: `"host:port"`).
    pub fn new(nodes: Vec<String>) -> Rendezvous {
        Rendezvous { nodes }
    }
}

impl Placement for Rendezvous {
    fn node(&self, key: &str) -> Option<usize> {
        let mut best: Option<(u32, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let score = murmur3_32(format!("{n}-{key}").as_bytes(), 0);
            best = match best {
                None => Some((score, i)),
                Some((s, _)) if score > s => Some((score, i)),
                Some((s, j)) if score == s && self.nodes[i] > self.nodes[j] => Some((score, i)),
                keep => keep,
            };
        }
        best.map(|(_, i)| i)
    }
}

/// The ketama md5 continuum (libmemcached, twemproxy).
#[derive(Clone, Debug)]
pub struct Ketama {
    /// (point, node index), sorted by point.
    points: Vec<(u32, usize)>,
}

/// Points per server of equal weight.
pub const KETAMA_POINTS: usize = 160;

impl Ketama {
    /// Over the server names `nodes` (twemproxy: the name in its
    /// configuration, `"host:port"` without one).
    pub fn new(nodes: &[String]) -> Ketama {
        let mut points = Vec::with_capacity(nodes.len() * KETAMA_POINTS);
        for (idx, name) in nodes.iter().enumerate() {
            for i in 0..KETAMA_POINTS / 4 {
                let d = md5(format!("{name}-{i}").as_bytes());
                for w in 0..4 {
                    points.push((md5_word(&d, w), idx));
                }
            }
        }
        points.sort_unstable();
        Ketama { points }
    }

    /// The key hash: the first word of the key's md5.
    pub fn hash(key: &str) -> u32 {
        md5_word(&md5(key.as_bytes()), 0)
    }
}

impl Placement for Ketama {
    fn node(&self, key: &str) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = Ketama::hash(key);
        let at = self.points.partition_point(|&(p, _)| p < h);
        Some(self.points[at % self.points.len()].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn murmur3_matches_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let names: Vec<String> = (0..4).map(|i| format!("cache-{i}:11211")).collect();
        let fewer: Vec<String> = names
            .iter()
            .filter(|n| !n.contains("-2"))
            .cloned()
            .collect();
        for (all, less) in [
            (
                Box::new(Rendezvous::new(names.clone())) as Box<dyn Placement>,
                Box::new(Rendezvous::new(fewer.clone())) as Box<dyn Placement>,
            ),
            (Box::new(Ketama::new(&names)), Box::new(Ketama::new(&fewer))),
        ] {
            for k in 0..1000 {
                let key = format!("item:{k}");
                let a = &names[all.node(&key).unwrap()];
                let b = &fewer[less.node(&key).unwrap()];
                if !a.contains("-2") {
                    assert_eq!(a, b, "{key} moved off a live node");
                }
            }
        }
    }
}
