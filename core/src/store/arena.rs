//! Dense, size-classed storage for item records.
//!
//! Records are grouped by size class (8-byte steps up to [`SMALL_MAX`]
//! bytes; one class of individually allocated records above that). Each
//! class is a *dense* array spread over pages of [`SLOTS`] records: a new
//! record goes at the end, and removing one moves the class's last record
//! into the hole. So a class never holds free slots, at most its last page
//! is partly used, and memory freed by one class is returned at once instead
//! of being stranded in it (memcached's slab calcification cannot happen).
//!
//! The price is that a removal can move one other record. [`Arena::remove`]
//! reports which one, and the store fixes the index entry and LRU links that
//! name it.
//!
//! A record of the large class is kept in two parts: its head (every field
//! but the value, in a box) and its value, a [`SharedValue`] that
//! connections may hold on to while they transmit it. Metadata writes (LRU
//! links, CAS, access time, state bits, exptime) touch the head only, so a
//! value being sent is never copied for them; only a write to the value
//! bytes themselves copies it, and only while a reader still holds it (the
//! reader keeps what was current when it read, as memcached's reference
//! counts give it). The value's bytes are allocated fallibly: their size is
//! chosen by a client.
//!
//! A handle is `page id << 8 | slot`. Page ids are shared by all classes
//! and reused, so handles are dense too and a `u32` addresses four billion
//! records. [`NIL`](super::item::NIL) is never a valid handle.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::item::{Rec, RecMut};

/// The value of a large record, shared with the connections sending it.
///
/// The bytes sit in their own box rather than in an `Arc<[u8]>` because
/// stable Rust has no fallible way to allocate an `Arc<[u8]>`; a box can be
/// allocated with `try_reserve_exact` first, and only the `Arc`'s small,
/// fixed-size header is allocated infallibly.
pub(crate) type SharedValue = Arc<Box<[u8]>>;

/// Records per page.
pub(crate) const SLOTS: usize = 256;
const SLOT_BITS: u32 = 8;
/// Granularity of the small classes.
const GRAIN: usize = 8;
/// Largest record stored inline in a page; larger ones are allocated one by
/// one (head and value apart), where the allocator's few bytes of overhead
/// do not matter.
pub(crate) const SMALL_MAX: usize = 1016;
const SMALL_CLASSES: usize = SMALL_MAX / GRAIN;
/// Index of the class of boxed records.
const LARGE: usize = SMALL_CLASSES;
const CLASSES: usize = SMALL_CLASSES + 1;
/// Page ids stay below this so that no handle equals `NIL`.
const MAX_PAGES: usize = (1 << (32 - SLOT_BITS)) - 1;
/// Records the store may link. Below this, every class can still open a
/// page, so moving a record to another class (which adds one record before
/// it removes one) never runs out of handles.
const MAX_RECORDS: usize = (MAX_PAGES - CLASSES - 1) * SLOTS;

enum Data {
    /// Records of one small class, back to back, `class_size` bytes each.
    Small(Vec<u8>),
    /// Records of the large class.
    Large(Vec<Large>),
}

/// A record of the large class: everything but the value, and the value.
struct Large {
    head: Box<[u8]>,
    value: SharedValue,
}

impl Large {
    /// A zeroed record with a `head_len`-byte head and a `vlen`-byte value,
    /// or `None` when the value's memory cannot be had.
    fn try_new(head_len: usize, vlen: usize) -> Option<Large> {
        let mut value = Vec::new();
        value.try_reserve_exact(vlen).ok()?;
        value.resize(vlen, 0);
        Some(Large {
            head: vec![0u8; head_len].into_boxed_slice(),
            // The capacity is exactly `vlen`, so this does not reallocate.
            value: Arc::new(value.into_boxed_slice()),
        })
    }
}

struct Page {
    class: usize,
    /// Position of this page in its class's page list.
    pos: usize,
    data: Data,
}

#[derive(Default)]
struct Class {
    pages: Vec<u32>,
    len: usize,
}

/// How a record can change size (see [`Arena::resize_plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resize {
    /// The new size fits the record's current slot.
    InPlace,
    /// A large record staying large: replace its head at the same handle
    /// (the value is kept as it is).
    Rebox,
    /// The record must move to another class.
    Move,
}

/// The record storage. See the module documentation for the layout.
pub(crate) struct Arena {
    pages: Vec<Page>,
    free: Vec<u32>,
    classes: Vec<Class>,
    len: usize,
}

fn class_for(size: usize) -> usize {
    if size <= SMALL_MAX {
        size.max(1).div_ceil(GRAIN) - 1
    } else {
        LARGE
    }
}

/// Whether a record of `size` bytes is stored in the large class, its value
/// apart.
pub(crate) fn is_large(size: usize) -> bool {
    class_for(size) == LARGE
}

fn class_size(class: usize) -> usize {
    (class + 1) * GRAIN
}

fn split(h: u32) -> (usize, usize) {
    ((h >> SLOT_BITS) as usize, (h as usize) & (SLOTS - 1))
}

fn handle(pid: u32, slot: usize) -> u32 {
    (pid << SLOT_BITS) | slot as u32
}

impl Arena {
    pub fn new() -> Arena {
        Arena {
            pages: Vec::new(),
            free: Vec::new(),
            classes: (0..CLASSES).map(|_| Class::default()).collect(),
            len: 0,
        }
    }

    /// Number of records stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether a new record may be added (see `MAX_RECORDS`).
    pub fn can_link(&self) -> bool {
        self.len < MAX_RECORDS
    }

    /// The record at `h`. Small records are returned with their whole slot,
    /// which may extend past the record's own end.
    pub fn get(&self, h: u32) -> Rec<'_> {
        let (pid, slot) = split(h);
        record_of(&self.pages[pid], slot)
    }

    /// The record at `h`, writable.
    pub fn get_mut(&mut self, h: u32) -> RecMut<'_> {
        let (pid, slot) = split(h);
        record_of_mut(&mut self.pages[pid], slot)
    }

    /// The value of the large record at `h`, to share; `None` for a small
    /// record.
    pub fn shared(&self, h: u32) -> Option<&SharedValue> {
        let (pid, slot) = split(h);
        match &self.pages[pid].data {
            Data::Small(_) => None,
            Data::Large(v) => Some(&v[slot].value),
        }
    }

    /// Appends a zeroed record of `size` bytes, the last `vlen` of which are
    /// its value, to its class and returns its handle. `None` when every
    /// handle is in use or, for a large record, when the value's memory
    /// cannot be allocated; the arena is unchanged then.
    pub fn alloc(&mut self, size: usize, vlen: usize) -> Option<u32> {
        let c = class_for(size);
        // Allocated before anything changes, so that failing changes nothing.
        let large = if c == LARGE {
            Some(Large::try_new(size - vlen.min(size), vlen.min(size))?)
        } else {
            None
        };
        let class = &mut self.classes[c];
        if class.len.is_multiple_of(SLOTS) {
            let data = if c == LARGE {
                Data::Large(Vec::with_capacity(SLOTS))
            } else {
                Data::Small(Vec::new())
            };
            let page = Page {
                class: c,
                pos: class.pages.len(),
                data,
            };
            let pid = match self.free.pop() {
                Some(pid) => {
                    self.pages[pid as usize] = page;
                    pid
                }
                None if self.pages.len() < MAX_PAGES => {
                    self.pages.push(page);
                    (self.pages.len() - 1) as u32
                }
                None => return None,
            };
            class.pages.push(pid);
        }
        let pid = class.pages[class.len / SLOTS];
        let slot = class.len % SLOTS;
        match &mut self.pages[pid as usize].data {
            Data::Small(v) => {
                let size = class_size(c);
                if v.len() == v.capacity() {
                    // A page grows by doubling up to its 256 records, so a
                    // class holding a few records does not hold a whole
                    // page (with every class in use, full pages would pin
                    // up to 16 MB).
                    let cap = (v.capacity() * 2).clamp(4 * size, SLOTS * size);
                    v.reserve_exact(cap - v.len());
                }
                v.resize(v.len() + size, 0);
            }
            // `large` is `Some` exactly for this class.
            Data::Large(v) => v.extend(large),
        }
        class.len += 1;
        self.len += 1;
        Some(handle(pid, slot))
    }

    /// Removes the record at `h`. The class's last record moves into the
    /// freed slot; its old handle is returned (`None` when `h` was the last).
    pub fn remove(&mut self, h: u32) -> Option<u32> {
        let (pid, slot) = split(h);
        let c = self.pages[pid].class;
        let index = self.pages[pid].pos * SLOTS + slot;
        let class = &mut self.classes[c];
        let last = class.len - 1;
        let last_pid = class.pages[last / SLOTS] as usize;
        let last_slot = last % SLOTS;
        let moved = if index != last {
            if c == LARGE {
                let b = match &mut self.pages[last_pid].data {
                    Data::Large(v) => v.pop(),
                    Data::Small(_) => None,
                };
                if let (Some(b), Data::Large(v)) = (b, &mut self.pages[pid].data) {
                    v[slot] = b;
                }
            } else {
                let s = class_size(c);
                let (dst, src) = (slot * s, last_slot * s);
                if pid == last_pid {
                    if let Data::Small(v) = &mut self.pages[pid].data {
                        v.copy_within(src..src + s, dst);
                    }
                } else {
                    let (to, from) = two_mut(&mut self.pages, pid, last_pid);
                    if let (Data::Small(t), Data::Small(f)) = (&mut to.data, &from.data) {
                        t[dst..dst + s].copy_from_slice(&f[src..src + s]);
                    }
                }
            }
            Some(handle(last_pid as u32, last_slot))
        } else {
            None
        };
        match &mut self.pages[last_pid].data {
            Data::Small(v) => v.truncate(v.len() - class_size(c)),
            Data::Large(v) => {
                if moved.is_none() {
                    v.pop();
                }
            }
        }
        class.len -= 1;
        self.len -= 1;
        if class.len.is_multiple_of(SLOTS) {
            class.pages.pop();
            // Drop the page's memory now; the id is reused by the next page.
            self.pages[last_pid].data = Data::Small(Vec::new());
            self.free.push(last_pid as u32);
        }
        moved
    }

    /// How a record at `h` can become `new_size` bytes long.
    pub fn resize_plan(&self, h: u32, new_size: usize) -> Resize {
        let c = self.pages[split(h).0].class;
        if c == LARGE && class_for(new_size) == LARGE {
            Resize::Rebox
        } else if c != LARGE && new_size <= class_size(c) && class_for(new_size) == c {
            Resize::InPlace
        } else {
            Resize::Move
        }
    }

    /// Replaces the head of the large record at `h`, keeping its value
    /// (only for [`Resize::Rebox`]).
    pub fn rebox(&mut self, h: u32, head: Box<[u8]>) {
        let (pid, slot) = split(h);
        if let Data::Large(v) = &mut self.pages[pid].data {
            v[slot].head = head;
        }
    }

    /// Runs `f` with the record at `from` and the (distinct) record at `to`.
    pub fn with_pair(&mut self, from: u32, to: u32, f: impl FnOnce(Rec<'_>, RecMut<'_>)) {
        let (fp, _) = split(from);
        let (tp, _) = split(to);
        if fp == tp {
            // One page holds one class; the store only pairs records of
            // different classes, so this copy is never made in practice.
            let src = self.get(from);
            let head = Vec::from(src.head);
            let value = src.value.map(Vec::from);
            let src = Rec {
                head: &head,
                value: value.as_deref(),
            };
            f(src, self.get_mut(to));
            return;
        }
        // Borrow the two pages separately, then slice each.
        let (a, b) = two_mut(&mut self.pages, fp, tp);
        let src = record_of(a, split(from).1);
        let dst = record_of_mut(b, split(to).1);
        f(src, dst);
    }

    /// Number of page ids in use or free; pages are visited by id.
    pub fn page_ids(&self) -> usize {
        self.pages.len()
    }

    /// Number of records on page `pid` (0 for a free page).
    pub fn records_on(&self, pid: usize) -> usize {
        let page = &self.pages[pid];
        match &page.data {
            Data::Small(v) => v.len() / class_size(page.class),
            Data::Large(v) => v.len(),
        }
    }

    /// The handle of slot `slot` on page `pid`.
    pub fn handle_at(pid: usize, slot: usize) -> u32 {
        handle(pid as u32, slot)
    }

    /// Every handle in use, page by page.
    pub fn handles(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.pages.len())
            .flat_map(move |pid| (0..self.records_on(pid)).map(move |s| handle(pid as u32, s)))
    }
}

#[inline]
fn record_of(page: &Page, slot: usize) -> Rec<'_> {
    match &page.data {
        Data::Small(v) => {
            let s = class_size(page.class);
            Rec {
                head: &v[slot * s..slot * s + s],
                value: None,
            }
        }
        Data::Large(v) => {
            let r = &v[slot];
            Rec {
                head: &r.head,
                value: Some(&r.value[..]),
            }
        }
    }
}

#[inline]
fn record_of_mut(page: &mut Page, slot: usize) -> RecMut<'_> {
    match &mut page.data {
        Data::Small(v) => {
            let s = class_size(page.class);
            RecMut {
                head: &mut v[slot * s..slot * s + s],
                value: None,
            }
        }
        Data::Large(v) => {
            let r = &mut v[slot];
            RecMut {
                head: &mut r.head,
                value: Some(&mut r.value),
            }
        }
    }
}

/// Two distinct pages, both writable, in argument order.
fn two_mut(pages: &mut [Page], a: usize, b: usize) -> (&mut Page, &mut Page) {
    if a < b {
        let (lo, hi) = pages.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = pages.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags a record with an id in its first four bytes.
    fn tag(a: &mut Arena, h: u32, id: u32) {
        a.get_mut(h).head[..4].copy_from_slice(&id.to_le_bytes());
    }

    fn id(a: &Arena, h: u32) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&a.get(h).head[..4]);
        u32::from_le_bytes(b)
    }

    #[test]
    fn removal_moves_the_class_tail_and_frees_pages() {
        // A model: id -> handle. Removing an id moves one other id.
        let mut a = Arena::new();
        let mut at: Vec<(u32, u32)> = Vec::new();
        let mut seed = 0x2545_f491_u64;
        let mut next_id = 0;
        for step in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let grow = step < 10_000 || seed.is_multiple_of(3);
            if grow || at.is_empty() {
                let size = [24, 96, 100, 1016, 1017, 5000][(seed >> 8) as usize % 6];
                let h = a.alloc(size, size / 2).unwrap();
                let r = a.get(h);
                assert!(r.head.len() + r.value.map_or(0, <[u8]>::len) >= size);
                assert_eq!(r.value.is_some(), size > SMALL_MAX);
                tag(&mut a, h, next_id);
                at.push((next_id, h));
                next_id += 1;
            } else {
                let i = (seed >> 16) as usize % at.len();
                let (_, h) = at.swap_remove(i);
                if let Some(from) = a.remove(h) {
                    let e = at.iter_mut().find(|e| e.1 == from).unwrap();
                    e.1 = h;
                }
            }
            assert_eq!(a.len(), at.len());
        }
        for &(i, h) in &at {
            assert_eq!(id(&a, h), i);
        }
        let mut seen: Vec<u32> = a.handles().collect();
        seen.sort_unstable();
        let mut want: Vec<u32> = at.iter().map(|e| e.1).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        // Empty it: every page goes back.
        while let Some((_, h)) = at.pop() {
            if let Some(from) = a.remove(h) {
                let e = at.iter_mut().find(|e| e.1 == from).unwrap();
                e.1 = h;
            }
        }
        assert_eq!(a.len(), 0);
        assert!((0..a.page_ids()).all(|p| a.records_on(p) == 0));
        assert_eq!(a.free.len(), a.page_ids());
    }

    #[test]
    fn resize_plans() {
        let mut a = Arena::new();
        let small = a.alloc(96, 10).unwrap();
        let big = a.alloc(2000, 1900).unwrap();
        assert_eq!(a.resize_plan(small, 92), Resize::InPlace);
        assert_eq!(a.resize_plan(small, 89), Resize::InPlace);
        assert_eq!(a.resize_plan(small, 88), Resize::Move);
        assert_eq!(a.resize_plan(small, 100), Resize::Move);
        assert_eq!(a.resize_plan(big, 2004), Resize::Rebox);
        assert_eq!(a.resize_plan(big, 1000), Resize::Move);
    }

    #[test]
    fn pairs_across_pages() {
        let mut a = Arena::new();
        let x = a.alloc(40, 0).unwrap();
        let y = a.alloc(200, 0).unwrap();
        tag(&mut a, x, 7);
        a.with_pair(x, y, |s, d| d.head[..4].copy_from_slice(&s.head[..4]));
        assert_eq!(id(&a, y), 7);
    }

    #[test]
    fn large_values_are_shared_and_stay_put() {
        let mut a = Arena::new();
        let x = a.alloc(3000, 2900).unwrap();
        let y = a.alloc(3000, 2900).unwrap();
        assert_eq!(a.get(x).head.len(), 100);
        assert_eq!(a.get(x).value.map(<[u8]>::len), Some(2900));
        let held = a.shared(y).cloned().unwrap();
        tag(&mut a, y, 9);
        // Moving y into x's slot moves the value's handle, not its bytes.
        assert_eq!(a.remove(x), Some(y));
        assert_eq!(id(&a, x), 9);
        assert!(Arc::ptr_eq(a.shared(x).unwrap(), &held));
        a.rebox(x, vec![0u8; 104].into_boxed_slice());
        assert!(Arc::ptr_eq(a.shared(x).unwrap(), &held));
        let small = a.alloc(50, 10).unwrap();
        assert!(a.shared(small).is_none());
    }
}
