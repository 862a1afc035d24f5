//! Warm restart (`-e PATH`): the file side of the core's snapshots.
//!
//! On a graceful stop the whole cache is written to PATH ([`save`]); the
//! next start with the same `-e PATH` reads it back ([`load`]) and removes
//! it before serving, so that a later crash cannot bring back data that
//! has since changed. Anything wrong with the file (missing, truncated,
//! corrupt, another format version or `-I`) is one line on stderr and a
//! cold start, never a failure.
//!
//! The file is written crash-safely: to `PATH.tmp` in the same directory,
//! flushed to disk, then renamed over PATH, so PATH is always either the
//! previous complete snapshot or the new one. A stop that is interrupted
//! leaves at most the temporary file, which the next save replaces.
//!
//! Under wasm the runner preopens PATH's directory, and only it, for this.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmcached_core::{Clock, Config, Restore, Snapshot, Store};

/// Bytes read from, or gathered for writing to, the file at a time.
const IO_CHUNK: usize = 1024 * 1024;

/// The shards to start with, shard `i` created with `cfgs[i]`: the items
/// of the snapshot at `path`, each in its key's shard, when there is a
/// valid one (whatever number of shards wrote it), else empty ones.
/// Removes the snapshot either way.
pub fn load(path: &Path, cfgs: Vec<Config>, clock: Clock) -> Vec<Store> {
    let started = Instant::now();
    let cold = |cfgs: Vec<Config>| cfgs.into_iter().map(|c| Store::new(c, clock)).collect();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log(path, "no snapshot, starting cold");
            return cold(cfgs);
        }
        Err(e) => {
            log(path, &format!("cannot open it ({e}), starting cold"));
            return cold(cfgs);
        }
    };
    let restored = read(file, cfgs.clone(), clock);
    // Removed before a single request is served: from here on the cache
    // may change, and the snapshot would be stale.
    if let Err(e) = fs::remove_file(path) {
        log(
            path,
            &format!("cannot remove it ({e}); starting cold so that a later start cannot restore stale data"),
        );
        return cold(cfgs);
    }
    match restored {
        Ok((stores, r)) => {
            log(
                path,
                &format!(
                    "restored {} items in {} ms (down {} s; {} expired meanwhile, {} beyond -m left out)",
                    r.items,
                    started.elapsed().as_millis(),
                    r.down_secs,
                    r.expired,
                    r.over_limit
                ),
            );
            stores
        }
        Err(why) => {
            log(path, &format!("{why}, starting cold"));
            cold(cfgs)
        }
    }
}

/// Reads a whole snapshot into shards.
fn read(
    mut file: File,
    cfgs: Vec<Config>,
    clock: Clock,
) -> Result<(Vec<Store>, wasmcached_core::Restored), String> {
    let mut restore = Restore::new_shards(cfgs, clock);
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => restore.receive(&buf[..n]).map_err(|e| e.to_string())?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read it ({e})")),
        }
    }
    restore.finish_shards().map_err(|e| e.to_string())
}

/// Writes the whole cache (every shard, in order) to `path`, crash-safely
/// (see the module documentation). Returns the number of items written.
pub fn save(path: &Path, shards: Vec<&mut Store>, clock: Clock) -> io::Result<u64> {
    let started = Instant::now();
    let tmp = temporary(path);
    let result = write(&tmp, path, Snapshot::of_shards(shards, clock));
    match &result {
        Ok(items) => log(
            path,
            &format!(
                "wrote {items} items in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Err(_) => {
            let _ = fs::remove_file(&tmp);
        }
    }
    result
}

fn write(tmp: &Path, path: &Path, mut snap: Snapshot<'_>) -> io::Result<u64> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut buf = Vec::with_capacity(2 * IO_CHUNK);
    while snap.next_chunk(&mut buf) {
        if buf.len() >= IO_CHUNK {
            file.write_all(&buf)?;
            buf.clear();
        }
    }
    file.write_all(&buf)?;
    let items = snap.items();
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    sync_dir(path);
    Ok(items)
}

/// `PATH.tmp`, beside PATH (a rename is atomic only within a file system).
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes the rename durable: the directory entry is flushed too. Best
/// effort: WASI cannot open a directory as a file, and where this fails
/// the file itself is already on disk.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn log(path: &Path, what: &str) {
    eprintln!("wasmcached: warm restart: {}: {what}", path.display());
}
