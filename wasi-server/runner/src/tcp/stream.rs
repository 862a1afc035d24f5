//! A connection's `input-stream` and `output-stream`.
//!
//! [`Reader`] reads what has arrived (into one buffer per thread, copied
//! out at the length read), and when a read comes back short it tells
//! tokio the socket is drained. tokio learns readiness from edge-triggered
//! `epoll` and forgets it only when a read fails with `EAGAIN`; without
//! that, a socket read to the end of one request still
//! looked readable at the next `poll`, and the guest spent a pass and a
//! `recv` finding nothing there: one wasted read for every request whose
//! successor had not arrived yet (half of them behind two instances, all
//! of them for a lone client). The forgetting is tokio's own, tied to the
//! readiness event the read saw, so data arriving meanwhile is not missed.
//!
//! [`Writer`] writes at once what the socket takes; the rest of a write
//! (at most the 64 KiB one `check-write` permits) goes on in the
//! background, and `check-write` permits nothing until it is done, as in
//! wasmtime-wasi. Unlike there, dropping the stream does not wait for it
//! (that blocked the whole guest on a client that stopped reading): the
//! background write goes on for [`LINGER`] and then gives up, at once if
//! [`MAX_LINGERING`] others already linger.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Most bytes one read returns or one write is permitted (wasmtime-wasi's
/// figure, which the guest's buffers are sized for).
pub const MAX_CHUNK: usize = 64 * 1024;

/// How long the rest of a write goes on after its stream was dropped.
pub const LINGER: Duration = Duration::from_secs(10);

/// Most background writes of dropped streams going on at once in the
/// process: each holds a descriptor and up to [`MAX_CHUNK`] bytes.
pub const MAX_LINGERING: usize = 1024;

/// Background writes of dropped streams going on now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// A connection's input. `closed` is shared with its socket, whose
/// `shutdown(receive)` ends the stream. A clone is a second handle on the
/// same connection (the runner's `poll` keeps one to ask readiness).
#[derive(Clone)]
pub struct Reader {
    pub stream: Arc<TcpStream>,
    pub closed: Arc<AtomicBool>,
}

impl Reader {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Ready when something can be read or the stream has ended.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.is_closed() {
            return std::task::Poll::Ready(());
        }
        // Only the guest waits to read, so tokio's single reader slot does
        // (cheaper than `readable`'s list of waiters, and most sockets
        // polled are not ready). An error shows at the next read.
        self.stream.poll_read_ready(cx).map(|_| ())
    }

    /// Whether something can be read or the stream has ended, as far as
    /// the I/O driver last saw: [`poll_ready`](Reader::poll_ready) without
    /// taking tokio's lock on the socket's waiters or leaving a waker
    /// there, for a look that does not wait.
    pub fn is_ready(&self) -> bool {
        // The closure runs only when tokio holds the socket readable, and
        // answering without reading keeps that readiness.
        self.is_closed() || self.stream.try_io(Interest::READABLE, || Ok(())).is_ok()
    }
}

impl InputStream for Reader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.is_closed() {
            return Err(StreamError::Closed);
        }
        let want = size.min(MAX_CHUNK);
        if want == 0 {
            return Ok(Bytes::new());
        }
        let r = SCRATCH.with_borrow_mut(|scratch| {
            let end = want.min(scratch.len());
            let buf = &mut scratch[..end];
            read_clearing(&self.stream, buf).map(|n| Bytes::copy_from_slice(&buf[..n]))
        });
        match r {
            Ok(b) if b.is_empty() => {
                self.closed.store(true, Ordering::Relaxed);
                Err(StreamError::Closed)
            }
            Ok(b) => Ok(b),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Bytes::new()),
            Err(e) => {
                self.closed.store(true, Ordering::Relaxed);
                Err(StreamError::LastOperationFailed(e.into()))
            }
        }
    }
}

thread_local! {
    /// What a read lands in before it is copied out at its length: a
    /// buffer of the size asked for (4 KiB for a pass's first read, 64 KiB
    /// after) allocated and freed for each read cost more than the copy of
    /// a request of a few dozen bytes. One per thread: a read runs to its
    /// end on the guest's thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_CHUNK]);
}

/// Reads up to `buf.len()` bytes into `buf`. A read of fewer (but some)
/// makes tokio forget the readiness it was based on: the inner read
/// succeeds, the outer closure then reports `WouldBlock` so tokio clears
/// that event, and the bytes are returned all the same.
fn read_clearing(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let want = buf.len();
    let mut got = 0;
    let r = stream.try_io(Interest::READABLE, || {
        got = stream.try_read(buf)?;
        match got {
            n if n > 0 && n < want => Err(ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    });
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Reader {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

/// What a connection's output has not written yet, shared with its
/// background write and its socket (for `shutdown(send)`).
pub struct Outbox {
    stream: Arc<TcpStream>,
    /// Written by the guest, not yet taken by the socket.
    pending: Bytes,
    /// What the last `check-write` permitted.
    permit: usize,
    /// The stream failed or was shut down: the error every later call
    /// gets.
    failed: Option<Failure>,
    /// Shut down sending once `pending` is written.
    shutdown_after: bool,
    /// A background write is running.
    writing: bool,
    /// The guest dropped the stream (see [`LINGER`]).
    dropped: bool,
}

#[derive(Clone, Copy)]
enum Failure {
    Closed,
    Failed(ErrorKind),
}

impl Failure {
    fn error(self) -> StreamError {
        match self {
            Failure::Closed => StreamError::Closed,
            Failure::Failed(k) => StreamError::LastOperationFailed(io::Error::from(k).into()),
        }
    }
}

/// A connection's output.
#[derive(Clone)]
pub struct Writer {
    outbox: Arc<Mutex<Outbox>>,
    /// Wakes the background write when the stream is dropped.
    dropped: Arc<Notify>,
}

impl Writer {
    pub fn new(stream: Arc<TcpStream>) -> Writer {
        Writer {
            outbox: Arc::new(Mutex::new(Outbox {
                stream,
                pending: Bytes::new(),
                permit: 0,
                failed: None,
                shutdown_after: false,
                writing: false,
                dropped: false,
            })),
            dropped: Arc::new(Notify::new()),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while it was held left nothing half-done that matters
        // more than serving on.
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `shutdown(send)`: at once, or after what is still pending.
    pub fn shut_down(&self) {
        let mut o = self.outbox();
        o.shutdown_after = true;
        o.drain();
    }

    /// Writes what is pending in the background until it is written, the
    /// socket fails, or the stream has been dropped for [`LINGER`].
    fn spawn_background(&self) {
        let w = self.clone();
        tokio::spawn(async move {
            let mut linger = None;
            loop {
                let (stream, dropped) = {
                    let mut o = w.outbox();
                    if o.drain() {
                        o.writing = false;
                        return;
                    }
                    (o.stream.clone(), o.dropped)
                };
                let writable = stream.writable();
                if dropped {
                    let l = linger.get_or_insert_with(Lingering::start);
                    let gave_up = match l.until {
                        Some(at) => tokio::time::timeout_at(at, writable).await.is_err(),
                        None => true,
                    };
                    if gave_up {
                        let mut o = w.outbox();
                        o.pending = Bytes::new();
                        o.writing = false;
                        return;
                    }
                } else {
                    tokio::select! {
                        _ = writable => {}
                        () = w.dropped.notified() => {}
                    }
                }
            }
        });
    }
}

/// A background write of a dropped stream, counted in [`LINGERING`]
/// while it lasts.
struct Lingering {
    /// When it gives up; `None`: at once (too many linger).
    until: Option<tokio::time::Instant>,
}

impl Lingering {
    fn start() -> Lingering {
        let before = LINGERING.fetch_add(1, Ordering::Relaxed);
        let until = (before < MAX_LINGERING).then(|| tokio::time::Instant::now() + LINGER);
        Lingering { until }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Outbox {
    /// Writes what is pending as far as the socket takes it, then a
    /// pending shutdown. Whether nothing is left to do.
    fn drain(&mut self) -> bool {
        while !self.pending.is_empty() {
            match self.stream.try_write(&self.pending) {
                Ok(0) => {
                    self.fail(ErrorKind::WriteZero);
                    return true;
                }
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e.kind());
                    return true;
                }
            }
        }
        if self.shutdown_after && self.failed.is_none() {
            let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
            self.failed = Some(Failure::Closed);
        }
        true
    }

    /// Why a write is refused now: the stream failed, or it is being shut
    /// down.
    fn refusal(&self) -> Option<StreamError> {
        match (self.failed, self.shutdown_after) {
            (Some(f), _) => Some(f.error()),
            (None, true) => Some(StreamError::Closed),
            (None, false) => None,
        }
    }

    fn fail(&mut self, kind: ErrorKind) {
        self.pending = Bytes::new();
        self.failed = Some(match kind {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Failure::Closed,
            k => Failure::Failed(k),
        });
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Writer {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut o = self.outbox();
        if let Some(f) = o.refusal() {
            return Err(f);
        }
        if bytes.len() > o.permit {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "not permitted to write {} bytes",
                bytes.len()
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // The permit is for one write (a second one without a
        // `check-write` traps, as in wasmtime-wasi).
        o.permit = 0;
        o.pending = bytes;
        if o.drain() || o.writing {
            // A failure of this write shows now, as in wasmtime-wasi.
            return match o.failed {
                Some(f) => Err(f.error()),
                None => Ok(()),
            };
        }
        o.writing = true;
        drop(o);
        self.spawn_background();
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Everything goes to the socket as soon as it takes it.
        match self.outbox().failed {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut o = self.outbox();
        if let Some(f) = o.refusal() {
            return Err(f);
        }
        o.permit = if o.pending.is_empty() { MAX_CHUNK } else { 0 };
        Ok(o.permit)
    }

    async fn cancel(&mut self) {
        self.outbox().dropped = true;
        self.dropped.notify_one();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Writer {
    /// Ready when a write would be permitted (nothing pending) or would
    /// fail.
    async fn ready(&mut self) {
        loop {
            let stream = {
                let mut o = self.outbox();
                if o.failed.is_some() || o.drain() {
                    return;
                }
                o.stream.clone()
            };
            // An error shows at the next drain.
            let _ = stream.writable().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::task::{Context, Waker};

    /// A connected pair: the server side as the runner holds it, the
    /// client side a blocking std socket.
    async fn pair() -> (Arc<TcpStream>, std::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    fn reader(stream: &Arc<TcpStream>) -> Reader {
        Reader {
            stream: stream.clone(),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether `f` is ready when polled once.
    fn ready_now(f: impl Future<Output = ()>) -> bool {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_short_read_leaves_the_socket_unready_until_more_arrives() {
        run(async {
            let (server, mut client) = pair().await;
            let mut r = reader(&server);
            client.write_all(b"get a\r\n").unwrap();
            r.ready().await;
            assert_eq!(&r.read(4096).unwrap()[..], b"get a\r\n");
            // Drained: not readable, so the guest's next poll waits
            // instead of reading nothing.
            tokio::task::yield_now().await;
            assert!(!ready_now(r.ready()));
            client.write_all(b"get b\r\n").unwrap();
            r.ready().await;
            assert_eq!(&r.read(4096).unwrap()[..], b"get b\r\n");
        });
    }

    #[test]
    fn a_read_returns_at_most_the_size_asked_and_then_the_rest() {
        run(async {
            let (server, mut client) = pair().await;
            let mut r = reader(&server);
            client.write_all(b"0123456789").unwrap();
            r.ready().await;
            assert_eq!(&r.read(4).unwrap()[..], b"0123");
            // A full read leaves readiness: the rest is there at once.
            assert!(ready_now(r.ready()));
            assert_eq!(&r.read(100).unwrap()[..], b"456789");
            assert!(r.read(100).unwrap().is_empty(), "nothing more yet");
            drop(client);
            r.ready().await;
            assert!(matches!(r.read(100), Err(StreamError::Closed)));
        });
    }

    /// Writes `total` bytes of a pattern through `w` as the guest does
    /// (check-write, then at most that much), without waiting for the peer.
    fn write_pattern(w: &mut Writer, total: usize) -> usize {
        let mut sent = 0;
        while sent < total {
            let room = w.check_write().unwrap();
            if room == 0 {
                break;
            }
            let n = room.min(total - sent);
            let chunk: Vec<u8> = (sent..sent + n).map(|i| i as u8).collect();
            w.write(Bytes::from(chunk)).unwrap();
            sent += n;
        }
        sent
    }

    /// Reads `n` bytes on a blocking thread; whether they are the pattern
    /// `write_pattern` wrote.
    fn read_pattern(mut client: std::net::TcpStream, n: usize) -> tokio::task::JoinHandle<bool> {
        tokio::task::spawn_blocking(move || {
            let mut got = vec![0; n];
            client.read_exact(&mut got).unwrap();
            got.iter().enumerate().all(|(i, &b)| b == i as u8)
        })
    }

    #[test]
    fn the_rest_of_a_write_goes_on_in_the_background_and_in_order() {
        run(async {
            let (server, client) = pair().await;
            let mut w = Writer::new(server);
            // More than the kernel buffers hold while the peer reads nothing.
            let sent = write_pattern(&mut w, 64 << 20);
            assert!(sent < 64 << 20, "the socket stopped taking bytes");
            assert_eq!(
                w.check_write().unwrap(),
                0,
                "nothing permitted while pending"
            );
            let reading = read_pattern(client, sent);
            // The guest waits on the stream's pollable meanwhile.
            w.ready().await;
            assert_eq!(w.check_write().unwrap(), MAX_CHUNK);
            assert!(reading.await.unwrap(), "every byte, in order");
        });
    }

    #[test]
    fn a_permit_is_for_one_write() {
        run(async {
            let (server, _client) = pair().await;
            let mut w = Writer::new(server);
            assert_eq!(w.check_write().unwrap(), MAX_CHUNK);
            w.write(Bytes::from_static(b"first")).unwrap();
            assert!(matches!(
                w.write(Bytes::from_static(b"second")),
                Err(StreamError::Trap(_))
            ));
            w.shut_down();
            assert!(matches!(w.check_write(), Err(StreamError::Closed)));
        });
    }

    #[test]
    fn a_dropped_stream_still_delivers_what_was_written() {
        run(async {
            let (server, client) = pair().await;
            let mut w = Writer::new(server);
            let sent = write_pattern(&mut w, 64 << 20);
            w.cancel().await;
            drop(w);
            assert!(
                read_pattern(client, sent).await.unwrap(),
                "every byte, in order"
            );
        });
    }

    #[test]
    fn shutting_down_sends_the_pending_bytes_first_and_then_refuses_writes() {
        run(async {
            let (server, mut client) = pair().await;
            let mut w = Writer::new(server);
            let sent = write_pattern(&mut w, 64 << 20);
            w.shut_down();
            let got = tokio::task::spawn_blocking(move || {
                let mut got = Vec::new();
                client.read_to_end(&mut got).map(|_| got)
            });
            w.ready().await;
            assert!(matches!(w.check_write(), Err(StreamError::Closed)));
            assert_eq!(
                got.await.unwrap().unwrap().len(),
                sent,
                "then end of stream"
            );
        });
    }
}
