//! `wasmcached-server`: the event loop as a plain executable. Built for
//! wasm32-wasip2 it is the component the `wasmcached` runner executes;
//! built natively it is a drop-in server without a wasm runtime.

fn main() {
    let code = wasmcached_server::main_with_args(std::env::args());
    exit(code);
}

#[cfg(not(target_os = "wasi"))]
fn exit(code: i32) -> ! {
    std::process::exit(code)
}

/// The host gets the code itself (71 for a port in use, 74 for a snapshot
/// that could not be written): `std::process::exit` under WASI 0.2 reports
/// only success or failure, which the host sees as 0 or 1.
#[cfg(target_os = "wasi")]
fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    wasip2::cli::exit::exit_with_code(u8::try_from(code).unwrap_or(1));
    // The host ends the instance in the call above.
    std::process::exit(code)
}
