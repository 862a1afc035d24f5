//! `wasmcached`: runs the wasmcached server component under an embedded
//! wasmtime, with the least privilege it needs.
//!
//! The guest may bind, listen and accept on exactly the configured address.
//! It gets no outbound connections, no UDP, no name lookups, no files, no
//! inherited environment, and a linear-memory cap derived from `-m`.

mod sandbox;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use wasmcached_server::Options;

/// Command line: the server's own options plus runner-only ones.
#[derive(Parser, Debug)]
#[command(
    name = "wasmcached",
    version,
    about = "memcached-compatible cache server, sandboxed in WebAssembly",
    disable_help_flag = true
)]
struct Args {
    #[command(flatten)]
    server: Options,
    /// Run this component instead of the embedded server (for testing the
    /// sandbox with other guests).
    #[arg(long, hide = true)]
    component: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(e) = args.server.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(64);
    }
    if args.server.memory_limit_mb > sandbox::MAX_MEMORY_MB {
        eprintln!(
            "error: -m {} is more than a wasm32 guest can address; the limit is {} MB (use wasmcached-server for larger caches)",
            args.server.memory_limit_mb,
            sandbox::MAX_MEMORY_MB
        );
        return ExitCode::from(64);
    }
    // The runner owns the guest's sockets, so the descriptors are its own.
    wasmcached_server::raise_fd_limit(u64::from(args.server.conn_limit), args.server.verbose);
    sandbox::stop_on_signals();
    match sandbox::run(&args.server, args.component.as_deref()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(70)
        }
    }
}
