//! `wasmcached`: runs the wasmcached server component under an embedded
//! wasmtime, with the least privilege it needs.
//!
//! The guest may bind, listen and accept on exactly the configured address
//! (through the runner's own `wasi:sockets/tcp`, see `tcp`).
//! It gets no outbound connections, no UDP, no name lookups, no files (but
//! `-e`'s directory, for the snapshot), no inherited environment, and a
//! linear-memory cap derived from `-m`.
//! `--instances N` runs N such guests on consecutive ports. The compiled
//! server is kept between starts (`compile_cache`).

mod compile_cache;
mod instances;
mod mailbox;
mod poll;
mod relay;
mod sandbox;
mod tcp;
mod warm;
mod watch;

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
    /// Independent servers to run, on ports -p .. -p+N-1, each with -m/N
    /// of memory and its own store (for hashing clients and twemproxy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(instances::MAX_INSTANCES)))]
    instances: u32,
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
    if let Err(e) = args.server.extended() {
        // memcached's message and exit code for a bad -o.
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    if let Some(path) = &args.server.memory_file {
        if let Err(e) = warm::SnapshotDir::resolve(path) {
            eprintln!("error: {e:#}");
            return ExitCode::from(64);
        }
    }
    let each = match instances::split(&args.server, args.instances) {
        Ok(each) => each,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    for path in instances::unclaimed_snapshots(args.server.memory_file.as_deref(), &each) {
        eprintln!(
            "wasmcached: warm restart: {}: no instance of this run restores it (another -p or --instances wrote it); remove it, or a later run on its port brings its keys back as they were",
            path.display()
        );
    }
    // The runner owns the guests' sockets, so the descriptors are its own;
    // `-c` applies to each instance.
    let conns = u64::from(args.server.conn_limit) * u64::from(args.instances);
    wasmcached_server::raise_fd_limit(conns, args.server.verbose);
    sandbox::on_signals(
        args.server.memory_file.is_some(),
        args.server.auth_file.clone(),
    );
    // The guests may write the snapshot's directory: no compiled code is
    // loaded from there.
    let granted = compile_cache::granted_dirs(args.server.memory_file.as_deref());
    let result = sandbox::load(args.component.as_deref(), &granted)
        .and_then(|guest| instances::run(guest, each));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(70)
        }
    }
}
