//! Requests to stop the server, and whether a stop is graceful.
//!
//! A graceful stop (memcached's SIGUSR1, or `shutdown graceful` with `-A`)
//! writes the cache to `-e`'s file before the process exits; any other stop
//! (SIGTERM, SIGINT, `shutdown`) just ends it: a cache may always restart
//! empty.
//!
//! Natively the server takes the signals itself ([`on_signals`]). A WASI
//! guest gets no signals: the runner catches them, ends the process itself
//! on SIGTERM and SIGINT, and sends the guest a graceful stop request over
//! its standard input (see [`crate::host_channel`]); the server reads it
//! every few loop passes ([`poll_host`]).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// Asks the event loop to stop after its current pass; `graceful` writes
/// the snapshot first (when `-e` is set). A graceful request is never
/// downgraded by a later plain one.
pub fn request(graceful: bool) {
    if graceful {
        GRACEFUL.store(true, Ordering::SeqCst);
    }
    STOP.store(true, Ordering::SeqCst);
}

/// The flag the event loop checks after every pass.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

/// Whether the stop that was requested is graceful.
pub fn is_graceful() -> bool {
    GRACEFUL.load(Ordering::SeqCst)
}

/// A client's `shutdown` (`-A`), handled as memcached handles it: by
/// raising the signal that stops the same way (SIGUSR1 for `shutdown
/// graceful`, SIGINT otherwise), which also interrupts the first worker's
/// poll wherever the command ran. Under WASI the request is made directly
/// (a guest runs one worker, the one that ran the command).
pub fn requested_by_client(graceful: bool) {
    request(graceful);
    #[cfg(not(target_os = "wasi"))]
    if HANDLED.load(Ordering::SeqCst) {
        let sig = if graceful {
            libc::SIGUSR1
        } else {
            libc::SIGINT
        };
        // SAFETY: kill only sends this process a signal it handles.
        unsafe {
            libc::kill(libc::getpid(), sig);
        }
    }
}

/// The stop signals have handlers (so raising one cannot kill the
/// process).
#[cfg(not(target_os = "wasi"))]
static HANDLED: AtomicBool = AtomicBool::new(false);

/// SIGTERM and SIGINT stop the server, SIGUSR1 stops it gracefully, as in
/// memcached. The handlers only store to atomics.
#[cfg(not(target_os = "wasi"))]
pub fn on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let mut all = true;
    for (sig, graceful) in [(SIGTERM, false), (SIGINT, false), (SIGUSR1, true)] {
        // SAFETY: the handler only stores to static atomics, which is
        // async-signal-safe.
        let r = unsafe { signal_hook::low_level::register(sig, move || request(graceful)) };
        if let Err(e) = r {
            eprintln!("warning: cannot handle signal {sig}: {e}");
            all = false;
        }
    }
    HANDLED.store(all, Ordering::SeqCst);
}

/// Reads the runner's requests (a graceful stop, a new `-Y` file; see
/// [`crate::host_channel`]). Called by the event loop; cheap enough for
/// every few passes (one non-blocking read of an empty stream).
#[cfg(target_os = "wasi")]
pub fn poll_host() {
    crate::host_channel::poll();
}
