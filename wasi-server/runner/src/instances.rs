//! `--instances N`: N independent servers in one runner, each a guest on a
//! thread of its own, on consecutive ports, for clients that spread keys
//! over servers by hashing (pymemcache's `HashClient`, twemproxy).
//!
//! An instance is a whole server: its own store of `-m`/N megabytes, its
//! own linear memory capped for that, its own WASI context admitting only
//! its own port, its own current-thread runtime, its own `stats`. Only the
//! compiled code is shared. There is no lock between instances, so they
//! use the cores the way separate processes would, and a key lives on the
//! one instance its client hashed it to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::SystemTime;

use anyhow::anyhow;
use wasmcached_server::Options;

use crate::mailbox;
use crate::sandbox::{self, Guest};
use crate::warm::SnapshotDir;

/// Most instances one runner starts (a thread, a runtime and a linear
/// memory each; more than the cores only adds scheduling delay).
pub const MAX_INSTANCES: u32 = 64;

/// The options each instance runs with: the runner's, with `-p` moved to
/// the instance's port (`-p`, `-p`+1, ...), the memory totals, `-m` and
/// an explicit `--conn-memory`, divided evenly (rounded down), and `-e
/// PATH` made `PATH.PORT`: a snapshot holds one instance's keys, so it
/// belongs to the port a hashing client sends those keys to. Every other
/// option applies to each instance as given: `-c` in particular, because a
/// hashing client opens a connection to every instance.
///
/// With one instance the options are unchanged. Errors say which option to
/// change; the runner exits 64 on them, like on any bad option.
pub fn split(opts: &Options, n: u32) -> Result<Vec<Options>, String> {
    if n == 1 {
        check_addressable(opts.memory_limit_mb, "")?;
        return Ok(vec![opts.clone()]);
    }
    if opts.port == 0 {
        return Err(format!(
            "--instances {n} needs a fixed -p: the instances listen on -p .. -p+{}",
            n - 1
        ));
    }
    let last = u32::from(opts.port) + n - 1;
    if last > u32::from(u16::MAX) {
        return Err(format!(
            "--instances {n} from -p {} would need ports up to {last}; the last port is 65535",
            opts.port
        ));
    }
    let each_mb = opts.memory_limit_mb / u64::from(n);
    if each_mb == 0 {
        return Err(format!(
            "-m {} split over --instances {n} leaves less than 1 MB per instance",
            opts.memory_limit_mb
        ));
    }
    check_addressable(each_mb, " per instance")?;
    let conn_memory_mb = match opts.conn_memory_mb {
        Some(mb) if mb / u64::from(n) == 0 => {
            return Err(format!(
                "--conn-memory {mb} split over --instances {n} leaves less than 1 MB per instance"
            ))
        }
        Some(mb) => Some(mb / u64::from(n)),
        None => None,
    };
    (0..n)
        .map(|i| {
            let port = opts.port + i as u16;
            let each = Options {
                port,
                memory_limit_mb: each_mb,
                conn_memory_mb,
                memory_file: opts.memory_file.as_deref().map(|p| snapshot_of(p, port)),
                ..opts.clone()
            };
            each.validate()
                .map_err(|e| format!("{e} (each instance gets -m {each_mb})"))?;
            Ok(each)
        })
        .collect()
}

/// `-e PATH` of the instance on `port`: `PATH.PORT`, in PATH's directory
/// (`-e dir/snap/` names the file `snap` as it does for one server).
fn snapshot_of(path: &Path, port: u16) -> PathBuf {
    let Some(file) = path.file_name() else {
        // `..` or `/`: the runner refuses it (`SnapshotDir::resolve`).
        return path.to_path_buf();
    };
    let mut name = file.to_owned();
    name.push(format!(".{port}"));
    path.with_file_name(name)
}

/// Snapshots beside `-e PATH` that no instance of this run restores:
/// `PATH.PORT` files for ports outside `instances`, and with more than one
/// instance PATH itself (a single server's). An operator who changed `-p`
/// or `--instances` should know that those keys stay on disk, and that a
/// later run on those ports would bring them back as they were.
pub fn unclaimed_snapshots(path: Option<&Path>, instances: &[Options]) -> Vec<PathBuf> {
    let Some(path) = path else {
        return Vec::new();
    };
    let single = instances.len() == 1;
    let (Some(dir), Some(stem)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // One server restores PATH itself, so every PATH.PORT is unclaimed.
    let ports: Vec<u16> = if single {
        Vec::new()
    } else {
        instances.iter().map(|o| o.port).collect()
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| unclaimed(e.file_name().as_encoded_bytes(), stem, single, &ports))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Whether the file `name` beside the snapshot `stem` is a snapshot that
/// no instance on `ports` restores (with one server, `single`, its own
/// file is `stem` itself).
fn unclaimed(name: &[u8], stem: &std::ffi::OsStr, single: bool, ports: &[u16]) -> bool {
    let Some(rest) = name.strip_prefix(stem.as_encoded_bytes()) else {
        return false;
    };
    match rest.strip_prefix(b".") {
        None => rest.is_empty() && !single,
        Some(port) => std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|p| !ports.contains(&p)),
    }
}

/// A wasm32 guest addresses 4 GiB, which must hold `mb` of items and the
/// rest of the server.
fn check_addressable(mb: u64, per: &str) -> Result<(), String> {
    if mb > sandbox::MAX_MEMORY_MB {
        return Err(format!(
            "-m {mb}{per} is more than a wasm32 guest can address; the limit is {} MB{per} \
             (use more --instances, or wasmcached-server for larger caches)",
            sandbox::MAX_MEMORY_MB
        ));
    }
    Ok(())
}

/// `127.0.0.1:11211-11214`: where the instances listen.
pub fn describe(instances: &[Options]) -> String {
    let (Some(first), Some(last)) = (instances.first(), instances.last()) else {
        return String::new();
    };
    let host = if first.listen.contains(':') {
        format!("[{}]", first.listen)
    } else {
        first.listen.clone()
    };
    if instances.len() == 1 {
        format!("{host}:{}", first.port)
    } else {
        format!("{host}:{}-{}", first.port, last.port)
    }
}

/// Runs every instance, each on its own thread, until the server ends.
/// Returns the exit code.
///
/// The server ends when any instance ends, as memcached ends on a
/// `shutdown` or a crash: a hashing client keeps sending a dead instance's
/// share of the keys to it, so serving on with the others would only hide
/// the failure. A trap (or an instance the runner cannot start) is an
/// error naming the instance, and the runner exits 70; otherwise the code
/// is the guest's own (71: its port taken; 0: `shutdown`). A graceful
/// stop (SIGUSR1, or one instance's `shutdown graceful`, seen by the
/// snapshot it wrote) reaches every instance, and the runner waits until
/// all have written their snapshots; the code is then whatever failed
/// first, or 0.
///
/// With more than one instance, one line on stderr says where they listen
/// once all of them do; a single instance prints nothing new (the server
/// itself reports its address at `-v`).
pub fn run(guest: Guest, instances: Vec<Options>) -> anyhow::Result<u8> {
    let n = instances.len();
    let guest = Arc::new(guest);
    let waiting = Arc::new(AtomicUsize::new(n));
    let summary = Arc::new(format!(
        "wasmcached: {n} instances listening on {}",
        describe(&instances)
    ));
    let (done_tx, done_rx) = mpsc::channel();
    for (i, opts) in instances.into_iter().enumerate() {
        let (guest, waiting, summary, done_tx) = (
            guest.clone(),
            waiting.clone(),
            summary.clone(),
            done_tx.clone(),
        );
        let on_listening = move || {
            if waiting.fetch_sub(1, Ordering::AcqRel) == 1 && n > 1 {
                eprintln!("{summary}");
            }
        };
        start(i, n, guest, opts, on_listening, done_tx)?;
    }
    drop(done_tx);
    let mut failed = None;
    for end in done_rx {
        // An instance that fails while others start up may follow their
        // restores, which removed their snapshots: they write them back.
        let starting = end.snapshot.is_some() && waiting.load(Ordering::Acquire) > 0;
        if !mailbox::stop_requested() && !end.stopped_gracefully() && !starting {
            return end.into_result();
        }
        // Every instance writes its snapshot on its way out; one that
        // fails must not cut the others' writes short.
        mailbox::post_graceful_stop();
        match end.into_result() {
            Ok(0) => {}
            r => {
                failed.get_or_insert(r);
            }
        }
    }
    failed.unwrap_or(Ok(0))
}

/// Starts instance `i` of `n` on a thread of its own, which sends how it
/// ended to `done`.
fn start(
    i: usize,
    n: usize,
    guest: Arc<Guest>,
    opts: Options,
    on_listening: impl FnOnce() + Send + 'static,
    done: mpsc::Sender<End>,
) -> anyhow::Result<()> {
    // With one instance an error is the server's own, not an instance's.
    let name = match n {
        1 => String::new(),
        _ => describe(std::slice::from_ref(&opts)),
    };
    let snapshot = opts
        .memory_file
        .as_deref()
        .and_then(|p| SnapshotDir::resolve(p).ok())
        .map(|d| d.file);
    let started = SystemTime::now();
    std::thread::Builder::new()
        .name(format!("instance-{i}"))
        .spawn(move || {
            // A panic in the host (a bug) must end the runner as a
            // failure, not leave it serving with one instance gone.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sandbox::run(&guest, &opts, on_listening)
            }))
            .unwrap_or_else(|_| Err(anyhow!("the runner panicked")));
            let _ = done.send(End {
                name,
                snapshot,
                started,
                result,
            });
        })
        .map_err(|e| anyhow!("starting a thread for an instance: {e}"))?;
    Ok(())
}

/// How one instance ended.
struct End {
    /// Where it listened; empty when it is the only one.
    name: String,
    /// Its `-e` file on the host.
    snapshot: Option<PathBuf>,
    /// When its thread was started.
    started: SystemTime,
    result: anyhow::Result<u8>,
}

impl End {
    /// It stopped gracefully on its own (a client's `shutdown graceful`):
    /// it wrote its snapshot since it started, or tried to and exited
    /// with the code that says so.
    fn stopped_gracefully(&self) -> bool {
        let Some(snapshot) = &self.snapshot else {
            return false;
        };
        match self.result {
            Ok(0) => std::fs::metadata(snapshot)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= self.started),
            Ok(code) => i32::from(code) == wasmcached_server::EXIT_SNAPSHOT_FAILED,
            Err(_) => false,
        }
    }

    fn into_result(self) -> anyhow::Result<u8> {
        match self.result {
            Err(e) if !self.name.is_empty() => Err(e.context(format!("instance on {}", self.name))),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(args: &[&str]) -> Options {
        Options::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn one_instance_keeps_the_options() {
        let o = opts(&["-p", "0", "-m", "100"]);
        assert_eq!(split(&o, 1).unwrap(), vec![o]);
    }

    #[test]
    fn instances_take_consecutive_ports_and_a_share_of_memory() {
        let o = opts(&[
            "-p",
            "11211",
            "-m",
            "1000",
            "--conn-memory",
            "90",
            "-c",
            "50",
        ]);
        let each = split(&o, 4).unwrap();
        assert_eq!(
            each.iter().map(|e| e.port).collect::<Vec<_>>(),
            [11211, 11212, 11213, 11214]
        );
        for e in &each {
            assert_eq!(
                (e.memory_limit_mb, e.conn_memory_mb, e.conn_limit),
                (250, Some(22), 50)
            );
        }
        assert_eq!(describe(&each), "127.0.0.1:11211-11214");
        assert!(each.iter().all(|e| e.memory_file.is_none()));
        let warm = split(&opts(&["-p", "11211", "-e", "/dev/shm/wc"]), 2).unwrap();
        assert_eq!(
            warm.iter()
                .map(|e| e.memory_file.clone())
                .collect::<Vec<_>>(),
            [
                Some(PathBuf::from("/dev/shm/wc.11211")),
                Some(PathBuf::from("/dev/shm/wc.11212"))
            ]
        );
        let slash = split(&opts(&["-p", "11211", "-e", "/dev/shm/wc/"]), 2).unwrap();
        assert_eq!(
            slash[1].memory_file,
            Some(PathBuf::from("/dev/shm/wc.11212"))
        );
        let one = opts(&["-p", "11211", "-e", "/dev/shm/wc"]);
        assert_eq!(split(&one, 1).unwrap()[0].memory_file, one.memory_file);
        let v6 = split(&opts(&["-p", "7000", "-l", "::1"]), 2).unwrap();
        assert_eq!(describe(&v6), "[::1]:7000-7001");
    }

    #[test]
    fn snapshots_no_instance_restores_are_found() {
        let dir = std::env::temp_dir().join(format!("wasmcached-unclaimed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "snap",
            "snap.7000",
            "snap.7001",
            "snap.7005",
            "snap.tmp",
            "snap.x",
            "other.7005",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let e = dir.join("snap");
        let e = e.to_str().unwrap();
        let two = split(&opts(&["-p", "7000", "-e", e]), 2).unwrap();
        let snap = Some(dir.join("snap"));
        assert_eq!(
            unclaimed_snapshots(snap.as_deref(), &two),
            [dir.join("snap"), dir.join("snap.7005")]
        );
        let one = split(&opts(&["-p", "7000", "-e", e]), 1).unwrap();
        assert_eq!(
            unclaimed_snapshots(snap.as_deref(), &one),
            [
                dir.join("snap.7000"),
                dir.join("snap.7001"),
                dir.join("snap.7005")
            ]
        );
        let none = split(&opts(&["-p", "7000"]), 2).unwrap();
        assert!(unclaimed_snapshots(None, &none).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn impossible_splits_are_errors() {
        for (args, n, says) in [
            (&["-p", "0"][..], 2, "needs a fixed -p"),
            (&["-p", "65534"][..], 3, "the last port is 65535"),
            (&["-p", "65533"][..], 3, ""),
            (&["-m", "3"][..], 4, "less than 1 MB per instance"),
            (&["--conn-memory", "3"][..], 4, "--conn-memory 3"),
            (&["-m", "3", "-I", "1m"][..], 2, "each instance gets -m 1"),
            (&["-m", "4096"][..], 1, "limit is 3072 MB"),
            (&["-m", "8192"][..], 2, "-m 4096 per instance"),
            (&["-m", "8192"][..], 4, ""),
        ] {
            let r = split(&opts(args), n);
            if says.is_empty() {
                assert!(r.is_ok(), "{args:?} x{n}: {r:?}");
            } else {
                let e = r.expect_err(says);
                assert!(e.contains(says), "{args:?} x{n}: {e}");
            }
        }
    }
}
