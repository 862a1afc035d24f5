//! The runner's cache of the compiled server (`WASMCACHED_CACHE_DIR`):
//! written on the first start, private to the user, loaded on the next; a
//! broken, group-writable or symlinked file is compiled over (a new file
//! replaces it), and a directory others may write, or one a guest may
//! write (`-e`'s), is not used.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmcached_tests::{start_with_env, Kind, Server};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wasmcached-cc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Starts the wasm server with `dir` as its cache; how long until it
/// answered.
fn start_cached(dir: &Path) -> (Server, Duration) {
    start_cached_with(dir, &[])
}

fn start_cached_with(dir: &Path, opts: &[&str]) -> (Server, Duration) {
    let t0 = Instant::now();
    let env = [("WASMCACHED_CACHE_DIR", dir.to_str().expect("utf-8"))];
    let server = start_with_env(Kind::Wasm, opts, &env);
    let took = t0.elapsed();
    let mut c = server.connect();
    assert!(c.call(b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    (server, took)
}

/// The compiled files in `dir`.
fn cached(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The file's inode: a file stored anew (renamed over the old) has a new
/// one.
fn inode(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).expect("metadata").ino()
}

#[test]
fn the_compiled_server_is_kept_and_reused() {
    let root = scratch("reuse");
    let dir = root.join("cache");
    let (first, cold) = start_cached(&dir);
    drop(first);
    let files = cached(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
    let written = inode(&files[0]);
    let (second, warm) = start_cached(&dir);
    drop(second);
    assert_eq!(cached(&dir), files);
    assert_eq!(
        inode(&files[0]),
        written,
        "the cached file was compiled over"
    );
    eprintln!("[compile cache] start to ready: {cold:?} compiling, {warm:?} from the cache");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn untrusted_files_are_compiled_over() {
    let root = scratch("untrusted");
    let dir = root.join("cache");
    drop(start_cached(&dir).0);
    let files = cached(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let good = std::fs::read(file).expect("read");
    let replaced = |before: u64| {
        let m = std::fs::symlink_metadata(file).expect("metadata");
        m.is_file() && m.ino() != before && m.permissions().mode() & 0o777 == 0o600
    };

    // Garbage under the right name.
    std::fs::write(file, b"not compiled code").expect("write");
    let before = inode(file);
    drop(start_cached(&dir).0);
    assert!(replaced(before), "garbage was kept");
    assert_eq!(std::fs::read(file).expect("read"), good);

    // The right code, but writable by others.
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let before = inode(file);
    drop(start_cached(&dir).0);
    assert!(replaced(before), "a group-writable file was kept");

    // The right code, through a symbolic link.
    let elsewhere = root.join("copy.cwasm");
    std::fs::write(&elsewhere, &good).expect("write");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::remove_file(file).expect("remove");
    std::os::unix::fs::symlink(&elsewhere, file).expect("symlink");
    let before = inode(file);
    drop(start_cached(&dir).0);
    assert!(replaced(before), "a symbolic link was kept");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn untrusted_directories_are_not_used() {
    // One others may write.
    let root = scratch("open");
    let dir = root.join("cache");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    drop(start_cached(&dir).0);
    assert!(cached(&dir).is_empty(), "{:?}", cached(&dir));

    // One inside the directory a guest may write (-e's).
    let root = scratch("granted");
    let dir = root.join("cache");
    let snap = root.join("snap");
    drop(start_cached_with(&dir, &["-e", snap.to_str().expect("utf-8")]).0);
    assert!(cached(&dir).is_empty(), "{:?}", cached(&dir));
    // Elsewhere, the same start uses the cache.
    let other = scratch("granted-elsewhere").join("cache");
    drop(start_cached_with(&other, &["-e", snap.to_str().expect("utf-8")]).0);
    assert_eq!(cached(&other).len(), 1);
    let _ = std::fs::remove_dir_all(&root);
}
