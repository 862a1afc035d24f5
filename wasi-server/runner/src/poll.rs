//! The runner's `wasi:io/poll.poll`: a quick look while the guest is
//! busy, and the runner's own wait for the pollables it made.
//!
//! wasmtime-wasi's `poll` sorts the listed pollables into a map, gives each
//! a list of its positions, and keeps a future per pollable until one is
//! ready: about three host allocations per pollable on every call, paid
//! for every socket the guest waits on however few are ready. An instance
//! behind hashing clients holds a socket from every client connection, and
//! only a few of them have a request at a time, so most of a pass was that
//! bookkeeping.
//!
//! [`Poller::poll`] first asks each pollable once whether it is ready now
//! and returns those if any are; it waits only when none is. A pass that
//! ends up waiting would pay for both, so the quick look is taken only
//! while the last poll found something ready without waiting (in the
//! runner's own wait, a socket: a zero timeout's deadline is ready at once
//! every time): a busy guest gets the cheap pass, an idle or lightly
//! loaded one a single wait. The quick look at a known pollable reads
//! what the I/O driver last saw and leaves no waker (see `watch`).
//!
//! Pollables the runner made and noted (`watch`: connections' input, its
//! sockets, deadlines) are asked directly, in the quick look and in the
//! wait, which then is the runner's own: one pass over the list per
//! wake-up, a socket registering the task in tokio's reader slot (through
//! one [`Relay`] waker, which a socket already holding it keeps), the
//! earliest deadline in one timer. Any other pollable is asked with
//! wasmtime-wasi's `pollable.ready`, and a list holding one waits with
//! wasmtime-wasi's `poll`.
//!
//! Call order: the runner's `poll` first yields to the I/O driver (so
//! readiness is fresh; see `sandbox`), then calls [`Poller::poll`].

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::poll::DynPollable;

use crate::relay::Relay;
use crate::watch::{ready_known, ready_one, Timer, Watches};

/// Whether the guest's last poll found something ready without waiting
/// (see the module documentation), and the waker its waits leave.
#[derive(Default)]
pub struct Poller {
    busy: bool,
    relay: Relay,
}

impl Poller {
    /// The positions in `list` of the pollables ready, waiting until at
    /// least one is or `interrupt` resolves (then none are reported).
    /// Pollables `watches` knows are asked directly, others the way
    /// wasmtime-wasi asks them. Errors are wasmtime-wasi's (an empty
    /// list, a bad handle): they trap the guest.
    pub async fn poll(
        &mut self,
        table: &mut ResourceTable,
        watches: &Watches,
        list: Vec<Resource<DynPollable>>,
        interrupt: impl Future<Output = ()>,
    ) -> wasmtime::Result<Vec<u32>> {
        let mut interrupt = pin!(interrupt);
        if self.busy {
            if is_ready(interrupt.as_mut()).await {
                return Ok(Vec::new());
            }
            let ready = ready_now(table, watches, &list).await?;
            if !ready.is_empty() {
                return Ok(ready);
            }
        }
        let (ready, at_once) = if !list.is_empty() && watches.knows_all(&list) {
            let mut timer = Timer::default();
            let relay = &self.relay;
            let wait = poll_fn(|cx| {
                if interrupt.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(Vec::new()));
                }
                let mut cx = relay.context(cx);
                match ready_known(watches, table, &list, &mut cx, &mut timer) {
                    r if r.is_empty() => Poll::Pending,
                    r => Poll::Ready(Ok(r)),
                }
            });
            let (ready, at_once) = first_poll(wait).await;
            // A zero timeout's deadline is ready at once every time: only
            // a socket found ready makes the guest busy.
            let socket_ready = ready.as_ref().is_ok_and(|r| {
                r.iter()
                    .filter_map(|&i| list.get(i as usize))
                    .any(|p| !watches.is_deadline(p.rep()))
            });
            (ready, at_once && socket_ready)
        } else {
            let wait = async {
                tokio::select! {
                    biased;
                    () = interrupt => Ok(Vec::new()),
                    ready = table.poll(list) => ready,
                }
            };
            first_poll(wait).await
        };
        let ready = ready?;
        self.busy = at_once && !ready.is_empty();
        Ok(ready)
    }
}

/// The positions of the pollables in `list` that are ready now. Known ones
/// leave no waker; others are asked the way wasmtime-wasi asks them.
async fn ready_now(
    table: &mut ResourceTable,
    watches: &Watches,
    list: &[Resource<DynPollable>],
) -> wasmtime::Result<Vec<u32>> {
    let mut ready = Vec::new();
    for (i, p) in (0u32..).zip(list) {
        let is = match ready_one(watches, table, p.rep()) {
            Some(is) => is,
            None => table.ready(Resource::new_borrow(p.rep())).await?,
        };
        if is {
            ready.push(i);
        }
    }
    Ok(ready)
}

/// Polls `f` once: whether it is done.
async fn is_ready(mut f: Pin<&mut impl Future<Output = ()>>) -> bool {
    poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_ready())).await
}

/// Runs `f` to completion; also says whether it was ready when first
/// polled (it did not wait).
async fn first_poll<T>(f: impl Future<Output = T>) -> (T, bool) {
    let mut f = pin!(f);
    let mut polls = 0u32;
    let out = poll_fn(|cx| {
        polls += 1;
        f.as_mut().poll(cx)
    })
    .await;
    (out, polls == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi_io::poll::{subscribe, Pollable};

    /// A pollable whose readiness the test sets.
    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);

    #[wasmtime_wasi_io::async_trait]
    impl Pollable for Flag {
        async fn ready(&mut self) {
            let flag = self.0.clone();
            poll_fn(|_| match flag.load(std::sync::atomic::Ordering::SeqCst) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            })
            .await
        }
    }

    fn flags(table: &mut ResourceTable, states: &[bool]) -> Vec<Resource<DynPollable>> {
        states
            .iter()
            .map(|&s| {
                let flag = Flag(std::sync::Arc::new(s.into()));
                let r = table.push(flag).unwrap();
                subscribe(table, r).unwrap()
            })
            .collect()
    }

    fn borrows(list: &[Resource<DynPollable>]) -> Vec<Resource<DynPollable>> {
        list.iter().map(|p| Resource::new_borrow(p.rep())).collect()
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(f)
    }

    #[test]
    fn reports_what_is_ready_and_learns_whether_it_waited() {
        let mut table = ResourceTable::new();
        let list = flags(&mut table, &[false, true, false, true]);
        let mut poller = Poller::default();
        let never = std::future::pending::<()>;
        let ready = block_on(poller.poll(&mut table, &Watches::default(), borrows(&list), never()));
        assert_eq!(ready.unwrap(), vec![1, 3]);
        assert!(poller.busy, "ready at once: the next pass looks first");
        let ready = block_on(poller.poll(&mut table, &Watches::default(), borrows(&list), never()));
        assert_eq!(ready.unwrap(), vec![1, 3], "the quick look finds the same");
    }

    #[test]
    fn an_interrupt_ends_a_wait_with_nothing_ready() {
        let mut table = ResourceTable::new();
        let list = flags(&mut table, &[false, false]);
        let mut poller = Poller::default();
        let ready =
            block_on(poller.poll(&mut table, &Watches::default(), borrows(&list), async {}));
        assert_eq!(ready.unwrap(), Vec::<u32>::new());
        assert!(
            !poller.busy,
            "nothing was ready: the next pass does not look first"
        );
    }

    #[test]
    fn a_busy_guest_still_sees_an_interrupt_before_ready_sockets() {
        let mut table = ResourceTable::new();
        let list = flags(&mut table, &[true]);
        let mut poller = Poller {
            busy: true,
            ..Poller::default()
        };
        let ready =
            block_on(poller.poll(&mut table, &Watches::default(), borrows(&list), async {}));
        assert_eq!(ready.unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn a_zero_timeout_alone_does_not_make_the_guest_busy() {
        let mut table = ResourceTable::new();
        let mut watches = Watches::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let zero = rt.block_on(async {
            crate::watch::subscribe_deadline(&mut table, &mut watches, 0).unwrap()
        });
        let mut poller = Poller::default();
        let list = vec![Resource::new_borrow(zero.rep())];
        let ready = rt.block_on(poller.poll(&mut table, &watches, list, std::future::pending()));
        assert_eq!(ready.unwrap(), vec![0]);
        assert!(!poller.busy, "only the timeout was ready");
    }

    #[test]
    fn an_empty_list_is_refused_as_wasmtime_wasi_refuses_it() {
        let mut table = ResourceTable::new();
        for busy in [false, true] {
            let mut poller = Poller {
                busy,
                ..Poller::default()
            };
            let r = block_on(poller.poll(
                &mut table,
                &Watches::default(),
                Vec::new(),
                std::future::pending(),
            ));
            assert!(r.is_err());
        }
    }
}
