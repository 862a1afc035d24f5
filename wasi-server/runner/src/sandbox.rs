//! The wasmtime host: engine, linker, WASI context with least privilege,
//! memory cap, and how the guest's end is reported.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use wasmcached_server::Options;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::mailbox::{self, GuestInput, Mailbox};
use crate::poll::Poller;
use crate::warm::SnapshotDir;
use crate::watch::Watches;

/// The embedded server component.
const GUEST: &[u8] = include_bytes!(env!("WASMCACHED_GUEST"));

/// Largest `-m` a wasm32 guest can hold next to its buffers (4 GiB space).
pub const MAX_MEMORY_MB: u64 = 3072;

struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Reported at the guest's first poll after its listen was admitted.
    listening: Option<Listening>,
    /// What the runner has to tell the guest (a graceful stop with `-e`,
    /// a new auth file with `-Y`): its polls also end while a message is
    /// unread.
    mailbox: Option<Arc<Mailbox>>,
    /// The guest's `poll` (see `poll`).
    poller: Poller,
    /// What the guest may do with TCP (see `tcp`).
    tcp: crate::tcp::Policy,
    /// What the guest's pollables wait for (see `watch`).
    watches: Watches,
}

/// Tells the runner that a guest listens. The runner's TCP sets
/// `admitted` once the guest's `listen(2)` succeeded, and the report comes
/// at the guest's next `poll`.
struct Listening {
    admitted: Arc<AtomicBool>,
    report: Box<dyn FnOnce() + Send>,
}

impl crate::tcp::TcpView for Host {
    fn tcp(&mut self) -> (&mut ResourceTable, &crate::tcp::Policy, &mut Watches) {
        (&mut self.table, &self.tcp, &mut self.watches)
    }
}

impl crate::watch::WatchView for Host {
    fn watched(&mut self) -> (&mut ResourceTable, &mut Watches) {
        (&mut self.table, &mut self.watches)
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Linear memory the guest may use: the item memory and half again for
/// the store's index and size-class slack, the connection memory limit
/// (`--conn-memory`, which the guest's driver enforces), and a fixed
/// allowance for the server itself and allocator slack. Anything past it
/// makes the guest's allocation fail instead of taking the host's memory.
fn memory_cap(opts: &Options) -> usize {
    let items = opts.memory_limit_mb * 1024 * 1024;
    let cap = items + items / 2 + opts.conn_memory_bytes() + 192 * 1024 * 1024;
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

/// Exits the process on SIGINT/SIGTERM: a cache may always restart
/// empty. SIGUSR1 is memcached's graceful stop: with `graceful` (`-e`) the
/// guests are asked to write their snapshot and exit; without, it exits
/// like SIGTERM. SIGHUP never stops it, as it never stops memcached; with
/// `-Y` (`auth_file`) it reloads the users as in memcached: the runner
/// reads the file again and hands the guests its content; a file it
/// cannot read or parse leaves the old users.
pub fn on_signals(graceful: bool, auth_file: Option<PathBuf>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    use signal_hook::iterator::Signals;
    let wanted = vec![SIGINT, SIGTERM, SIGUSR1, SIGHUP];
    let Ok(mut signals) = Signals::new(wanted) else {
        return;
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGUSR1 && graceful {
                eprintln!("wasmcached: received signal {sig}, stopping gracefully");
                mailbox::post_graceful_stop();
                continue;
            }
            if sig == SIGHUP {
                if let Some(path) = &auth_file {
                    reload_auth_file(path);
                }
                continue;
            }
            eprintln!("wasmcached: received signal {sig}, stopping");
            std::process::exit(0);
        }
    });
}

/// Reads and checks the `-Y` file on SIGHUP and posts its content to the
/// guests, which parse it again and swap their users.
fn reload_auth_file(path: &Path) {
    use wasmcached_server::ascii_auth;
    let content = ascii_auth::read_file(path)
        .and_then(|c| ascii_auth::parse(path, &c).map(|_| c))
        .and_then(|c| {
            mailbox::post_auth_file(&c)
                .then_some(())
                .ok_or_else(|| format!("Authfile [{}] is too large", path.display()))
        });
    if let Err(e) = content {
        eprintln!("{e}; keeping the previous users");
    }
}

/// Replaces `wasi:io/poll.poll` with the runner's (`poll::Poller`), which
/// first lets the runtime poll its I/O driver.
///
/// The guest, the host's socket futures and tokio's I/O driver share one
/// thread, and the driver only runs when the guest's future is pending. A
/// `poll` that is ready at once (a zero timeout while the server still has
/// buffered requests) would never yield, so socket readiness would never be
/// refreshed and a background write would never finish: the server would
/// spin. wasmtime-wasi's synchronous bindings yield on every call for the
/// same reason. The cost is one `epoll_wait(0)` per event-loop pass.
fn yield_in_poll(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi_io::poll::DynPollable;
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL).map_err(|e| anyhow!("{e}"))?;
    poll.func_wrap_async(
        "poll",
        |mut store, (list,): (Vec<Resource<DynPollable>>,)| {
            Box::new(async move {
                tokio::task::yield_now().await;
                let host: &mut Host = store.data_mut();
                if let Some(l) = host
                    .listening
                    .take_if(|l| l.admitted.load(Ordering::Relaxed))
                {
                    (l.report)();
                }
                // Nothing is ready while a message is unread; the guest
                // then reads its standard input (see `mailbox`).
                let mailbox = host.mailbox.clone();
                let unread = async {
                    match &mailbox {
                        Some(m) => m.unread().await,
                        None => std::future::pending().await,
                    }
                };
                let ready = host
                    .poller
                    .poll(&mut host.table, &host.watches, list, unread)
                    .await?;
                Ok((ready,))
            })
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The interface wasmtime-wasi 48 registers for `wasi:io/poll`; guests
/// importing any 0.2.x version are linked to it.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// The server (or another component), compiled and linked once: every
/// instance of it, on any thread, is made from this.
///
/// The engine and the pre-instantiated component are shared (compiling
/// takes most of a start where the compile cache cannot serve it, and the
/// code is read-only); each [`run`] gets its own store, linear memory,
/// WASI context and runtime.
pub struct Guest {
    engine: Engine,
    pre: CommandPre<Host>,
}

/// Compiles the embedded server (or loads it compiled: see
/// `compile_cache`, which is told the directories guests are `granted`),
/// or `component`, and links it to WASI.
pub fn load(component: Option<&Path>, granted: &[PathBuf]) -> anyhow::Result<Guest> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // `perf` can name the guest's functions when the compiled code is
    // listed in /tmp/perf-PID.map (see the README's profiling notes); only
    // code compiled in this process is listed.
    let perf_map = std::env::var_os("WASMCACHED_PERF_MAP").is_some();
    if perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
    let component = match component {
        Some(p) => {
            Component::from_file(&engine, p).map_err(|e| anyhow!("loading {}: {e}", p.display()))?
        }
        None if perf_map => Component::new(&engine, GUEST)
            .map_err(|e| anyhow!("loading the server component: {e}"))?,
        None => crate::compile_cache::load(&engine, GUEST, granted)?,
    };
    let mut linker: Linker<Host> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;
    yield_in_poll(&mut linker)?;
    crate::tcp::link(&mut linker)?;
    crate::watch::link(&mut linker)?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(CommandPre::new)
        .map_err(|e| anyhow!("linking the component: {e}"))?;
    Ok(Guest { engine, pre })
}

/// Runs one instance of `guest` with `opts` on the calling thread until it
/// exits. Returns the exit code. `on_listening` is called once the guest
/// listens on its address (at its first poll after that).
pub fn run(
    guest: &Guest,
    opts: &Options,
    on_listening: impl FnOnce() + Send + 'static,
) -> anyhow::Result<u8> {
    let listen = listen_addr(opts)?;
    let engine = &guest.engine;
    let admitted = Arc::new(AtomicBool::new(false));
    let listening = Listening {
        admitted: admitted.clone(),
        report: Box::new(on_listening),
    };

    let mut args = vec!["wasmcached".to_string()];
    let mut guest_opts = opts.clone();
    guest_opts.listen = listen.ip().to_string();
    let snapshot = match &opts.memory_file {
        Some(path) => Some(SnapshotDir::resolve(path)?),
        None => None,
    };
    if let Some(dir) = &snapshot {
        guest_opts.memory_file = Some(dir.file.clone());
    }
    args.extend(guest_opts.to_args());
    let mut b = WasiCtxBuilder::new();
    if opts.enable_sasl {
        // -S: the guest gets the password file's content and nothing else,
        // no file access and no host environment (see
        // `wasmcached_server::sasl`).
        let pwdb = wasmcached_server::sasl::pwdb_for_guest().map_err(|e| anyhow!("{e}"))?;
        b.env(wasmcached_server::sasl::GUEST_DATA_VAR, pwdb);
    }
    if let Some(path) = &opts.auth_file {
        // -Y: the guest gets the auth file's content, not the file (see
        // `wasmcached_server::ascii_auth`).
        let content = wasmcached_server::ascii_auth::read_file(path).map_err(|e| anyhow!("{e}"))?;
        wasmcached_server::ascii_auth::parse(path, &content).map_err(|e| anyhow!("{e}"))?;
        let text = String::from_utf8(content).map_err(|_| {
            anyhow!("-Y: the auth file must be UTF-8 text to pass to the wasm server")
        })?;
        b.env(wasmcached_server::ascii_auth::GUEST_DATA_VAR, text);
    }
    // The guest's channel from the runner, when there is anything to say:
    // a graceful stop (-e), a new auth file (-Y).
    let mailbox = (snapshot.is_some() || opts.auth_file.is_some()).then(Mailbox::open);
    if let Some(m) = &mailbox {
        b.stdin(GuestInput(m.clone()));
    }
    if let Some(dir) = &snapshot {
        // The snapshot's directory and nothing else (see `warm`); file I/O
        // runs on the guest's thread, which has nothing else to do then.
        b.allow_blocking_current_thread(true)
            .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadWrite)
            .map_err(|e| anyhow!("-e: cannot open {}: {e}", dir.host.display()))?;
    }
    b.args(&args)
        .inherit_stdout()
        .inherit_stderr()
        .env("WASMCACHED_PID", std::process::id().to_string())
        // The runner's own TCP (see `tcp`) replaces wasmtime-wasi's, which
        // is off as well; no UDP, no name lookups.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let host = Host {
        ctx: b.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(memory_cap(opts))
            .instances(16)
            .build(),
        listening: Some(listening),
        mailbox,
        poller: Poller::default(),
        watches: Watches::default(),
        tcp: crate::tcp::Policy {
            listen,
            admitted,
            sockets: crate::tcp::Sockets::new(opts.conn_limit),
        },
    };
    let mut store = Store::new(engine, host);
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
    // The whole guest is one task, so tokio's cooperative budget (128 I/O
    // operations per poll) would run out within an event-loop pass over
    // many connections; every later read or write would then report "not
    // ready" and, since wasmtime-wasi polls those with a no-op waker, the
    // same connections would starve pass after pass. The guest schedules
    // its own work fairly, so it runs unconstrained.
    let result = rt.block_on(tokio::task::unconstrained(async {
        let command = guest
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow!("instantiating the component: {e}"))?;
        Ok::<_, anyhow::Error>(command.wasi_cli_run().call_run(&mut store).await)
    }))?;
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
