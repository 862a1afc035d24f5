//! The doubly linked LRU list threaded through [`Item::prev`]/[`Item::next`].
//!
//! The head is the most recently used item, the tail the eviction candidate.
//! Links are indices into the store's item vector; every function here keeps
//! the list and `head`/`tail` consistent.

use super::item::{Item, NIL};

/// Head and tail of the list.
#[derive(Debug)]
pub(crate) struct Lru {
    pub head: u32,
    pub tail: u32,
}

impl Lru {
    pub const fn new() -> Lru {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }

    /// Links `idx` (currently unlinked) at the head.
    pub fn push_head(&mut self, items: &mut [Item], idx: u32) {
        let old = self.head;
        items[idx as usize].prev = NIL;
        items[idx as usize].next = old;
        if old != NIL {
            items[old as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
    }

    /// Unlinks `idx` from wherever it is.
    pub fn remove(&mut self, items: &mut [Item], idx: u32) {
        let (prev, next) = {
            let it = &items[idx as usize];
            (it.prev, it.next)
        };
        if prev != NIL {
            items[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            items[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        items[idx as usize].prev = NIL;
        items[idx as usize].next = NIL;
    }

    /// Moves `idx` to the head.
    pub fn touch(&mut self, items: &mut [Item], idx: u32) {
        if self.head != idx {
            self.remove(items, idx);
            self.push_head(items, idx);
        }
    }

    /// After the item at `from` was moved to slot `to` (swap-remove), points
    /// its neighbours and the list ends at the new slot.
    pub fn relocate(&mut self, items: &mut [Item], from: u32, to: u32) {
        let (prev, next) = {
            let it = &items[to as usize];
            (it.prev, it.next)
        };
        if prev != NIL {
            items[prev as usize].next = to;
        }
        if next != NIL {
            items[next as usize].prev = to;
        }
        if self.head == from {
            self.head = to;
        }
        if self.tail == from {
            self.tail = to;
        }
    }
}
