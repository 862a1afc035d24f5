//! The wasmtime host: engine, linker, WASI context with least privilege,
//! memory cap, and how the guest's end is reported.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::{anyhow, Context};
use wasmcached_server::Options;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The embedded server component.
const GUEST: &[u8] = include_bytes!(env!("WASMCACHED_GUEST"));

/// Largest `-m` a wasm32 guest can hold next to its buffers (4 GiB space).
pub const MAX_MEMORY_MB: u64 = 3072;

struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Linear memory the guest may use: the item memory, plus room for
/// connection buffers and allocator slack. Anything past it makes the
/// guest's allocation fail (a trap) instead of taking the host's memory.
fn memory_cap(opts: &Options) -> usize {
    let items = opts.memory_limit_mb * 1024 * 1024;
    let cap = items + items / 2 + 256 * 1024 * 1024;
    cap.min(4 * 1024 * 1024 * 1024 - 64 * 1024) as usize
}

/// Resolves the listen address on the host, so the guest needs no lookups.
fn listen_addr(opts: &Options) -> anyhow::Result<SocketAddr> {
    if let Ok(ip) = opts.listen.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, opts.port));
    }
    (opts.listen.as_str(), opts.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve listen address {}", opts.listen))?
        .next()
        .ok_or_else(|| anyhow!("no address for {}", opts.listen))
}

/// Exits the process on SIGINT/SIGTERM. The server holds nothing that
/// needs flushing: a cache may always restart empty.
pub fn stop_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("wasmcached: received signal {sig}, stopping");
            std::process::exit(0);
        }
    });
}

/// Runs the server (or `component`) until it exits. Returns the exit code.
pub fn run(opts: &Options, component: Option<&Path>) -> anyhow::Result<u8> {
    let listen = listen_addr(opts)?;
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
    let component = match component {
        Some(p) => {
            Component::from_file(&engine, p).map_err(|e| anyhow!("loading {}: {e}", p.display()))?
        }
        None => Component::new(&engine, GUEST)
            .map_err(|e| anyhow!("loading the server component: {e}"))?,
    };
    let mut linker: Linker<Host> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;

    let mut args = vec!["wasmcached".to_string()];
    let mut guest_opts = opts.clone();
    guest_opts.listen = listen.ip().to_string();
    args.extend(guest_opts.to_args());
    let mut b = WasiCtxBuilder::new();
    b.args(&args)
        .inherit_stdout()
        .inherit_stderr()
        .env("WASMCACHED_PID", std::process::id().to_string())
        .allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(move |addr, use_| {
            Box::pin(async move {
                match use_ {
                    SocketAddrUse::TcpBind => addr == listen,
                    // With port 0 the kernel picks the port; the IP must match.
                    SocketAddrUse::TcpListen => {
                        addr == listen || (listen.port() == 0 && addr.ip() == listen.ip())
                    }
                    SocketAddrUse::TcpAccept => true,
                    _ => false,
                }
            })
        });
    let host = Host {
        ctx: b.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(memory_cap(opts))
            .instances(16)
            .build(),
    };
    let mut store = Store::new(&engine, host);
    store.limiter(|h| &mut h.limits);
    // One thread runs the guest, the host's socket futures and tokio's I/O
    // driver. wasmtime-wasi's synchronous bindings would instead drive each
    // host call on a multi-threaded runtime, where every readiness event is
    // handed from a worker thread to the guest's thread: two context
    // switches per request on top of the kernel's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the I/O runtime")?;
    let result = rt.block_on(async {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
            &mut store, &component, &linker,
        )
        .await
        .map_err(|e| anyhow!("instantiating the component: {e}"))?;
        Ok::<_, anyhow::Error>(command.wasi_cli_run().call_run(&mut store).await)
    })?;
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Ok(u8::try_from(exit.0).unwrap_or(1));
            }
            Err(anyhow!("the server trapped: {e:?}"))
        }
    }
}
