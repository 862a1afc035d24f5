//! memcached's slab class numbering, kept for observable compatibility.
//!
//! The store does not allocate from slabs, but memcached reports an item's
//! slab class in `me` (`cls=`) and groups `stats items`/`stats slabs` by it.
//! Classes are computed exactly as memcached 1.6.18 does with its defaults
//! (`-n 48`, `-f 1.25`, 1 MiB pages, 512 KiB largest chunk).

/// Size of memcached's item header on a 64-bit build.
pub(crate) const ITEM_HEADER: u64 = 48;
/// Bytes of CAS stored per item.
pub(crate) const ITEM_CAS: u64 = 8;

const PAGE: u32 = 1024 * 1024;
const CHUNK_MAX: u32 = PAGE / 2;
/// Highest class id; memcached uses 64 classes at most.
pub(crate) const MAX_CLASSES: usize = 64;

/// Chunk sizes of classes 1.. in order; index 0 is unused.
pub(crate) fn class_sizes() -> &'static [u32] {
    &CLASS_SIZES
}

const CLASS_SIZES: [u32; 41] = compute_sizes();

const fn compute_sizes() -> [u32; 41] {
    let mut out = [0u32; 41];
    // memcached: size = sizeof(item) + chunk_size, grown by 1.25 per class,
    // aligned to 8, until the next size would pass CHUNK_MAX / 1.25; the last
    // class is CHUNK_MAX itself.
    let mut size: u64 = 96;
    let mut i = 1;
    while i < 40 {
        if size * 5 >= (CHUNK_MAX as u64) * 4 {
            break;
        }
        if !size.is_multiple_of(8) {
            size += 8 - size % 8;
        }
        out[i] = size as u32;
        size = size * 5 / 4;
        i += 1;
    }
    out[i] = CHUNK_MAX;
    out
}

/// The class memcached would store an item of `ntotal` bytes in. Items over
/// the largest chunk are chunked by memcached and reported in the largest
/// class.
pub(crate) fn class_of(ntotal: u64) -> u8 {
    let sizes = class_sizes();
    let mut i = 1;
    while i < sizes.len() && sizes[i] != 0 {
        if ntotal <= u64::from(sizes[i]) {
            return i as u8;
        }
        i += 1;
    }
    (i - 1) as u8
}

/// Chunks of class `cls` that fit in one page.
pub(crate) fn per_page(cls: u8) -> u32 {
    let size = class_sizes()
        .get(usize::from(cls))
        .copied()
        .unwrap_or(CHUNK_MAX);
    if size == 0 {
        return 1;
    }
    PAGE / size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_memcached_defaults() {
        let s = class_sizes();
        assert_eq!(&s[1..6], &[96, 120, 152, 192, 240]);
        let last = s.iter().rposition(|&x| x != 0).unwrap_or(0);
        assert_eq!(s[last], 512 * 1024);
        assert_eq!(last, 39);
    }

    #[test]
    fn item_lands_in_smallest_fitting_class() {
        assert_eq!(class_of(60), 1);
        assert_eq!(class_of(96), 1);
        assert_eq!(class_of(97), 2);
        assert_eq!(class_of(133), 3);
        assert_eq!(class_of(10_000_000), 39);
    }
}
