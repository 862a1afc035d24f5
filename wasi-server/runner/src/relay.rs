//! A waker that stays the same from one poll to the next, passing its
//! wake-ups on to the task that polled last.
//!
//! A wait leaves its waker with every socket it waits on, and tokio keeps
//! the one it was given unless `will_wake` says the new one is the same.
//! The task's own waker does not pass that test here (tokio's waker and
//! its clones are built from vtables that need not share an address), so
//! every socket not ready cloned the new waker and dropped the old one at
//! every wait: reference counting on one shared count, twice per socket.
//! A [`Relay`] is one waker with one vtable, a true `static`: a socket
//! already holding it keeps it, and the task's waker is noted once per
//! poll instead.
//!
//! Call order: [`Relay::context`] at each poll, then poll what waits with
//! the context it returns.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

/// The task to wake: the one that polled through the relay last.
#[derive(Default)]
struct Target(Mutex<Option<Waker>>);

impl Target {
    fn wake(&self) {
        let task = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Woken outside the lock: waking may run code that polls again.
        if let Some(t) = task {
            t.wake();
        }
    }
}

/// One waker for every poll of a wait (see the module documentation).
pub struct Relay {
    target: Arc<Target>,
    waker: Waker,
}

impl Default for Relay {
    fn default() -> Relay {
        let target = Arc::new(Target::default());
        let data = Arc::into_raw(target.clone()).cast::<()>();
        // SAFETY: `data` is a strong count on a `Target`, which the
        // vtable's functions below take as theirs.
        let waker = unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) };
        Relay { target, waker }
    }
}

impl Relay {
    /// A context holding the relay's waker, after noting `cx`'s task as
    /// the one it wakes.
    pub fn context(&self, cx: &Context<'_>) -> Context<'_> {
        let mut task = self.target.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *task {
            Some(t) => t.clone_from(cx.waker()),
            None => *task = Some(cx.waker().clone()),
        }
        Context::from_waker(&self.waker)
    }
}

/// The relay's one vtable: a `static`, so every waker built from it
/// carries the same address and `will_wake` knows its clones.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, release);

/// SAFETY (all four): `data` is a strong count on a `Target`, from
/// `Arc::into_raw` in `Relay::default` or in `clone`.
unsafe fn clone(data: *const ()) -> RawWaker {
    unsafe { Arc::increment_strong_count(data.cast::<Target>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    let target = unsafe { Arc::from_raw(data.cast::<Target>()) };
    target.wake();
}

unsafe fn wake_by_ref(data: *const ()) {
    unsafe { &*data.cast::<Target>() }.wake();
}

unsafe fn release(data: *const ()) {
    std::mem::drop(unsafe { Arc::from_raw(data.cast::<Target>()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A task waker counting its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_clone_of_the_relays_waker_will_wake_like_it_and_wakes_the_last_task() {
        let relay = Relay::default();
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let first_waker = Waker::from(first.clone());
        let kept = relay
            .context(&Context::from_waker(&first_waker))
            .waker()
            .clone();
        let second_waker = Waker::from(second.clone());
        let cx = relay.context(&Context::from_waker(&second_waker));
        assert!(
            kept.will_wake(cx.waker()),
            "a socket keeps the waker it holds"
        );
        kept.wake_by_ref();
        kept.wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(
            second.0.load(Ordering::SeqCst),
            2,
            "the task that polled last"
        );
    }

    #[test]
    fn the_relay_outlives_nothing_it_shares() {
        let relay = Relay::default();
        let task = Waker::from(Arc::new(Count::default()));
        let kept = relay.context(&Context::from_waker(&task)).waker().clone();
        let target = Arc::downgrade(&relay.target);
        std::mem::drop(relay);
        assert!(target.upgrade().is_some(), "a kept waker holds its target");
        std::mem::drop(kept);
        assert!(target.upgrade().is_none(), "the last waker frees it");
    }
}
