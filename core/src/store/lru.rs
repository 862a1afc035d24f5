//! The doubly linked LRU list threaded through the records' `prev`/`next`
//! handles.
//!
//! The head is the most recently used item, the tail the eviction candidate.
//! Every function here keeps the list and `head`/`tail` consistent.

use super::arena::Arena;
use super::item::{ItemMut, ItemRef, NIL};

/// Head and tail of the list.
#[derive(Debug)]
pub(crate) struct Lru {
    pub head: u32,
    pub tail: u32,
}

fn links(arena: &Arena, h: u32) -> (u32, u32) {
    let it = ItemRef::new(arena.get(h));
    (it.prev(), it.next())
}

fn set_prev(arena: &mut Arena, h: u32, to: u32) {
    ItemMut::new(arena.get_mut(h)).set_prev(to);
}

fn set_next(arena: &mut Arena, h: u32, to: u32) {
    ItemMut::new(arena.get_mut(h)).set_next(to);
}

impl Lru {
    pub const fn new() -> Lru {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }

    /// Links `h` (currently unlinked) at the head.
    pub fn push_head(&mut self, arena: &mut Arena, h: u32) {
        let old = self.head;
        set_prev(arena, h, NIL);
        set_next(arena, h, old);
        if old != NIL {
            set_prev(arena, old, h);
        } else {
            self.tail = h;
        }
        self.head = h;
    }

    /// Links `h` (currently unlinked) at the tail: where a restore puts
    /// each item, since a snapshot lists them most recently used first.
    pub fn push_tail(&mut self, arena: &mut Arena, h: u32) {
        let old = self.tail;
        set_prev(arena, h, old);
        set_next(arena, h, NIL);
        if old != NIL {
            set_next(arena, old, h);
        } else {
            self.head = h;
        }
        self.tail = h;
    }

    /// Unlinks `h` from wherever it is.
    pub fn remove(&mut self, arena: &mut Arena, h: u32) {
        let (prev, next) = links(arena, h);
        if prev != NIL {
            set_next(arena, prev, next);
        } else {
            self.head = next;
        }
        if next != NIL {
            set_prev(arena, next, prev);
        } else {
            self.tail = prev;
        }
        set_prev(arena, h, NIL);
        set_next(arena, h, NIL);
    }

    /// Moves `h` to the head.
    pub fn touch(&mut self, arena: &mut Arena, h: u32) {
        if self.head != h {
            self.remove(arena, h);
            self.push_head(arena, h);
        }
    }

    /// After a linked record moved from handle `from` to `to`, points its
    /// neighbours and the list ends at the new handle.
    pub fn relocate(&mut self, arena: &mut Arena, from: u32, to: u32) {
        let (prev, next) = links(arena, to);
        if prev != NIL {
            set_next(arena, prev, to);
        }
        if next != NIL {
            set_prev(arena, next, to);
        }
        if self.head == from {
            self.head = to;
        }
        if self.tail == from {
            self.tail = to;
        }
    }
}
