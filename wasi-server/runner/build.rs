//! Builds the wasm32-wasip2 server component and embeds it, so that
//! `cargo build --release -p wasmcached` alone yields a runnable server.
//!
//! The guest is built by a nested cargo in its own target directory (the
//! outer build holds the lock on the main one). The wasm32-wasip2 target
//! must be installed (`rustup target add wasm32-wasip2`; scripts/run and
//! scripts/test do it).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    for dir in [
        "core/src",
        "wasi-server/src",
        "core/Cargo.toml",
        "wasi-server/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = out.join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "-p",
            "wasmcached-server",
            "--bin",
            "wasmcached-server",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the wasm guest");
    if !status.success() {
        panic!("building the wasm32-wasip2 guest failed; is the target installed? run: rustup target add wasm32-wasip2");
    }
    let wasm = target_dir.join("wasm32-wasip2/release/wasmcached-server.wasm");
    println!("cargo:rustc-env=WASMCACHED_GUEST={}", wasm.display());
}
