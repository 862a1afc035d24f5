//! Defines `wasi:sockets/tcp-create-socket` and `wasi:sockets/tcp` (the
//! `tcp-socket` resource and every method) over wasmtime-wasi's, which
//! the linker must already hold: the names and types are WASI's, the
//! behaviour `socket`'s.

use std::net::SocketAddr;

use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress};
use wasmtime_wasi::p2::bindings::sockets::tcp::ShutdownType;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, Network};

use super::socket::Socket;
use super::TcpView;

/// The versions wasmtime-wasi 48 registers; guests importing any 0.2.x
/// are linked to them.
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";

type Ret<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// The socket behind `this`.
fn socket<'a, T: TcpView>(
    s: &'a mut StoreContextMut<'_, T>,
    this: &Resource<Socket>,
) -> wasmtime::Result<&'a mut Socket> {
    Ok(s.data_mut().tcp().0.get_mut(this)?)
}

/// Replaces wasmtime-wasi's TCP in `linker` with the runner's.
pub fn link<T: TcpView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let r = define(linker).map_err(|e| anyhow::anyhow!("linking the runner's TCP: {e}"));
    linker.allow_shadowing(false);
    r
}

fn define<T: TcpView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut create = linker.instance(CREATE)?;
    create.func_wrap(
        "create-tcp-socket",
        |mut s: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| -> Ret<Resource<Socket>> {
            let (table, policy, _) = s.data_mut().tcp();
            Ok((match Socket::create(policy, family) {
                Ok(sock) => Ok(table.push(sock)?),
                Err(e) => Err(e),
            },))
        },
    )?;
    let mut l = linker.instance(TCP)?;
    l.resource(
        "tcp-socket",
        ResourceType::host::<Socket>(),
        |mut s, rep| {
            s.data_mut()
                .tcp()
                .0
                .delete(Resource::<Socket>::new_own(rep))?;
            Ok(())
        },
    )?;
    define_setup(&mut l)?;
    define_connection(&mut l)?;
    define_options(&mut l)?;
    Ok(())
}

/// Binding, listening, refusing to connect.
fn define_setup<T: TcpView>(
    l: &mut wasmtime::component::LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    l.func_wrap(
        "[method]tcp-socket.start-bind",
        |mut s: StoreContextMut<'_, T>,
         (this, _net, addr): (Resource<Socket>, Resource<Network>, IpSocketAddress)|
         -> Ret<()> {
            let (table, policy, _) = s.data_mut().tcp();
            let addr: SocketAddr = addr.into();
            Ok((table.get_mut(&this)?.start_bind(policy, addr),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.finish-bind",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<()> {
            Ok((socket(&mut s, &this)?.finish_bind(),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.start-listen",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<()> {
            let (table, policy, _) = s.data_mut().tcp();
            Ok((table.get_mut(&this)?.start_listen(policy),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.finish-listen",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<()> {
            Ok((socket(&mut s, &this)?.finish_listen(),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.start-connect",
        |mut s: StoreContextMut<'_, T>,
         (this, _net, _addr): (Resource<Socket>, Resource<Network>, IpSocketAddress)|
         -> Ret<()> {
            socket(&mut s, &this)?;
            // The guest serves; it connects nowhere.
            Ok((Err(ErrorCode::AccessDenied),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.finish-connect",
        |mut s: StoreContextMut<'_, T>,
         (this,): (Resource<Socket>,)|
         -> Ret<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
            socket(&mut s, &this)?;
            Ok((Err(ErrorCode::NotInProgress),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.set-listen-backlog-size",
        |mut s: StoreContextMut<'_, T>, (this, v): (Resource<Socket>, u64)| -> Ret<()> {
            Ok((socket(&mut s, &this)?.set_backlog(v),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.is-listening",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| {
            Ok((socket(&mut s, &this)?.is_listening(),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.address-family",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| {
            Ok((socket(&mut s, &this)?.family(),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.subscribe",
        |mut s: StoreContextMut<'_, T>,
         (this,): (Resource<Socket>,)|
         -> wasmtime::Result<(Resource<DynPollable>,)> {
            let (table, _, watches) = s.data_mut().tcp();
            let socket = this.rep();
            let p = wasmtime_wasi::p2::subscribe(table, this)?;
            crate::watch::socket_subscribed(watches, &p, socket);
            Ok((p,))
        },
    )?;
    Ok(())
}

/// Accepting, addresses, shutting down.
fn define_connection<T: TcpView>(
    l: &mut wasmtime::component::LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    type Accepted = (
        Resource<Socket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    );
    l.func_wrap(
        "[method]tcp-socket.accept",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<Accepted> {
            let (table, policy, watches) = s.data_mut().tcp();
            let (sock, conn) = match table.get_mut(&this)?.accept(policy) {
                Ok(accepted) => accepted,
                Err(e) => return Ok((Err(e),)),
            };
            let (reader, writer) = conn.streams();
            let sock = table.push(sock)?;
            let watch = reader.clone();
            let input: DynInputStream = Box::new(reader);
            let output: DynOutputStream = Box::new(writer);
            let input = table.push_child(input, &sock)?;
            watches.opened(input.rep(), watch);
            let output = table.push_child(output, &sock)?;
            Ok((Ok((sock, input, output)),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.local-address",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<IpSocketAddress> {
            Ok((socket(&mut s, &this)?.local_address().map(Into::into),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.remote-address",
        |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<IpSocketAddress> {
            Ok((socket(&mut s, &this)?.remote_address().map(Into::into),))
        },
    )?;
    l.func_wrap(
        "[method]tcp-socket.shutdown",
        |mut s: StoreContextMut<'_, T>, (this, how): (Resource<Socket>, ShutdownType)| -> Ret<()> {
            Ok((socket(&mut s, &this)?.shutdown(how),))
        },
    )?;
    Ok(())
}

/// Defines a getter and a setter of one option (`options::Options`).
macro_rules! option {
    ($l:ident, $get:literal => $getter:ident, $set:literal => $setter:ident, $ty:ty) => {
        $l.func_wrap(
            concat!("[method]tcp-socket.", $get),
            |mut s: StoreContextMut<'_, T>, (this,): (Resource<Socket>,)| -> Ret<$ty> {
                Ok((socket(&mut s, &this)?.options().and_then(|o| o.$getter()),))
            },
        )?;
        $l.func_wrap(
            concat!("[method]tcp-socket.", $set),
            |mut s: StoreContextMut<'_, T>, (this, v): (Resource<Socket>, $ty)| -> Ret<()> {
                Ok((socket(&mut s, &this)?.options().and_then(|o| o.$setter(v)),))
            },
        )?;
    };
}

fn define_options<T: TcpView>(
    l: &mut wasmtime::component::LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    option!(l, "keep-alive-enabled" => keep_alive, "set-keep-alive-enabled" => set_keep_alive, bool);
    option!(l, "keep-alive-idle-time" => keep_alive_idle_time,
        "set-keep-alive-idle-time" => set_keep_alive_idle_time, u64);
    option!(l, "keep-alive-interval" => keep_alive_interval,
        "set-keep-alive-interval" => set_keep_alive_interval, u64);
    option!(l, "keep-alive-count" => keep_alive_count,
        "set-keep-alive-count" => set_keep_alive_count, u32);
    option!(l, "hop-limit" => hop_limit, "set-hop-limit" => set_hop_limit, u8);
    option!(l, "receive-buffer-size" => receive_buffer_size,
        "set-receive-buffer-size" => set_receive_buffer_size, u64);
    option!(l, "send-buffer-size" => send_buffer_size,
        "set-send-buffer-size" => set_send_buffer_size, u64);
    Ok(())
}
