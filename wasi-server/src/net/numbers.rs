//! Descriptor numbers for the guest's sockets, which have none of their
//! own: handed out as POSIX hands out descriptors, the lowest free one
//! first, so `stats conns` and the verbose log read as memcached's do.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// 0, 1 and 2 are the standard streams.
const FIRST: u32 = 3;

struct Numbers {
    /// Never handed out yet: this and everything above it.
    next: u32,
    /// Given back, lowest first.
    free: BinaryHeap<Reverse<u32>>,
}

thread_local! {
    static NUMBERS: RefCell<Numbers> = const {
        RefCell::new(Numbers {
            next: FIRST,
            free: BinaryHeap::new(),
        })
    };
}

/// The lowest number not in use.
pub fn take() -> u32 {
    NUMBERS.with_borrow_mut(|n| match n.free.pop() {
        Some(Reverse(k)) => k,
        None => {
            n.next += 1;
            n.next - 1
        }
    })
}

/// Returns a number [`take`] gave out; it is handed out again.
pub fn give_back(k: u32) {
    NUMBERS.with_borrow_mut(|n| n.free.push(Reverse(k)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_number_comes_first() {
        let (a, b, c) = (take(), take(), take());
        assert_eq!((a, b, c), (FIRST, FIRST + 1, FIRST + 2));
        give_back(c);
        give_back(a);
        assert_eq!(take(), a);
        assert_eq!(take(), c);
        assert_eq!(take(), FIRST + 3);
    }
}
