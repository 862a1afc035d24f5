//! What the runner has to tell its guests, and the standard input that
//! carries it to each (framed as `wasmcached_server::host_channel`
//! describes).
//!
//! A WASI guest gets no signals, so the runner's signal thread posts what
//! they mean here: SIGUSR1 a graceful stop (with `-e`), SIGHUP the `-Y`
//! file's new content, which the runner read (the guest has no files).
//! Every running guest has a [`Mailbox`]; its standard input reads the
//! next message, and is empty (never closed) when there is none. While a
//! message is unread the guest's `wasi:io/poll.poll` returns at once (see
//! the sandbox), so an idle guest wakes up and reads it.
//!
//! Memory is bounded whatever the signals' rate: a mailbox holds the frame
//! being read, a stop flag and the latest unread auth file; a newer file
//! replaces an unread older one, which it supersedes anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use wasmcached_server::host_channel;
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamResult};

/// The process-wide graceful stop request: once made, it stays made.
static STOP: AtomicBool = AtomicBool::new(false);

/// Every running guest's mailbox.
static MAILBOXES: Mutex<Vec<Weak<Mailbox>>> = Mutex::new(Vec::new());

/// One guest's messages.
pub struct Mailbox {
    state: Mutex<State>,
    /// Woken whenever something is posted.
    notify: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// The rest of the frame the guest is reading.
    frame: Bytes,
    /// The stop request went into a frame.
    stop_sent: bool,
    /// The newest auth file frame not yet started.
    auth_file: Option<Bytes>,
}

impl Mailbox {
    /// A mailbox for a new guest, which posts reach from now on.
    pub fn open() -> Arc<Mailbox> {
        let m = Arc::new(Mailbox {
            state: Mutex::new(State::default()),
            notify: Arc::new(Notify::new()),
        });
        let mut all = lock(&MAILBOXES);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&m));
        m
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether the guest has something to read.
    fn has_unread(&self) -> bool {
        let s = self.state();
        !s.frame.is_empty()
            || s.auth_file.is_some()
            || (!s.stop_sent && STOP.load(Ordering::SeqCst))
    }

    /// Resolves once the guest has something to read (at once if it has).
    pub async fn unread(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a post made in
            // between still wakes this waiter.
            notified.as_mut().enable();
            if self.has_unread() {
                return;
            }
            notified.await;
        }
    }

    /// Up to `size` bytes of the next message; empty when there is none.
    /// A stop request goes first: a guest that stops has no use for users.
    fn read(&self, size: usize) -> Bytes {
        let mut s = self.state();
        if s.frame.is_empty() {
            if !s.stop_sent && STOP.load(Ordering::SeqCst) {
                s.stop_sent = true;
                s.frame = Bytes::from(host_channel::encode_stop());
            } else if let Some(f) = s.auth_file.take() {
                s.frame = f;
            }
        }
        let n = size.min(s.frame.len());
        s.frame.split_to(n)
    }

    fn post_auth_file(&self, frame: Bytes) {
        self.state().auth_file = Some(frame);
        self.notify.notify_waiters();
    }
}

/// A poisoned lock only means another thread panicked while holding it;
/// the state it guards is still consistent (every update is one store).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn each_mailbox(f: impl Fn(&Mailbox)) {
    for m in lock(&MAILBOXES).iter().filter_map(Weak::upgrade) {
        f(&m);
    }
}

/// Asks every guest to stop gracefully. Safe from any thread.
pub fn post_graceful_stop() {
    STOP.store(true, Ordering::SeqCst);
    each_mailbox(|m| m.notify.notify_waiters());
}

/// Whether a graceful stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Hands every guest the auth file's new content. Returns false, posting
/// nothing, when the content is too large to send.
pub fn post_auth_file(content: &[u8]) -> bool {
    let Some(frame) = host_channel::encode_auth_file(content) else {
        return false;
    };
    let frame = Bytes::from(frame);
    each_mailbox(|m| m.post_auth_file(frame.clone()));
    true
}

/// A guest's standard input: its mailbox's messages.
pub struct GuestInput(pub Arc<Mailbox>);

impl IsTerminal for GuestInput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for GuestInput {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(MailboxStream(self.0.clone()))
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(MailboxReader {
            mailbox: self.0.clone(),
            waiting: None,
        })
    }
}

struct MailboxStream(Arc<Mailbox>);

#[wasmtime_wasi::async_trait]
impl Pollable for MailboxStream {
    async fn ready(&mut self) {
        self.0.unread().await;
    }
}

impl InputStream for MailboxStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        Ok(self.0.read(size))
    }
}

/// [`MailboxStream`] for WASIp3 guests.
struct MailboxReader {
    mailbox: Arc<Mailbox>,
    waiting: Option<Pin<Box<OwnedNotified>>>,
}

impl AsyncRead for MailboxReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let MailboxReader { mailbox, waiting } = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let bytes = mailbox.read(buf.remaining());
            if !bytes.is_empty() {
                *waiting = None;
                buf.put_slice(&bytes);
                return Poll::Ready(Ok(()));
            }
            let w = waiting.get_or_insert_with(|| {
                let mut n = Box::pin(mailbox.notify.clone().notified_owned());
                n.as_mut().enable();
                n
            });
            // Enabled before the mailbox is read again, so a post made in
            // between still wakes this reader.
            if mailbox.has_unread() {
                continue;
            }
            match w.as_mut().poll(cx) {
                Poll::Ready(()) => *waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
