//! Warm restart (`-e PATH`) end to end, with pymemcache, against the wasm
//! and the native server: fill, SIGUSR1, restart with the same `-e`, every
//! item back with the same `gets` CAS value; a damaged, truncated or
//! mismatched snapshot is a cold start with one log line, and the server
//! runs and exits normally. With `--instances`, each instance keeps its
//! own snapshot. Needs `.venv` with pymemcache (`scripts/setup`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wasmcached_tests::instances::{start_instances, start_instances_on};
use wasmcached_tests::{
    parse_stats, repo_root, start, start_logging, stat, venv_python, wait_exit, Client, Kind,
};

/// Items the client stores.
const ITEMS: usize = 5000;

fn python(args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/python/warm_restart.py"))
        .args(args)
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "warm_restart.py {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A directory of the test's own for the snapshot and the logs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmcached-warm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Fills a server started with `-e snap`, stops it with SIGUSR1 and
/// returns the state file the client wrote. The snapshot is then on disk.
fn fill_and_stop(kind: Kind, dir: &Path, opts: &[&str]) -> (PathBuf, Instant) {
    let snap = dir.join("snap");
    let state = dir.join("state.json");
    let mut args = vec!["-e", snap.to_str().unwrap()];
    args.extend_from_slice(opts);
    let server = start(kind, &args);
    python(&[
        "fill",
        &server.port.to_string(),
        state.to_str().unwrap(),
        &ITEMS.to_string(),
    ]);
    let filled = Instant::now();
    let status = server.stop_with(libc::SIGUSR1);
    assert!(
        status.success(),
        "{}: graceful stop exited {status}",
        kind.name()
    );
    assert!(snap.exists(), "{}: no snapshot written", kind.name());
    assert!(!dir.join("snap.tmp").exists());
    (state, filled)
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

fn restores_every_item(kind: Kind) {
    let dir = scratch(&format!("ok-{kind:?}"));
    let (state, filled) = fill_and_stop(kind, &dir, &[]);
    // The 2-second items must expire while the server is down.
    let down = Duration::from_millis(2100);
    if let Some(left) = down.checked_sub(filled.elapsed()) {
        std::thread::sleep(left);
    }
    let snap = dir.join("snap");
    let server = start_logging(kind, &["-e", snap.to_str().unwrap()], &dir.join("log"));
    assert!(
        !snap.exists(),
        "{}: snapshot not removed after restore",
        kind.name()
    );
    let out = python(&["check", &server.port.to_string(), state.to_str().unwrap()]);
    assert!(
        out.contains(&format!("{ITEMS} of {ITEMS} present, 0 wrong, 0 short")),
        "{out}"
    );
    let log = log_of(&dir);
    assert!(log.contains(&format!("restored {ITEMS} items")), "{log}");
    assert!(log.contains("20 expired meanwhile"), "{log}");
    // A crash now (no graceful stop) leaves no snapshot to resurrect.
    drop(server);
    assert!(!snap.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Damages the snapshot with `damage`, restarts with `opts` and expects a
/// cold start that says `says`, then a normal exit.
fn cold_start(kind: Kind, name: &str, opts: &[&str], damage: fn(&Path), says: &str) {
    let dir = scratch(&format!("{name}-{kind:?}"));
    let (state, _) = fill_and_stop(kind, &dir, &[]);
    let snap = dir.join("snap");
    damage(&snap);
    let mut args = vec!["-e", snap.to_str().unwrap()];
    args.extend_from_slice(opts);
    let server = start_logging(kind, &args, &dir.join("log"));
    python(&["empty", &server.port.to_string(), state.to_str().unwrap()]);
    assert!(
        !snap.exists(),
        "{}: a refused snapshot must not linger",
        kind.name()
    );
    let status = server.terminate();
    assert!(status.success(), "{}: exited {status}", kind.name());
    let log = log_of(&dir);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("warm restart")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(says) && lines[0].contains("starting cold"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Changes one byte of a value in the middle of the file.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2
        + bytes[bytes.len() / 2..]
            .windows(6)
            .position(|w| w == b"value-")
            .expect("a value in the second half");
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() * 2 / 3]).unwrap();
}

fn keep(_: &Path) {}

fn replace_with_garbage(path: &Path) {
    std::fs::write(path, b"VALUE not a snapshot\r\n").unwrap();
}

#[test]
fn warm_restart_wasm() {
    restores_every_item(Kind::Wasm);
}

#[test]
fn warm_restart_native() {
    restores_every_item(Kind::Native);
}

#[test]
fn damaged_snapshots_start_cold_wasm() {
    cold_start(Kind::Wasm, "corrupt", &[], corrupt, "checksum mismatch");
    cold_start(Kind::Wasm, "truncated", &[], truncate, "truncated");
    cold_start(
        Kind::Wasm,
        "other-i",
        &["-I", "2m"],
        keep,
        "written with -I 1048576",
    );
    cold_start(
        Kind::Wasm,
        "garbage",
        &[],
        replace_with_garbage,
        "not a wasmcached snapshot",
    );
}

#[test]
fn damaged_snapshots_start_cold_native() {
    cold_start(Kind::Native, "corrupt", &[], corrupt, "checksum mismatch");
    cold_start(Kind::Native, "truncated", &[], truncate, "truncated");
    cold_start(
        Kind::Native,
        "other-i",
        &["-I", "2m"],
        keep,
        "written with -I 1048576",
    );
    cold_start(
        Kind::Native,
        "garbage",
        &[],
        replace_with_garbage,
        "not a wasmcached snapshot",
    );
}

#[test]
fn missing_snapshot_starts_cold() {
    for kind in [Kind::Native, Kind::Wasm] {
        let dir = scratch(&format!("missing-{kind:?}"));
        let snap = dir.join("snap");
        let server = start_logging(kind, &["-e", snap.to_str().unwrap()], &dir.join("log"));
        let mut c = server.connect();
        assert_eq!(c.call(b"get x\r\n", b"END\r\n"), b"END\r\n");
        assert!(server.terminate().success());
        assert!(log_of(&dir).contains("no snapshot, starting cold"));
        // SIGTERM is not a graceful stop: nothing is written.
        assert!(!snap.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `--instances 2 -e PATH`: each instance snapshots its own keys to
/// `PATH.PORT` on SIGUSR1 and restores them from there, on its own port.
/// The instances hold different numbers of items, so a swapped or shared
/// snapshot shows. A start that fails on one port loses no snapshot.
#[test]
fn instances_restore_their_own_snapshots() {
    let dir = scratch("instances");
    let snap = dir.join("snap");
    let e = ["-e", snap.to_str().unwrap()];
    let inst = start_instances(2, &e);
    let ports = inst.ports.clone();
    let counts = [3000, 1000];
    let states: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("state{i}.json"))).collect();
    for i in 0..2 {
        python(&[
            "fill",
            &ports[i].to_string(),
            states[i].to_str().unwrap(),
            &counts[i].to_string(),
        ]);
    }
    let filled = Instant::now();
    let files: Vec<PathBuf> = ports
        .iter()
        .map(|p| dir.join(format!("snap.{p}")))
        .collect();
    let status = inst.server.stop_with(libc::SIGUSR1);
    assert!(status.success(), "graceful stop exited {status}");
    for f in &files {
        assert!(f.exists(), "no snapshot {}", f.display());
    }
    assert!(!snap.exists(), "a snapshot under the bare -e path");
    // A start that fails on the second port, after the first instance
    // restored its snapshot: that instance writes it back.
    // Beside them, a file of a run on another port: named on stderr.
    let stray = dir.join("snap.1");
    std::fs::write(&stray, b"").expect("write");
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports[1])).expect("hold the port");
    let (failed, stderr) = run_to_exit(
        Command::new(wasmcached_tests::bin_dir().join("wasmcached"))
            .args(["-p", &ports[0].to_string(), "--instances", "2"])
            .args(e),
    );
    assert_eq!(failed.code(), Some(71), "{failed:?}");
    for f in &files {
        assert!(f.exists(), "{} lost in the failed start", f.display());
    }
    let warned = format!("{}: no instance of this run restores it", stray.display());
    assert!(stderr.contains(&warned), "{stderr}");
    drop(taken);
    // The 2-second items must expire while the instances are down.
    if let Some(left) = Duration::from_millis(2100).checked_sub(filled.elapsed()) {
        std::thread::sleep(left);
    }
    let back = start_instances_on(ports[0], 2, &e);
    for i in 0..2 {
        assert!(
            !files[i].exists(),
            "{} not removed after restore",
            files[i].display()
        );
        let reply = Client::connect(ports[i]).call(b"stats\r\n", b"END\r\n");
        let items = stat(&parse_stats(&reply), "curr_items");
        assert_eq!(items, counts[i] as u64, "port {}", ports[i]);
        let out = python(&["check", &ports[i].to_string(), states[i].to_str().unwrap()]);
        let n = counts[i];
        assert!(
            out.contains(&format!("{n} of {n} present, 0 wrong, 0 short")),
            "{out}"
        );
    }
    drop(back);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `cmd` and waits for it to exit (killed after 30 s); its status
/// and what it wrote to stderr.
fn run_to_exit(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the runner");
    let exited = wait_exit(&mut child, Duration::from_secs(30));
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    assert!(exited.is_some(), "the runner did not exit");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runner_refuses_a_snapshot_directory_that_does_not_exist() {
    let out = Command::new(wasmcached_tests::bin_dir().join("wasmcached"))
        .args(["-p", "0", "-e", "/nonexistent/dir/snap"])
        .output()
        .expect("run wasmcached");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-e /nonexistent/dir/snap"));
}

/// Snapshot and restore times for 1,000,000 items (10-byte keys, 64-byte
/// values), as the servers log them, plus stop and start as a client sees
/// them. `cargo test --release -p wasmcached-tests --test warm_restart --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn timings_for_a_million_items() {
    const N: usize = 1_000_000;
    for kind in [Kind::Native, Kind::Wasm] {
        let dir = scratch(&format!("timing-{kind:?}"));
        let snap = dir.join("snap");
        let e = ["-e", snap.to_str().unwrap(), "-m", "1024"];
        let server = start_logging(kind, &e, &dir.join("log"));
        let mut c = server.connect();
        let value = "v".repeat(64);
        let mut batch = String::new();
        for i in 0..N {
            batch.push_str(&format!("set k{i:09} 0 0 64 noreply\r\n{value}\r\n"));
            if batch.len() > 1 << 20 || i == N - 1 {
                c.send(batch.as_bytes());
                batch.clear();
            }
        }
        assert_eq!(c.call(b"mn\r\n", b"MN\r\n"), b"MN\r\n");
        let stats = c.call(b"stats\r\n", b"END\r\n");
        let items = wasmcached_tests::stat(&wasmcached_tests::parse_stats(&stats), "curr_items");
        assert_eq!(items, N as u64);
        let t = Instant::now();
        assert!(server.stop_with(libc::SIGUSR1).success());
        let stop = t.elapsed();
        let size = std::fs::metadata(&snap).unwrap().len();
        let t = Instant::now();
        let server = start_logging(kind, &e, &dir.join("log"));
        let ready = t.elapsed();
        let mut c = server.connect();
        let stats = c.call(b"stats\r\n", b"END\r\n");
        let items = wasmcached_tests::stat(&wasmcached_tests::parse_stats(&stats), "curr_items");
        assert_eq!(items, N as u64);
        eprintln!(
            "{}: snapshot {:.1} MB; SIGUSR1 to exit {} ms; start to ready {} ms\n{}",
            kind.name(),
            size as f64 / 1e6,
            stop.as_millis(),
            ready.as_millis(),
            log_of(&dir)
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
