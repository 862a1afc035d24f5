//! The runner's cache of the compiled server (`WASMCACHED_CACHE_DIR`):
//! written on the first start, private to the user, loaded on the next;
//! a broken file is compiled over and an untrusted directory is not used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    let t0 = Instant::now();
    let env = [("WASMCACHED_CACHE_DIR", dir.to_str().expect("utf-8"))];
    let server = start_with_env(Kind::Wasm, &[], &env);
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

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .expect("mtime")
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
    let written = mtime(&files[0]);
    let (second, warm) = start_cached(&dir);
    drop(second);
    assert_eq!(cached(&dir), files);
    assert_eq!(
        mtime(&files[0]),
        written,
        "the cached file was compiled over"
    );
    eprintln!("[compile cache] start to ready: {cold:?} compiling, {warm:?} from the cache");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_broken_file_is_compiled_over_and_an_open_directory_is_not_used() {
    let root = scratch("broken");
    let dir = root.join("cache");
    drop(start_cached(&dir).0);
    let files = cached(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let good = std::fs::read(&files[0]).expect("read");

    // Garbage under the right name: the server starts, and the file is
    // whole again.
    std::fs::write(&files[0], b"not compiled code").expect("write");
    drop(start_cached(&dir).0);
    assert_eq!(std::fs::read(&files[0]).expect("read").len(), good.len());

    // A directory others may write to: nothing is loaded from or written
    // to it.
    std::fs::remove_file(&files[0]).expect("remove");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    drop(start_cached(&dir).0);
    assert!(cached(&dir).is_empty(), "{:?}", cached(&dir));
    let _ = std::fs::remove_dir_all(&root);
}
