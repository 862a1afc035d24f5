//! The binary protocol and SASL end to end, against the native server and
//! the wasm server under the runner (and memcached 1.6.18, to prove the
//! checks): libmemcached's `memccapable` (every ascii and binary check),
//! real binary clients (pylibmc with `binary=True`, python-binary-memcached),
//! SASL PLAIN clients (python-binary-memcached, libmemcached's tools)
//! against `-S`, and the binary conformance transcripts over TCP.
//!
//! Needs memccapable and the libmemcached tools, `.venv` with pylibmc and
//! bmemcached, and for the reference server's SASL saslpasswd2
//! (`scripts/setup` installs them all).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmcached_core::transcript::{self, Case};
use wasmcached_tests::{
    replay, repo_root, start, start_with_env, venv_python, Client, Kind, Server,
};

/// The users `-S` servers accept (the same as the conformance cases').
const USERS: &str = "testuser:testpass\nother:secret\n";

/// A scratch directory for this test process.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("wasmcached-binary-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

/// The password file (memcached's `MEMCACHED_SASL_PWDB` format).
fn pwdb() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let f = scratch().join("pwdb");
        std::fs::write(&f, USERS).expect("write pwdb");
        f
    })
}

/// A Cyrus SASL configuration for Debian's memcached, which is built
/// without `MEMCACHED_SASL_PWDB` support: PLAIN only, the same users in a
/// sasldb (made with saslpasswd2, realm = host name as memcached uses).
fn cyrus_sasl_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch().join("sasl");
        std::fs::create_dir_all(&d).expect("sasl dir");
        let db = d.join("sasldb2");
        std::fs::write(
            d.join("memcached.conf"),
            format!("mech_list: plain\nsasldb_path: {}\n", db.display()),
        )
        .expect("write sasl conf");
        let host = Command::new("hostname").output().expect("hostname").stdout;
        let host = String::from_utf8_lossy(&host).trim().to_string();
        for line in USERS.lines() {
            let (user, pass) = line.split_once(':').expect("user:password");
            let mut child = Command::new("saslpasswd2")
                .args(["-p", "-a", "memcached", "-c", "-u", &host, "-f"])
                .arg(&db)
                .arg(user)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("saslpasswd2 must be installed (Debian: sasl2-bin; scripts/setup does)");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(pass.as_bytes())
                .expect("password");
            assert!(child.wait().expect("saslpasswd2").success());
        }
        d
    })
}

/// Starts `kind` with `-S` (and `opts`), its credentials in place.
fn start_sasl(kind: Kind, opts: &[&str]) -> Server {
    let mut all = vec!["-S"];
    all.extend_from_slice(opts);
    let pwdb = pwdb().to_str().expect("utf-8 path");
    let sasl = cyrus_sasl_dir().to_str().expect("utf-8 path");
    start_with_env(
        kind,
        &all,
        &[("MEMCACHED_SASL_PWDB", pwdb), ("SASL_CONF_PATH", sasl)],
    )
}

// memccapable: libmemcached's protocol checker, every ascii and binary test.

/// Pass and fail counts of one memccapable run: (ascii, binary).
fn memccapable(kind: Kind) -> ([usize; 2], [usize; 2]) {
    let server = start(kind, &[]);
    let out = Command::new("memccapable")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-t",
            "10",
        ])
        .output()
        .expect("memccapable must be installed (libmemcached-tools; scripts/setup does)");
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |proto: &str, verdict: &str| {
        text.lines()
            .filter(|l| l.starts_with(proto) && l.trim_end().ends_with(verdict))
            .count()
    };
    let ascii = [count("ascii ", "[pass]"), count("ascii ", "[FAIL]")];
    let binary = [count("binary ", "[pass]"), count("binary ", "[FAIL]")];
    eprintln!(
        "memccapable against {}: ascii {} passed, {} failed; binary {} passed, {} failed",
        kind.name(),
        ascii[0],
        ascii[1],
        binary[0],
        binary[1]
    );
    assert!(
        out.status.success() && text.contains("All tests passed"),
        "memccapable against {}:\n{text}{}",
        kind.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    (ascii, binary)
}

fn memccapable_passes(kind: Kind) {
    let (ascii, binary) = memccapable(kind);
    // memcached 1.6.18 passes 27 ascii and 27 binary checks.
    assert_eq!((ascii, binary), ([27, 0], [27, 0]), "{}", kind.name());
}

#[test]
fn memccapable_native() {
    memccapable_passes(Kind::Native);
}

#[test]
fn memccapable_wasm() {
    memccapable_passes(Kind::Wasm);
}

#[test]
fn memccapable_reference_memcached() {
    memccapable_passes(Kind::Memcached);
}

// Real clients: pylibmc (libmemcached) and python-binary-memcached.

fn run_clients(server: &Server, args: &[&str]) {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/python/binary_clients.py"))
        .args(&args[..1])
        .arg(server.port.to_string())
        .args(&args[1..])
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{} ({}):\n{text}{}",
        server.kind.name(),
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains(" passed, 0 failed"),
        "binary clients failed against {}",
        server.kind.name()
    );
}

fn binary_clients(kind: Kind) {
    run_clients(&start(kind, &[]), &["plain"]);
}

#[test]
fn binary_clients_native() {
    binary_clients(Kind::Native);
}

#[test]
fn binary_clients_wasm() {
    binary_clients(Kind::Wasm);
}

#[test]
fn binary_clients_reference_memcached() {
    binary_clients(Kind::Memcached);
}

// SASL: authenticated clients against -S.

/// libmemcached's tools authenticating with SASL PLAIN: memcstat, and a
/// file stored with memccp and read back with memccat.
fn libmemcached_tools_authenticate(server: &Server) {
    let servers = format!("--servers=127.0.0.1:{}", server.port);
    let tool = |name: &str, password: &str, extra: &[&str]| {
        Command::new(name)
            .args([
                servers.as_str(),
                "--binary",
                "--username=testuser",
                &format!("--password={password}"),
            ])
            .args(extra)
            .current_dir(scratch())
            .output()
            .unwrap_or_else(|e| panic!("{name} (libmemcached-tools): {e}"))
    };
    let stat = tool("memcstat", "testpass", &[]);
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("version: 1.6.18"),
        "memcstat: {}",
        String::from_utf8_lossy(&stat.stderr)
    );
    let file = scratch().join("sasl-payload.txt");
    std::fs::write(&file, "stored over SASL\n").expect("write payload");
    let cp = tool("memccp", "testpass", &[file.to_str().expect("utf-8")]);
    assert!(cp.status.success(), "memccp: {cp:?}");
    let cat = tool("memccat", "testpass", &["sasl-payload.txt"]);
    // memccat ends what it prints with a newline of its own.
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout).trim_end(),
        "stored over SASL"
    );
    let denied = tool("memcstat", "wrong", &[]);
    assert!(
        !denied.status.success() && !String::from_utf8_lossy(&denied.stdout).contains("version"),
        "a wrong password was accepted"
    );
}

fn sasl_clients(kind: Kind) {
    let server = start_sasl(kind, &[]);
    run_clients(&server, &["sasl", "testuser", "testpass"]);
    libmemcached_tools_authenticate(&server);
}

#[test]
fn sasl_clients_native() {
    sasl_clients(Kind::Native);
}

#[test]
fn sasl_clients_wasm() {
    sasl_clients(Kind::Wasm);
}

#[test]
fn sasl_clients_reference_memcached() {
    sasl_clients(Kind::Memcached);
}

#[test]
fn sasl_needs_its_password_file() {
    for kind in [Kind::Native, Kind::Wasm] {
        let bin = wasmcached_tests::bin_dir().join(match kind {
            Kind::Wasm => "wasmcached",
            _ => "wasmcached-server",
        });
        let out = Command::new(&bin)
            .args(["-p", "0", "-S"])
            .env_remove("MEMCACHED_SASL_PWDB")
            .output()
            .expect("run the server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: started without a password file",
            kind.name()
        );
        assert!(err.contains("MEMCACHED_SASL_PWDB"), "{err}");
        let out = Command::new(&bin)
            .args(["-p", "0", "-S", "-B", "auto"])
            .output()
            .expect("run the server");
        assert_eq!(
            out.status.code(),
            Some(64),
            "{}: -S with -B auto",
            kind.name()
        );
    }
}

// The binary conformance transcripts over TCP.

/// Reads `packets` complete binary packets (or until EOF or the deadline).
fn read_packets(c: &mut Client, packets: usize, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let complete = transcript::binary_packets(&got)
            .iter()
            .take_while(|p| p.len() >= 24 && p.len() == 24 + body_len(p))
            .count();
        if complete >= packets {
            return got;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        let more = c.read_n(1, left);
        if more.is_empty() {
            return got;
        }
        got.extend_from_slice(&more);
    }
}

fn body_len(p: &[u8]) -> usize {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize
}

fn start_for_case(kind: Kind, case: &Case) -> Server {
    let opts: Vec<&str> = case.opts.iter().map(String::as_str).collect();
    match opts.iter().position(|o| *o == "-S") {
        Some(i) => {
            let mut rest = opts.clone();
            rest.remove(i);
            start_sasl(kind, &rest)
        }
        None => start(kind, &opts),
    }
}

/// Reads a reply packet by packet where it is binary (stat values differ in
/// length: pids, timings), by its length otherwise.
fn read_reply(c: &mut Client, want: &[u8]) -> Vec<u8> {
    if want.first() == Some(&0x81) {
        let n = transcript::binary_packets(want).len();
        read_packets(c, n, Duration::from_secs(10))
    } else {
        c.read_n(want.len(), Duration::from_secs(10))
    }
}

fn binary_transcripts(kind: Kind) {
    let cases = replay::load("binary.transcript");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| replay::replay(&start_for_case(kind, case), case, read_reply).err())
        .collect();
    eprintln!(
        "{}: {} binary transcript cases over TCP",
        kind.name(),
        cases.len()
    );
    transcript::assert_no_failures(&failures);
}

#[test]
fn binary_transcripts_native() {
    binary_transcripts(Kind::Native);
}

#[test]
fn binary_transcripts_wasm() {
    binary_transcripts(Kind::Wasm);
}
