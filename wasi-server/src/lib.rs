//! # wasmcached-server
//!
//! The socket server hosting [`wasmcached_core`]: a single-threaded,
//! non-blocking event loop over `std::net` and `poll(2)`. The same code
//! builds for `wasm32-wasip2` (the product, run by the `wasmcached` runner
//! under wasmtime) and natively (`wasmcached-server`).

pub mod options;
mod server;

pub use options::Options;
pub use server::Server;

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
    let addr = format!("{}:{}", opts.listen, opts.port);
    let mut server = match Server::bind(
        &addr,
        opts.config(hash_seed()),
        opts.conn_limit as usize,
        opts.worker_threads() as usize,
        opts.verbose,
    ) {
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(not(target_os = "wasi"))]
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // SIGTERM/SIGINT end the loop and the process exits 0; a cache has
        // nothing to flush. (Under wasmtime the runner handles signals.)
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("warning: cannot handle signal {sig}: {e}");
        }
    }
    match server.run(&stop) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: event loop failed: {e}");
            70
        }
    }
}

/// A per-process hash seed so clients cannot precompute colliding keys.
fn hash_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x5eed_u64)
}
