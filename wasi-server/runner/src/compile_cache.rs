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
//! nobody else could have written it:
//! * the directory and the file must be owned by the runner's user and
//!   writable by nobody else (the runner creates them so), checked on the
//!   open descriptors that are then read, not on paths that could be
//!   swapped between the check and the read, and never through a symbolic
//!   link;
//! * no guest may reach it: a cache inside a directory granted to a guest
//!   (`-e`'s) is not used ([`Cache::open`] is told those directories).
//!
//! A file that is not so, cannot be read or does not load is compiled
//! over; a cache that cannot be written is skipped. Every failure falls
//! back to compiling in memory, as without a cache.

use std::ffi::CString;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Compiled files are named `PREFIX<hash>.cwasm`; temporary ones
/// `PREFIX<hash>.<pid>-<nanos>.tmp`.
const PREFIX: &str = "server-";

/// Files of other builds, and temporary files, older than this are
/// removed when a new file is stored.
const STALE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The compiled `wasm`: from the cache when a trusted copy is there,
/// otherwise compiled and stored for the next start when it can be. The
/// cache is off when it lies in one of `granted`, directories some guest
/// may write.
pub fn load(engine: &Engine, wasm: &[u8], granted: &[PathBuf]) -> anyhow::Result<Component> {
    let Some(cache) = dir().and_then(|d| Cache::open(&d, granted)) else {
        return compile(engine, wasm);
    };
    let name = name(engine, wasm);
    if let Some(component) = cache.read(engine, &name) {
        return Ok(component);
    }
    let component = compile(engine, wasm)?;
    cache.store(&name, &component);
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

/// The file name for `wasm` compiled by `engine`: it changes with the
/// component and with any engine setting that the compiled code depends on.
fn name(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    wasm.hash(&mut h);
    format!("{PREFIX}{:016x}.cwasm", h.finish())
}

/// Owned by this user and writable by nobody else.
fn trusted(m: &fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    m.uid() == me && m.mode() & 0o022 == 0
}

/// The cache directory, open and checked: every file is opened relative to
/// this descriptor, so the checked directory is the one used.
struct Cache {
    dir: File,
    path: PathBuf,
}

impl Cache {
    /// Creates `path` (mode 0700) if missing and opens it, without
    /// following a symbolic link; `None` unless it is trusted and outside
    /// every directory in `granted`.
    fn open(path: &Path, granted: &[PathBuf]) -> Option<Cache> {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path);
        let real = path.canonicalize().ok()?;
        let reachable = granted
            .iter()
            .filter_map(|g| g.canonicalize().ok())
            .any(|g| real.starts_with(g));
        if reachable {
            return None;
        }
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        let meta = dir.metadata().ok()?;
        (meta.is_dir() && trusted(&meta)).then(|| Cache {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Opens `name` in the directory with `flags` (never through a
    /// symbolic link).
    fn open_at(&self, name: &str, flags: libc::c_int) -> Option<File> {
        let c = CString::new(name).ok()?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `c` is a valid C string and the directory descriptor is
        // open for the duration of the call.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), c.as_ptr(), flags, 0o600) };
        // SAFETY: a descriptor openat just returned is ours alone.
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
    }

    /// The cached component `name`, if a trusted file loads.
    fn read(&self, engine: &Engine, name: &str) -> Option<Component> {
        let mut file = self.open_at(name, libc::O_RDONLY)?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || !trusted(&meta) {
            return None;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        // SAFETY: the bytes were read from the descriptor checked above: a
        // file of this user's, writable by nobody else, in a directory of
        // the same kind that no guest is granted, so only this user's
        // runners wrote it, with `Component::serialize`; wasmtime checks
        // that a compatible engine made it. They are copied, so later
        // changes to the file cannot reach the loaded code.
        unsafe { Component::deserialize(engine, &bytes) }.ok()
    }

    /// Writes the component as `name` (a temporary file renamed over it,
    /// so readers see a whole file or none), and removes stale files.
    /// Best effort: the next start compiles again.
    fn store(&self, name: &str, component: &Component) {
        let Ok(bytes) = component.serialize() else {
            return;
        };
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = format!("{name}.{}-{nanos}.tmp", std::process::id());
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let Some(mut file) = self.open_at(&tmp, flags) else {
            return;
        };
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if written.is_err() || !self.rename(&tmp, name) {
            self.unlink(&tmp);
            return;
        }
        self.remove_stale(name);
    }

    fn rename(&self, from: &str, to: &str) -> bool {
        let (Ok(from), Ok(to)) = (CString::new(from), CString::new(to)) else {
            return false;
        };
        let dir = self.dir.as_raw_fd();
        // SAFETY: valid C strings; the directory descriptor is open.
        unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) == 0 }
    }

    fn unlink(&self, name: &str) {
        if let Ok(c) = CString::new(name) {
            // SAFETY: a valid C string; the directory descriptor is open.
            unsafe {
                libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0);
            }
        }
    }

    /// Removes other builds' files and leftover temporary files that have
    /// not changed for [`STALE`].
    fn remove_stale(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str().filter(|n| *n != keep) else {
                continue;
            };
            let ours =
                name.starts_with(PREFIX) && (name.ends_with(".cwasm") || name.ends_with(".tmp"));
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE));
            if ours && old {
                self.unlink(name);
            }
        }
    }
}

/// The directories a guest started with `memory_file` (`-e`) may write.
pub fn granted_dirs(memory_file: Option<&Path>) -> Vec<PathBuf> {
    memory_file
        .and_then(|p| crate::warm::SnapshotDir::resolve(p).ok())
        .map(|d| vec![d.host])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_inside_a_granted_directory_is_not_opened() {
        let root = std::env::temp_dir().join(format!("wasmcached-cc-unit-{}", std::process::id()));
        let cache = root.join("home/.cache/wasmcached");
        assert!(Cache::open(&cache, &[]).is_some());
        assert!(Cache::open(&cache, &[root.join("home")]).is_none());
        assert!(Cache::open(&cache, std::slice::from_ref(&cache)).is_none());
        assert!(Cache::open(&cache, &[root.join("elsewhere")]).is_some());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn names_differ_by_component() {
        let engine = Engine::default();
        assert_ne!(name(&engine, b"a"), name(&engine, b"b"));
        assert_eq!(name(&engine, b"a"), name(&engine, b"a"));
        assert!(name(&engine, b"a").starts_with(PREFIX));
    }
}
