//! Allocation failures whose size a client chooses are answered, not
//! aborted on. The test allocator refuses, on the calling thread only,
//! every allocation of at least a set size; an allocation the core makes
//! infallibly at that size would abort the test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wasmcached_core::{Clock, Config, Connection, Progress, Store};

struct Refusing;

thread_local! {
    /// Allocations of at least this many bytes fail on this thread.
    static REFUSE_FROM: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn refused(size: usize) -> bool {
    REFUSE_FROM.try_with(|r| size >= r.get()).unwrap_or(false)
}

// SAFETY: defers to the system allocator, or reports failure (null), which
// `GlobalAlloc` allows for any request.
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: every pointer handed out came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Refusing = Refusing;

/// Runs `f` with allocations of `from` bytes or more refused.
fn refusing<T>(from: usize, f: impl FnOnce() -> T) -> T {
    REFUSE_FROM.with(|r| r.set(from));
    let out = f();
    REFUSE_FROM.with(|r| r.set(usize::MAX));
    out
}

const CLOCK: Clock = Clock::new(0, 1_700_000_000);

/// Runs `req` to completion (refusing allocations of `refuse_from` bytes
/// or more meanwhile) and returns the reply and whether the connection is
/// closing.
fn call_refusing(
    refuse_from: usize,
    store: &mut Store,
    conn: &mut Connection,
    req: &[u8],
) -> (Vec<u8>, bool) {
    let p = refusing(refuse_from, || {
        conn.receive(req);
        conn.process(store, CLOCK)
    });
    let mut out = Vec::new();
    for c in conn.output_chunks() {
        out.extend_from_slice(c);
    }
    conn.consume_output(out.len());
    (out, p == Progress::Close || conn.is_closing())
}

fn call(store: &mut Store, conn: &mut Connection, req: &[u8]) -> (Vec<u8>, bool) {
    call_refusing(usize::MAX, store, conn, req)
}

fn set_req(key: &str, n: usize) -> Vec<u8> {
    let mut req = format!("set {key} 0 0 {n}\r\n").into_bytes();
    req.resize(req.len() + n, b'v');
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn a_value_that_cannot_be_allocated_is_refused() {
    let mut store = Store::new(Config::default(), CLOCK);
    let mut c = Connection::new();
    let req = set_req("big", 500_000);
    // The request is already buffered; only the value's own buffer fails.
    c.receive(&req);
    let (out, closing) = call_refusing(400_000, &mut store, &mut c, b"");
    assert_eq!(out, b"SERVER_ERROR out of memory storing object\r\n");
    assert!(!closing);
    let (out, _) = call(&mut store, &mut c, b"get big\r\n");
    assert_eq!(out, b"END\r\n");
    assert_eq!(call(&mut store, &mut c, &req).0, b"STORED\r\n");
    assert!(store.check_invariants().is_ok());
}

#[test]
fn input_that_cannot_be_buffered_closes_with_an_error() {
    let mut store = Store::new(Config::default(), CLOCK);
    let mut c = Connection::new();
    let req = set_req("big", 500_000);
    let (out, closing) = call_refusing(400_000, &mut store, &mut c, &req);
    assert_eq!(out, b"SERVER_ERROR out of memory reading request\r\n");
    assert!(closing);
}

#[test]
fn a_reply_that_cannot_be_copied_becomes_an_error() {
    let mut store = Store::new(Config::default(), CLOCK);
    let mut setter = Connection::new();
    // Copied into replies (under 16 KiB), and shared (over it).
    assert_eq!(
        call(&mut store, &mut setter, &set_req("copied", 12_000)).0,
        b"STORED\r\n"
    );
    assert_eq!(
        call(&mut store, &mut setter, &set_req("shared", 200_000)).0,
        b"STORED\r\n"
    );
    // A shared value needs no large allocation.
    let mut c = Connection::new();
    let (out, closing) = call_refusing(8_000, &mut store, &mut c, b"get shared\r\n");
    assert_eq!(
        out.len(),
        "VALUE shared 0 200000\r\n\r\nEND\r\n".len() + 200_000
    );
    assert!(!closing);
    // A copied one does; the partial reply is dropped, whatever was sent
    // before it stays, and the connection closes.
    for req in [
        &b"get shared copied\r\n"[..],
        b"get copied\r\n",
        b"mg copied v\r\n",
    ] {
        let mut c = Connection::new();
        let mut full = b"version\r\n".to_vec();
        full.extend_from_slice(req);
        full.extend_from_slice(b"version\r\n");
        let (out, closing) = call_refusing(8_000, &mut store, &mut c, &full);
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("VERSION "), "{out}");
        assert!(
            out.ends_with("\r\nSERVER_ERROR out of memory writing get response\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("\r\n").count(), 2, "{out}");
        assert!(closing);
    }
    assert!(store.check_invariants().is_ok());
}
