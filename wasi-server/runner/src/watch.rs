//! What the runner knows about the guest's pollables, so that its `poll`
//! can ask a socket or a timer directly whether it is ready.
//!
//! wasmtime-wasi answers for a pollable by looking it and its parent up in
//! the resource table and building a boxed future from the parent each
//! time it is asked; its `poll` also sorts the list into a map and keeps a
//! future per entry. The guest lists every socket it waits on at every
//! pass, and behind hashing clients or pooled idle connections most of
//! them are not ready: that per-pollable work was most of a pass.
//!
//! So the runner notes, as the guest subscribes, what each pollable of its
//! own making waits for ([`Watch`]): a connection's input, a socket (a
//! listener), or a deadline. Its `poll` asks those directly, with the
//! task's context, and treats any other pollable (an output stream's,
//! standard input's) the way wasmtime-wasi does. The notes follow the
//! resources: the runner defines the `pollable` and `input-stream`
//! destructors, which drop a note with its resource, so a handle number
//! the table hands out again never finds a stale note.
//!
//! Call order: [`link`] after wasmtime-wasi's and the runner's TCP are in
//! the linker; the TCP notes each input stream it creates
//! ([`Watches::opened`]).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;

use tokio::time::{Instant, Sleep};
use wasmtime::component::{Linker, Resource, ResourceTable, ResourceType};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::{DynInputStream, DynPollable, Pollable};
use wasmtime_wasi_io::bindings::wasi::io::poll::HostPollable;
use wasmtime_wasi_io::bindings::wasi::io::streams::HostInputStream;

use crate::tcp::{Reader, Socket};

/// The versions wasmtime-wasi 48 registers; guests importing any 0.2.x
/// are linked to them.
const POLL: &str = "wasi:io/poll@0.2.12";
const STREAMS: &str = "wasi:io/streams@0.2.12";
const CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// What one pollable waits for.
pub enum Watch {
    /// A connection's input: readable, or ended.
    Read(Reader),
    /// The runner's socket with this handle (the pollable's parent, which
    /// outlives it): a listener with a connection pending, any other at
    /// once.
    Socket(u32),
    /// This time (never, when `None`).
    Deadline(Option<Instant>),
}

impl Watch {
    /// Whether it is ready; when it is not, `cx` is woken once it may be
    /// (a deadline through `timer`, which wakes at the earliest one asked
    /// about).
    fn poll(&self, table: &ResourceTable, cx: &mut Context<'_>, timer: &mut Timer) -> bool {
        match self {
            Watch::Read(r) => r.poll_ready(cx).is_ready(),
            Watch::Socket(rep) => match table.get(&Resource::<Socket>::new_borrow(*rep)) {
                Ok(s) => s.poll_ready(cx).is_ready(),
                // Not the runner's socket any more: cannot happen while
                // the pollable lives (its parent outlives it); reported
                // ready, the guest's next call on it says what is wrong.
                Err(_) => true,
            },
            Watch::Deadline(Some(t)) => {
                let due = *t <= Instant::now();
                if !due {
                    timer.wake_at(*t, cx);
                }
                due
            }
            Watch::Deadline(None) => false,
        }
    }

    /// Whether it is ready now, as far as the I/O driver last saw. It
    /// leaves no waker anywhere: a socket's costs one atomic load, where
    /// [`poll`](Watch::poll) takes tokio's lock on its waiters and swaps
    /// the waker kept there.
    fn ready_now(&self, table: &ResourceTable) -> bool {
        match self {
            Watch::Read(r) => r.is_ready(),
            Watch::Socket(rep) => table
                .get(&Resource::<Socket>::new_borrow(*rep))
                .map_or(true, Socket::is_ready),
            Watch::Deadline(at) => at.is_some_and(|t| t <= Instant::now()),
        }
    }
}

/// The one timer a wait keeps, for the earliest deadline not yet passed.
#[derive(Default)]
pub struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Makes sure `cx` is woken at `t` or earlier: the timer keeps the
    /// earliest deadline not yet passed it was given.
    fn wake_at(&mut self, t: Instant, cx: &mut Context<'_>) {
        match &mut self.0 {
            Some(s) if s.deadline() <= t && !s.is_elapsed() => {}
            Some(s) => s.as_mut().reset(t),
            None => self.0 = Some(Box::pin(tokio::time::sleep_until(t))),
        }
        if let Some(s) = &mut self.0 {
            if s.as_mut().poll(cx).is_ready() {
                // Passed meanwhile: look again at once.
                cx.waker().wake_by_ref();
            }
        }
    }
}

/// The notes, by handle: input streams' (while they live) and pollables'.
#[derive(Default)]
pub struct Watches {
    streams: Vec<Option<Reader>>,
    pollables: Vec<Option<Watch>>,
}

impl Watches {
    /// The input stream with handle `rep` reads `reader`'s connection.
    pub fn opened(&mut self, rep: u32, reader: Reader) {
        set(&mut self.streams, rep, Some(reader));
    }

    /// What the pollable with handle `rep` waits for, if the runner knows.
    pub fn get(&self, rep: u32) -> Option<&Watch> {
        self.pollables.get(rep as usize)?.as_ref()
    }

    /// Whether the pollable with handle `rep` is a noted deadline.
    pub fn is_deadline(&self, rep: u32) -> bool {
        matches!(self.get(rep), Some(Watch::Deadline(_)))
    }

    /// Whether the runner knows every pollable of `list`.
    pub fn knows_all(&self, list: &[Resource<DynPollable>]) -> bool {
        list.iter().all(|p| self.get(p.rep()).is_some())
    }

    fn subscribed(&mut self, rep: u32, watch: Watch) {
        set(&mut self.pollables, rep, Some(watch));
    }

    /// The pollable with handle `rep` is being dropped.
    fn pollable_dropped(&mut self, rep: u32) {
        set(&mut self.pollables, rep, None);
    }

    /// The input stream with handle `rep` is being dropped.
    fn stream_dropped(&mut self, rep: u32) {
        set(&mut self.streams, rep, None);
    }
}

/// `subscribe` on the input stream `stream`: wasmtime-wasi's pollable,
/// noted when the stream is one of the runner's connections.
pub fn subscribe_input(
    table: &mut ResourceTable,
    watches: &mut Watches,
    stream: Resource<DynInputStream>,
) -> wasmtime::Result<Resource<DynPollable>> {
    let rep = stream.rep();
    let p = wasmtime_wasi::p2::subscribe(table, stream)?;
    let reader = watches.streams.get(rep as usize).and_then(Option::as_ref);
    if let Some(r) = reader.cloned() {
        watches.subscribed(p.rep(), Watch::Read(r));
    }
    Ok(p)
}

/// A pollable ready `ns` nanoseconds from now (never, if that is too far
/// to represent, as in wasmtime-wasi), noted.
pub fn subscribe_deadline(
    table: &mut ResourceTable,
    watches: &mut Watches,
    ns: u64,
) -> wasmtime::Result<Resource<DynPollable>> {
    let at = Instant::now().checked_add(std::time::Duration::from_nanos(ns));
    let deadline = table.push(Deadline {
        at,
        yield_first: ns == 0,
    })?;
    let p = wasmtime_wasi::p2::subscribe(table, deadline)?;
    watches.subscribed(p.rep(), Watch::Deadline(at));
    Ok(p)
}

/// `v[i] = x`, growing `v` as needed (handles are table indices: dense).
fn set<T>(v: &mut Vec<Option<T>>, i: u32, x: Option<T>) {
    let i = i as usize;
    if i >= v.len() {
        if x.is_none() {
            return;
        }
        v.resize_with(i + 1, || None);
    }
    v[i] = x;
}

/// The positions in `list` of the pollables ready, all of them known to
/// `watches`; when none is, `cx` is woken once one may be.
///
/// A wait is polled again at every wake-up, usually for one socket of
/// many, so it looks without waiting first: only when nothing is ready
/// does it leave its waker with each pollable.
///
/// `table` is taken mutably (though only read) so that a future holding
/// it stays `Send`.
pub fn ready_known(
    watches: &Watches,
    table: &mut ResourceTable,
    list: &[Resource<DynPollable>],
    cx: &mut Context<'_>,
    timer: &mut Timer,
) -> Vec<u32> {
    let ready = positions(watches, list, |w| w.ready_now(table));
    if !ready.is_empty() {
        return ready;
    }
    positions(watches, list, |w| w.poll(table, cx, timer))
}

/// The positions in `list` of the known pollables `ready` says are.
fn positions(
    watches: &Watches,
    list: &[Resource<DynPollable>],
    mut ready: impl FnMut(&Watch) -> bool,
) -> Vec<u32> {
    (0u32..)
        .zip(list)
        .filter(|(_, p)| watches.get(p.rep()).is_some_and(&mut ready))
        .map(|(i, _)| i)
        .collect()
}

/// Whether the known pollable `rep` is ready now, as far as the I/O
/// driver last saw (`None`: not known). It leaves no waker.
pub fn ready_one(watches: &Watches, table: &ResourceTable, rep: u32) -> Option<bool> {
    Some(watches.get(rep)?.ready_now(table))
}

/// What a guest's host state gives the notes' definitions.
pub trait WatchView: Send + 'static {
    fn watched(&mut self) -> (&mut ResourceTable, &mut Watches);
}

/// A deadline's pollable, for whoever asks it the generic way
/// (`pollable.ready`, `pollable.block`, or a `poll` listing pollables the
/// runner does not know): wasmtime-wasi's semantics, a zero wait yielding
/// once first (so the I/O driver runs), any other ready from its time on.
struct Deadline {
    at: Option<Instant>,
    yield_first: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Deadline {
    async fn ready(&mut self) {
        if self.yield_first {
            self.yield_first = false;
            tokio::task::yield_now().await;
            return;
        }
        match self.at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }
}

/// Defines the `pollable` and `input-stream` destructors, input streams'
/// `subscribe` and `subscribe-duration` over wasmtime-wasi's, noting what
/// each new pollable waits for.
pub fn link<T: WatchView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let r = define(linker).map_err(|e| anyhow::anyhow!("linking the runner's pollables: {e}"));
    linker.allow_shadowing(false);
    r
}

fn define<T: WatchView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut poll = linker.instance(POLL)?;
    poll.resource(
        "pollable",
        ResourceType::host::<DynPollable>(),
        |mut s: StoreContextMut<'_, T>, rep| {
            let (table, watches) = s.data_mut().watched();
            watches.pollable_dropped(rep);
            HostPollable::drop(table, Resource::new_own(rep))
        },
    )?;
    let mut streams = linker.instance(STREAMS)?;
    streams.resource_async(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut s: StoreContextMut<'_, T>, rep| {
            Box::new(async move {
                let (table, watches) = s.data_mut().watched();
                watches.stream_dropped(rep);
                HostInputStream::drop(table, Resource::new_own(rep)).await
            })
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.subscribe",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<DynInputStream>,)| {
            let (table, watches) = s.data_mut().watched();
            Ok((subscribe_input(table, watches, this)?,))
        },
    )?;
    let mut clock = linker.instance(CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut s: StoreContextMut<'_, T>, (ns,): (u64,)| {
            let (table, watches) = s.data_mut().watched();
            Ok((subscribe_deadline(table, watches, ns)?,))
        },
    )?;
    Ok(())
}

/// Notes that the pollable `p`, just made by the runner's TCP for its
/// socket `socket`, waits on that socket.
pub fn socket_subscribed(watches: &mut Watches, p: &Resource<DynPollable>, socket: u32) {
    watches.subscribed(p.rep(), Watch::Socket(socket));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::poll::Poller;

    const MS: u64 = 1_000_000;

    fn block_on<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f)
    }

    fn borrow(p: &Resource<DynPollable>) -> Resource<DynPollable> {
        Resource::new_borrow(p.rep())
    }

    /// Polls `list` with a fresh poller and nothing to interrupt it.
    async fn poll(
        table: &mut ResourceTable,
        w: &Watches,
        list: &[&Resource<DynPollable>],
    ) -> Vec<u32> {
        let list = list.iter().map(|p| borrow(p)).collect();
        let never = std::future::pending();
        Poller::default().poll(table, w, list, never).await.unwrap()
    }

    /// A connection's input stream in `table`, noted in `w`, and its
    /// client.
    async fn connection(
        table: &mut ResourceTable,
        w: &mut Watches,
    ) -> (Resource<DynInputStream>, std::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let reader = Reader {
            stream: Arc::new(server),
            closed: Arc::default(),
        };
        let watch = reader.clone();
        let mut input: DynInputStream = Box::new(reader);
        // A new connection looks readable until a read finds nothing.
        assert!(input.read(64).unwrap().is_empty());
        let input = table.push(input).unwrap();
        w.opened(input.rep(), watch);
        (input, client)
    }

    #[test]
    fn the_earliest_known_deadline_ends_the_wait() {
        block_on(async {
            let (mut table, mut w) = (ResourceTable::new(), Watches::default());
            let late = subscribe_deadline(&mut table, &mut w, 500 * MS).unwrap();
            let soon = subscribe_deadline(&mut table, &mut w, 30 * MS).unwrap();
            let start = Instant::now();
            assert_eq!(poll(&mut table, &w, &[&late, &soon]).await, vec![1]);
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(waited < Duration::from_millis(400), "{waited:?}");
            let now = subscribe_deadline(&mut table, &mut w, 0).unwrap();
            assert_eq!(poll(&mut table, &w, &[&late, &now]).await, vec![1]);
        })
    }

    #[test]
    fn a_known_connection_is_ready_once_its_client_writes() {
        block_on(async {
            let (mut table, mut w) = (ResourceTable::new(), Watches::default());
            let (input, mut client) = connection(&mut table, &mut w).await;
            let p = subscribe_input(&mut table, &mut w, Resource::new_borrow(input.rep())).unwrap();
            assert!(matches!(w.get(p.rep()), Some(Watch::Read(_))));
            let timer = subscribe_deadline(&mut table, &mut w, 20 * MS).unwrap();
            assert_eq!(
                poll(&mut table, &w, &[&p, &timer]).await,
                vec![1],
                "nothing sent yet"
            );
            client.write_all(b"get k\r\n").unwrap();
            // The runner's `poll` lets the I/O driver run first; so does this.
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(poll(&mut table, &w, &[&p, &timer]).await, vec![0, 1]);
            let mut poller = Poller::default();
            let list = vec![borrow(&p)];
            let ready = poller
                .poll(&mut table, &w, list, std::future::pending())
                .await;
            assert_eq!(ready.unwrap(), vec![0]);
            // Busy: the quick look answers, from the note.
            let ready = poller
                .poll(&mut table, &w, vec![borrow(&p)], std::future::pending())
                .await;
            assert_eq!(ready.unwrap(), vec![0]);
        })
    }

    #[test]
    fn only_the_runners_connections_are_noted_and_notes_go_with_their_handles() {
        block_on(async {
            let (mut table, mut w) = (ResourceTable::new(), Watches::default());
            let (input, _client) = connection(&mut table, &mut w).await;
            w.stream_dropped(input.rep());
            let p = subscribe_input(&mut table, &mut w, Resource::new_borrow(input.rep())).unwrap();
            assert!(
                w.get(p.rep()).is_none(),
                "a stream not noted: asked the generic way"
            );
            let d = subscribe_deadline(&mut table, &mut w, 0).unwrap();
            let rep = d.rep();
            assert!(w.get(rep).is_some());
            w.pollable_dropped(rep);
            HostPollable::drop(&mut table, d).unwrap();
            assert!(w.get(rep).is_none());
            // The handle is reused by a pollable the runner did not note.
            let again = wasmtime_wasi::p2::subscribe(
                &mut table,
                Resource::<DynInputStream>::new_borrow(input.rep()),
            )
            .unwrap();
            assert!(w.get(again.rep()).is_none());
            assert!(!w.knows_all(&[borrow(&again)]));
        })
    }

    #[test]
    fn a_list_with_a_pollable_not_noted_waits_the_generic_way() {
        block_on(async {
            let (mut table, mut w) = (ResourceTable::new(), Watches::default());
            let (input, mut client) = connection(&mut table, &mut w).await;
            let known =
                subscribe_input(&mut table, &mut w, Resource::new_borrow(input.rep())).unwrap();
            let other = wasmtime_wasi::p2::subscribe(
                &mut table,
                Resource::<DynInputStream>::new_borrow(input.rep()),
            )
            .unwrap();
            assert!(!w.knows_all(&[borrow(&known), borrow(&other)]));
            client.write_all(b"x").unwrap();
            assert_eq!(poll(&mut table, &w, &[&known, &other]).await, vec![0, 1]);
        })
    }
}
