//! # wasmcached-server
//!
//! The socket server hosting [`wasmcached_core`]: non-blocking event
//! loops (one per worker thread natively, one in the wasm guest) over
//! `std::net` sockets and `epoll` natively, and over `wasi:sockets` and
//! `wasi:io/poll` in the guest. The same
//! code builds for `wasm32-wasip2` (the product, run by the `wasmcached` runner
//! under wasmtime) and natively (`wasmcached-server`).

pub mod ascii_auth;
mod cache;
mod conn_facts;
pub mod extended;
pub mod host_channel;
mod net;
pub mod options;
mod poller;
pub mod sasl;
mod server;
mod stop;
mod warm;

pub use options::Options;
pub use server::{Server, ServerConfig};

/// Exit code after a graceful stop whose snapshot (`-e`) could not be
/// written (EX_IOERR).
pub const EXIT_SNAPSHOT_FAILED: i32 = 74;

/// Parses `args`, binds and serves forever. Returns a process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> i32 {
    use clap::Parser;
    let opts = match Options::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 64 } else { 0 };
        }
    };
    if let Err(e) = opts.validate() {
        eprintln!("error: {e}");
        return 64;
    }
    let extended = match opts.extended() {
        Ok(x) => x,
        Err(e) => {
            // memcached's message and exit code for a bad -o.
            eprintln!("{e}");
            return 1;
        }
    };
    let mut store = opts.config(hash_seed());
    if opts.enable_sasl {
        match sasl::credentials() {
            Ok(db) => store.sasl = Some(db),
            Err(e) => {
                eprintln!("error: {e}");
                return 64;
            }
        }
    }
    if let Some(path) = &opts.auth_file {
        match ascii_auth::load(path) {
            Ok(f) => store.ascii_auth = Some(f),
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    // SIGHUP reloads a -Y file and never stops the server, as in memcached.
    #[cfg(not(target_os = "wasi"))]
    ascii_auth::on_sighup();
    let addr = format!("{}:{}", opts.listen, opts.port);
    #[cfg(not(target_os = "wasi"))]
    raise_fd_limit(u64::from(opts.conn_limit), opts.verbose);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    one_malloc_arena();
    let mut server = match Server::bind(ServerConfig {
        addr: addr.clone(),
        store,
        conn_limit: opts.conn_limit as usize,
        conn_memory: usize::try_from(opts.conn_memory_bytes()).unwrap_or(usize::MAX),
        idle_timeout_ms: extended.idle_timeout_ms(),
        threads: opts.worker_threads() as usize,
        verbose: opts.verbose,
        memory_file: opts.memory_file.clone(),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return 71;
        }
    };
    if opts.verbose > 0 {
        if let Ok(a) = server.local_addr() {
            eprintln!("wasmcached listening on {a}");
        }
    }
    // SIGTERM/SIGINT end the loop and the process exits 0; SIGUSR1 does
    // too, after writing the snapshot for -e. (Under wasmtime the runner
    // takes the signals; see `stop`.)
    #[cfg(not(target_os = "wasi"))]
    stop::on_signals();
    if let Err(e) = server.run(stop::flag()) {
        eprintln!("error: event loop failed: {e}");
        return 70;
    }
    match &opts.memory_file {
        Some(path) if stop::is_graceful() => {
            let mut shards = server.lock_all();
            let stores = shards.iter_mut().map(|g| &mut **g).collect();
            let saved = warm::save(path, stores, server.clock());
            // Other workers must not change the store between the snapshot
            // and the exit: it stays locked until the process ends.
            std::mem::forget(shards);
            match saved {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!(
                        "wasmcached: warm restart: {}: cannot write the snapshot: {e}",
                        path.display()
                    );
                    EXIT_SNAPSHOT_FAILED
                }
            }
        }
        _ => 0,
    }
}

/// A per-process hash seed so clients cannot precompute colliding keys.
fn hash_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x5eed_u64)
}

/// Descriptors the process needs besides its connections: stdio, the
/// listener, the workers' bells, and headroom for refusing connections
/// politely at the limit.
#[cfg(not(target_os = "wasi"))]
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to what `-c` connections need, up to
/// the hard limit (memcached does the same). Short of it, the server still
/// runs: out of descriptors it pauses accepting until one is free.
#[cfg(not(target_os = "wasi"))]
pub fn raise_fd_limit(conns: u64, verbose: u8) {
    let need = conns + RESERVED_FDS;
    // SAFETY: getrlimit fills the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let old = lim.rlim_cur as u64;
    if old >= need {
        return;
    }
    let new = need.min(lim.rlim_max as u64);
    lim.rlim_cur = new as libc::rlim_t;
    // SAFETY: `lim` is a valid rlimit with cur <= max.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    if ok && new >= need {
        if verbose > 0 {
            eprintln!("raised the open files limit from {old} to {new} for -c {conns}");
        }
    } else {
        eprintln!(
            "warning: -c {conns} needs {need} open files but the limit is {}; \
             accepting pauses when they run out",
            if ok { new } else { old }
        );
    }
}

/// Makes glibc's malloc keep one arena instead of one per worker thread.
/// Items are allocated and freed under the store's lock, so per-thread
/// arenas buy no concurrency for them; they only scatter the item memory
/// of one cache over several heaps that fragment independently (a 10x
/// overfill of `-m 64` with 4 workers grew RSS by 77-101 MB with them,
/// 69.5 MB without).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only changes allocator tuning; called before any
    // worker thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
