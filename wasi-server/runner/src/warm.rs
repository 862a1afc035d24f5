//! The runner's side of warm restart (`-e PATH`).
//!
//! The guest writes and reads the snapshot itself (see the server's
//! `warm` module); the runner grants it exactly what that needs and
//! delivers the graceful stop request:
//!
//! * **Files.** The guest gets PATH's directory, and nothing else, preopened
//!   read-write at the same absolute path as on the host, so the `-e` it is
//!   given names the same file. It needs the directory, not just the file:
//!   the snapshot is written to `PATH.tmp` and renamed over PATH, and
//!   removed once restored. Give it a directory of its own.
//! * **Stopping.** A WASI guest gets no signals. On SIGUSR1 the runner
//!   sets [`GRACEFUL`]; the guest's standard input, a [`StopInput`], then
//!   has a byte to read (until then it is empty, never closed), and every
//!   `wasi:io/poll.poll` the guest makes returns at once (see the sandbox),
//!   so an idle guest wakes up, reads it, writes the snapshot and exits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamResult};

/// The process-wide graceful stop request.
pub static GRACEFUL: LazyLock<StopRequest> = LazyLock::new(|| StopRequest {
    requested: AtomicBool::new(false),
    notify: Arc::new(Notify::new()),
});

/// A request that, once made, stays made; guests wait for it.
pub struct StopRequest {
    requested: AtomicBool,
    notify: Arc<Notify>,
}

impl StopRequest {
    /// Makes the request and wakes every guest waiting for it. Safe from
    /// any thread.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the request was made.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once the request is made (at once if it was).
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a request made in
            // between still wakes this waiter.
            notified.as_mut().enable();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }
}

/// Where the snapshot lives, on the host and as the guest sees it.
pub struct SnapshotDir {
    /// The directory, canonical, on the host.
    pub host: PathBuf,
    /// The same directory's path in the guest (the host path as a string).
    pub guest: String,
    /// The snapshot file under the guest path: what the guest's `-e` says.
    pub file: PathBuf,
}

impl SnapshotDir {
    /// Resolves `-e PATH` (relative to the runner's working directory).
    /// Fails when PATH names no file or its directory does not exist.
    pub fn resolve(path: &Path) -> anyhow::Result<SnapshotDir> {
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("-e {}: names a directory, not a file", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let host = dir
            .canonicalize()
            .with_context(|| format!("-e {}: its directory", path.display()))?;
        let guest = host
            .to_str()
            .ok_or_else(|| anyhow!("-e {}: the directory is not valid UTF-8", path.display()))?
            .to_string();
        let file = host.join(name);
        if file.to_str().is_none() {
            return Err(anyhow!("-e {}: not valid UTF-8", path.display()));
        }
        Ok(SnapshotDir { host, guest, file })
    }
}

/// The guest's standard input: empty until [`GRACEFUL`] is requested,
/// then a newline, for ever.
pub struct StopInput;

impl IsTerminal for StopInput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for StopInput {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(StopStream)
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(StopReader { waiting: None })
    }
}

/// What a request reads as.
const REQUEST: &[u8] = b"\n";

struct StopStream;

#[wasmtime_wasi::async_trait]
impl Pollable for StopStream {
    async fn ready(&mut self) {
        GRACEFUL.requested().await;
    }
}

impl InputStream for StopStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if size > 0 && GRACEFUL.is_requested() {
            Ok(Bytes::from_static(REQUEST))
        } else {
            Ok(Bytes::new())
        }
    }
}

/// [`StopStream`] for WASIp3 guests.
struct StopReader {
    waiting: Option<Pin<Box<OwnedNotified>>>,
}

impl AsyncRead for StopReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if GRACEFUL.is_requested() {
                self.waiting = None;
                buf.put_slice(&REQUEST[..REQUEST.len().min(buf.remaining())]);
                return Poll::Ready(Ok(()));
            }
            let waiting = self.waiting.get_or_insert_with(|| {
                let mut n = Box::pin(GRACEFUL.notify.clone().notified_owned());
                n.as_mut().enable();
                n
            });
            // Enabled before the flag is read again, so a request made in
            // between still wakes this reader.
            if GRACEFUL.is_requested() {
                continue;
            }
            match waiting.as_mut().poll(cx) {
                Poll::Ready(()) => self.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
