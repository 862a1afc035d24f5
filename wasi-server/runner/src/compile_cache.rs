//! The embedded server, compiled once per host and kept between starts.
//!
//! Compiling the component to native code takes most of a start (about
//! 0.8 s on two cores); loading the compiled code takes milliseconds. The
//! runner keeps it in a directory of the user's (`$WASMCACHED_CACHE_DIR`,
//! else `$XDG_CACHE_HOME/wasmcached`, else `~/.cache/wasmcached`; an empty
//! `WASMCACHED_CACHE_DIR` turns the cache off), under a name derived from
//! the component and the engine's settings, so another build or another
//! wasmtime configuration never loads it.
//!
//! Loaded code runs natively in the runner, so the cache is only used where
//! nobody else could have written it: the directory and the file must be
//! owned by the runner's user and writable by nobody else (the runner
//! creates them so). A file that is not so, cannot be read or does not
//! load is compiled over; a cache that cannot be written is skipped. Every
//! failure falls back to compiling in memory, as without a cache.

use std::fs::{self, DirBuilder, Metadata};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Files the cache holds are named `PREFIX<hash>.cwasm`.
const PREFIX: &str = "server-";

/// The compiled `wasm`, from the cache when a trusted copy is there;
/// otherwise compiled, and stored for the next start when it can be.
pub fn load(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    let Some(dir) = dir().filter(|d| prepare(d)) else {
        return compile(engine, wasm);
    };
    let file = dir.join(name(engine, wasm));
    if let Some(component) = read(engine, &file) {
        return Ok(component);
    }
    let component = compile(engine, wasm)?;
    store(&dir, &file, &component);
    Ok(component)
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm).map_err(|e| anyhow!("loading the server component: {e}"))
}

/// Where the cache lives, or `None` when it is off or there is no home.
fn dir() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(v) = std::env::var_os("WASMCACHED_CACHE_DIR") {
        return (!v.is_empty()).then(|| PathBuf::from(v));
    }
    let base = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("wasmcached"))
}

/// Creates the directory (mode 0700) if missing; whether it is trusted.
fn prepare(dir: &Path) -> bool {
    let _ = DirBuilder::new().recursive(true).mode(0o700).create(dir);
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && trusted(&m))
}

/// Owned by this user and writable by nobody else.
fn trusted(m: &Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    m.uid() == me && m.mode() & 0o022 == 0
}

/// The file name for `wasm` compiled by `engine`: it changes with the
/// component and with any engine setting that the compiled code depends on.
fn name(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    wasm.hash(&mut h);
    format!("{PREFIX}{:016x}.cwasm", h.finish())
}

/// The cached component, if a trusted file loads.
fn read(engine: &Engine, file: &Path) -> Option<Component> {
    let meta = fs::symlink_metadata(file).ok()?;
    if !meta.is_file() || !trusted(&meta) {
        return None;
    }
    let bytes = fs::read(file).ok()?;
    // SAFETY: the bytes come from `Component::serialize` in a runner of
    // this user (the file and its directory are this user's and writable
    // by nobody else), and wasmtime checks that they were made by a
    // compatible engine; they are copied, so later changes to the file
    // cannot reach the loaded code.
    unsafe { Component::deserialize(engine, &bytes) }.ok()
}

/// Writes the compiled component to `file` (a temporary file renamed over
/// it, so readers see a whole file or none), and removes the files of
/// other builds. Best effort: the next start compiles again.
fn store(dir: &Path, file: &Path, component: &Component) {
    let Ok(bytes) = component.serialize() else {
        return;
    };
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
    if written.is_err() || fs::rename(&tmp, file).is_err() {
        let _ = fs::remove_file(&tmp);
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e.file_name();
        let old = old.to_string_lossy();
        if old.starts_with(PREFIX) && old.ends_with(".cwasm") && e.path() != file {
            let _ = fs::remove_file(e.path());
        }
    }
}
