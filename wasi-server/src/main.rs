//! `wasmcached-server`: the event loop as a plain executable. Built for
//! wasm32-wasip2 it is the component the `wasmcached` runner executes;
//! built natively it is a drop-in server without a wasm runtime.

fn main() {
    std::process::exit(wasmcached_server::main_with_args(std::env::args()));
}
